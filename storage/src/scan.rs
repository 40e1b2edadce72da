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

    /// A tail batch of partition `partition` (of a topic with `user_columns` user columns),
    /// projected.
    pub(crate) fn tail_batch(&self, stored: &StoredBatch, user_columns: usize, partition: u32) -> Result<RecordBatch> {
        let rows = stored.batch.num_rows();
        self.assemble(rows, |source| match source {
            Source::User(i) => stored.batch.column(i).clone(),
            Source::Deleted => stored.batch.column(user_columns).clone(),
            Source::Offset => offset_array(stored.base_offset, rows),
            Source::Timestamp => timestamp_array(stored.timestamp_us, rows),
            Source::Partition => partition_array(partition, rows),
        })
    }

    fn assemble(&self, rows: usize, mut column: impl FnMut(Source) -> ArrayRef) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self.sources.iter().map(|&s| column(s)).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(self.output.clone(), columns, &options)?)
    }
}

/// The `_partition` column of `rows` rows of a partition.
fn partition_array(partition: u32, rows: usize) -> ArrayRef {
    Arc::new(Int32Array::from(vec![partition as i32; rows]))
}

/// A scannable unit of a snapshot: a kept segment or a kept tail batch, with its row count.
enum Unit<'a> {
    Segment(&'a SegmentMeta),
    Tail(&'a StoredBatch),
}

impl Unit<'_> {
    fn rows(&self) -> u64 {
        match self {
            Unit::Segment(segment) => segment.row_count,
            Unit::Tail(stored) => stored.batch.num_rows() as u64,
        }
    }
}

/// Cuts snapshots into at most `pieces` sub-snapshots (at least one per snapshot) that can be
/// scanned side by side. A piece is a run of one partition's segments and tail batches in offset
/// order, without those `bounds` prune; a partition's pieces share its rows as evenly as whole
/// segments and batches allow, and a partition gets more pieces the more rows each would carry.
pub fn split_snapshots(snapshots: &[PartitionSnapshot], bounds: &PruneBounds, pieces: usize) -> Vec<PartitionSnapshot> {
    let units: Vec<Vec<Unit>> = snapshots
        .iter()
        .map(|snapshot| {
            let segments = snapshot.segments.iter().filter(|s| bounds.keeps_segment(s)).map(Unit::Segment);
            segments.chain(snapshot.tail.iter().filter(|b| bounds.keeps_batch(b)).map(Unit::Tail)).collect()
        })
        .collect();
    let rows: Vec<u64> = units.iter().map(|u| u.iter().map(Unit::rows).sum()).collect();
    let mut counts = vec![1usize; snapshots.len()];
    for _ in snapshots.len()..pieces {
        // The partition whose pieces would carry the most rows each takes one more piece.
        let widest = (0..snapshots.len())
            .filter(|&i| counts[i] < units[i].len())
            .max_by(|&a, &b| (rows[a] * counts[b] as u64).cmp(&(rows[b] * counts[a] as u64)));
        match widest {
            Some(i) => counts[i] += 1,
            None => break,
        }
    }
    let mut output = Vec::with_capacity(counts.iter().sum());
    for ((snapshot, units), (&rows, &count)) in snapshots.iter().zip(&units).zip(rows.iter().zip(&counts)) {
        let empty = || PartitionSnapshot {
            partition: snapshot.partition,
            low_watermark: snapshot.low_watermark,
            high_watermark: snapshot.high_watermark,
            segments: Vec::new(),
            tail: Vec::new(),
        };
        let mut piece = empty();
        let mut done = 0u64;
        let mut cut = 0usize;
        for (index, unit) in units.iter().enumerate() {
            match unit {
                Unit::Segment(segment) => piece.segments.push((*segment).clone()),
                Unit::Tail(stored) => piece.tail.push((*stored).clone()),
            }
            done += unit.rows();
            let groups_left = count - cut - 1;
            let units_left = units.len() - index - 1;
            // Cut once this piece holds its share, or when every remaining unit must open a piece.
            let due = done.saturating_mul(count as u64) >= rows.saturating_mul(cut as u64 + 1);
            if groups_left > 0 && (due || units_left == groups_left) {
                output.push(std::mem::replace(&mut piece, empty()));
                cut += 1;
            }
        }
        output.push(piece);
    }
    output
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
                Source::Partition => partition_array(snapshot.partition, rows),
            })?;
            if sender.send(Ok(output)).await.is_err() {
                return Ok(()); // the reader went away
            }
        }
    }
    for stored in snapshot.tail.iter().filter(|b| bounds.keeps_batch(b)) {
        let output = projection.tail_batch(stored, user_columns, snapshot.partition)?;
        if sender.send(Ok(output)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn segment(partition: u32, base_offset: u64, rows: u64) -> SegmentMeta {
        SegmentMeta {
            topic_id: 1,
            partition,
            base_offset,
            last_offset: base_offset + rows - 1,
            row_count: rows,
            bytes: rows * 8,
            min_timestamp_us: 0,
            max_timestamp_us: 0,
            min_event_time_us: None,
            max_event_time_us: None,
            object_key: format!("p{partition}-{base_offset}"),
        }
    }

    fn tail_batch(base_offset: u64, rows: usize) -> StoredBatch {
        let values: Vec<i64> = (0..rows as i64).collect();
        let batch = RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values)) as ArrayRef)]).expect("batch");
        StoredBatch::new(base_offset, 0, batch)
    }

    /// A partition of `segments` segments of `rows` rows each, then `tail` batches of `rows / 2`.
    fn snapshot(partition: u32, segments: u64, rows: u64, tail: u64) -> PartitionSnapshot {
        let sealed = segments * rows;
        PartitionSnapshot {
            partition,
            low_watermark: 0,
            high_watermark: sealed + tail * (rows / 2),
            segments: (0..segments).map(|i| segment(partition, i * rows, rows)).collect(),
            tail: (0..tail).map(|i| tail_batch(sealed + i * (rows / 2), (rows / 2) as usize)).collect(),
        }
    }

    /// Each piece's units as (partition, base offset), in order.
    fn layout(pieces: &[PartitionSnapshot]) -> Vec<Vec<(u32, u64)>> {
        pieces
            .iter()
            .map(|p| {
                let segments = p.segments.iter().map(|s| (p.partition, s.base_offset));
                segments.chain(p.tail.iter().map(|b| (p.partition, b.base_offset))).collect()
            })
            .collect()
    }

    #[test]
    fn a_partition_is_cut_into_runs_of_about_equal_rows() {
        // 6 segments of 100 rows and 2 tail batches of 50: 700 rows, so a piece closes once it
        // holds 350 or more (the first after 4 segments).
        let pieces = split_snapshots(&[snapshot(0, 6, 100, 2)], &PruneBounds::default(), 2);
        assert_eq!(
            layout(&pieces),
            vec![vec![(0, 0), (0, 100), (0, 200), (0, 300)], vec![(0, 400), (0, 500), (0, 600), (0, 650)]]
        );
        assert!(pieces.iter().all(|p| p.high_watermark == 700 && p.partition == 0));
    }

    #[test]
    fn pruned_segments_and_batches_are_left_out() {
        let bounds = PruneBounds { offset: Some((250, 620)), ..Default::default() };
        let pieces = split_snapshots(&[snapshot(0, 6, 100, 2)], &bounds, 3);
        // Kept: the segments at 200..500 (400 rows) and the tail batch at 600 (50 rows): 450
        // rows, so pieces close once the rows so far reach 150 and 300.
        assert_eq!(layout(&pieces), vec![vec![(0, 200), (0, 300)], vec![(0, 400)], vec![(0, 500), (0, 600)]]);
    }

    #[test]
    fn larger_partitions_take_more_pieces() {
        let snapshots = [snapshot(0, 6, 100, 0), snapshot(1, 1, 100, 0), snapshot(2, 0, 100, 0)];
        let pieces = split_snapshots(&snapshots, &PruneBounds::default(), 5);
        // Partition 0 (600 rows) takes three pieces; partition 1 (one segment) and the empty
        // partition 2 keep one each.
        assert_eq!(
            layout(&pieces),
            vec![
                vec![(0, 0), (0, 100)],
                vec![(0, 200), (0, 300)],
                vec![(0, 400), (0, 500)],
                vec![(1, 0)],
                vec![],
            ]
        );
    }

    #[test]
    fn no_more_pieces_than_units() {
        let pieces = split_snapshots(&[snapshot(0, 1, 100, 1)], &PruneBounds::default(), 8);
        assert_eq!(layout(&pieces), vec![vec![(0, 0)], vec![(0, 100)]]);
        let one = split_snapshots(&[snapshot(0, 6, 100, 0)], &PruneBounds::default(), 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].segments.len(), 6);
    }
}
