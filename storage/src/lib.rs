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

#![forbid(unsafe_code)]

pub mod cache;
mod append;
mod aside;
mod combine;
mod compaction;
mod config;
mod error;
mod ipc;
mod lz4;
pub mod metrics;
pub mod object;
mod record;
mod reserve;
mod retention;
pub mod scan;
mod sealer;
pub mod segment;
mod stored;
mod tail;
mod topic;
mod wal;
mod wal_file;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use streamhouse_catalog::{Catalog, PartitionState, SegmentMeta, TopicDefinition};
use tokio::sync::Notify;

pub use append::{decode_sent, prepare, BegunAppend, PreparedAppend, SentBatch};
pub use compaction::CompactionFloor;
pub use config::StorageConfig;
pub use error::{Result, StorageError};
pub use metrics::StorageMetrics;
pub use stored::{read_stored, rows_within, StoredPiece};
pub use tail::StoredBatch;
pub use topic::{KeyedWriteGuard, PartitionLog, TopicLog};

use cache::SegmentCache;
use record::RecordEntry;
use wal::Wal;

/// Live topics by id.
type TopicMap = Arc<RwLock<HashMap<u64, Arc<TopicLog>>>>;

/// The rows one append placed: `(partition, first offset, row count)` for each run of
/// consecutive offsets.
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
    /// Encodes the last piece of pipelined writes (see [`aside`]).
    encoder: aside::Encoder,
    /// Held while offsets are assigned and the record is queued, so records enter the WAL in
    /// offset order.
    append_lock: Arc<tokio::sync::Mutex<i64>>,
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
    reserve: reserve::DiskReserve,
    /// Whether the last sealing pass failed because the disk was full.
    sealing_disk_full: std::sync::atomic::AtomicBool,
}

/// The storage layer. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl Inner {
    /// PUTs a segment object. On a local store it is written by [`object::write_local_object`],
    /// which makes it durable: it must survive a power loss before it is registered.
    pub(crate) async fn put_segment(&self, key: &str, bytes: bytes::Bytes) -> Result<()> {
        use object_store::ObjectStoreExt;
        let Some(root) = self.local_root.clone() else {
            self.store.put(&object_store::path::Path::from(key), bytes.into()).await?;
            return Ok(());
        };
        let key = key.to_string();
        let path = root.join(&key).display().to_string();
        tokio::task::spawn_blocking(move || object::write_local_object(&root, &key, &bytes))
            .await
            .map_err(|e| StorageError::WalFailed(format!("segment write task: {e}")))?
            .map_err(|source| StorageError::DataDirectory { path, source })?;
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
                let stored =
                    StoredBatch::with_encoding(entry.base_offset, entry.timestamp_us, entry.batch.clone(), entry.encoded.clone());
                apply_metrics.rows_appended.add(entry.batch.num_rows() as u64);
                apply_metrics.bytes_appended.add(stored.rows_bytes);
                let Some(partition) = topics.get(&entry.topic_id).and_then(|t| t.partition(entry.partition)) else {
                    continue; // dropped while the write was in flight
                };
                partition.apply(stored);
            }
        });
        let append_lock = Arc::new(tokio::sync::Mutex::new(0));
        let give_back_topics = topics.clone();
        let give_back: wal::GiveBackFn = Box::new(move |first_offsets| {
            let topics = give_back_topics.read().unwrap_or_else(|p| p.into_inner());
            for (&(topic_id, partition), &offset) in first_offsets {
                if let Some(partition) = topics.get(&topic_id).and_then(|t| t.partition(partition)) {
                    partition.next_offset.store(offset, Ordering::Release);
                }
            }
        });
        let offsets = wal::OffsetsGiver { append_lock: append_lock.clone(), give_back, runtime: tokio::runtime::Handle::current() };
        let wal = Wal::start(
            &wal_dir,
            files,
            next_sequence,
            config.wal_file_bytes_max,
            config.wal_group_bytes_max,
            apply,
            offsets,
            metrics.clone(),
        )?;
        let cache = SegmentCache::new(store.clone(), config.segment_cache_bytes_max, metrics.clone());
        let reserve = reserve::DiskReserve::new(data_dir, config.disk_reserve_bytes);
        let storage = Storage {
            inner: Arc::new(Inner {
                config,
                catalog,
                store,
                local_root,
                topics,
                wal,
                encoder: aside::Encoder::start()?,
                append_lock,
                cache,
                metrics,
                seal_wakeup: Notify::new(),
                retention_wakeup: Notify::new(),
                seal_progress: Notify::new(),
                shutdown: tokio::sync::watch::channel(false).0,
                graveyard: std::sync::Mutex::default(),
                compaction_lock: tokio::sync::Mutex::new(()),
                compaction_floor: RwLock::new(None),
                reserve,
                sealing_disk_full: std::sync::atomic::AtomicBool::new(false),
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
        let meta = self.freeing_space(|| self.inner.catalog.drop_topic(name)).map_err(|e| match e {
            streamhouse_catalog::CatalogError::TopicNotFound(name) => StorageError::TopicNotFound(name),
            other => other.into(),
        })?;
        if let Some(topic) = self.topics_write().remove(&meta.id) {
            topic.dropped.store(true, Ordering::Release);
        }
        self.inner.retention_wakeup.notify_one();
        Ok(())
    }

    /// Runs a catalog change that frees space (a DROP). If the disk is too full for the catalog
    /// to record it, the disk reserve is given back and the change tried once more.
    pub fn freeing_space<T>(
        &self,
        change: impl Fn() -> Result<T, streamhouse_catalog::CatalogError>,
    ) -> Result<T, streamhouse_catalog::CatalogError> {
        match change() {
            Err(error) if error.is_disk_full() && self.inner.reserve.release() => change(),
            other => other,
        }
    }

    /// A live topic by name.
    /// The bytes a topic takes: its sealed segments as stored (LZ4-compressed Arrow IPC) and its
    /// partitions' unsealed tails.
    pub fn topic_bytes(&self, topic: &TopicLog) -> Result<u64> {
        let mut bytes = 0;
        for partition in 0..topic.partition_count() {
            let segments = self.catalog().segments(topic.id(), partition, 0, u64::MAX)?;
            bytes += segments.iter().map(|s| s.bytes).sum::<u64>();
            bytes += topic.partition(partition).map_or(0, |p| p.unsealed_bytes());
        }
        Ok(bytes)
    }

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

    /// A segment's object, as stored (not cached: a reader of stored bytes does not decode).
    pub async fn segment_object(&self, segment: &SegmentMeta) -> Result<bytes::Bytes> {
        Ok(self.inner.store.get(&ObjectPath::from(segment.object_key.as_str())).await?.bytes().await?)
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
        let _ = tokio::task::spawn_blocking(move || {
            inner.wal.shutdown();
            inner.encoder.stop();
        })
        .await;
    }
}
