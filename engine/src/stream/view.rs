//! A materialized view as the engine holds it ([`ViewHandle`]: progress, refresh, FLUSH
//! waits, snapshots and changelog reads) and as a table ([`ViewTableProvider`]: a scan reads
//! its last committed epoch). Its epoch loop is in [`super::epoch`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use streamhouse_catalog::ViewMeta;
use streamhouse_storage::Storage;
use tokio::sync::watch;

pub use super::epoch::{ChangesNeeded, EpochTiming};
use super::epoch::Runtime;
use super::plan::{Sources, StreamPlan};
use super::read_cache::{Collector, ReadCache};
use super::topn::StateResults;
use super::state::{meta_key, Decoder, Encoder, StateStore};
use crate::{EngineError, Result};

/// Rows decoded per batch when a view is read.
pub(super) const READ_BATCH_ROWS: usize = 8192;

/// When a view processes what its source has appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMode {
    /// As rows arrive (epoch by epoch).
    Continuous,
    /// Only on `REFRESH MATERIALIZED VIEW`.
    Manual,
    /// Once per interval (and on `REFRESH`).
    Every(Duration),
}

impl RefreshMode {
    /// `continuous`, `manual` or `every <interval>`.
    pub fn parse(text: &str) -> Result<Self> {
        let lowered = text.trim().to_ascii_lowercase();
        match lowered.as_str() {
            "continuous" => Ok(RefreshMode::Continuous),
            "manual" => Ok(RefreshMode::Manual),
            other => match other.strip_prefix("every") {
                Some(interval) => {
                    let us = crate::sql::duration::parse_duration_us(interval.trim())
                        .map_err(|e| EngineError::InvalidParameter(format!("refresh interval: {e}")))?;
                    if us <= 0 {
                        return Err(EngineError::InvalidParameter("refresh interval must be positive".into()));
                    }
                    Ok(RefreshMode::Every(Duration::from_micros(us as u64)))
                }
                None => Err(EngineError::InvalidParameter(format!(
                    "refresh must be 'continuous', 'manual' or 'every <interval>', not '{text}'"
                ))),
            },
        }
    }
}

/// The format of what a view keeps in the state store, recorded in its progress. A view whose
/// state was written in another format is not started (it must be dropped and created again):
/// 2 = session windows keep only the columns their output needs.
pub const STATE_FORMAT: u8 = 2;

/// Where a view keeps its results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResultStore {
    /// A multiset of rows (`RESULT`), with a changelog of recent epochs.
    #[default]
    Multiset,
    /// An append-only log of batches (`LOG`), which is its changelog too.
    Log,
    /// Its top-N operator's state (see [`super::topn::StateResults`]), with a changelog.
    TopNState,
}

impl ResultStore {
    fn code(self) -> u8 {
        match self {
            ResultStore::Multiset => 0,
            ResultStore::Log => 1,
            ResultStore::TopNState => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self> {
        match code {
            0 => Ok(ResultStore::Multiset),
            1 => Ok(ResultStore::Log),
            2 => Ok(ResultStore::TopNState),
            other => Err(EngineError::Internal(format!("a view's progress names an unknown result store {other}"))),
        }
    }
}

/// What a view has committed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Epochs committed so far (0: none yet).
    pub epoch: u64,
    /// Per source partition, the next offset to read.
    pub offsets: Vec<u64>,
    /// Result rows.
    pub rows: i64,
    /// Wall-clock time of the last commit (ms since the epoch).
    pub committed_ms: i64,
    /// Per source partition, the largest event time read (microseconds).
    pub max_event_us: Vec<Option<i64>>,
    /// The source's watermark: the smallest, over partitions that are not idle, of the largest
    /// event time minus the WATERMARK delay. Never goes back.
    pub watermark_us: Option<i64>,
    /// Rows dropped because their event time was behind the watermark.
    pub late_rows: u64,
    /// The first epoch whose changes the changelog still holds.
    pub changes_from: u64,
    /// Why the view stopped, if it failed.
    pub failed: Option<String>,
    /// Where the results are kept (see [`super::state`]); fixed when the view is created.
    pub results: ResultStore,
    /// [`STATE_FORMAT`] of the state this view wrote (1: written before formats were recorded).
    pub state_format: u8,
}

fn put_optional(out: &mut Encoder, value: Option<i64>) {
    match value {
        Some(v) => {
            out.u8(1);
            out.i64(v);
        }
        None => out.u8(0),
    }
}

fn get_optional(input: &mut Decoder<'_>) -> Result<Option<i64>> {
    Ok(match input.u8()? {
        0 => None,
        _ => Some(input.i64()?),
    })
}

impl Progress {
    pub(super) fn encode(&self, topic_id: u64) -> Vec<u8> {
        let mut out = Encoder::default();
        out.u64(self.epoch);
        out.i64(self.rows);
        out.i64(self.committed_ms);
        out.u64(topic_id);
        out.u64(self.offsets.len() as u64);
        for offset in &self.offsets {
            out.u64(*offset);
        }
        for max in &self.max_event_us {
            put_optional(&mut out, *max);
        }
        put_optional(&mut out, self.watermark_us);
        out.u64(self.late_rows);
        out.u64(self.changes_from);
        out.u8(self.results.code());
        out.u8(self.state_format);
        out.0
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<(Self, u64)> {
        let mut input = Decoder(bytes);
        let epoch = input.u64()?;
        let rows = input.i64()?;
        let committed_ms = input.i64()?;
        let topic_id = input.u64()?;
        let count = input.u64()?;
        let offsets = (0..count).map(|_| input.u64()).collect::<Result<Vec<_>>>()?;
        let max_event_us = (0..count).map(|_| get_optional(&mut input)).collect::<Result<Vec<_>>>()?;
        let watermark_us = get_optional(&mut input)?;
        let late_rows = input.u64()?;
        let changes_from = input.u64()?;
        // Records written before result logs existed end here: their results are a multiset.
        let results = if input.0.is_empty() { ResultStore::Multiset } else { ResultStore::from_code(input.u8()?)? };
        let state_format = if input.0.is_empty() { 1 } else { input.u8()? };
        let progress = Self {
            epoch,
            offsets,
            rows,
            committed_ms,
            max_event_us,
            watermark_us,
            late_rows,
            changes_from,
            failed: None,
            results,
            state_format,
        };
        Ok((progress, topic_id))
    }

    /// Whether every offset has reached its target.
    pub fn covers(&self, targets: &[u64]) -> bool {
        targets.iter().enumerate().all(|(i, t)| self.offsets.get(i).is_some_and(|o| o >= t))
    }
}

/// The offsets of a stored progress record (empty if it cannot be decoded).
pub(crate) fn decode_offsets(bytes: &[u8]) -> Vec<u64> {
    Progress::decode(bytes).map(|(p, _)| p.offsets).unwrap_or_default()
}

/// A view as the engine holds it.
pub struct ViewHandle {
    pub meta: ViewMeta,
    pub schema: SchemaRef,
    /// What the view reads (its progress has one offset per position of these).
    pub source: Sources,
    pub refresh: RefreshMode,
    /// How far (per source offset) the view may read; `None`: as far as there is (continuous).
    allowed: Arc<watch::Sender<Option<Vec<u64>>>>,
    progress: watch::Receiver<Progress>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    store: StateStore,
    /// Readers of the changelog register here (SUBSCRIBE, views over this one).
    pub changelog: super::changelog::ChangelogGate,
    /// How to read the results when a top-N's state holds them.
    state_results: Option<StateResults>,
    /// The node's cache of complete reads.
    read_cache: Arc<ReadCache>,
}

impl std::fmt::Debug for ViewHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewHandle").field("name", &self.meta.name).finish()
    }
}

impl ViewHandle {
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// What the view's offsets must reach to reflect everything its source holds now: what a
    /// FLUSH waits for.
    pub fn source_targets(&self) -> Vec<u64> {
        self.source.targets()
    }

    /// Notified at each commit of this view.
    pub fn watch_progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Lets a view that is not continuous read everything its source holds now, and waits until
    /// it has; a continuous view is only waited for.
    pub async fn refresh(&self) -> Result<()> {
        let targets = self.source_targets();
        if self.refresh != RefreshMode::Continuous {
            self.allowed.send_replace(Some(targets.clone()));
        }
        self.wait_for(&targets).await
    }

    /// Waits until the view has committed everything below `targets`. Fails if the view fails.
    pub async fn wait_for(&self, targets: &[u64]) -> Result<()> {
        let mut progress = self.progress.clone();
        let reached = progress
            // Epoch 1 also emits a global aggregate's first row: a view has one even on an
            // empty source.
            .wait_for(|p| p.failed.is_some() || (p.epoch > 0 && p.covers(targets)))
            .await
            .map_err(|_| EngineError::Internal(format!("materialized view \"{}\" stopped", self.meta.name)))?;
        match &reached.failed {
            Some(message) => Err(view_failed(&self.meta.name, message)),
            None => Ok(()),
        }
    }

    /// Stops the epoch loop (after the epoch in progress, if any).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn row_converter(&self) -> Result<RowConverter> {
        Ok(RowConverter::new(self.schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?)
    }

    /// The changes of the committed epochs `[from, to]`: per epoch with changes, the rows and
    /// their signed counts. Fails if the changelog no longer holds `from`.
    pub fn changes(&self, from: u64, to: u64) -> Result<Vec<(u64, RecordBatch, Vec<i64>)>> {
        let start = self.progress().changes_from;
        if from < start {
            return Err(EngineError::Sqlstate {
                code: "55000",
                message: format!(
                    "the changelog of materialized view \"{}\" no longer holds epoch {from} (it starts at {start}); subscribe again",
                    self.meta.name
                ),
            });
        }
        if self.logs_results() {
            let (_, entries) = self.store.scan_log(self.meta.id, from, to)?;
            let batches = super::result_log::decode(&self.schema, &entries)?;
            return Ok(batches
                .into_iter()
                .map(|(epoch, batch)| {
                    let inserts = vec![1; batch.num_rows()];
                    (epoch, batch, inserts)
                })
                .collect());
        }
        let converter = self.row_converter()?;
        let parser = converter.parser();
        let mut out = Vec::new();
        for (epoch, value) in self.store.changes(self.meta.id, from, to)? {
            let mut input = Decoder(&value);
            let count = input.u64()?;
            let mut rows = Vec::with_capacity(count as usize);
            let mut deltas = Vec::with_capacity(count as usize);
            for _ in 0..count {
                rows.push(input.bytes()?);
                deltas.push(input.i64()?);
            }
            let columns = converter.convert_rows(rows.iter().map(|r| parser.parse(r)))?;
            let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
            out.push((epoch, RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?, deltas));
        }
        Ok(out)
    }

    /// Whether the view's results are an append-only log: its changes are all inserts.
    pub fn logs_results(&self) -> bool {
        self.progress.borrow().results == ResultStore::Log
    }

    /// An append-only view's rows inserted by the committed epochs `[from, to]`, in order.
    pub fn appended(&self, from: u64, to: u64) -> Result<Vec<RecordBatch>> {
        let (_, entries) = self.store.scan_log(self.meta.id, from, to)?;
        Ok(super::result_log::decode(&self.schema, &entries)?.into_iter().map(|(_, batch)| batch).collect())
    }

    /// Waits until the view has committed epoch `epoch`; returns the last committed epoch.
    pub async fn wait_epoch(&self, epoch: u64) -> Result<u64> {
        let mut progress = self.progress.clone();
        let reached = progress
            .wait_for(|p| p.failed.is_some() || p.epoch >= epoch)
            .await
            .map_err(|_| EngineError::Sqlstate { code: "57P01", message: format!("materialized view \"{}\" was dropped", self.meta.name) })?;
        match &reached.failed {
            Some(message) => Err(view_failed(&self.meta.name, message)),
            None => Ok(reached.epoch),
        }
    }

    /// The view's rows and the epoch they are of, from one consistent snapshot.
    pub fn snapshot(&self) -> Result<(Vec<RecordBatch>, u64)> {
        let mut batches = Vec::new();
        let epoch = self.snapshot_each(&mut |batch| {
            batches.push(batch);
            Ok(true)
        })?;
        Ok((batches, epoch))
    }

    /// [`Self::snapshot`] batch by batch (of about [`READ_BATCH_ROWS`] rows) to `emit`, until it
    /// returns false: the rows of the committed epoch from the node's read cache if it holds
    /// them (see [`super::read_cache`]), else from the state store, never all in memory at once
    /// (but for what the cache keeps of a complete read).
    pub fn snapshot_each(&self, emit: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<u64> {
        let epoch = self.progress.borrow().epoch;
        if let Some(batches) = self.read_cache.get(self.meta.id, epoch) {
            for batch in batches.iter() {
                if !emit(batch.clone())? {
                    break;
                }
            }
            return Ok(epoch);
        }
        let mut collector = Collector::new(&self.read_cache);
        let mut complete = true;
        let epoch = self.read_stored(&mut |batch| {
            collector.push(&batch);
            let more = emit(batch)?;
            complete &= more;
            Ok(more)
        })?;
        if complete {
            collector.finish(&self.read_cache, self.meta.id, epoch);
        }
        Ok(epoch)
    }

    /// The committed rows as [`Self::snapshot_each`] reads them from one state store snapshot.
    fn read_stored(&self, emit: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<u64> {
        let results = self.progress.borrow().results;
        match (results, &self.state_results) {
            (ResultStore::Log, _) => {
                let meta = self.store.scan_log_each(self.meta.id, 0, u64::MAX, |_, bytes| super::result_log::decode_entry(&self.schema, bytes, &mut *emit))?;
                return committed_epoch(meta);
            }
            (ResultStore::TopNState, Some(reader)) => return committed_epoch(reader.read(&self.store, emit)?),
            _ => {}
        }
        let converter = self.row_converter()?;
        let parser = converter.parser();
        // Rows of the next batch, one after another in `bytes`, each ending where `ends` says.
        let (mut bytes, mut ends): (Vec<u8>, Vec<usize>) = (Vec::new(), Vec::with_capacity(READ_BATCH_ROWS));
        // Whether the reader wants more batches.
        let mut more = true;
        let mut flush = |bytes: &mut Vec<u8>, ends: &mut Vec<usize>| -> Result<bool> {
            if ends.is_empty() {
                return Ok(true);
            }
            let mut start = 0;
            let rows = ends.iter().map(|&end| parser.parse(&bytes[std::mem::replace(&mut start, end)..end]));
            let columns = converter.convert_rows(rows)?;
            bytes.clear();
            ends.clear();
            emit(RecordBatch::try_new(self.schema.clone(), columns)?)
        };
        let meta = self.store.scan_results(self.meta.id, |row, count| {
            for _ in 0..count {
                bytes.extend_from_slice(row);
                ends.push(bytes.len());
                if ends.len() == READ_BATCH_ROWS {
                    more = flush(&mut bytes, &mut ends)?;
                    if !more {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })?;
        if more {
            flush(&mut bytes, &mut ends)?;
        }
        committed_epoch(meta)
    }
}

/// The epoch of a stored progress record (0: none).
fn committed_epoch(meta: Option<Vec<u8>>) -> Result<u64> {
    Ok(match meta {
        Some(bytes) => Progress::decode(&bytes)?.0.epoch,
        None => 0,
    })
}

pub(crate) fn view_failed(name: &str, message: &str) -> EngineError {
    EngineError::Sqlstate { code: "XX000", message: format!("materialized view \"{name}\" failed: {message}") }
}

/// Starts a view's epoch loop. Its committed progress is loaded from the state store.
pub(crate) fn start(
    meta: ViewMeta,
    mut plan: StreamPlan,
    storage: Storage,
    store: StateStore,
    timing: EpochTiming,
    changes_needed: ChangesNeeded,
    refresh: RefreshMode,
    read_cache: Arc<ReadCache>,
) -> Result<Arc<ViewHandle>> {
    let source = plan.sources.clone();
    let partitions = source.targets().len();
    let progress = match store.get(&meta_key(meta.id))? {
        Some(bytes) => {
            let (progress, tag) = Progress::decode(&bytes)?;
            if tag != source.tag() || progress.offsets.len() != partitions {
                return Err(EngineError::Internal(format!(
                    "state of materialized view \"{}\" belongs to another source",
                    meta.name
                )));
            }
            if progress.state_format != STATE_FORMAT {
                return Err(EngineError::Sqlstate {
                    code: "55000",
                    message: format!(
                        "materialized view \"{}\" holds state in an older format (written by an earlier StreamHouse): drop it and create it again",
                        meta.name
                    ),
                });
            }
            if progress.results == ResultStore::Log && !plan.append_only {
                return Err(EngineError::Internal(format!(
                    "materialized view \"{}\" stores its results as an append-only log, but its plan retracts rows",
                    meta.name
                )));
            }
            if progress.results == ResultStore::TopNState && plan.state_results.is_none() {
                return Err(EngineError::Internal(format!(
                    "materialized view \"{}\" keeps its results in a top-N's state, but its plan has none",
                    meta.name
                )));
            }
            progress
        }
        None => Progress {
            offsets: vec![0; partitions],
            max_event_us: vec![None; partitions],
            changes_from: 1,
            results: if plan.append_only {
                ResultStore::Log
            } else if plan.state_results.is_some() {
                ResultStore::TopNState
            } else {
                ResultStore::Multiset
            },
            state_format: STATE_FORMAT,
            ..Progress::default()
        },
    };
    // A view that is not continuous reads nothing new until asked (REFRESH, its interval, or the
    // backfill at CREATE).
    let allowed = Arc::new(watch::channel(match refresh {
        RefreshMode::Continuous => None,
        _ => Some(progress.offsets.clone()),
    }).0);
    if progress.results != ResultStore::TopNState {
        plan.results_outside_state();
    }
    let state_results = plan.state_results.clone();
    let (progress_sender, progress_receiver) = watch::channel(progress);
    let (stop_sender, stop_receiver) = watch::channel(false);
    let schema = plan.schema.clone();
    let changelog = super::changelog::ChangelogGate::default();
    let runtime = Runtime::new(
        meta.id,
        meta.name.clone(),
        storage,
        store.clone(),
        plan,
        progress_sender,
        timing,
        changes_needed,
        changelog.clone(),
        refresh,
        allowed.clone(),
    )?;
    let task = tokio::spawn(runtime.run(stop_receiver));
    Ok(Arc::new(ViewHandle {
        meta,
        schema,
        source,
        refresh,
        allowed,
        progress: progress_receiver,
        stop: stop_sender,
        task: Mutex::new(Some(task)),
        store,
        changelog,
        state_results,
        read_cache,
    }))
}

/// A view as a table: a scan reads its last committed epoch.
#[derive(Debug)]
pub struct ViewTableProvider {
    pub view: Arc<ViewHandle>,
}

#[async_trait]
impl TableProvider for ViewTableProvider {
    fn schema(&self) -> SchemaRef {
        self.view.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows: Arc<dyn PartitionStream> = Arc::new(ViewRows { view: self.view.clone() });
        Ok(Arc::new(StreamingTableExec::try_new(self.view.schema.clone(), vec![rows], projection, [], false, None)?))
    }
}

/// Batches a scan of a view reads ahead of its consumer.
const SCAN_BATCHES_AHEAD: usize = 2;

/// A scan of a view: its last committed epoch, read from one RocksDB snapshot on the blocking
/// pool and streamed with backpressure (a reader that stops reading stops the scan).
#[derive(Debug)]
struct ViewRows {
    view: Arc<ViewHandle>,
}

impl PartitionStream for ViewRows {
    fn schema(&self) -> &SchemaRef {
        &self.view.schema
    }

    fn execute(&self, _context: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (sender, receiver) = tokio::sync::mpsc::channel::<DfResult<RecordBatch>>(SCAN_BATCHES_AHEAD);
        let view = self.view.clone();
        tokio::task::spawn_blocking(move || {
            // A send fails once the reader is gone: the scan stops there.
            let read = view.snapshot_each(&mut |batch| Ok(sender.blocking_send(Ok(batch)).is_ok()));
            if let Err(error) = read {
                let _ = sender.blocking_send(Err(DataFusionError::External(Box::new(error))));
            }
        });
        let batches = futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) });
        Box::pin(RecordBatchStreamAdapter::new(self.view.schema.clone(), batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_records_round_trip_and_older_records_read_as_older_formats() {
        let progress = Progress {
            epoch: 7,
            offsets: vec![3, 9],
            rows: 12,
            committed_ms: 1_700_000_000_000,
            max_event_us: vec![Some(-5), None],
            watermark_us: Some(42),
            late_rows: 2,
            changes_from: 4,
            failed: None,
            results: ResultStore::Log,
            state_format: STATE_FORMAT,
        };
        let bytes = progress.encode(99);
        assert_eq!(Progress::decode(&bytes).unwrap(), (progress.clone(), 99));
        // A record written before state formats were recorded: format 1, results as written.
        let (older, _) = Progress::decode(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!((older.state_format, older.results), (1, ResultStore::Log));
        // Before result logs: a multiset view.
        let (oldest, _) = Progress::decode(&bytes[..bytes.len() - 2]).unwrap();
        assert_eq!((oldest.state_format, oldest.results, oldest.epoch), (1, ResultStore::Multiset, 7));
        // A view whose top-N holds its results.
        let topn = Progress { results: ResultStore::TopNState, ..progress.clone() };
        assert_eq!(Progress::decode(&topn.encode(99)).unwrap().0.results, ResultStore::TopNState);
        let mut unknown = topn.encode(99);
        let at = unknown.len() - 2;
        unknown[at] = 9;
        assert!(Progress::decode(&unknown).is_err());
        // Cut inside a field: an error, not a panic.
        assert!(Progress::decode(&bytes[..10]).is_err());
    }
}
