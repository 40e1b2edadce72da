//! The embedded catalog backend: one SQLite file, schema versioned by ordered migrations.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::{
    decode_schema, encode_schema, Catalog, CatalogError, PartitionState, Result, RetentionPolicy, RoleChange, RoleDefinition, RoleMembership, RoleMeta,
    SegmentMeta, TopicDefinition, TopicId, TopicMeta, ViewDefinition, ViewMeta, WatermarkSpec,
};

/// Migrations in order; migration `i` brings the schema to version `i + 1`. Never edit one that
/// has shipped: add a new one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE topics (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL UNIQUE,
    schema_ipc         BLOB NOT NULL,
    partitions         INTEGER NOT NULL CHECK (partitions > 0),
    partition_key      TEXT NOT NULL,          -- JSON array of column names
    retention_ms       INTEGER,
    retention_bytes    INTEGER,
    watermark_column   TEXT,
    watermark_delay_us INTEGER,
    watermark_expr     TEXT,
    created_ms         INTEGER NOT NULL
);
CREATE TABLE partitions (
    topic_id       INTEGER NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    partition      INTEGER NOT NULL,
    low_watermark  INTEGER NOT NULL DEFAULT 0,
    sealed_offset  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);
CREATE TABLE segments (
    topic_id       INTEGER NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    partition      INTEGER NOT NULL,
    base_offset    INTEGER NOT NULL,
    last_offset    INTEGER NOT NULL,
    row_count      INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    min_ts_us      INTEGER NOT NULL,
    max_ts_us      INTEGER NOT NULL,
    min_event_us   INTEGER,
    max_event_us   INTEGER,
    object_key     TEXT NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);
CREATE TABLE dropped_topics (
    topic_id   INTEGER PRIMARY KEY,
    dropped_ms INTEGER NOT NULL
);
"#, r#"
CREATE TABLE views (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    query       TEXT NOT NULL,
    options     TEXT NOT NULL,             -- JSON object of WITH options
    created_ms  INTEGER NOT NULL
);
CREATE TABLE view_sources (
    view_id   INTEGER NOT NULL REFERENCES views(id) ON DELETE CASCADE,
    topic_id  INTEGER NOT NULL,
    PRIMARY KEY (view_id, topic_id)
);
"#, r#"
CREATE TABLE view_dependencies (
    view_id         INTEGER NOT NULL REFERENCES views(id) ON DELETE CASCADE,
    source_view_id  INTEGER NOT NULL,
    PRIMARY KEY (view_id, source_view_id)
);
"#, r#"
ALTER TABLE topics ADD COLUMN primary_key TEXT NOT NULL DEFAULT '[]';  -- JSON array; keyed tables
"#, crate::roles::MIGRATION, crate::access::MIGRATION];

/// The SQLite catalog. One connection behind a mutex: catalog operations are small and rare
/// compared with log appends, which never touch the catalog.
pub struct SqliteCatalog {
    connection: Arc<Mutex<Connection>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path)?;
        Self::initialize(connection)
    }

    /// An in-memory catalog, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::initialize(Connection::open_in_memory()?)
    }

    fn initialize(mut connection: Connection) -> Result<Self> {
        // FULL synchronous mode: a registered segment lets the storage layer drop WAL records,
        // so the registration itself must be durable before the call returns.
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        migrate(&mut connection)?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)) })
    }

    /// Runs `f` in one immediate transaction, committed if it succeeds.
    fn in_transaction<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (it has its own
        // transactions), so a poisoned lock is still usable.
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn migrate(connection: &mut Connection) -> Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    transaction.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: Option<i64> =
        transaction.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
    let current = current.unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(CatalogError::TooNew { found: current, known });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        transaction.execute_batch(migration)?;
        transaction.execute("INSERT INTO schema_version (version) VALUES (?1)", [index as i64 + 1])?;
        tracing::info!(version = index + 1, "applied catalog migration");
    }
    transaction.commit()?;
    Ok(())
}

const TOPIC_COLUMNS: &str = "id, name, schema_ipc, partitions, partition_key, retention_ms, \
     retention_bytes, watermark_column, watermark_delay_us, watermark_expr, created_ms, primary_key";

fn read_topic(row: &Row<'_>) -> rusqlite::Result<(TopicMeta, Vec<u8>)> {
    let key_json: String = row.get(4)?;
    let partition_key: Vec<String> = serde_json::from_str(&key_json).unwrap_or_default();
    let watermark = match (row.get::<_, Option<String>>(7)?, row.get::<_, Option<i64>>(8)?) {
        (Some(column), Some(delay_us)) => Some(WatermarkSpec {
            column,
            delay_us,
            expression: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
        }),
        _ => None,
    };
    let schema_bytes: Vec<u8> = row.get(2)?;
    let meta = TopicMeta {
        id: row.get::<_, i64>(0)? as u64,
        name: row.get(1)?,
        // Filled in by the caller once the bytes are decoded.
        schema: Arc::new(arrow::datatypes::Schema::empty()),
        partitions: row.get::<_, i64>(3)? as u32,
        partition_key,
        retention: RetentionPolicy {
            time_ms: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            bytes: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        },
        watermark,
        created_ms: row.get(10)?,
        primary_key: serde_json::from_str(&row.get::<_, String>(11)?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(11, rusqlite::types::Type::Text, Box::new(e)))?,
    };
    Ok((meta, schema_bytes))
}

fn finish_topic((mut meta, schema_bytes): (TopicMeta, Vec<u8>)) -> Result<TopicMeta> {
    meta.schema = decode_schema(&schema_bytes)?;
    Ok(meta)
}

fn read_segment(row: &Row<'_>) -> rusqlite::Result<SegmentMeta> {
    Ok(SegmentMeta {
        topic_id: row.get::<_, i64>(0)? as u64,
        partition: row.get::<_, i64>(1)? as u32,
        base_offset: row.get::<_, i64>(2)? as u64,
        last_offset: row.get::<_, i64>(3)? as u64,
        row_count: row.get::<_, i64>(4)? as u64,
        bytes: row.get::<_, i64>(5)? as u64,
        min_timestamp_us: row.get(6)?,
        max_timestamp_us: row.get(7)?,
        min_event_time_us: row.get(8)?,
        max_event_time_us: row.get(9)?,
        object_key: row.get(10)?,
    })
}

fn insert_segment(connection: &Connection, segment: &SegmentMeta) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO segments (topic_id, partition, base_offset, last_offset, row_count, bytes, \
         min_ts_us, max_ts_us, min_event_us, max_event_us, object_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            segment.topic_id as i64,
            segment.partition as i64,
            segment.base_offset as i64,
            segment.last_offset as i64,
            segment.row_count as i64,
            segment.bytes as i64,
            segment.min_timestamp_us,
            segment.max_timestamp_us,
            segment.min_event_time_us,
            segment.max_event_time_us,
            segment.object_key,
        ],
    )?;
    Ok(())
}

fn view_named(connection: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    connection.query_row("SELECT id FROM views WHERE name = ?1", [name], |r| r.get(0)).optional()
}

const VIEW_COLUMNS: &str = "id, name, query, options, created_ms";

fn read_view(connection: &Connection, row: &Row<'_>) -> rusqlite::Result<ViewMeta> {
    let id: i64 = row.get(0)?;
    let options: String = row.get(3)?;
    let sources = connection
        .prepare_cached("SELECT topic_id FROM view_sources WHERE view_id = ?1 ORDER BY topic_id")?
        .query_map([id], |r| r.get::<_, i64>(0).map(|v| v as u64))?
        .collect::<rusqlite::Result<_>>()?;
    let source_views = connection
        .prepare_cached("SELECT source_view_id FROM view_dependencies WHERE view_id = ?1 ORDER BY source_view_id")?
        .query_map([id], |r| r.get::<_, i64>(0).map(|v| v as u64))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ViewMeta {
        id: id as u64,
        name: row.get(1)?,
        query: row.get(2)?,
        options: serde_json::from_str(&options).unwrap_or_default(),
        sources,
        source_views,
        created_ms: row.get(4)?,
    })
}

impl Catalog for SqliteCatalog {
    fn create_view(&self, definition: &ViewDefinition) -> Result<ViewMeta> {
        let options = serde_json::to_string(&definition.options).map_err(|e| CatalogError::Schema(e.to_string()))?;
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let topic: Option<i64> =
            transaction.query_row("SELECT id FROM topics WHERE name = ?1", [&definition.name], |r| r.get(0)).optional()?;
        if topic.is_some() || view_named(&transaction, &definition.name)?.is_some() {
            return Err(CatalogError::TopicExists(definition.name.clone()));
        }
        for &source in &definition.sources {
            let live: Option<i64> =
                transaction.query_row("SELECT id FROM topics WHERE id = ?1", [source as i64], |r| r.get(0)).optional()?;
            if live.is_none() {
                return Err(CatalogError::TopicNotFound(format!("#{source}")));
            }
        }
        let created_ms = now_ms();
        transaction.execute(
            "INSERT INTO views (name, query, options, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![definition.name, definition.query, options, created_ms],
        )?;
        let id = transaction.last_insert_rowid();
        for &source in &definition.sources {
            transaction.execute("INSERT INTO view_sources (view_id, topic_id) VALUES (?1, ?2)", params![id, source as i64])?;
        }
        for &source in &definition.source_views {
            let live: Option<i64> =
                transaction.query_row("SELECT id FROM views WHERE id = ?1", [source as i64], |r| r.get(0)).optional()?;
            if live.is_none() {
                return Err(CatalogError::ViewNotFound(format!("#{source}")));
            }
            transaction.execute(
                "INSERT INTO view_dependencies (view_id, source_view_id) VALUES (?1, ?2)",
                params![id, source as i64],
            )?;
        }
        transaction.commit()?;
        let mut sources = definition.sources.clone();
        sources.sort_unstable();
        sources.dedup();
        let mut source_views = definition.source_views.clone();
        source_views.sort_unstable();
        source_views.dedup();
        Ok(ViewMeta {
            id: id as u64,
            name: definition.name.clone(),
            query: definition.query.clone(),
            options: definition.options.clone(),
            sources,
            source_views,
            created_ms,
        })
    }

    fn drop_view(&self, name: &str) -> Result<ViewMeta> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let view = transaction
            .query_row(&format!("SELECT {VIEW_COLUMNS} FROM views WHERE name = ?1"), [name], |row| read_view(&transaction, row))
            .optional()?
            .ok_or_else(|| CatalogError::ViewNotFound(name.to_string()))?;
        let readers: Vec<String> = transaction
            .prepare(
                "SELECT v.name FROM views v JOIN view_dependencies d ON d.view_id = v.id \
                 WHERE d.source_view_id = ?1 ORDER BY v.name",
            )?
            .query_map([view.id as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !readers.is_empty() {
            return Err(CatalogError::InUse { name: name.to_string(), dependents: readers });
        }
        transaction.execute("DELETE FROM view_dependencies WHERE view_id = ?1", [view.id as i64])?;
        transaction.execute("DELETE FROM view_sources WHERE view_id = ?1", [view.id as i64])?;
        transaction.execute("DELETE FROM views WHERE id = ?1", [view.id as i64])?;
        crate::access::forget(&transaction, crate::ObjectRef::View(view.id))?;
        transaction.commit()?;
        Ok(view)
    }

    fn create_role(&self, definition: &RoleDefinition) -> Result<RoleMeta> {
        self.in_transaction(|t| crate::roles::create(t, definition, now_ms()))
    }

    fn alter_role(&self, name: &str, change: &RoleChange) -> Result<RoleMeta> {
        self.in_transaction(|t| crate::roles::alter(t, name, change))
    }

    fn drop_role(&self, name: &str) -> Result<RoleMeta> {
        self.in_transaction(|t| crate::roles::drop(t, name))
    }

    fn list_roles(&self) -> Result<Vec<RoleMeta>> {
        crate::roles::list(&self.lock())
    }

    fn grant_role(&self, role: &str, member: &str, grantor: &str, admin_option: bool) -> Result<bool> {
        self.in_transaction(|t| crate::roles::grant(t, role, member, grantor, admin_option))
    }

    fn revoke_role(&self, role: &str, member: &str) -> Result<bool> {
        self.in_transaction(|t| crate::roles::revoke(t, role, member))
    }

    fn set_owner(&self, object: crate::ObjectRef, owner: crate::RoleId) -> Result<()> {
        self.in_transaction(|t| crate::access::set_owner(t, object, owner))
    }

    fn set_grant(&self, grant: &crate::ObjectGrant) -> Result<()> {
        self.in_transaction(|t| crate::access::set_grant(t, grant))
    }

    fn access_list(&self) -> Result<crate::AccessList> {
        crate::access::list(&self.lock())
    }

    fn list_memberships(&self) -> Result<Vec<RoleMembership>> {
        crate::roles::memberships(&self.lock())
    }

    fn list_views(&self) -> Result<Vec<ViewMeta>> {
        let connection = self.lock();
        let mut statement = connection.prepare(&format!("SELECT {VIEW_COLUMNS} FROM views ORDER BY name"))?;
        let rows = statement.query_map([], |row| read_view(&connection, row))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }


    fn create_topic(&self, definition: &TopicDefinition) -> Result<TopicMeta> {
        let schema_bytes = encode_schema(&definition.schema)?;
        let key_json = serde_json::to_string(&definition.partition_key)
            .map_err(|e| CatalogError::Schema(e.to_string()))?;
        let primary_key_json =
            serde_json::to_string(&definition.primary_key).map_err(|e| CatalogError::Schema(e.to_string()))?;
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: Option<i64> = transaction
            .query_row("SELECT id FROM topics WHERE name = ?1", [&definition.name], |r| r.get(0))
            .optional()?;
        if exists.is_some() || view_named(&transaction, &definition.name)?.is_some() {
            return Err(CatalogError::TopicExists(definition.name.clone()));
        }
        let created_ms = now_ms();
        transaction.execute(
            "INSERT INTO topics (name, schema_ipc, partitions, partition_key, retention_ms, \
             retention_bytes, watermark_column, watermark_delay_us, watermark_expr, created_ms, primary_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                definition.name,
                schema_bytes,
                definition.partitions as i64,
                key_json,
                definition.retention.time_ms.map(|v| v as i64),
                definition.retention.bytes.map(|v| v as i64),
                definition.watermark.as_ref().map(|w| w.column.clone()),
                definition.watermark.as_ref().map(|w| w.delay_us),
                definition.watermark.as_ref().map(|w| w.expression.clone()),
                created_ms,
                primary_key_json,
            ],
        )?;
        let id = transaction.last_insert_rowid();
        for partition in 0..definition.partitions {
            transaction.execute(
                "INSERT INTO partitions (topic_id, partition) VALUES (?1, ?2)",
                params![id, partition as i64],
            )?;
        }
        transaction.commit()?;
        Ok(TopicMeta {
            id: id as u64,
            name: definition.name.clone(),
            schema: definition.schema.clone(),
            partitions: definition.partitions,
            partition_key: definition.partition_key.clone(),
            retention: definition.retention.clone(),
            watermark: definition.watermark.clone(),
            primary_key: definition.primary_key.clone(),
            created_ms,
        })
    }

    fn drop_topic(&self, name: &str) -> Result<TopicMeta> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let topic = transaction
            .query_row(
                &format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE name = ?1"),
                [name],
                read_topic,
            )
            .optional()?
            .ok_or_else(|| CatalogError::TopicNotFound(name.to_string()))?;
        let topic = finish_topic(topic)?;
        let id = topic.id as i64;
        let readers: Vec<String> = transaction
            .prepare(
                "SELECT v.name FROM views v JOIN view_sources s ON s.view_id = v.id \
                 WHERE s.topic_id = ?1 ORDER BY v.name",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !readers.is_empty() {
            return Err(CatalogError::InUse { name: name.to_string(), dependents: readers });
        }
        transaction.execute("DELETE FROM segments WHERE topic_id = ?1", [id])?;
        transaction.execute("DELETE FROM partitions WHERE topic_id = ?1", [id])?;
        transaction.execute("DELETE FROM topics WHERE id = ?1", [id])?;
        crate::access::forget(&transaction, crate::ObjectRef::Topic(topic.id))?;
        transaction.execute(
            "INSERT INTO dropped_topics (topic_id, dropped_ms) VALUES (?1, ?2)",
            params![id, now_ms()],
        )?;
        transaction.commit()?;
        Ok(topic)
    }

    fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        let connection = self.lock();
        let mut statement =
            connection.prepare(&format!("SELECT {TOPIC_COLUMNS} FROM topics ORDER BY name"))?;
        let rows = statement.query_map([], read_topic)?;
        rows.map(|row| finish_topic(row?)).collect()
    }

    fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        let connection = self.lock();
        let row = connection
            .query_row(
                &format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE name = ?1"),
                [name],
                read_topic,
            )
            .optional()?;
        row.map(finish_topic).transpose()
    }

    fn list_dropped_topics(&self) -> Result<Vec<TopicId>> {
        let connection = self.lock();
        let mut statement = connection.prepare("SELECT topic_id FROM dropped_topics ORDER BY topic_id")?;
        let rows = statement.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.into_iter().map(|v| v as u64).collect())
    }

    fn forget_dropped_topic(&self, topic_id: TopicId) -> Result<()> {
        self.lock().execute("DELETE FROM dropped_topics WHERE topic_id = ?1", [topic_id as i64])?;
        Ok(())
    }

    fn partitions(&self, topic_id: TopicId) -> Result<Vec<PartitionState>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT p.partition, p.low_watermark, p.sealed_offset, \
                    (SELECT count(*) FROM segments s WHERE s.topic_id = p.topic_id AND s.partition = p.partition), \
                    (SELECT coalesce(sum(bytes), 0) FROM segments s WHERE s.topic_id = p.topic_id AND s.partition = p.partition) \
             FROM partitions p WHERE p.topic_id = ?1 ORDER BY p.partition",
        )?;
        let rows = statement.query_map([topic_id as i64], |r| {
            Ok(PartitionState {
                partition: r.get::<_, i64>(0)? as u32,
                low_watermark: r.get::<_, i64>(1)? as u64,
                sealed_offset: r.get::<_, i64>(2)? as u64,
                segment_count: r.get::<_, i64>(3)? as u64,
                segment_bytes: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn register_segment(&self, segment: &SegmentMeta) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let sealed: Option<i64> = transaction
            .query_row(
                "SELECT sealed_offset FROM partitions WHERE topic_id = ?1 AND partition = ?2",
                params![segment.topic_id as i64, segment.partition as i64],
                |r| r.get(0),
            )
            .optional()?;
        let Some(sealed) = sealed else {
            return Err(CatalogError::TopicNotFound(format!("id {}", segment.topic_id)));
        };
        if sealed as u64 != segment.base_offset {
            return Err(CatalogError::SegmentGap {
                topic_id: segment.topic_id,
                partition: segment.partition,
                base_offset: segment.base_offset,
                sealed_offset: sealed as u64,
            });
        }
        insert_segment(&transaction, segment)?;
        transaction.execute(
            "UPDATE partitions SET sealed_offset = ?3 WHERE topic_id = ?1 AND partition = ?2",
            params![
                segment.topic_id as i64,
                segment.partition as i64,
                segment.last_offset as i64 + 1
            ],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn segments(
        &self,
        topic_id: TopicId,
        partition: u32,
        from_offset: u64,
        to_offset: u64,
    ) -> Result<Vec<SegmentMeta>> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT topic_id, partition, base_offset, last_offset, row_count, bytes, min_ts_us, \
                    max_ts_us, min_event_us, max_event_us, object_key \
             FROM segments WHERE topic_id = ?1 AND partition = ?2 \
               AND last_offset >= ?3 AND base_offset < ?4 ORDER BY base_offset",
        )?;
        let rows = statement.query_map(
            params![topic_id as i64, partition as i64, from_offset as i64, to_offset.min(i64::MAX as u64) as i64],
            read_segment,
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn delete_oldest_segment(&self, topic_id: TopicId, partition: u32, base_offset: u64) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<i64> = transaction
            .query_row(
                "SELECT last_offset FROM segments WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3",
                params![topic_id as i64, partition as i64, base_offset as i64],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(last) = last {
            transaction.execute(
                "DELETE FROM segments WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3",
                params![topic_id as i64, partition as i64, base_offset as i64],
            )?;
            transaction.execute(
                "UPDATE partitions SET low_watermark = max(low_watermark, ?3) WHERE topic_id = ?1 AND partition = ?2",
                params![topic_id as i64, partition as i64, last + 1],
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn replace_segments(&self, replaced: &[u64], segment: &SegmentMeta) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (topic, partition) = (segment.topic_id as i64, segment.partition as i64);
        let gap = || CatalogError::SegmentGap {
            topic_id: segment.topic_id,
            partition: segment.partition,
            base_offset: segment.base_offset,
            sealed_offset: segment.last_offset + 1,
        };
        let mut next = segment.base_offset;
        for &base in replaced {
            let last: Option<i64> = transaction
                .query_row(
                    "SELECT last_offset FROM segments WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3",
                    params![topic, partition, base as i64],
                    |r| r.get(0),
                )
                .optional()?;
            match last {
                Some(last) if base == next => next = last as u64 + 1,
                _ => return Err(gap()),
            }
            transaction.execute(
                "DELETE FROM segments WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3",
                params![topic, partition, base as i64],
            )?;
        }
        if replaced.is_empty() || next != segment.last_offset + 1 {
            return Err(gap());
        }
        insert_segment(&transaction, segment)?;
        transaction.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn definition(name: &str) -> TopicDefinition {
        TopicDefinition {
            name: name.into(),
            schema: Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)])),
            partitions: 2,
            partition_key: vec!["a".into()],
            retention: RetentionPolicy { time_ms: Some(1000), bytes: None },
            watermark: None,
            primary_key: vec!["a".into()],
        }
    }

    fn segment(topic_id: u64, base: u64, last: u64) -> SegmentMeta {
        SegmentMeta {
            topic_id,
            partition: 0,
            base_offset: base,
            last_offset: last,
            row_count: last - base + 1,
            bytes: 100,
            min_timestamp_us: 1,
            max_timestamp_us: 2,
            min_event_time_us: None,
            max_event_time_us: None,
            object_key: format!("topics/{topic_id}/0/{base:020}.arrow"),
        }
    }

    #[test]
    fn topics_survive_reopen_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let first_id = {
            let catalog = SqliteCatalog::open(&path).unwrap();
            let topic = catalog.create_topic(&definition("t")).unwrap();
            assert!(matches!(catalog.create_topic(&definition("t")), Err(CatalogError::TopicExists(_))));
            catalog.register_segment(&segment(topic.id, 0, 9)).unwrap();
            topic.id
        };
        let catalog = SqliteCatalog::open(&path).unwrap();
        let topic = catalog.get_topic("t").unwrap().unwrap();
        assert_eq!(topic.id, first_id);
        assert_eq!(topic.partition_key, vec!["a".to_string()]);
        assert_eq!(topic.primary_key, vec!["a".to_string()]);
        assert_eq!(topic.retention.time_ms, Some(1000));
        assert_eq!(catalog.partitions(topic.id).unwrap()[0].sealed_offset, 10);
        catalog.drop_topic("t").unwrap();
        assert_eq!(catalog.list_dropped_topics().unwrap(), vec![first_id]);
        let again = catalog.create_topic(&definition("t")).unwrap();
        assert_ne!(again.id, first_id);
        assert!(catalog.segments(again.id, 0, 0, u64::MAX).unwrap().is_empty());
    }

    #[test]
    fn segments_must_be_contiguous_and_retention_advances_low_watermark() {
        let catalog = SqliteCatalog::open_in_memory().unwrap();
        let topic = catalog.create_topic(&definition("t")).unwrap();
        catalog.register_segment(&segment(topic.id, 0, 9)).unwrap();
        assert!(matches!(
            catalog.register_segment(&segment(topic.id, 11, 20)),
            Err(CatalogError::SegmentGap { sealed_offset: 10, .. })
        ));
        catalog.register_segment(&segment(topic.id, 10, 19)).unwrap();
        assert_eq!(catalog.segments(topic.id, 0, 12, 13).unwrap().len(), 1);
        assert_eq!(catalog.segments(topic.id, 0, 0, 100).unwrap().len(), 2);
        catalog.delete_oldest_segment(topic.id, 0, 0).unwrap();
        let state = catalog.partitions(topic.id).unwrap()[0];
        assert_eq!((state.low_watermark, state.sealed_offset, state.segment_count), (10, 20, 1));
    }

    #[test]
    fn compaction_replaces_an_adjacent_run_of_segments() {
        let catalog = SqliteCatalog::open_in_memory().unwrap();
        let topic = catalog.create_topic(&definition("t")).unwrap();
        for (base, last) in [(0, 9), (10, 19), (20, 29)] {
            catalog.register_segment(&segment(topic.id, base, last)).unwrap();
        }
        let mut merged = segment(topic.id, 0, 19);
        merged.row_count = 3;
        merged.object_key = "topics/x/0/00000000000000000000.1.arrow".into();
        // Not adjacent, or not the whole range: refused, nothing changed.
        assert!(catalog.replace_segments(&[0, 20], &merged).is_err());
        assert!(catalog.replace_segments(&[0], &merged).is_err());
        assert_eq!(catalog.segments(topic.id, 0, 0, 100).unwrap().len(), 3);
        catalog.replace_segments(&[0, 10], &merged).unwrap();
        let segments = catalog.segments(topic.id, 0, 0, 100).unwrap();
        assert_eq!(segments.iter().map(|s| (s.base_offset, s.last_offset, s.row_count)).collect::<Vec<_>>(), vec![(0, 19, 3), (20, 29, 10)]);
        assert_eq!(catalog.partitions(topic.id).unwrap()[0].sealed_offset, 30);
    }
}
