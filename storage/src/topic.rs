//! A topic's in-memory state: its partitions' tails and offsets, and how rows pick a partition.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arrow::array::{Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use streamhouse_catalog::TopicMeta;
use tokio::sync::watch;

use crate::segment::{timestamp_type, DELETED_COLUMN, OFFSET_COLUMN, PARTITION_COLUMN, TIMESTAMP_COLUMN};
use crate::tail::{StoredBatch, Tail};
use crate::{Result, StorageError};

/// One partition of a topic.
pub struct PartitionLog {
    pub(crate) index: u32,
    /// Next offset to assign; only touched under the storage's append lock.
    pub(crate) next_offset: AtomicU64,
    pub(crate) tail: RwLock<Tail>,
    pub(crate) sealed_offset: AtomicU64,
    pub(crate) low_watermark: AtomicU64,
    /// One past the last acknowledged offset; followers wait on changes.
    pub(crate) high_watermark: watch::Sender<u64>,
    /// Held while a segment of this partition is sealed: the background sealer and a forced
    /// seal (shutdown) must not write the same segment twice.
    pub(crate) seal_lock: tokio::sync::Mutex<()>,
}

impl PartitionLog {
    pub(crate) fn new(index: u32, low_watermark: u64, sealed_offset: u64) -> Self {
        Self {
            index,
            next_offset: AtomicU64::new(sealed_offset),
            tail: RwLock::new(Tail::new(sealed_offset)),
            sealed_offset: AtomicU64::new(sealed_offset),
            low_watermark: AtomicU64::new(low_watermark),
            high_watermark: watch::channel(sealed_offset).0,
            seal_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// This partition's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// One past the last acknowledged offset.
    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// First offset still readable.
    pub fn low_watermark(&self) -> u64 {
        self.low_watermark.load(Ordering::Acquire)
    }

    /// A receiver that is notified each time acknowledged rows are appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// Adds acknowledged (or replayed) rows to the tail and wakes followers. Returns false if
    /// the batch does not continue the partition.
    pub(crate) fn apply(&self, batch: StoredBatch) -> bool {
        let end = batch.end_offset();
        let pushed = self.tail.write().unwrap_or_else(|p| p.into_inner()).push(batch);
        if pushed {
            self.high_watermark.send_replace(end);
        }
        pushed
    }

    /// The bytes the unsealed tail holds in memory (its rows, their encoding and batch
    /// overheads; the same rows are in the write-ahead log until they are sealed).
    pub fn unsealed_bytes(&self) -> u64 {
        self.read_tail().bytes
    }

    pub(crate) fn read_tail(&self) -> std::sync::RwLockReadGuard<'_, Tail> {
        self.tail.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A live topic.
pub struct TopicLog {
    pub(crate) meta: TopicMeta,
    pub(crate) partitions: Vec<PartitionLog>,
    round_robin: AtomicU64,
    key_columns: Vec<usize>,
    primary_key: Vec<usize>,
    pub(crate) event_time_column: Option<usize>,
    full_schema: SchemaRef,
    log_schema: SchemaRef,
    /// [`Self::log_schema`] as an IPC schema message, which every WAL entry starts with.
    schema_message: Arc<[u8]>,
    pub(crate) dropped: AtomicBool,
    /// Serializes the writes of a keyed table, so that a read-modify-write (UPDATE, DELETE,
    /// INSERT … ON CONFLICT DO NOTHING) sees no write land between its read and its append.
    write_lock: tokio::sync::Mutex<()>,
    /// Small writes waiting to be combined (see [`crate::combine`]).
    pub(crate) combiner: crate::combine::Combiner,
}

/// Proof that the caller holds a keyed table's write lock (see [`TopicLog::lock_writes`]).
pub struct KeyedWriteGuard<'a> {
    pub(crate) topic_id: u64,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl std::fmt::Debug for TopicLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicLog").field("id", &self.meta.id).field("name", &self.meta.name).finish()
    }
}

impl TopicLog {
    pub(crate) fn new(meta: TopicMeta, partitions: Vec<PartitionLog>) -> Result<Self> {
        let columns = |names: &[String], what: &str| {
            names
                .iter()
                .map(|name| {
                    meta.schema.index_of(name).map_err(|_| StorageError::InvalidBatch {
                        topic: meta.name.clone(),
                        reason: format!("{what} column \"{name}\" is not a column"),
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        let key_columns = columns(&meta.partition_key, "partition key")?;
        let primary_key = columns(&meta.primary_key, "primary key")?;
        if !primary_key.is_empty() && (key_columns.is_empty() || key_columns.iter().any(|c| !primary_key.contains(c))) {
            // Every version of a key must land in the same partition, in order.
            return Err(StorageError::InvalidBatch {
                topic: meta.name.clone(),
                reason: "the partition key of a keyed table must be made of primary key columns".into(),
            });
        }
        let event_time_column =
            meta.watermark.as_ref().and_then(|w| meta.schema.index_of(&w.column).ok());
        let user: Vec<Field> = meta.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut log_fields = user.clone();
        let mut fields = user;
        fields.push(Field::new(PARTITION_COLUMN, DataType::Int32, false));
        fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
        fields.push(Field::new(TIMESTAMP_COLUMN, timestamp_type(), false));
        if !primary_key.is_empty() {
            fields.push(Field::new(DELETED_COLUMN, DataType::Boolean, false));
            log_fields.push(Field::new(DELETED_COLUMN, DataType::Boolean, false));
        }
        let log_schema = Arc::new(Schema::new(log_fields));
        Ok(Self {
            full_schema: Arc::new(Schema::new(fields)),
            schema_message: crate::ipc::schema_message(&log_schema)?.into(),
            log_schema,
            meta,
            partitions,
            round_robin: AtomicU64::new(0),
            key_columns,
            primary_key,
            event_time_column,
            dropped: AtomicBool::new(false),
            write_lock: tokio::sync::Mutex::new(()),
            combiner: crate::combine::Combiner::default(),
        })
    }

    /// Whether this is a keyed table: its log is a changelog of upserts and deletes.
    pub fn is_keyed(&self) -> bool {
        !self.primary_key.is_empty()
    }

    /// Indices of the primary key columns among the user columns (empty for a topic).
    pub fn primary_key(&self) -> &[usize] {
        &self.primary_key
    }

    /// The columns of the log as stored: the user columns, then for a keyed table `_deleted`
    /// (true for a tombstone).
    pub fn log_schema(&self) -> &SchemaRef {
        &self.log_schema
    }

    pub(crate) fn schema_message(&self) -> &[u8] {
        &self.schema_message
    }

    pub(crate) fn shared_schema_message(&self) -> Arc<[u8]> {
        self.schema_message.clone()
    }

    /// Takes the write lock of a keyed table (see [`crate::Storage::append_changes`]).
    pub async fn lock_writes(&self) -> KeyedWriteGuard<'_> {
        KeyedWriteGuard { topic_id: self.id(), _guard: self.write_lock.lock().await }
    }

    pub fn meta(&self) -> &TopicMeta {
        &self.meta
    }

    pub fn id(&self) -> u64 {
        self.meta.id
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// User columns only.
    pub fn schema(&self) -> &SchemaRef {
        &self.meta.schema
    }

    /// User columns, then `_partition`, `_offset`, `_timestamp`, and for a keyed table
    /// `_deleted`.
    pub fn full_schema(&self) -> &SchemaRef {
        &self.full_schema
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub fn partition(&self, index: u32) -> Option<&PartitionLog> {
        self.partitions.get(index as usize)
    }

    /// Index of the event-time (watermark) column among the user columns.
    pub fn event_time_column(&self) -> Option<usize> {
        self.event_time_column
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Checks a batch against the topic schema: same column types, no NULL where the column is
    /// NOT NULL.
    pub fn validate(&self, batch: &RecordBatch) -> Result<()> {
        let invalid = |reason: String| StorageError::InvalidBatch { topic: self.meta.name.clone(), reason };
        let expected = self.schema();
        if batch.num_columns() != expected.fields().len() {
            return Err(invalid(format!(
                "batch has {} columns, topic has {}",
                batch.num_columns(),
                expected.fields().len()
            )));
        }
        for (field, column) in expected.fields().iter().zip(batch.columns()) {
            if column.data_type() != field.data_type() {
                return Err(invalid(format!(
                    "column \"{}\" is {} but the batch holds {}",
                    field.name(),
                    field.data_type(),
                    column.data_type()
                )));
            }
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(invalid(format!("null value in column \"{}\" violates not-null constraint", field.name())));
            }
        }
        Ok(())
    }

    /// Whether a batch goes to one partition whole (round-robin), not cut by a key's hash.
    pub(crate) fn routes_whole_batches(&self) -> bool {
        self.key_columns.is_empty() || self.partitions.len() == 1
    }

    /// The partition the next whole batch goes to (see [`Self::routes_whole_batches`]).
    pub(crate) fn next_round_robin(&self) -> u32 {
        (self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partitions.len() as u64) as u32
    }

    /// Splits batches by partition: by hash of the key columns, or whole batches round-robin.
    pub(crate) fn partition_batches(&self, batches: Vec<RecordBatch>) -> Result<Vec<(u32, Vec<RecordBatch>)>> {
        let count = self.partitions.len();
        let mut by_partition: Vec<Vec<RecordBatch>> = vec![Vec::new(); count];
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            if self.routes_whole_batches() {
                by_partition[self.next_round_robin() as usize].push(batch);
                continue;
            }
            let key_arrays: Vec<_> = self.key_columns.iter().map(|&i| batch.column(i).clone()).collect();
            let converter = RowConverter::new(
                key_arrays.iter().map(|a| SortField::new(a.data_type().clone())).collect(),
            )?;
            let rows = converter.convert_columns(&key_arrays)?;
            let mut indices: Vec<Vec<u32>> = vec![Vec::new(); count];
            for (row_index, row) in rows.iter().enumerate() {
                let partition = crc32c::crc32c(row.as_ref()) as usize % count;
                indices[partition].push(row_index as u32);
            }
            for (partition, rows) in indices.into_iter().enumerate() {
                if !rows.is_empty() {
                    by_partition[partition].push(take_record_batch(&batch, &UInt32Array::from(rows))?);
                }
            }
        }
        Ok(by_partition
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(p, b)| (p as u32, b))
            .collect())
    }
}
