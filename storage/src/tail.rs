//! The in-memory tail of a partition: acknowledged rows not yet sealed into a segment.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;

use crate::ipc::EncodedBatch;

/// A batch of user columns with the offset of its first row and its append time.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub base_offset: u64,
    pub timestamp_us: i64,
    pub batch: RecordBatch,
    /// The batch as the append encoded it for the WAL, which the sealer copies into the
    /// segment (`None` for batches replayed from the WAL: the sealer encodes those).
    pub(crate) encoded: Option<Arc<EncodedBatch>>,
    /// [`rows_bytes`] of `batch`, worked out once: it is needed when the batch enters the tail,
    /// when it leaves, and by the sealer, and costs a copy of every column's description.
    pub(crate) rows_bytes: u64,
}

/// Memory a batch in the tail takes beyond its rows' bytes and its encoding: its arrays,
/// buffers and their allocations, its encoding's, its place in the tail. Without it, a tail of
/// 10-row writes held about three times what it counted (a load test's memory grew by 110 MB a
/// minute between seals).
pub(crate) const BATCH_OVERHEAD_BYTES: u64 = 1024;

/// The bytes of a batch's rows. A slice counts only its share of the buffers: the two halves an
/// append may cut a batch into (see [`crate::append`]) together count the batch once.
pub(crate) fn rows_bytes(batch: &RecordBatch) -> u64 {
    let column_bytes = |column: &arrow::array::ArrayRef| {
        column.to_data().get_slice_memory_size().unwrap_or_else(|_| column.get_array_memory_size())
    };
    batch.columns().iter().map(column_bytes).sum::<usize>() as u64
}

impl StoredBatch {
    /// A batch that was not encoded yet.
    pub fn new(base_offset: u64, timestamp_us: i64, batch: RecordBatch) -> Self {
        Self::with_encoding(base_offset, timestamp_us, batch, None)
    }

    /// A batch and, if the append encoded it, its encoding.
    pub(crate) fn with_encoding(base_offset: u64, timestamp_us: i64, batch: RecordBatch, encoded: Option<Arc<EncodedBatch>>) -> Self {
        let rows_bytes = rows_bytes(&batch);
        Self { base_offset, timestamp_us, batch, encoded, rows_bytes }
    }

    /// A batch encoded as an append encodes it for the WAL (what the sealer then copies).
    pub fn encoded(base_offset: u64, timestamp_us: i64, batch: RecordBatch) -> crate::Result<Self> {
        let encoded = Some(Arc::new(crate::ipc::encode(&batch)?));
        Ok(Self::with_encoding(base_offset, timestamp_us, batch, encoded))
    }

    /// Memory held: the rows, their encoding, and what holding a batch costs besides (its
    /// arrays' and buffers' descriptions and allocations, which outweigh a batch of a few rows).
    pub fn bytes(&self) -> u64 {
        BATCH_OVERHEAD_BYTES + self.rows_bytes + self.encoded.as_ref().map_or(0, |e| e.len() as u64)
    }

    /// One past this batch's last offset.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + self.batch.num_rows() as u64
    }
}

/// Unsealed batches of one partition, contiguous from `start_offset`.
#[derive(Debug)]
pub(crate) struct Tail {
    pub start_offset: u64,
    pub batches: VecDeque<StoredBatch>,
    pub bytes: u64,
    /// When the oldest unsealed batch was appended (for the segment age threshold).
    pub oldest_append: Option<Instant>,
}

impl Tail {
    pub fn new(start_offset: u64) -> Self {
        Self { start_offset, batches: VecDeque::new(), bytes: 0, oldest_append: None }
    }

    /// One past the last offset in the tail.
    pub fn end_offset(&self) -> u64 {
        self.batches.back().map_or(self.start_offset, StoredBatch::end_offset)
    }

    /// Appends a batch that must start at [`Tail::end_offset`]; returns false (and keeps
    /// nothing) if it does not.
    pub fn push(&mut self, batch: StoredBatch) -> bool {
        if batch.base_offset != self.end_offset() {
            return false;
        }
        self.bytes += batch.bytes();
        if self.batches.is_empty() {
            self.oldest_append = Some(Instant::now());
        }
        self.batches.push_back(batch);
        true
    }

    /// Drops the batches that end at or before `offset` (they are sealed).
    pub fn trim_to(&mut self, offset: u64) {
        while let Some(front) = self.batches.front() {
            if front.end_offset() > offset {
                break;
            }
            self.bytes = self.bytes.saturating_sub(front.bytes());
            self.batches.pop_front();
        }
        self.start_offset = self.start_offset.max(offset);
        self.oldest_append = if self.batches.is_empty() { None } else { Some(Instant::now()) };
    }
}
