//! Compaction of keyed tables: a partition's sealed segments are rewritten as one segment that
//! keeps only the latest row of every key. A tombstone, once it is the only row of its key left,
//! is dropped too when it is older than the tombstone retention and every reader that could
//! still need it (see [`crate::Storage::set_compaction_floor`]) has read past it.
//!
//! The new segment covers the same offset range as the segments it replaces (its offsets have
//! gaps); it is PUT under a new key, swapped in for the old ones in one catalog transaction, and
//! the old objects are deleted after a grace period, so a scan that listed them before the swap
//! can still read them. A crash at any point leaves either the old segments or the new one
//! registered; the other objects are orphans that the next start sweeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use streamhouse_catalog::SegmentMeta;

use crate::object::compacted_segment_key;
use crate::segment::encode_rows;
use crate::topic::TopicLog;
use crate::{now_us, Result, Storage};

/// How long a replaced segment's object stays readable after the catalog stops listing it.
const REPLACED_OBJECT_GRACE: Duration = Duration::from_secs(60);

/// Decides, for a keyed table's partition, the lowest offset some reader has not consumed yet:
/// tombstones at or above it are kept whatever their age. `u64::MAX` when no reader needs one.
pub type CompactionFloor = Arc<dyn Fn(u64, u32) -> u64 + Send + Sync>;

/// Objects of replaced segments waiting out their grace period.
#[derive(Default)]
pub(crate) struct Graveyard {
    objects: Vec<(Instant, String)>,
}

/// The background compactor: runs every `compaction_interval_ms`.
pub(crate) async fn run(storage: Storage) {
    let mut shutdown = storage.inner.shutdown.subscribe();
    let interval = Duration::from_millis(storage.inner.config.compaction_interval_ms.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = compact_once(&storage, false).await {
            tracing::warn!(%error, "compaction pass failed; will retry");
        }
    }
}

/// One pass over every keyed table. With `force`, every partition with a sealed segment is
/// compacted; otherwise those with at least `compaction_segments_min` segments.
pub(crate) async fn compact_once(storage: &Storage, force: bool) -> Result<()> {
    let _pass = storage.inner.compaction_lock.lock().await;
    bury_due(storage, false).await;
    for topic in storage.topics().into_iter().filter(|t| t.is_keyed()) {
        for partition in 0..topic.partition_count() {
            let segments = storage.inner.catalog.segments(topic.id(), partition, 0, u64::MAX)?;
            let due = if force { !segments.is_empty() } else { segments.len() as u64 >= storage.inner.config.compaction_segments_min };
            if due && !topic.is_dropped() {
                compact_partition(storage, &topic, partition, segments).await?;
            }
        }
    }
    Ok(())
}

/// Deletes the replaced objects whose grace period is over (all of them with `force`).
pub(crate) async fn bury_due(storage: &Storage, force: bool) {
    let due: Vec<String> = {
        let mut graveyard = storage.inner.graveyard.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (due, waiting) = std::mem::take(&mut graveyard.objects).into_iter().partition(|(at, _)| force || *at <= now);
        graveyard.objects = waiting;
        due.into_iter().map(|(_, key)| key).collect()
    };
    for key in due {
        if let Err(error) = storage.inner.store.delete(&ObjectPath::from(key.as_str())).await {
            // Left for the orphan sweep of the next start.
            tracing::warn!(%error, key, "could not delete a replaced segment");
        }
    }
}

/// Rewrites the sealed segments of one partition as one.
async fn compact_partition(storage: &Storage, topic: &Arc<TopicLog>, partition: u32, segments: Vec<SegmentMeta>) -> Result<()> {
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else { return Ok(()) };
    let (base_offset, last_offset) = (first.base_offset, last.last_offset);
    let started = Instant::now();
    let log_columns = topic.log_schema().fields().len();
    let all: Vec<usize> = (0..log_columns + 2).collect();
    let schema = crate::segment::segment_schema(topic.log_schema());
    let mut batches: Vec<RecordBatch> = Vec::new();
    for segment in &segments {
        let columns = storage.segment_columns(segment, &all).await?;
        let count = columns.first().map_or(0, |c| c.len());
        for index in 0..count {
            let arrays = columns.iter().map(|c| c[index].clone()).collect();
            batches.push(RecordBatch::try_new(schema.clone(), arrays)?);
        }
    }
    let floor = storage.compaction_floor(topic.id(), partition);
    let cutoff_us = now_us() - (storage.inner.config.tombstone_retention_ms as i64).saturating_mul(1000);
    let kept = latest_rows(topic, &batches, log_columns, floor, cutoff_us)?;
    let rows_before: usize = batches.iter().map(|b| b.num_rows()).sum();
    let rows_after: usize = kept.iter().map(|b| b.num_rows()).sum();
    if segments.len() == 1 && rows_after == rows_before {
        return Ok(()); // nothing to gain
    }
    let (bytes, stats) = tokio::task::spawn_blocking(move || encode_rows(&schema, &kept))
        .await
        .map_err(|e| crate::StorageError::WalFailed(format!("segment encoder panicked: {e}")))??;
    let key = compacted_segment_key(topic.id(), partition, base_offset, now_us());
    let size = bytes.len() as u64;
    storage.inner.put_segment(&key, bytes).await?;
    let segment = SegmentMeta {
        topic_id: topic.id(),
        partition,
        base_offset,
        last_offset,
        row_count: stats.row_count,
        bytes: size,
        min_timestamp_us: stats.min_timestamp_us,
        max_timestamp_us: stats.max_timestamp_us,
        min_event_time_us: None,
        max_event_time_us: None,
        object_key: key.clone(),
    };
    let replaced: Vec<u64> = segments.iter().map(|s| s.base_offset).collect();
    if let Err(error) = storage.inner.catalog.replace_segments(&replaced, &segment) {
        let _ = storage.inner.store.delete(&ObjectPath::from(key.as_str())).await;
        return Err(error.into());
    }
    {
        let mut graveyard = storage.inner.graveyard.lock().unwrap_or_else(|p| p.into_inner());
        let due = Instant::now() + REPLACED_OBJECT_GRACE;
        graveyard.objects.extend(segments.iter().map(|s| (due, s.object_key.clone())));
    }
    for old in &segments {
        storage.inner.cache.remove(&old.object_key);
    }
    storage.inner.metrics.segments_compacted.add(segments.len() as u64);
    tracing::info!(
        topic = topic.name(),
        partition,
        segments = segments.len(),
        rows_before,
        rows_after,
        bytes = size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compacted keyed table partition"
    );
    Ok(())
}

/// The rows to keep, in offset order: per key its last row, unless that row is a tombstone that
/// is older than `cutoff_us` and below `floor`.
fn latest_rows(topic: &TopicLog, batches: &[RecordBatch], log_columns: usize, floor: u64, cutoff_us: i64) -> Result<Vec<RecordBatch>> {
    let key_types: Vec<SortField> =
        topic.primary_key().iter().map(|&i| SortField::new(topic.schema().field(i).data_type().clone())).collect();
    let converter = RowConverter::new(key_types)?;
    // Key → (batch, row) of its latest version. Batches are in offset order.
    let mut latest: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
    for (batch_index, batch) in batches.iter().enumerate() {
        let keys: Vec<_> = topic.primary_key().iter().map(|&i| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&keys)?;
        for row in 0..batch.num_rows() {
            latest.insert(rows.row(row).as_ref().to_vec(), (batch_index, row));
        }
    }
    let mut keep: Vec<Vec<bool>> = batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    for (batch_index, row) in latest.into_values() {
        let batch = &batches[batch_index];
        let deleted = batch.column(log_columns - 1).as_boolean().value(row);
        let offset = batch.column(log_columns).as_primitive::<Int64Type>().value(row) as u64;
        let appended_us = batch.column(log_columns + 1).as_primitive::<TimestampMicrosecondType>().value(row);
        let expired = deleted && appended_us < cutoff_us && offset < floor;
        keep[batch_index][row] = !expired;
    }
    let mut kept = Vec::new();
    for (batch, mask) in batches.iter().zip(keep) {
        let batch = filter_record_batch(batch, &BooleanArray::from(mask))?;
        if batch.num_rows() > 0 {
            kept.push(batch);
        }
    }
    Ok(kept)
}
