//! An append-only view's results as a log of Arrow batches (the `LOG` namespace of
//! [`super::state`]): each epoch's rows are stored as they come out of the pipeline, in Arrow IPC
//! stream encoding, and read back batch by batch. Nothing is encoded or coalesced per row.

use std::io::Cursor;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;

use super::changes::Changes;
use super::state::EpochWriter;
use crate::{EngineError, Result};

/// Rows gathered into one stored batch: smaller outputs of one epoch are concatenated up to this.
const LOG_BATCH_ROWS: usize = 8192;

/// The batch with the view's schema (the pipeline's field names may differ from the view's).
fn as_view_batch(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), batch.columns().to_vec(), &options)?)
}

fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// Writes one epoch's result rows as log entries of `epoch`; returns how many rows. Every row
/// must be an insert: a retraction means the plan was wrongly taken for append-only.
pub(super) fn append(writer: &mut EpochWriter, schema: &SchemaRef, epoch: u64, sink: &[Changes]) -> Result<i64> {
    let mut seq = 0u32;
    let mut total = 0i64;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    let mut flush = |pending: &mut Vec<RecordBatch>, seq: &mut u32| -> Result<()> {
        let batch = match pending.as_slice() {
            [] => return Ok(()),
            [one] => one.clone(),
            many => arrow::compute::concat_batches(schema, many)?,
        };
        writer.put_log(epoch, *seq, &encode(&batch)?);
        *seq += 1;
        pending.clear();
        Ok(())
    };
    for changes in sink {
        if changes.retract.as_ref().is_some_and(|r| r.true_count() > 0) {
            return Err(EngineError::Internal("an append-only view's pipeline produced a retraction".into()));
        }
        let rows = changes.num_rows();
        if rows == 0 {
            continue;
        }
        total += rows as i64;
        pending.push(as_view_batch(schema, &changes.batch)?);
        pending_rows += rows;
        if pending_rows >= LOG_BATCH_ROWS {
            flush(&mut pending, &mut seq)?;
            pending_rows = 0;
        }
    }
    flush(&mut pending, &mut seq)?;
    Ok(total)
}

/// Decodes log entries into the view's batches.
pub(super) fn decode(schema: &SchemaRef, entries: &[(u64, Vec<u8>)]) -> Result<Vec<(u64, RecordBatch)>> {
    let mut out = Vec::with_capacity(entries.len());
    for (epoch, bytes) in entries {
        decode_entry(schema, bytes, |batch| {
            out.push((*epoch, batch));
            Ok(true)
        })?;
    }
    Ok(out)
}

/// Decodes one log entry into the view's batches, handing each to `each` until it returns
/// false; returns whether it never did.
pub(super) fn decode_entry(schema: &SchemaRef, bytes: &[u8], mut each: impl FnMut(RecordBatch) -> Result<bool>) -> Result<bool> {
    for batch in StreamReader::try_new(Cursor::new(bytes), None)? {
        if !each(as_view_batch(schema, &batch?)?)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::stream::state::StateStore;

    fn batch(schema: &SchemaRef, from: i64, rows: usize) -> RecordBatch {
        let ids = Int64Array::from_iter_values(from..from + rows as i64);
        let names = StringArray::from_iter((0..rows).map(|i| (i % 3 != 0).then(|| format!("n{}", from + i as i64))));
        RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    #[test]
    fn epochs_round_trip_in_order_and_small_outputs_are_gathered() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 1 << 20).unwrap();
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
        // Epoch 1: 300 small batches of 100 rows (30 000 rows: gathered into 8192-row entries
        // and a remainder); epoch 2: one batch; epoch 3: nothing.
        let first: Vec<Changes> = (0..300).map(|i| Changes::inserts(batch(&schema, i * 100, 100))).collect();
        let mut writer = EpochWriter::new(9);
        assert_eq!(append(&mut writer, &schema, 1, &first).unwrap(), 30_000);
        store.commit(writer.batch).unwrap();
        let mut writer = EpochWriter::new(9);
        assert_eq!(append(&mut writer, &schema, 2, &[Changes::inserts(batch(&schema, 30_000, 5))]).unwrap(), 5);
        assert_eq!(append(&mut writer, &schema, 3, &[]).unwrap(), 0);
        store.commit(writer.batch).unwrap();

        let (_, entries) = store.scan_log(9, 1, 3).unwrap();
        // Epoch 1 is written each time 8192 rows are reached (82 batches: 8200 rows): three
        // entries and a remainder of 5400 rows. Epoch 2 is one entry, epoch 3 none.
        let per_epoch: Vec<u64> = entries.iter().map(|(e, _)| *e).collect();
        assert_eq!(per_epoch, vec![1, 1, 1, 1, 2]);
        let decoded = decode(&schema, &entries).unwrap();
        let ids: Vec<i64> = decoded
            .iter()
            .flat_map(|(_, b)| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(ids, (0..30_005).collect::<Vec<i64>>());
        let nulls: usize = decoded.iter().map(|(_, b)| b.column(1).null_count()).sum();
        // Every third row of each batch is NULL: 34 of each 100-row batch, 2 of the 5-row one.
        assert_eq!(nulls, 300 * 34 + 2);
        // Only epoch 2 from the range [2, 2].
        let (_, later) = store.scan_log(9, 2, 2).unwrap();
        assert_eq!(decode(&schema, &later).unwrap().iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 5);
    }

    #[test]
    fn a_retraction_is_refused() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
        let changes = Changes { batch: batch(&schema, 0, 2), retract: Some(BooleanArray::from(vec![false, true])) };
        let mut writer = EpochWriter::new(1);
        assert!(append(&mut writer, &schema, 1, &[changes]).is_err());
    }
}
