//! The authentication exchange of the startup phase: what the engine's [`Challenge`] asks of a
//! connection, in PostgreSQL's messages (`AuthenticationSASL`, `SASLInitialResponse`,
//! `AuthenticationSASLContinue`, `SASLResponse`, `AuthenticationSASLFinal`, or
//! `AuthenticationCleartextPassword` and `PasswordMessage`).

use std::net::IpAddr;
use std::time::Duration;

use streamhouse_engine::auth::tls::TlsSession;
use streamhouse_engine::auth::{authentication_failed, scram, Challenge, Step};
use streamhouse_engine::{Engine, EngineError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::messages::{read_message, BodyReader, Output, ReadError};

/// Largest message of the exchange: PostgreSQL's clients send under 200 bytes; a password
/// message carries the password.
const AUTHENTICATION_MESSAGE_BYTES_MAX: usize = 8 * 1024;

/// How long a failed authentication waits before it is answered, so that guessing passwords
/// over one connection after another is slow (PostgreSQL's `auth_delay` does the same).
const FAILURE_DELAY: Duration = Duration::from_millis(200);

/// Why the exchange did not let the connection in.
pub(crate) enum Refusal {
    /// The peer went away.
    Gone,
    /// Report this (FATAL) and close.
    Error(EngineError),
}

fn protocol_violation(message: impl Into<String>) -> Refusal {
    Refusal::Error(EngineError::Sqlstate { code: "08P01", message: message.into() })
}

/// Runs the exchange the engine asks for `user` connecting from `peer` (over TLS when `tls`).
/// `Ok` means the client proved it is `user` (or its address or certificate is trusted); the
/// role's existence and LOGIN are checked after this, by the session, as PostgreSQL does.
pub(crate) async fn authenticate<R, W>(
    reader: &mut R,
    writer: &mut W,
    engine: &Engine,
    user: &str,
    peer: IpAddr,
    tls: Option<&TlsSession>,
) -> Result<(), Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let outcome = match engine.challenge(user, peer, tls) {
        Challenge::Trusted => return Ok(()),
        Challenge::Refused(error) => {
            tokio::time::sleep(FAILURE_DELAY).await;
            return Err(Refusal::Error(error));
        }
        Challenge::Scram(exchange) => scram_exchange(reader, writer, exchange).await,
        Challenge::Password(verifier) => cleartext_password(reader, writer, verifier).await,
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(Refusal::Error(EngineError::Internal(reason))) => {
            // The reason is for the log only: the client learns nothing about which part failed.
            tracing::warn!(user, %peer, reason, "password authentication failed");
            tokio::time::sleep(FAILURE_DELAY).await;
            Err(Refusal::Error(authentication_failed(user)))
        }
        Err(other) => Err(other),
    }
}

/// A failure of the proof itself (as opposed to a broken protocol), logged with its reason.
fn failed(reason: impl Into<String>) -> Refusal {
    Refusal::Error(EngineError::Internal(reason.into()))
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, out: Output) -> Result<(), Refusal> {
    writer.write_all(&out.buffer).await.map_err(|_| Refusal::Gone)
}

/// The body of the next `p` message (every response of the exchange has that type).
async fn read_response<R: AsyncRead + Unpin>(reader: &mut R, what: &str) -> Result<bytes::BytesMut, Refusal> {
    match read_message(reader, AUTHENTICATION_MESSAGE_BYTES_MAX).await {
        Ok(message) if message.tag == b'p' => Ok(message.body),
        Ok(message) => Err(protocol_violation(format!("expected {what} response, got message type {}", message.tag))),
        Err(ReadError::BadLength(length)) => Err(protocol_violation(format!("invalid {what} response length {length}"))),
        Err(ReadError::Closed | ReadError::Io(_)) => Err(Refusal::Gone),
    }
}

async fn scram_exchange<R, W>(reader: &mut R, writer: &mut W, mut exchange: scram::ServerExchange) -> Result<(), Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Output::default();
    out.authentication_sasl(exchange.mechanisms());
    send(writer, out).await?;
    // SASLInitialResponse: the mechanism, then the client's first message with its length.
    let body = read_response(reader, "SASL").await?;
    let mut initial = BodyReader::new(&body);
    let mechanism = initial.cstring("SASL mechanism").map_err(|e| protocol_violation(e.0))?;
    if !exchange.choose(mechanism) {
        return Err(protocol_violation("client selected an invalid SASL authentication mechanism"));
    }
    let length = initial.i32("SASL data length").map_err(|e| protocol_violation(e.0))?;
    let length = usize::try_from(length).map_err(|_| protocol_violation("malformed SASL message: no client-first-message"))?;
    let client_first = initial.bytes(length, "SASL data").map_err(|e| protocol_violation(e.0))?;
    let Step::Continue(server_first) = exchange.step(client_first).map_err(|e| failed(e.0))? else {
        return Err(failed("SCRAM exchange ended early"));
    };
    let mut out = Output::default();
    out.authentication_sasl_data(11, server_first.as_bytes());
    send(writer, out).await?;
    let client_final = read_response(reader, "SASL").await?;
    let Step::Success(server_final) = exchange.step(&client_final).map_err(|e| failed(e.0))? else {
        return Err(failed("SCRAM exchange did not end"));
    };
    let mut out = Output::default();
    out.authentication_sasl_data(12, server_final.as_bytes());
    send(writer, out).await
}

async fn cleartext_password<R, W>(reader: &mut R, writer: &mut W, verifier: Option<scram::Verifier>) -> Result<(), Refusal>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Output::default();
    out.authentication_cleartext_password();
    send(writer, out).await?;
    let body = read_response(reader, "password").await?;
    let password = BodyReader::new(&body).cstring("password").map_err(|e| protocol_violation(e.0))?;
    let password = std::str::from_utf8(password).map_err(|_| failed("the password is not valid UTF-8"))?;
    match verifier {
        Some(verifier) if verifier.check_password(password) => Ok(()),
        Some(_) => Err(failed("wrong password")),
        None => Err(failed("the role does not exist or has no password")),
    }
}
