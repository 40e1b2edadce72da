//! Incremental top-N: `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o)` kept to the rows whose
//! number is at most N (the filter `rn <= N` above it).
//!
//! Per partition the state is a multiset of rows ordered by the ORDER BY key (then by the whole
//! row, so ties are broken the same way every time), encoded with arrow-row. Over an
//! append-only input a row that falls out of the top N can never come back, so only the top N
//! are kept; over a retracting input every row is kept (a retraction can promote any of them).
//! At the end of an epoch each touched partition compares its old and new top N, numbered,
//! and emits retractions and insertions for the difference.
//!
//! When nothing but projections follows the top-N, its state *is* the view's results: each
//! partition's first N rows, numbered, then projected ([`StateResults`]). The view then keeps
//! no result rows of its own, and the operator computes its changes only for epochs whose
//! changelog someone reads.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt64Array};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::changes::{project, Changes, EpochContext, Operator};
use super::view::READ_BATCH_ROWS;
use super::state::{write_state_key, Decoder, Encoder, StateStore};
use super::touched::{Rows, Touched};
use crate::Result;

/// A partition's rows in order, as (row bytes, count).
trait RowCounts<'r>: Iterator<Item = (&'r [u8], i64)> + Clone {}
impl<'r, I: Iterator<Item = (&'r [u8], i64)> + Clone> RowCounts<'r> for I {}

fn counted(rows: &Rows) -> impl RowCounts<'_> {
    rows.iter().map(|(row, count)| (row.as_slice(), *count))
}

/// How a top-N's state is encoded and turned into output rows: shared by the operator and by
/// the readers of a view whose results it holds.
#[derive(Debug)]
pub struct TopNLayout {
    view: u64,
    /// The operator's state namespace.
    operator: u16,
    /// Encodes (order key columns…, input columns…).
    rows: RowConverter,
    order_count: usize,
    limit: usize,
    /// Input columns followed by the row number.
    schema: SchemaRef,
}

impl TopNLayout {
    fn decode(bytes: &[u8]) -> Result<Rows> {
        let mut input = Decoder(bytes);
        let count = input.u64()?;
        let mut rows = Rows::new();
        for _ in 0..count {
            let row = input.bytes()?.to_vec();
            rows.insert(row, input.i64()?);
        }
        Ok(rows)
    }

    /// Appends the encoding of `rows` to `out`: what [`Self::decode`] and [`Touched::load`] read.
    fn encode<'r>(rows: impl RowCounts<'r>, out: &mut Encoder) {
        out.u64(rows.clone().count() as u64);
        for (row, count) in rows {
            out.bytes(row);
            out.i64(count);
        }
    }

    /// The first `limit` rows (each repeated by its count), numbered from 1.
    fn top<'r>(&self, rows: impl RowCounts<'r>) -> Vec<(&'r [u8], u64)> {
        let mut out = Vec::with_capacity(self.limit.min(rows.size_hint().0));
        for (row, count) in rows {
            for _ in 0..count.max(0) {
                if out.len() == self.limit {
                    return out;
                }
                out.push((row, out.len() as u64 + 1));
            }
        }
        out
    }

    /// How many rows [`Self::top`] returns.
    fn top_len<'r>(&self, rows: impl RowCounts<'r>) -> i64 {
        let present: i64 = rows.map(|(_, c)| c.max(0)).sum();
        present.min(self.limit as i64)
    }

    /// Numbered rows as the operator's output.
    fn output(&self, rows: &[(&[u8], u64)], retract: bool) -> Result<Changes> {
        let parser = self.rows.parser();
        let decoded = self.rows.convert_rows(rows.iter().map(|(r, _)| parser.parse(r)))?;
        let mut columns: Vec<ArrayRef> = decoded.into_iter().skip(self.order_count).collect();
        columns.push(Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(_, n)| *n))));
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { Ok(arrow::compute::cast(&c, f.data_type())?) })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        let retract = if retract { Some(BooleanArray::from(vec![true; rows.len()])) } else { None };
        Ok(Changes { batch, retract })
    }
}

/// A view's results held in its top-N's state: every partition's first N rows, numbered, then
/// through the projections above the top-N.
#[derive(Debug, Clone)]
pub struct StateResults {
    pub layout: Arc<TopNLayout>,
    /// The projections after the top-N, in pipeline order.
    pub tail: Vec<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
}

impl StateResults {
    /// The committed results, batch by batch to `emit` until it returns false, and the view's
    /// progress record, from one consistent snapshot.
    pub fn read(&self, store: &StateStore, emit: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<Option<Vec<u8>>> {
        let layout = &self.layout;
        let mut partitions: Vec<Rows> = Vec::new();
        let mut pending = 0usize;
        let mut flush = |partitions: &mut Vec<Rows>| -> Result<bool> {
            let rows: Vec<(&[u8], u64)> = partitions.iter().flat_map(|p| layout.top(counted(p))).collect();
            let more = rows.is_empty() || emit(self.project(layout.output(&rows, false)?.batch)?)?;
            partitions.clear();
            Ok(more)
        };
        // Whether the reader wants more batches.
        let mut more = true;
        let meta = store.scan_operator_state(layout.view, layout.operator, |_, value| {
            let rows = TopNLayout::decode(value)?;
            pending += layout.top_len(counted(&rows)) as usize;
            partitions.push(rows);
            if pending >= READ_BATCH_ROWS {
                pending = 0;
                more = flush(&mut partitions)?;
            }
            Ok(more)
        })?;
        if more {
            flush(&mut partitions)?;
        }
        Ok(meta)
    }

    fn project(&self, mut batch: RecordBatch) -> Result<RecordBatch> {
        for (exprs, schema) in &self.tail {
            batch = project(&batch, exprs, schema)?;
        }
        Ok(batch)
    }
}

/// What an epoch writes for a partition: nothing, a delete, or a value (its state key at
/// `start..key_end` of the epoch's encoded values, its value at `key_end..end`).
#[derive(Clone, Copy)]
enum StateWrite {
    None,
    Delete,
    Put { start: usize, key_end: usize, end: usize },
}

/// How many partitions ahead of the one being written its key and value are prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to start loading the first cache line of `bytes`.
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has (it is in the x86-64
    // baseline target). A prefetch is a hint: it never faults and changes no memory, and the
    // pointer is into a live slice anyway. Measured in docs/benchmarks.md (q18).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(bytes.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// The buffer of an epoch's encoded values is kept for the next epoch up to this size.
const VALUES_RETAINED_BYTES_MAX: usize = 16 << 20;

pub struct TopNOp {
    layout: Arc<TopNLayout>,
    partition_exprs: Vec<Arc<dyn PhysicalExpr>>,
    partitions: RowConverter,
    order_exprs: Vec<Arc<dyn PhysicalExpr>>,
    append_only: bool,
    /// The state is the view's results (see [`StateResults`]).
    holds_results: bool,
    text: String,
    /// Partitions touched this epoch.
    touched: Touched,
    /// The epoch's encoded values (a buffer kept from epoch to epoch).
    values: Encoder,
}

impl TopNOp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u16,
        view: u64,
        partition_exprs: Vec<Arc<dyn PhysicalExpr>>,
        partition_types: Vec<DataType>,
        order_exprs: Vec<(Arc<dyn PhysicalExpr>, DataType, SortOptions)>,
        input_types: Vec<DataType>,
        limit: usize,
        append_only: bool,
        schema: SchemaRef,
        text: String,
    ) -> Result<Self> {
        let partitions = RowConverter::new(partition_types.into_iter().map(SortField::new).collect())?;
        let order_count = order_exprs.len();
        let mut fields: Vec<SortField> =
            order_exprs.iter().map(|(_, t, options)| SortField::new_with_options(t.clone(), *options)).collect();
        fields.extend(input_types.into_iter().map(SortField::new));
        let layout = TopNLayout { view, operator: id, rows: RowConverter::new(fields)?, order_count, limit, schema };
        Ok(Self {
            layout: Arc::new(layout),
            partition_exprs,
            partitions,
            order_exprs: order_exprs.into_iter().map(|(e, _, _)| e).collect(),
            append_only,
            holds_results: false,
            text,
            touched: Touched::new(append_only, limit),
            values: Encoder::default(),
        })
    }

    /// The touched partition of each row, adding the partitions not touched before this batch
    /// (their stored rows loaded in one batched read, in key order).
    fn locate(&mut self, keys: Option<&arrow::row::Rows>, count: usize, context: &EpochContext<'_>) -> Result<Vec<usize>> {
        let touched = &mut self.touched;
        let mut slots = Vec::with_capacity(count);
        let mut new = Vec::new();
        for row in 0..count {
            // Without PARTITION BY every row is in the one partition (empty key).
            let key: &[u8] = keys.map_or(&[], |keys| keys.row(row).data());
            let (slot, added) = touched.locate(key);
            if added {
                new.push(slot);
            }
            slots.push(slot);
        }
        new.sort_unstable_by(|a, b| touched.key(*a).cmp(touched.key(*b)));
        let mut buffer = Vec::new();
        let mut ends = Vec::with_capacity(new.len());
        for slot in &new {
            write_state_key(&mut buffer, self.layout.view, self.layout.operator, touched.key(*slot));
            ends.push(buffer.len());
        }
        let state_keys: Vec<&[u8]> = ends.iter().scan(0, |start, &end| Some(&buffer[std::mem::replace(start, end)..end])).collect();
        context.store.get_sorted(&state_keys, |i, stored| touched.load(new[i], stored))?;
        Ok(slots)
    }

    /// Writes the touched partitions' changed rows to the epoch (in `order`) and returns the
    /// changes of their top N.
    fn write_epoch(&mut self, order: &[usize], context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let (layout, touched) = (&self.layout, &mut self.touched);
        // First in the order the partitions were touched, which is about the order their rows
        // lie in memory: trim them, and write each changed one's state key and value side by
        // side into one buffer. Then, in key order, hand them to the write batch: one place
        // in memory to fetch per partition (done in key order, the first pass was mostly
        // waiting for memory).
        let mut values = std::mem::take(&mut self.values);
        values.0.clear();
        let mut writes = Vec::with_capacity(touched.len());
        for partition in 0..touched.len() {
            touched.trim(partition);
            let (before, after) = (touched.before(partition), touched.after(partition));
            writes.push(if after.clone().next().is_none() {
                if before.clone().next().is_some() { StateWrite::Delete } else { StateWrite::None }
            } else if !after.clone().eq(before) {
                let start = values.0.len();
                write_state_key(&mut values.0, layout.view, layout.operator, touched.key(partition));
                let key_end = values.0.len();
                TopNLayout::encode(after, &mut values);
                StateWrite::Put { start, key_end, end: values.0.len() }
            } else {
                StateWrite::None
            });
        }
        for (i, &partition) in order.iter().enumerate() {
            if let Some(StateWrite::Put { start, .. }) = order.get(i + PREFETCH_AHEAD).map(|p| writes[*p]) {
                prefetch(&values.0[start..]);
            }
            match writes[partition] {
                StateWrite::Put { start, key_end, end } => context.writer.put(&values.0[start..key_end], &values.0[key_end..end]),
                StateWrite::Delete => context.writer.delete_state(layout.operator, touched.key(partition)),
                StateWrite::None => {}
            }
        }
        values.0.shrink_to(VALUES_RETAINED_BYTES_MAX);
        self.values = values;
        let touched = &self.touched;
        if self.holds_results {
            context.rows_delta += (0..touched.len()).map(|p| layout.top_len(touched.after(p)) - layout.top_len(touched.before(p))).sum::<i64>();
            if !context.log_changes {
                // The state is the results, and nobody reads this epoch's changes.
                return Ok(Vec::new());
            }
        }
        let mut retracted = Vec::new();
        let mut inserted = Vec::new();
        for &partition in order {
            let old = layout.top(touched.before(partition));
            let new = layout.top(touched.after(partition));
            retracted.extend(old.iter().filter(|r| !new.contains(r)));
            inserted.extend(new.iter().filter(|r| !old.contains(r)));
        }
        let mut output = Vec::new();
        if !retracted.is_empty() {
            output.push(layout.output(&retracted, true)?);
        }
        if !inserted.is_empty() {
            output.push(layout.output(&inserted, false)?);
        }
        Ok(output)
    }
}

impl Operator for TopNOp {
    fn process(&mut self, input: Changes, context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        let count = input.num_rows();
        if count == 0 {
            return Ok(Vec::new());
        }
        let evaluate = |exprs: &[Arc<dyn PhysicalExpr>]| -> Result<Vec<ArrayRef>> {
            exprs.iter().map(|e| Ok(e.evaluate(&input.batch)?.into_array(count)?)).collect()
        };
        let partition_keys = if self.partition_exprs.is_empty() {
            None
        } else {
            Some(self.partitions.convert_columns(&evaluate(&self.partition_exprs)?)?)
        };
        let mut row_columns = evaluate(&self.order_exprs)?;
        row_columns.extend(input.batch.columns().iter().cloned());
        let encoded = self.layout.rows.convert_columns(&row_columns)?;
        let slots = self.locate(partition_keys.as_ref(), count, context)?;
        for (row, slot) in slots.into_iter().enumerate() {
            self.touched.add(slot, encoded.row(row).as_ref(), input.sign(row));
        }
        Ok(Vec::new())
    }

    fn finish_epoch(&mut self, context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        // In key order: RocksDB inserts sorted keys into its memtable far faster than random ones.
        let order = self.touched.in_key_order();
        let output = self.write_epoch(&order, context);
        self.touched.clear();
        output
    }

    fn memory_bytes(&self) -> usize {
        self.touched.memory_bytes() + self.values.0.capacity()
    }

    fn top_n_layout(&self) -> Option<Arc<TopNLayout>> {
        Some(self.layout.clone())
    }

    fn keep_results(&mut self, keep: bool) {
        self.holds_results = keep;
    }

    fn describe(&self) -> String {
        let mode = if self.append_only { "append-only input, keeps the top rows" } else { "retracting input, keeps every row" };
        let results = if self.holds_results { "; its state is the view's results" } else { "" };
        format!("TopN: {} ({mode}{results})", self.text)
    }
}
