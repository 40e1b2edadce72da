//! Bounded reads of one partition: the segments of a snapshot (pruned by their catalog stats and
//! decoded with projection) followed by its tail, as batches in the topic's full schema
//! (user columns, `_partition`, `_offset`, `_timestamp`, and `_deleted` for a keyed table)
//! projected as asked.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use streamhouse_catalog::SegmentMeta;
use tokio::sync::mpsc;

use crate::segment::{offset_array, timestamp_array};
use crate::{PartitionSnapshot, Result, Storage, StoredBatch, TopicLog};

/// Batches decoded ahead of the consumer per partition scan.
const SCAN_QUEUE_BATCHES: usize = 2;

/// Inclusive bounds a scan may prune with. Rows outside them may still be returned: pruning is
/// by whole segments and batches, and the caller filters rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneBounds {
    pub offset: Option<(u64, u64)>,
    pub timestamp_us: Option<(i64, i64)>,
    pub event_time_us: Option<(i64, i64)>,
}

fn overlaps<T: PartialOrd>(low: T, high: T, bounds: Option<(T, T)>) -> bool {
    bounds.is_none_or(|(from, to)| high >= from && low <= to)
}

impl PruneBounds {
    /// Whether a segment may hold rows within the bounds.
    pub fn keeps_segment(&self, segment: &SegmentMeta) -> bool {
        overlaps(segment.base_offset, segment.last_offset, self.offset)
            && overlaps(segment.min_timestamp_us, segment.max_timestamp_us, self.timestamp_us)
            && match (segment.min_event_time_us, segment.max_event_time_us) {
                (Some(low), Some(high)) => overlaps(low, high, self.event_time_us),
                // A segment without event-time values holds only NULLs there: no predicate on
                // the column can match it.
                _ => self.event_time_us.is_none(),
            }
    }

    /// Whether a tail batch may hold rows within the bounds.
    pub fn keeps_batch(&self, batch: &StoredBatch) -> bool {
        overlaps(batch.base_offset, batch.end_offset().saturating_sub(1), self.offset)
            && overlaps(batch.timestamp_us, batch.timestamp_us, self.timestamp_us)
    }
}

/// Where each output column of a projection comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    User(usize),
    Partition,
    Offset,
    Timestamp,
    /// `_deleted` of a keyed table: stored after the user columns.
    Deleted,
}

/// Maps a projection of the full schema onto the stored columns.
#[derive(Debug, Clone)]
pub struct ScanProjection {
    sources: Vec<Source>,
    output: SchemaRef,
}

impl ScanProjection {
    /// `projection` indexes the topic's full schema; `None` means every column.
    pub fn new(topic: &TopicLog, projection: Option<&[usize]>) -> Result<Self> {
        let user = topic.schema().fields().len();
        let full = topic.full_schema();
        let indices: Vec<usize> = match projection {
            Some(p) => p.to_vec(),
            None => (0..full.fields().len()).collect(),
        };
        let sources = indices
            .iter()
            .map(|&i| match i {
                i if i < user => Source::User(i),
                i if i == user => Source::Partition,
                i if i == user + 1 => Source::Offset,
                i if i == user + 2 => Source::Timestamp,
                _ => Source::Deleted,
            })
            .collect();
        Ok(Self { sources, output: Arc::new(full.project(&indices)?) })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.output
    }

    /// Segment-file columns to decode, in file order; the offset column stands in when no
    /// column is needed, so row counts survive.
    fn file_columns(&self, user_columns: usize, log_columns: usize) -> Vec<usize> {
        let mut columns: Vec<usize> = self
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::User(i) => Some(*i),
                Source::Deleted => Some(user_columns),
                Source::Offset => Some(log_columns),
                Source::Timestamp => Some(log_columns + 1),
                Source::Partition => None,
            })
            .collect();
        if columns.is_empty() {
            columns.push(log_columns);
        }
        columns.sort_unstable();
        columns.dedup();
        columns
    }

    fn assemble(&self, rows: usize, mut column: impl FnMut(Source) -> ArrayRef) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self.sources.iter().map(|&s| column(s)).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(self.output.clone(), columns, &options)?)
    }
}

/// Reads a snapshot of one partition. Batches arrive through the returned channel, decoded at
/// most [`SCAN_QUEUE_BATCHES`] ahead of the consumer; dropping the receiver stops the scan.
pub fn scan_partition(
    storage: &Storage,
    topic: Arc<TopicLog>,
    snapshot: PartitionSnapshot,
    projection: ScanProjection,
    bounds: PruneBounds,
) -> mpsc::Receiver<Result<RecordBatch>> {
    let (sender, receiver) = mpsc::channel(SCAN_QUEUE_BATCHES);
    let storage = storage.clone();
    tokio::spawn(async move {
        if let Err(error) = run_scan(&storage, &topic, snapshot, &projection, bounds, &sender).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    receiver
}

async fn run_scan(
    storage: &Storage,
    topic: &TopicLog,
    snapshot: PartitionSnapshot,
    projection: &ScanProjection,
    bounds: PruneBounds,
    sender: &mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    let user_columns = topic.schema().fields().len();
    let log_columns = topic.log_schema().fields().len();
    let partition = snapshot.partition as i32;
    let partition_column = |rows: usize| -> ArrayRef { Arc::new(Int32Array::from(vec![partition; rows])) };
    let segments: Vec<&SegmentMeta> = snapshot.segments.iter().filter(|s| bounds.keeps_segment(s)).collect();
    let file_columns = projection.file_columns(user_columns, log_columns);
    for (index, segment) in segments.iter().enumerate() {
        if let Some(next) = segments.get(index + 1) {
            storage.prefetch_segment(next, &file_columns);
        }
        let columns = storage.segment_columns(segment, &file_columns).await?;
        let position = |file_column: usize| file_columns.iter().position(|&c| c == file_column).unwrap_or_default();
        let batch_count = columns.first().map_or(0, |c| c.len());
        for batch in 0..batch_count {
            let column = |file_column: usize| columns[position(file_column)][batch].clone();
            let rows = column(file_columns[0]).len();
            let output = projection.assemble(rows, |source| match source {
                Source::User(i) => column(i),
                Source::Deleted => column(user_columns),
                Source::Offset => column(log_columns),
                Source::Timestamp => column(log_columns + 1),
                Source::Partition => partition_column(rows),
            })?;
            if sender.send(Ok(output)).await.is_err() {
                return Ok(()); // the reader went away
            }
        }
    }
    for stored in snapshot.tail.iter().filter(|b| bounds.keeps_batch(b)) {
        let rows = stored.batch.num_rows();
        let output = projection.assemble(rows, |source| match source {
            Source::User(i) => stored.batch.column(i).clone(),
            Source::Deleted => stored.batch.column(user_columns).clone(),
            Source::Offset => offset_array(stored.base_offset, rows),
            Source::Timestamp => timestamp_array(stored.timestamp_us, rows),
            Source::Partition => partition_column(rows),
        })?;
        if sender.send(Ok(output)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
