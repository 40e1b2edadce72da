//! Sealing: a partition's tail becomes a segment file once it is large or old enough. The
//! segment is PUT to the object store, then registered in the catalog, and only then trimmed from
//! the tail and its WAL space released. A crash between PUT and registration leaves an orphan
//! object that the next start sweeps.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use streamhouse_catalog::SegmentMeta;

use crate::object::segment_key;
use crate::segment::encode_segment;
use crate::tail::StoredBatch;
use crate::topic::TopicLog;
use crate::{Result, Storage, StorageError};

/// First wait after a failed sealing pass; it doubles after each further failure.
const SEAL_BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between failed sealing passes.
const SEAL_BACKOFF_MAX: Duration = Duration::from_secs(8);

/// The background sealer: wakes when an append crosses the size threshold, when the oldest
/// unsealed row reaches the age threshold, or at shutdown.
pub(crate) async fn run(storage: Storage) {
    let mut shutdown = storage.inner.shutdown.subscribe();
    let mut backoff = SEAL_BACKOFF_MIN;
    loop {
        let age_max = Duration::from_millis(storage.inner.config.segment_age_max_ms);
        let next_due = storage
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().filter_map(|p| p.read_tail().oldest_append))
            .min()
            .map(|oldest| oldest + age_max);
        // With nothing unsealed, look again after `age_max`: appends wake the sealer only when
        // a tail reaches `segment_bytes_max`, and a tail that starts meanwhile is due by age.
        let due = next_due.unwrap_or_else(|| Instant::now() + age_max);
        let sleep = tokio::time::sleep_until(due.into());
        tokio::select! {
            _ = storage.inner.seal_wakeup.notified() => {}
            _ = sleep => {}
            _ = shutdown.changed() => return,
        }
        let sealed = seal_all(&storage, false).await;
        let disk_full = sealed.as_ref().is_err_and(StorageError::is_disk_full);
        storage.inner.sealing_disk_full.store(disk_full, Ordering::Release);
        let Err(error) = sealed else {
            backoff = SEAL_BACKOFF_MIN;
            continue;
        };
        storage.inner.metrics.seal_failures.add(1);
        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "sealing failed; will retry");
        // Back off, doubling up to a bound, so an unreachable object store is not hammered
        // (each request already has the object store client's own retries) and one that comes
        // back is used again within SEAL_BACKOFF_MAX.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(SEAL_BACKOFF_MAX);
    }
}

/// Seals every partition that is due (or, with `force`, that holds any unsealed row).
pub(crate) async fn seal_all(storage: &Storage, force: bool) -> Result<()> {
    let config = &storage.inner.config;
    let age_max = Duration::from_millis(config.segment_age_max_ms);
    let mut first_error = None;
    for topic in storage.topics() {
        for partition in 0..topic.partition_count() {
            loop {
                let due = {
                    let tail = topic.partitions[partition as usize].read_tail();
                    !tail.batches.is_empty()
                        && (force
                            || tail.bytes >= config.segment_bytes_max
                            || tail.oldest_append.is_some_and(|t| t.elapsed() >= age_max))
                };
                if !due {
                    break;
                }
                if let Err(error) = seal_partition(storage, &topic, partition).await {
                    first_error.get_or_insert(error);
                    break;
                }
            }
        }
    }
    storage.inner.wal.release(|topic_id, partition| {
        let topics = storage.topics_read();
        topics
            .get(&topic_id)
            .and_then(|t| t.partition(partition))
            .map(|p| p.sealed_offset.load(Ordering::Acquire))
    });
    first_error.map_or(Ok(()), Err)
}

/// Seals the oldest unsealed batches of one partition (up to the size threshold) as one segment.
async fn seal_partition(storage: &Storage, topic: &Arc<TopicLog>, partition: u32) -> Result<()> {
    let inner = &storage.inner;
    let log = &topic.partitions[partition as usize];
    let _sealing = log.seal_lock.lock().await;
    let batches: Vec<StoredBatch> = {
        let tail = log.read_tail();
        let mut taken = Vec::new();
        let mut bytes = 0u64;
        for batch in &tail.batches {
            if bytes >= inner.config.segment_bytes_max {
                break;
            }
            bytes += batch.rows_bytes;
            taken.push(batch.clone());
        }
        taken
    };
    let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
        return Ok(());
    };
    let base_offset = first.base_offset;
    let end_offset = last.end_offset();
    let started = Instant::now();
    let schema = topic.log_schema().clone();
    let event_time_column = topic.event_time_column;
    let (bytes, stats) = tokio::task::spawn_blocking(move || encode_segment(&schema, &batches, event_time_column))
        .await
        .map_err(|e| StorageError::WalFailed(format!("segment encoder panicked: {e}")))??;
    let key = segment_key(topic.id(), partition, base_offset);
    let size = bytes.len() as u64;
    inner.put_segment(&key, bytes).await?;
    let segment = SegmentMeta {
        topic_id: topic.id(),
        partition,
        base_offset,
        last_offset: end_offset - 1,
        row_count: stats.row_count,
        bytes: size,
        min_timestamp_us: stats.min_timestamp_us,
        max_timestamp_us: stats.max_timestamp_us,
        min_event_time_us: stats.min_event_time_us,
        max_event_time_us: stats.max_event_time_us,
        object_key: key.clone(),
    };
    if let Err(error) = inner.catalog.register_segment(&segment) {
        // Not registered. If the topic is gone the object is garbage now; otherwise leave it
        // for the orphan sweep at the next start rather than risk deleting a registered
        // segment's object under the same key.
        if topic.is_dropped() {
            let _ = inner.store.delete(&ObjectPath::from(key.as_str())).await;
        }
        return Err(error.into());
    }
    log.tail.write().unwrap_or_else(|p| p.into_inner()).trim_to(end_offset);
    log.sealed_offset.store(end_offset, Ordering::Release);
    inner.seal_progress.notify_waiters();
    inner.metrics.segments_sealed.add(1);
    inner.metrics.segment_bytes_uploaded.add(size);
    tracing::debug!(
        topic = topic.name(),
        partition,
        base_offset,
        rows = stats.row_count,
        bytes = size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sealed segment"
    );
    Ok(())
}
