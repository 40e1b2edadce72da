//! Durable metadata for StreamHouse.
//!
//! The catalog owns the facts that must survive a restart and that are not log data: topics (name,
//! Arrow schema, partition count, partition key, retention, watermark), partitions (low watermark
//! and how far they are sealed into segments) and the segment index (offset range, row count,
//! bytes, `_timestamp` and event-time bounds, object key) and materialized views (name, query,
//! options, source topics) and roles (attributes, SCRAM verifiers, memberships), owners and
//! privileges of topics and views. Every change is one
//! transaction.
//!
//! The catalog must not read or write log data and knows nothing about SQL or object stores: it
//! records what the storage layer tells it. [`Catalog`] is the interface; [`SqliteCatalog`] is the
//! embedded backend (one SQLite file in the data directory). A shared PostgreSQL backend would be a
//! second implementation of the same trait.

#![forbid(unsafe_code)]

mod access;
mod error;
mod model;
mod roles;
mod schema_codec;
mod sqlite;

pub use access::{AccessList, ObjectGrant, ObjectRef};
pub use error::CatalogError;
pub use model::{
    PartitionState, RetentionPolicy, RoleChange, RoleDefinition, RoleId, RoleMembership, RoleMeta, SegmentMeta, TopicDefinition, TopicId, TopicMeta, ViewDefinition, ViewId,
    ViewMeta, WatermarkSpec,
};
pub use schema_codec::{decode_schema, encode_schema};
pub use sqlite::SqliteCatalog;

/// Result type of catalog operations.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The durable metadata store. Every method is one transaction: it either happens whole or not
/// at all.
pub trait Catalog: Send + Sync + 'static {
    /// Creates a topic and its partitions. Fails with [`CatalogError::TopicExists`] if the name
    /// is taken.
    fn create_topic(&self, definition: &TopicDefinition) -> Result<TopicMeta>;

    /// Records a materialized view. Fails with [`CatalogError::TopicExists`] if a topic or view
    /// has the name, or [`CatalogError::TopicNotFound`] if a source topic is gone.
    fn create_view(&self, definition: &ViewDefinition) -> Result<ViewMeta>;

    /// Removes a view's definition. Its state is the engine's to delete. Fails with
    /// [`CatalogError::InUse`] while another view reads it.
    fn drop_view(&self, name: &str) -> Result<ViewMeta>;

    /// All views, ordered by name.
    fn list_views(&self) -> Result<Vec<ViewMeta>>;

    /// Removes a topic's metadata and records its id as dropped, so that its objects can be
    /// deleted in the background. Returns the dropped topic. Fails with [`CatalogError::InUse`]
    /// while a view reads it.
    fn drop_topic(&self, name: &str) -> Result<TopicMeta>;

    /// All live topics, ordered by name.
    fn list_topics(&self) -> Result<Vec<TopicMeta>>;

    /// One topic by name.
    fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>>;

    /// Topic ids dropped whose objects are not yet deleted.
    fn list_dropped_topics(&self) -> Result<Vec<TopicId>>;

    /// Forgets a dropped topic once its objects are gone.
    fn forget_dropped_topic(&self, topic_id: TopicId) -> Result<()>;

    /// The state of every partition of a topic, ordered by partition.
    fn partitions(&self, topic_id: TopicId) -> Result<Vec<PartitionState>>;

    /// Registers a sealed segment and advances the partition's sealed offset to
    /// `segment.last_offset + 1`. The segment must start exactly at the current sealed offset.
    fn register_segment(&self, segment: &SegmentMeta) -> Result<()>;

    /// Segments of one partition that hold offsets in `[from_offset, to_offset)`, by base offset.
    fn segments(
        &self,
        topic_id: TopicId,
        partition: u32,
        from_offset: u64,
        to_offset: u64,
    ) -> Result<Vec<SegmentMeta>>;

    /// Deletes the oldest segment of a partition from the index and advances the low watermark
    /// past it. The caller has already deleted its object.
    fn delete_oldest_segment(&self, topic_id: TopicId, partition: u32, base_offset: u64)
        -> Result<()>;

    /// Records a role. Fails with [`CatalogError::RoleExists`] if the name is taken.
    fn create_role(&self, definition: &RoleDefinition) -> Result<RoleMeta>;

    /// Changes a role's attributes or name. Fails with [`CatalogError::RoleNotFound`], or
    /// [`CatalogError::RoleExists`] for a rename onto a taken name.
    fn alter_role(&self, name: &str, change: &RoleChange) -> Result<RoleMeta>;

    /// Removes a role and every membership it is part of.
    fn drop_role(&self, name: &str) -> Result<RoleMeta>;

    /// All roles, ordered by name.
    fn list_roles(&self) -> Result<Vec<RoleMeta>>;

    /// Makes `member` a member of `role`; `false` if it already was (nothing changes then).
    /// Fails with [`CatalogError::MembershipCycle`] if `role` is already, directly or not, a
    /// member of `member`.
    fn grant_role(&self, role: &str, member: &str, grantor: &str, admin_option: bool) -> Result<bool>;

    /// Ends a membership; `false` if there was none.
    fn revoke_role(&self, role: &str, member: &str) -> Result<bool>;

    /// Every membership, by role then member.
    fn list_memberships(&self) -> Result<Vec<RoleMembership>>;

    /// Records `owner` as the owner of `object` (a topic or view).
    fn set_owner(&self, object: ObjectRef, owner: RoleId) -> Result<()>;

    /// Sets the privileges one grantee holds on one object (replacing what it held; empty
    /// privileges remove the grant).
    fn set_grant(&self, grant: &ObjectGrant) -> Result<()>;

    /// Every recorded owner and grant. Dropping a topic or view forgets its own.
    fn access_list(&self) -> Result<AccessList>;

    /// Replaces a run of adjacent segments of one partition with one segment covering the same
    /// offset range (compaction of a keyed table). Fails with [`CatalogError::SegmentGap`] unless
    /// `replaced` (base offsets) are registered, adjacent, and span exactly
    /// `[segment.base_offset, segment.last_offset]`.
    fn replace_segments(&self, replaced: &[u64], segment: &SegmentMeta) -> Result<()>;
}
