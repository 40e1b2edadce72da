//! Appends. A write is validated, cut into per-partition pieces of about [`APPEND_CHUNK_ROWS`]
//! rows, encoded, given offsets, framed and handed to the WAL ([`crate::wal`]), and acknowledged
//! after its fsync. A small write to a topic is combined with others that arrive with it
//! ([`crate::combine`]).
//!
//! A write of [`PIPELINED_ROWS_MIN`] rows or more is pipelined: its last piece is encoded on the
//! encoder thread (another core) while the writer encodes the others; those go to the WAL as
//! the write's first frame, which the WAL writes while the last piece's encoding finishes; the
//! last piece's own frame, handed to the WAL by whichever of the two finishes second
//! ([`crate::aside`]), then ends the write. A write of one piece is cut in two halves for
//! this. The write stays atomic: see the WAL's pipelined writes. On the 2-vCPU machine we
//! measure on, pipelining took a single writer's 8192-row appends from 0.38–0.40× to
//! 0.49–0.54× of bare encoding speed, and the encoder thread of [`crate::aside`] to 0.64–0.70×
//! (docs/benchmarks.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot};

use crate::aside::{Aside, Placement};
use crate::record::{encode_frame, EncodedEntry, FramePart, RecordEntry};
use crate::wal::{WalPart, WalRequest};
use crate::{ipc, now_us, segment, AppendOutcome, KeyedWriteGuard, Result, Storage, StorageError, TopicLog};

/// Whether a batch is a small slice of larger buffers (it uses less than half of what it
/// holds), which the tail would otherwise keep (and count) whole until the segment seals.
fn is_small_slice(batch: &RecordBatch) -> bool {
    let held: usize = batch.columns().iter().map(|c| c.get_array_memory_size()).sum();
    let used = crate::tail::rows_bytes(batch) as usize;
    used.saturating_mul(2) < held
}

/// A small slice of larger buffers, copied into buffers of its own (see [`is_small_slice`]):
/// for a piece encoded aside or cut in halves. [`encode_pieces`] gets the copy from the encoding
/// instead.
fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    // Copied range by range (about twice as fast as a `take` of every row, measured on 1024-row
    // slices of the ingest bench's bids).
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            let data = column.to_data();
            let mut copy = arrow::array::MutableArrayData::new(vec![&data], false, column.len());
            copy.try_extend(0, 0, column.len())?;
            Ok(arrow::array::make_array(copy.freeze()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// A partition's share of a write is stored as batches of about this many rows: smaller
/// batches are concatenated (one WAL entry, one segment message each), larger ones kept whole.
pub(crate) const APPEND_CHUNK_ROWS: usize = 8192;

/// A write of at least this many rows is pipelined (see the module doc); below it, the extra
/// frame and flush cost more than the overlap gains.
const PIPELINED_ROWS_MIN: usize = 4096;

/// Groups consecutive batches into runs of at most [`APPEND_CHUNK_ROWS`] rows (a larger batch is
/// a run of its own), so a large write is neither one huge batch nor thousands of tiny ones.
fn chunks(batches: Vec<RecordBatch>) -> Vec<Vec<RecordBatch>> {
    let mut runs: Vec<Vec<RecordBatch>> = Vec::new();
    let mut rows = 0;
    for batch in batches {
        let batch_rows = batch.num_rows();
        match runs.last_mut() {
            Some(run) if rows + batch_rows <= APPEND_CHUNK_ROWS => {
                run.push(batch);
                rows += batch_rows;
            }
            _ => {
                runs.push(vec![batch]);
                rows = batch_rows;
            }
        }
    }
    runs
}

/// One partition's rows in a write, in the topic's log schema, and whether they are a small
/// slice of larger buffers, to be kept in buffers of their own (see [`is_small_slice`]).
pub(crate) type Piece = (u32, RecordBatch, bool);
/// A piece and its encoding.
pub(crate) type EncodedPiece = (u32, RecordBatch, Arc<ipc::EncodedBatch>);

/// The last piece of a pipelined write, being encoded aside, and the channel on which the WAL
/// receives its frame.
type LastAside = (Aside, mpsc::UnboundedReceiver<WalPart>);

/// A write cut into per-partition chunks and encoded, ready for [`Storage::append_prepared`]:
/// the CPU work of an append, which a large write (COPY) does while its input still arrives.
#[derive(Debug, Default)]
pub struct PreparedAppend {
    topic_id: Option<u64>,
    entries: Vec<EncodedPiece>,
}

impl PreparedAppend {
    pub fn rows(&self) -> u64 {
        self.entries.iter().map(|(_, batch, _)| batch.num_rows() as u64).sum()
    }

    /// Adds another prepared part of the same write (of the same topic).
    pub fn extend(&mut self, other: PreparedAppend) -> Result<()> {
        match (self.topic_id, other.topic_id) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                return Err(StorageError::InvalidBatch {
                    topic: format!("#{theirs}"),
                    reason: "parts of one write were prepared for different topics".into(),
                })
            }
            (None, theirs) => self.topic_id = theirs,
            _ => {}
        }
        self.entries.extend(other.entries);
        Ok(())
    }
}

/// Validates, partitions, cuts and encodes batches of a topic's user columns for an append (on
/// a keyed table every row is an upsert). Touches no shared state but the topic's round-robin
/// counter: runs on any thread.
pub fn prepare(topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<PreparedAppend> {
    let entries = encode_pieces(cut_log(topic, log_batches(topic, batches)?)?)?;
    Ok(PreparedAppend { topic_id: Some(topic.id()), entries })
}

/// Validates batches of a topic's user columns and puts them in its log schema.
fn log_batches(topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let mut log_batches = Vec::with_capacity(batches.len());
    for batch in batches {
        topic.validate(&batch)?;
        log_batches.push(if topic.is_keyed() { with_deleted_flag(topic, &batch, false)? } else { batch });
    }
    Ok(log_batches)
}

/// The batch in a keyed table's log schema: its columns and `_deleted`.
fn with_deleted_flag(topic: &TopicLog, batch: &RecordBatch, deleted: bool) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::BooleanArray::from(vec![deleted; batch.num_rows()])));
    Ok(RecordBatch::try_new(topic.log_schema().clone(), columns)?)
}

/// Partitions and cuts batches already in the topic's log schema.
fn cut_log(topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    for (partition, batches) in topic.partition_batches(batches)? {
        for run in chunks(batches) {
            let batch = segment::concat(topic.log_schema(), &run)?;
            let small = is_small_slice(&batch);
            pieces.push((partition, batch, small));
        }
    }
    Ok(pieces)
}

pub(crate) fn encode_pieces(pieces: Vec<Piece>) -> Result<Vec<EncodedPiece>> {
    pieces
        .into_iter()
        .map(|(partition, batch, small)| {
            // A small slice is kept as its uncompressed encoding reads back: compact, and
            // copied once (copying it first took a sixth of the 64-writer bench's CPU).
            let (encoding, batch) = if small { ipc::encode_compact(&batch)? } else { (ipc::encode(&batch)?, batch) };
            Ok((partition, batch, Arc::new(encoding)))
        })
        .collect()
}

/// Offsets given to a pipelined write before its last piece is handed over to the WAL. Dropped
/// before that (the last piece failed to encode, or the caller went away), it closes the last
/// piece's meeting (see [`crate::aside`]) and, unless the piece got there first, gives the
/// offsets back: the append lock is still held, so no later write has offsets yet. The WAL marks
/// the write abandoned when its channel closes.
struct GivenOffsets<'a> {
    topic: &'a TopicLog,
    placements: Vec<(u32, u64, u64)>,
    last: Aside,
}

impl Drop for GivenOffsets<'_> {
    fn drop(&mut self) {
        if !self.last.close() {
            for &(partition, base_offset, _) in self.placements.iter().rev() {
                self.topic.partitions[partition as usize].next_offset.store(base_offset, Ordering::Release);
            }
        }
    }
}

/// A keyed table's write lock (every row of an append is an upsert); `None` for a topic.
async fn lock_if_keyed(topic: &TopicLog) -> Option<KeyedWriteGuard<'_>> {
    match topic.is_keyed() {
        true => Some(topic.lock_writes().await),
        false => None,
    }
}

/// Takes off the piece a pipelined write encodes aside, cutting a write of one piece in two;
/// `None` for a write too small to pipeline.
///
/// A piece that is a small slice is copied first, so that its halves (which together use all
/// of the copy) are not copied again.
fn split_last(pieces: &mut Vec<Piece>) -> Result<Option<Piece>> {
    let rows: usize = pieces.iter().map(|(_, batch, _)| batch.num_rows()).sum();
    if rows < PIPELINED_ROWS_MIN {
        return Ok(None);
    }
    if let [(partition, batch, small)] = pieces.as_mut_slice() {
        if *small {
            *batch = compact(batch.clone())?;
            *small = false;
        }
        let half = batch.num_rows() / 2;
        let last = (*partition, batch.slice(half, batch.num_rows() - half), false);
        *batch = batch.slice(0, half);
        return Ok(Some(last));
    }
    Ok(pieces.pop())
}

/// A record batch message in a topic's schema, encoded by a client (a Flight DoPut) and decoded
/// and validated by [`decode_sent`]. When its buffers are LZ4_FRAME-compressed as segments
/// store them, [`Storage::append_begin_sent`] stores the client's buffers as they are instead
/// of encoding the rows again, unless the batch goes elsewhere than one partition whole (a
/// keyed table, a topic partitioned by key) or is small enough to be combined with other writes.
#[derive(Debug)]
pub struct SentBatch {
    topic_id: u64,
    batch: RecordBatch,
    stored: Option<ipc::EncodedBatch>,
}

impl SentBatch {
    /// The rows.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }
}

/// Decodes a record batch message a client encoded in `topic`'s schema (the caller has checked
/// that the client's schema has the topic's types), validating its rows as arrow-rs does.
pub fn decode_sent(topic: &TopicLog, metadata: &[u8], body: bytes::Bytes) -> Result<SentBatch> {
    // Decoded with every column nullable, so that a NULL in a NOT NULL column is found by the
    // caller's check (and refused with its own error), not by the decoder.
    let fields: Vec<arrow::datatypes::Field> = topic.schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    // Kept as sent only where it goes to one partition whole and is not combined with other
    // writes; otherwise its encoding is not made at all.
    let whole = !topic.is_keyed()
        && topic.routes_whole_batches()
        && ipc::message_rows(metadata)? >= crate::combine::COMBINED_WRITE_ROWS_MAX as u64;
    let (batch, stored) = ipc::decode_sent(metadata, body, &schema, whole)?;
    Ok(SentBatch { topic_id: topic.id(), batch, stored })
}

/// A write [`Storage::append_begin`] handed to the WAL, its fsync still to come.
#[must_use = "a begun write is acknowledged only once its fsync is awaited"]
pub struct BegunAppend {
    storage: Storage,
    outcome: AppendOutcome,
    /// The WAL's answer after the fsync; `None` for a write already durable.
    acknowledged: Option<oneshot::Receiver<Result<()>>>,
}

impl BegunAppend {
    /// Waits until the write is durable; returns where its rows went.
    pub async fn acknowledged(self, topic: &TopicLog) -> Result<AppendOutcome> {
        match self.acknowledged {
            Some(acknowledged) => self.storage.acknowledged(topic, acknowledged, self.outcome).await,
            None => Ok(self.outcome),
        }
    }
}

impl Storage {
    /// Appends batches to a topic atomically: either every row is durable and visible when this
    /// returns `Ok`, or none will ever be. Batches must match the topic schema. On a keyed table
    /// every row is an upsert (taking the table's write lock for the append). A large write is
    /// pipelined (see the module doc); a small one to a topic is combined with others arriving
    /// together ([`crate::combine`]).
    pub async fn append(&self, topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<AppendOutcome> {
        let mut pieces = cut_log(topic, log_batches(topic, batches)?)?;
        if crate::combine::combines(topic, &pieces) {
            return self.append_combined(topic, pieces).await;
        }
        let last = split_last(&mut pieces)?.map(|piece| self.encode_aside(piece)).transpose()?;
        let encoded = encode_pieces(pieces)?;
        let _guard = lock_if_keyed(topic).await;
        self.append_entries(topic, encoded, last).await
    }

    /// [`Self::append`] in two steps, for a writer that sends its next write while this one's
    /// fsync is under way (a Flight DoPut): returns once the write has its offsets and is queued
    /// to the WAL, so writes begun one after another enter the log in that order; then
    /// [`BegunAppend::acknowledged`] waits for its fsync. Until then nothing of it is visible or
    /// acknowledged, and a write that fails there (the WAL failing) fails every write begun
    /// after it too. A write to a keyed table (which holds the table's write lock until it is
    /// durable) or one small enough to be combined with others is appended whole here instead.
    pub async fn append_begin(&self, topic: &TopicLog, batches: Vec<RecordBatch>) -> Result<BegunAppend> {
        if topic.is_keyed() {
            return Ok(BegunAppend { storage: self.clone(), outcome: self.append(topic, batches).await?, acknowledged: None });
        }
        let pieces = cut_log(topic, log_batches(topic, batches)?)?;
        if crate::combine::combines(topic, &pieces) {
            return Ok(BegunAppend { storage: self.clone(), outcome: self.append_combined(topic, pieces).await?, acknowledged: None });
        }
        // Encoded here, whole, not cut for the encoder thread: the writer overlaps this write's
        // encoding with the previous one's fsync instead, and writes of one frame each share
        // fsyncs (the WAL commits a pipelined write on its own).
        let encoded = encode_pieces(pieces)?;
        if encoded.is_empty() {
            if topic.is_dropped() {
                return Err(StorageError::TopicNotFound(topic.name().to_string()));
            }
            return Ok(BegunAppend { storage: self.clone(), outcome: AppendOutcome::default(), acknowledged: None });
        }
        let (outcome, acknowledged) = self.hand_over(topic, encoded, None).await?;
        Ok(BegunAppend { storage: self.clone(), outcome, acknowledged: Some(acknowledged) })
    }

    /// [`Self::append_begin`] of a client's record batch message ([`decode_sent`]): stored as
    /// the client sent it when it can be (see [`SentBatch`]), otherwise as its decoded rows.
    /// The second value says whether it was stored as sent.
    pub async fn append_begin_sent(&self, topic: &TopicLog, sent: SentBatch) -> Result<(BegunAppend, bool)> {
        let SentBatch { batch, stored, topic_id } = sent;
        if topic_id != topic.id() {
            return Err(StorageError::InvalidBatch { topic: topic.name().to_string(), reason: "the message was decoded for another topic".into() });
        }
        // In the topic's schema (its NOT NULL columns checked first), as every appended batch is.
        topic.validate(&batch)?;
        let batch = RecordBatch::try_new(topic.schema().clone(), batch.columns().to_vec())?;
        let Some(encoded) = stored else {
            return Ok((self.append_begin(topic, vec![batch]).await?, false));
        };
        let piece = (topic.next_round_robin(), batch, Arc::new(encoded));
        let (outcome, acknowledged) = self.hand_over(topic, vec![piece], None).await?;
        Ok((BegunAppend { storage: self.clone(), outcome, acknowledged: Some(acknowledged) }, true))
    }

    /// Appends a write [`prepare`]d for this topic, as [`Self::append`] does.
    pub async fn append_prepared(&self, topic: &TopicLog, prepared: PreparedAppend) -> Result<AppendOutcome> {
        if prepared.topic_id.is_some_and(|id| id != topic.id()) {
            return Err(StorageError::InvalidBatch {
                topic: topic.name().to_string(),
                reason: "the write was prepared for another topic".into(),
            });
        }
        let _guard = lock_if_keyed(topic).await;
        self.append_entries(topic, prepared.entries, None).await
    }

    /// Appends upserts (`false`) and tombstones (`true`, carrying the deleted row) to a keyed
    /// table, in order, atomically, under its write lock.
    pub async fn append_changes(
        &self,
        topic: &TopicLog,
        guard: &KeyedWriteGuard<'_>,
        changes: Vec<(RecordBatch, bool)>,
    ) -> Result<AppendOutcome> {
        if !topic.is_keyed() || guard.topic_id != topic.id() {
            return Err(StorageError::InvalidBatch {
                topic: topic.name().to_string(),
                reason: "changes are appended to a keyed table under its own write lock".into(),
            });
        }
        let mut batches = Vec::with_capacity(changes.len());
        for (batch, deleted) in changes {
            topic.validate(&batch)?;
            batches.push(with_deleted_flag(topic, &batch, deleted)?);
        }
        let mut pieces = cut_log(topic, batches)?;
        let last = split_last(&mut pieces)?.map(|piece| self.encode_aside(piece)).transpose()?;
        self.append_entries(topic, encode_pieces(pieces)?, last).await
    }

    /// Starts encoding a pipelined write's last piece on the encoder thread, while the writer
    /// encodes the others.
    fn encode_aside(&self, (partition, batch, small): Piece) -> Result<LastAside> {
        let batch = if small { compact(batch)? } else { batch };
        Ok(Aside::start(&self.inner.encoder, partition, batch))
    }

    /// Appends encoded pieces and, for a pipelined write, a last piece encoded aside (rows in
    /// the topic's log schema).
    async fn append_entries(&self, topic: &TopicLog, prepared: Vec<EncodedPiece>, last: Option<LastAside>) -> Result<AppendOutcome> {
        // Before the empty check: an empty write to a dropped topic fails too.
        if topic.is_dropped() {
            return Err(StorageError::TopicNotFound(topic.name().to_string()));
        }
        if prepared.is_empty() && last.is_none() {
            return Ok(AppendOutcome::default());
        }
        let (outcome, acknowledged) = self.hand_over(topic, prepared, last).await?;
        self.acknowledged(topic, acknowledged, outcome).await
    }

    /// Gives encoded pieces (and a pipelined write's last piece) their offsets and hands them to
    /// the WAL as one write, once their partitions have room; returns where they went and the
    /// WAL's answer to come after the fsync.
    pub(crate) async fn hand_over(
        &self,
        topic: &TopicLog,
        prepared: Vec<EncodedPiece>,
        last: Option<LastAside>,
    ) -> Result<(AppendOutcome, oneshot::Receiver<Result<()>>)> {
        if topic.is_dropped() {
            return Err(StorageError::TopicNotFound(topic.name().to_string()));
        }
        let partitions = prepared.iter().map(|(p, _, _)| *p).chain(last.as_ref().map(|(aside, _)| aside.partition()));
        for partition in partitions {
            self.wait_for_room(topic, partition).await?;
        }
        let (ack, acknowledged) = oneshot::channel();
        let mut outcome = AppendOutcome::default();
        // Offsets are given and the write handed to the WAL under the append lock, so writes
        // enter the log in offset order; the acknowledgement is awaited after.
        let handed_over: Result<AppendOutcome> = async {
            let mut last_timestamp = self.inner.append_lock.lock().await;
            // Room in the WAL's queue first: from here to the hand-over there is no await, so
            // a write given offsets is always handed over (a cancelled one would leave a gap).
            let permit = self.inner.wal.reserve().await?;
            // Append times never go backwards, even if the clock does.
            let timestamp_us = now_us().max(*last_timestamp);
            *last_timestamp = timestamp_us;
            let mut place = |partition: u32, rows: u64| {
                let base_offset = topic.partitions[partition as usize].next_offset.fetch_add(rows, Ordering::AcqRel);
                match outcome.placements.last_mut() {
                    Some((last, first, placed)) if *last == partition && *first + *placed == base_offset => *placed += rows,
                    _ => outcome.placements.push((partition, base_offset, rows)),
                }
                base_offset
            };
            let mut framed = Vec::with_capacity(prepared.len());
            let mut entries = Vec::with_capacity(prepared.len());
            for (partition, batch, encoded) in prepared {
                let base_offset = place(partition, batch.num_rows() as u64);
                framed.push((EncodedEntry { partition, encoded: encoded.clone() }, base_offset));
                entries.push(RecordEntry { topic_id: topic.id(), partition, base_offset, timestamp_us, batch, encoded: Some(encoded) });
            }
            let last = last.map(|(aside, rest)| (place(aside.partition(), aside.rows()), aside, rest));
            let part = if last.is_some() { FramePart::Continued } else { FramePart::Last };
            let frame = encode_frame(topic.id(), timestamp_us, topic.schema_message(), &framed, part);
            let Some((base_offset, aside, rest)) = last else {
                permit.send(WalRequest { first: WalPart { frame, entries }, rest: None, ack });
                return Ok(outcome);
            };
            permit.send(WalRequest { first: WalPart { frame, entries }, rest: Some(rest), ack });
            // The WAL writes the first frame while the last piece's encoding finishes; the
            // encoder thread usually hands its frame over itself.
            let mut given = GivenOffsets { topic, placements: outcome.placements.clone(), last: aside };
            let schema_message = topic.shared_schema_message();
            given.last.place(Placement { topic_id: topic.id(), base_offset, timestamp_us, schema_message }).await?;
            Ok(outcome)
        }
        .await;
        Ok((handed_over?, acknowledged))
    }

    /// Waits for a write's acknowledgement, then wakes the sealer if the write filled a segment.
    pub(crate) async fn acknowledged(
        &self,
        topic: &TopicLog,
        acknowledged: oneshot::Receiver<Result<()>>,
        outcome: AppendOutcome,
    ) -> Result<AppendOutcome> {
        acknowledged.await.map_err(|_| StorageError::ShuttingDown)??;
        if topic
            .partitions
            .iter()
            .any(|p| p.read_tail().bytes >= self.inner.config.segment_bytes_max)
        {
            self.inner.seal_wakeup.notify_one();
        }
        Ok(outcome)
    }

    /// Waits while a partition's unsealed tail is over `partition_tail_bytes_max`, up to
    /// `append_wait_ms_max`: memory stays bounded when sealing falls behind.
    async fn wait_for_room(&self, topic: &TopicLog, partition: u32) -> Result<()> {
        let config = &self.inner.config;
        let started = std::time::Instant::now();
        let limit = std::time::Duration::from_millis(config.append_wait_ms_max);
        loop {
            let progress = self.inner.seal_progress.notified();
            tokio::pin!(progress);
            // Registered before the check, so a seal finishing in between still wakes us.
            progress.as_mut().enable();
            let bytes = topic.partitions[partition as usize].read_tail().bytes;
            if bytes <= config.partition_tail_bytes_max {
                return Ok(());
            }
            self.inner.seal_wakeup.notify_one();
            if self.inner.sealing_disk_full.load(Ordering::Acquire) {
                // Sealing cannot catch up before space is freed: no use waiting.
                return Err(StorageError::DiskFull {
                    what: format!(
                        "segments of partition {partition} of topic \"{}\", whose unsealed rows reached partition_tail_bytes_max ({bytes} bytes)",
                        topic.name()
                    ),
                });
            }
            let remaining = limit.saturating_sub(started.elapsed());
            if remaining.is_zero() || tokio::time::timeout(remaining, progress).await.is_err() {
                return Err(StorageError::Backpressure {
                    topic: topic.name().to_string(),
                    partition,
                    bytes,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-column batch of `rows` rows.
    fn batch(rows: usize) -> RecordBatch {
        let values = arrow::array::Int64Array::from_iter_values(0..rows as i64);
        RecordBatch::try_from_iter(vec![("v", Arc::new(values) as arrow::array::ArrayRef)]).unwrap()
    }

    #[test]
    fn small_batches_are_grouped_and_large_ones_kept_whole() {
        let sizes = |runs: Vec<Vec<RecordBatch>>| -> Vec<Vec<usize>> {
            runs.iter().map(|run| run.iter().map(RecordBatch::num_rows).collect()).collect()
        };
        let half = APPEND_CHUNK_ROWS / 2;
        let input = vec![batch(half), batch(half), batch(1), batch(3 * APPEND_CHUNK_ROWS), batch(2), batch(3)];
        assert_eq!(sizes(chunks(input)), vec![vec![half, half], vec![1], vec![3 * APPEND_CHUNK_ROWS], vec![2, 3]]);
        assert!(chunks(Vec::new()).is_empty());
    }

    #[test]
    fn a_small_slice_is_copied_out_of_its_parent_buffers() {
        let names: Vec<Option<String>> = (0..1000).map(|i| (i % 3 != 0).then(|| format!("name-{i}"))).collect();
        let parent = RecordBatch::try_from_iter(vec![
            ("v", Arc::new(arrow::array::Int64Array::from_iter_values(0..1000)) as arrow::array::ArrayRef),
            ("name", Arc::new(arrow::array::StringArray::from(names)) as arrow::array::ArrayRef),
        ])
        .unwrap();
        let held = |b: &RecordBatch| b.columns().iter().map(|c| c.get_array_memory_size()).sum::<usize>();
        let slice = parent.slice(500, 100);
        assert!(is_small_slice(&slice));
        let compacted = compact(slice.clone()).unwrap();
        assert_eq!(compacted, slice);
        assert!(held(&compacted) * 4 < held(&slice), "{} bytes held against {}", held(&compacted), held(&slice));
        // Most of its parent: kept as it is.
        assert!(!is_small_slice(&parent.slice(0, 900)));
        assert!(!is_small_slice(&compacted));
    }

    #[test]
    fn a_large_write_leaves_its_last_piece_for_the_pipeline() {
        let mut small = vec![(0, batch(PIPELINED_ROWS_MIN - 1), false)];
        assert!(split_last(&mut small).unwrap().is_none());
        assert_eq!(small.len(), 1);

        // One piece is cut in two halves, which together are the batch and count its bytes
        // once; a piece that is a small slice is copied first, its halves not again.
        let whole = batch(PIPELINED_ROWS_MIN + 1);
        let parent = batch(4 * PIPELINED_ROWS_MIN);
        for (piece, small) in [(whole.clone(), false), (parent.slice(7, PIPELINED_ROWS_MIN + 1), true)] {
            let mut one = vec![(3, piece.clone(), small)];
            let (partition, last, last_small) = split_last(&mut one).unwrap().unwrap();
            assert_eq!((partition, one[0].0), (3, 3));
            assert!(!one[0].2 && !last_small, "halves are never copied again");
            assert_eq!((one[0].1.num_rows(), last.num_rows()), (PIPELINED_ROWS_MIN / 2, PIPELINED_ROWS_MIN / 2 + 1));
            assert_eq!(arrow::compute::concat_batches(&piece.schema(), [&one[0].1, &last]).unwrap(), piece);
            let halves = crate::tail::rows_bytes(&one[0].1) + crate::tail::rows_bytes(&last);
            assert_eq!(halves, crate::tail::rows_bytes(&piece));
            let buffer = |b: &RecordBatch| b.column(0).to_data().buffers()[0].data_ptr();
            assert_eq!(buffer(&one[0].1) == buffer(&piece), !small, "a small slice (only) is copied out of its parent");
        }

        // Several pieces: the last one is taken as it is.
        let mut several = vec![(0, batch(PIPELINED_ROWS_MIN), false), (1, batch(10), false)];
        let (partition, last, _) = split_last(&mut several).unwrap().unwrap();
        assert_eq!((partition, last.num_rows(), several.len()), (1, 10, 1));
    }
}
