use thiserror::Error;

/// Errors of the catalog.
#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("topic \"{0}\" already exists")]
    TopicExists(String),
    #[error("topic \"{0}\" does not exist")]
    TopicNotFound(String),
    #[error("materialized view \"{0}\" does not exist")]
    ViewNotFound(String),
    #[error("cannot drop \"{name}\" because materialized views depend on it: {}", dependents.join(", "))]
    InUse { name: String, dependents: Vec<String> },
    #[error(
        "segment {topic_id}/{partition}/{base_offset} does not continue the partition, which is sealed up to offset {sealed_offset}"
    )]
    SegmentGap {
        topic_id: u64,
        partition: u32,
        base_offset: u64,
        sealed_offset: u64,
    },
    #[error("role \"{0}\" already exists")]
    RoleExists(String),
    #[error("role \"{0}\" does not exist")]
    RoleNotFound(String),
    /// `GRANT role TO member` where `role` already belongs to `member` (or is it): a cycle.
    #[error("role \"{role}\" is a member of role \"{member}\"")]
    MembershipCycle { role: String, member: String },
    /// A role that still owns or is granted something; `detail` says what.
    #[error("role \"{name}\" cannot be dropped because some objects depend on it: {detail}")]
    RoleInUse { name: String, detail: String },
    #[error("catalog database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("catalog holds a schema that cannot be decoded: {0}")]
    Schema(String),
    #[error("catalog file was written by a newer StreamHouse (schema version {found}, this build knows up to {known})")]
    TooNew { found: i64, known: i64 },
}

impl CatalogError {
    /// Whether the catalog database could not be written because its disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, CatalogError::Database(rusqlite::Error::SqliteFailure(error, _)) if error.code == rusqlite::ErrorCode::DiskFull)
    }
}
