use thiserror::Error;

/// Errors of the storage layer.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("topic \"{0}\" does not exist")]
    TopicNotFound(String),
    #[error("topic \"{0}\" already exists")]
    TopicExists(String),
    #[error("partition {partition} does not exist in topic \"{topic}\"")]
    PartitionNotFound { topic: String, partition: u32 },
    #[error("invalid batch for topic \"{topic}\": {reason}")]
    InvalidBatch { topic: String, reason: String },
    #[error("write-ahead log failed and no further writes are accepted until restart: {0}")]
    WalFailed(String),
    #[error("write-ahead log I/O error: {0}")]
    WalIo(#[source] std::io::Error),
    #[error("write-ahead log {file} is corrupt at byte {position}: {reason}")]
    WalCorrupt { file: String, position: u64, reason: String },
    #[error("object store error: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("invalid object store URL \"{url}\": {reason}")]
    ObjectStoreUrl { url: String, reason: String },
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Catalog(#[from] streamhouse_catalog::CatalogError),
    #[error("data directory {path}: {source}")]
    DataDirectory { path: String, #[source] source: std::io::Error },
    #[error(
        "partition {partition} of topic \"{topic}\" holds {bytes} unsealed bytes (partition_tail_bytes_max) and sealing did not catch up within {waited_ms} ms; is the object store reachable?"
    )]
    Backpressure { topic: String, partition: u32, bytes: u64, waited_ms: u64 },
    #[error("storage is shutting down")]
    ShuttingDown,
    /// The disk holding `what` is full. Nothing of the write that gets this error is stored.
    #[error("could not write {what}: no space left on device; nothing of this write was stored, so it can be retried once space is freed (DROP TOPIC frees a topic's space)")]
    DiskFull { what: String },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// This error for one more of the writes that failed with it together (see
    /// [`crate::combine`]): the same variant where it can be copied, its message otherwise.
    pub(crate) fn shared(&self) -> StorageError {
        match self {
            StorageError::TopicNotFound(topic) => StorageError::TopicNotFound(topic.clone()),
            StorageError::InvalidBatch { topic, reason } => {
                StorageError::InvalidBatch { topic: topic.clone(), reason: reason.clone() }
            }
            StorageError::WalFailed(reason) => StorageError::WalFailed(reason.clone()),
            StorageError::Backpressure { topic, partition, bytes, waited_ms } => {
                StorageError::Backpressure { topic: topic.clone(), partition: *partition, bytes: *bytes, waited_ms: *waited_ms }
            }
            StorageError::ShuttingDown => StorageError::ShuttingDown,
            StorageError::DiskFull { what } => StorageError::DiskFull { what: what.clone() },
            StorageError::Arrow(error) => StorageError::Arrow(arrow::error::ArrowError::ComputeError(error.to_string())),
            other => StorageError::WalFailed(other.to_string()),
        }
    }

    /// Whether this error comes from a full disk (the WAL's, a segment's or the catalog's).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::DiskFull { .. } => true,
            StorageError::DataDirectory { source, .. } | StorageError::WalIo(source) => is_disk_full(source),
            StorageError::Catalog(error) => error.is_disk_full(),
            _ => false,
        }
    }
}

/// Whether an I/O error says the disk (or the user's quota on it) is full.
pub(crate) fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() || code == rustix::io::Errno::DQUOT.raw_os_error())
}
