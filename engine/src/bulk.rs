//! Bulk access to relations in Arrow, for front ends that speak Arrow (Flight): what exists
//! ([`Relation`]), each partition's offset range, a partition's rows between two offsets as
//! they are stored, and appends of client batches checked against a topic's schema.
//!
//! SQL goes through [`crate::Session`] like every other statement; this module serves what has
//! no SQL form: a raw read of one partition's log, a batch appended as the client sent it, and
//! a topic created from an Arrow schema (ADBC's bulk ingest).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use streamhouse_catalog::{RetentionPolicy, TopicDefinition};
use streamhouse_storage::scan::{scan_partition, PruneBounds, ScanProjection};
pub use streamhouse_storage::StoredPiece;
use streamhouse_storage::{read_stored, rows_within, BegunAppend, PartitionSnapshot, TopicLog};

use crate::{Engine, EngineError, Result};

/// What kind of relation a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// An append-only topic (`CREATE TOPIC`, `CREATE TABLE … APPEND ONLY`).
    Topic,
    /// A keyed table (`PRIMARY KEY`): reading it gives the latest row per key.
    KeyedTable,
    MaterializedView,
}

impl RelationKind {
    /// The table type front ends report (Flight SQL's `table_type`).
    pub fn table_type(self) -> &'static str {
        match self {
            RelationKind::Topic => "TOPIC",
            RelationKind::KeyedTable => "TABLE",
            RelationKind::MaterializedView => "MATERIALIZED VIEW",
        }
    }
}

/// A relation a client can read: its user columns (no system columns) and, for a topic or
/// keyed table, its partitions and primary key.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub kind: RelationKind,
    pub schema: SchemaRef,
    /// Primary key columns of a keyed table, in key order; empty otherwise.
    pub primary_key: Vec<String>,
    /// Partitions of a topic or keyed table; 0 for a view.
    pub partitions: u32,
}

/// The offsets of one partition a read sees now: `[low, high)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: u32,
    pub low: u64,
    pub high: u64,
}

/// Where an append put its rows: `(partition, first offset, row count)` per run.
pub type Placements = Vec<(u32, u64, u64)>;

/// An append begun by [`Engine::begin_append_batches`], not yet durable.
#[must_use = "an append is acknowledged only once it is durable"]
pub struct PendingAppend {
    topic: Arc<TopicLog>,
    /// `None`: nothing to append.
    begun: Option<BegunAppend>,
}

impl PendingAppend {
    /// Waits until every row of the append is durable; returns where they went.
    pub async fn durable(self) -> Result<Placements> {
        match self.begun {
            Some(begun) => Ok(begun.acknowledged(&self.topic).await?.placements),
            None => Ok(Vec::new()),
        }
    }
}

fn relation_of_topic(topic: &TopicLog) -> Relation {
    let meta = topic.meta();
    Relation {
        name: meta.name.clone(),
        kind: if topic.is_keyed() { RelationKind::KeyedTable } else { RelationKind::Topic },
        schema: topic.schema().clone(),
        primary_key: meta.primary_key.clone(),
        partitions: topic.partition_count(),
    }
}

/// The system columns a raw partition read returns after the user columns.
pub const LOG_READ_SYSTEM_COLUMNS: [&str; 3] = ["_partition", "_offset", "_timestamp"];

impl Engine {
    /// Every topic, keyed table and materialized view, by name.
    pub fn relations(&self) -> Vec<Relation> {
        let mut relations: Vec<Relation> = self.listed_topics().iter().map(|t| relation_of_topic(t)).collect();
        relations.extend(self.views.list().iter().map(|view| Relation {
            name: view.meta.name.clone(),
            kind: RelationKind::MaterializedView,
            schema: view.schema.clone(),
            primary_key: Vec::new(),
            partitions: 0,
        }));
        relations.sort_by(|a, b| a.name.cmp(&b.name));
        relations
    }

    /// One relation by name.
    pub fn relation(&self, name: &str) -> Option<Relation> {
        if let Some(view) = self.views.get(name) {
            return Some(Relation {
                name: view.meta.name.clone(),
                kind: RelationKind::MaterializedView,
                schema: view.schema.clone(),
                primary_key: Vec::new(),
                partitions: 0,
            });
        }
        self.storage.topic(name).map(|t| relation_of_topic(&t))
    }

    /// The system tables a session sees (`information_schema`, `pg_catalog`): schema name,
    /// table name and columns of each.
    pub async fn system_tables(self: &Arc<Self>) -> Result<Vec<(String, String, SchemaRef)>> {
        use arrow::array::{AsArray, StringArray};
        let (context, _) = crate::session::new_context(self)?;
        let listing = context
            .sql("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('information_schema', 'pg_catalog') ORDER BY 1, 2")
            .await?
            .collect()
            .await?;
        let mut tables = Vec::new();
        for batch in &listing {
            let (schemas, names): (&StringArray, &StringArray) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
            for (schema, name) in schemas.iter().zip(names.iter()) {
                let (Some(schema), Some(name)) = (schema, name) else { continue };
                let provider = context.table_provider(datafusion::common::TableReference::partial(schema, name)).await?;
                tables.push((schema.to_string(), name.to_string(), provider.schema()));
            }
        }
        Ok(tables)
    }

    fn topic_named(&self, name: &str) -> Result<Arc<TopicLog>> {
        self.storage.topic(name).ok_or_else(|| EngineError::UndefinedTable(name.to_string()))
    }

    /// Each partition's readable offsets now.
    pub fn partition_ranges(&self, topic: &str) -> Result<Vec<PartitionRange>> {
        let topic = self.topic_named(topic)?;
        Ok((0..topic.partition_count())
            .filter_map(|index| topic.partition(index))
            .map(|log| PartitionRange { partition: log.index(), low: log.low_watermark(), high: log.high_watermark() })
            .collect())
    }

    /// The schema of [`Self::read_partition`]'s batches: the user columns, then `_partition`,
    /// `_offset` and `_timestamp` (and `_deleted` for a keyed table's changelog).
    pub fn log_read_schema(&self, topic: &str) -> Result<SchemaRef> {
        let topic = self.topic_named(topic)?;
        Ok(log_projection(&topic)?.schema().clone())
    }

    /// The rows of one partition with offsets in `[start, end)` (`end` at most what is
    /// acknowledged now; `None`: everything acknowledged now), in offset order, as the log holds
    /// them: a keyed table's changelog, tombstones included. A stream of batches decoded a
    /// couple ahead of the reader; dropping it stops the read.
    pub fn read_partition(&self, topic: &str, partition: u32, start: u64, end: Option<u64>) -> Result<SendableRecordBatchStream> {
        let (topic, snapshot, range) = self.partition_read(topic, partition, start, end)?;
        let projection = log_projection(&topic)?;
        let schema = projection.schema().clone();
        if range.is_empty() {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::empty())));
        }
        let offset_column = topic.schema().fields().len() + 1;
        let bounds = PruneBounds { offset: Some((range.start, range.end - 1)), ..Default::default() };
        let receiver = scan_partition(&self.storage, topic, snapshot, projection, bounds);
        let batches = tokio_stream_of(receiver).filter_map(move |batch| {
            let kept = match batch {
                Ok(batch) => rows_within(&batch, offset_column, &range).map(Ok),
                Err(error) => Some(Err(datafusion::error::DataFusionError::External(Box::new(EngineError::from(error))))),
            };
            async move { kept }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    /// The rows [`Self::read_partition`] reads, as stored: a sealed segment's record batch
    /// messages with their LZ4-compressed buffers as they are (at most `message_bytes_max`
    /// bytes each), other rows decoded; see [`streamhouse_storage::read_stored`]. Also returns
    /// the pieces' schema.
    pub fn read_partition_stored(
        &self,
        topic: &str,
        partition: u32,
        start: u64,
        end: Option<u64>,
        message_bytes_max: usize,
    ) -> Result<(SchemaRef, impl futures::Stream<Item = Result<StoredPiece>> + Send + 'static)> {
        let (topic, snapshot, range) = self.partition_read(topic, partition, start, end)?;
        let schema = log_projection(&topic)?.schema().clone();
        let receiver = read_stored(&self.storage, topic, snapshot, range, message_bytes_max);
        Ok((schema, tokio_stream_of(receiver).map(|piece| piece.map_err(EngineError::from))))
    }

    /// A partition's snapshot for a read of offsets `[start, end)`, and the range cut to what
    /// the log holds (`end` at most what is acknowledged now; `None`: all of that).
    fn partition_read(&self, topic: &str, partition: u32, start: u64, end: Option<u64>) -> Result<(Arc<TopicLog>, PartitionSnapshot, Range<u64>)> {
        let topic = self.topic_named(topic)?;
        let snapshot = self.storage.snapshot_from(&topic, partition, start)?;
        let end = end.map_or(snapshot.high_watermark, |end| end.min(snapshot.high_watermark));
        let start = start.max(snapshot.low_watermark);
        Ok((topic, snapshot, start..end.max(start)))
    }

    /// Checks that batches of `schema` can be appended to a topic: the topic's columns, by
    /// name and in order, each of a type that converts to the column's without loss of meaning.
    pub fn check_append_schema(&self, topic: &str, schema: &Schema) -> Result<()> {
        let topic = self.topic_named(topic)?;
        check_schema(&topic, schema)
    }

    /// Appends client batches atomically (see [`Self::check_append_schema`]): every row is
    /// durable when this returns, or none is ever in the log. On a keyed table each row is an
    /// upsert.
    pub async fn append_batches(&self, topic: &str, batches: Vec<RecordBatch>) -> Result<Placements> {
        let (topic, conformed) = self.conformed(topic, &batches)?;
        match conformed.is_empty() {
            true => Ok(Vec::new()),
            false => Ok(self.storage.append(&topic, conformed).await?.placements),
        }
    }

    /// [`Self::append_batches`] in two steps (see `Storage::append_begin`): returns once the
    /// batches have their offsets and are queued to the WAL, so appends begun one after another
    /// enter the log in that order; [`PendingAppend::durable`] then waits for the fsync. A
    /// writer that begins its next append while one's fsync runs shares fsyncs between them.
    pub async fn begin_append_batches(&self, topic: &str, batches: Vec<RecordBatch>) -> Result<PendingAppend> {
        let (topic, conformed) = self.conformed(topic, &batches)?;
        let begun = match conformed.is_empty() {
            true => None,
            false => Some(self.storage.append_begin(&topic, conformed).await?),
        };
        Ok(PendingAppend { topic, begun })
    }

    /// Whether a client's batches of `schema` can be handed to [`Self::begin_append_message`]
    /// as encoded: `schema` has the topic's columns with the topic's types, so they need no
    /// conversion.
    pub fn appends_messages_as_sent(&self, topic: &str, schema: &Schema) -> Result<bool> {
        let topic = self.topic_named(topic)?;
        let expected = topic.schema();
        Ok(schema.fields().len() == expected.fields().len()
            && schema.fields().iter().zip(expected.fields()).all(|(given, field)| given.data_type() == field.data_type()))
    }

    /// [`Self::begin_append_batches`] of one record batch message as a client encoded it, in the
    /// topic's types (see [`Self::appends_messages_as_sent`]): decoded and validated, and stored
    /// as sent when its buffers are LZ4-compressed as the log stores them, instead of encoded
    /// again (`streamhouse_storage::SentBatch`). Also returns its rows and whether it was
    /// stored as sent.
    pub async fn begin_append_message(&self, topic: &str, metadata: &[u8], body: bytes::Bytes) -> Result<(PendingAppend, u64, bool)> {
        let topic = self.topic_named(topic)?;
        let sent = streamhouse_storage::decode_sent(&topic, metadata, body)?;
        // The NOT NULL check and its error, as for any append; the types are the topic's.
        crate::provider::conform_batch(&topic, sent.batch())?;
        let rows = sent.batch().num_rows() as u64;
        let (begun, stored) = self.storage.append_begin_sent(&topic, sent).await?;
        Ok((PendingAppend { topic, begun: Some(begun) }, rows, stored))
    }

    /// The topic named, and the non-empty ones of `batches` in its log's types.
    fn conformed(&self, topic: &str, batches: &[RecordBatch]) -> Result<(Arc<TopicLog>, Vec<RecordBatch>)> {
        let topic = self.topic_named(topic)?;
        let mut conformed = Vec::with_capacity(batches.len());
        for batch in batches {
            check_schema(&topic, batch.schema_ref())?;
            if batch.num_rows() > 0 {
                conformed.push(crate::provider::conform_batch(&topic, batch)?);
            }
        }
        Ok((topic, conformed))
    }

    /// Creates an append-only topic whose columns are those of `schema`, with types the log
    /// stores (see [`storable_type`]); one partition, round-robin, no retention.
    pub fn create_topic_for_schema(&self, name: &str, schema: &Schema) -> Result<()> {
        crate::sql::statement::check_column_count(schema.fields().len())?;
        let mut fields = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            if field.name().starts_with('_') && LOG_READ_SYSTEM_COLUMNS.contains(&field.name().as_str()) {
                return Err(EngineError::InvalidDefinition(format!(
                    "column \"{}\" is a system column name and cannot be a topic column",
                    field.name()
                )));
            }
            let data_type = storable_type(field.data_type()).ok_or_else(|| {
                EngineError::NotSupported(format!("a column of Arrow type {} (column \"{}\")", field.data_type(), field.name()))
            })?;
            fields.push(Field::new(field.name(), data_type, true));
        }
        let definition = TopicDefinition {
            name: name.to_string(),
            schema: Arc::new(Schema::new(fields)),
            partitions: 1,
            partition_key: Vec::new(),
            retention: RetentionPolicy::default(),
            watermark: None,
            primary_key: Vec::new(),
        };
        match self.storage.create_topic(&definition) {
            Ok(_) => Ok(()),
            Err(streamhouse_storage::StorageError::TopicExists(name)) => Err(EngineError::DuplicateTable(name)),
            Err(other) => Err(other.into()),
        }
    }
}

/// Every column of the topic's full schema: user columns, system columns, `_deleted`.
fn log_projection(topic: &TopicLog) -> Result<ScanProjection> {
    Ok(ScanProjection::new(topic, None)?)
}

fn tokio_stream_of<T: Send + 'static>(mut receiver: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}

/// The type the log stores for an Arrow type a client sends, where there is one: the types
/// `CREATE TOPIC` makes, with other widths and units widened to them.
pub fn storable_type(data_type: &DataType) -> Option<DataType> {
    use DataType::*;
    Some(match data_type {
        Boolean | Int16 | Int32 | Int64 | Float32 | Float64 | Utf8 | Binary | Date32 => data_type.clone(),
        Int8 | UInt8 => Int16,
        UInt16 => Int32,
        UInt32 => Int64,
        Float16 => Float32,
        LargeUtf8 | Utf8View => Utf8,
        LargeBinary | BinaryView => Binary,
        Decimal128(p, s) => Decimal128(*p, *s),
        Time32(_) | Time64(_) => Time64(TimeUnit::Microsecond),
        Timestamp(_, None) => Timestamp(TimeUnit::Microsecond, None),
        Timestamp(_, Some(_)) => Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Interval(arrow::datatypes::IntervalUnit::MonthDayNano) => data_type.clone(),
        List(item) | LargeList(item) => {
            let element = storable_type(item.data_type())?;
            List(Arc::new(Field::new("item", element, true)))
        }
        _ => return None,
    })
}

/// See [`Engine::check_append_schema`].
fn check_schema(topic: &TopicLog, schema: &Schema) -> Result<()> {
    let expected = topic.schema();
    let mismatch = |message: String| EngineError::DataException(format!("cannot append to \"{}\": {message}", topic.name()));
    for (index, field) in expected.fields().iter().enumerate() {
        let Some(given) = schema.fields().get(index) else {
            return Err(mismatch(format!("column \"{}\" is missing (the batch has {} columns)", field.name(), schema.fields().len())));
        };
        if given.name() != field.name() {
            return Err(mismatch(format!("column {} is \"{}\", expected \"{}\"", index + 1, given.name(), field.name())));
        }
        let converts = given.data_type() == field.data_type()
            || storable_type(given.data_type()).is_some_and(|t| arrow::compute::can_cast_types(&t, field.data_type()) && same_family(&t, field.data_type()));
        if !converts {
            return Err(mismatch(format!(
                "column \"{}\" is {}, expected {}",
                field.name(),
                given.data_type(),
                field.data_type()
            )));
        }
    }
    if schema.fields().len() > expected.fields().len() {
        let extra = &schema.fields()[expected.fields().len()];
        return Err(mismatch(format!("column \"{}\" is not a column of the topic", extra.name())));
    }
    Ok(())
}

/// Whether a value of `given` means the same kind of thing as one of `expected` (a number for
/// a number, a time for a time): only such conversions are made on append.
fn same_family(given: &DataType, expected: &DataType) -> bool {
    use DataType::*;
    let family = |t: &DataType| match t {
        Int16 | Int32 | Int64 => 1,
        Float32 | Float64 => 2,
        Decimal128(..) => 3,
        Utf8 => 4,
        Binary => 5,
        Date32 => 6,
        Time64(_) => 7,
        Timestamp(_, None) => 8,
        Timestamp(_, Some(_)) => 9,
        Boolean => 10,
        Interval(_) => 11,
        List(_) => 12,
        _ => 0,
    };
    let (a, b) = (family(given), family(expected));
    // An integer may go into a decimal or a float column: the cast fails loudly if it does not fit.
    a != 0 && (a == b || (a == 1 && matches!(b, 2 | 3)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_types_widen_to_stored_types() {
        assert_eq!(storable_type(&DataType::LargeUtf8), Some(DataType::Utf8));
        assert_eq!(storable_type(&DataType::UInt32), Some(DataType::Int64));
        assert_eq!(
            storable_type(&DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/Paris".into()))),
            Some(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))
        );
        assert_eq!(storable_type(&DataType::UInt64), None, "u64 does not fit any stored integer");
        assert!(same_family(&DataType::Int64, &DataType::Int32));
        assert!(same_family(&DataType::Int64, &DataType::Decimal128(10, 2)));
        assert!(!same_family(&DataType::Utf8, &DataType::Int64), "text is not parsed into numbers on append");
        assert!(!same_family(&DataType::Timestamp(TimeUnit::Microsecond, None), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))));
    }
}
