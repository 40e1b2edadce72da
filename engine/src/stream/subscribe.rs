//! SUBSCRIBE: a view's changes as an endless stream of rows — the view's columns plus `op`
//! (`insert` or `delete`) and `epoch` (the epoch that committed the change). With a snapshot
//! (the default), the view's rows as of one committed epoch come first, as inserts of that
//! epoch; then the changes of every later epoch, in order. The stream ends only when the client
//! cancels, the view is dropped, or the subscriber falls behind the view's changelog.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use super::changelog::ChangelogReader;
use super::ViewHandle;
use crate::{EngineError, Result};

/// The rows a subscription to `view` produces.
pub fn subscription_schema(view: &ViewHandle) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = view.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for name in ["op", "epoch"] {
        if fields.iter().any(|f| f.name() == name) {
            return Err(EngineError::Sqlstate {
                code: "42701",
                message: format!(
                    "materialized view \"{}\" has a column named \"{name}\", which SUBSCRIBE adds; rename it in the view",
                    view.meta.name
                ),
            });
        }
    }
    fields.push(Field::new("op", DataType::Utf8, false));
    fields.push(Field::new("epoch", DataType::Int64, false));
    Ok(Arc::new(Schema::new(fields)))
}

/// `batch` with each row repeated `|delta|` times, and the op and epoch columns.
fn expand(schema: &SchemaRef, batch: &RecordBatch, deltas: Option<&[i64]>, epoch: u64) -> Result<RecordBatch> {
    let mut indices: Vec<u32> = Vec::with_capacity(batch.num_rows());
    let mut ops: Vec<&str> = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let delta = deltas.map_or(1, |d| d[row]);
        for _ in 0..delta.unsigned_abs() {
            indices.push(row as u32);
            ops.push(if delta > 0 { "insert" } else { "delete" });
        }
    }
    let indices = UInt32Array::from(indices);
    let mut columns: Vec<ArrayRef> =
        batch.columns().iter().map(|c| arrow::compute::take(c.as_ref(), &indices, None)).collect::<Result<_, _>>()?;
    let rows = indices.len();
    columns.push(Arc::new(StringArray::from(ops)));
    columns.push(Arc::new(Int64Array::from(vec![epoch as i64; rows])));
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}

struct Subscription {
    view: Arc<ViewHandle>,
    schema: SchemaRef,
    /// Next epoch whose changes to send.
    next: u64,
    ready: VecDeque<RecordBatch>,
    snapshot: bool,
    /// Keeps the view writing its changelog while this subscription lives.
    _reader: ChangelogReader,
    /// The view's last epoch without a changelog entry when the subscription began: a snapshot
    /// must be at least this recent.
    unlogged: u64,
}

impl Subscription {
    async fn next_batch(&mut self) -> Result<RecordBatch> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Ok(batch);
            }
            if self.snapshot {
                self.snapshot = false;
                let (batches, epoch) = loop {
                    let view = self.view.clone();
                    let (batches, epoch) = tokio::task::spawn_blocking(move || view.snapshot())
                        .await
                        .map_err(|e| EngineError::Internal(format!("snapshot task: {e}")))??;
                    if epoch >= self.unlogged {
                        break (batches, epoch);
                    }
                    // The epoch being committed keeps no changes: snapshot after it.
                    self.view.wait_epoch(self.unlogged).await?;
                };
                for batch in batches {
                    self.ready.push_back(expand(&self.schema, &batch, None, epoch)?);
                }
                self.next = epoch + 1;
                continue;
            }
            let last = self.view.wait_epoch(self.next).await?;
            let view = self.view.clone();
            let from = self.next;
            let changes = tokio::task::spawn_blocking(move || view.changes(from, last))
                .await
                .map_err(|e| EngineError::Internal(format!("changelog task: {e}")))??;
            for (epoch, batch, deltas) in changes {
                let expanded = expand(&self.schema, &batch, Some(&deltas), epoch)?;
                if expanded.num_rows() > 0 {
                    self.ready.push_back(expanded);
                }
            }
            self.next = last + 1;
        }
    }
}

/// Starts a subscription: with `snapshot`, the current rows first.
pub fn subscribe(view: Arc<ViewHandle>, snapshot: bool) -> Result<SendableRecordBatchStream> {
    let schema = subscription_schema(&view)?;
    let (reader, unlogged) = view.changelog.register();
    // Without a snapshot: the changes from the next epoch that keeps them.
    let next = (view.progress().epoch + 1).max(unlogged + 1);
    let state = Subscription { view, schema: schema.clone(), next, ready: VecDeque::new(), snapshot, _reader: reader, unlogged };
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next_batch().await {
            Ok(batch) => Some((Ok(batch), Some(state))),
            // After an error the stream ends.
            Err(error) => Some((Err(DataFusionError::External(Box::new(error))), None)),
        }
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
}
