//! The HTTP endpoints: `GET /health` and `GET /metrics` (Prometheus text format). A small
//! HTTP/1.1 responder: one request per connection, bounded header size. With a TLS certificate
//! configured it speaks HTTPS only.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use streamhouse_engine::Engine;
use streamhouse_flight::FlightMetrics;
use streamhouse_pgwire::PgMetrics;
use streamhouse_engine::auth::tls::Tls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Most bytes of request head read before answering 431.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// A client that sends no complete request head within this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request may read.
#[derive(Clone)]
pub struct Sources {
    pub engine: Arc<Engine>,
    pub pg: Arc<PgMetrics>,
    pub flight: Arc<FlightMetrics>,
}

pub async fn serve(listener: TcpListener, sources: Sources, tls: Option<Arc<Tls>>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let acceptor = match tls {
        Some(tls) => Some(tokio_rustls::TlsAcceptor::from(tls.server_config(&[b"http/1.1"]).map_err(anyhow::Error::msg)?)),
        None => None,
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let sources = sources.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, async move {
                            match acceptor {
                                None => handle(stream, sources).await,
                                // A failed handshake (a plain request, an untrusted certificate)
                                // just ends the connection.
                                Some(acceptor) => handle(acceptor.accept(stream).await?, sources).await,
                            }
                        })
                        .await;
                    });
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, sources: Sources) -> std::io::Result<()> {
    let Sources { engine, pg, flight } = sources;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..read]);
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request head too large\n").await;
        }
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", "only GET is supported\n").await;
    }
    match path.split('?').next().unwrap_or("") {
        "/health" => respond(&mut stream, "200 OK", "text/plain", "ok\n").await,
        "/metrics" => {
            let mut body = String::new();
            engine.render_metrics(&mut body);
            let _ = writeln!(
                body,
                "# HELP streamhouse_active_connections Open Postgres connections.\n# TYPE streamhouse_active_connections gauge\nstreamhouse_active_connections {}",
                pg.connections.get()
            );
            let _ = writeln!(
                body,
                "# HELP streamhouse_pg_connections_refused_total Postgres connections refused at pg_connections_max.\n# TYPE streamhouse_pg_connections_refused_total counter\nstreamhouse_pg_connections_refused_total {}\n# HELP streamhouse_pg_startups_timed_out_total Postgres connections closed for not completing startup within pg_startup_timeout_ms.\n# TYPE streamhouse_pg_startups_timed_out_total counter\nstreamhouse_pg_startups_timed_out_total {}",
                pg.connections_refused.get(),
                pg.startups_timed_out.get()
            );
            flight.render(&mut body);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
    }
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
