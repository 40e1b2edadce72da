//! Write combining: small writes to a topic that arrive together share one encoding and one WAL
//! entry per partition.
//!
//! A write of fewer than [`COMBINED_WRITE_ROWS_MAX`] rows (validated and cut into per-partition
//! pieces by its writer) waits in its topic's [`Combiner`]. One flusher task per topic, started
//! by the first write to find none running, takes the writes waiting (up to
//! [`COMBINED_ROWS_MAX`] rows, in arrival order), concatenates each partition's rows, encodes
//! them once and hands them to the WAL as one record, then takes the next group while the WAL
//! commits this one. When the record's fsync is done, each write is answered with the offsets
//! of its own rows, which are contiguous in each partition.
//!
//! Each write stays atomic: it lies whole in one WAL record, which is replayed whole or not at
//! all. A write that fails in the group's encoding or hand-over fails with every write of the
//! group, and none of them is in the log. A writer that goes away while its write waits does not
//! take the write back: like a write already handed to the WAL, it may still be committed.
//!
//! With many concurrent writers of small statements, encoding 128 rows at a time cost twice as
//! much per row as encoding 8192 (docs/benchmarks.md), and each statement was a WAL entry, a
//! tail batch and a segment message of its own. A lone writer's write is a group of one: it
//! pays a task hand-off and nothing else.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use tokio::sync::oneshot;

use crate::append::{encode_pieces, Piece, APPEND_CHUNK_ROWS};
use crate::{segment, AppendOutcome, Result, Storage, StorageError, TopicLog};

/// Writes of fewer rows than this are combined; larger ones go on their own. One flusher encodes
/// a topic's groups on one core, while writers on their own encode on every core: 8 writers of
/// 1024-row statements went from 0.70x of encoding them alone to 0.61x when combined (and
/// encoding 1024 rows at a time costs only 1.07x of encoding 8192).
pub(crate) const COMBINED_WRITE_ROWS_MAX: usize = 1024;
/// A group takes writes up to this many rows in all (at least one write).
const COMBINED_ROWS_MAX: usize = APPEND_CHUNK_ROWS;

/// One partition's rows of a waiting write.
type WritePart = (u32, u64);

/// A write waiting to be combined, and where its answer goes.
struct Waiting {
    pieces: Vec<Piece>,
    rows: usize,
    reply: oneshot::Sender<Result<AppendOutcome>>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Waiting>,
    /// Whether a flusher task is running: it takes what waits until nothing does.
    flushing: bool,
}

/// The writes of one topic waiting to be combined.
#[derive(Default)]
pub(crate) struct Combiner {
    state: Mutex<State>,
}

impl Combiner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a write; true if no flusher is running, so the caller must start one.
    fn add(&self, write: Waiting) -> bool {
        let mut state = self.lock();
        state.waiting.push_back(write);
        !std::mem::replace(&mut state.flushing, true)
    }

    /// The next group of writes; `None` once nothing waits, and then the flusher is done (a
    /// write added after that starts a new one).
    fn take_group(&self) -> Option<Vec<Waiting>> {
        let mut state = self.lock();
        let mut group: Vec<Waiting> = Vec::new();
        let mut rows = 0;
        while let Some(next) = state.waiting.front() {
            if !group.is_empty() && rows + next.rows > COMBINED_ROWS_MAX {
                break;
            }
            rows += next.rows;
            group.extend(state.waiting.pop_front());
        }
        if group.is_empty() {
            state.flushing = false;
            return None;
        }
        Some(group)
    }
}

/// A running flusher's hold on its topic's queue. Dropped before [`Self::finished`] (the
/// flusher panicked, or the runtime dropped it at shutdown), it fails the writes still waiting
/// (their reply channels close) and lets the next write start a new flusher, so no write waits
/// for a flusher that is gone.
struct Flushing<'a> {
    combiner: &'a Combiner,
    finished: bool,
}

impl Flushing<'_> {
    /// The flusher found nothing waiting and ended normally ([`Combiner::take_group`] has let
    /// the next write start a new one already).
    fn finished(mut self) {
        self.finished = true;
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.combiner.lock();
            state.waiting.clear();
            state.flushing = false;
        }
    }
}

/// Whether a write of these pieces is combined with others.
pub(crate) fn combines(topic: &TopicLog, pieces: &[Piece]) -> bool {
    let rows: usize = pieces.iter().map(|(_, batch, _)| batch.num_rows()).sum();
    !topic.is_keyed() && rows > 0 && rows < COMBINED_WRITE_ROWS_MAX
}

/// A group's rows as one piece per partition, in partition order, and each write's rows per
/// partition, in the order the pieces hold them.
fn combine(group: &mut [Waiting], schema: &arrow::datatypes::SchemaRef) -> Result<(Vec<Piece>, Vec<Vec<WritePart>>)> {
    let mut by_partition: BTreeMap<u32, Vec<(RecordBatch, bool)>> = BTreeMap::new();
    let mut parts = Vec::with_capacity(group.len());
    for write in group.iter_mut() {
        let mut mine: Vec<WritePart> = Vec::new();
        for (partition, batch, small) in std::mem::take(&mut write.pieces) {
            match mine.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, rows)) => *rows += batch.num_rows() as u64,
                None => mine.push((partition, batch.num_rows() as u64)),
            }
            by_partition.entry(partition).or_default().push((batch, small));
        }
        parts.push(mine);
    }
    let mut pieces = Vec::with_capacity(by_partition.len());
    for (partition, mut batches) in by_partition {
        // One write's piece is kept as it is (a small slice is compacted by its encoding); the
        // concatenation of several is a compact copy already.
        let piece = match batches.len() {
            1 => batches.pop().map(|(batch, small)| (partition, batch, small)),
            _ => {
                let batches: Vec<RecordBatch> = batches.into_iter().map(|(batch, _)| batch).collect();
                Some((partition, segment::concat(schema, &batches)?, false))
            }
        };
        pieces.extend(piece);
    }
    Ok((pieces, parts))
}

/// Each write's placements, from where the group's rows went in each partition.
fn placements(group_outcome: &AppendOutcome, parts: &[Vec<WritePart>]) -> Vec<AppendOutcome> {
    let mut next: HashMap<u32, u64> = HashMap::new();
    for &(partition, base_offset, _) in &group_outcome.placements {
        next.entry(partition).or_insert(base_offset);
    }
    parts
        .iter()
        .map(|mine| {
            let placements = mine
                .iter()
                .map(|&(partition, rows)| {
                    let slot = next.entry(partition).or_default();
                    let base_offset = *slot;
                    *slot += rows;
                    (partition, base_offset, rows)
                })
                .collect();
            AppendOutcome { placements }
        })
        .collect()
}

impl Storage {
    /// Appends a small write combined with others (see the module doc).
    pub(crate) async fn append_combined(&self, topic: &TopicLog, pieces: Vec<Piece>) -> Result<AppendOutcome> {
        let Some(topic) = self.topics_read().get(&topic.id()).cloned() else {
            return Err(StorageError::TopicNotFound(topic.name().to_string()));
        };
        let rows = pieces.iter().map(|(_, batch, _)| batch.num_rows()).sum();
        let (reply, replied) = oneshot::channel();
        if topic.combiner.add(Waiting { pieces, rows, reply }) {
            tokio::spawn(self.clone().flush_combined(topic));
        }
        replied.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// The flusher of a topic's combined writes: hands one group after another to the WAL, and
    /// leaves the answers to a task of each group's own, which waits for its fsync.
    async fn flush_combined(self, topic: Arc<TopicLog>) {
        let flushing = Flushing { combiner: &topic.combiner, finished: false };
        loop {
            // Writers that are ready to run add their writes first, so the group is larger.
            tokio::task::yield_now().await;
            let Some(mut group) = topic.combiner.take_group() else { return flushing.finished() };
            let handed_over = async {
                let (pieces, parts) = combine(&mut group, topic.log_schema())?;
                let encoded = encode_pieces(pieces)?;
                Ok::<_, StorageError>((self.hand_over(&topic, encoded, None).await?, parts))
            }
            .await;
            match handed_over {
                Ok(((outcome, acknowledged), parts)) => {
                    let (storage, topic) = (self.clone(), topic.clone());
                    tokio::spawn(async move {
                        match storage.acknowledged(&topic, acknowledged, outcome).await {
                            Ok(outcome) => {
                                for (write, outcome) in group.into_iter().zip(placements(&outcome, &parts)) {
                                    let _ = write.reply.send(Ok(outcome));
                                }
                            }
                            Err(error) => answer_all(group, &error),
                        }
                    });
                }
                Err(error) => answer_all(group, &error),
            }
        }
    }
}

/// Fails every write of a group with the group's error.
fn answer_all(group: Vec<Waiting>, error: &StorageError) {
    for write in group {
        let _ = write.reply.send(Err(error.shared()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array};

    fn waiting(pieces: Vec<(u32, Vec<i64>)>) -> (Waiting, oneshot::Receiver<Result<AppendOutcome>>) {
        let pieces: Vec<Piece> = pieces
            .into_iter()
            .map(|(partition, values)| {
                let batch = RecordBatch::try_from_iter(vec![("v", Arc::new(Int64Array::from(values)) as ArrayRef)]).unwrap();
                (partition, batch, false)
            })
            .collect();
        let rows = pieces.iter().map(|(_, b, _)| b.num_rows()).sum();
        let (reply, replied) = oneshot::channel();
        (Waiting { pieces, rows, reply }, replied)
    }

    #[test]
    fn a_group_is_one_piece_per_partition_and_each_write_gets_its_own_rows() {
        let (a, _) = waiting(vec![(1, vec![1, 2]), (0, vec![3])]);
        let (b, _) = waiting(vec![(0, vec![4, 5, 6]), (0, vec![7]), (1, vec![8])]);
        let mut group = vec![a, b];
        let schema = group[0].pieces[0].1.schema();
        let (pieces, parts) = combine(&mut group, &schema).unwrap();
        let values = |batch: &RecordBatch| batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
        assert_eq!(pieces.iter().map(|(p, b, _)| (*p, values(b))).collect::<Vec<_>>(), vec![
            (0, vec![3, 4, 5, 6, 7]),
            (1, vec![1, 2, 8]),
        ]);
        assert_eq!(parts, vec![vec![(1, 2), (0, 1)], vec![(0, 4), (1, 1)]]);
        // Partition 0 went to offsets 10.., partition 1 to 20..
        let outcome = AppendOutcome { placements: vec![(0, 10, 5), (1, 20, 3)] };
        let answers: Vec<_> = placements(&outcome, &parts).into_iter().map(|o| o.placements).collect();
        assert_eq!(answers, vec![vec![(1, 20, 2), (0, 10, 1)], vec![(0, 11, 4), (1, 22, 1)]]);
    }

    #[test]
    fn groups_take_writes_in_order_up_to_their_row_bound() {
        let combiner = Combiner::default();
        let (big, _) = waiting(vec![(0, vec![0; COMBINED_ROWS_MAX - 1])]);
        let (small, _) = waiting(vec![(0, vec![1, 2])]);
        let (last, _) = waiting(vec![(0, vec![3])]);
        assert!(combiner.add(big), "the first write starts the flusher");
        assert!(!combiner.add(small), "one flusher at a time");
        assert!(!combiner.add(last));
        let rows = |group: Vec<Waiting>| group.iter().map(|w| w.rows).collect::<Vec<_>>();
        assert_eq!(rows(combiner.take_group().unwrap()), vec![COMBINED_ROWS_MAX - 1]);
        assert_eq!(rows(combiner.take_group().unwrap()), vec![2, 1]);
        assert!(combiner.take_group().is_none());
        let (again, _) = waiting(vec![(0, vec![4])]);
        assert!(combiner.add(again), "a write after the flusher finished starts a new one");
    }

    #[test]
    fn a_flusher_gone_early_fails_what_waits_and_lets_the_next_write_start_one() {
        let combiner = Combiner::default();
        let (first, mut first_reply) = waiting(vec![(0, vec![1])]);
        assert!(combiner.add(first));
        drop(Flushing { combiner: &combiner, finished: false });
        assert!(first_reply.try_recv().is_err(), "the waiting write's reply channel is closed");
        let (next, _) = waiting(vec![(0, vec![2])]);
        assert!(combiner.add(next), "the next write starts a new flusher");
        // A flusher that finished normally leaves the queue to the next one.
        assert_eq!(combiner.take_group().map(|g| g.len()), Some(1));
        assert!(combiner.take_group().is_none());
        let (late, _) = waiting(vec![(0, vec![3])]);
        assert!(combiner.add(late));
        Flushing { combiner: &combiner, finished: false }.finished();
        assert_eq!(combiner.lock().waiting.len(), 1, "a finished flusher's end touches nothing");
    }
}
