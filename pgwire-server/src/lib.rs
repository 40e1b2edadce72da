//! The Postgres wire protocol front end of StreamHouse (protocol 3.0).
//!
//! This crate owns the byte-level protocol: startup and cancel requests, the simple and extended
//! query protocols, COPY sub-protocols, Postgres type OIDs and the binary format of values. It
//! turns messages into engine calls and engine results into messages. It must not reach storage
//! or the catalog: everything goes through a `streamhouse_engine::Session`.

#![forbid(unsafe_code)]

mod authentication;
mod connection;
mod messages;
mod stream;
pub mod types;

use std::collections::HashMap;
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex};

use streamhouse_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Limits of the Postgres front end.
#[derive(Debug, Clone)]
pub struct PgServerConfig {
    /// Largest frontend message accepted; a larger one ends the connection (it cannot be
    /// skipped safely).
    pub message_bytes_max: usize,
    /// Output is written to the socket once this much is buffered, so a slow client slows the
    /// query down instead of growing memory.
    pub output_flush_bytes: usize,
    /// Most connections at once, those still in their startup phase included (PostgreSQL's
    /// `max_connections`); one more is refused with `53300` once it has said who it is (a
    /// cancel request is still served).
    pub connections_max: usize,
    /// How long a connection may take to send its startup packet (PostgreSQL's
    /// `authentication_timeout`): one that sends nothing is closed then, and its slot freed.
    pub startup_timeout: std::time::Duration,
    /// The certificate to answer `SSLRequest` with; without one the answer is `N`.
    pub tls: Option<Arc<streamhouse_engine::auth::tls::Tls>>,
}

impl Default for PgServerConfig {
    fn default() -> Self {
        Self {
            message_bytes_max: 64 * 1024 * 1024,
            output_flush_bytes: 64 * 1024,
            connections_max: 100,
            startup_timeout: std::time::Duration::from_secs(60),
            tls: None,
        }
    }
}

/// Counters of the front end.
#[derive(Debug, Default)]
pub struct PgMetrics {
    pub connections: streamhouse_engine::metrics::Gauge,
    /// Connections refused at `connections_max`.
    pub connections_refused: streamhouse_engine::metrics::Counter,
    /// Connections closed for not completing their startup in time.
    pub startups_timed_out: streamhouse_engine::metrics::Counter,
}

pub(crate) struct Shared {
    engine: Arc<Engine>,
    config: PgServerConfig,
    cancels: Mutex<HashMap<(i32, i32), watch::Sender<u64>>>,
    next_process_id: AtomicI32,
    metrics: Arc<PgMetrics>,
    tls: Option<stream::PgTls>,
}

/// Accepts connections on `listener` until `shutdown` turns true; each connection runs in its
/// own task.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: PgServerConfig,
    metrics: Arc<PgMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = match config.tls.clone().map(stream::PgTls::new).transpose() {
        Ok(tls) => tls,
        Err(error) => {
            // Tls::load built a configuration from the same files already, so this is not
            // expected; serving without the TLS that was asked for would be worse than not at all.
            tracing::error!(%error, "cannot configure TLS for the Postgres listener; it does not serve");
            return;
        }
    };
    let shared = Arc::new(Shared {
        engine,
        tls,
        config,
        cancels: Mutex::new(HashMap::new()),
        next_process_id: AtomicI32::new(1000),
        metrics,
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.config.connections_max));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "postgres connection");
                    // Without a slot the connection is still read up to its startup packet:
                    // a cancel request is served, anything else refused with 53300.
                    let slot = slots.clone().try_acquire_owned().ok();
                    tokio::spawn(connection::serve_connection(stream, shared.clone(), slot));
                }
                Err(error) => {
                    // Out of file descriptors and the like: log, and keep accepting.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}
