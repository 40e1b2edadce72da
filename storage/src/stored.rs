//! A partition read as it is stored, for readers that take Arrow IPC messages (Flight's DoGet
//! with LZ4 accepted). A sealed segment's record batch messages go on with their compressed
//! buffers as the segment holds them, never decompressed, decoded or encoded again: only the
//! metadata is rewritten, to add `_partition` and put the columns in the topic's full schema
//! order ([`crate::ipc::with_partition_column`]). What cannot go as stored is decoded instead:
//! the tail (not in a segment yet), a segment batch cut by the range's ends, a batch of a
//! compacted segment (whose offsets row counts do not imply) and a message over the reader's
//! size limit.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use streamhouse_catalog::SegmentMeta;
use tokio::sync::mpsc;

use crate::scan::{PruneBounds, ScanProjection};
use crate::{ipc, PartitionSnapshot, Result, Storage, TopicLog};

/// Pieces read ahead of the consumer.
const STORED_QUEUE_PIECES: usize = 2;

/// Part of a partition's rows in the topic's full schema.
#[derive(Debug)]
pub enum StoredPiece {
    /// A record batch message: its flatbuffer metadata and its body, whose buffers are the
    /// segment's, compressed as it stores them.
    Message { metadata: Vec<u8>, body: Vec<u8>, rows: u64 },
    /// Decoded rows.
    Batch(RecordBatch),
}

impl StoredPiece {
    pub fn rows(&self) -> u64 {
        match self {
            StoredPiece::Message { rows, .. } => *rows,
            StoredPiece::Batch(batch) => batch.num_rows() as u64,
        }
    }
}

/// The rows of `batch` whose offset (column `offset_column`, ascending) lies in `range`; `None`
/// if there are none.
pub fn rows_within(batch: &RecordBatch, offset_column: usize, range: &Range<u64>) -> Option<RecordBatch> {
    let offsets = batch.column(offset_column).as_any().downcast_ref::<Int64Array>()?.values();
    let from = offsets.partition_point(|&offset| (offset as u64) < range.start);
    let to = offsets.partition_point(|&offset| (offset as u64) < range.end);
    (from < to).then(|| batch.slice(from, to - from))
}

/// Reads the offsets `range` of a snapshot of one partition as stored pieces (see the module
/// doc), in offset order; a message is handed on as stored only if its metadata and body take
/// at most `message_bytes_max` bytes. Pieces arrive through the returned channel, read at most
/// [`STORED_QUEUE_PIECES`] ahead; dropping the receiver stops the read.
pub fn read_stored(
    storage: &Storage,
    topic: Arc<TopicLog>,
    snapshot: PartitionSnapshot,
    range: Range<u64>,
    message_bytes_max: usize,
) -> mpsc::Receiver<Result<StoredPiece>> {
    let (sender, receiver) = mpsc::channel(STORED_QUEUE_PIECES);
    let storage = storage.clone();
    tokio::spawn(async move {
        let read = StoredRead { storage: &storage, topic: &topic, range, message_bytes_max, sender: &sender };
        if let Err(error) = read.run(snapshot).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    receiver
}

struct StoredRead<'a> {
    storage: &'a Storage,
    topic: &'a TopicLog,
    range: Range<u64>,
    message_bytes_max: usize,
    sender: &'a mpsc::Sender<Result<StoredPiece>>,
}

impl StoredRead<'_> {
    /// Sends a piece; false once the reader has gone.
    async fn send(&self, piece: StoredPiece) -> bool {
        self.sender.send(Ok(piece)).await.is_ok()
    }

    async fn run(&self, snapshot: PartitionSnapshot) -> Result<()> {
        let projection = ScanProjection::new(self.topic, None)?;
        let schema = projection.schema().clone();
        let user_columns = self.topic.schema().fields().len();
        let offset_column = user_columns + 1;
        let keyed = self.topic.is_keyed();
        let partition = snapshot.partition as i32;
        let (start, end) = (self.range.start, self.range.end);
        if start >= end {
            return Ok(());
        }
        let bounds = PruneBounds { offset: Some((start, end - 1)), ..Default::default() };
        let mut partition_column = ipc::PartitionColumn::default();
        let segments: Vec<&SegmentMeta> = snapshot.segments.iter().filter(|s| bounds.keeps_segment(s)).collect();
        // The next segment's object is read while this one's messages go out.
        let read = |segment: &SegmentMeta| {
            let (storage, segment) = (self.storage.clone(), segment.clone());
            tokio::spawn(async move { storage.segment_object(&segment).await })
        };
        let mut next = segments.first().map(|s| read(s));
        for (index, segment) in segments.iter().enumerate() {
            let Some(reading) = next.take() else { break };
            let file = reading.await.map_err(|source| object_store::Error::JoinError { source })??;
            next = segments.get(index + 1).map(|s| read(s));
            // A compacted segment has gaps: its batches' offsets are known only once decoded.
            let dense = segment.last_offset.checked_sub(segment.base_offset).map(|span| span + 1) == Some(segment.row_count);
            let mut base = segment.base_offset;
            for (metadata, body) in ipc::file_messages(&file)? {
                let rows = ipc::message_rows(&metadata)?;
                let first = base;
                base += rows;
                if dense && (first + rows <= start || first >= end) {
                    continue;
                }
                let (metadata, body) = ipc::with_partition_column(&metadata, &body, partition, keyed, &mut partition_column)?;
                let whole = dense && first >= start && first + rows <= end;
                let piece = if whole && metadata.len() + body.len() <= self.message_bytes_max {
                    StoredPiece::Message { metadata, body, rows }
                } else {
                    let batch = ipc::decode_message(&metadata, body, &schema)?;
                    match rows_within(&batch, offset_column, &self.range) {
                        Some(batch) => StoredPiece::Batch(batch),
                        None => continue,
                    }
                };
                if !self.send(piece).await {
                    return Ok(());
                }
            }
        }
        for stored in snapshot.tail.iter().filter(|b| bounds.keeps_batch(b)) {
            let batch = projection.tail_batch(stored, user_columns, snapshot.partition)?;
            if let Some(batch) = rows_within(&batch, offset_column, &self.range) {
                if !self.send(StoredPiece::Batch(batch)).await {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int32Array};

    fn batch(first_offset: i64, rows: usize) -> RecordBatch {
        let offsets: Vec<i64> = (first_offset..first_offset + rows as i64).collect();
        let values: Vec<i32> = (0..rows as i32).collect();
        RecordBatch::try_from_iter([
            ("v", Arc::new(Int32Array::from(values)) as ArrayRef),
            ("_offset", Arc::new(Int64Array::from(offsets)) as ArrayRef),
        ])
        .expect("batch")
    }

    fn offsets_of(batch: &RecordBatch) -> Vec<i64> {
        batch.column(1).as_any().downcast_ref::<Int64Array>().expect("offsets").values().to_vec()
    }

    #[test]
    fn rows_outside_the_range_are_cut_off() {
        let cut = rows_within(&batch(10, 10), 1, &(12..15)).expect("rows");
        assert_eq!(offsets_of(&cut), vec![12, 13, 14]);
        let whole = rows_within(&batch(10, 10), 1, &(0..100)).expect("rows");
        assert_eq!(offsets_of(&whole), (10..20).collect::<Vec<_>>());
        assert!(rows_within(&batch(10, 10), 1, &(20..30)).is_none());
        assert!(rows_within(&batch(10, 10), 1, &(0..10)).is_none());
        let head = rows_within(&batch(10, 10), 1, &(0..11)).expect("rows");
        assert_eq!(offsets_of(&head), vec![10]);
        // A compacted batch: offsets with gaps.
        let gappy = RecordBatch::try_from_iter([
            ("v", Arc::new(Int32Array::from(vec![0, 1, 2, 3])) as ArrayRef),
            ("_offset", Arc::new(Int64Array::from(vec![3, 7, 8, 20])) as ArrayRef),
        ])
        .expect("batch");
        let cut = rows_within(&gappy, 1, &(5..20)).expect("rows");
        assert_eq!(offsets_of(&cut), vec![7, 8]);
        assert!(rows_within(&gappy, 1, &(9..20)).is_none());
    }
}
