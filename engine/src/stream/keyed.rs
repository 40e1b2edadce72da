//! A keyed table as a view's source: its log of upserts and tombstones becomes changes. An
//! upsert of a key retracts the key's previous row (if any) and inserts the new one; a tombstone
//! retracts the previous row. The current row of every key the view has seen is state, so a
//! view over a keyed table needs no read of the table itself.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use streamhouse_storage::TopicLog;

use super::changes::{allocation_bytes, table_bytes, Changes, EpochContext};
use super::state::state_key;
use crate::Result;

/// State namespace of the changelog source of branch 0 (operators number from 0 upwards;
/// branch `b` of a UNION ALL uses this minus `b`).
const SOURCE_OPERATOR: u16 = u16::MAX;

pub struct KeyedChangelog {
    view: u64,
    /// State namespace.
    operator: u16,
    key_columns: Vec<usize>,
    keys: RowConverter,
    rows: RowConverter,
    /// The table's columns as a view reads them: the full schema without `_deleted`.
    schema: SchemaRef,
    /// Rows of keys changed in this epoch, not yet committed (`None`: deleted).
    pending: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Heap bytes of the pending keys and rows.
    pending_bytes: usize,
}

impl KeyedChangelog {
    pub fn new(view: u64, topic: &TopicLog, branch: usize) -> Result<Self> {
        let full = topic.full_schema();
        let fields: Vec<_> = full.fields().iter().take(full.fields().len() - 1).cloned().collect();
        let schema = Arc::new(Schema::new(fields));
        let key_columns = topic.primary_key().to_vec();
        let keys = RowConverter::new(key_columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect())?;
        let rows = RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        let operator = SOURCE_OPERATOR.saturating_sub(branch as u16);
        Ok(Self { view, operator, key_columns, keys, rows, schema, pending: HashMap::new(), pending_bytes: 0 })
    }

    /// Starts an epoch: nothing is pending.
    pub fn begin_epoch(&mut self) {
        // A new map: clearing would keep the last epoch's table.
        self.pending = HashMap::new();
        self.pending_bytes = 0;
    }

    /// Bytes the epoch's pending rows take, approximately.
    pub fn memory_bytes(&self) -> usize {
        table_bytes::<Vec<u8>, Option<Vec<u8>>>(self.pending.capacity()) + self.pending_bytes
    }

    /// Turns log rows (the full schema, `_deleted` last) into changes of the table's rows.
    pub fn apply(&mut self, batch: &RecordBatch, context: &mut EpochContext) -> Result<Changes> {
        let deleted_column = batch.num_columns() - 1;
        let deleted = batch.column(deleted_column).as_boolean();
        let current = batch.project(&(0..deleted_column).collect::<Vec<_>>())?;
        let current = RecordBatch::try_new(self.schema.clone(), current.columns().to_vec())?;
        let key_arrays: Vec<_> = self.key_columns.iter().map(|&i| current.column(i).clone()).collect();
        let keys = self.keys.convert_columns(&key_arrays)?;
        let rows = self.rows.convert_columns(current.columns())?;
        let mut previous_rows: Vec<Vec<u8>> = Vec::new();
        // (0, i): the i-th previous row, retracted; (1, i): row i of the batch, inserted.
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(batch.num_rows() * 2);
        let mut retract: Vec<bool> = Vec::with_capacity(batch.num_rows() * 2);
        for row in 0..batch.num_rows() {
            let key = keys.row(row).as_ref().to_vec();
            let previous = match self.pending.get(&key) {
                Some(pending) => pending.clone(),
                None => context.store.get(&state_key(self.view, self.operator, &key))?,
            };
            if let Some(previous) = previous {
                picks.push((0, previous_rows.len()));
                retract.push(true);
                previous_rows.push(previous);
            }
            self.pending_bytes += allocation_bytes(key.len());
            if deleted.value(row) {
                context.writer.delete_state(self.operator, &key);
                self.pending.insert(key, None);
            } else {
                let encoded = rows.row(row).as_ref().to_vec();
                context.writer.put_state(self.operator, &key, &encoded);
                self.pending_bytes += allocation_bytes(encoded.len());
                self.pending.insert(key, Some(encoded));
                picks.push((1, row));
                retract.push(false);
            }
        }
        let parser = self.rows.parser();
        let previous = self.rows.convert_rows(previous_rows.iter().map(|r| parser.parse(r)))?;
        let previous = RecordBatch::try_new(self.schema.clone(), previous)?;
        let batch = interleave_record_batch(&[&previous, &current], &picks)?;
        Ok(Changes { batch, retract: Some(retract.into()) })
    }
}
