//! Topics as DataFusion tables: [`TopicTableProvider`] (bounded snapshot scans with segment
//! pruning, and INSERT), [`TopicScanExec`] (the physical scan, one output partition per topic
//! partition) and [`TopicSink`] (an atomic append of everything a statement writes).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;
use streamhouse_storage::scan::{scan_partition, split_snapshots, PruneBounds, ScanProjection};
use streamhouse_storage::segment::{OFFSET_COLUMN, PARTITION_COLUMN, TIMESTAMP_COLUMN};
use streamhouse_storage::{PartitionSnapshot, Storage, TopicLog};

use crate::EngineError;

/// A topic as a table. With `system_columns`, its schema is the user columns followed by
/// `_partition`, `_offset`, `_timestamp`; without (as the target of INSERT), the user columns.
pub struct TopicTableProvider {
    topic: Arc<TopicLog>,
    storage: Storage,
    system_columns: bool,
    statement_bytes_max: u64,
}

impl fmt::Debug for TopicTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicTableProvider").field("topic", &self.topic.name()).finish()
    }
}

impl TopicTableProvider {
    pub fn new(topic: Arc<TopicLog>, storage: Storage, system_columns: bool, statement_bytes_max: u64) -> Self {
        Self { topic, storage, system_columns, statement_bytes_max }
    }

    pub fn topic(&self) -> &Arc<TopicLog> {
        &self.topic
    }
}

/// What the filters of a query let a scan skip.
#[derive(Debug, Clone, Default)]
struct ScanBounds {
    prune: PruneBounds,
    partitions: Option<BTreeSet<u32>>,
}

fn intersect<T: Ord + Copy>(current: Option<(T, T)>, low: T, high: T) -> Option<(T, T)> {
    Some(match current {
        Some((a, b)) => (a.max(low), b.min(high)),
        None => (low, high),
    })
}

fn scalar_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        ScalarValue::Date32(Some(days)) => (*days as i64).checked_mul(86_400_000_000),
        _ => None,
    }
}

fn scalar_integer(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int8(Some(v)) => Some(*v as i64),
        ScalarValue::Int16(Some(v)) => Some(*v as i64),
        ScalarValue::Int32(Some(v)) => Some(*v as i64),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(*v as i64),
        ScalarValue::UInt16(Some(v)) => Some(*v as i64),
        ScalarValue::UInt32(Some(v)) => Some(*v as i64),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// The column, operator and literal of `column op literal` (or `literal op column`, flipped).
fn comparison(expr: &Expr) -> Option<(&str, Operator, &ScalarValue)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else { return None };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(column), Expr::Literal(value, _)) => Some((column.name.as_str(), *op, value)),
        (Expr::Literal(value, _), Expr::Column(column)) => Some((column.name.as_str(), op.swap()?, value)),
        _ => None,
    }
}

/// Inclusive `[low, high]` that `column op value` allows, for integers.
fn integer_range(op: Operator, value: i64) -> Option<(i64, i64)> {
    match op {
        Operator::Eq => Some((value, value)),
        Operator::Gt => Some((value.saturating_add(1), i64::MAX)),
        Operator::GtEq => Some((value, i64::MAX)),
        Operator::Lt => Some((i64::MIN, value.saturating_sub(1))),
        Operator::LtEq => Some((i64::MIN, value)),
        _ => None,
    }
}

impl TopicTableProvider {
    fn event_time_column(&self) -> Option<&str> {
        self.topic.event_time_column().map(|i| self.topic.schema().field(i).name().as_str())
    }

    /// Applies one filter to the bounds; returns whether it was usable.
    fn apply_filter(&self, filter: &Expr, bounds: &mut ScanBounds) -> bool {
        let Some((column, op, value)) = comparison(filter) else { return false };
        if !self.system_columns && column != self.event_time_column().unwrap_or("") {
            return false;
        }
        if column == OFFSET_COLUMN {
            let Some((low, high)) = scalar_integer(value).and_then(|v| integer_range(op, v)) else { return false };
            let (low, high) = (low.max(0) as u64, high.max(-1));
            if high < 0 {
                bounds.prune.offset = Some((1, 0)); // empty
            } else {
                bounds.prune.offset = intersect(bounds.prune.offset, low, high as u64);
            }
            true
        } else if column == PARTITION_COLUMN {
            let Some((low, high)) = scalar_integer(value).and_then(|v| integer_range(op, v)) else { return false };
            let allowed: BTreeSet<u32> = (0..self.topic.partition_count())
                .filter(|p| (*p as i64) >= low && (*p as i64) <= high)
                .collect();
            bounds.partitions = Some(match bounds.partitions.take() {
                Some(existing) => existing.intersection(&allowed).copied().collect(),
                None => allowed,
            });
            true
        } else if column == TIMESTAMP_COLUMN || Some(column) == self.event_time_column() {
            let Some((low, high)) = scalar_micros(value).and_then(|v| integer_range(op, v)) else { return false };
            let slot = if column == TIMESTAMP_COLUMN { &mut bounds.prune.timestamp_us } else { &mut bounds.prune.event_time_us };
            *slot = intersect(*slot, low, high);
            true
        } else {
            false
        }
    }
}

#[async_trait]
impl TableProvider for TopicTableProvider {
    fn schema(&self) -> SchemaRef {
        if self.system_columns {
            self.topic.full_schema().clone()
        } else {
            // As an INSERT target every column is nullable to DataFusion: the sink checks NOT
            // NULL itself, so the error names the column and the topic.
            let fields: Vec<arrow::datatypes::Field> =
                self.topic.schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
            Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, self.topic.schema().metadata().clone()))
        }
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                let mut scratch = ScanBounds::default();
                if self.apply_filter(f, &mut scratch) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut bounds = ScanBounds::default();
        for filter in filters {
            self.apply_filter(filter, &mut bounds);
        }
        let projection = ScanProjection::new(&self.topic, projection.map(|p| p.as_slice()))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let partitions: Vec<u32> = match &bounds.partitions {
            Some(set) => set.iter().copied().collect(),
            None => (0..self.topic.partition_count()).collect(),
        };
        let mut snapshots = Vec::with_capacity(partitions.len());
        let mut segments_total = 0;
        let mut segments_kept = 0;
        for partition in partitions {
            let snapshot = self
                .storage
                .snapshot(&self.topic, partition)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            segments_total += snapshot.segments.len();
            segments_kept += snapshot.segments.iter().filter(|s| bounds.prune.keeps_segment(s)).count();
            snapshots.push(snapshot);
        }
        Ok(Arc::new(TopicScanExec::new(
            self.topic.clone(),
            self.storage.clone(),
            snapshots,
            projection,
            bounds.prune,
            (segments_kept, segments_total),
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::External(Box::new(EngineError::NotSupported(format!(
                "{insert_op} on topic \"{}\" (topics are append-only)",
                self.topic.name()
            )))));
        }
        let sink = TopicSink {
            topic: self.topic.clone(),
            storage: self.storage.clone(),
            schema: self.schema(),
            statement_bytes_max: self.statement_bytes_max,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Scans a snapshot of a topic: one output partition per topic partition read, or, when
/// DataFusion asks for more parallelism than the topic has partitions, per piece of one
/// ([`split_snapshots`]).
pub struct TopicScanExec {
    topic: Arc<TopicLog>,
    storage: Storage,
    snapshots: Vec<PartitionSnapshot>,
    projection: ScanProjection,
    bounds: PruneBounds,
    segments: (usize, usize),
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for TopicScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicScanExec").field("topic", &self.topic.name()).finish()
    }
}

impl TopicScanExec {
    fn new(
        topic: Arc<TopicLog>,
        storage: Storage,
        snapshots: Vec<PartitionSnapshot>,
        projection: ScanProjection,
        bounds: PruneBounds,
        segments: (usize, usize),
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projection.schema().clone()),
            Partitioning::UnknownPartitioning(snapshots.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self { topic, storage, snapshots, projection, bounds, segments, properties: Arc::new(properties) }
    }
}

impl DisplayAs for TopicScanExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut partitions: Vec<String> = self.snapshots.iter().map(|s| s.partition.to_string()).collect();
        partitions.dedup();
        let tail_batches: usize = self.snapshots.iter().map(|s| s.tail.len()).sum();
        write!(
            f,
            "TopicScanExec: topic={}, partitions=[{}], segments={} of {}, tail_batches={}",
            self.topic.name(),
            partitions.join(","),
            self.segments.0,
            self.segments.1,
            tail_batches
        )?;
        if partitions.len() < self.snapshots.len() {
            write!(f, ", pieces={}", self.snapshots.len())?;
        }
        if let Some((low, high)) = self.bounds.offset {
            write!(f, ", offsets=[{low}, {high}]")?;
        }
        if self.bounds.timestamp_us.is_some() {
            write!(f, ", pruned_by=_timestamp")?;
        }
        if self.bounds.event_time_us.is_some() {
            write!(f, ", pruned_by=event_time")?;
        }
        let names: Vec<String> = self.projection.schema().fields().iter().map(|f| f.name().clone()).collect();
        write!(f, ", projection=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for TopicScanExec {
    fn name(&self) -> &str {
        "TopicScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// Cuts the topic's partitions into up to `target_partitions` pieces scanned side by side,
    /// instead of one scan whose batches a round-robin repartition deals out.
    fn repartitioned(&self, target_partitions: usize, _config: &datafusion::config::ConfigOptions) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        if self.snapshots.len() >= target_partitions {
            return Ok(None);
        }
        let pieces = split_snapshots(&self.snapshots, &self.bounds, target_partitions);
        if pieces.len() <= self.snapshots.len() {
            return Ok(None);
        }
        Ok(Some(Arc::new(TopicScanExec::new(
            self.topic.clone(),
            self.storage.clone(),
            pieces,
            self.projection.clone(),
            self.bounds,
            self.segments,
        ))))
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let schema = self.projection.schema().clone();
        let Some(snapshot) = self.snapshots.get(partition).cloned() else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::empty())));
        };
        let receiver = scan_partition(&self.storage, self.topic.clone(), snapshot, self.projection.clone(), self.bounds);
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        })
        .map(|item| item.map_err(|e| DataFusionError::External(Box::new(e))));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Appends everything an INSERT produces as one atomic write.
pub struct TopicSink {
    topic: Arc<TopicLog>,
    storage: Storage,
    schema: SchemaRef,
    statement_bytes_max: u64,
}

impl fmt::Debug for TopicSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicSink").field("topic", &self.topic.name()).finish()
    }
}

impl DisplayAs for TopicSink {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicSink: topic={}", self.topic.name())
    }
}

/// Makes a batch match the topic schema exactly (types as declared, schema metadata).
pub fn conform_batch(topic: &TopicLog, batch: &RecordBatch) -> Result<RecordBatch, EngineError> {
    let schema = topic.schema();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(EngineError::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                field.name(),
                topic.name()
            )));
        }
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            let options = arrow::compute::CastOptions { safe: false, ..Default::default() };
            arrow::compute::cast_with_options(column, field.data_type(), &options)?
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait]
impl DataSink for TopicSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> DfResult<u64> {
        let mut batches = Vec::new();
        let mut bytes = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            bytes += batch.get_array_memory_size() as u64;
            if bytes > self.statement_bytes_max {
                return Err(DataFusionError::External(Box::new(EngineError::ProgramLimitExceeded(format!(
                    "INSERT writes more than statement_bytes_max ({} bytes); split it into smaller statements",
                    self.statement_bytes_max
                )))));
            }
            let batch = conform_batch(&self.topic, &batch).map_err(|e| DataFusionError::External(Box::new(e)))?;
            batches.push(batch);
        }
        let outcome = self
            .storage
            .append(&self.topic, batches)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(outcome.rows())
    }
}
