//! Change batches and the stateless operators.
//!
//! A [`Changes`] is an Arrow batch plus, per row, whether it is retracted (a delete) or added (an
//! insert); an update is a delete and an insert. A batch without a retract column is all
//! inserts — the common case of an append-only stream, which costs nothing extra.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::state::{EpochWriter, StateStore};
use crate::Result;

/// Rows added and retracted.
#[derive(Debug, Clone)]
pub struct Changes {
    pub batch: RecordBatch,
    /// `true` where the row is retracted; `None` when every row is an insert.
    pub retract: Option<BooleanArray>,
}

impl Changes {
    pub fn inserts(batch: RecordBatch) -> Self {
        Self { batch, retract: None }
    }

    /// Rows with signed counts (a changelog entry) as changes: each row `|count|` times,
    /// retracted where the count is negative.
    pub fn from_counts(batch: &RecordBatch, counts: &[i64]) -> Result<Self> {
        let mut indices: Vec<u32> = Vec::with_capacity(counts.len());
        let mut retract: Vec<bool> = Vec::with_capacity(counts.len());
        for (row, count) in counts.iter().enumerate() {
            for _ in 0..count.unsigned_abs() {
                indices.push(row as u32);
                retract.push(*count < 0);
            }
        }
        let batch = arrow::compute::take_record_batch(batch, &arrow::array::UInt32Array::from(indices))?;
        Ok(Self { batch, retract: Some(BooleanArray::from(retract)) })
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether row `row` is retracted.
    pub fn is_retract(&self, row: usize) -> bool {
        self.retract.as_ref().is_some_and(|r| r.value(row))
    }

    /// +1 for an insert, -1 for a retraction.
    pub fn sign(&self, row: usize) -> i64 {
        if self.is_retract(row) {
            -1
        } else {
            1
        }
    }

    /// The rows where `mask` is true (NULL counts as false).
    pub fn filter(&self, mask: &BooleanArray) -> Result<Changes> {
        let mask = if mask.null_count() > 0 { prep_null_mask_filter(mask) } else { mask.clone() };
        let batch = filter_record_batch(&self.batch, &mask)?;
        let retract = match &self.retract {
            Some(r) => Some(arrow::compute::filter(r, &mask)?.as_boolean().clone()),
            None => None,
        };
        Ok(Changes { batch, retract })
    }
}

/// What an operator may use while it processes an epoch.
pub struct EpochContext<'a> {
    pub store: &'a StateStore,
    pub writer: &'a mut EpochWriter,
    /// The source's event-time watermark as of the end of this epoch (microseconds), if it
    /// has one: no row with an earlier event time will be processed any more.
    pub watermark: Option<i64>,
    /// Whether this epoch's result changes go to the changelog (someone may read them).
    pub log_changes: bool,
    /// Rows the epoch added to the view's results, net, when an operator's state holds them
    /// (see [`super::topn::StateResults`]).
    pub rows_delta: i64,
}

/// What the allocator takes for `len` bytes: with an 8-byte header, rounded up to 16, at least
/// 32 (glibc's malloc; close enough for others).
pub fn allocation_bytes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len + 8).next_multiple_of(16).max(32)
    }
}

/// Bytes a hash table with room for `capacity` entries of `(K, V)` takes: the entries and a
/// control byte each.
pub fn table_bytes<K, V>(capacity: usize) -> usize {
    capacity * (std::mem::size_of::<(K, V)>() + 1)
}

/// Bytes a value of `len` bytes takes in an ordered map of values and their counts
/// (`BTreeMap<Vec<u8>, i64>`): its allocation and its share of a B-tree node (a vector and a
/// count; nodes are about two thirds full).
pub fn counted_entry_bytes(len: usize) -> usize {
    allocation_bytes(len) + 48
}

/// One step of a view's pipeline.
pub trait Operator: Send {
    /// Transforms one change batch; a stateful operator may hold its output until
    /// [`Operator::finish_epoch`].
    fn process(&mut self, input: Changes, context: &mut EpochContext<'_>) -> Result<Vec<Changes>>;

    /// Ends an epoch: emits what the epoch's input changed and writes state to the epoch batch.
    fn finish_epoch(&mut self, _context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        Ok(Vec::new())
    }

    /// Output of the very first epoch of a view, before any input (a global aggregate's row).
    fn initial(&mut self) -> Result<Vec<Changes>> {
        Ok(Vec::new())
    }

    /// Bytes the operator holds in memory, approximately: what this epoch touched so far and
    /// what it caches from earlier epochs. The epoch loop ends an epoch early when a view's
    /// operators hold more than its bound.
    fn memory_bytes(&self) -> usize {
        0
    }

    /// Drops what the operator caches from earlier epochs (called between epochs, when the
    /// view holds more than half its bound).
    fn drop_cache(&mut self) {}

    /// Makes a windowed aggregate emit final rows when windows close (EMIT ON WINDOW CLOSE).
    fn set_emit_on_close(&mut self) {}

    /// A top-N's state layout (the operator whose state can hold the view's results).
    fn top_n_layout(&self) -> Option<Arc<super::topn::TopNLayout>> {
        None
    }

    /// Makes a top-N's state hold the view's results: it then counts the rows it adds in
    /// [`EpochContext::rows_delta`] and emits changes only when they are logged.
    fn keep_results(&mut self, _keep: bool) {}

    /// A projection's expressions and output schema.
    fn projection(&self) -> Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)> {
        None
    }

    /// One line for EXPLAIN.
    fn describe(&self) -> String;
}

/// Keeps the rows where a predicate is true.
pub struct FilterOp {
    pub predicate: Arc<dyn PhysicalExpr>,
    pub text: String,
}

impl Operator for FilterOp {
    fn process(&mut self, input: Changes, _context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let mask = self.predicate.evaluate(&input.batch)?.into_array(input.num_rows())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| crate::EngineError::Internal(format!("filter {} is not boolean", self.text)))?;
        let output = input.filter(mask)?;
        Ok(if output.num_rows() == 0 { Vec::new() } else { vec![output] })
    }

    fn describe(&self) -> String {
        format!("Filter: {}", self.text)
    }
}

/// Computes output columns row by row.
pub struct ProjectOp {
    pub exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub texts: Vec<String>,
    pub schema: SchemaRef,
}

/// `exprs` evaluated over `batch`, as a batch of `schema` (the row count kept even without
/// columns).
pub fn project(batch: &RecordBatch, exprs: &[Arc<dyn PhysicalExpr>], schema: &SchemaRef) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = exprs.iter().map(|e| Ok(e.evaluate(batch)?.into_array(rows)?)).collect::<Result<Vec<ArrayRef>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}

impl Operator for ProjectOp {
    fn process(&mut self, input: Changes, _context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let batch = project(&input.batch, &self.exprs, &self.schema)?;
        Ok(vec![Changes { batch, retract: input.retract }])
    }

    fn projection(&self) -> Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)> {
        Some((self.exprs.clone(), self.schema.clone()))
    }

    fn describe(&self) -> String {
        format!("Project: {}", self.texts.join(", "))
    }
}
