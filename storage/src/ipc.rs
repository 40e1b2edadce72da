//! Arrow IPC messages encoded once. An append compresses its batch (LZ4_FRAME) into one IPC
//! record batch message; the WAL frames that message, and the sealer copies the same bytes into
//! the segment file instead of encoding the rows a second time. The segment's `_offset` and
//! `_timestamp` columns, unknown when the batch was encoded, are laid out straight from the
//! batch's first offset and append time, as arrow-rs would lay them out, and added to the user
//! columns' message ([`FileAssembler::push_with_system_columns`]). Building them as arrays and
//! encoding those as a message of their own, then merging the two messages, took a sixth of the
//! CPU of 64 writers appending 128-row statements.
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
///
/// arrow-rs lays the batch out uncompressed; its buffers are then compressed one by one
/// ([`crate::lz4`]), which costs less than arrow-rs's own compression of each buffer.
pub(crate) fn encode(batch: &RecordBatch) -> Result<EncodedBatch> {
    let plain = uncompressed(batch)?;
    compressed(&plain.ipc_message, &plain.arrow_data)
}

/// [`encode`], also returning the batch as read back from its uncompressed layout, whose
/// buffers hold just the batch's rows: a compact copy of a slice of larger buffers, which the
/// layout already made (no second copy of the values).
pub(crate) fn encode_compact(batch: &RecordBatch) -> Result<(EncodedBatch, RecordBatch)> {
    let plain = uncompressed(batch)?;
    let encoded = compressed(&plain.ipc_message, &plain.arrow_data)?;
    let (message, layout) = parse_metadata(&plain.ipc_message)?;
    let body = arrow::buffer::Buffer::from_vec(plain.arrow_data);
    let copy = arrow_ipc::reader::read_record_batch(&body, layout, batch.schema(), &Default::default(), None, &message.version())?;
    Ok((encoded, copy))
}

/// The batch as an uncompressed record batch message (metadata and body).
fn uncompressed(batch: &RecordBatch) -> Result<arrow_ipc::writer::EncodedData> {
    let mut tracker = DictionaryTracker::new(true);
    let (dictionaries, plain) =
        IpcDataGenerator::default().encode(batch, &mut tracker, &IpcWriteOptions::default(), &mut IpcWriteContext::default())?;
    if !dictionaries.is_empty() {
        return Err(invalid("dictionary-encoded columns cannot be stored"));
    }
    Ok(plain)
}

/// An uncompressed record batch message with every buffer compressed (see [`push_buffer`]).
fn compressed(metadata: &[u8], body: &[u8]) -> Result<EncodedBatch> {
    let (message, batch) = parse_metadata(metadata)?;
    if batch.compression().is_some() {
        return Err(invalid("the message is compressed already"));
    }
    let mut out = Vec::with_capacity(body.len() / 2 + ALIGNMENT);
    let mut buffers = Vec::new();
    for buffer in batch.buffers().into_iter().flatten() {
        let input = usize::try_from(buffer.offset())
            .ok()
            .zip(usize::try_from(buffer.length()).ok())
            .and_then(|(start, len)| body.get(start..start.checked_add(len)?))
            .ok_or_else(|| invalid("a buffer lies outside the message body"))?;
        buffers.push(push_buffer(&mut out, input, true)?);
    }
    let layout = BatchLayout {
        version: message.version(),
        length: batch.length(),
        nodes: batch.nodes().into_iter().flatten().copied().collect(),
        buffers,
        variadic: batch.variadicBufferCounts().into_iter().flatten().collect(),
        compression: Some((arrow_ipc::CompressionType::LZ4_FRAME, arrow_ipc::BodyCompressionMethod::BUFFER)),
    };
    Ok(EncodedBatch { metadata: layout.metadata(out.len()), body: out })
}

/// Appends one buffer to a message body as the IPC format stores it, then pads the body to
/// [`ALIGNMENT`]; returns where the buffer lies. Compressed, it is the buffer's uncompressed
/// length, then its LZ4 frame; or -1, then the buffer as it is, when compressing would not make
/// it smaller (as arrow-rs decides it). An empty buffer takes no bytes.
fn push_buffer(out: &mut Vec<u8>, input: &[u8], compress: bool) -> Result<arrow_ipc::Buffer> {
    let offset = out.len();
    if !input.is_empty() && compress {
        out.extend_from_slice(&(input.len() as i64).to_le_bytes());
        crate::lz4::write_frame(input, out)?;
        if out.len() - offset > input.len() {
            out.truncate(offset);
            out.extend_from_slice(&(-1i64).to_le_bytes());
            out.extend_from_slice(input);
        }
    } else {
        out.extend_from_slice(input);
    }
    let buffer = arrow_ipc::Buffer::new(offset as i64, (out.len() - offset) as i64);
    out.resize(out.len() + padding(out.len()), 0);
    Ok(buffer)
}

/// Encodes a segment batch's `_offset` column (`rows` offsets from `base_offset`) and
/// `_timestamp` column (`timestamp_us` in every row) into `body`, as arrow-rs lays them out
/// (neither has nulls, so each has an empty validity buffer, then its values), compressed or
/// not; returns their buffers. `values` is scratch space.
fn encode_system_columns(
    rows: usize,
    base_offset: u64,
    timestamp_us: i64,
    compress: bool,
    values: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> Result<[arrow_ipc::Buffer; 4]> {
    body.clear();
    let offsets_validity = push_buffer(body, &[], compress)?;
    values.clear();
    let base = base_offset as i64;
    values.extend((base..base + rows as i64).flat_map(i64::to_le_bytes));
    let offsets = push_buffer(body, values, compress)?;
    let timestamps_validity = push_buffer(body, &[], compress)?;
    values.clear();
    values.extend(std::iter::repeat_n(timestamp_us.to_le_bytes(), rows).flatten());
    let timestamps = push_buffer(body, values, compress)?;
    Ok([offsets_validity, offsets, timestamps_validity, timestamps])
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
    parse_metadata(&encoded.metadata)
}

fn parse_metadata(metadata: &[u8]) -> Result<(arrow_ipc::Message<'_>, arrow_ipc::RecordBatch<'_>)> {
    let message = root_as_message(metadata).map_err(|e| invalid(format!("bad IPC message: {e}")))?;
    let batch = message.header_as_record_batch().ok_or_else(|| invalid("not a record batch message"))?;
    Ok((message, batch))
}

/// What a record batch message's metadata lists.
struct BatchLayout {
    version: MetadataVersion,
    length: i64,
    nodes: Vec<FieldNode>,
    buffers: Vec<arrow_ipc::Buffer>,
    variadic: Vec<i64>,
    compression: Option<(arrow_ipc::CompressionType, arrow_ipc::BodyCompressionMethod)>,
}

impl BatchLayout {
    /// The message's flatbuffer, for a body of `body_len` bytes.
    fn metadata(&self, body_len: usize) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::with_capacity(64 + 16 * (self.nodes.len() + self.buffers.len()));
        let nodes = fbb.create_vector(&self.nodes);
        let buffers = fbb.create_vector(&self.buffers);
        let variadic = (!self.variadic.is_empty()).then(|| fbb.create_vector(&self.variadic));
        let compression = self.compression.map(|(codec, method)| {
            let mut builder = BodyCompressionBuilder::new(&mut fbb);
            builder.add_codec(codec);
            builder.add_method(method);
            builder.finish()
        });
        let mut batch = RecordBatchBuilder::new(&mut fbb);
        batch.add_length(self.length);
        batch.add_nodes(nodes);
        batch.add_buffers(buffers);
        if let Some(compression) = compression {
            batch.add_compression(compression);
        }
        if let Some(variadic) = variadic {
            batch.add_variadicBufferCounts(variadic);
        }
        let batch = batch.finish();
        let mut message = MessageBuilder::new(&mut fbb);
        message.add_version(self.version);
        message.add_header_type(MessageHeader::RecordBatch);
        message.add_header(batch.as_union_value());
        message.add_bodyLength(body_len as i64);
        let message = message.finish();
        fbb.finish(message, None);
        fbb.finished_data().to_vec()
    }
}

/// The codec of a stored record batch message: whether its buffers are LZ4_FRAME-compressed.
fn stored_compression(batch: &arrow_ipc::RecordBatch<'_>) -> Result<bool> {
    match batch.compression().map(|c| c.codec()) {
        None => Ok(false),
        Some(arrow_ipc::CompressionType::LZ4_FRAME) => Ok(true),
        Some(_) => Err(invalid("stored batches are compressed with LZ4_FRAME or not at all")),
    }
}

fn file_offset(value: i64, what: &str) -> Result<usize> {
    usize::try_from(value).map_err(|_| invalid(format!("negative {what} in an IPC file footer")))
}

/// The record batch messages of an IPC file, in order: each one's flatbuffer metadata and its
/// body, sliced from `file` without copying. Files with dictionaries are refused (segments have
/// none).
pub(crate) fn file_messages(file: &bytes::Bytes) -> Result<Vec<(bytes::Bytes, bytes::Bytes)>> {
    let trailer = file.len().checked_sub(10).filter(|_| file.ends_with(FILE_MAGIC)).ok_or_else(|| invalid("not an Arrow IPC file"))?;
    let mut length = [0u8; 4];
    length.copy_from_slice(&file[trailer..trailer + 4]);
    let footer_start = usize::try_from(i32::from_le_bytes(length))
        .ok()
        .and_then(|len| trailer.checked_sub(len))
        .ok_or_else(|| invalid("an IPC file footer length out of range"))?;
    let footer = arrow_ipc::root_as_footer(&file[footer_start..trailer]).map_err(|e| invalid(format!("bad IPC file footer: {e}")))?;
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err(invalid("an IPC file with dictionaries is not a segment"));
    }
    let mut messages = Vec::new();
    for block in footer.recordBatches().into_iter().flatten() {
        let start = file_offset(block.offset(), "offset")?;
        let metadata_len = usize::try_from(block.metaDataLength()).map_err(|_| invalid("negative metadata length"))?;
        let body_start = start.checked_add(metadata_len);
        let body_end = body_start.and_then(|s| s.checked_add(file_offset(block.bodyLength(), "body length").ok()?));
        match (body_start, body_end) {
            (Some(body_start), Some(body_end)) if metadata_len >= 8 && body_end <= footer_start && file[start..start + 4] == CONTINUATION => {
                messages.push((file.slice(start + 8..body_start), file.slice(body_start..body_end)));
            }
            _ => return Err(invalid("an IPC file block lies outside the file")),
        }
    }
    Ok(messages)
}

/// Rows of a record batch message.
pub(crate) fn message_rows(metadata: &[u8]) -> Result<u64> {
    let (_, batch) = parse_metadata(metadata)?;
    u64::try_from(batch.length()).map_err(|_| invalid("negative row count"))
}

/// The `_partition` column's part of a message body (an empty validity buffer, then the
/// partition in every row, compressed or not), encoded once and reused for each message of as
/// many rows: a segment's batches mostly have the same count.
#[derive(Default)]
pub(crate) struct PartitionColumn {
    /// For which partition, row count and compression `bytes` was encoded, and its buffers
    /// (offsets from the start of `bytes`).
    encoded: Option<((i32, usize, bool), [arrow_ipc::Buffer; 2])>,
    bytes: Vec<u8>,
}

impl PartitionColumn {
    fn encode(&mut self, partition: i32, rows: usize, compress: bool) -> Result<[arrow_ipc::Buffer; 2]> {
        let key = (partition, rows, compress);
        match self.encoded {
            Some((encoded, buffers)) if encoded == key => Ok(buffers),
            _ => {
                self.bytes.clear();
                let validity = push_buffer(&mut self.bytes, &[], compress)?;
                let values: Vec<u8> = std::iter::repeat_n(partition.to_le_bytes(), rows).flatten().collect();
                let values = push_buffer(&mut self.bytes, &values, compress)?;
                self.encoded = Some((key, [validity, values]));
                Ok([validity, values])
            }
        }
    }
}

/// A segment file's record batch message (the user columns, `_deleted` for a keyed table,
/// `_offset`, `_timestamp`) made into one of the topic's full schema (the user columns,
/// `_partition`, `_offset`, `_timestamp`, then `_deleted` for a keyed table). The stored buffers
/// are kept as they are, compressed, in a copy of the body; only the metadata is new, listing
/// them in the new column order, and `_partition`'s buffers (`partition` in every row,
/// compressed as the rest, from `column`) are added at the body's end. Every system column has
/// one field node and two buffers, so the user columns are whatever comes before the last two
/// or three.
pub(crate) fn with_partition_column(
    metadata: &[u8],
    body: &[u8],
    partition: i32,
    keyed: bool,
    column: &mut PartitionColumn,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let (message, batch) = parse_metadata(metadata)?;
    let rows = usize::try_from(batch.length()).map_err(|_| invalid("negative row count"))?;
    let compress = stored_compression(&batch)?;
    let nodes: Vec<FieldNode> = batch.nodes().into_iter().flatten().copied().collect();
    let buffers: Vec<arrow_ipc::Buffer> = batch.buffers().into_iter().flatten().copied().collect();
    let system = if keyed { 3 } else { 2 };
    if nodes.len() < system || buffers.len() < 2 * system {
        return Err(invalid("a segment message without its system columns"));
    }
    let (user_nodes, system_nodes) = nodes.split_at(nodes.len() - system);
    let (user_buffers, system_buffers) = buffers.split_at(buffers.len() - 2 * system);
    let partition_buffers = column.encode(partition, rows, compress)?;
    let mut out = Vec::with_capacity(body.len() + ALIGNMENT + column.bytes.len());
    out.extend_from_slice(body);
    out.resize(out.len() + padding(out.len()), 0);
    // Aligned here, so the column's own padding stays right.
    let shift = out.len() as i64;
    out.extend_from_slice(&column.bytes);
    let [validity, values] = partition_buffers.map(|b| arrow_ipc::Buffer::new(b.offset() + shift, b.length()));
    // The file's order of system columns, and the full schema's.
    let (stored_nodes, stored_buffers) = if keyed {
        let order = [1, 2, 0]; // _offset, _timestamp, _deleted
        (
            order.iter().map(|&i| system_nodes[i]).collect::<Vec<_>>(),
            order.iter().flat_map(|&i| [system_buffers[2 * i], system_buffers[2 * i + 1]]).collect::<Vec<_>>(),
        )
    } else {
        (system_nodes.to_vec(), system_buffers.to_vec())
    };
    let layout = BatchLayout {
        version: message.version(),
        length: batch.length(),
        nodes: user_nodes.iter().copied().chain([FieldNode::new(batch.length(), 0)]).chain(stored_nodes).collect(),
        buffers: user_buffers.iter().copied().chain([validity, values]).chain(stored_buffers).collect(),
        variadic: batch.variadicBufferCounts().into_iter().flatten().collect(),
        compression: batch.compression().map(|c| (c.codec(), c.method())),
    };
    Ok((layout.metadata(out.len()), out))
}

/// Decodes a record batch message of `schema`.
pub(crate) fn decode_message(metadata: &[u8], body: Vec<u8>, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch> {
    decode_message_buffer(metadata, &arrow::buffer::Buffer::from_vec(body), schema)
}

/// [`decode_message`] of a body held in an Arrow buffer. The rows are validated as arrow-rs
/// validates them (offsets, UTF-8, null counts against validity bits).
fn decode_message_buffer(metadata: &[u8], body: &arrow::buffer::Buffer, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch> {
    let (message, batch) = parse_metadata(metadata)?;
    Ok(arrow_ipc::reader::read_record_batch(body, batch, schema.clone(), &Default::default(), None, &message.version())?)
}

/// A record batch message of `schema` encoded elsewhere (by a Flight client), decoded, and kept
/// as the batch's stored encoding when its buffers are LZ4_FRAME-compressed one by one as
/// [`encode`] compresses them: the metadata rebuilt from what it lists (a client's custom
/// metadata is not kept) and the body copied, padded to [`ALIGNMENT`]. The encoding is `None`
/// for a message compressed otherwise or not at all, or when the caller will not `keep` it.
/// What is stored is exactly what was decoded and validated, so a reader of the log gets these
/// rows back.
pub(crate) fn decode_sent(
    metadata: &[u8],
    body: bytes::Bytes,
    schema: &arrow::datatypes::SchemaRef,
    keep: bool,
) -> Result<(RecordBatch, Option<EncodedBatch>)> {
    let (message, batch) = parse_metadata(metadata)?;
    let lz4 = batch.compression().is_some_and(|c| {
        c.codec() == arrow_ipc::CompressionType::LZ4_FRAME && c.method() == arrow_ipc::BodyCompressionMethod::BUFFER
    });
    let stored = (keep && lz4).then(|| {
        let layout = BatchLayout {
            version: message.version(),
            length: batch.length(),
            nodes: batch.nodes().into_iter().flatten().copied().collect(),
            buffers: batch.buffers().into_iter().flatten().copied().collect(),
            variadic: batch.variadicBufferCounts().into_iter().flatten().collect(),
            compression: Some((arrow_ipc::CompressionType::LZ4_FRAME, arrow_ipc::BodyCompressionMethod::BUFFER)),
        };
        let mut padded = Vec::with_capacity(body.len() + ALIGNMENT);
        padded.extend_from_slice(&body);
        padded.resize(padded.len() + padding(padded.len()), 0);
        EncodedBatch { metadata: layout.metadata(padded.len()), body: padded }
    });
    let decoded = decode_message_buffer(metadata, &arrow::buffer::Buffer::from(body), schema)?;
    if let Some(stored) = &stored {
        // The reader takes the field nodes and buffers it needs from the front; anything listed
        // after them would be taken for the system columns a segment appends.
        let (mut nodes, mut buffers) = (0, 0);
        for column in decoded.columns() {
            count_layout(&column.to_data(), &mut nodes, &mut buffers);
        }
        let (_, listed) = parse(stored)?;
        let listed_nodes = listed.nodes().map_or(0, |n| n.len());
        let listed_buffers = listed.buffers().map_or(0, |b| b.len());
        if (listed_nodes, listed_buffers) != (nodes, buffers) || listed.variadicBufferCounts().is_some_and(|v| !v.is_empty()) {
            return Err(invalid(format!(
                "the record batch message lists {listed_nodes} field nodes and {listed_buffers} buffers; its schema has {nodes} and {buffers}"
            )));
        }
    }
    Ok((decoded, stored))
}

/// The field nodes and buffers an IPC record batch message lists for an array: one node, a
/// validity buffer and the array's own buffers, then its children's.
fn count_layout(data: &arrow::array::ArrayData, nodes: &mut usize, buffers: &mut usize) {
    *nodes += 1;
    *buffers += 1 + data.buffers().len();
    for child in data.child_data() {
        count_layout(child, nodes, buffers);
    }
}

/// An IPC file assembled from encoded messages.
pub(crate) struct FileAssembler {
    out: Vec<u8>,
    schema: Schema,
    blocks: Vec<Block>,
    /// Scratch space for the system columns of the batch being pushed: their values, and
    /// their part of the message body.
    values: Vec<u8>,
    system_body: Vec<u8>,
}

impl FileAssembler {
    pub fn new(schema: &Schema, capacity: usize) -> Result<Self> {
        let mut out = Vec::with_capacity(capacity + 1024);
        out.extend_from_slice(FILE_MAGIC);
        out.resize(ALIGNMENT, 0);
        write_message(&mut out, &schema_message(schema)?, &[]);
        Ok(Self { out, schema: schema.clone(), blocks: Vec::new(), values: Vec::new(), system_body: Vec::new() })
    }

    /// Appends one record batch: `user`'s columns followed by `_offset` (from `base_offset`)
    /// and `_timestamp` (`timestamp_us` in every row), compressed as `user` is. The message
    /// lists `user`'s field nodes and buffers, then the system columns' with their buffer
    /// offsets moved past `user`'s body; its body is `user`'s, then the system columns'.
    pub fn push_with_system_columns(&mut self, user: &EncodedBatch, base_offset: u64, timestamp_us: i64) -> Result<()> {
        let (message, batch) = parse(user)?;
        let rows = usize::try_from(batch.length()).map_err(|_| invalid("negative row count"))?;
        let compression = batch.compression().map(|c| (c.codec(), c.method()));
        let compress = stored_compression(&batch)?;
        let system =
            encode_system_columns(rows, base_offset, timestamp_us, compress, &mut self.values, &mut self.system_body)?;
        let shift = user.body.len() as i64;
        let node = FieldNode::new(batch.length(), 0);
        let layout = BatchLayout {
            version: message.version(),
            length: batch.length(),
            nodes: batch.nodes().into_iter().flatten().copied().chain([node, node]).collect(),
            buffers: batch
                .buffers()
                .into_iter()
                .flatten()
                .copied()
                .chain(system.iter().map(|b| arrow_ipc::Buffer::new(b.offset() + shift, b.length())))
                .collect(),
            variadic: batch.variadicBufferCounts().into_iter().flatten().collect(),
            compression,
        };
        let metadata = layout.metadata(user.body.len() + self.system_body.len());
        let offset = self.out.len() as i64;
        let (header, body) = write_message(&mut self.out, &metadata, &[&user.body, &self.system_body]);
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

    /// `_offset` and `_timestamp` columns as arrays, as a segment's schema types them.
    fn system_batch(rows: usize, base_offset: u64, timestamp_us: i64) -> RecordBatch {
        let schema = crate::segment::segment_schema(&Schema::empty());
        let columns = vec![crate::segment::offset_array(base_offset, rows), crate::segment::timestamp_array(timestamp_us, rows)];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn stream_and_file_with_system_columns_read_back_with_arrow_readers() {
        let user = batch("s", vec![Some("a"), None, Some("ü".repeat(200).as_str())]);
        let encoded_user = encode(&user).unwrap();

        let mut stream = Vec::new();
        write_stream(&mut stream, &schema_message(&user.schema()).unwrap(), &encoded_user);
        assert_eq!(stream.len(), stream_len(&schema_message(&user.schema()).unwrap(), &encoded_user));
        let read: Vec<RecordBatch> = StreamReader::try_new(&stream[..], None).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(read, vec![user.clone()]);

        let schema = crate::segment::segment_schema(&user.schema());
        let mut file = FileAssembler::new(&schema, 0).unwrap();
        file.push_with_system_columns(&encoded_user, 10, 1_700_000_000_000_000).unwrap();
        file.push_with_system_columns(&encoded_user, 13, -5).unwrap();
        let bytes = file.finish();
        let expected = |base_offset, timestamp_us| {
            let system = system_batch(3, base_offset, timestamp_us);
            let columns = vec![user.column(0).clone(), system.column(0).clone(), system.column(1).clone()];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let read: Vec<RecordBatch> =
            FileReader::try_new(std::io::Cursor::new(&bytes), None).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(read, vec![expected(10, 1_700_000_000_000_000), expected(13, -5)]);
        let offsets_only: Vec<RecordBatch> =
            FileReader::try_new(std::io::Cursor::new(&bytes), Some(vec![1])).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(offsets_only[1].column(0), expected(13, -5).column(1));
    }

    #[test]
    fn segment_messages_gain_a_partition_column_without_decoding() {
        use arrow::array::{BooleanArray, Int32Array};
        use arrow::datatypes::{DataType, Field};
        let names: Vec<Option<String>> = (0..3000).map(|i| (i % 5 != 0).then(|| format!("n{i}"))).collect();
        let user = RecordBatch::try_from_iter(vec![
            ("s", Arc::new(StringArray::from(names)) as ArrayRef),
            ("v", Arc::new(Int64Array::from_iter_values(0..3000)) as ArrayRef),
        ])
        .unwrap();
        let deleted = Arc::new(BooleanArray::from_iter((0..3000).map(|i| Some(i % 7 == 0)))) as ArrayRef;
        let keyed_user = RecordBatch::try_from_iter(vec![
            ("s", user.column(0).clone()),
            ("v", user.column(1).clone()),
            ("_deleted", deleted.clone()),
        ])
        .unwrap();
        for keyed in [false, true] {
            let stored_user = if keyed { &keyed_user } else { &user };
            let mut file = FileAssembler::new(&crate::segment::segment_schema(&stored_user.schema()), 0).unwrap();
            file.push_with_system_columns(&encode(stored_user).unwrap(), 100, 7).unwrap();
            file.push_with_system_columns(&encode(&stored_user.slice(10, 5)).unwrap(), 3100, 8).unwrap();
            let file = bytes::Bytes::from(file.finish());
            let messages = file_messages(&file).unwrap();
            assert_eq!(messages.len(), 2);
            // Reused across messages: the second has other rows, so it is encoded again.
            let mut column = PartitionColumn::default();
            let mut fields: Vec<Field> = user.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new("_partition", DataType::Int32, false));
            fields.extend(crate::segment::segment_schema(&Schema::empty()).fields().iter().map(|f| f.as_ref().clone()));
            if keyed {
                fields.push(Field::new("_deleted", DataType::Boolean, true));
            }
            let full = Arc::new(Schema::new(fields));
            for ((metadata, body), (start, len, base_offset, timestamp_us)) in messages.iter().zip([(0, 3000, 100, 7), (10, 5, 3100, 8)]) {
                assert_eq!(message_rows(metadata).unwrap(), len as u64);
                let rewritten = with_partition_column(metadata, body, 4, keyed, &mut column).unwrap();
                // The encoded column, reused, gives the same message; a fresh one as well.
                assert_eq!(with_partition_column(metadata, body, 4, keyed, &mut column).unwrap(), rewritten);
                assert_eq!(with_partition_column(metadata, body, 4, keyed, &mut PartitionColumn::default()).unwrap(), rewritten);
                let (metadata, body) = rewritten;
                let stored_body = body.len();
                let decoded = decode_message(&metadata, body, &full).unwrap();
                let system = system_batch(len, base_offset, timestamp_us);
                let mut columns = vec![
                    user.column(0).slice(start, len),
                    user.column(1).slice(start, len),
                    Arc::new(Int32Array::from(vec![4; len])) as ArrayRef,
                    system.column(0).clone(),
                    system.column(1).clone(),
                ];
                if keyed {
                    columns.push(deleted.slice(start, len));
                }
                assert_eq!(decoded, RecordBatch::try_new(full.clone(), columns).unwrap(), "keyed: {keyed}");
                // The stored buffers stay compressed: the body is smaller than the rows plain.
                assert!(stored_body < decoded.get_array_memory_size() / 2, "{stored_body} bytes");
            }
        }
        assert!(file_messages(&bytes::Bytes::from_static(b"ARROW1")).is_err());
        assert!(file_messages(&bytes::Bytes::from_static(b"ARROW1\0\0\xff\xff\xff\x7fARROW1")).is_err());
    }

    #[test]
    fn system_columns_are_laid_out_as_arrow_rs_lays_them_out() {
        // 10 000 rows make 80 000-byte buffers: more than one LZ4 block size.
        for (rows, base_offset, timestamp_us) in [(0, 0, 0), (1, 7, -1), (128, 1 << 40, 1_700_000_000_000_000), (10_000, 3, 42)] {
            let arrays = system_batch(rows, base_offset, timestamp_us);
            let (mut values, mut body) = (Vec::new(), Vec::new());
            // Uncompressed: arrow-rs's own layout, byte for byte.
            let buffers = encode_system_columns(rows, base_offset, timestamp_us, false, &mut values, &mut body).unwrap();
            let plain = uncompressed(&arrays).unwrap();
            let (_, layout) = parse_metadata(&plain.ipc_message).unwrap();
            assert_eq!(buffers.to_vec(), layout.buffers().unwrap().iter().copied().collect::<Vec<_>>(), "{rows} rows");
            assert_eq!(body, plain.arrow_data, "{rows} rows");
            // Compressed: as a batch of those arrays encodes.
            let buffers = encode_system_columns(rows, base_offset, timestamp_us, true, &mut values, &mut body).unwrap();
            let encoded = encode(&arrays).unwrap();
            let (_, layout) = parse(&encoded).unwrap();
            assert_eq!(buffers.to_vec(), layout.buffers().unwrap().iter().copied().collect::<Vec<_>>(), "{rows} rows");
            assert_eq!(body, encoded.body, "{rows} rows");
        }
    }

    #[test]
    fn system_columns_refuse_a_codec_segments_do_not_use() {
        let layout = BatchLayout {
            version: MetadataVersion::V5,
            length: 0,
            nodes: Vec::new(),
            buffers: Vec::new(),
            variadic: Vec::new(),
            compression: Some((arrow_ipc::CompressionType::ZSTD, arrow_ipc::BodyCompressionMethod::BUFFER)),
        };
        let zstd = EncodedBatch { metadata: layout.metadata(0), body: Vec::new() };
        let mut file = FileAssembler::new(&Schema::empty(), 0).unwrap();
        let error = file.push_with_system_columns(&zstd, 0, 0).unwrap_err();
        assert!(error.to_string().contains("LZ4_FRAME"), "{error}");
    }

    #[test]
    fn a_compact_encoding_reads_back_the_slice_in_buffers_of_its_own() {
        let names: Vec<Option<String>> = (0..1000).map(|i| (i % 3 != 0).then(|| format!("name-{i}"))).collect();
        let parent = RecordBatch::try_from_iter(vec![
            ("v", Arc::new(Int64Array::from_iter_values(0..1000)) as ArrayRef),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("d", Arc::new(arrow::array::Decimal128Array::from_iter_values(0..1000).with_precision_and_scale(20, 2).unwrap()) as ArrayRef),
        ])
        .unwrap();
        // The allocations a batch's buffers hold, each counted once (columns of a read-back
        // batch share one).
        let held = |b: &RecordBatch| {
            let mut seen = std::collections::HashMap::new();
            for column in b.columns() {
                let data = column.to_data();
                for buffer in data.buffers().iter().chain(data.nulls().map(|n| n.buffer())) {
                    seen.insert(buffer.data_ptr().as_ptr() as usize, buffer.capacity());
                }
            }
            seen.values().sum::<usize>()
        };
        for (offset, len) in [(500, 100), (0, 1), (999, 1), (3, 0)] {
            let slice = parent.slice(offset, len);
            let (encoded, copy) = encode_compact(&slice).unwrap();
            assert_eq!(copy, slice);
            assert!(held(&copy) * 4 < held(&parent), "{} bytes held against the parent's {}", held(&copy), held(&parent));
            let plain = encode(&slice).unwrap();
            assert_eq!((encoded.metadata, encoded.body), (plain.metadata, plain.body));
        }
    }

    /// Arrow's stream reader (which decodes every LZ4 frame) gives back `batch`, and the body
    /// holds each buffer compressed: smaller than arrow-rs's uncompressed layout when the data
    /// repeats.
    fn reads_back(batch: &RecordBatch) -> usize {
        let encoded = encode(batch).unwrap();
        assert_eq!(encoded.body.len() % ALIGNMENT, 0);
        let mut stream = Vec::new();
        write_stream(&mut stream, &schema_message(&batch.schema()).unwrap(), &encoded);
        let read: Vec<RecordBatch> = StreamReader::try_new(&stream[..], None).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(read, vec![batch.clone()]);
        encoded.body.len()
    }

    #[test]
    fn every_column_type_reads_back_compressed() {
        use arrow::array::{BinaryArray, BooleanArray, Decimal128Array, Float64Array, ListArray, TimestampMicrosecondArray};
        use arrow::datatypes::Int32Type;
        let rows = 30_000usize;
        let names: Vec<Option<String>> = (0..rows).map(|i| (i % 7 != 0).then(|| format!("https://www.nexmark.com/item.htm?query={i}"))).collect();
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>((0..rows).map(|i| (i % 5 != 0).then(|| vec![Some(i as i32), None])));
        let batch = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("flag", Arc::new(BooleanArray::from_iter((0..rows).map(|i| (i % 3 != 0).then_some(i % 2 == 0)))) as ArrayRef),
            ("price", Arc::new(Decimal128Array::from_iter_values((0..rows as i128).map(|i| i * 101)).with_precision_and_scale(20, 2).unwrap()) as ArrayRef),
            ("ratio", Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64 / 3.0))) as ArrayRef),
            ("at", Arc::new(TimestampMicrosecondArray::from_iter_values((0..rows as i64).map(|i| 1_700_000_000_000_000 + i))) as ArrayRef),
            ("bytes", Arc::new(BinaryArray::from_iter((0..rows).map(|i| (i % 4 != 0).then(|| vec![i as u8; i % 9])))) as ArrayRef),
            ("list", Arc::new(lists) as ArrayRef),
        ])
        .unwrap();
        let whole = reads_back(&batch);
        let (plain_metadata, plain_body) = {
            let mut tracker = DictionaryTracker::new(true);
            let (_, plain) = IpcDataGenerator::default()
                .encode(&batch, &mut tracker, &IpcWriteOptions::default(), &mut IpcWriteContext::default())
                .unwrap();
            (plain.ipc_message, plain.arrow_data)
        };
        assert!(whole * 2 < plain_body.len(), "{whole} compressed bytes against {} plain", plain_body.len());
        // A compressed message is not compressed again.
        let once = compressed(&plain_metadata, &plain_body).unwrap();
        assert!(compressed(&once.metadata, &once.body).is_err());
        // Slices (offsets and validity bits not at zero), a single row, no rows.
        for (offset, len) in [(1, 1000), (7, 1), (rows - 3, 3), (0, 0)] {
            reads_back(&batch.slice(offset, len));
        }
    }

    #[test]
    fn incompressible_buffers_are_stored_as_they_are() {
        let noise: Vec<i64> = (0..2000i64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)).collect();
        let batch = RecordBatch::try_from_iter(vec![("n", Arc::new(Int64Array::from(noise)) as ArrayRef)]).unwrap();
        let encoded = encode(&batch).unwrap();
        let (_, message) = parse(&encoded).unwrap();
        let buffers: Vec<_> = message.buffers().unwrap().iter().copied().collect();
        // No validity buffer; the values stored after the -1 marker, not compressed.
        assert_eq!(buffers.len(), 2);
        let values = &encoded.body[buffers[1].offset() as usize..][..buffers[1].length() as usize];
        assert_eq!(values[..8], (-1i64).to_le_bytes());
        assert_eq!(values.len(), 8 + 2000 * 8);
        reads_back(&batch);
    }
}

