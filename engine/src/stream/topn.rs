//! Incremental top-N: `ROW_NUMBER() OVER (PARTITION BY p ORDER BY o)` kept to the rows whose
//! number is at most N (the filter `rn <= N` above it).
//!
//! Per partition the state is a multiset of rows ordered by the ORDER BY key (then by the whole
//! row, so ties are broken the same way every time), encoded with arrow-row. Over an
//! append-only input a row that falls out of the top N can never come back, so only the top N
//! are kept; over a retracting input every row is kept (a retraction can promote any of them).
//! At the end of an epoch each touched partition compares its old and new top N, numbered,
//! and emits retractions and insertions for the difference.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::changes::{Changes, EpochContext, Operator};
use super::state::{state_key, Decoder, Encoder};
use crate::{EngineError, Result};

/// One partition's rows: (order key, row) bytes → count.
type Rows = BTreeMap<Vec<u8>, i64>;

pub struct TopNOp {
    id: u16,
    view: u64,
    partition_exprs: Vec<Arc<dyn PhysicalExpr>>,
    partitions: RowConverter,
    order_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Encodes (order key columns…, input columns…).
    rows: RowConverter,
    order_count: usize,
    limit: usize,
    append_only: bool,
    /// Input columns followed by the row number.
    schema: SchemaRef,
    text: String,
    /// Partitions touched this epoch: their rows before it, and now.
    touched: HashMap<Vec<u8>, (Rows, Rows), foldhash::fast::RandomState>,
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
        Ok(Self {
            id,
            view,
            partition_exprs,
            partitions,
            order_exprs: order_exprs.into_iter().map(|(e, _, _)| e).collect(),
            rows: RowConverter::new(fields)?,
            order_count,
            limit,
            append_only,
            schema,
            text,
            touched: HashMap::default(),
        })
    }

    fn load(&self, key: &[u8], context: &EpochContext<'_>) -> Result<Rows> {
        let Some(bytes) = context.store.get(&state_key(self.view, self.id, key))? else { return Ok(Rows::new()) };
        let mut input = Decoder(&bytes);
        let count = input.u64()?;
        let mut rows = Rows::new();
        for _ in 0..count {
            let row = input.bytes()?.to_vec();
            rows.insert(row, input.i64()?);
        }
        Ok(rows)
    }

    fn encode(rows: &Rows) -> Vec<u8> {
        let mut out = Encoder::default();
        out.u64(rows.len() as u64);
        for (row, count) in rows {
            out.bytes(row);
            out.i64(*count);
        }
        out.0
    }

    /// The first `limit` rows (each repeated by its count), numbered from 1.
    fn top(&self, rows: &Rows) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::with_capacity(self.limit);
        for (row, count) in rows {
            for _ in 0..(*count).max(0) {
                if out.len() == self.limit {
                    return out;
                }
                out.push((row.clone(), out.len() as u64 + 1));
            }
        }
        out
    }

    /// Keeps only what can still reach the top N (append-only input: the top N themselves).
    fn trim(&self, rows: &mut Rows) {
        if !self.append_only {
            return;
        }
        let mut kept = 0i64;
        let limit = self.limit as i64;
        rows.retain(|_, count| {
            let keep = kept < limit;
            kept += *count;
            keep
        });
    }

    fn output(&self, rows: &[(Vec<u8>, u64)], retract: bool) -> Result<Changes> {
        let parser = self.rows.parser();
        let decoded = self.rows.convert_rows(rows.iter().map(|(r, _)| parser.parse(r)))?;
        let mut columns: Vec<ArrayRef> = decoded.into_iter().skip(self.order_count).collect();
        columns.push(Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(_, n)| *n))));
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { Ok(arrow::compute::cast(&c, f.data_type())?) })
            .collect::<Result<Vec<_>>>()?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(Changes { batch, retract: Some(BooleanArray::from(vec![retract; rows.len()])) })
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
        // Without PARTITION BY every row is in the one partition (empty key).
        let partition_keys = if self.partition_exprs.is_empty() {
            None
        } else {
            Some(self.partitions.convert_columns(&evaluate(&self.partition_exprs)?)?)
        };
        let mut row_columns = evaluate(&self.order_exprs)?;
        row_columns.extend(input.batch.columns().iter().cloned());
        let encoded = self.rows.convert_columns(&row_columns)?;
        for row in 0..count {
            let key: &[u8] = partition_keys.as_ref().map_or(&[], |keys| keys.row(row).data());
            if !self.touched.contains_key(key) {
                let stored = self.load(key, context)?;
                self.touched.insert(key.to_vec(), (stored.clone(), stored));
            }
            let (_, rows) = self.touched.get_mut(key).ok_or_else(|| EngineError::Internal("top-N partition vanished".into()))?;
            let value = encoded.row(row);
            if self.append_only {
                // A row below the N kept can never come back: skip it, and drop the one pushed
                // out (each kept row counts at least once, so past N entries the last is out).
                if rows.len() >= self.limit && rows.last_key_value().is_some_and(|(last, _)| value.as_ref() > last.as_slice()) {
                    continue;
                }
                *rows.entry(value.as_ref().to_vec()).or_insert(0) += 1;
                if rows.len() > self.limit {
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
        let touched = std::mem::take(&mut self.touched);
        let mut retracted = Vec::new();
        let mut inserted = Vec::new();
        for (key, (before, mut after)) in touched {
            let old = self.top(&before);
            self.trim(&mut after);
            let new = self.top(&after);
            if after.is_empty() {
                context.writer.delete_state(self.id, &key);
            } else if after != before {
                context.writer.put_state(self.id, &key, &Self::encode(&after));
            }
            retracted.extend(old.iter().filter(|r| !new.contains(r)).cloned());
            inserted.extend(new.iter().filter(|r| !old.contains(r)).cloned());
        }
        let mut output = Vec::new();
        if !retracted.is_empty() {
            output.push(self.output(&retracted, true)?);
        }
        if !inserted.is_empty() {
            output.push(self.output(&inserted, false)?);
        }
        Ok(output)
    }

    fn describe(&self) -> String {
        let mode = if self.append_only { "append-only input, keeps the top rows" } else { "retracting input, keeps every row" };
        format!("TopN: {} ({mode})", self.text)
    }
}
