//! The Arrow Flight and Flight SQL front end of StreamHouse (bulk reads and writes, ADBC, the
//! Flight SQL JDBC driver), on `127.0.0.1:8815` by default.
//!
//! It owns the gRPC service: Flight SQL commands mapped onto engine sessions (`sql.rs`), plain
//! Flight reads and writes of topics by path and ticket (`plain.rs`), and the registries of
//! prepared statements and running queries. Like every front end it reaches data only through
//! the engine ([`streamhouse_engine::Engine`] and its sessions), never storage or the catalog
//! directly; a row written here is visible to pgwire at once, and the other way round.

#![forbid(unsafe_code)]

mod auth;
mod metadata;
mod plain;
mod prepared;
mod queries;
mod server;
mod sql;
mod status;
mod ticket;

use std::sync::Arc;

use streamhouse_engine::metrics::Counter;
use streamhouse_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use server::FlightServer;
pub use ticket::PlainTicket;

/// Limits of the Flight front end.
#[derive(Debug, Clone)]
pub struct FlightConfig {
    /// Largest gRPC message accepted from a client (a DoPut batch, a bound parameter set).
    pub message_bytes_max: usize,
    /// Result batches are cut so that each message stays about this size: well under the
    /// 16 MiB that ADBC and gRPC clients accept by default.
    pub flight_data_bytes_max: usize,
    /// Concurrent requests (HTTP/2 streams) on one client connection.
    pub streams_per_connection_max: u32,
    /// Bytes a client may send on one request (HTTP/2 stream), and on its connection, before the
    /// server acknowledges them. HTTP/2's default of 64 KiB makes a DoPut of 1 MiB batches wait
    /// on round trips; see docs/benchmarks.md.
    pub receive_window_bytes: u32,
    /// A DoPut's batches handed to the log and waiting for their fsync at once (they share
    /// it); each is acknowledged, in order, once durable.
    pub do_put_appends_in_flight: usize,
    /// Prepared statements held open at once, over every client; past it the oldest is closed.
    pub prepared_statements_max: usize,
    /// Queries remembered for cancellation between their GetFlightInfo and the end of their
    /// DoGet; past it the oldest can no longer be cancelled by id.
    pub cancellable_queries_max: usize,
    /// How long a bearer token from `Handshake` stays valid.
    pub token_lifetime: std::time::Duration,
    /// Bearer tokens held at once; past it the one expiring first is forgotten.
    pub tokens_max: usize,
    /// The certificate to speak TLS with (`grpc+tls://`); without one the listener is plain.
    pub tls: Option<Arc<streamhouse_engine::auth::tls::Tls>>,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            message_bytes_max: 64 * 1024 * 1024,
            flight_data_bytes_max: 4 * 1024 * 1024,
            streams_per_connection_max: 100,
            receive_window_bytes: 8 * 1024 * 1024,
            do_put_appends_in_flight: 4,
            prepared_statements_max: 4096,
            cancellable_queries_max: 16384,
            token_lifetime: std::time::Duration::from_secs(24 * 60 * 60),
            tokens_max: 100_000,
            tls: None,
        }
    }
}

/// Counters of the Flight front end, for `/metrics`.
#[derive(Debug, Default)]
pub struct FlightMetrics {
    pub requests: Counter,
    pub request_errors: Counter,
    pub rows_sent: Counter,
    /// Segment batches sent as stored: compressed IPC not decoded on the way.
    pub stored_batches_sent: Counter,
    pub rows_received: Counter,
    /// DoPut batches stored as the client sent them (LZ4-compressed IPC, not encoded again).
    pub stored_batches_received: Counter,
}

impl FlightMetrics {
    /// Prometheus text of these counters.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, value) in [
            ("streamhouse_flight_requests_total", "Flight and Flight SQL requests received.", self.requests.get()),
            ("streamhouse_flight_request_errors_total", "Flight requests answered with an error status.", self.request_errors.get()),
            ("streamhouse_flight_rows_sent_total", "Rows sent to Flight clients.", self.rows_sent.get()),
            (
                "streamhouse_flight_stored_batches_sent_total",
                "Segment batches sent to Flight clients as stored (LZ4-compressed IPC, not decoded).",
                self.stored_batches_sent.get(),
            ),
            ("streamhouse_flight_rows_received_total", "Rows appended from Flight clients.", self.rows_received.get()),
            (
                "streamhouse_flight_stored_batches_received_total",
                "DoPut batches stored as the client sent them (LZ4-compressed IPC, not encoded again).",
                self.stored_batches_received.get(),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
    }
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    pub config: FlightConfig,
    pub metrics: Arc<FlightMetrics>,
    pub prepared: prepared::PreparedStatements,
    pub queries: Arc<queries::Queries>,
    pub tokens: auth::Tokens,
    pub shutdown: watch::Receiver<bool>,
    pub sql_info: arrow_flight::sql::metadata::SqlInfoData,
    pub type_info: arrow_flight::sql::metadata::XdbcTypeInfoData,
}

/// Serves Flight and Flight SQL on `listener` until `shutdown` turns true; then streams still
/// running end with an `UNAVAILABLE` status and the server returns once they have.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: FlightConfig,
    metrics: Arc<FlightMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use arrow_flight::flight_service_server::FlightServiceServer;
    let server = FlightServer::new(engine, config.clone(), metrics, shutdown.clone())?;
    let service = FlightServiceServer::new(server)
        .max_decoding_message_size(config.message_bytes_max)
        .max_encoding_message_size(config.message_bytes_max.max(config.flight_data_bytes_max * 2));
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    });
    let mut stop = shutdown;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let mut tls_config = ServerTlsConfig::new().identity(Identity::from_pem(tls.certificate_pem(), tls.key_pem()));
        if let Some(authority) = tls.client_ca_pem() {
            // As on the Postgres port, a client certificate is optional.
            tls_config = tls_config.client_ca_root(Certificate::from_pem(authority)).client_auth_optional(true);
        }
        builder = builder.tls_config(tls_config)?;
    }
    builder
        .max_concurrent_streams(Some(config.streams_per_connection_max))
        .initial_stream_window_size(Some(config.receive_window_bytes))
        .initial_connection_window_size(Some(config.receive_window_bytes.saturating_mul(2)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        })
        .await?;
    Ok(())
}
