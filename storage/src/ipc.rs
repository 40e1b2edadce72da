//! Arrow IPC messages encoded once. An append compresses its batch (LZ4_FRAME) into one IPC
//! record batch message; the WAL frames that message, and the sealer copies the same bytes into
//! the segment file instead of encoding the rows a second time. The segment's `_offset` and
//! `_timestamp` columns, unknown when the batch was encoded, are encoded as a small message of
//! their own and merged into the user columns' message: the merged message lists the user
//! columns' field nodes and buffers, then the system columns' with their buffer offsets moved
//! past the user columns' body, and its body is the two bodies one after the other.
//!
//! Messages are written in the IPC encapsulated format (continuation marker, padded metadata
//! length, metadata, body) with every message and body starting on a 64-byte boundary, as
//! arrow-rs writes them, so readers see ordinary IPC streams and files.

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use arrow_ipc::convert::IpcSchemaEncoder;
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_ipc::{
    root_as_message, Block, BodyCompressionBuilder, FieldNode, FooterBuilder, MessageBuilder, MessageHeader,
    MetadataVersion, RecordBatchBuilder,
};
use flatbuffers::FlatBufferBuilder;

use crate::{Result, StorageError};

/// Every message and body starts on this boundary (arrow-rs's default).
const ALIGNMENT: usize = 64;
const CONTINUATION: [u8; 4] = [0xff; 4];
const FILE_MAGIC: &[u8; 6] = b"ARROW1";

/// One record batch as an IPC message: its flatbuffer metadata and its body (compressed
/// buffers, a multiple of [`ALIGNMENT`] long).
#[derive(Debug)]
pub struct EncodedBatch {
    metadata: Vec<u8>,
    body: Vec<u8>,
}

impl EncodedBatch {
    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.metadata.len() + self.body.len()
    }
}

fn write_options() -> Result<IpcWriteOptions> {
    Ok(IpcWriteOptions::default().try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))?)
}

fn invalid(reason: impl Into<String>) -> StorageError {
    StorageError::Arrow(arrow::error::ArrowError::IpcError(reason.into()))
}

/// Encodes a batch as an LZ4-compressed record batch message. Dictionary columns (which would
/// need dictionary messages) are refused; topics, typed from SQL, never have them.
pub(crate) fn encode(batch: &RecordBatch) -> Result<EncodedBatch> {
    let mut tracker = DictionaryTracker::new(true);
    let (dictionaries, data) = IpcDataGenerator::default().encode(
        batch,
        &mut tracker,
        &write_options()?,
        &mut IpcWriteContext::default(),
    )?;
    if !dictionaries.is_empty() {
        return Err(invalid("dictionary-encoded columns cannot be stored"));
    }
    Ok(EncodedBatch { metadata: data.ipc_message, body: data.arrow_data })
}

/// The schema message of a stream or file of batches with this schema.
pub(crate) fn schema_message(schema: &Schema) -> Result<Vec<u8>> {
    let mut tracker = DictionaryTracker::new(true);
    let encoded =
        IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(schema, &mut tracker, &write_options()?);
    Ok(encoded.ipc_message)
}

fn padding(len: usize) -> usize {
    (ALIGNMENT - len % ALIGNMENT) % ALIGNMENT
}

/// Bytes [`write_message`] writes for this metadata and body length.
pub(crate) fn framed_len(metadata: usize, body: usize) -> usize {
    let header = 8 + metadata;
    header + padding(header) + body
}

/// Appends a message in the encapsulated format; returns the length of its padded header
/// (marker, length, metadata, padding) and of its body. The padding follows from the lengths
/// alone, so messages written back to back stay aligned relative to where the first began.
pub(crate) fn write_message(out: &mut Vec<u8>, metadata: &[u8], body: &[&[u8]]) -> (usize, usize) {
    let pad = padding(8 + metadata.len());
    out.extend_from_slice(&CONTINUATION);
    out.extend_from_slice(&((metadata.len() + pad) as i32).to_le_bytes());
    out.extend_from_slice(metadata);
    out.resize(out.len() + pad, 0);
    let mut body_len = 0;
    for part in body {
        out.extend_from_slice(part);
        body_len += part.len();
    }
    (8 + metadata.len() + pad, body_len)
}

fn write_end_of_stream(out: &mut Vec<u8>) {
    out.extend_from_slice(&CONTINUATION);
    out.extend_from_slice(&0i32.to_le_bytes());
}

/// Bytes of the IPC stream [`write_stream`] writes.
pub(crate) fn stream_len(schema_message: &[u8], batch: &EncodedBatch) -> usize {
    framed_len(schema_message.len(), 0) + framed_len(batch.metadata.len(), batch.body.len()) + 8
}

/// Appends an IPC stream holding the schema and one batch. Readers of the stream need only
/// 8-byte alignment of where it starts.
pub(crate) fn write_stream(out: &mut Vec<u8>, schema_message: &[u8], batch: &EncodedBatch) {
    write_message(out, schema_message, &[]);
    write_message(out, &batch.metadata, &[&batch.body]);
    write_end_of_stream(out);
}

fn parse(encoded: &EncodedBatch) -> Result<(arrow_ipc::Message<'_>, arrow_ipc::RecordBatch<'_>)> {
    let message = root_as_message(&encoded.metadata).map_err(|e| invalid(format!("bad IPC message: {e}")))?;
    let batch = message.header_as_record_batch().ok_or_else(|| invalid("not a record batch message"))?;
    Ok((message, batch))
}

/// The metadata of one record batch message holding `left`'s columns followed by `right`'s;
/// its body is `left.body` followed by `right.body`. Both must have the same row count and
/// compression.
fn merged_metadata(left: &EncodedBatch, right: &EncodedBatch) -> Result<Vec<u8>> {
    let (message, left_batch) = parse(left)?;
    let (_, right_batch) = parse(right)?;
    if left_batch.length() != right_batch.length() {
        return Err(invalid("merged batches differ in row count"));
    }
    let codec = |b: &arrow_ipc::RecordBatch| b.compression().map(|c| (c.codec(), c.method()));
    if codec(&left_batch) != codec(&right_batch) {
        return Err(invalid("merged batches differ in compression"));
    }
    let shift = left.body.len() as i64;
    let nodes: Vec<FieldNode> =
        left_batch.nodes().into_iter().flatten().chain(right_batch.nodes().into_iter().flatten()).copied().collect();
    let buffers: Vec<arrow_ipc::Buffer> = left_batch
        .buffers()
        .into_iter()
        .flatten()
        .copied()
        .chain(right_batch.buffers().into_iter().flatten().map(|b| arrow_ipc::Buffer::new(b.offset() + shift, b.length())))
        .collect();
    let variadic: Vec<i64> = left_batch
        .variadicBufferCounts()
        .into_iter()
        .flatten()
        .chain(right_batch.variadicBufferCounts().into_iter().flatten())
        .collect();

    let mut fbb = FlatBufferBuilder::with_capacity(left.metadata.len() + right.metadata.len() + 64);
    let nodes = fbb.create_vector(&nodes);
    let buffers = fbb.create_vector(&buffers);
    let variadic = (!variadic.is_empty()).then(|| fbb.create_vector(&variadic));
    let compression = codec(&left_batch).map(|(codec, method)| {
        let mut builder = BodyCompressionBuilder::new(&mut fbb);
        builder.add_codec(codec);
        builder.add_method(method);
        builder.finish()
    });
    let mut batch = RecordBatchBuilder::new(&mut fbb);
    batch.add_length(left_batch.length());
    batch.add_nodes(nodes);
    batch.add_buffers(buffers);
    if let Some(compression) = compression {
        batch.add_compression(compression);
    }
    if let Some(variadic) = variadic {
        batch.add_variadicBufferCounts(variadic);
    }
    let batch = batch.finish();
    let mut merged = MessageBuilder::new(&mut fbb);
    merged.add_version(message.version());
    merged.add_header_type(MessageHeader::RecordBatch);
    merged.add_header(batch.as_union_value());
    merged.add_bodyLength(shift + right.body.len() as i64);
    let merged = merged.finish();
    fbb.finish(merged, None);
    Ok(fbb.finished_data().to_vec())
}

/// An IPC file assembled from encoded messages.
pub(crate) struct FileAssembler {
    out: Vec<u8>,
    schema: Schema,
    blocks: Vec<Block>,
}

impl FileAssembler {
    pub fn new(schema: &Schema, capacity: usize) -> Result<Self> {
        let mut out = Vec::with_capacity(capacity + 1024);
        out.extend_from_slice(FILE_MAGIC);
        out.resize(ALIGNMENT, 0);
        write_message(&mut out, &schema_message(schema)?, &[]);
        Ok(Self { out, schema: schema.clone(), blocks: Vec::new() })
    }

    /// Appends one record batch made of `left`'s columns followed by `right`'s.
    pub fn push_merged(&mut self, left: &EncodedBatch, right: &EncodedBatch) -> Result<()> {
        let metadata = merged_metadata(left, right)?;
        let offset = self.out.len() as i64;
        let (header, body) = write_message(&mut self.out, &metadata, &[&left.body, &right.body]);
        self.blocks.push(Block::new(offset, header as i32, body as i64));
        Ok(())
    }

    /// Writes the end-of-stream marker and the footer.
    pub fn finish(mut self) -> Vec<u8> {
        write_end_of_stream(&mut self.out);
        let mut fbb = FlatBufferBuilder::new();
        let dictionaries = fbb.create_vector::<Block>(&[]);
        let batches = fbb.create_vector(&self.blocks);
        let schema = IpcSchemaEncoder::new().schema_to_fb_offset(&mut fbb, &self.schema);
        let mut footer = FooterBuilder::new(&mut fbb);
        footer.add_version(MetadataVersion::V5);
        footer.add_schema(schema);
        footer.add_dictionaries(dictionaries);
        footer.add_recordBatches(batches);
        let footer = footer.finish();
        fbb.finish(footer, None);
        let footer = fbb.finished_data();
        self.out.extend_from_slice(footer);
        self.out.extend_from_slice(&(footer.len() as i32).to_le_bytes());
        self.out.extend_from_slice(FILE_MAGIC);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow_ipc::reader::{FileReader, StreamReader};
    use std::sync::Arc;

    fn batch(column: &str, values: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_from_iter(vec![(column, Arc::new(StringArray::from(values)) as ArrayRef)]).unwrap()
    }

    #[test]
    fn stream_and_merged_file_read_back_with_arrow_readers() {
        let user = batch("s", vec![Some("a"), None, Some("ü".repeat(200).as_str())]);
        let extra = RecordBatch::try_from_iter(vec![("n", Arc::new(Int64Array::from(vec![7, 8, 9])) as ArrayRef)]).unwrap();
        let (encoded_user, encoded_extra) = (encode(&user).unwrap(), encode(&extra).unwrap());

        let mut stream = Vec::new();
        write_stream(&mut stream, &schema_message(&user.schema()).unwrap(), &encoded_user);
        assert_eq!(stream.len(), stream_len(&schema_message(&user.schema()).unwrap(), &encoded_user));
        let read: Vec<RecordBatch> = StreamReader::try_new(&stream[..], None).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(read, vec![user.clone()]);

        let both = Schema::new(vec![user.schema().field(0).clone(), extra.schema().field(0).clone()]);
        let mut file = FileAssembler::new(&both, 0).unwrap();
        file.push_merged(&encoded_user, &encoded_extra).unwrap();
        file.push_merged(&encoded_user, &encoded_extra).unwrap();
        let bytes = file.finish();
        let expected = RecordBatch::try_new(Arc::new(both), vec![user.column(0).clone(), extra.column(0).clone()]).unwrap();
        let read: Vec<RecordBatch> =
            FileReader::try_new(std::io::Cursor::new(&bytes), None).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(read, vec![expected.clone(), expected.clone()]);
        let second_only: Vec<RecordBatch> =
            FileReader::try_new(std::io::Cursor::new(&bytes), Some(vec![1])).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(second_only[1].column(0), extra.column(0));
    }

    #[test]
    fn merging_refuses_different_row_counts() {
        let left = encode(&batch("a", vec![Some("x")])).unwrap();
        let right = encode(&batch("b", vec![Some("x"), Some("y")])).unwrap();
        assert!(merged_metadata(&left, &right).is_err());
    }
}
