//! LZ4 frames for Arrow IPC buffers (the `LZ4_FRAME` codec), written with LZ4's block
//! compressor straight into the message body.
//!
//! arrow-rs compresses each buffer through lz4_flex's streaming `FrameEncoder`, which for every
//! buffer allocates a 16 KiB hash table and 64 KiB or more of staging space and copies the input
//! into it before compressing. A 1024-row statement has a dozen buffers of a few KiB, so that
//! set-up costs as much as a good part of the compression itself (docs/benchmarks.md). This writes
//! the same format, as the LZ4 frame specification defines it: magic number, frame descriptor
//! (independent blocks, no checksums, no content size, as arrow-rs writes it too), blocks each
//! prefixed by its length (the high bit marking a block stored uncompressed), and the end mark.
//! Readers decode it with any LZ4 frame decoder.

use std::cell::RefCell;

use lz4_flex::block::CompressTable;

use crate::{Result, StorageError};

const MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// Frame descriptor flags: version 01, independent blocks; no block or content checksum, no
/// content size, no dictionary.
const FLAGS: u8 = 0b0110_0000;
/// A block (and so the frame's declared block maximum) for inputs up to this size.
const SMALL_BLOCK_BYTES: usize = 64 * 1024;
/// The block size of larger inputs. LZ4 matches reach back at most 64 KiB, so larger blocks
/// would gain little; this one keeps the per-thread scratch space small.
const LARGE_BLOCK_BYTES: usize = 256 * 1024;
/// The frame descriptor's code for a block maximum (64 KiB = 4, 256 KiB = 5).
fn block_size_code(block_bytes: usize) -> u8 {
    if block_bytes == SMALL_BLOCK_BYTES {
        4
    } else {
        5
    }
}
/// Set in a block's length when the block is stored as it is.
const UNCOMPRESSED_BIT: u32 = 1 << 31;
const END_MARK: [u8; 4] = [0; 4];

/// A thread's compression space, kept from one frame to the next.
struct Scratch {
    /// Where a block is compressed before it is copied into the frame: the compressor needs an
    /// initialised output of the worst-case size, which the frame's own vector would have to
    /// zero for every block.
    output: Vec<u8>,
    /// The compressor's hash tables, for blocks under 64 KiB (16-bit positions) and for larger
    /// ones. The compressor clears a table for each block; without these it would allocate one
    /// for each, a third of the cost of compressing a 1 KiB buffer.
    small: CompressTable,
    large: CompressTable,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> =
        RefCell::new(Scratch { output: Vec::new(), small: CompressTable::small(), large: CompressTable::large() });
}

/// Bytes a frame of `input_len` bytes can take at most.
pub(crate) fn frame_len_max(input_len: usize) -> usize {
    let blocks = input_len.div_ceil(SMALL_BLOCK_BYTES).max(1);
    // Header (magic, flags, block size, checksum), a length per block, the end mark; a block
    // that does not shrink is stored as it is.
    MAGIC.len() + 3 + blocks * 4 + input_len + END_MARK.len()
}

/// Appends `input` to `out` as one LZ4 frame.
pub(crate) fn write_frame(input: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let block_bytes = if input.len() <= SMALL_BLOCK_BYTES { SMALL_BLOCK_BYTES } else { LARGE_BLOCK_BYTES };
    let descriptor = [FLAGS, block_size_code(block_bytes) << 4];
    // The header checksum is the second byte of the descriptor's xxHash32.
    let checksum = (twox_hash::XxHash32::oneshot(0, &descriptor) >> 8) as u8;
    out.reserve(frame_len_max(input.len()));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&descriptor);
    out.push(checksum);
    SCRATCH.with_borrow_mut(|scratch| {
        let needed = lz4_flex::block::get_maximum_output_size(block_bytes);
        if scratch.output.len() < needed {
            scratch.output.resize(needed, 0);
        }
        for block in input.chunks(block_bytes) {
            // The small table takes positions below u16::MAX only.
            let table = if block.len() < u16::MAX as usize { &mut scratch.small } else { &mut scratch.large };
            let compressed = lz4_flex::block::compress_into_with_table(block, &mut scratch.output, table).map_err(|error| {
                StorageError::Arrow(arrow::error::ArrowError::IpcError(format!("LZ4 compression failed: {error}")))
            })?;
            // Lengths fit: a block is at most LARGE_BLOCK_BYTES.
            if compressed < block.len() {
                out.extend_from_slice(&(compressed as u32).to_le_bytes());
                out.extend_from_slice(&scratch.output[..compressed]);
            } else {
                out.extend_from_slice(&(block.len() as u32 | UNCOMPRESSED_BIT).to_le_bytes());
                out.extend_from_slice(block);
            }
        }
        Ok::<(), StorageError>(())
    })?;
    out.extend_from_slice(&END_MARK);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Bytes that compress somewhat: counters and a few repeated words, with noise.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match i % 16 {
                    0..=7 => (i / 16) as u8,
                    8..=11 => b"bid!"[i % 4],
                    _ => (state >> 56) as u8,
                }
            })
            .collect()
    }

    fn decoded(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(frame).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn frames_decode_to_their_input_with_lz4_flex() {
        let sizes = [1, 15, 4096, SMALL_BLOCK_BYTES - 1, SMALL_BLOCK_BYTES, SMALL_BLOCK_BYTES + 1, 3 * LARGE_BLOCK_BYTES + 5];
        for (seed, len) in sizes.into_iter().enumerate() {
            let input = sample(len, seed as u64);
            let mut out = vec![7u8; 3];
            write_frame(&input, &mut out).unwrap();
            assert_eq!(&out[..3], &[7, 7, 7], "appended after what was there");
            assert!(out.len() - 3 <= frame_len_max(len), "{len} bytes: frame of {} over its bound", out.len() - 3);
            assert_eq!(decoded(&out[3..]), input, "{len} bytes");
        }
        // Incompressible bytes are stored as they are, still within the bound.
        let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut out = Vec::new();
        write_frame(&noise, &mut out).unwrap();
        assert!(out.len() <= frame_len_max(noise.len()));
        assert_eq!(decoded(&out), noise);
    }

    #[test]
    fn the_frame_header_is_the_one_lz4_flex_writes() {
        // lz4_flex's encoder, as arrow-rs uses it, with the same block size: same header bytes
        // (magic, descriptor and its checksum, worked out independently by lz4_flex).
        for (len, block_size) in [(1000, lz4_flex::frame::BlockSize::Max64KB), (100_000, lz4_flex::frame::BlockSize::Max256KB)] {
            let input = sample(len, 1);
            let mut theirs = Vec::new();
            let info = lz4_flex::frame::FrameInfo::new().block_size(block_size);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, &mut theirs);
            encoder.write_all(&input).unwrap();
            encoder.finish().unwrap();
            let mut ours = Vec::new();
            write_frame(&input, &mut ours).unwrap();
            assert_eq!(ours[..7], theirs[..7], "{len} bytes");
        }
    }
}
