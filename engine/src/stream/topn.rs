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

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt64Array};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::changes::{project, Changes, EpochContext, Operator};
use super::view::READ_BATCH_ROWS;
use super::state::{state_key, Decoder, Encoder, StateStore};
use crate::{EngineError, Result};

/// One partition's rows: (order key, row) bytes → count.
type Rows = BTreeMap<Vec<u8>, i64>;

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

    /// Encodes `rows` into `out` (cleared first: one buffer serves a whole epoch).
    fn encode(rows: &Rows, out: &mut Encoder) {
        out.0.clear();
        out.u64(rows.len() as u64);
        for (row, count) in rows {
            out.bytes(row);
            out.i64(*count);
        }
    }

    /// The first `limit` rows (each repeated by its count), numbered from 1.
    fn top<'r>(&self, rows: &'r Rows) -> Vec<(&'r [u8], u64)> {
        let mut out = Vec::with_capacity(self.limit.min(rows.len()));
        for (row, count) in rows {
            for _ in 0..(*count).max(0) {
                if out.len() == self.limit {
                    return out;
                }
                out.push((row.as_slice(), out.len() as u64 + 1));
            }
        }
        out
    }

    /// How many rows [`Self::top`] returns.
    fn top_len(&self, rows: &Rows) -> i64 {
        let present: i64 = rows.values().map(|c| (*c).max(0)).sum();
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
    /// The committed results and the view's progress record, from one consistent snapshot.
    pub fn read(&self, store: &StateStore) -> Result<(Vec<RecordBatch>, Option<Vec<u8>>)> {
        let layout = &self.layout;
        let mut batches = Vec::new();
        let mut partitions: Vec<Rows> = Vec::new();
        let mut pending = 0usize;
        let mut failure: Option<EngineError> = None;
        let flush = |partitions: &mut Vec<Rows>, batches: &mut Vec<RecordBatch>| -> Result<()> {
            let rows: Vec<(&[u8], u64)> = partitions.iter().flat_map(|p| layout.top(p)).collect();
            if !rows.is_empty() {
                batches.push(self.project(layout.output(&rows, false)?.batch)?);
            }
            partitions.clear();
            Ok(())
        };
        let meta = store.scan_operator_state(layout.view, layout.operator, |_, value| {
            let step = TopNLayout::decode(value).and_then(|rows| {
                pending += layout.top_len(&rows) as usize;
                partitions.push(rows);
                if pending >= READ_BATCH_ROWS {
                    pending = 0;
                    flush(&mut partitions, &mut batches)?;
                }
                Ok(())
            });
            match step {
                Ok(()) => true,
                Err(error) => {
                    failure = Some(error);
                    false
                }
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        flush(&mut partitions, &mut batches)?;
        Ok((batches, meta))
    }

    fn project(&self, mut batch: RecordBatch) -> Result<RecordBatch> {
        for (exprs, schema) in &self.tail {
            batch = project(&batch, exprs, schema)?;
        }
        Ok(batch)
    }
}

/// A partition touched this epoch: its rows before it, and now.
struct Touched {
    key: Vec<u8>,
    before: Rows,
    after: Rows,
}

pub struct TopNOp {
    layout: Arc<TopNLayout>,
    partition_exprs: Vec<Arc<dyn PhysicalExpr>>,
    partitions: RowConverter,
    order_exprs: Vec<Arc<dyn PhysicalExpr>>,
    append_only: bool,
    /// The state is the view's results (see [`StateResults`]).
    holds_results: bool,
    text: String,
    /// Partitions touched this epoch, and an index of them by key (into `touched`).
    touched: Vec<Touched>,
    index: hashbrown::HashTable<usize>,
    hasher: foldhash::fast::RandomState,
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
            touched: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        })
    }

    /// The position in `touched` of each row's partition, adding the partitions not touched
    /// before this batch (their stored rows loaded in one batched read, in key order).
    fn locate(&mut self, keys: Option<&arrow::row::Rows>, count: usize, context: &EpochContext<'_>) -> Result<Vec<usize>> {
        let Self { touched, index, hasher, layout, .. } = self;
        let first_new = touched.len();
        let mut slots = Vec::with_capacity(count);
        for row in 0..count {
            // Without PARTITION BY every row is in the one partition (empty key).
            let key: &[u8] = keys.map_or(&[], |keys| keys.row(row).data());
            let hash = hasher.hash_one(key);
            let slot = match index.find(hash, |&i| touched[i].key == key) {
                Some(&slot) => slot,
                None => {
                    let slot = touched.len();
                    touched.push(Touched { key: key.to_vec(), before: Rows::new(), after: Rows::new() });
                    index.insert_unique(hash, slot, |&i| hasher.hash_one(&touched[i].key));
                    slot
                }
            };
            slots.push(slot);
        }
        let mut new: Vec<usize> = (first_new..touched.len()).collect();
        new.sort_unstable_by(|a, b| touched[*a].key.cmp(&touched[*b].key));
        let state_keys: Vec<Vec<u8>> = new.iter().map(|i| state_key(layout.view, layout.operator, &touched[*i].key)).collect();
        for (slot, stored) in new.iter().zip(context.store.get_sorted(&state_keys)?) {
            if let Some(bytes) = stored {
                let rows = TopNLayout::decode(&bytes)?;
                touched[*slot].before = rows.clone();
                touched[*slot].after = rows;
            }
        }
        Ok(slots)
    }

    /// Keeps only what can still reach the top N (append-only input: the top N themselves).
    fn trim(&self, rows: &mut Rows) {
        // `process` keeps at most N entries: only a row present more than once can push
        // another past the N.
        if !self.append_only || rows.values().all(|count| *count == 1) {
            return;
        }
        let mut kept = 0i64;
        let limit = self.layout.limit as i64;
        rows.retain(|_, count| {
            let keep = kept < limit;
            kept += *count;
            keep
        });
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
        let limit = self.layout.limit;
        for (row, slot) in slots.into_iter().enumerate() {
            let rows = &mut self.touched[slot].after;
            let value = encoded.row(row);
            if self.append_only {
                // A row below the N kept can never come back: skip it, and drop the one pushed
                // out (each kept row counts at least once, so past N entries the last is out).
                if rows.len() >= limit && rows.last_key_value().is_some_and(|(last, _)| value.as_ref() > last.as_slice()) {
                    continue;
                }
                *rows.entry(value.as_ref().to_vec()).or_insert(0) += 1;
                if rows.len() > limit {
                    rows.pop_last();
                }
                continue;
            }
            match rows.entry(value.as_ref().to_vec()) {
                Entry::Occupied(mut entry) => {
                    *entry.get_mut() += input.sign(row);
                    if *entry.get() == 0 {
                        entry.remove();
                    }
                }
                Entry::Vacant(entry) => {
                    entry.insert(input.sign(row));
                }
            }
        }
        Ok(Vec::new())
    }

    fn finish_epoch(&mut self, context: &mut EpochContext<'_>) -> Result<Vec<Changes>> {
        self.index.clear();
        let mut touched = std::mem::take(&mut self.touched);
        // In key order: RocksDB inserts sorted keys into its memtable far faster than random ones.
        touched.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let layout = &self.layout;
        let mut value = Encoder::default();
        for partition in &mut touched {
            self.trim(&mut partition.after);
            if partition.after.is_empty() {
                if !partition.before.is_empty() {
                    context.writer.delete_state(layout.operator, &partition.key);
                }
            } else if partition.after != partition.before {
                TopNLayout::encode(&partition.after, &mut value);
                context.writer.put_state(layout.operator, &partition.key, &value.0);
            }
        }
        if self.holds_results {
            context.rows_delta += touched.iter().map(|p| layout.top_len(&p.after) - layout.top_len(&p.before)).sum::<i64>();
            if !context.log_changes {
                // The state is the results, and nobody reads this epoch's changes.
                return Ok(Vec::new());
            }
        }
        let mut retracted = Vec::new();
        let mut inserted = Vec::new();
        for partition in &touched {
            let old = layout.top(&partition.before);
            let new = layout.top(&partition.after);
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
