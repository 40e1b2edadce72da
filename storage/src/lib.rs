//! The log data plane of StreamHouse.
//!
//! Storage owns the durable, partitioned, append-only logs behind topics: the write-ahead log
//! with group commit ([`wal`]), the in-memory tail of each partition ([`tail`]), segment files in
//! the object store ([`segment`], [`object`]), the segment cache ([`cache`]), sealing
//! ([`sealer`]), retention and the deletion of dropped topics ([`retention`]), and bounded reads
//! ([`scan`]).
//!
//! Storage records segment metadata in the catalog and nowhere else. It knows nothing of SQL:
//! it takes Arrow batches already validated against a topic's schema and hands back Arrow
//! batches. The engine is its only user.

pub mod cache;
mod compaction;
mod config;
mod error;
mod ipc;
pub mod metrics;
pub mod object;
mod record;
mod retention;
pub mod scan;
mod sealer;
pub mod segment;
mod tail;
mod topic;
mod wal;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use arrow::record_batch::RecordBatch;
use object_store::ObjectStore;
use streamhouse_catalog::{Catalog, PartitionState, SegmentMeta, TopicDefinition};
use tokio::sync::{oneshot, Notify};

pub use compaction::CompactionFloor;
pub use config::StorageConfig;
pub use error::{Result, StorageError};
pub use metrics::StorageMetrics;
pub use tail::StoredBatch;
pub use topic::{KeyedWriteGuard, PartitionLog, TopicLog};

use cache::SegmentCache;
use record::{encode_frame, EncodedEntry, RecordEntry};
use wal::{Wal, WalRequest};

/// Live topics by id.
type TopicMap = Arc<RwLock<HashMap<u64, Arc<TopicLog>>>>;

/// The rows one append placed, per partition: `(partition, first offset, row count)`.
#[derive(Debug, Clone, Default)]
pub struct AppendOutcome {
    pub placements: Vec<(u32, u64, u64)>,
}

impl AppendOutcome {
    pub fn rows(&self) -> u64 {
        self.placements.iter().map(|p| p.2).sum()
    }
}

/// What a bounded read of one partition sees: segments and tail as of one instant.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub partition: u32,
    pub low_watermark: u64,
    pub high_watermark: u64,
    pub segments: Vec<SegmentMeta>,
    /// Unsealed batches, in offset order, all below `high_watermark`.
    pub tail: Vec<StoredBatch>,
}

pub(crate) struct Inner {
    config: StorageConfig,
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    /// The directory of a local object store, whose PUTs are synced by us.
    local_root: Option<std::path::PathBuf>,
    topics: TopicMap,
    wal: Wal,
    /// Held while offsets are assigned and the record is queued, so records enter the WAL in
    /// offset order.
    append_lock: tokio::sync::Mutex<i64>,
    cache: SegmentCache,
    metrics: Arc<StorageMetrics>,
    /// Wakes the sealer (a partition may have crossed its size threshold).
    seal_wakeup: Notify,
    /// Wakes the retention task (a topic was dropped).
    retention_wakeup: Notify,
    /// Wakes appends waiting for sealing to make room (after every seal).
    seal_progress: Notify,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Objects of segments replaced by compaction, deleted after a grace period.
    graveyard: std::sync::Mutex<compaction::Graveyard>,
    /// Held by a compaction pass: the background one and [`Storage::compact_now`] must not
    /// rewrite the same partition at once.
    compaction_lock: tokio::sync::Mutex<()>,
    /// Readers' progress through keyed tables (see [`Storage::set_compaction_floor`]).
    compaction_floor: RwLock<Option<CompactionFloor>>,
}

/// The storage layer. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

/// A batch that is a small slice of larger buffers is copied: the tail would otherwise keep
/// (and count) the whole parent buffers in memory until the segment seals.
fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    let held: usize = batch.columns().iter().map(|c| c.get_array_memory_size()).sum();
    let used: usize = batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(held)).sum();
    if used.saturating_mul(2) >= held {
        return Ok(batch);
    }
    let indices = arrow::array::UInt32Array::from_iter_values(0..batch.num_rows() as u32);
    Ok(arrow::compute::take_record_batch(&batch, &indices)?)
}

/// A partition's share of a write is stored as batches of about this many rows: smaller
/// batches are concatenated (one WAL entry, one segment message each), larger ones kept whole.
const APPEND_CHUNK_ROWS: usize = 8192;

/// Groups consecutive batches into runs of at most [`APPEND_CHUNK_ROWS`] rows (a larger batch is
/// a run of its own), so a large write is neither one huge batch nor thousands of tiny ones.
fn chunks(batches: Vec<RecordBatch>) -> Vec<Vec<RecordBatch>> {
    let mut runs: Vec<Vec<RecordBatch>> = Vec::new();
    let mut rows = 0;
    for batch in batches {
        let batch_rows = batch.num_rows();
        match runs.last_mut() {
            Some(run) if rows + batch_rows <= APPEND_CHUNK_ROWS => {
                run.push(batch);
                rows += batch_rows;
            }
            _ => {
                runs.push(vec![batch]);
                rows = batch_rows;
            }
        }
    }
    runs
}

/// A write cut into per-partition chunks and encoded, ready for [`Storage::append_prepared`]:
/// the CPU work of an append, which a large write (COPY) does while its input still arrives.
#[derive(Debug, Default)]
pub struct PreparedAppend {
    topic_id: Option<u64>,
    /// (partition, rows in the topic's log schema, their encoding)
    entries: Vec<(u32, RecordBatch, Arc<ipc::EncodedBatch>)>,
}

impl PreparedAppend {
    pub fn rows(&self) -> u64 {
        self.entries.iter().map(|(_, batch, _)| batch.num_rows() as u64).sum()
    }

    /// Adds another prepared part of the same write (of the same topic).
    pub fn extend(&mut self, other: PreparedAppend) -> Result<()> {
        match (self.topic_id, other.topic_id) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                return Err(StorageError::InvalidBatch {
                    topic: format!("#{theirs}"),
                    reason: "parts of one write were prepared for different topics".into(),
                })
            }
            (None, theirs) => self.topic_id = theirs,
            _ => {}
        }
        self.entries.extend(other.entries);
        Ok(())
    }
}

/// Validates, partitions, cuts and encodes batches of a topic's user columns for an append (on
/// a keyed table every row is an upsert). Touches no shared state but the topic's round-robin
/// counter: runs on any thread.
pub fn prepare(topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<PreparedAppend> {
    let mut log_batches = Vec::with_capacity(batches.len());
    for batch in batches {
        topic.validate(&batch)?;
        log_batches.push(if topic.is_keyed() { with_deleted_flag(topic, &batch, false)? } else { batch });
    }
    prepare_log(topic, log_batches)
}

/// The batch in a keyed table's log schema: its columns and `_deleted`.
fn with_deleted_flag(topic: &TopicLog, batch: &RecordBatch, deleted: bool) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::BooleanArray::from(vec![deleted; batch.num_rows()])));
    Ok(RecordBatch::try_new(topic.log_schema().clone(), columns)?)
}

/// Partitions, cuts and encodes batches already in the topic's log schema.
fn prepare_log(topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<PreparedAppend> {
    let mut entries = Vec::new();
    for (partition, batches) in topic.partition_batches(batches)? {
        for run in chunks(batches) {
            let batch = compact(segment::concat(topic.log_schema(), &run)?)?;
            let encoding = Arc::new(ipc::encode(&batch)?);
            entries.push((partition, batch, encoding));
        }
    }
    Ok(PreparedAppend { topic_id: Some(topic.id()), entries })
}

impl Inner {
    /// PUTs a segment object; on a local store, also syncs it (see
    /// [`object::sync_local_object`]): it must survive a power loss before it is registered.
    pub(crate) async fn put_segment(&self, key: &str, bytes: bytes::Bytes) -> Result<()> {
        use object_store::ObjectStoreExt;
        self.store.put(&object_store::path::Path::from(key), bytes.into()).await?;
        if let Some(root) = self.local_root.clone() {
            let key = key.to_string();
            let path = root.join(&key).display().to_string();
            tokio::task::spawn_blocking(move || object::sync_local_object(&root, &key))
                .await
                .map_err(|e| StorageError::WalFailed(format!("segment sync task: {e}")))?
                .map_err(|source| StorageError::DataDirectory { path, source })?;
        }
        Ok(())
    }
}

/// Wall-clock time in microseconds since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Storage {
    /// Opens storage: loads topics from the catalog, sweeps orphan objects, replays the WAL and
    /// starts the WAL thread, the sealer and the retention task. Must run inside a Tokio runtime.
    pub async fn open(config: StorageConfig, catalog: Arc<dyn Catalog>) -> Result<Self> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| StorageError::DataDirectory {
            path: data_dir.display().to_string(),
            source,
        })?;
        let store = object::open_object_store(config.object_store_url.as_deref(), data_dir)?;
        let local_root = object::local_root(config.object_store_url.as_deref(), data_dir);
        let metrics = Arc::new(StorageMetrics::default());

        let topics: TopicMap = Arc::default();
        for meta in catalog.list_topics()? {
            let partitions = catalog
                .partitions(meta.id)?
                .into_iter()
                .map(|p| PartitionLog::new(p.partition, p.low_watermark, p.sealed_offset))
                .collect();
            let topic = TopicLog::new(meta, partitions)?;
            topics.write().unwrap_or_else(|p| p.into_inner()).insert(topic.id(), Arc::new(topic));
        }
        retention::sweep_orphans(&store, catalog.as_ref(), &topics).await?;

        let wal_dir = data_dir.join("wal");
        let mut replayed_rows = 0u64;
        let (files, next_sequence) = {
            let topics = topics.read().unwrap_or_else(|p| p.into_inner());
            wal::replay(&wal_dir, |entry| {
                let Some(topic) = topics.get(&entry.topic_id) else { return };
                let Some(partition) = topic.partition(entry.partition) else { return };
                if entry.base_offset < partition.sealed_offset.load(Ordering::Acquire) {
                    return; // already in a segment
                }
                let rows = entry.batch.num_rows() as u64;
                let base_offset = entry.base_offset;
                if partition.apply(StoredBatch::new(base_offset, entry.timestamp_us, entry.batch)) {
                    partition.next_offset.store(base_offset + rows, Ordering::Release);
                    replayed_rows += rows;
                } else {
                    tracing::error!(
                        topic = topic.name(),
                        partition = entry.partition,
                        base_offset,
                        "WAL entry does not continue its partition; skipped"
                    );
                }
            })?
        };
        tracing::info!(rows = replayed_rows, "replayed write-ahead log");

        let apply_topics = topics.clone();
        let apply_metrics = metrics.clone();
        let apply: wal::ApplyFn = Arc::new(move |entries: &[RecordEntry]| {
            let topics = apply_topics.read().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                let rows = entry.batch.num_rows() as u64;
                apply_metrics.rows_appended.add(rows);
                apply_metrics.bytes_appended.add(entry.batch.get_array_memory_size() as u64);
                let Some(partition) = topics.get(&entry.topic_id).and_then(|t| t.partition(entry.partition)) else {
                    continue; // dropped while the write was in flight
                };
                partition.apply(StoredBatch {
                    base_offset: entry.base_offset,
                    timestamp_us: entry.timestamp_us,
                    batch: entry.batch.clone(),
                    encoded: entry.encoded.clone(),
                });
            }
        });
        let wal = Wal::start(
            &wal_dir,
            files,
            next_sequence,
            config.wal_file_bytes_max,
            config.wal_group_bytes_max,
            apply,
            metrics.clone(),
        )?;
        let cache = SegmentCache::new(store.clone(), config.segment_cache_bytes_max, metrics.clone());
        let storage = Storage {
            inner: Arc::new(Inner {
                config,
                catalog,
                store,
                local_root,
                topics,
                wal,
                append_lock: tokio::sync::Mutex::new(0),
                cache,
                metrics,
                seal_wakeup: Notify::new(),
                retention_wakeup: Notify::new(),
                seal_progress: Notify::new(),
                shutdown: tokio::sync::watch::channel(false).0,
                graveyard: std::sync::Mutex::default(),
                compaction_lock: tokio::sync::Mutex::new(()),
                compaction_floor: RwLock::new(None),
            }),
        };
        // Rows replayed from the WAL may already be over the thresholds.
        storage.inner.seal_wakeup.notify_one();
        tokio::spawn(sealer::run(storage.clone()));
        tokio::spawn(retention::run(storage.clone()));
        tokio::spawn(compaction::run(storage.clone()));
        Ok(storage)
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Arc<StorageMetrics> {
        &self.inner.metrics
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.inner.catalog
    }

    /// Creates a topic.
    pub fn create_topic(&self, definition: &TopicDefinition) -> Result<Arc<TopicLog>> {
        let meta = self.inner.catalog.create_topic(definition).map_err(|e| match e {
            streamhouse_catalog::CatalogError::TopicExists(name) => StorageError::TopicExists(name),
            other => other.into(),
        })?;
        let partitions = (0..meta.partitions).map(|p| PartitionLog::new(p, 0, 0)).collect();
        let topic = Arc::new(TopicLog::new(meta, partitions)?);
        self.topics_write().insert(topic.id(), topic.clone());
        Ok(topic)
    }

    /// Drops a topic: its metadata goes at once, its objects in the background.
    pub fn drop_topic(&self, name: &str) -> Result<()> {
        let meta = self.inner.catalog.drop_topic(name).map_err(|e| match e {
            streamhouse_catalog::CatalogError::TopicNotFound(name) => StorageError::TopicNotFound(name),
            other => other.into(),
        })?;
        if let Some(topic) = self.topics_write().remove(&meta.id) {
            topic.dropped.store(true, Ordering::Release);
        }
        self.inner.retention_wakeup.notify_one();
        Ok(())
    }

    /// A live topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<TopicLog>> {
        self.topics_read().values().find(|t| t.name() == name).cloned()
    }

    /// Every live topic, by name.
    pub fn topics(&self) -> Vec<Arc<TopicLog>> {
        let mut topics: Vec<_> = self.topics_read().values().cloned().collect();
        topics.sort_by(|a, b| a.name().cmp(b.name()));
        topics
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<TopicLog>>> {
        self.inner.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn topics_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<TopicLog>>> {
        self.inner.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends batches to a topic atomically: either every row is durable and visible when this
    /// returns `Ok`, or none will ever be. Batches must match the topic schema. On a keyed table
    /// every row is an upsert (taking the table's write lock for the append).
    pub async fn append(&self, topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<AppendOutcome> {
        self.append_prepared(topic, prepare(topic, batches)?).await
    }

    /// Appends a write [`prepare`]d for this topic, as [`Self::append`] does.
    pub async fn append_prepared(&self, topic: &TopicLog, prepared: PreparedAppend) -> Result<AppendOutcome> {
        if prepared.topic_id.is_some_and(|id| id != topic.id()) {
            return Err(StorageError::InvalidBatch {
                topic: topic.name().to_string(),
                reason: "the write was prepared for another topic".into(),
            });
        }
        if topic.is_keyed() {
            let _guard = topic.lock_writes().await;
            return self.append_entries(topic, prepared.entries).await;
        }
        self.append_entries(topic, prepared.entries).await
    }

    /// Appends upserts (`false`) and tombstones (`true`, carrying the deleted row) to a keyed
    /// table, in order, atomically, under its write lock.
    pub async fn append_changes(
        &self,
        topic: &TopicLog,
        guard: &KeyedWriteGuard<'_>,
        changes: Vec<(RecordBatch, bool)>,
    ) -> Result<AppendOutcome> {
        if !topic.is_keyed() || guard.topic_id != topic.id() {
            return Err(StorageError::InvalidBatch {
                topic: topic.name().to_string(),
                reason: "changes are appended to a keyed table under its own write lock".into(),
            });
        }
        let mut batches = Vec::with_capacity(changes.len());
        for (batch, deleted) in changes {
            topic.validate(&batch)?;
            batches.push(with_deleted_flag(topic, &batch, deleted)?);
        }
        self.append_entries(topic, prepare_log(topic, batches)?.entries).await
    }

    /// Appends prepared entries (rows in the topic's log schema, encoded).
    async fn append_entries(&self, topic: &TopicLog, prepared: Vec<(u32, RecordBatch, Arc<ipc::EncodedBatch>)>) -> Result<AppendOutcome> {
        if topic.is_dropped() {
            return Err(StorageError::TopicNotFound(topic.name().to_string()));
        }
        let mut encoded = Vec::with_capacity(prepared.len());
        let mut entries = Vec::with_capacity(prepared.len());
        for (partition, batch, encoding) in prepared {
            encoded.push(EncodedEntry { partition, encoded: encoding.clone() });
            entries.push(RecordEntry { topic_id: topic.id(), partition, base_offset: 0, timestamp_us: 0, batch, encoded: Some(encoding) });
        }
        if entries.is_empty() {
            return Ok(AppendOutcome::default());
        }
        for entry in &encoded {
            self.wait_for_room(topic, entry.partition).await?;
        }
        let (ack, acknowledged) = oneshot::channel();
        let mut outcome = AppendOutcome::default();
        {
            let mut last_timestamp = self.inner.append_lock.lock().await;
            // Append times never go backwards, even if the clock does.
            let timestamp_us = now_us().max(*last_timestamp);
            *last_timestamp = timestamp_us;
            let mut with_offsets = Vec::with_capacity(encoded.len());
            for (entry, record) in encoded.into_iter().zip(entries.iter_mut()) {
                let partition = &topic.partitions[entry.partition as usize];
                let rows = record.batch.num_rows() as u64;
                let base_offset = partition.next_offset.fetch_add(rows, Ordering::AcqRel);
                record.base_offset = base_offset;
                record.timestamp_us = timestamp_us;
                outcome.placements.push((entry.partition, base_offset, rows));
                with_offsets.push((entry, base_offset));
            }
            let frame = encode_frame(topic.id(), timestamp_us, topic.schema_message(), &with_offsets);
            self.inner.wal.submit(WalRequest { frame, entries, ack }).await?;
        }
        acknowledged.await.map_err(|_| StorageError::ShuttingDown)??;
        if topic
            .partitions
            .iter()
            .any(|p| p.read_tail().bytes >= self.inner.config.segment_bytes_max)
        {
            self.inner.seal_wakeup.notify_one();
        }
        Ok(outcome)
    }

    /// Waits while a partition's unsealed tail is over `partition_tail_bytes_max`, up to
    /// `append_wait_ms_max`: memory stays bounded when sealing falls behind.
    async fn wait_for_room(&self, topic: &TopicLog, partition: u32) -> Result<()> {
        let config = &self.inner.config;
        let started = std::time::Instant::now();
        let limit = std::time::Duration::from_millis(config.append_wait_ms_max);
        loop {
            let progress = self.inner.seal_progress.notified();
            tokio::pin!(progress);
            // Registered before the check, so a seal finishing in between still wakes us.
            progress.as_mut().enable();
            let bytes = topic.partitions[partition as usize].read_tail().bytes;
            if bytes <= config.partition_tail_bytes_max {
                return Ok(());
            }
            self.inner.seal_wakeup.notify_one();
            let remaining = limit.saturating_sub(started.elapsed());
            if remaining.is_zero() || tokio::time::timeout(remaining, progress).await.is_err() {
                return Err(StorageError::Backpressure {
                    topic: topic.name().to_string(),
                    partition,
                    bytes,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }

    /// A consistent view of one partition for a bounded read: every acknowledged row below the
    /// high watermark at this instant, from segments and the tail.
    pub fn snapshot(&self, topic: &TopicLog, partition: u32) -> Result<PartitionSnapshot> {
        self.snapshot_from(topic, partition, 0)
    }

    /// Like [`Self::snapshot`], but only segments holding offsets at or above `from` are listed
    /// (a follower reading onwards from `from` needs no older ones).
    pub fn snapshot_from(&self, topic: &TopicLog, partition: u32, from: u64) -> Result<PartitionSnapshot> {
        let log = topic.partition(partition).ok_or_else(|| StorageError::PartitionNotFound {
            topic: topic.name().to_string(),
            partition,
        })?;
        // Read the tail first: sealing registers a segment before it trims the tail, so every
        // offset below `tail_start` is in a registered segment by now.
        let (tail, tail_start) = {
            let tail = log.read_tail();
            (tail.batches.iter().cloned().collect::<Vec<_>>(), tail.start_offset)
        };
        let high_watermark = tail.last().map_or(tail_start, StoredBatch::end_offset);
        let low_watermark = log.low_watermark();
        let first = low_watermark.max(from);
        let segments = if tail_start > first {
            self.inner.catalog.segments(topic.id(), partition, first, tail_start)?
        } else {
            Vec::new()
        };
        Ok(PartitionSnapshot { partition, low_watermark, high_watermark, segments, tail })
    }

    /// Durable per-partition state (for DESCRIBE).
    pub fn partition_states(&self, topic: &TopicLog) -> Result<Vec<PartitionState>> {
        Ok(self.inner.catalog.partitions(topic.id())?)
    }

    /// Columns of a segment file (indices into its schema, see [`segment::segment_schema`]),
    /// decoded, through the cache: one array per record batch of the file.
    pub async fn segment_columns(&self, segment: &SegmentMeta, columns: &[usize]) -> Result<Vec<cache::CachedColumn>> {
        self.inner.cache.columns(&segment.object_key, columns).await
    }

    /// Starts decoding columns of a segment that a reader will need next.
    pub fn prefetch_segment(&self, segment: &SegmentMeta, columns: &[usize]) {
        self.inner.cache.prefetch(&segment.object_key, columns);
    }

    /// Number of WAL files on disk (for tests and metrics).
    pub fn wal_file_count(&self) -> usize {
        self.inner.wal.file_count()
    }

    /// Seals every partition that holds unsealed rows, now, regardless of thresholds.
    pub async fn seal_all(&self) -> Result<()> {
        sealer::seal_all(self, true).await
    }

    /// Compacts every keyed table partition that has sealed segments, now, and deletes every
    /// replaced object at once (for tests and tools: a concurrent scan of a replaced segment
    /// may fail).
    pub async fn compact_now(&self) -> Result<()> {
        compaction::compact_once(self, true).await?;
        compaction::bury_due(self, true).await;
        Ok(())
    }

    /// Tells compaction how far readers that need deletes (materialized views) have consumed
    /// each keyed table partition: tombstones at or above that offset are kept.
    pub fn set_compaction_floor(&self, floor: CompactionFloor) {
        *self.inner.compaction_floor.write().unwrap_or_else(|p| p.into_inner()) = Some(floor);
    }

    fn compaction_floor(&self, topic_id: u64, partition: u32) -> u64 {
        match self.inner.compaction_floor.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(floor) => floor(topic_id, partition),
            None => u64::MAX,
        }
    }

    /// Runs retention once, now.
    pub async fn enforce_retention(&self) -> Result<()> {
        retention::enforce_once(self).await
    }

    /// Seals every open segment (so the next start replays little), then stops background
    /// tasks and the WAL thread after every queued write is committed.
    pub async fn shutdown(&self) {
        if let Err(error) = sealer::seal_all(self, true).await {
            tracing::warn!(%error, "could not seal every segment at shutdown; the WAL keeps the rows");
        }
        self.stop_without_sealing().await;
    }

    /// Stops background tasks and the WAL thread without sealing: the data directory is left
    /// as a crash right after the last acknowledgement would leave it (unsealed rows only in the
    /// WAL). For tests and tools.
    pub async fn stop_without_sealing(&self) {
        self.inner.shutdown.send_replace(true);
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.wal.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_are_grouped_and_large_ones_kept_whole() {
        let batch = |rows: usize| {
            let values = arrow::array::Int64Array::from_iter_values(0..rows as i64);
            RecordBatch::try_from_iter(vec![("v", Arc::new(values) as arrow::array::ArrayRef)]).unwrap()
        };
        let sizes = |runs: Vec<Vec<RecordBatch>>| -> Vec<Vec<usize>> {
            runs.iter().map(|run| run.iter().map(RecordBatch::num_rows).collect()).collect()
        };
        let half = APPEND_CHUNK_ROWS / 2;
        let input = vec![batch(half), batch(half), batch(1), batch(3 * APPEND_CHUNK_ROWS), batch(2), batch(3)];
        assert_eq!(sizes(chunks(input)), vec![vec![half, half], vec![1], vec![3 * APPEND_CHUNK_ROWS], vec![2, 3]]);
        assert!(chunks(Vec::new()).is_empty());
    }
}
