//! The last piece of a pipelined write (see [`crate::append`]), encoded on another core while
//! the writer encodes the rest, and handed to the WAL by whichever side finishes second.
//!
//! **The encoder thread.** One thread per storage runs these encodings. After its last job it
//! spins for up to [`IDLE_SPIN`] before it sleeps: waking a sleeping thread took 60–120 µs on
//! the 2-vCPU VM we measure on (an idle virtual CPU is halted, and waking it goes through the
//! host), a sixth of a single writer's 8192-row append. Only a writer sending one large write
//! after another keeps it spinning, and then it spins while that writer waits for its fsync.
//!
//! **The meeting.** A write's last piece needs its encoding (from the encoder thread) and its
//! place in the log (offsets and timestamp, given by the writer under the append lock, after
//! it has handed the WAL its first frame). Both go into one [`LastPiece`]; the side that
//! brings the second builds the frame and sends it to the WAL itself. So when the encoding
//! finishes last, as it usually does, the frame goes from the encoder thread straight to the
//! WAL thread, not through the writer's task. The writer waits, still under the append lock,
//! for the piece to be handed over (or to fail): until then its offsets may have to be given
//! back.
//!
//! A writer that goes away closes the meeting: a frame not handed over by then never will be,
//! and the WAL, its channel closed, marks the write abandoned.
//!
//! **Keeping off the writer's CPU.** A spinning thread that shares a CPU with the writer gets
//! no time while the writer encodes, and the scheduler does not move a thread that ran a moment
//! ago to the other CPU when that one falls idle. On two CPUs this left the write unpipelined
//! in a sixth to a half of a single writer's appends. So a writer that finds the encoder
//! thread on its own CPU takes that CPU out of the thread's affinity before handing it a job
//! (a hint the kernel may refuse; nothing depends on it).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot};

use crate::ipc::EncodedBatch;
use crate::record::{encode_frame, EncodedEntry, FramePart, RecordEntry};
use crate::wal::WalPart;
use crate::{ipc, Result, StorageError};

/// How long the encoder thread looks for its next job before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(500);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    sleeping: bool,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    jobs: Mutex<Jobs>,
    wake: Condvar,
    /// Jobs in the queue, read while spinning without taking the lock.
    queued: AtomicUsize,
    /// The thread's id and the CPU it last spun on (see [`Encoder::keep_off_this_cpu`]).
    thread_id: AtomicI32,
    cpu: AtomicUsize,
}

impl Shared {
    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job, spinning then sleeping until there is one; `None` once stopped and empty.
    fn next(&self) -> Option<Job> {
        let started = Instant::now();
        while self.queued.load(Ordering::Acquire) == 0 && started.elapsed() < IDLE_SPIN {
            self.cpu.store(rustix::thread::sched_getcpu(), Ordering::Relaxed);
            std::thread::yield_now();
        }
        let mut jobs = self.jobs();
        loop {
            if let Some(job) = jobs.queue.pop_front() {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                return Some(job);
            }
            if jobs.stopped {
                return None;
            }
            jobs.sleeping = true;
            jobs = self.wake.wait(jobs).unwrap_or_else(|p| p.into_inner());
            jobs.sleeping = false;
        }
    }
}

/// The encoder thread. Stopped when dropped, after the jobs already queued.
pub(crate) struct Encoder {
    shared: Arc<Shared>,
}

impl Encoder {
    pub(crate) fn start() -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("streamhouse-encode".into())
            .spawn(move || {
                thread.thread_id.store(rustix::thread::gettid().as_raw_nonzero().get(), Ordering::Release);
                while let Some(job) = thread.next() {
                    job();
                }
            })
            .map_err(StorageError::WalIo)?;
        Ok(Self { shared })
    }

    fn submit(&self, job: Job) {
        self.keep_off_this_cpu();
        let mut jobs = self.shared.jobs();
        jobs.queue.push_back(job);
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if jobs.sleeping {
            self.shared.wake.notify_one();
        }
    }

    /// Moves the thread off the caller's CPU if it last spun there (see the module doc).
    fn keep_off_this_cpu(&self) {
        let here = rustix::thread::sched_getcpu();
        let thread_id = self.shared.thread_id.load(Ordering::Acquire);
        if self.shared.cpu.load(Ordering::Relaxed) != here {
            return;
        }
        let Some(thread) = rustix::thread::Pid::from_raw(thread_id) else { return };
        let Ok(mut allowed) = rustix::thread::sched_getaffinity(None) else { return };
        allowed.unset(here);
        if allowed.count() > 0 {
            // Only a hint: where the kernel refuses, the thread stays where it is.
            let _ = rustix::thread::sched_setaffinity(Some(thread), &allowed);
        }
    }

    /// Lets the thread finish the queued jobs and end.
    pub(crate) fn stop(&self) {
        self.shared.jobs().stopped = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a write's last piece goes in the log.
pub(crate) struct Placement {
    pub topic_id: u64,
    pub base_offset: u64,
    pub timestamp_us: i64,
    pub schema_message: Arc<[u8]>,
}

enum Meeting {
    /// Waiting for the encoding, the placement, or both.
    Open {
        encoded: Option<Result<EncodedBatch>>,
        placement: Option<Placement>,
        /// The write's channel to the WAL, for its last frame.
        rest: mpsc::UnboundedSender<WalPart>,
        /// Tells the writer, once it has placed the piece, how the hand-over went.
        done: oneshot::Sender<Result<()>>,
    },
    HandedOver,
    /// The encoding failed or the writer went away.
    Closed,
}

struct LastPiece {
    partition: u32,
    batch: RecordBatch,
    meeting: Mutex<Meeting>,
}

/// What the side that completes the meeting must do, outside its lock.
enum Completion {
    HandOver { part: WalPart, rest: mpsc::UnboundedSender<WalPart>, done: Option<oneshot::Sender<Result<()>>> },
    Fail { error: StorageError, done: Option<oneshot::Sender<Result<()>>> },
}

impl Completion {
    /// Sends the frame to the WAL (a closed channel means the WAL failed, and the write's
    /// acknowledgement says so). Gives the outcome to a waiting writer through its channel, or
    /// returns it to the writer that completed the meeting itself.
    fn run(self) -> Result<()> {
        let (outcome, done) = match self {
            Completion::HandOver { part, rest, done } => {
                let _ = rest.send(part);
                (Ok(()), done)
            }
            Completion::Fail { error, done } => (Err(error), done),
        };
        match done {
            Some(done) => {
                let _ = done.send(outcome);
                Ok(())
            }
            None => outcome,
        }
    }
}

impl LastPiece {
    /// A meeting not yet joined by either side, the channel on which the WAL receives the
    /// frame, and the one on which a waiting writer learns the outcome.
    fn new(partition: u32, batch: RecordBatch) -> (Arc<Self>, mpsc::UnboundedReceiver<WalPart>, oneshot::Receiver<Result<()>>) {
        let (rest, rest_receiver) = mpsc::unbounded_channel();
        let (done, done_receiver) = oneshot::channel();
        let meeting = Mutex::new(Meeting::Open { encoded: None, placement: None, rest, done });
        (Arc::new(Self { partition, batch, meeting }), rest_receiver, done_receiver)
    }

    fn meeting(&self) -> std::sync::MutexGuard<'_, Meeting> {
        self.meeting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the encoding or the placement, whichever came second, and completes the meeting
    /// if both are there. `by_writer` tells whether the writer itself completes it (and so
    /// needs no message).
    fn meet(&self, arriving: Arriving, by_writer: bool) -> Option<Completion> {
        let mut meeting = self.meeting();
        let Meeting::Open { encoded, placement, .. } = &mut *meeting else { return None };
        match arriving {
            Arriving::Encoded(result) => *encoded = Some(result),
            Arriving::Placed(place) => *placement = Some(place),
        }
        if encoded.is_none() || placement.is_none() {
            return None;
        }
        // Both parts are there (just checked); the other arm cannot happen and leaves it closed.
        let Meeting::Open { encoded: Some(result), placement: Some(placement), rest, done } =
            std::mem::replace(&mut *meeting, Meeting::Closed)
        else {
            return None;
        };
        let done = (!by_writer).then_some(done);
        match result {
            Ok(encoded) => {
                *meeting = Meeting::HandedOver;
                drop(meeting);
                Some(Completion::HandOver { part: self.last_part(placement, Arc::new(encoded)), rest, done })
            }
            Err(error) => Some(Completion::Fail { error, done }),
        }
    }

    fn last_part(&self, placement: Placement, encoded: Arc<EncodedBatch>) -> WalPart {
        let Placement { topic_id, base_offset, timestamp_us, schema_message } = placement;
        let framed = [(EncodedEntry { partition: self.partition, encoded: encoded.clone() }, base_offset)];
        let frame = encode_frame(topic_id, timestamp_us, &schema_message, &framed, FramePart::Last);
        let entry = RecordEntry {
            topic_id,
            partition: self.partition,
            base_offset,
            timestamp_us,
            batch: self.batch.clone(),
            encoded: Some(encoded),
        };
        WalPart { frame, entries: vec![entry] }
    }
}

enum Arriving {
    Encoded(Result<EncodedBatch>),
    Placed(Placement),
}

/// The writer's side of a last piece being encoded aside. Dropped before the piece is handed
/// over, it closes the meeting (see the module doc).
pub(crate) struct Aside {
    piece: Arc<LastPiece>,
    done: Option<oneshot::Receiver<Result<()>>>,
}

impl Aside {
    /// Starts encoding `batch`, `partition`'s last piece of a write, on the encoder thread.
    /// Returns the writer's side and the channel on which the WAL will receive its frame.
    pub(crate) fn start(encoder: &Encoder, partition: u32, batch: RecordBatch) -> (Self, mpsc::UnboundedReceiver<WalPart>) {
        let (piece, rest, done) = LastPiece::new(partition, batch);
        let job = piece.clone();
        encoder.submit(Box::new(move || {
            // A panic must not leave the writer waiting for an encoding that never comes.
            let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ipc::encode(&job.batch)))
                .unwrap_or_else(|_| Err(StorageError::WalFailed("encoding the write's last piece panicked".into())));
            if let Some(completion) = job.meet(Arriving::Encoded(encoded), false) {
                // A failure is the writer's to report; it was sent to it.
                let _ = completion.run();
            }
        }));
        (Self { piece, done: Some(done) }, rest)
    }

    pub(crate) fn partition(&self) -> u32 {
        self.piece.partition
    }

    pub(crate) fn rows(&self) -> u64 {
        self.piece.batch.num_rows() as u64
    }

    /// Gives the piece its place in the log once the write's first frame is with the WAL, and
    /// waits until its frame is handed over too. An error means it never will be.
    pub(crate) async fn place(&mut self, placement: Placement) -> Result<()> {
        if let Some(completion) = self.piece.meet(Arriving::Placed(placement), true) {
            return completion.run();
        }
        let Some(done) = self.done.take() else {
            return Err(StorageError::WalFailed("the write's last piece was placed twice".into()));
        };
        match done.await {
            Ok(outcome) => outcome,
            Err(_) => Err(StorageError::WalFailed("the encoder thread stopped before the write's last piece".into())),
        }
    }
}

impl Aside {
    /// Closes the meeting if the piece is not handed over yet; returns whether it was.
    pub(crate) fn close(&self) -> bool {
        let mut meeting = self.piece.meeting();
        match *meeting {
            Meeting::HandedOver => true,
            Meeting::Open { .. } | Meeting::Closed => {
                *meeting = Meeting::Closed;
                false
            }
        }
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn batch(rows: i64) -> RecordBatch {
        RecordBatch::try_from_iter(vec![("v", Arc::new(Int64Array::from_iter_values(0..rows)) as _)]).unwrap()
    }

    fn placement(base_offset: u64) -> Placement {
        let schema_message = ipc::schema_message(&batch(0).schema()).unwrap().into();
        Placement { topic_id: 7, base_offset, timestamp_us: 42, schema_message }
    }

    /// The one part the WAL received: its frame ends the write and its entry is the piece, placed.
    fn assert_handed_over(rest: &mut mpsc::UnboundedReceiver<WalPart>, base_offset: u64, rows: &RecordBatch) {
        let part = rest.try_recv().expect("the frame was handed to the WAL");
        assert_eq!(crate::record::frame_part(&part.frame), FramePart::Last);
        let [entry] = part.entries.as_slice() else { panic!("one entry, got {}", part.entries.len()) };
        assert_eq!((entry.topic_id, entry.partition, entry.base_offset, entry.timestamp_us), (7, 3, base_offset, 42));
        assert_eq!(&entry.batch, rows);
        assert!(rest.try_recv().is_err(), "nothing more");
    }

    #[test]
    fn the_writer_hands_over_a_piece_encoded_before_it_is_placed() {
        let rows = batch(100);
        let (piece, mut rest, _done) = LastPiece::new(3, rows.clone());
        assert!(piece.meet(Arriving::Encoded(ipc::encode(&rows)), false).is_none());
        let completion = piece.meet(Arriving::Placed(placement(10)), true).expect("both parts are there");
        assert!(completion.run().is_ok());
        assert_handed_over(&mut rest, 10, &rows);
        let aside = Aside { piece, done: None };
        assert!(aside.close(), "a handed-over piece stays handed over");
    }

    #[test]
    fn the_encoder_hands_over_a_piece_placed_before_it_is_encoded_and_tells_the_writer() {
        let rows = batch(100);
        let (piece, mut rest, mut done) = LastPiece::new(3, rows.clone());
        assert!(piece.meet(Arriving::Placed(placement(20)), true).is_none());
        assert!(done.try_recv().is_err(), "no outcome before the encoding");
        let completion = piece.meet(Arriving::Encoded(ipc::encode(&rows)), false).expect("both parts are there");
        assert!(completion.run().is_ok());
        assert!(matches!(done.try_recv(), Ok(Ok(()))));
        assert_handed_over(&mut rest, 20, &rows);
    }

    #[test]
    fn a_failed_encoding_reaches_the_writer_and_closes_the_wal_channel() {
        let (piece, mut rest, mut done) = LastPiece::new(3, batch(1));
        assert!(piece.meet(Arriving::Placed(placement(0)), true).is_none());
        let failure = Err(StorageError::WalFailed("encoding failed".into()));
        let completion = piece.meet(Arriving::Encoded(failure), false).expect("both parts are there");
        assert!(completion.run().is_ok(), "the encoder side reports through the writer's channel");
        assert!(matches!(done.try_recv(), Ok(Err(StorageError::WalFailed(reason))) if reason == "encoding failed"));
        assert!(matches!(rest.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)), "the WAL abandons the write");
        let aside = Aside { piece, done: None };
        assert!(!aside.close());
    }

    #[test]
    fn a_writer_that_goes_away_first_keeps_the_piece_from_the_wal() {
        let rows = batch(10);
        let (piece, mut rest, _done) = LastPiece::new(3, rows.clone());
        let aside = Aside { piece: piece.clone(), done: None };
        drop(aside);
        assert!(piece.meet(Arriving::Encoded(ipc::encode(&rows)), false).is_none());
        assert!(matches!(rest.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pieces_encoded_on_the_thread_reach_the_wal_in_either_order() {
        let encoder = Encoder::start().unwrap();
        for round in 0..50u64 {
            let rows = batch(1000 + round as i64);
            let (mut aside, mut rest) = Aside::start(&encoder, 3, rows.clone());
            // Sometimes placed at once, sometimes after the encoding is surely done.
            if round % 2 == 1 {
                while matches!(*aside.piece.meeting(), Meeting::Open { encoded: None, .. }) {
                    tokio::task::yield_now().await;
                }
            }
            aside.place(placement(round)).await.unwrap();
            assert_handed_over(&mut rest, round, &rows);
            assert!(aside.close());
        }
        encoder.stop();
    }
}
