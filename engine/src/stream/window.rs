//! Window table functions: `TUMBLE(topic, col, size)` and `HOP(topic, col, slide, size)`
//! (`SESSION` is in `session.rs`: its windows depend on other rows).
//!
//! Each is a table: the topic's user columns followed by `window_start` and `window_end` (of the
//! time column's type), one row per window a row falls in (one for TUMBLE, `size / slide` for
//! HOP); rows whose time is NULL fall in no window. Windows are aligned to the Unix epoch and
//! half-open: `[window_start, window_end)`. The same [`WindowAssigner`] serves bounded queries
//! (through [`WindowTableProvider`]) and materialized views (on each change batch), so both see
//! the same windows.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use streamhouse_storage::{Storage, TopicLog};

use crate::provider::TopicTableProvider;
use crate::EngineError;

/// Which windows a row falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumble { size_us: i64 },
    Hop { slide_us: i64, size_us: i64 },
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowKind::Tumble { size_us } => write!(f, "TUMBLE(size={})", micros_text(*size_us)),
            WindowKind::Hop { slide_us, size_us } => {
                write!(f, "HOP(slide={}, size={})", micros_text(*slide_us), micros_text(*size_us))
            }
        }
    }
}

pub(crate) fn micros_text(us: i64) -> String {
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else {
        format!("{}ms", us as f64 / 1000.0)
    }
}

/// Assigns windows to the rows of batches whose first columns are a topic's user columns.
#[derive(Debug, Clone)]
pub struct WindowAssigner {
    pub kind: WindowKind,
    /// Index of the time column among the user columns.
    pub time_column: usize,
    user_columns: usize,
    schema: SchemaRef,
}

/// Most windows one row may fall in (HOP with size / slide above this is refused).
const WINDOWS_PER_ROW_MAX: i64 = 1024;

impl WindowAssigner {
    pub fn new(topic: &TopicLog, time_column: &str, kind: WindowKind) -> Result<Self, EngineError> {
        let user = topic.schema();
        let time_index = user.index_of(time_column).map_err(|_| {
            EngineError::UndefinedColumn(format!("column \"{time_column}\" does not exist in \"{}\"", topic.name()))
        })?;
        let time_type = user.field(time_index).data_type().clone();
        if !matches!(time_type, DataType::Timestamp(TimeUnit::Microsecond, _)) {
            return Err(EngineError::InvalidParameter(format!(
                "window time column \"{time_column}\" must be a timestamp, not {time_type}"
            )));
        }
        match kind {
            WindowKind::Tumble { size_us } if size_us <= 0 => {
                return Err(EngineError::InvalidParameter("window size must be positive".into()))
            }
            WindowKind::Hop { slide_us, size_us } if slide_us <= 0 || size_us <= 0 => {
                return Err(EngineError::InvalidParameter("window slide and size must be positive".into()))
            }
            WindowKind::Hop { slide_us, size_us } if size_us / slide_us > WINDOWS_PER_ROW_MAX => {
                return Err(EngineError::InvalidParameter(format!(
                    "HOP size / slide is {}; at most {WINDOWS_PER_ROW_MAX} windows per row are allowed",
                    size_us / slide_us
                )))
            }
            _ => {}
        }
        let mut fields: Vec<Field> = user.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("window_start", time_type.clone(), false));
        fields.push(Field::new("window_end", time_type, false));
        Ok(Self {
            kind,
            time_column: time_index,
            user_columns: user.fields().len(),
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// User columns, `window_start`, `window_end`.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The output rows for `batch` (whose first columns are the user columns): each input row
    /// repeated once per window it falls in, in input order.
    pub fn assign(&self, batch: &RecordBatch) -> Result<RecordBatch, EngineError> {
        let times = batch.column(self.time_column).as_primitive::<TimestampMicrosecondType>();
        let mut rows: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut starts: Vec<i64> = Vec::with_capacity(batch.num_rows());
        let mut ends: Vec<i64> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let time = times.value(row);
            match self.kind {
                WindowKind::Tumble { size_us } => {
                    let start = time - time.rem_euclid(size_us);
                    rows.push(row as u32);
                    starts.push(start);
                    ends.push(start.saturating_add(size_us));
                }
                WindowKind::Hop { slide_us, size_us } => {
                    // Every start s = k·slide with s ≤ time < s + size, earliest first.
                    let last = time - time.rem_euclid(slide_us);
                    let mut first = last;
                    while first - slide_us > time - size_us {
                        first -= slide_us;
                    }
                    let mut start = first;
                    while start <= last {
                        rows.push(row as u32);
                        starts.push(start);
                        ends.push(start.saturating_add(size_us));
                        start += slide_us;
                    }
                }
            }
        }
        let indices = UInt32Array::from(rows);
        let time_type = self.schema.field(self.user_columns).data_type();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.user_columns + 2);
        for column in batch.columns().iter().take(self.user_columns) {
            columns.push(take(column.as_ref(), &indices, None)?);
        }
        let starts: ArrayRef = Arc::new(arrow::array::Int64Array::from(starts));
        let ends: ArrayRef = Arc::new(arrow::array::Int64Array::from(ends));
        columns.push(cast(&starts, time_type)?);
        columns.push(cast(&ends, time_type)?);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Microseconds of an interval literal (no months: a month has no fixed length).
pub(crate) fn interval_micros(value: &Expr, function: &str) -> Result<i64, EngineError> {
    let scalar = match value {
        Expr::Literal(scalar, _) => scalar.clone(),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Literal(scalar, _) => scalar.cast_to(cast.field.data_type()).map_err(EngineError::from)?,
            _ => return Err(EngineError::InvalidParameter(format!("{function} needs an INTERVAL literal, not {value}"))),
        },
        other => return Err(EngineError::InvalidParameter(format!("{function} needs an INTERVAL literal, not {other}"))),
    };
    let micros = match scalar {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            (v.days as i64).checked_mul(86_400_000_000).and_then(|d| d.checked_add(v.nanoseconds / 1000))
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            (v.days as i64).checked_mul(86_400_000_000).and_then(|d| d.checked_add(v.milliseconds as i64 * 1000))
        }
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return Err(EngineError::InvalidParameter(format!(
                "{function} intervals cannot be in months or years (their length varies)"
            )))
        }
        other => return Err(EngineError::InvalidParameter(format!("{function} needs an INTERVAL literal, not {other}"))),
    };
    micros.ok_or_else(|| EngineError::InvalidParameter(format!("{function} interval is out of range")))
}

pub(crate) fn column_name(expr: &Expr, function: &str, what: &str) -> Result<String, EngineError> {
    match expr {
        Expr::Column(column) => Ok(column.name.clone()),
        other => Err(EngineError::InvalidParameter(format!("{function} needs {what} as its argument, not {other}"))),
    }
}

/// The topic a window function's first argument names: an append-only topic.
pub(crate) fn windowed_topic(storage: &Storage, expr: &Expr, function: &str) -> Result<Arc<TopicLog>, EngineError> {
    let name = column_name(expr, function, "a topic name")?;
    let topic = storage.topic(&name).ok_or_else(|| EngineError::UndefinedTable(name.clone()))?;
    if topic.is_keyed() {
        return Err(EngineError::NotSupported(format!("window functions over keyed table \"{name}\"; window an append-only topic")));
    }
    Ok(topic)
}

/// `TUMBLE` or `HOP` as a DataFusion table function.
pub struct WindowFunction {
    pub storage: Storage,
    pub hop: bool,
    pub statement_bytes_max: u64,
}

impl fmt::Debug for WindowFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.hop { "HOP" } else { "TUMBLE" })
    }
}

impl WindowFunction {
    fn resolve(&self, exprs: &[Expr]) -> Result<WindowTableProvider, EngineError> {
        let name = if self.hop { "HOP" } else { "TUMBLE" };
        let expected = if self.hop { 4 } else { 3 };
        if exprs.len() != expected {
            let signature = if self.hop { "HOP(topic, time_column, slide, size)" } else { "TUMBLE(topic, time_column, size)" };
            return Err(EngineError::InvalidParameter(format!("{name} takes {expected} arguments: {signature}")));
        }
        let topic = windowed_topic(&self.storage, &exprs[0], name)?;
        let time_column = column_name(&exprs[1], name, "a time column")?;
        let kind = if self.hop {
            WindowKind::Hop { slide_us: interval_micros(&exprs[2], name)?, size_us: interval_micros(&exprs[3], name)? }
        } else {
            WindowKind::Tumble { size_us: interval_micros(&exprs[2], name)? }
        };
        let assigner = WindowAssigner::new(&topic, &time_column, kind)?;
        Ok(WindowTableProvider {
            inner: TopicTableProvider::new(topic.clone(), self.storage.clone(), true, self.statement_bytes_max),
            topic,
            assigner,
        })
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(self.resolve(args.exprs()).map_err(|e| DataFusionError::External(Box::new(e)))?))
    }
}

/// A topic seen through a window function.
pub struct WindowTableProvider {
    pub topic: Arc<TopicLog>,
    pub assigner: WindowAssigner,
    inner: TopicTableProvider,
}

impl fmt::Debug for WindowTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} over {}", self.assigner.kind, self.topic.name())
    }
}

#[async_trait]
impl TableProvider for WindowTableProvider {
    fn schema(&self) -> SchemaRef {
        self.assigner.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let user: Vec<usize> = (0..self.topic.schema().fields().len()).collect();
        let input = self.inner.scan(state, Some(&user), &[], None).await?;
        let schema = match projection {
            Some(p) => Arc::new(self.assigner.schema().project(p)?),
            None => self.assigner.schema().clone(),
        };
        Ok(Arc::new(WindowExec::new(input, self.assigner.clone(), projection.cloned(), schema)))
    }
}

/// Assigns windows to every batch of its input, then projects.
#[derive(Debug)]
struct WindowExec {
    input: Arc<dyn ExecutionPlan>,
    assigner: WindowAssigner,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl WindowExec {
    fn new(input: Arc<dyn ExecutionPlan>, assigner: WindowAssigner, projection: Option<Vec<usize>>, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            input.properties().output_partitioning().clone(),
            input.properties().emission_type,
            input.properties().boundedness,
        ));
        Self { input, assigner, projection, properties }
    }
}

impl DisplayAs for WindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowExec: {}", self.assigner.kind)
    }
}

impl ExecutionPlan for WindowExec {
    fn name(&self) -> &str {
        "WindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.into_iter().next().ok_or_else(|| DataFusionError::Internal("WindowExec needs its input".into()))?;
        Ok(Arc::new(WindowExec::new(input, self.assigner.clone(), self.projection.clone(), self.properties.eq_properties.schema().clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let assigner = self.assigner.clone();
        let projection = self.projection.clone();
        let schema = self.properties.eq_properties.schema().clone();
        let stream = input.map(move |batch| {
            let windowed = assigner.assign(&batch?).map_err(|e| DataFusionError::External(Box::new(e)))?;
            match &projection {
                Some(p) => Ok(windowed.project(p)?),
                None => Ok(windowed),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigner(kind: WindowKind) -> (WindowAssigner, SchemaRef) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("window_start", DataType::Timestamp(TimeUnit::Microsecond, None), false));
        fields.push(Field::new("window_end", DataType::Timestamp(TimeUnit::Microsecond, None), false));
        (WindowAssigner { kind, time_column: 1, user_columns: 2, schema: Arc::new(Schema::new(fields)) }, schema)
    }

    fn batch(schema: &SchemaRef, times: Vec<Option<i64>>) -> RecordBatch {
        let keys: ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(0..times.len() as i64));
        let times: ArrayRef = Arc::new(arrow::array::TimestampMicrosecondArray::from(times));
        RecordBatch::try_new(schema.clone(), vec![keys, times]).unwrap()
    }

    fn starts_of(out: &RecordBatch) -> Vec<(i64, i64, i64)> {
        let keys = out.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let starts = out.column(2).as_primitive::<TimestampMicrosecondType>();
        let ends = out.column(3).as_primitive::<TimestampMicrosecondType>();
        (0..out.num_rows()).map(|i| (keys.value(i), starts.value(i), ends.value(i))).collect()
    }

    #[test]
    fn tumble_floors_to_the_window_and_handles_negative_times_and_nulls() {
        let (assigner, schema) = assigner(WindowKind::Tumble { size_us: 10 });
        let out = assigner.assign(&batch(&schema, vec![Some(0), Some(9), Some(10), Some(-1), None])).unwrap();
        assert_eq!(starts_of(&out), vec![(0, 0, 10), (1, 0, 10), (2, 10, 20), (3, -10, 0)]);
    }

    #[test]
    fn hop_puts_a_row_in_every_window_that_contains_it() {
        // slide 5, size 15: time 12 is in [0,15), [5,20), [10,25); time 15 in [5,20), [10,25), [15,30).
        let (assigner, schema) = assigner(WindowKind::Hop { slide_us: 5, size_us: 15 });
        let out = assigner.assign(&batch(&schema, vec![Some(12), Some(15)])).unwrap();
        assert_eq!(
            starts_of(&out),
            vec![(0, 0, 15), (0, 5, 20), (0, 10, 25), (1, 5, 20), (1, 10, 25), (1, 15, 30)]
        );
        // A size that is not a multiple of the slide: slide 4, size 6, time 9 is in [4,10), [8,14).
        let (assigner, schema) = self::assigner(WindowKind::Hop { slide_us: 4, size_us: 6 });
        let out = assigner.assign(&batch(&schema, vec![Some(9)])).unwrap();
        assert_eq!(starts_of(&out), vec![(0, 4, 10), (0, 8, 14)]);
    }
}
