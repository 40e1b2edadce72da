//! Queries this server has handed out tickets for, by id, so that `CancelFlightInfo` (or Flight
//! SQL's older `CancelQuery`) can stop one while it streams, and the server's shutdown can end
//! every stream (a `SUBSCRIBE` never ends by itself).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_flight::error::FlightError;
use futures::{Stream, StreamExt};
use streamhouse_engine::arrow::array::RecordBatch;
use streamhouse_engine::datafusion::execution::SendableRecordBatchStream;
use streamhouse_engine::EngineError;
use tokio::sync::watch;
use tonic::Status;

/// Queries with an id, running or waiting for their DoGet.
#[derive(Debug)]
pub struct Queries {
    next_id: AtomicU64,
    /// Each query's cancel flag. Ids ascend, so the first entry is the oldest.
    flags: Mutex<BTreeMap<u64, watch::Sender<bool>>>,
    /// Most queries remembered; past it the oldest is forgotten (its ticket still runs, but can
    /// no longer be cancelled by id).
    remembered_max: usize,
}

impl Queries {
    pub fn new(remembered_max: usize) -> Self {
        Self { next_id: AtomicU64::new(1), flags: Mutex::new(BTreeMap::new()), remembered_max: remembered_max.max(1) }
    }

    fn flags(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, watch::Sender<bool>>> {
        self.flags.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new query id, cancellable from now on.
    pub fn register(&self) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut flags = self.flags();
        flags.insert(id, watch::channel(false).0);
        while flags.len() > self.remembered_max {
            flags.pop_first();
        }
        id
    }

    /// The cancel flag of a query about to run; a query no longer remembered gets a new one.
    pub fn start(self: &Arc<Self>, id: u64) -> Running {
        let receiver = self.flags().entry(id).or_insert_with(|| watch::channel(false).0).subscribe();
        Running { queries: self.clone(), id, cancelled: receiver }
    }

    /// Cancels a query; false if it is not known (finished, or never handed out).
    pub fn cancel(&self, id: u64) -> bool {
        match self.flags().get(&id) {
            Some(flag) => {
                flag.send_replace(true);
                true
            }
            None => false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.flags().len()
    }
}

/// A query streaming its rows; forgotten when dropped.
pub struct Running {
    queries: Arc<Queries>,
    id: u64,
    cancelled: watch::Receiver<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.queries.flags().remove(&self.id);
    }
}

/// Resolves once the flag is set (never, if its sender is gone without setting it).
async fn raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, FlightError>> + Send>>;

fn engine_error(error: EngineError) -> FlightError {
    FlightError::Tonic(Box::new(crate::status::engine_status(&error)))
}

/// A query's batches, ending with an error when it is cancelled or the server shuts down (a
/// client must never take a cut-short result for a whole one). `running` is dropped, and the
/// query forgotten, when the stream ends or is dropped.
pub fn guarded(inner: SendableRecordBatchStream, running: Option<Running>, shutdown: watch::Receiver<bool>) -> BatchStream {
    guard(inner.map(|item| item.map_err(EngineError::from)), running, shutdown)
}

/// [`guarded`] for a stream of anything.
pub fn guard<T: Send + 'static>(
    inner: impl Stream<Item = Result<T, EngineError>> + Send + 'static,
    running: Option<Running>,
    shutdown: watch::Receiver<bool>,
) -> Pin<Box<dyn Stream<Item = Result<T, FlightError>> + Send>> {
    struct State<S> {
        inner: Pin<Box<S>>,
        running: Option<Running>,
        shutdown: watch::Receiver<bool>,
        done: bool,
    }
    let state = State { inner: Box::pin(inner), running, shutdown, done: false };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let cancelled = async {
            match state.running.as_mut() {
                Some(running) => raised(&mut running.cancelled).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            biased;
            _ = cancelled => Some(Err(FlightError::Tonic(Box::new(Status::cancelled(
                "canceling statement due to user request (SQLSTATE 57014)",
            ))))),
            _ = raised(&mut state.shutdown) => Some(Err(FlightError::Tonic(Box::new(Status::unavailable(
                "terminating the stream: the server is shutting down (SQLSTATE 57P01)",
            ))))),
            next = state.inner.next() => next.map(|item| item.map_err(engine_error)),
        };
        match outcome {
            None => None,
            Some(Ok(item)) => Some((Ok(item), state)),
            Some(Err(error)) => {
                state.done = true;
                Some((Err(error), state))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_forgotten_oldest_first_past_the_bound() {
        let queries = Queries::new(2);
        let first = queries.register();
        let second = queries.register();
        let third = queries.register();
        assert_eq!(queries.len(), 2);
        assert!(!queries.cancel(first), "the oldest was forgotten");
        assert!(queries.cancel(second));
        assert!(queries.cancel(third));
    }

    #[tokio::test]
    async fn a_cancelled_query_ends_with_an_error_and_is_forgotten() {
        use streamhouse_engine::arrow::datatypes::Schema;
        use streamhouse_engine::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
        let queries = Arc::new(Queries::new(8));
        let id = queries.register();
        let running = queries.start(id);
        let endless = futures::stream::pending();
        let inner: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(Arc::new(Schema::empty()), endless));
        let (_shutdown_sender, shutdown) = watch::channel(false);
        let mut stream = guarded(inner, Some(running), shutdown);
        assert!(queries.cancel(id));
        match stream.next().await {
            Some(Err(FlightError::Tonic(status))) => assert_eq!(status.code(), tonic::Code::Cancelled),
            other => panic!("expected a cancelled status, got {other:?}"),
        }
        assert!(stream.next().await.is_none());
        drop(stream);
        assert_eq!(queries.len(), 0);
        assert!(!queries.cancel(id));
    }
}
