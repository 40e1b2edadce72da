//! One client connection: startup, then the simple and extended query protocols, COPY, and
//! cancellation, over a session of the engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::BufMut;
use futures::StreamExt;
use streamhouse_engine::arrow::datatypes::SchemaRef;
use streamhouse_engine::arrow::record_batch::RecordBatch;
use streamhouse_engine::datafusion::common::ScalarValue;
use streamhouse_engine::datafusion::execution::SendableRecordBatchStream;
use streamhouse_engine::text::output::{is_null, write_text};
use streamhouse_engine::{
    split_statements, CopyEncoder, CopyIn, EngineError, PreparedStatement, QueryOutput, Session, SERVER_VERSION,
};
use tokio::io::{AsyncWriteExt, BufReader};
use streamhouse_engine::auth::tls::TlsSession;
use streamhouse_engine::auth::audit::{AuditEntry, AuditKind, Client};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::authentication::{authenticate, Refusal};
use crate::messages::{format_for, read_message, read_startup_packet, BodyReader, Malformed, Output, ReadError};
use crate::stream::{negotiate, Negotiated, ReadHalf, WriteHalf, STARTUP_PACKET_BYTES_MAX};
use crate::types::{decode_parameter, oid, oid_for_data_type, write_binary};
use crate::Shared;

const PROTOCOL_VERSION_3: i32 = 196_608;
const CANCEL_REQUEST: i32 = 80_877_102;

/// What ends a statement early.
enum Interrupt {
    Canceled,
    Timeout,
}

/// A failure while serving: either an error to report (the session goes on) or the end of the
/// connection.
enum Failure {
    Statement(EngineError),
    Fatal { code: &'static str, message: String },
    Disconnected,
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Self {
        Failure::Statement(error)
    }
}

impl From<Malformed> for Failure {
    fn from(error: Malformed) -> Self {
        Failure::Fatal { code: "08P01", message: format!("invalid message format: {}", error.0) }
    }
}

impl From<std::io::Error> for Failure {
    fn from(_: std::io::Error) -> Self {
        Failure::Disconnected
    }
}

struct StatementEntry {
    /// `None` for an empty query string.
    prepared: Option<PreparedStatement>,
    param_oids: Vec<u32>,
}

enum PortalState {
    NotStarted,
    Rows { schema: SchemaRef, stream: SendableRecordBatchStream, pending: Option<(RecordBatch, usize)>, sent: u64, tag: &'static str },
    Done,
}

struct Portal {
    statement: Arc<StatementEntry>,
    params: Vec<ScalarValue>,
    result_formats: Vec<i16>,
    state: PortalState,
}

struct Connection {
    shared: Arc<Shared>,
    reader: BufReader<ReadHalf>,
    writer: WriteHalf,
    out: Output,
    session: Session,
    statements: HashMap<String, Arc<StatementEntry>>,
    portals: HashMap<String, Portal>,
    cancel: watch::Receiver<u64>,
    deadline: Option<Instant>,
}

/// Serves one TCP connection to its end.
pub async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, slot: Option<tokio::sync::OwnedSemaphorePermit>) {
    let _ = stream.set_nodelay(true);
    let Ok(peer) = stream.peer_addr() else {
        return; // gone already
    };
    let deadline = tokio::time::Instant::now() + shared.config.startup_timeout;
    let Ok(negotiated) = tokio::time::timeout_at(deadline, negotiate(stream, shared.tls.as_ref())).await else {
        shared.metrics.startups_timed_out.add(1);
        return;
    };
    let Some(Negotiated { reader, mut writer, tls, first_packet }) = negotiated else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let opening = Opening { has_slot: slot.is_some(), peer: peer.ip(), tls, first_packet };
    let started = tokio::time::timeout_at(deadline, startup(&mut reader, &mut writer, &shared, opening)).await;
    let startup = match started {
        Err(_) => {
            shared.metrics.startups_timed_out.add(1);
            return;
        }
        Ok(Ok(Some(startup))) => startup,
        Ok(Ok(None)) => return,
        Ok(Err(error)) => {
            if error.sqlstate() == TOO_MANY_CONNECTIONS {
                shared.metrics.connections_refused.add(1);
            }
            let mut out = Output::default();
            out.error("FATAL", error.sqlstate(), &error.to_string());
            let _ = writer.write_all(&out.buffer).await;
            return;
        }
    };
    let (session, key, cancel) = startup;
    shared.metrics.connections.increment();
    let mut connection = Connection {
        shared: shared.clone(),
        reader,
        writer,
        out: Output::default(),
        session,
        statements: HashMap::new(),
        portals: HashMap::new(),
        cancel,
        deadline: None,
    };
    connection.run().await;
    shared.metrics.connections.decrement();
    shared.cancels.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    drop(slot);
}

/// The bytes a string or binary value holds (0 for other types): what its text or binary form
/// is at least.
fn stored_bytes(column: &dyn streamhouse_engine::arrow::array::Array, row: usize) -> usize {
    use streamhouse_engine::arrow::array::AsArray;
    use streamhouse_engine::arrow::datatypes::DataType;
    match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(row).len(),
        DataType::LargeUtf8 => column.as_string::<i64>().value(row).len(),
        DataType::Utf8View => column.as_string_view().value(row).len(),
        DataType::Binary => column.as_binary::<i32>().value(row).len(),
        DataType::LargeBinary => column.as_binary::<i64>().value(row).len(),
        DataType::BinaryView => column.as_binary_view().value(row).len(),
        _ => 0,
    }
}

/// Most named prepared statements one connection may hold (each keeps its plan).
const PREPARED_STATEMENTS_MAX: usize = 10_000;

/// Most portals one connection may hold open (each may keep a running query's stream).
const PORTALS_MAX: usize = 1_000;

/// Largest value in a row (PostgreSQL's limit of a field, 1 GB).
const FIELD_BYTES_MAX: usize = (1 << 30) - 1;

/// Largest DataRow message: its length is an i32 (PostgreSQL's own rows stay under 1 GB).
const ROW_BYTES_MAX: usize = FIELD_BYTES_MAX;

/// PostgreSQL's SQLSTATE for a connection past `max_connections`.
const TOO_MANY_CONNECTIONS: &str = "53300";

type Startup = (Session, (i32, i32), watch::Receiver<u64>);

/// What is known of a connection when its startup packet is read.
struct Opening {
    /// Without a slot, a session is refused with `53300`.
    has_slot: bool,
    peer: std::net::IpAddr,
    tls: Option<TlsSession>,
    /// The startup packet if it was read during the negotiation (a plain connection).
    first_packet: Option<bytes::BytesMut>,
}

/// Negotiates the startup phase, after encryption was settled. `Ok(None)` means the connection
/// is done (a cancel request, or the peer went away).
async fn startup(
    reader: &mut BufReader<ReadHalf>,
    writer: &mut WriteHalf,
    shared: &Arc<Shared>,
    opening: Opening,
) -> Result<Option<Startup>, EngineError> {
    // A startup packet PostgreSQL could not read either: its protocol violation.
    let fatal = |message: &str| EngineError::Sqlstate { code: "08P01", message: format!("invalid startup packet layout: {message}") };
    let Opening { has_slot, peer, tls, first_packet } = opening;
    let packet = match first_packet {
        Some(packet) => packet,
        None => match read_startup_packet(reader, STARTUP_PACKET_BYTES_MAX).await {
            Ok(packet) => packet,
            Err(ReadError::BadLength(length)) => {
                return Err(EngineError::Sqlstate { code: "08P01", message: format!("invalid length of startup packet: {length}") })
            }
            Err(_) => return Ok(None),
        },
    };
    let mut body = BodyReader::new(&packet);
    let code = body.i32("protocol version").map_err(|e| fatal(&e.0))?;
    match code {
        // An SSLRequest or GSSENCRequest here (inside TLS, or a second one) falls to the
        // last arm, as in PostgreSQL.
        CANCEL_REQUEST => {
            let process_id = body.i32("process id").map_err(|e| fatal(&e.0))?;
            let secret = body.i32("secret key").map_err(|e| fatal(&e.0))?;
            if let Some(sender) = shared.cancels.lock().unwrap_or_else(|p| p.into_inner()).get(&(process_id, secret)) {
                sender.send_modify(|generation| *generation += 1);
            }
            return Ok(None);
        }
        PROTOCOL_VERSION_3 if !has_slot => {
            return Err(EngineError::Sqlstate { code: TOO_MANY_CONNECTIONS, message: "sorry, too many clients already".into() })
        }
        PROTOCOL_VERSION_3 => {}
        other => {
            return Err(EngineError::NotSupported(format!(
                "frontend protocol {}.{} (this server speaks 3.0)",
                other >> 16,
                other & 0xffff
            )))
        }
    }
    let mut parameters = Vec::new();
    loop {
        let name = body.cstring("startup parameter name").map_err(|e| fatal(&e.0))?;
        if name.is_empty() {
            break;
        }
        let value = body.cstring("startup parameter value").map_err(|e| fatal(&e.0))?;
        let name = String::from_utf8_lossy(name).to_string();
        let value = String::from_utf8_lossy(value).to_string();
        parameters.push((name, value));
    }
    let user = parameters.iter().find(|(n, _)| n == "user").map(|(_, v)| v.clone()).unwrap_or_default();
    if user.is_empty() {
        return Err(EngineError::Sqlstate { code: "28000", message: "no PostgreSQL user name specified in startup packet".into() });
    }
    let application = parameters.iter().find(|(n, _)| n == "application_name").map(|(_, v)| v.clone()).unwrap_or_default();
    let client = Client { address: peer.to_canonical().to_string(), protocol: "postgres" };
    let login_failed =
        |error: &EngineError| AuditEntry::of_user(AuditKind::LoginFailed, &user, client.clone(), &application, format!("{}: {error}", error.sqlstate()));
    let admitted = match authenticate(reader, writer, &shared.engine, &user, peer, tls.as_ref()).await {
        // A client that leaves during the exchange (psql does, to ask for the password) has not
        // failed a login.
        Err(Refusal::Gone) => return Ok(None),
        Err(Refusal::Error(error)) => Err(error),
        Ok(()) => shared.engine.new_session(&user),
    };
    let mut session = match admitted {
        Ok(session) => session,
        Err(error) => {
            shared.engine.audit(login_failed(&error)).await;
            return Err(error);
        }
    };
    session.set_client(client.clone());
    for (name, value) in &parameters {
        if matches!(name.as_str(), "user" | "database") {
            continue; // every database name maps to the one database
        }
        if let Err(error) = session.apply_startup_parameter(name, value) {
            // Authenticated, but refused all the same: a failed login.
            shared.engine.audit(login_failed(&error)).await;
            return Err(error);
        }
    }
    let how = match (tls.as_ref(), tls.as_ref().and_then(|t| t.certificate_role.as_deref())) {
        (Some(_), Some(_)) => "TLS, client certificate",
        (Some(_), None) => "TLS",
        (None, _) => "no TLS",
    };
    shared.engine.audit_login(session.audit_entry(AuditKind::Login, how.to_string())).await;
    let process_id = shared.next_process_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secret = random_secret(process_id);
    let (cancel_sender, cancel) = watch::channel(0u64);
    shared.cancels.lock().unwrap_or_else(|p| p.into_inner()).insert((process_id, secret), cancel_sender);

    let mut out = Output::default();
    out.authentication_ok();
    let reported = [
        ("server_version", SERVER_VERSION.to_string()),
        ("server_encoding", "UTF8".into()),
        ("client_encoding", "UTF8".into()),
        ("DateStyle", "ISO, MDY".into()),
        ("TimeZone", "UTC".into()),
        ("IntervalStyle", "postgres".into()),
        ("integer_datetimes", "on".into()),
        ("standard_conforming_strings", "on".into()),
        ("is_superuser", session.setting("is_superuser").unwrap_or("off").to_string()),
        ("session_authorization", user.clone()),
        ("application_name", session.setting("application_name").unwrap_or("").to_string()),
    ];
    for (name, value) in reported {
        out.parameter_status(name, &value);
    }
    out.backend_key_data(process_id, secret);
    out.ready_for_query(b'I');
    if writer.write_all(&out.buffer).await.is_err() {
        return Ok(None); // the peer went away
    }
    Ok(Some((session, (process_id, secret), cancel)))
}

fn random_secret(process_id: i32) -> i32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i32(process_id);
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    hasher.finish() as i32
}

/// Awaits `future` unless a cancel request arrives or `deadline` passes first.
async fn interruptible<T>(
    cancel: &mut watch::Receiver<u64>,
    deadline: Option<Instant>,
    future: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    let timeout = async move {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
            None => std::future::pending().await,
        }
    };
    let interrupt = tokio::select! {
        value = future => return Ok(value),
        changed = cancel.changed() => {
            if changed.is_err() {
                return Err(Failure::Disconnected);
            }
            Interrupt::Canceled
        }
        _ = timeout => Interrupt::Timeout,
    };
    Err(Failure::Statement(interrupt_error(interrupt)))
}

/// Fails if a cancel request arrived or `deadline` passed, without waiting.
fn check_interrupt(cancel: &mut watch::Receiver<u64>, deadline: Option<Instant>) -> Result<(), Failure> {
    match cancel.has_changed() {
        Err(_) => return Err(Failure::Disconnected),
        Ok(true) => {
            cancel.borrow_and_update();
            return Err(Failure::Statement(interrupt_error(Interrupt::Canceled)));
        }
        Ok(false) => {}
    }
    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
        return Err(Failure::Statement(interrupt_error(Interrupt::Timeout)));
    }
    Ok(())
}

fn interrupt_error(interrupt: Interrupt) -> EngineError {
    match interrupt {
        Interrupt::Canceled => EngineError::Canceled,
        Interrupt::Timeout => EngineError::Sqlstate {
            code: "57014",
            message: "canceling statement due to statement timeout".into(),
        },
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Failure> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Failure::Statement(EngineError::Sqlstate {
            code: "22021",
            message: format!("invalid byte sequence for encoding \"UTF8\" in {what}"),
        })
    })
}

impl Connection {
    async fn run(&mut self) {
        // In the extended protocol an error discards messages until Sync.
        let mut skipping_to_sync = false;
        loop {
            let message = match read_message(&mut self.reader, self.shared.config.message_bytes_max).await {
                Ok(message) => message,
                Err(ReadError::BadLength(length)) => {
                    self.out.error(
                        "FATAL",
                        "08P01",
                        &format!(
                            "invalid message length {length} (limit is message_bytes_max = {} bytes)",
                            self.shared.config.message_bytes_max
                        ),
                    );
                    let _ = self.flush().await;
                    return;
                }
                Err(ReadError::Io(error)) => {
                    tracing::debug!(%error, "connection read failed");
                    return;
                }
                Err(ReadError::Closed) => return,
            };
            if skipping_to_sync && message.tag != b'S' && message.tag != b'X' {
                continue;
            }
            tracing::trace!(tag = %(message.tag as char), bytes = message.body.len(), "frontend message");
            let extended = matches!(message.tag, b'P' | b'B' | b'D' | b'E' | b'C' | b'H');
            let result = match message.tag {
                b'Q' => self.simple_query(&message.body).await,
                b'P' => self.parse(&message.body).await,
                b'B' => self.bind(&message.body),
                b'D' => self.describe(&message.body),
                b'E' => self.execute(&message.body).await,
                b'C' => self.close(&message.body),
                b'H' => self.flush().await.map_err(Failure::from),
                b'S' => {
                    skipping_to_sync = false;
                    if self.session.transaction_status() == b'I' {
                        self.portals.clear();
                    }
                    self.ready_for_query();
                    self.flush().await.map_err(Failure::from)
                }
                b'X' => return,
                // Stray COPY messages outside COPY are ignored, as Postgres does.
                b'd' | b'c' | b'f' => Ok(()),
                other => Err(Failure::Fatal {
                    code: "08P01",
                    message: format!("invalid frontend message type {other}"),
                }),
            };
            match result {
                Ok(()) => {}
                Err(Failure::Statement(error)) => {
                    self.report(&error);
                    if extended {
                        skipping_to_sync = true;
                        // Clients that sent Flush rather than Sync wait for this error now.
                        if self.flush().await.is_err() {
                            return;
                        }
                    }
                }
                Err(Failure::Fatal { code, message }) => {
                    self.out.error("FATAL", code, &message);
                    let _ = self.flush().await;
                    return;
                }
                Err(Failure::Disconnected) => return,
            }
            if self.out.buffer.len() >= self.shared.config.output_flush_bytes && self.flush().await.is_err() {
                return;
            }
        }
    }

    fn report(&mut self, error: &EngineError) {
        self.session.note_failure();
        self.out.error("ERROR", error.sqlstate(), &error.to_string());
    }

    fn ready_for_query(&mut self) {
        self.out.ready_for_query(self.session.transaction_status());
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.buffer.is_empty() {
            self.writer.write_all(&self.out.buffer).await?;
            self.out.buffer.clear();
        }
        Ok(())
    }

    async fn flush_if_large(&mut self) -> Result<(), Failure> {
        if self.out.buffer.len() >= self.shared.config.output_flush_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Starts the clock and the cancel watch for one statement.
    fn begin_statement(&mut self) {
        self.cancel.borrow_and_update();
        self.deadline = self.session.statement_timeout().map(|t| Instant::now() + t);
    }

    /// Awaits `future`, unless the statement is cancelled or times out first.
    async fn interruptible<T>(&mut self, future: impl std::future::Future<Output = T>) -> Result<T, Failure> {
        interruptible(&mut self.cancel, self.deadline, future).await
    }

    /// In a failed transaction block only the end of the block (or a rollback to a savepoint)
    /// is accepted; the session leaves the failed state when it runs it.
    fn check_failed_transaction(&self, sql: &str) -> Result<(), Failure> {
        if self.session.transaction_status() != b'E' {
            return Ok(());
        }
        let first = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        if matches!(first.as_str(), "ROLLBACK" | "ABORT" | "COMMIT" | "END") {
            return Ok(());
        }
        Err(Failure::Statement(EngineError::Sqlstate {
            code: "25P02",
            message: "current transaction is aborted, commands ignored until end of transaction block".into(),
        }))
    }

    async fn simple_query(&mut self, body: &[u8]) -> Result<(), Failure> {
        let mut reader = BodyReader::new(body);
        let sql = utf8(reader.cstring("query string")?, "query string");
        let result = match sql {
            Ok(sql) => self.run_simple(&sql).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {}
            Err(Failure::Statement(error)) => self.report(&error),
            Err(other) => return Err(other),
        }
        self.ready_for_query();
        self.flush().await?;
        Ok(())
    }

    async fn run_simple(&mut self, sql: &str) -> Result<(), Failure> {
        tracing::debug!(sql = %streamhouse_engine::auth::loggable(&sql), "simple query");
        let statements = split_statements(sql)?;
        if statements.is_empty() {
            self.out.simple(b'I'); // EmptyQueryResponse
            return Ok(());
        }
        for statement in statements {
            self.check_failed_transaction(&statement)?;
            self.begin_statement();
            let prepared = self.session.prepare(&statement).await?;
            let output = self.execute_prepared(&prepared, Vec::new()).await?;
            self.send_output(output, &[], 0).await?;
        }
        Ok(())
    }

    async fn execute_prepared(&mut self, prepared: &PreparedStatement, params: Vec<ScalarValue>) -> Result<QueryOutput, Failure> {
        let output = interruptible(&mut self.cancel, self.deadline, self.session.execute(prepared, params)).await?;
        Ok(output?)
    }

    /// Sends what a statement produced. `max_rows` 0 means all; returns the portal state to keep
    /// when rows remain.
    async fn send_output(&mut self, output: QueryOutput, formats: &[i16], max_rows: u64) -> Result<Option<PortalState>, Failure> {
        match output {
            QueryOutput::Empty => {
                self.out.simple(b'I');
                Ok(None)
            }
            QueryOutput::Command { tag } => {
                self.out.command_complete(&tag);
                Ok(None)
            }
            QueryOutput::Rows { schema, stream, tag } => {
                // Only the simple protocol gets here with rows; the extended one described them.
                self.out.row_description(&schema, formats);
                let state = PortalState::Rows { schema, stream, pending: None, sent: 0, tag };
                self.stream_rows(state, formats, max_rows).await
            }
            QueryOutput::CopyIn(copy) => {
                self.copy_in(copy).await?;
                Ok(None)
            }
            QueryOutput::CopyOut { schema, stream, encoder } => {
                self.copy_out(schema, stream, encoder).await?;
                Ok(None)
            }
        }
    }

    /// Sends DataRows from a running result until it ends or `max_rows` are sent.
    async fn stream_rows(&mut self, mut state: PortalState, formats: &[i16], max_rows: u64) -> Result<Option<PortalState>, Failure> {
        let PortalState::Rows { schema, stream, pending, sent, tag } = &mut state else { return Ok(None) };
        let mut sent_now = 0u64;
        let mut text = String::new();
        let mut binary = Vec::new();
        loop {
            let (batch, start) = match pending.take() {
                Some(pending) => pending,
                None => {
                    // Rows already encoded go out before waiting for more: a result that arrives
                    // slowly (a SUBSCRIBE) reaches the client as it comes.
                    let next = match futures::FutureExt::now_or_never(stream.next()) {
                        // A result whose batches are always ready never waits in
                        // `interruptible`: look for a cancel or the timeout here.
                        Some(next) => {
                            check_interrupt(&mut self.cancel, self.deadline)?;
                            next
                        }
                        None => {
                            self.flush().await?;
                            interruptible(&mut self.cancel, self.deadline, stream.next()).await?
                        }
                    };
                    match next {
                        None => break,
                        Some(batch) => (batch.map_err(EngineError::from)?, 0),
                    }
                }
            };
            let fields = schema.fields().clone();
            for row in start..batch.num_rows() {
                if max_rows > 0 && sent_now >= max_rows {
                    *pending = Some((batch, row));
                    self.out.simple(b's'); // PortalSuspended
                    return Ok(Some(state));
                }
                let at = self.out.begin_row(batch.num_columns());
                for (index, column) in batch.columns().iter().enumerate() {
                    if is_null(column.as_ref(), row) {
                        self.out.null_field();
                        continue;
                    }
                    // A string's size is known before it is written (and writing 1 GB first
                    // would take long).
                    let stored = stored_bytes(column, row);
                    let value: &[u8] = if stored > FIELD_BYTES_MAX {
                        &[0u8; 0][..]
                    } else if format_for(formats, index) == 1 {
                        binary.clear();
                        write_binary(&fields[index], column, row, &mut binary)?;
                        &binary
                    } else {
                        text.clear();
                        write_text(column, row, &mut text)?;
                        text.as_bytes()
                    };
                    if stored > FIELD_BYTES_MAX || value.len() > FIELD_BYTES_MAX || self.out.buffer.len() - at + 4 + value.len() > ROW_BYTES_MAX {
                        // The row's length could not be told in the message's i32: the row is
                        // taken back and the statement fails (rows before it went out).
                        self.out.buffer.truncate(at - 1);
                        return Err(EngineError::ProgramLimitExceeded(format!(
                            "a row of this result is larger than the {FIELD_BYTES_MAX} bytes PostgreSQL's protocol allows (column \"{}\": {} bytes)",
                            fields[index].name(),
                            value.len().max(stored)
                        ))
                        .into());
                    }
                    self.out.buffer.put_i32(value.len() as i32);
                    self.out.buffer.put_slice(value);
                }
                self.out.end_row(at);
                sent_now += 1;
                *sent += 1;
            }
            // Backpressure: a slow client slows the scan instead of filling memory.
            self.flush_if_large().await?;
        }
        let tag = match *tag {
            "SELECT" | "DESCRIBE" => format!("SELECT {sent}"),
            other => other.to_string(),
        };
        self.out.command_complete(&tag);
        Ok(None)
    }

    async fn copy_in(&mut self, mut copy: CopyIn) -> Result<(), Failure> {
        self.out.copy_response(b'G', copy.column_count());
        self.flush().await?;
        let mut failure: Option<EngineError> = None;
        loop {
            let message = match read_message(&mut self.reader, self.shared.config.message_bytes_max).await {
                Ok(message) => message,
                Err(ReadError::BadLength(length)) => {
                    return Err(Failure::Fatal { code: "08P01", message: format!("invalid message length {length} during COPY") })
                }
                Err(_) => return Err(Failure::Disconnected),
            };
            match message.tag {
                b'd' => {
                    if failure.is_none() {
                        if let Err(error) = copy.feed(&message.body) {
                            failure = Some(error);
                        }
                    }
                }
                b'c' => break,
                b'f' => {
                    let mut reader = BodyReader::new(&message.body);
                    let reason = String::from_utf8_lossy(reader.cstring("CopyFail message").unwrap_or(b"")).to_string();
                    return Err(Failure::Statement(EngineError::Sqlstate {
                        code: "57014",
                        message: format!("COPY from stdin failed: {reason}"),
                    }));
                }
                b'H' | b'S' => {}
                other => {
                    return Err(Failure::Fatal {
                        code: "08P01",
                        message: format!("unexpected message type {other} during COPY from stdin"),
                    })
                }
            }
        }
        if let Some(error) = failure {
            return Err(Failure::Statement(error));
        }
        let tag = self.interruptible(copy.finish()).await??;
        self.out.command_complete(&tag);
        Ok(())
    }

    async fn copy_out(&mut self, schema: SchemaRef, mut stream: SendableRecordBatchStream, encoder: CopyEncoder) -> Result<(), Failure> {
        self.out.copy_response(b'H', schema.fields().len());
        if let Some(header) = encoder.header(&schema) {
            self.out.copy_data(&header);
        }
        let mut rows = 0u64;
        loop {
            let next = match futures::FutureExt::now_or_never(stream.next()) {
                Some(next) => next,
                None => {
                    self.flush().await?;
                    self.interruptible(stream.next()).await?
                }
            };
            let Some(batch) = next else { break };
            let batch = batch.map_err(EngineError::from)?;
            rows += batch.num_rows() as u64;
            for row in 0..batch.num_rows() {
                let line = encoder.encode_row(&batch, row)?;
                self.out.copy_data(&line);
            }
            self.flush_if_large().await?;
        }
        self.out.simple(b'c'); // CopyDone
        self.out.command_complete(&format!("COPY {rows}"));
        Ok(())
    }

    async fn parse(&mut self, body: &[u8]) -> Result<(), Failure> {
        let mut reader = BodyReader::new(body);
        let name = utf8(reader.cstring("statement name")?, "statement name")?;
        let sql = utf8(reader.cstring("query string")?, "query string")?;
        tracing::debug!(statement = %name, sql = %streamhouse_engine::auth::loggable(&sql), "parse");
        let count = reader.i16("parameter type count")?;
        if count < 0 {
            return Err(Failure::Fatal { code: "08P01", message: "negative parameter type count".into() });
        }
        let mut declared = Vec::with_capacity(count as usize);
        for _ in 0..count {
            declared.push(reader.i32("parameter type")? as u32);
        }
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(Failure::Statement(EngineError::Sqlstate {
                code: "42P05",
                message: format!("prepared statement \"{name}\" already exists"),
            }));
        }
        self.check_failed_transaction(&sql)?;
        let statements = split_statements(&sql)?;
        let prepared = match statements.len() {
            0 => None,
            1 => Some(self.session.prepare(&statements[0]).await?),
            _ => {
                return Err(Failure::Statement(EngineError::Syntax(
                    "cannot insert multiple commands into a prepared statement".into(),
                )))
            }
        };
        let inferred = prepared.as_ref().map(|p| p.param_types.clone()).unwrap_or_default();
        let count = inferred.len().max(declared.len());
        let param_oids = (0..count)
            .map(|i| match declared.get(i) {
                Some(&oid) if oid != 0 => oid,
                _ => inferred.get(i).and_then(|t| t.as_ref()).map(oid_for_data_type).unwrap_or(oid::TEXT),
            })
            .collect();
        if !self.statements.contains_key(&name) && self.statements.len() >= PREPARED_STATEMENTS_MAX {
            return Err(Failure::Statement(EngineError::ProgramLimitExceeded(format!(
                "too many prepared statements in this session ({PREPARED_STATEMENTS_MAX}): close some (Close, DEALLOCATE) first"
            ))));
        }
        self.statements.insert(name, Arc::new(StatementEntry { prepared, param_oids }));
        self.out.simple(b'1'); // ParseComplete
        Ok(())
    }

    fn bind(&mut self, body: &[u8]) -> Result<(), Failure> {
        let mut reader = BodyReader::new(body);
        let portal = utf8(reader.cstring("portal name")?, "portal name")?;
        let name = utf8(reader.cstring("statement name")?, "statement name")?;
        let statement = self
            .statements
            .get(&name)
            .cloned()
            .ok_or_else(|| Failure::Statement(unknown_statement(&name)))?;
        let format_count = reader.i16("parameter format count")?.max(0) as usize;
        let mut param_formats = Vec::with_capacity(format_count);
        for _ in 0..format_count {
            param_formats.push(reader.i16("parameter format")?);
        }
        let value_count = reader.i16("parameter count")?.max(0) as usize;
        let expected = statement.prepared.as_ref().map(|p| p.param_types.len()).unwrap_or(0);
        if value_count != expected {
            return Err(Failure::Statement(EngineError::Syntax(format!(
                "bind message supplies {value_count} parameters, but prepared statement \"{name}\" requires {expected}"
            ))));
        }
        let mut params = Vec::with_capacity(value_count);
        for index in 0..value_count {
            let length = reader.i32("parameter length")?;
            let value = if length < 0 { None } else { Some(reader.bytes(length as usize, "parameter value")?) };
            let binary = match format_for(&param_formats, index) {
                0 => false,
                1 => true,
                other => {
                    return Err(Failure::Fatal { code: "08P01", message: format!("unsupported format code {other}") })
                }
            };
            let declared = statement.param_oids.get(index).copied().unwrap_or(0);
            let inferred = statement.prepared.as_ref().and_then(|p| p.param_types.get(index).cloned().flatten());
            let scalar = decode_parameter(value, binary, declared, inferred.as_ref())
                .map_err(|e| EngineError::InvalidText(format!("parameter ${}: {e}", index + 1)))?;
            params.push(scalar);
        }
        let result_count = reader.i16("result format count")?.max(0) as usize;
        let mut result_formats = Vec::with_capacity(result_count);
        for _ in 0..result_count {
            let format = reader.i16("result format")?;
            if format != 0 && format != 1 {
                return Err(Failure::Fatal { code: "08P01", message: format!("unsupported format code {format}") });
            }
            result_formats.push(format);
        }
        if !self.portals.contains_key(&portal) && self.portals.len() >= PORTALS_MAX {
            return Err(Failure::Statement(EngineError::ProgramLimitExceeded(format!(
                "too many open portals in this session ({PORTALS_MAX}): close some first"
            ))));
        }
        self.portals.insert(portal, Portal { statement, params, result_formats, state: PortalState::NotStarted });
        self.out.simple(b'2'); // BindComplete
        Ok(())
    }

    fn describe(&mut self, body: &[u8]) -> Result<(), Failure> {
        let mut reader = BodyReader::new(body);
        let kind = reader.u8("describe kind")?;
        let name = utf8(reader.cstring("describe name")?, "describe name")?;
        match kind {
            b'S' => {
                let statement = self.statements.get(&name).cloned().ok_or_else(|| Failure::Statement(unknown_statement(&name)))?;
                self.out.parameter_description(&statement.param_oids);
                match statement.prepared.as_ref().and_then(|p| p.result_schema.clone()) {
                    Some(schema) => self.out.row_description(&schema, &[]),
                    None => self.out.simple(b'n'), // NoData
                }
            }
            b'P' => {
                let portal = self.portals.get(&name).ok_or_else(|| Failure::Statement(unknown_portal(&name)))?;
                let formats = portal.result_formats.clone();
                match portal.statement.prepared.as_ref().and_then(|p| p.result_schema.clone()) {
                    Some(schema) => self.out.row_description(&schema, &formats),
                    None => self.out.simple(b'n'),
                }
            }
            other => return Err(Failure::Fatal { code: "08P01", message: format!("invalid DESCRIBE message subtype {other}") }),
        }
        Ok(())
    }

    async fn execute(&mut self, body: &[u8]) -> Result<(), Failure> {
        let mut reader = BodyReader::new(body);
        let name = utf8(reader.cstring("portal name")?, "portal name")?;
        let max_rows = reader.i32("max rows")?.max(0) as u64;
        let mut portal = self.portals.remove(&name).ok_or_else(|| Failure::Statement(unknown_portal(&name)))?;
        let formats = portal.result_formats.clone();
        let state = std::mem::replace(&mut portal.state, PortalState::Done);
        let next_state = match state {
            PortalState::Done => {
                // Postgres answers a finished portal with an empty completion.
                self.out.command_complete("SELECT 0");
                PortalState::Done
            }
            PortalState::Rows { .. } => {
                self.begin_statement();
                self.stream_rows(state, &formats, max_rows).await?.unwrap_or(PortalState::Done)
            }
            PortalState::NotStarted => {
                let Some(prepared) = portal.statement.prepared.clone() else {
                    self.out.simple(b'I');
                    self.portals.insert(name, portal);
                    return Ok(());
                };
                self.check_failed_transaction(&prepared.sql)?;
                self.begin_statement();
                let output = self.execute_prepared(&prepared, std::mem::take(&mut portal.params)).await?;
                // RowDescription was sent by Describe in the extended protocol.
                match output {
                    QueryOutput::Rows { schema, stream, tag } => {
                        let state = PortalState::Rows { schema, stream, pending: None, sent: 0, tag };
                        self.stream_rows(state, &formats, max_rows).await?.unwrap_or(PortalState::Done)
                    }
                    other => {
                        self.send_output(other, &formats, max_rows).await?;
                        PortalState::Done
                    }
                }
            }
        };
        portal.state = next_state;
        self.portals.insert(name, portal);
        Ok(())
    }

    fn close(&mut self, body: &[u8]) -> Result<(), Failure> {
        let mut reader = BodyReader::new(body);
        let kind = reader.u8("close kind")?;
        let name = utf8(reader.cstring("close name")?, "close name")?;
        match kind {
            b'S' => {
                self.statements.remove(&name);
            }
            b'P' => {
                self.portals.remove(&name);
            }
            other => return Err(Failure::Fatal { code: "08P01", message: format!("invalid CLOSE message subtype {other}") }),
        }
        self.out.simple(b'3'); // CloseComplete
        Ok(())
    }
}

fn unknown_statement(name: &str) -> EngineError {
    EngineError::Sqlstate { code: "26000", message: format!("prepared statement \"{name}\" does not exist") }
}

fn unknown_portal(name: &str) -> EngineError {
    EngineError::Sqlstate { code: "34000", message: format!("portal \"{name}\" does not exist") }
}
