use arrow::datatypes::SchemaRef;

/// A topic's id. Ids are never reused, so a topic created again under a dropped name never sees
/// the old topic's objects.
pub type TopicId = u64;

/// Retention of a topic: whole segments older than `time_ms` (by their newest `_timestamp`) or
/// beyond `bytes` (oldest first) are deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub time_ms: Option<u64>,
    pub bytes: Option<u64>,
}

/// `WATERMARK FOR column AS column - INTERVAL '…'`: the event-time column and how far the
/// watermark trails the largest event time seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSpec {
    pub column: String,
    pub delay_us: i64,
    /// The expression as the user wrote it, for DESCRIBE and SHOW.
    pub expression: String,
}

/// What a user asks for when creating a topic.
#[derive(Debug, Clone)]
pub struct TopicDefinition {
    pub name: String,
    /// User columns only; system columns are added by the storage layer.
    pub schema: SchemaRef,
    pub partitions: u32,
    /// Columns whose hash picks the partition; empty means round-robin per batch.
    pub partition_key: Vec<String>,
    pub retention: RetentionPolicy,
    pub watermark: Option<WatermarkSpec>,
    /// Primary key columns of a keyed table (its log is a changelog); empty for an append-only
    /// topic.
    pub primary_key: Vec<String>,
}

/// A topic as the catalog stores it.
#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub id: TopicId,
    pub name: String,
    pub schema: SchemaRef,
    pub partitions: u32,
    pub partition_key: Vec<String>,
    pub retention: RetentionPolicy,
    pub watermark: Option<WatermarkSpec>,
    /// See [`TopicDefinition::primary_key`].
    pub primary_key: Vec<String>,
    pub created_ms: i64,
}

/// The durable state of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: u32,
    /// First offset still readable; retention advances it.
    pub low_watermark: u64,
    /// One past the last offset held in registered segments.
    pub sealed_offset: u64,
    pub segment_count: u64,
    pub segment_bytes: u64,
}

/// One sealed segment: an Arrow IPC file in the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub topic_id: TopicId,
    pub partition: u32,
    pub base_offset: u64,
    /// Inclusive.
    pub last_offset: u64,
    pub row_count: u64,
    pub bytes: u64,
    /// Bounds of `_timestamp`, microseconds since the epoch.
    pub min_timestamp_us: i64,
    pub max_timestamp_us: i64,
    /// Bounds of the event-time column, microseconds since the epoch, when the topic has one and
    /// the segment holds a non-null value.
    pub min_event_time_us: Option<i64>,
    pub max_event_time_us: Option<i64>,
    pub object_key: String,
}

/// A materialized view's id. Ids are never reused: state keyed by a dropped view's id is never
/// read by a new view.
pub type ViewId = u64;

/// What a user asks for when creating a materialized view.
#[derive(Debug, Clone)]
pub struct ViewDefinition {
    pub name: String,
    /// The defining query, as SQL text; it is planned again on every start.
    pub query: String,
    /// `WITH (…)` options, by lower-case name.
    pub options: std::collections::BTreeMap<String, String>,
    /// Topics the query reads: they cannot be dropped while the view exists.
    pub sources: Vec<TopicId>,
    /// Views the query reads: likewise.
    pub source_views: Vec<ViewId>,
}

/// A materialized view as the catalog stores it.
#[derive(Debug, Clone)]
pub struct ViewMeta {
    pub id: ViewId,
    pub name: String,
    pub query: String,
    pub options: std::collections::BTreeMap<String, String>,
    /// Source topic ids, ascending, without duplicates.
    pub sources: Vec<TopicId>,
    /// Source view ids, likewise.
    pub source_views: Vec<ViewId>,
    pub created_ms: i64,
}

/// A role's id. Ids are never reused.
pub type RoleId = u64;

/// What `CREATE ROLE` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    /// A SCRAM-SHA-256 verifier in PostgreSQL's text form; never a password.
    pub password: Option<String>,
}

/// A role as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMeta {
    pub id: RoleId,
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    /// See [`RoleDefinition::password`].
    pub password: Option<String>,
    pub created_ms: i64,
}

/// What `ALTER ROLE` changes; `None` leaves an attribute as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleChange {
    pub superuser: Option<bool>,
    pub login: Option<bool>,
    /// `Some(None)` removes the password (`PASSWORD NULL`).
    pub password: Option<Option<String>>,
    pub rename: Option<String>,
}

/// `GRANT role TO member`: `member` has the rights of `role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleMembership {
    pub role: RoleId,
    pub member: RoleId,
    pub grantor: RoleId,
    pub admin_option: bool,
}
