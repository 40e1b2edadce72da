//! Memory bounds of queries: what DataFusion's operators that hold memory (sorts, hash
//! aggregates, joins, repartitions) may reserve, per session and for the whole server.
//!
//! Every session's DataFusion runtime has a [`SessionPool`] of `query_memory_bytes_max` (a
//! session runs one statement at a time; its open portals count together), drawing from one
//! server pool of `server_memory_bytes_max` that all sessions share. An operator that can spill
//! (sort, aggregate) spills to the temporary directory when its reservation is refused; one that
//! cannot fails its statement with `53200` naming the limit, and the server and other sessions
//! go on.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};

/// The server's pool: every session's reservations together.
pub fn server_pool(bytes_max: usize) -> Arc<dyn MemoryPool> {
    Arc::new(GreedyMemoryPool::new(bytes_max))
}

/// One session's pool: at most `limit` bytes, each also reserved in the server's pool.
#[derive(Debug)]
pub struct SessionPool {
    server: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl SessionPool {
    pub fn new(server: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self { server, limit, used: AtomicUsize::new(0) }
    }
}

impl fmt::Display for SessionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session pool ({} of {} bytes)", self.used.load(Ordering::Relaxed), self.limit)
    }
}

impl MemoryPool for SessionPool {
    fn name(&self) -> &str {
        "streamhouse-session"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let granted = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(additional).filter(|&total| total <= self.limit)
        });
        if granted.is_err() {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "out of memory: the statement needs more than query_memory_bytes_max ({} bytes; {} more asked by {})",
                self.limit,
                additional,
                reservation.consumer().name()
            )));
        }
        if let Err(error) = self.server.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "out of memory: the server's queries together need more than server_memory_bytes_max ({error})"
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_bounded_by_its_limit_and_by_the_server() {
        let server = server_pool(1000);
        let first: Arc<dyn MemoryPool> = Arc::new(SessionPool::new(server.clone(), 600));
        let second: Arc<dyn MemoryPool> = Arc::new(SessionPool::new(server.clone(), 600));
        let a = MemoryConsumer::new("a").register(&first);
        let b = MemoryConsumer::new("b").register(&second);
        a.try_grow(600).unwrap();
        // Past the session's own limit.
        assert!(a.try_grow(1).unwrap_err().to_string().contains("query_memory_bytes_max"));
        // Within the second session's limit, past the server's.
        b.try_grow(400).unwrap();
        assert!(b.try_grow(1).unwrap_err().to_string().contains("server_memory_bytes_max"));
        assert_eq!((first.reserved(), second.reserved(), server.reserved()), (600, 400, 1000));
        // Freed memory is free for both.
        a.shrink(300);
        b.try_grow(200).unwrap();
        assert_eq!((first.reserved(), second.reserved(), server.reserved()), (300, 600, 900));
        drop(a);
        drop(b);
        assert_eq!(server.reserved(), 0);
    }
}
