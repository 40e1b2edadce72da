//! The WAL record: one atomic write (one SQL statement, one COPY, one Flight put), possibly
//! spanning several partitions of one topic.
//!
//! On disk a record is a frame:
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC32C of the payload
//! payload:
//!   u8      format version (3; version 2 had no part byte, version 1 no file sequence either)
//!   u64 LE  sequence number of the WAL file the record was written to
//!   u8      part: 0 the write's last (or only) frame, 1 the write continues in the next frame,
//!           2 the write before this frame was abandoned (no entries)
//!   u32 LE  entry count
//!   entry*: u64 LE topic id | u32 LE partition | u64 LE base offset | i64 LE append time (µs)
//!           | u32 LE IPC length | Arrow IPC stream (schema message + one batch message, its
//!           buffers LZ4_FRAME-compressed; see [`crate::ipc`])
//! ```
//!
//! The CRC covers the whole payload, so a frame is replayed whole or not at all. A write may
//! span several consecutive frames (see [`crate::wal`] on pipelined writes): replay keeps them
//! until the last one and drops them if the log ends first or an abandon frame follows. The file
//! sequence number tells a record from the stale records of a recycled file (see [`crate::wal`]).
//! Writers build a frame without its sequence and CRC; the WAL thread, which knows the file,
//! fills both in with [`finish_frame`].

use std::io::Cursor;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow_ipc::reader::StreamReader;

use crate::ipc::{self, EncodedBatch};
use crate::{Result, StorageError};

pub(crate) const FRAME_HEADER_BYTES: usize = 8;
const FORMAT_VERSION: u8 = 3;
/// Version 2 payloads (no part byte: every frame a whole write) are still read.
const FORMAT_VERSION_WHOLE: u8 = 2;
/// Version 1 payloads (no file sequence either) are still read.
const FORMAT_VERSION_UNSEQUENCED: u8 = 1;
/// Where the file sequence sits in a frame: after the header and the version byte.
const SEQUENCE_AT: usize = FRAME_HEADER_BYTES + 1;
/// Where the part byte sits in a frame: after the file sequence.
const PART_AT: usize = SEQUENCE_AT + 8;

/// Which part of its write a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramePart {
    /// The write's last frame (or its only one): the write is complete.
    Last,
    /// The write continues in the next frame.
    Continued,
    /// The write whose frames precede this one was abandoned; this frame has no entries.
    Abandon,
}

impl FramePart {
    fn code(self) -> u8 {
        match self {
            FramePart::Last => 0,
            FramePart::Continued => 1,
            FramePart::Abandon => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(FramePart::Last),
            1 => Some(FramePart::Continued),
            2 => Some(FramePart::Abandon),
            _ => None,
        }
    }
}
/// A frame larger than this is treated as corruption rather than allocated.
pub(crate) const FRAME_PAYLOAD_BYTES_MAX: usize = 1 << 31;

/// One partition's share of a record.
#[derive(Debug, Clone)]
pub struct RecordEntry {
    pub topic_id: u64,
    pub partition: u32,
    pub base_offset: u64,
    pub timestamp_us: i64,
    pub batch: RecordBatch,
    /// The batch's encoding, kept for the sealer (not kept on replay).
    pub encoded: Option<Arc<EncodedBatch>>,
}

fn decode_batch(bytes: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    match reader.next() {
        Some(batch) => Ok(batch?),
        None => Err(StorageError::Arrow(arrow::error::ArrowError::IpcError(
            "WAL entry holds no batch".into(),
        ))),
    }
}

/// An entry whose batch is already IPC-encoded; offsets are filled in at append time.
pub(crate) struct EncodedEntry {
    pub partition: u32,
    pub encoded: Arc<EncodedBatch>,
}

/// Builds a complete frame (header + payload) for entries with assigned offsets, of a topic
/// whose log schema encodes as `schema_message`.
pub(crate) fn encode_frame(
    topic_id: u64,
    timestamp_us: i64,
    schema_message: &[u8],
    entries: &[(EncodedEntry, u64)],
    part: FramePart,
) -> Vec<u8> {
    let stream_len = |e: &EncodedEntry| ipc::stream_len(schema_message, &e.encoded);
    let payload_bytes: usize = 14 + entries.iter().map(|(e, _)| 32 + stream_len(e)).sum::<usize>();
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload_bytes);
    frame.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    frame.push(FORMAT_VERSION);
    frame.extend_from_slice(&0u64.to_le_bytes());
    frame.push(part.code());
    frame.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (entry, base_offset) in entries {
        frame.extend_from_slice(&topic_id.to_le_bytes());
        frame.extend_from_slice(&entry.partition.to_le_bytes());
        frame.extend_from_slice(&base_offset.to_le_bytes());
        frame.extend_from_slice(&timestamp_us.to_le_bytes());
        frame.extend_from_slice(&(stream_len(entry) as u32).to_le_bytes());
        ipc::write_stream(&mut frame, schema_message, &entry.encoded);
    }
    let payload_len = (frame.len() - FRAME_HEADER_BYTES) as u32;
    frame[0..4].copy_from_slice(&payload_len.to_le_bytes());
    frame
}

/// A frame saying that the write whose frames precede it was abandoned.
pub(crate) fn abandon_frame() -> Vec<u8> {
    encode_frame(0, 0, &[], &[], FramePart::Abandon)
}

/// The part a frame built by [`encode_frame`] is of its write.
pub(crate) fn frame_part(frame: &[u8]) -> FramePart {
    frame.get(PART_AT).copied().and_then(FramePart::from_code).unwrap_or(FramePart::Last)
}

/// Completes a frame from [`encode_frame`] for the WAL file numbered `sequence`: the sequence
/// and the CRC.
pub(crate) fn finish_frame(frame: &mut [u8], sequence: u64) {
    frame[SEQUENCE_AT..SEQUENCE_AT + 8].copy_from_slice(&sequence.to_le_bytes());
    let crc = crc32c::crc32c(&frame[FRAME_HEADER_BYTES..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The WAL file sequence a payload (whose CRC matched) was written to; `None` for a version 1
/// payload, which does not say.
pub(crate) fn payload_sequence(payload: &[u8]) -> Option<u64> {
    match payload.first() {
        Some(&FORMAT_VERSION | &FORMAT_VERSION_WHOLE) => {
            payload.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
        }
        _ => None,
    }
}

/// Why a frame could not be read: the end of valid data was reached.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameEnd {
    /// Clean end of the file.
    Clean,
    /// A torn or corrupt frame at this position; everything from here on was never acknowledged.
    Torn { reason: String },
}

/// Reads the frame starting at `position` in `data`. Returns the payload and the position of the
/// next frame, or why there is none. An all-zero header is the clean end of a preallocated
/// file's data: no frame is empty.
pub(crate) fn read_frame(data: &[u8], position: usize) -> std::result::Result<(&[u8], usize), FrameEnd> {
    let rest = &data[position..];
    if rest.iter().take(FRAME_HEADER_BYTES).all(|&b| b == 0) {
        return Err(FrameEnd::Clean);
    }
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(FrameEnd::Torn { reason: format!("short frame header ({} bytes)", rest.len()) });
    }
    let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if length > FRAME_PAYLOAD_BYTES_MAX || rest.len() - FRAME_HEADER_BYTES < length {
        return Err(FrameEnd::Torn {
            reason: format!("frame of {length} bytes but only {} remain", rest.len() - FRAME_HEADER_BYTES),
        });
    }
    let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length];
    if crc32c::crc32c(payload) != crc {
        return Err(FrameEnd::Torn { reason: "CRC mismatch".into() });
    }
    Ok((payload, position + FRAME_HEADER_BYTES + length))
}

/// Decodes a payload whose CRC already matched: which part of its write it is, and its entries.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<(FramePart, Vec<RecordEntry>)> {
    let corrupt = |reason: &str| StorageError::WalCorrupt {
        file: String::new(),
        position: 0,
        reason: reason.to_string(),
    };
    let mut cursor = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let slice = payload.get(cursor..cursor + n).ok_or_else(|| corrupt("payload too short"))?;
        cursor += n;
        Ok(slice)
    };
    let version = take(1)?[0];
    let part = match version {
        FORMAT_VERSION => {
            take(8)?;
            let code = take(1)?[0];
            FramePart::from_code(code).ok_or_else(|| corrupt(&format!("unknown frame part {code}")))?
        }
        FORMAT_VERSION_WHOLE => {
            take(8)?;
            FramePart::Last
        }
        FORMAT_VERSION_UNSEQUENCED => FramePart::Last,
        _ => return Err(corrupt(&format!("unknown record format version {version}"))),
    };
    let count = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default());
    let mut entries = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let topic_id = u64::from_le_bytes(take(8)?.try_into().unwrap_or_default());
        let partition = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default());
        let base_offset = u64::from_le_bytes(take(8)?.try_into().unwrap_or_default());
        let timestamp_us = i64::from_le_bytes(take(8)?.try_into().unwrap_or_default());
        let ipc_len = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default()) as usize;
        let batch = decode_batch(take(ipc_len)?)?;
        entries.push(RecordEntry { topic_id, partition, base_offset, timestamp_us, batch, encoded: None });
    }
    Ok((part, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
            ("b", Arc::new(StringArray::from(vec![Some("x"), None, Some("ü")])) as _),
        ])
        .unwrap()
    }

    #[test]
    fn frame_round_trips_and_detects_damage() {
        let encoded = || EncodedEntry { partition: 0, encoded: Arc::new(ipc::encode(&batch()).unwrap()) };
        let entries = vec![(encoded(), 10), (EncodedEntry { partition: 3, ..encoded() }, 7)];
        let schema_message = ipc::schema_message(&batch().schema()).unwrap();
        let mut frame = encode_frame(42, 1_000, &schema_message, &entries, FramePart::Continued);
        assert_eq!(frame_part(&frame), FramePart::Continued);
        finish_frame(&mut frame, 77);
        let (payload, next) = read_frame(&frame, 0).unwrap();
        assert_eq!(next, frame.len());
        assert_eq!(payload_sequence(payload), Some(77));
        let (part, decoded) = decode_payload(payload).unwrap();
        assert_eq!(part, FramePart::Continued);
        assert_eq!(decoded.len(), 2);
        assert_eq!((decoded[1].topic_id, decoded[1].partition, decoded[1].base_offset), (42, 3, 7));
        assert_eq!(decoded[0].batch, batch());
        assert_eq!(read_frame(&frame, frame.len()), Err(FrameEnd::Clean));
        let mut preallocated = frame.clone();
        preallocated.resize(frame.len() + 100, 0);
        assert_eq!(read_frame(&preallocated, frame.len()), Err(FrameEnd::Clean));
        preallocated[frame.len() + 9] = 1;
        assert_eq!(read_frame(&preallocated, frame.len()), Err(FrameEnd::Clean), "a torn header that never got its length");
        preallocated[frame.len()] = 1;
        assert!(matches!(read_frame(&preallocated, frame.len()), Err(FrameEnd::Torn { .. })));

        let mut flipped = frame.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(read_frame(&flipped, 0), Err(FrameEnd::Torn { .. })));
        for cut in [3, FRAME_HEADER_BYTES, frame.len() - 1] {
            assert!(matches!(read_frame(&frame[..cut], 0), Err(FrameEnd::Torn { .. })));
        }
    }

    #[test]
    fn abandon_frames_and_older_versions_decode() {
        let mut abandon = abandon_frame();
        assert_eq!(frame_part(&abandon), FramePart::Abandon);
        finish_frame(&mut abandon, 5);
        let (payload, _) = read_frame(&abandon, 0).unwrap();
        let (part, entries) = decode_payload(payload).unwrap();
        assert_eq!((part, entries.len()), (FramePart::Abandon, 0));

        // A version 2 payload: no part byte, always a whole write.
        let mut version2 = vec![FORMAT_VERSION_WHOLE];
        version2.extend_from_slice(&9u64.to_le_bytes());
        version2.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(payload_sequence(&version2), Some(9));
        assert_eq!(decode_payload(&version2).unwrap().0, FramePart::Last);

        let mut unknown_part = payload.to_vec();
        unknown_part[9] = 7;
        assert!(decode_payload(&unknown_part).is_err());
    }
}
