//! A view's epoch loop: wait (on the partitions' high-watermark notifications, or the
//! upstream view's commits) until the source has rows past the view's offsets; read them, at
//! most once per epoch interval (back to back while a backlog remains); push them through the
//! pipeline; commit in one RocksDB write batch the operators' state changes, the result changes,
//! the changelog entry and the new progress; publish the progress. A crash between two commits
//! loses nothing: the next start reads the offsets of the last commit and replays the log from
//! there, against the state of that same commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use streamhouse_storage::scan::{scan_partition, PruneBounds, ScanProjection};
use streamhouse_storage::{Storage, TopicLog};
use tokio::sync::watch;

use super::changelog::ChangelogGate;
use super::changes::{Changes, EpochContext, Operator};
use super::plan::{Sources, StreamPlan};
use super::state::{Encoder, EpochWriter, StateStore};
use super::view::{view_failed, Progress, RefreshMode, ResultStore, ViewHandle};
use crate::{EngineError, Result};

/// Most rows an epoch reads from a view's topics, shared out over their partitions (a backfill
/// is many epochs).
const EPOCH_ROWS_MAX: u64 = 256 * 1024;

/// Fewest rows an epoch reads from one partition with rows waiting, however many partitions
/// share [`EPOCH_ROWS_MAX`] (up to 256 partitions get their share).
const EPOCH_PARTITION_ROWS_MIN: u64 = 1024;

/// Input batches are cut to at most this many rows, so that an epoch reaching the view's
/// memory bound stops within this many rows of it.
const INPUT_BATCH_ROWS_MAX: usize = 8192;

/// Epochs of changes kept in a view's changelog for subscribers (views over the view keep
/// whatever they have not read yet on top).
const CHANGELOG_EPOCHS: u64 = 10_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Timing of the epoch loop.
#[derive(Debug, Clone, Copy)]
pub struct EpochTiming {
    pub epoch_interval: Duration,
    /// A source partition with nothing new for this long no longer holds the watermark back.
    pub idle_timeout: Duration,
}

/// A source's event-time declaration: the column (among the user columns) and the delay.
#[derive(Debug, Clone, Copy)]
struct WatermarkSource {
    column: usize,
    delay_us: i64,
}

impl WatermarkSource {
    fn of(topic: &TopicLog) -> Option<Self> {
        let spec = topic.meta().watermark.as_ref()?;
        Some(Self { column: topic.event_time_column()?, delay_us: spec.delay_us })
    }

    /// The watermark the partitions allow: the minimum over partitions that are not idle of
    /// their largest event time minus the delay (over every partition that has events, when
    /// all are idle). It stays where it was while a live partition has no event yet, and it
    /// never goes back.
    fn combine(&self, max_event_us: &[Option<i64>], idle: &[bool], previous: Option<i64>) -> Option<i64> {
        let all_idle = idle.iter().all(|i| *i);
        let mut lowest: Option<i64> = None;
        for (max, idle) in max_event_us.iter().zip(idle) {
            let bound = match (max, *idle) {
                (Some(max), false) => max.saturating_sub(self.delay_us),
                (None, false) => return previous,
                (Some(max), true) if all_idle => max.saturating_sub(self.delay_us),
                (_, true) => continue,
            };
            lowest = Some(lowest.map_or(bound, |l| l.min(bound)));
        }
        match (previous, lowest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

pub(super) struct Runtime {
    view: u64,
    name: String,
    storage: Storage,
    store: StateStore,
    results: RowConverter,
    /// Taken while an epoch runs on the blocking pool.
    plan: Option<StreamPlan>,
    progress: watch::Sender<Progress>,
    timing: EpochTiming,
    /// The oldest epoch of this view's changes that a view over it has not read yet.
    changes_needed: ChangesNeeded,
    /// Who reads this view's changelog now (decides whether an epoch writes it).
    changelog: ChangelogGate,
    refresh: RefreshMode,
    allowed: Arc<watch::Sender<Option<Vec<u64>>>>,
}

/// Answers the oldest epoch of a view's changelog its readers still need (`u64::MAX`: none).
pub type ChangesNeeded = Arc<dyn Fn() -> u64 + Send + Sync>;

impl Runtime {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        view: u64,
        name: String,
        storage: Storage,
        store: StateStore,
        plan: StreamPlan,
        progress: watch::Sender<Progress>,
        timing: EpochTiming,
        changes_needed: ChangesNeeded,
        changelog: ChangelogGate,
        refresh: RefreshMode,
        allowed: Arc<watch::Sender<Option<Vec<u64>>>>,
    ) -> Result<Self> {
        let results =
            RowConverter::new(plan.schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        Ok(Self { view, name, storage, store, results, plan: Some(plan), progress, timing, changes_needed, changelog, refresh, allowed })
    }

    /// The input of the next epoch: the rows read, where they end, and whether its changes go to
    /// the changelog (decided now: see [`ChangelogGate`]).
    fn epoch_input(&self, batches: Vec<InputBatch>, offsets: Vec<u64>, idle: Vec<bool>, watermark: Option<WatermarkSource>, committed: Progress) -> EpochInput {
        let keep_changes_from = (self.changes_needed)();
        let log_changes = committed.results == ResultStore::Log || self.changelog.logs(committed.epoch + 1, keep_changes_from != u64::MAX);
        EpochInput { batches, offsets, idle, watermark, committed, keep_changes_from, log_changes }
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if let Err(error) = self.follow(&mut stop).await {
            tracing::error!(view = %self.name, %error, "materialized view failed");
            let message = error.to_string();
            self.progress.send_modify(|p| p.failed = Some(message));
        }
    }

    /// For `every <interval>`: at each interval, allows everything the source holds then.
    /// Returns when the next interval is due.
    fn periodic_refresh(&self, due: &mut Option<Instant>, targets: impl FnOnce() -> Vec<u64>) -> Option<Instant> {
        let RefreshMode::Every(interval) = self.refresh else { return None };
        let now = Instant::now();
        let next = due.get_or_insert(now + interval);
        if now >= *next {
            self.allowed.send_replace(Some(targets()));
            *next = now + interval;
        }
        Some(*next)
    }

    /// `highs` capped by what the view may read.
    fn cap(&self, mut highs: Vec<u64>) -> Vec<u64> {
        if let Some(allowed) = self.allowed.borrow().as_ref() {
            for (high, allowed) in highs.iter_mut().zip(allowed) {
                *high = (*high).min(*allowed);
            }
        }
        highs
    }

    async fn follow(&mut self, stop: &mut watch::Receiver<bool>) -> Result<()> {
        let sources = self.plan.as_ref().map(|p| p.sources.clone()).ok_or_else(|| EngineError::Internal("view has no plan".into()))?;
        match sources {
            Sources::Topics(topics) => self.follow_topics(topics, stop).await,
            Sources::View(view) => self.follow_view(view, stop).await,
        }
    }

    /// Follows another view's changelog: its snapshot first (offset 0), then the changes of
    /// each epoch it commits (the offset is the next upstream epoch to read).
    async fn follow_view(&mut self, upstream: Arc<ViewHandle>, stop: &mut watch::Receiver<bool>) -> Result<()> {
        // Every upstream epoch after `unlogged` keeps its changes for us while we follow.
        let (_reader, unlogged) = upstream.changelog.register();
        let mut notifications = upstream.watch_progress();
        let mut allowed = self.allowed.subscribe();
        let mut next_epoch = Instant::now();
        let mut refresh_due = None;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            allowed.borrow_and_update();
            let mut latest = notifications.borrow_and_update().clone();
            if let Some(message) = &latest.failed {
                return Err(view_failed(&upstream.meta.name, message));
            }
            let next_refresh = self.periodic_refresh(&mut refresh_due, || vec![upstream.progress().epoch + 1]);
            // The offset is the next upstream epoch to read: at most the allowed one minus one.
            latest.epoch = self.cap(vec![latest.epoch + 1])[0].saturating_sub(1);
            let committed = self.progress.borrow().clone();
            let next = committed.offsets[0];
            let may_snapshot = self.allowed.borrow().as_ref().is_none_or(|a| a[0] > 0);
            let pending = committed.epoch == 0 || (next == 0 && may_snapshot) || (next > 0 && latest.epoch >= next);
            if !pending {
                tokio::select! {
                    changed = notifications.changed() => {
                        if changed.is_err() {
                            return Err(EngineError::Internal(format!("source view \"{}\" stopped", upstream.meta.name)));
                        }
                    }
                    _ = allowed.changed() => {}
                    _ = async { tokio::time::sleep_until(next_refresh.unwrap_or_else(Instant::now).into()).await }, if next_refresh.is_some() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if !pace(&mut next_epoch, self.timing.epoch_interval, stop).await {
                continue;
            }
            // Epochs the upstream view committed while this one waited for its turn belong to it.
            latest.epoch = latest.epoch.max(self.cap(vec![upstream.progress().epoch + 1])[0].saturating_sub(1));
            let source = upstream.clone();
            // An upstream view's epochs are read whole: an epoch over them never ends early.
            let (batches, following) = tokio::task::spawn_blocking(move || -> Result<(Vec<InputBatch>, u64)> {
                let whole = |changes| InputBatch { position: 0, changes, start: None };
                if next == 0 && !may_snapshot {
                    Ok((Vec::new(), 0))
                } else if next == 0 {
                    let (batches, epoch) = source.snapshot()?;
                    Ok((batches.into_iter().map(|b| whole(Changes::inserts(b))).collect(), epoch + 1))
                } else {
                    let mut out = Vec::new();
                    if source.logs_results() {
                        out.extend(source.appended(next, latest.epoch)?.into_iter().map(|batch| whole(Changes::inserts(batch))));
                    } else {
                        for (_, batch, counts) in source.changes(next, latest.epoch)? {
                            out.push(whole(Changes::from_counts(&batch, &counts)?));
                        }
                    }
                    Ok((out, latest.epoch + 1))
                }
            })
            .await
            .map_err(|e| EngineError::Internal(format!("changelog task: {e}")))??;
            if next == 0 && following > 0 && following <= unlogged {
                // A snapshot older than the upstream's last epoch without a changelog entry:
                // the changes after it are gone. Snapshot again once that epoch is committed.
                upstream.wait_epoch(unlogged).await?;
                continue;
            }
            let step = self.epoch_input(batches, vec![following], vec![false], None, committed);
            self.run_epoch(step).await?;
        }
    }

    /// Follows the logs of one or more topics (the partitions of each in turn are the view's
    /// positions). Only a view of one topic has a watermark.
    async fn follow_topics(&mut self, topics: Vec<Arc<TopicLog>>, stop: &mut watch::Receiver<bool>) -> Result<()> {
        let located: Vec<(&Arc<TopicLog>, &streamhouse_storage::PartitionLog)> =
            topics.iter().flat_map(|t| (0..t.partition_count()).filter_map(move |p| t.partition(p).map(|l| (t, l)))).collect();
        let partitions: Vec<&streamhouse_storage::PartitionLog> = located.iter().map(|(_, p)| *p).collect();
        let mut receivers: Vec<watch::Receiver<u64>> = partitions.iter().map(|p| p.subscribe()).collect();
        let watermark = match topics.as_slice() {
            [topic] => WatermarkSource::of(topic),
            _ => None,
        };
        let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
        let mut last_active: Vec<Instant> = vec![Instant::now(); partitions.len()];
        let mut next_epoch = Instant::now();
        let mut allowed = self.allowed.subscribe();
        let mut refresh_due = None;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            for receiver in &mut receivers {
                receiver.borrow_and_update();
            }
            allowed.borrow_and_update();
            let next_refresh =
                self.periodic_refresh(&mut refresh_due, || partitions.iter().map(|p| p.high_watermark()).collect());
            let highs: Vec<u64> = self.cap(partitions.iter().map(|p| p.high_watermark()).collect());
            let committed = self.progress.borrow().clone();
            let now = Instant::now();
            for (index, active) in last_active.iter_mut().enumerate() {
                if highs[index] > committed.offsets[index] {
                    *active = now;
                }
            }
            let idle: Vec<bool> = last_active.iter().map(|a| now.duration_since(*a) >= self.timing.idle_timeout).collect();
            // A partition going idle may let the watermark advance (and close windows) with no
            // new rows at all.
            let advances = watermark.is_some_and(|w| w.combine(&committed.max_event_us, &idle, committed.watermark_us) != committed.watermark_us);
            let pending = committed.epoch == 0 || advances || highs.iter().zip(&committed.offsets).any(|(h, o)| h > o);
            if !pending {
                let next_idle = match watermark {
                    Some(_) => last_active.iter().zip(&idle).filter(|(_, i)| !**i).map(|(a, _)| *a + self.timing.idle_timeout).min(),
                    None => None,
                };
                let changed = futures::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
                tokio::select! {
                    (result, _, _) = changed => {
                        if result.is_err() {
                            return Err(EngineError::Internal(format!("a source topic of {names:?} went away")));
                        }
                    }
                    _ = async { tokio::time::sleep_until(next_idle.unwrap_or(now).into()).await }, if next_idle.is_some() => {}
                    _ = allowed.changed() => {}
                    _ = async { tokio::time::sleep_until(next_refresh.unwrap_or(now).into()).await }, if next_refresh.is_some() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if !pace(&mut next_epoch, self.timing.epoch_interval, stop).await {
                continue;
            }
            // Rows acknowledged while the epoch waited for its turn belong to it too (reading
            // only what was there before the wait would hold them back one more interval).
            let highs: Vec<u64> = self.cap(partitions.iter().map(|p| p.high_watermark()).collect());
            let mut reads = Vec::new();
            let mut offsets = committed.offsets.clone();
            let mut behind = false;
            let waiting = highs.iter().zip(&offsets).filter(|(h, o)| h > o).count() as u64;
            let per_partition = (EPOCH_ROWS_MAX / waiting.max(1)).max(EPOCH_PARTITION_ROWS_MIN);
            for (index, (topic, partition)) in located.iter().enumerate() {
                let low = partition.low_watermark();
                if offsets[index] < low {
                    tracing::warn!(view = %self.name, partition = index, from = offsets[index], to = low,
                        "rows the view had not read were deleted by retention; skipping them");
                    offsets[index] = low;
                }
                let from = offsets[index];
                if from >= highs[index] {
                    continue;
                }
                let to = highs[index].min(from + per_partition);
                behind |= to < highs[index];
                let batches = read_range(&self.storage, topic, partition.index(), from, to).await?;
                reads.push(batches.into_iter().map(move |(start, b)| InputBatch { position: index, changes: Changes::inserts(b), start: Some(start) }));
                offsets[index] = to;
            }
            let step = self.epoch_input(interleave(reads), offsets, idle, watermark, committed);
            behind |= self.run_epoch(step).await?;
            if behind {
                // A backlog (a backfill): the next epoch starts at once. Pacing only batches
                // up rows that trickle in.
                next_epoch = Instant::now();
            }
        }
    }

    /// Processes one epoch's input and commits it. Returns whether it ended early (at the
    /// view's memory bound), leaving input for the next epoch.
    async fn run_epoch(&mut self, input: EpochInput) -> Result<bool> {
        let mut plan = self.plan.take().ok_or_else(|| EngineError::Internal("view has no plan".into()))?;
        let store = self.store.clone();
        let view = self.view;
        let results = std::mem::replace(&mut self.results, RowConverter::new(vec![])?);
        let topic_id = plan.sources.tag();
        let (plan, results, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = process_epoch(&mut plan, &results, &store, view, input, topic_id);
            (plan, results, outcome)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("epoch task: {e}")))?;
        self.plan = Some(plan);
        self.results = results;
        let (progress, ended_early) = outcome?;
        self.progress.send_replace(progress);
        Ok(ended_early)
    }
}

/// Waits until the next epoch may start (epochs start at most once per interval) and sets when
/// the one after may. Returns false if a stop came first.
async fn pace(next_epoch: &mut Instant, interval: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if Instant::now() < *next_epoch {
        tokio::select! {
            _ = tokio::time::sleep_until((*next_epoch).into()) => {}
            _ = stop.changed() => return false,
        }
    }
    *next_epoch = Instant::now() + interval;
    true
}

/// Pushes changes through `operators[start..]`, collecting what leaves the last one.
fn push(
    operators: &mut [Box<dyn Operator>],
    changes: Changes,
    context: &mut EpochContext<'_>,
    sink: &mut Vec<Changes>,
) -> Result<()> {
    match operators.split_first_mut() {
        None => {
            sink.push(changes);
            Ok(())
        }
        Some((first, rest)) => {
            for output in first.process(changes, context)? {
                push(rest, output, context, sink)?;
            }
            Ok(())
        }
    }
}

/// Pushes a branch's changes through its remaining operators, then through the operators
/// every branch shares.
fn push_branch(
    branch: &mut [Box<dyn Operator>],
    shared: &mut [Box<dyn Operator>],
    changes: Changes,
    context: &mut EpochContext<'_>,
    sink: &mut Vec<Changes>,
) -> Result<()> {
    let mut out = Vec::new();
    push(branch, changes, context, &mut out)?;
    for changes in out {
        push(shared, changes, context, sink)?;
    }
    Ok(())
}

/// One batch of an epoch's input.
struct InputBatch {
    /// The source partition it came from (the view's position).
    position: usize,
    changes: Changes,
    /// A topic's rows: the offset of the first (where the next epoch starts if this one ends
    /// before the batch). `None`: an upstream view's changes, which an epoch takes whole.
    start: Option<u64>,
}

/// The partitions' batches taken in turn from each partition: an epoch that ends early has
/// read some of each.
fn interleave(reads: Vec<impl Iterator<Item = InputBatch>>) -> Vec<InputBatch> {
    let mut reads: Vec<std::collections::VecDeque<InputBatch>> = reads.into_iter().map(|batches| batches.collect()).collect();
    let total = reads.iter().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for read in &mut reads {
            out.extend(read.pop_front());
        }
    }
    out
}

/// What one epoch reads: rows per source partition, where it ends, and the watermark inputs.
struct EpochInput {
    batches: Vec<InputBatch>,
    offsets: Vec<u64>,
    idle: Vec<bool>,
    watermark: Option<WatermarkSource>,
    committed: Progress,
    /// The oldest epoch of changes a reader of this view still needs.
    keep_changes_from: u64,
    /// Whether the epoch's changes go to the changelog.
    log_changes: bool,
}

fn process_epoch(
    plan: &mut StreamPlan,
    results: &RowConverter,
    store: &StateStore,
    view: u64,
    input: EpochInput,
    topic_id: u64,
) -> Result<(Progress, bool)> {
    let EpochInput { batches, mut offsets, idle, watermark, committed, keep_changes_from, log_changes } = input;
    // Only topic rows can be left for the next epoch (an upstream view's epochs are taken whole).
    let splittable = batches.iter().all(|b| b.start.is_some());
    let mut ended_early = false;
    let mut writer = EpochWriter::with_capacity(view, plan.epoch_batch_bytes);
    let mut sink = Vec::new();
    let mut max_event_us = committed.max_event_us.clone();
    let mut late_rows = committed.late_rows;
    let new_watermark;
    let rows_delta;
    {
        let mut context =
            EpochContext { store, writer: &mut writer, watermark: committed.watermark_us, log_changes, rows_delta: 0 };
        let positions = plan.sources.positions();
        let StreamPlan { branches, operators, state_bytes_max, .. } = plan;
        let state_bytes_max = *state_bytes_max;
        for branch in branches.iter_mut() {
            if let Some(keyed) = branch.keyed.as_mut() {
                keyed.begin_epoch();
            }
        }
        if committed.epoch == 0 {
            for branch in branches.iter_mut() {
                for index in 0..branch.operators.len() {
                    for changes in branch.operators[index].initial()? {
                        push_branch(&mut branch.operators[index + 1..], operators, changes, &mut context, &mut sink)?;
                    }
                }
            }
            for index in 0..operators.len() {
                for changes in operators[index].initial()? {
                    push(&mut operators[index + 1..], changes, &mut context, &mut sink)?;
                }
            }
        }
        let mut batches = batches.into_iter();
        // The output so far: its bytes, counted up to `sink[sink_counted]`.
        let (mut sink_bytes, mut sink_counted) = (0, 0);
        while let Some(InputBatch { position, changes, .. }) = batches.next() {
            let Changes { batch, retract } = changes;
            let batch = match watermark {
                Some(source) => {
                    let times = batch.column(source.column).as_primitive::<TimestampMicrosecondType>();
                    if let Some(max) = arrow::compute::max(times) {
                        let slot = &mut max_event_us[position];
                        *slot = Some(slot.map_or(max, |m| m.max(max)));
                    }
                    match committed.watermark_us {
                        // Rows behind the watermark are late: dropped and counted. A NULL event
                        // time is never late.
                        Some(mark) => {
                            let keep: BooleanArray = times.iter().map(|t| Some(t.is_none_or(|t| t >= mark))).collect();
                            late_rows += keep.false_count() as u64;
                            filter_record_batch(&batch, &keep)?
                        }
                        None => batch,
                    }
                }
                None => batch,
            };
            let topic_index = positions.get(position).map_or(0, |p| p.0);
            // Every branch reading this topic gets the rows (a topic may appear in several).
            for branch in branches.iter_mut().filter(|b| b.topic_index == topic_index) {
                let Changes { batch, retract } = match branch.keyed.as_mut() {
                    Some(keyed) => keyed.apply(&batch, &mut context)?,
                    None => Changes { batch: batch.clone(), retract: retract.clone() },
                };
                let shaped = branch.source.shape(&batch)?;
                if shaped.num_rows() > 0 {
                    // Late-row filtering applies to append-only topics, whose rows are all
                    // inserts (a keyed table has no watermark).
                    let changes = Changes { batch: shaped, retract };
                    push_branch(&mut branch.operators, operators, changes, &mut context, &mut sink)?;
                }
            }
            // At the view's memory bound the epoch ends here; the partitions' remaining rows
            // are the next epoch's.
            let remaining = batches.as_slice();
            if splittable && !remaining.is_empty() {
                sink_bytes += sink[sink_counted..].iter().map(|c| slice_bytes(&c.batch)).sum::<usize>();
                sink_counted = sink.len();
                let held = StreamPlan::memory_bytes_of(branches, operators) + context.writer.batch.size_in_bytes() + sink_bytes;
                if held > state_bytes_max {
                    tracing::debug!(view, held, bound = state_bytes_max, "epoch ends early at the view's memory bound");
                    for rest in remaining {
                        if let Some(start) = rest.start {
                            offsets[rest.position] = offsets[rest.position].min(start);
                        }
                    }
                    ended_early = true;
                    break;
                }
            }
        }
        new_watermark = watermark.and_then(|w| w.combine(&max_event_us, &idle, committed.watermark_us));
        context.watermark = new_watermark;
        for branch in branches.iter_mut() {
            for index in 0..branch.operators.len() {
                for changes in branch.operators[index].finish_epoch(&mut context)? {
                    push_branch(&mut branch.operators[index + 1..], operators, changes, &mut context, &mut sink)?;
                }
            }
        }
        for index in 0..operators.len() {
            let output = operators[index].finish_epoch(&mut context)?;
            for changes in output {
                push(&mut operators[index + 1..], changes, &mut context, &mut sink)?;
            }
        }
        rows_delta = context.rows_delta;
    }
    let epoch = committed.epoch + 1;
    let (rows, changes_from) = match committed.results {
        // The log is the changelog too: nothing to trim.
        ResultStore::Log => {
            (committed.rows + super::result_log::append(&mut writer, &plan.schema, epoch, &sink)?, committed.changes_from)
        }
        ResultStore::Multiset => write_result_changes(&mut writer, results, &sink, &committed, epoch, keep_changes_from, log_changes)?,
        // The top-N wrote the results as its state and counted them; the sink holds the
        // changes only if they are logged.
        ResultStore::TopNState => {
            let (_, changes_from) = write_result_changes(&mut writer, results, &sink, &committed, epoch, keep_changes_from, log_changes)?;
            (committed.rows + rows_delta, changes_from)
        }
    };
    let progress = Progress {
        epoch,
        changes_from,
        offsets,
        rows,
        committed_ms: now_ms(),
        max_event_us,
        watermark_us: new_watermark,
        late_rows,
        failed: None,
        results: committed.results,
        state_format: committed.state_format,
    };
    writer.put_meta(&progress.encode(topic_id));
    plan.epoch_batch_bytes = writer.batch.size_in_bytes();
    store.commit(writer.batch)?;
    if plan.memory_bytes() > plan.state_bytes_max / 2 {
        plan.drop_caches();
    }
    Ok((progress, ended_early))
}

/// Bytes of a batch's rows (a slice counts its share of its buffers, not their whole size).
fn slice_bytes(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or_else(|_| c.get_array_memory_size())).sum()
}

/// Writes an epoch's result changes to a view whose results are a multiset (or a top-N's state):
/// coalesced per row, the non-zero ones added to the multiset (if it is one) and, with
/// `log_changes`, kept as the epoch's changelog entry; trims the changelog. Returns the new row
/// count (as the changes count it) and the first epoch the changelog holds.
fn write_result_changes(
    writer: &mut EpochWriter,
    results: &RowConverter,
    sink: &[Changes],
    committed: &Progress,
    epoch: u64,
    keep_changes_from: u64,
    log_changes: bool,
) -> Result<(i64, u64)> {
    let multiset = committed.results == ResultStore::Multiset;
    if !log_changes {
        // Nobody reads the changelog: each change goes to the multiset as it comes (the merge
        // operator adds them up, no coalescing needed), and the changelog is emptied.
        let mut rows = committed.rows;
        // (A top-N whose state holds the results emits no changes in such an epoch.)
        if multiset {
            for changes in sink {
                let encoded = results.convert_columns(changes.batch.columns())?;
                for row in 0..changes.num_rows() {
                    let sign = changes.sign(row);
                    writer.add_result(encoded.row(row).as_ref(), sign);
                    rows += sign;
                }
            }
        }
        if committed.changes_from <= committed.epoch {
            writer.trim_changes(epoch + 1);
        }
        return Ok((rows, epoch + 1));
    }
    let mut deltas: HashMap<Vec<u8>, i64, foldhash::fast::RandomState> = HashMap::default();
    for changes in sink {
        let rows = results.convert_columns(changes.batch.columns())?;
        for row in 0..changes.num_rows() {
            *deltas.entry(rows.row(row).as_ref().to_vec()).or_insert(0) += changes.sign(row);
        }
    }
    let mut rows = committed.rows;
    let mut changelog = Encoder::default();
    // Retractions first, then insertions, each in row order: the changelog reads naturally.
    let mut deltas: Vec<(Vec<u8>, i64)> = deltas.into_iter().filter(|(_, d)| *d != 0).collect();
    deltas.sort_unstable_by(|a, b| (a.1 > 0, &a.0).cmp(&(b.1 > 0, &b.0)));
    let changed = deltas.len();
    changelog.u64(changed as u64);
    for (row, delta) in &deltas {
        if multiset {
            writer.add_result(row, *delta);
        }
        rows += delta;
        changelog.bytes(row);
        changelog.i64(*delta);
    }
    if changed > 0 {
        writer.put_changes(epoch, &changelog.0);
    }
    let changes_from = epoch.saturating_sub(CHANGELOG_EPOCHS).min(keep_changes_from).max(committed.changes_from);
    if changes_from > committed.changes_from {
        writer.trim_changes(changes_from);
    }
    Ok((rows, changes_from))
}

/// Rows `[from, to)` of one partition, in the topic's full schema, in batches of at most
/// [`INPUT_BATCH_ROWS_MAX`] rows, each with the offset of its first row.
async fn read_range(storage: &Storage, topic: &Arc<TopicLog>, partition: u32, from: u64, to: u64) -> Result<Vec<(u64, RecordBatch)>> {
    let snapshot = storage.snapshot_from(topic, partition, from)?;
    let projection = ScanProjection::new(topic, None)?;
    let offset_column = topic.schema().fields().len() + 1;
    let bounds = PruneBounds { offset: Some((from, to - 1)), ..PruneBounds::default() };
    let mut receiver = scan_partition(storage, topic.clone(), snapshot, projection, bounds);
    let mut batches = Vec::new();
    while let Some(batch) = receiver.recv().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        // Offsets within a batch ascend; they are dense unless compaction left gaps.
        let offsets = batch.column(offset_column).as_primitive::<Int64Type>();
        let rows = batch.num_rows();
        let first = offsets.value(0) as u64;
        let last = offsets.value(rows - 1) as u64;
        let (start, end) = if last - first + 1 == rows as u64 {
            (from.saturating_sub(first).min(rows as u64) as usize, to.saturating_sub(first).min(rows as u64) as usize)
        } else {
            (offsets.values().partition_point(|&o| (o as u64) < from), offsets.values().partition_point(|&o| (o as u64) < to))
        };
        for slice_start in (start..end).step_by(INPUT_BATCH_ROWS_MAX) {
            let len = INPUT_BATCH_ROWS_MAX.min(end - slice_start);
            batches.push((offsets.value(slice_start) as u64, batch.slice(slice_start, len)));
        }
        if last + 1 >= to {
            break;
        }
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::{interleave, Changes, InputBatch, WatermarkSource};

    #[test]
    fn partitions_are_read_in_turn_each_in_order() {
        let batch = |position: usize, start: u64| {
            let column = arrow::array::Int64Array::from(vec![start as i64]);
            let batch = arrow::array::RecordBatch::try_from_iter([("x", std::sync::Arc::new(column) as arrow::array::ArrayRef)]).unwrap();
            InputBatch { position, changes: Changes::inserts(batch), start: Some(start) }
        };
        let reads = vec![
            vec![batch(0, 0), batch(0, 10), batch(0, 20)].into_iter(),
            vec![].into_iter(),
            vec![batch(2, 5)].into_iter(),
        ];
        let order: Vec<(usize, Option<u64>)> = interleave(reads).iter().map(|b| (b.position, b.start)).collect();
        assert_eq!(order, vec![(0, Some(0)), (2, Some(5)), (0, Some(10)), (0, Some(20))]);
    }

    #[test]
    fn watermark_is_the_minimum_over_live_partitions_and_never_goes_back() {
        let source = WatermarkSource { column: 0, delay_us: 10 };
        // Both live: the slower partition decides.
        assert_eq!(source.combine(&[Some(100), Some(50)], &[false, false], None), Some(40));
        // A live partition without events holds it where it was.
        assert_eq!(source.combine(&[Some(100), None], &[false, false], Some(20)), Some(20));
        assert_eq!(source.combine(&[Some(100), None], &[false, false], None), None);
        // An idle partition no longer counts.
        assert_eq!(source.combine(&[Some(100), None], &[false, true], None), Some(90));
        assert_eq!(source.combine(&[Some(100), Some(50)], &[false, true], Some(40)), Some(90));
        // All idle: every partition with events counts.
        assert_eq!(source.combine(&[Some(100), None], &[true, true], None), Some(90));
        assert_eq!(source.combine(&[Some(100), Some(50)], &[true, true], None), Some(40));
        // Never backwards.
        assert_eq!(source.combine(&[Some(30), Some(50)], &[false, false], Some(40)), Some(40));
    }
}
