//! Session windows: `SESSION(topic, time_column, gap [, key_column, …])`.
//!
//! A session is a maximal run of rows of one key (the key columns; without them the whole
//! topic is one key) whose times, in order, are each less than `gap` after the previous one. Its
//! `window_start` is its first time and its `window_end` its last time plus `gap`. Rows whose
//! time is NULL fall in no session. Unlike TUMBLE and HOP, a row's session depends on the other
//! rows: a bounded query assigns sessions over all rows at once ([`SessionExec`]); a
//! materialized view keeps each key's rows as state and, when new rows extend or merge
//! sessions, retracts the rows of the sessions that changed and inserts them with their new
//! bounds ([`SessionOp`]). A session whose end the watermark has passed cannot change any more:
//! its rows leave the state.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{Distribution, EquivalenceProperties};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;
use streamhouse_storage::{Storage, TopicLog};

use super::changes::{allocation_bytes, table_bytes, Changes, EpochContext, Operator};
use super::state::{state_key, Decoder, Encoder};
use super::window::{column_name, interval_micros, micros_text, windowed_topic};
use crate::provider::TopicTableProvider;
use crate::{EngineError, Result};

/// What a SESSION call asks for, resolved against its topic.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Index of the time column among the user columns.
    pub time_column: usize,
    pub gap_us: i64,
    /// Indices of the key columns among the user columns.
    pub key_columns: Vec<usize>,
    user_columns: usize,
    /// User columns, `window_start`, `window_end`.
    schema: SchemaRef,
    text: String,
}

impl SessionSpec {
    pub fn new(topic: &TopicLog, time_column: &str, gap_us: i64, keys: &[String]) -> Result<Self> {
        let user = topic.schema();
        let time_index = user.index_of(time_column).map_err(|_| {
            EngineError::UndefinedColumn(format!("column \"{time_column}\" does not exist in \"{}\"", topic.name()))
        })?;
        let time_type = user.field(time_index).data_type().clone();
        if !matches!(time_type, DataType::Timestamp(TimeUnit::Microsecond, _)) {
            return Err(EngineError::InvalidParameter(format!(
                "session time column \"{time_column}\" must be a timestamp, not {time_type}"
            )));
        }
        if gap_us <= 0 {
            return Err(EngineError::InvalidParameter("session gap must be positive".into()));
        }
        let key_columns = keys
            .iter()
            .map(|k| {
                user.index_of(k)
                    .map_err(|_| EngineError::UndefinedColumn(format!("column \"{k}\" does not exist in \"{}\"", topic.name())))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut fields: Vec<Field> = user.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("window_start", time_type.clone(), false));
        fields.push(Field::new("window_end", time_type, false));
        let by = if keys.is_empty() { String::new() } else { format!(", by {}", keys.join(", ")) };
        Ok(Self {
            time_column: time_index,
            gap_us,
            key_columns,
            user_columns: user.fields().len(),
            schema: Arc::new(Schema::new(fields)),
            text: format!("SESSION(gap={}{by})", micros_text(gap_us)),
        })
    }

    /// User columns, `window_start`, `window_end`.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn key_converter(&self) -> Result<RowConverter> {
        let fields = self.key_columns.iter().map(|&i| SortField::new(self.schema.field(i).data_type().clone())).collect();
        Ok(RowConverter::new(fields)?)
    }

    /// Each row's key as bytes (all empty when there are no key columns: one session space).
    fn keys_of(&self, converter: &RowConverter, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        if self.key_columns.is_empty() {
            return Ok(vec![Vec::new(); batch.num_rows()]);
        }
        let arrays: Vec<ArrayRef> = self.key_columns.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&arrays)?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// Appends `window_start` and `window_end` (microseconds) to user columns.
    fn with_bounds(&self, mut columns: Vec<ArrayRef>, starts: Vec<i64>, ends: Vec<i64>) -> Result<RecordBatch> {
        let (starts, ends) = self.bound_columns(starts, ends)?;
        columns.push(starts);
        columns.push(ends);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// `window_start` and `window_end` columns (of the time column's type) from microseconds.
    fn bound_columns(&self, starts: Vec<i64>, ends: Vec<i64>) -> Result<(ArrayRef, ArrayRef)> {
        let time_type = self.schema.field(self.user_columns).data_type();
        let starts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(starts));
        let ends: ArrayRef = Arc::new(TimestampMicrosecondArray::from(ends));
        Ok((cast(&starts, time_type)?, cast(&ends, time_type)?))
    }

    /// Assigns sessions to every row of `batch` (user columns) at once, in input order.
    pub fn assign_all(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let times = batch.column(self.time_column).as_primitive::<TimestampMicrosecondType>();
        let keys = self.keys_of(&self.key_converter()?, batch)?;
        let mut by_key: HashMap<Vec<u8>, Vec<(i64, usize)>> = HashMap::new();
        for (row, key) in keys.into_iter().enumerate() {
            if times.is_valid(row) {
                by_key.entry(key).or_default().push((times.value(row), row));
            }
        }
        let mut bounds: Vec<Option<(i64, i64)>> = vec![None; batch.num_rows()];
        for rows in by_key.values_mut() {
            rows.sort_unstable();
            let sorted: Vec<i64> = rows.iter().map(|r| r.0).collect();
            for session in sessions(&sorted, self.gap_us) {
                for (_, row) in &rows[session.from..session.to] {
                    bounds[*row] = Some((session.start, session.end));
                }
            }
        }
        let kept: Vec<u32> = (0..batch.num_rows() as u32).filter(|&r| bounds[r as usize].is_some()).collect();
        let (starts, ends): (Vec<i64>, Vec<i64>) = kept.iter().filter_map(|&r| bounds[r as usize]).unzip();
        let indices = UInt32Array::from(kept);
        let columns = batch.columns().iter().take(self.user_columns).map(|c| take(c.as_ref(), &indices, None)).collect::<std::result::Result<Vec<_>, _>>()?;
        self.with_bounds(columns, starts, ends)
    }
}

/// One session of a sorted run of times: rows `[from, to)`, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    from: usize,
    to: usize,
    start: i64,
    end: i64,
}

/// The sessions of sorted times: a time less than `gap` after the previous one continues its
/// session.
fn sessions(times: &[i64], gap: i64) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for (index, &time) in times.iter().enumerate() {
        match out.last_mut() {
            Some(last) if time < last.end => {
                last.to = index + 1;
                last.end = last.end.max(time.saturating_add(gap));
            }
            _ => out.push(Span { from: index, to: index + 1, start: time, end: time.saturating_add(gap) }),
        }
    }
    out
}

/// `SESSION` as a DataFusion table function.
pub struct SessionFunction {
    pub storage: Storage,
    pub statement_bytes_max: u64,
}

impl fmt::Debug for SessionFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SESSION")
    }
}

impl SessionFunction {
    fn resolve(&self, exprs: &[Expr]) -> Result<SessionTableProvider> {
        if exprs.len() < 3 {
            return Err(EngineError::InvalidParameter(
                "SESSION takes at least 3 arguments: SESSION(topic, time_column, gap [, key_column, …])".into(),
            ));
        }
        let topic = windowed_topic(&self.storage, &exprs[0], "SESSION")?;
        let time_column = column_name(&exprs[1], "SESSION", "a time column")?;
        let gap_us = interval_micros(&exprs[2], "SESSION")?;
        let keys = exprs[3..].iter().map(|e| column_name(e, "SESSION", "key columns")).collect::<Result<Vec<_>>>()?;
        let spec = SessionSpec::new(&topic, &time_column, gap_us, &keys)?;
        Ok(SessionTableProvider {
            inner: TopicTableProvider::new(topic.clone(), self.storage.clone(), true, self.statement_bytes_max),
            topic,
            spec,
        })
    }
}

impl TableFunctionImpl for SessionFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(self.resolve(args.exprs()).map_err(|e| DataFusionError::External(Box::new(e)))?))
    }
}

/// A topic seen through SESSION.
pub struct SessionTableProvider {
    pub topic: Arc<TopicLog>,
    pub spec: SessionSpec,
    inner: TopicTableProvider,
}

impl fmt::Debug for SessionTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} over {}", self.spec.text, self.topic.name())
    }
}

#[async_trait]
impl TableProvider for SessionTableProvider {
    fn schema(&self) -> SchemaRef {
        self.spec.schema().clone()
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
        let input: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(input));
        let schema = match projection {
            Some(p) => Arc::new(self.spec.schema().project(p)?),
            None => self.spec.schema().clone(),
        };
        Ok(Arc::new(SessionExec::new(input, self.spec.clone(), projection.cloned(), schema)))
    }
}

/// Reads all of its (single-partition) input, assigns sessions, projects.
#[derive(Debug)]
struct SessionExec {
    input: Arc<dyn ExecutionPlan>,
    spec: SessionSpec,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl SessionExec {
    fn new(input: Arc<dyn ExecutionPlan>, spec: SessionSpec, projection: Option<Vec<usize>>, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self { input, spec, projection, properties }
    }
}

impl DisplayAs for SessionExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SessionExec: {}", self.spec.text)
    }
}

impl ExecutionPlan for SessionExec {
    fn name(&self) -> &str {
        "SessionExec"
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

    /// Sessions need every row of a key together: one input partition.
    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.into_iter().next().ok_or_else(|| DataFusionError::Internal("SessionExec needs its input".into()))?;
        Ok(Arc::new(SessionExec::new(input, self.spec.clone(), self.projection.clone(), self.properties.eq_properties.schema().clone())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let input_schema = self.input.schema();
        let spec = self.spec.clone();
        let projection = self.projection.clone();
        let schema = self.properties.eq_properties.schema().clone();
        let output = futures::stream::once(async move {
            let mut batches = Vec::new();
            while let Some(batch) = input.next().await {
                batches.push(batch?);
            }
            let all = concat_batches(&input_schema, &batches)?;
            let assigned = spec.assign_all(&all).map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok(match &projection {
                Some(p) => assigned.project(p)?,
                None => assigned,
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, output)))
    }
}

/// A key's rows in a view's state: (time, row bytes), sorted.
type KeyRows = Vec<(i64, Vec<u8>)>;

/// The streaming SESSION: first operator of its branch, over append-only topic rows (user
/// columns). Output: the session table's rows (projected), with retractions when sessions grow.
pub struct SessionOp {
    id: u16,
    view: u64,
    spec: SessionSpec,
    keys: RowConverter,
    /// The user columns the output needs (ascending): only these are kept in the state.
    kept: Vec<usize>,
    /// Encodes the kept columns of a row.
    rows: RowConverter,
    /// The output's columns: indices into the session table (user columns, `window_start`,
    /// `window_end`).
    projection: Vec<usize>,
    output_schema: SchemaRef,
    /// This epoch's new rows, by key.
    pending: HashMap<Vec<u8>, KeyRows>,
    /// Heap bytes of the pending keys and rows.
    pending_bytes: usize,
}

impl SessionOp {
    pub fn new(id: u16, view: u64, spec: SessionSpec, projection: Option<Vec<usize>>) -> Result<Self> {
        let keys = spec.key_converter()?;
        let projection = projection.unwrap_or_else(|| (0..spec.user_columns + 2).collect());
        let mut kept: Vec<usize> = projection.iter().copied().filter(|&i| i < spec.user_columns).collect();
        kept.sort_unstable();
        kept.dedup();
        let rows = RowConverter::new(kept.iter().map(|&i| SortField::new(spec.schema.field(i).data_type().clone())).collect())?;
        let output_schema = Arc::new(spec.schema.project(&projection)?);
        Ok(Self { id, view, spec, keys, kept, rows, projection, output_schema, pending: HashMap::new(), pending_bytes: 0 })
    }

    /// The output rows: the kept columns of `rows` (encoded) with their session bounds.
    fn output(&self, rows: &[&[u8]], starts: Vec<i64>, ends: Vec<i64>) -> Result<RecordBatch> {
        let decoded = if self.kept.is_empty() {
            Vec::new()
        } else {
            let parser = self.rows.parser();
            self.rows.convert_rows(rows.iter().map(|r| parser.parse(r)))?
        };
        let (starts, ends) = self.spec.bound_columns(starts, ends)?;
        let columns = self
            .projection
            .iter()
            .map(|&index| match index.checked_sub(self.spec.user_columns) {
                None => self
                    .kept
                    .iter()
                    .position(|&k| k == index)
                    .and_then(|position| decoded.get(position).cloned())
                    .ok_or_else(|| EngineError::Internal("session column not kept".into())),
                Some(0) => Ok(starts.clone()),
                Some(_) => Ok(ends.clone()),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(self.output_schema.clone(), columns, &options)?)
    }

    fn load(&self, key: &[u8], context: &EpochContext<'_>) -> Result<KeyRows> {
        let Some(bytes) = context.store.get(&state_key(self.view, self.id, key))? else { return Ok(Vec::new()) };
        let mut input = Decoder(&bytes);
        let count = input.u64()?;
        (0..count).map(|_| Ok((input.i64()?, input.bytes()?.to_vec()))).collect()
    }

    fn store(&self, key: &[u8], rows: &KeyRows, context: &mut EpochContext<'_>) {
        if rows.is_empty() {
            context.writer.delete_state(self.id, key);
            return;
        }
        let mut out = Encoder::default();
        out.u64(rows.len() as u64);
        for (time, row) in rows {
            out.i64(*time);
            out.bytes(row);
        }
        context.writer.put_state(self.id, key, &out.0);
    }
}

/// A row to emit: its bytes, its session bounds, and whether it is retracted.
type Emit = (Vec<u8>, i64, i64, bool);

/// What one key's new rows change: retractions of the rows of sessions that grew or merged
/// (with their old bounds), insertions with the new bounds. `rows` ends sorted, new rows in.
fn merge_key(rows: &mut KeyRows, new_rows: KeyRows, gap: i64, out: &mut Vec<Emit>) {
    let old_times: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let old_sessions = sessions(&old_times, gap);
    let mut merged: Vec<(i64, Vec<u8>, bool)> = rows.drain(..).map(|(t, r)| (t, r, false)).collect();
    merged.extend(new_rows.into_iter().map(|(t, r)| (t, r, true)));
    merged.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let times: Vec<i64> = merged.iter().map(|r| r.0).collect();
    for session in sessions(&times, gap) {
        let inside: Vec<&Span> =
            old_sessions.iter().filter(|o| o.start >= session.start && o.end <= session.end).collect();
        let members = &merged[session.from..session.to];
        let unchanged = matches!(inside.as_slice(), [only] if only.start == session.start && only.end == session.end);
        if unchanged {
            out.extend(members.iter().filter(|m| m.2).map(|m| (m.1.clone(), session.start, session.end, false)));
        } else {
            for old in inside {
                for (_, row) in &rows_of(old, members) {
                    out.push((row.clone(), old.start, old.end, true));
                }
            }
            out.extend(members.iter().map(|m| (m.1.clone(), session.start, session.end, false)));
        }
    }
    *rows = merged.into_iter().map(|(t, r, _)| (t, r)).collect();
}

/// The old rows (not new) among `members` whose times fall in the old session `old`.
fn rows_of(old: &Span, members: &[(i64, Vec<u8>, bool)]) -> Vec<(i64, Vec<u8>)> {
    members
        .iter()
        .filter(|m| !m.2 && m.0 >= old.start && m.0 < old.end)
        .map(|m| (m.0, m.1.clone()))
        .collect()
}

impl Operator for SessionOp {
    fn process(&mut self, input: Changes, _context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let batch = &input.batch;
        let times = batch.column(self.spec.time_column).as_primitive::<TimestampMicrosecondType>();
        let keys = self.spec.keys_of(&self.keys, batch)?;
        let kept: Vec<ArrayRef> = self.kept.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = if kept.is_empty() { None } else { Some(self.rows.convert_columns(&kept)?) };
        for (row, key) in keys.into_iter().enumerate() {
            if times.is_valid(row) {
                let bytes = rows.as_ref().map_or_else(Vec::new, |rows| rows.row(row).as_ref().to_vec());
                self.pending_bytes += allocation_bytes(bytes.len()) + std::mem::size_of::<(i64, Vec<u8>)>();
                let key_bytes = allocation_bytes(key.len());
                let entry = self.pending.entry(key).or_insert_with(|| {
                    self.pending_bytes += key_bytes;
                    KeyRows::new()
                });
                entry.push((times.value(row), bytes));
            }
        }
        Ok(Vec::new())
    }

    fn finish_epoch(&mut self, context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let mut emits: Vec<Emit> = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for (key, new_rows) in pending {
            let mut rows = self.load(&key, context)?;
            merge_key(&mut rows, new_rows, self.spec.gap_us, &mut emits);
            // A session the watermark has passed is final: its rows leave the state.
            if let Some(watermark) = context.watermark {
                let times: Vec<i64> = rows.iter().map(|r| r.0).collect();
                let open_from = sessions(&times, self.spec.gap_us).iter().find(|s| s.end > watermark).map_or(rows.len(), |s| s.from);
                rows.drain(..open_from);
            }
            self.store(&key, &rows, context);
        }
        if emits.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<&[u8]> = emits.iter().map(|e| e.0.as_slice()).collect();
        let starts = emits.iter().map(|e| e.1).collect();
        let ends = emits.iter().map(|e| e.2).collect();
        let batch = self.output(&rows, starts, ends)?;
        let retract: Vec<bool> = emits.iter().map(|e| e.3).collect();
        Ok(vec![Changes { batch, retract: Some(retract.into()) }])
    }

    fn memory_bytes(&self) -> usize {
        table_bytes::<Vec<u8>, KeyRows>(self.pending.capacity()) + self.pending_bytes
    }

    fn describe(&self) -> String {
        format!("Session: {} (retracts rows of sessions that grow)", self.spec.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_split_where_the_gap_is_reached() {
        let spans = sessions(&[0, 5, 9, 20, 29, 40], 10);
        let bounds: Vec<(usize, usize, i64, i64)> = spans.iter().map(|s| (s.from, s.to, s.start, s.end)).collect();
        // 0, 5, 9 (each < 10 after the previous); 20 (11 after 9); 29 (9 after 20); 40 (11 after 29).
        assert_eq!(bounds, vec![(0, 3, 0, 19), (3, 5, 20, 39), (5, 6, 40, 50)]);
    }

    #[test]
    fn a_row_that_bridges_two_sessions_retracts_both_and_inserts_the_merged_one() {
        let row = |t: i64| (t, vec![t as u8]);
        let mut rows: KeyRows = vec![row(0), row(30)];
        let mut out = Vec::new();
        // 0 → [0, 10); 30 → [30, 40). A row at 15 joins neither (15 ≥ 10; 30 ≥ 25).
        merge_key(&mut rows, vec![row(15)], 10, &mut out);
        assert_eq!(out, vec![(vec![15], 15, 25, false)]);
        out.clear();
        // A row at 8 extends [0, 10) to [0, 18), which now reaches 15: [0, 25).
        merge_key(&mut rows, vec![row(8)], 10, &mut out);
        assert_eq!(
            out,
            vec![
                (vec![0], 0, 10, true),
                (vec![15], 15, 25, true),
                (vec![0], 0, 25, false),
                (vec![8], 0, 25, false),
                (vec![15], 0, 25, false),
            ]
        );
        out.clear();
        // A row inside an existing session changes nothing else.
        merge_key(&mut rows, vec![row(3)], 10, &mut out);
        assert_eq!(out, vec![(vec![3], 0, 25, false)]);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 3, 8, 15, 30]);
    }
}
