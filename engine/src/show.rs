//! The statements that list what exists: `SHOW TOPICS` and `DESCRIBE` of a topic, a keyed table
//! or a view, with their result schemas and the row builder DESCRIBE of a view shares.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::session::{rows_output, QueryOutput};
use crate::text::input::pg_type_name;
use crate::{Engine, EngineError, Result};

pub(crate) fn show_topics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("partitions", DataType::Int32, false),
        Field::new("partition_key", DataType::Utf8, true),
        Field::new("retention", DataType::Utf8, true),
        Field::new("watermark", DataType::Utf8, true),
        Field::new("primary_key", DataType::Utf8, true),
    ]))
}

pub(crate) fn show_views_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("epoch", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("lag_rows", DataType::Int64, false),
        Field::new("lag_seconds", DataType::Float64, false),
        Field::new("watermark", DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None), true),
        Field::new("late_rows", DataType::Int64, false),
    ]))
}

pub(crate) fn describe_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, true),
        Field::new("nullable", DataType::Boolean, true),
        Field::new("low_offset", DataType::Int64, true),
        Field::new("high_offset", DataType::Int64, true),
        Field::new("segments", DataType::Int64, true),
        Field::new("bytes", DataType::Int64, true),
    ]))
}

/// The rows of DESCRIBE (see [`describe_schema`]): columns, then ranges of offsets.
#[derive(Default)]
pub(crate) struct DescribeRows {
    kind: Vec<&'static str>,
    names: Vec<String>,
    types: Vec<Option<String>>,
    nullable: Vec<Option<bool>>,
    low: Vec<Option<i64>>,
    high: Vec<Option<i64>>,
    segments: Vec<Option<i64>>,
    bytes: Vec<Option<i64>>,
}

impl DescribeRows {
    pub(crate) fn column(&mut self, kind: &'static str, name: &str, type_name: String, nullable: bool) {
        self.push(kind, name.to_string(), Some(type_name), Some(nullable), None, None, None);
    }

    /// A range of offsets (a partition, or a view's progress through one), with segment count
    /// and bytes where there are segments.
    pub(crate) fn offsets(&mut self, kind: &'static str, name: String, low: u64, high: u64, segments: Option<(u64, u64)>) {
        self.push(kind, name, None, None, Some(low as i64), Some(high as i64), segments);
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: &'static str,
        name: String,
        type_name: Option<String>,
        nullable: Option<bool>,
        low: Option<i64>,
        high: Option<i64>,
        segments: Option<(u64, u64)>,
    ) {
        self.kind.push(kind);
        self.names.push(name);
        self.types.push(type_name);
        self.nullable.push(nullable);
        self.low.push(low);
        self.high.push(high);
        self.segments.push(segments.map(|s| s.0 as i64));
        self.bytes.push(segments.map(|s| s.1 as i64));
    }

    pub(crate) fn finish(self, schema: SchemaRef) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.kind)),
            Arc::new(StringArray::from(self.names)),
            Arc::new(StringArray::from(self.types)),
            Arc::new(BooleanArray::from(self.nullable)),
            Arc::new(Int64Array::from(self.low)),
            Arc::new(Int64Array::from(self.high)),
            Arc::new(Int64Array::from(self.segments)),
            Arc::new(Int64Array::from(self.bytes)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

fn describe_retention(retention: &streamhouse_catalog::RetentionPolicy) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(ms) = retention.time_ms {
        parts.push(crate::sql::duration::format_duration_ms(ms));
    }
    if let Some(bytes) = retention.bytes {
        parts.push(format!("{bytes} bytes"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `SHOW TOPICS` (also `SHOW TABLES`): every topic and keyed table.
pub(crate) fn show_topics(topics: &[Arc<streamhouse_storage::TopicLog>]) -> Result<QueryOutput> {
    let schema = show_topics_schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(topics.iter().map(|t| t.name().to_string()))),
        Arc::new(Int32Array::from_iter_values(topics.iter().map(|t| t.partition_count() as i32))),
        Arc::new(StringArray::from_iter(topics.iter().map(|t| {
            let key = &t.meta().partition_key;
            (!key.is_empty()).then(|| key.join(", "))
        }))),
        Arc::new(StringArray::from_iter(topics.iter().map(|t| describe_retention(&t.meta().retention)))),
        Arc::new(StringArray::from_iter(topics.iter().map(|t| {
            t.meta().watermark.as_ref().map(|w| format!("WATERMARK FOR {} AS {}", w.column, w.expression))
        }))),
        Arc::new(StringArray::from_iter(topics.iter().map(|t| {
            let key = &t.meta().primary_key;
            (!key.is_empty()).then(|| key.join(", "))
        }))),
    ];
    Ok(rows_output(schema.clone(), vec![RecordBatch::try_new(schema, columns)?], "SHOW"))
}

/// `DESCRIBE name`: a view's columns and progress, or a topic's columns and partitions.
pub(crate) fn describe(engine: &Arc<Engine>, name: &str) -> Result<QueryOutput> {
    let storage = engine.storage();
    let name = name.to_string();
    if let Some(view) = engine.views().get(&name) {
        let schema = describe_schema();
        return Ok(rows_output(schema.clone(), vec![crate::stream::ddl::describe_view(&view, schema)?], "DESCRIBE"));
    }
    let topic = storage.topic(&name).ok_or(EngineError::UndefinedTable(name))?;
    let states = storage.partition_states(&topic)?;
    let mut rows = DescribeRows::default();
    for (index, field) in topic.full_schema().fields().iter().enumerate() {
        let name = field.name().as_str();
        if name == streamhouse_storage::segment::DELETED_COLUMN {
            continue; // the tombstone flag of a keyed table's log, never read by SQL
        }
        let kind = if streamhouse_storage::segment::SYSTEM_COLUMNS.contains(&name) {
            "system column"
        } else if topic.primary_key().contains(&index) {
            "key column"
        } else {
            "column"
        };
        let declared = field.metadata().get(crate::sql::types::PG_TYPE_METADATA).cloned();
        let type_name = declared.unwrap_or_else(|| pg_type_name(field.data_type()));
        rows.column(kind, name, type_name, field.is_nullable());
    }
    for state in states {
        let partition = topic.partition(state.partition);
        rows.offsets(
            "partition",
            state.partition.to_string(),
            partition.map_or(state.low_watermark, |p| p.low_watermark()),
            partition.map_or(state.sealed_offset, |p| p.high_watermark()),
            Some((state.segment_count, state.segment_bytes)),
        );
    }
    let schema = describe_schema();
    Ok(rows_output(schema.clone(), vec![rows.finish(schema)?], "DESCRIBE"))
}
