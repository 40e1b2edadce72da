//! The bytes under a connection: plain TCP, or TLS after an `SSLRequest`.
//!
//! A client asks for TLS with an `SSLRequest` before its startup packet (or for GSS encryption
//! with a `GSSENCRequest`, always refused with `N`). The server answers `S` and the TLS handshake
//! follows on the same socket; without a certificate it answers `N` and the client goes on in
//! plain text or gives up (`sslmode=require`). Those first packets are read straight from the
//! socket, without a buffer, so that no byte a client sent before the handshake can be taken as
//! if it had come through TLS (CVE-2021-23214).
//!
//! The read and write halves are enums rather than boxed trait objects: a plain connection pays
//! one match per read or write, and keeps tokio's lock-free split of a `TcpStream`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use streamhouse_engine::auth::tls::{Tls, TlsSession};
use streamhouse_engine::EngineError;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::messages::{read_startup_packet, Output, ReadError};

pub(crate) const SSL_REQUEST: i32 = 80_877_103;
pub(crate) const GSSENC_REQUEST: i32 = 80_877_104;
/// Startup packets are small; a larger one is an attack or garbage.
pub(crate) const STARTUP_PACKET_BYTES_MAX: usize = 10_000;

/// TLS as the Postgres listener offers it.
pub(crate) struct PgTls {
    tls: Arc<Tls>,
    acceptor: TlsAcceptor,
}

impl PgTls {
    pub(crate) fn new(tls: Arc<Tls>) -> Result<Self, String> {
        // ALPN "postgresql" is what libpq 17 and later offer; older clients offer none.
        let config = tls.server_config(&[b"postgresql"])?;
        Ok(Self { tls, acceptor: TlsAcceptor::from(config) })
    }
}

pub(crate) enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

pub(crate) enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(half) => Pin::new(half).poll_read(cx, buf),
            ReadHalf::Tls(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(half) => Pin::new(half).poll_write(cx, buf),
            WriteHalf::Tls(half) => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(half) => Pin::new(half).poll_flush(cx),
            WriteHalf::Tls(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(half) => Pin::new(half).poll_shutdown(cx),
            WriteHalf::Tls(half) => Pin::new(half).poll_shutdown(cx),
        }
    }
}

/// A connection after its encryption was negotiated.
pub(crate) struct Negotiated {
    pub reader: ReadHalf,
    pub writer: WriteHalf,
    /// What the TLS handshake established; `None` for a plain connection.
    pub tls: Option<TlsSession>,
    /// The startup (or cancel) packet, when it was read before any TLS.
    pub first_packet: Option<bytes::BytesMut>,
}

/// Reads the packets that come before the startup packet and starts TLS if the client asks and
/// the server has a certificate. `None`: the connection is over (the peer left, the handshake
/// failed, or a malformed packet was answered with an error here).
pub(crate) async fn negotiate(mut stream: TcpStream, tls: Option<&PgTls>) -> Option<Negotiated> {
    let (mut asked_ssl, mut asked_gss) = (false, false);
    loop {
        let packet = match read_startup_packet(&mut stream, STARTUP_PACKET_BYTES_MAX).await {
            Ok(packet) => packet,
            Err(ReadError::BadLength(length)) => {
                let error = EngineError::Sqlstate { code: "08P01", message: format!("invalid length of startup packet: {length}") };
                refuse(&mut stream, &error).await;
                return None;
            }
            Err(_) => return None,
        };
        let code = packet.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match code {
            // A client asks each at most once (libpq: GSS first, then SSL).
            Some(SSL_REQUEST) if !asked_ssl => {
                asked_ssl = true;
                let Some(tls) = tls else {
                    stream.write_all(b"N").await.ok()?;
                    continue;
                };
                stream.write_all(b"S").await.ok()?;
                return start_tls(stream, tls).await;
            }
            Some(GSSENC_REQUEST) if !asked_gss => {
                asked_gss = true;
                stream.write_all(b"N").await.ok()?;
            }
            _ => {
                let (read, write) = stream.into_split();
                return Some(Negotiated {
                    reader: ReadHalf::Plain(read),
                    writer: WriteHalf::Plain(write),
                    tls: None,
                    first_packet: Some(packet),
                });
            }
        }
    }
}

async fn start_tls(stream: TcpStream, tls: &PgTls) -> Option<Negotiated> {
    let peer = stream.peer_addr().ok();
    let stream = match tls.acceptor.accept(stream).await {
        Ok(stream) => stream,
        Err(error) => {
            // A client that does not trust our certificate ends here too.
            tracing::info!(?peer, %error, "TLS handshake failed");
            return None;
        }
    };
    let session = TlsSession::new(&tls.tls, stream.get_ref().1.peer_certificates());
    let (read, write) = tokio::io::split(stream);
    Some(Negotiated { reader: ReadHalf::Tls(read), writer: WriteHalf::Tls(write), tls: Some(session), first_packet: None })
}

async fn refuse(stream: &mut TcpStream, error: &EngineError) {
    let mut out = Output::default();
    out.error("FATAL", error.sqlstate(), &error.to_string());
    let _ = stream.write_all(&out.buffer).await;
}
