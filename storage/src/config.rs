use std::path::PathBuf;

/// Limits and locations of the storage layer. Every limit is named with its unit last.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Holds the WAL (`wal/`), the catalog (`catalog.db`) and, by default, the objects.
    pub data_dir: PathBuf,
    /// `None` or a `file://` URL: objects under the data directory. `s3://bucket/prefix`: S3,
    /// configured from the standard AWS environment variables (endpoint included).
    pub object_store_url: Option<String>,
    /// A partition's open segment is sealed once its in-memory size reaches this.
    pub segment_bytes_max: u64,
    /// A partition's open segment is sealed once its oldest row is this old.
    pub segment_age_max_ms: u64,
    /// A WAL file is closed and a new one started past this size.
    pub wal_file_bytes_max: u64,
    /// Largest amount of WAL bytes one group commit writes before its fsync.
    pub wal_group_bytes_max: u64,
    /// Byte budget of the in-memory cache of segment files fetched from the object store.
    pub segment_cache_bytes_max: u64,
    /// How often retention and the deletion of dropped topics' objects run.
    pub retention_check_interval_ms: u64,
    /// Most unsealed bytes a partition holds in memory. Past it, appends wait for sealing to
    /// catch up (an unreachable object store must not grow memory without bound).
    pub partition_tail_bytes_max: u64,
    /// How long an append waits for sealing to catch up before it fails.
    pub append_wait_ms_max: u64,
    /// How often keyed tables are checked for compaction.
    pub compaction_interval_ms: u64,
    /// A keyed table's partition is compacted once it has this many segments.
    pub compaction_segments_min: u64,
    /// Space kept in a file in the data directory and given back when the disk is full, so that
    /// `DROP` can still free space (see `reserve.rs`). `0`: none.
    pub disk_reserve_bytes: u64,
    /// Compaction drops a tombstone (the last row of a deleted key) once it is this old.
    pub tombstone_retention_ms: u64,
}

impl StorageConfig {
    /// Defaults that work on a laptop, rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            object_store_url: None,
            segment_bytes_max: 16 * 1024 * 1024,
            segment_age_max_ms: 30_000,
            wal_file_bytes_max: 64 * 1024 * 1024,
            wal_group_bytes_max: 16 * 1024 * 1024,
            segment_cache_bytes_max: 256 * 1024 * 1024,
            retention_check_interval_ms: 30_000,
            partition_tail_bytes_max: 64 * 1024 * 1024,
            append_wait_ms_max: 30_000,
            compaction_interval_ms: 60_000,
            compaction_segments_min: 4,
            tombstone_retention_ms: 24 * 60 * 60 * 1000,
            disk_reserve_bytes: 64 * 1024 * 1024,
        }
    }
}
