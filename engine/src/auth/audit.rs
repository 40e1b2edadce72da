//! The audit trail: every login (and failed login), DDL, GRANT/REVOKE, role statement and denied
//! access, appended by the server to the system topic [`AUDIT_TOPIC`] as a hash chain.
//!
//! Each entry carries the SHA-256 of the entry before it (`prev_hash`) and its own (`hash`, over
//! `prev_hash` and its fields, see [`entry_hash`]), so changing, removing or reordering a stored
//! entry breaks the chain at that entry, which [`verify`] (SQL:
//! `SELECT * FROM streamhouse_verify_audit()`) names. The first entry's `prev_hash` is 64 zeros.
//! What a chain cannot show by itself is the loss of its newest entries: `head_hash`, reported by
//! the verifier, is the value to keep elsewhere and compare later.
//!
//! One task writes every entry ([`AuditLog`]), so the chain has one order: whoever records an
//! entry waits until it is durable (its WAL fsync; entries arriving together share one append),
//! so an acknowledged statement's entry survives a crash. A successful login is the exception:
//! its entry is queued in order but not waited for, since a login changes nothing and waiting
//! for an fsync would double the time to connect (measured: +4 ms a connection on a debug
//! build, more than the session itself); a crash may lose the logins of the last few
//! milliseconds, never a statement's entry. An entry that cannot be written (a full
//! disk) does not refuse what it records: it is logged as an error and counted
//! (`streamhouse_audit_entries_lost_total`), and the chain continues from the last stored entry.
//!
//! The topic is the server's: no one may write to, drop, alter or grant on it; superusers read
//! it with SQL, and it is left out of listings (SHOW TOPICS, pg_class, Flight's list), as
//! PostgreSQL's own catalogs are left out of `\dt`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ring::digest;
use streamhouse_catalog::{RetentionPolicy, TopicDefinition};
use streamhouse_storage::scan::{scan_partition, PruneBounds, ScanProjection};
use streamhouse_storage::{Storage, TopicLog};
use tokio::sync::{mpsc, oneshot};

use super::hex;
use crate::{EngineError, Result};

/// The system topic of the audit trail.
pub const AUDIT_TOPIC: &str = "streamhouse_audit";

/// Entries waiting for the writer; past it, recording waits for room.
const QUEUE_ENTRIES_MAX: usize = 4096;
/// Most entries one append carries.
const APPEND_ENTRIES_MAX: usize = 1024;
/// `prev_hash` of the first entry.
const GENESIS: [u8; 32] = [0; 32];

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Login,
    LoginFailed,
    /// CREATE or DROP of a topic, table or materialized view.
    Ddl,
    /// GRANT, REVOKE, ALTER … OWNER TO.
    Privilege,
    /// CREATE/ALTER/DROP ROLE, GRANT/REVOKE of membership, SET ROLE, RESET ROLE.
    Role,
    /// A statement or request refused for want of a privilege (`42501`).
    Denied,
}

impl AuditKind {
    /// The `kind` column's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginFailed => "login failed",
            Self::Ddl => "ddl",
            Self::Privilege => "privilege",
            Self::Role => "role",
            Self::Denied => "denied",
        }
    }
}

/// Where a session or request comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The peer's IP address (empty for the server's own sessions).
    pub address: String,
    /// `postgres` or `flight`.
    pub protocol: &'static str,
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub kind: AuditKind,
    /// The role that logged in or tried to (`session_user`).
    pub user_name: String,
    /// The role acting (`current_user`; after SET ROLE it differs from `user_name`).
    pub role_name: String,
    pub client: Client,
    pub application_name: String,
    /// The statement (passwords replaced, see [`redact_passwords`]) and, for a refusal, why.
    pub detail: String,
}

impl AuditEntry {
    /// An entry of `user` acting as itself (a login, or a request of a protocol without SET ROLE).
    pub fn of_user(kind: AuditKind, user: &str, client: Client, application_name: &str, detail: String) -> Self {
        Self {
            kind,
            user_name: user.to_string(),
            role_name: user.to_string(),
            client,
            application_name: application_name.to_string(),
            detail,
        }
    }
}

/// The columns of [`AUDIT_TOPIC`], in order.
pub fn audit_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        text("kind"),
        text("user_name"),
        text("role_name"),
        text("client_addr"),
        text("application_name"),
        text("protocol"),
        text("detail"),
        text("prev_hash"),
        text("hash"),
    ]))
}

/// Index of `hash` among the columns; `prev_hash` is the one before.
const HASH_COLUMN: usize = 9;

/// SHA-256 over `prev`, the time (microseconds since the epoch, 8 bytes big-endian) and each
/// text field in column order, each as its UTF-8 length (4 bytes big-endian) then its bytes:
/// every field has its own place, so no two different entries hash the same input.
pub fn entry_hash(prev: &[u8; 32], at_us: i64, fields: [&str; 7]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(prev);
    context.update(&at_us.to_be_bytes());
    for field in fields {
        let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
        context.update(&length.to_be_bytes());
        context.update(field.as_bytes());
    }
    let mut hash = [0; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
    }
    Some(out)
}

/// `sql` with the string after each `PASSWORD` keyword replaced by `'********'`; a statement that
/// does not tokenize is replaced whole (it may hold a password we cannot find).
pub fn redact_passwords(sql: &str) -> String {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let Ok(mut tokens) = crate::sql::statement::tokenize(sql) else {
        return crate::auth::loggable(sql).to_string();
    };
    let mut after_password = false;
    for token in &mut tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::Word(word) if word.value.eq_ignore_ascii_case("password") => {
                after_password = true;
                continue;
            }
            Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::UnicodeStringLiteral(_)
            | Token::NationalStringLiteral(_)
                if after_password =>
            {
                *token = Token::SingleQuotedString("********".into());
            }
            _ => {}
        }
        after_password = false;
    }
    crate::sql::statement::render(&tokens)
}

/// A waiting entry: what to write, when it happened, whom to tell once it is durable.
struct Pending {
    entry: AuditEntry,
    at_us: i64,
    done: oneshot::Sender<()>,
}

/// The writer of the audit trail (see the module doc).
pub(crate) struct AuditLog {
    sender: mpsc::Sender<Pending>,
    lost: Arc<AtomicU64>,
}

impl AuditLog {
    /// Creates [`AUDIT_TOPIC`] on the first start, finds the newest entry's hash and starts the
    /// writer.
    pub(crate) async fn open(storage: &Storage) -> Result<Self> {
        let topic = audit_topic(storage)?;
        let head = last_hash(storage, &topic).await?;
        let (sender, receiver) = mpsc::channel(QUEUE_ENTRIES_MAX);
        let lost = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_entries(storage.clone(), topic, head, receiver, lost.clone()));
        Ok(Self { sender, lost })
    }

    /// Records `entry` and waits until it is durable (or could not be written: see the module
    /// doc).
    pub(crate) async fn record(&self, entry: AuditEntry) {
        if let Some(written) = self.queue(entry).await {
            let _ = written.await;
        }
    }

    /// Puts `entry` in the chain's order now; it is durable with the writer's next append. What
    /// is answered after this cannot come before the entry in the trail.
    pub(crate) async fn record_in_order(&self, entry: AuditEntry) {
        let _ = self.queue(entry).await;
    }

    async fn queue(&self, entry: AuditEntry) -> Option<oneshot::Receiver<()>> {
        let at_us = chrono::Utc::now().timestamp_micros();
        let (done, written) = oneshot::channel();
        if self.sender.send(Pending { entry, at_us, done }).await.is_err() {
            // The writer stopped (the server is shutting down).
            self.lost.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(written)
    }

    /// Entries that could not be written since the start.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The audit topic, created if it is not there; one whose columns differ stops the start.
fn audit_topic(storage: &Storage) -> Result<Arc<TopicLog>> {
    let schema = audit_schema();
    if let Some(topic) = storage.topic(AUDIT_TOPIC) {
        if topic.schema().fields() != schema.fields() || topic.partition_count() != 1 {
            return Err(EngineError::Internal(format!(
                "a topic named {AUDIT_TOPIC} exists but is not the audit trail (its columns differ); the name is the server's: drop it with the version that created it"
            )));
        }
        return Ok(topic);
    }
    let definition = TopicDefinition {
        name: AUDIT_TOPIC.into(),
        schema,
        // One partition: one chain, one order.
        partitions: 1,
        partition_key: Vec::new(),
        retention: RetentionPolicy { time_ms: None, bytes: None },
        watermark: None,
        primary_key: Vec::new(),
    };
    Ok(storage.create_topic(&definition)?)
}

/// The stored entries from `from` on, batch by batch, with their offsets as the last column.
fn read_entries(storage: &Storage, topic: &Arc<TopicLog>, from: u64) -> Result<mpsc::Receiver<streamhouse_storage::Result<RecordBatch>>> {
    let snapshot = storage.snapshot_from(topic, 0, from)?;
    let user_columns = topic.schema().fields().len();
    // The user columns, then `_offset` (the full schema's user columns, _partition, _offset, …).
    let projection: Vec<usize> = (0..user_columns).chain([user_columns + 1]).collect();
    let projection = ScanProjection::new(topic, Some(&projection))?;
    let bounds = PruneBounds { offset: Some((from, u64::MAX)), ..Default::default() };
    Ok(scan_partition(storage, topic.clone(), snapshot, projection, bounds))
}

/// The hash of the newest stored entry ([`GENESIS`] when there is none).
async fn last_hash(storage: &Storage, topic: &Arc<TopicLog>) -> Result<[u8; 32]> {
    let high = topic.partition(0).map_or(0, |p| p.high_watermark());
    if high == 0 {
        return Ok(GENESIS);
    }
    let mut batches = read_entries(storage, topic, high - 1)?;
    let mut last = None;
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        let offsets = offsets_of(&batch)?;
        let hashes = text_column(&batch, HASH_COLUMN)?;
        for row in 0..batch.num_rows() {
            if offsets[row] == high - 1 {
                last = Some(hashes.value(row).to_string());
            }
        }
    }
    match last.as_deref().and_then(parse_hex) {
        Some(hash) => Ok(hash),
        // An unreadable head: start a new chain rather than refuse to start; the verifier shows
        // the break.
        None => {
            tracing::error!("the newest audit entry has no readable hash; the chain continues from zeros and the verifier will show the break");
            Ok(GENESIS)
        }
    }
}

fn text_column(batch: &RecordBatch, index: usize) -> Result<&StringArray> {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| EngineError::Internal(format!("{AUDIT_TOPIC} column {index} is not text")))
}

/// The `_offset` column (the last one read), as `u64`s.
fn offsets_of(batch: &RecordBatch) -> Result<Vec<u64>> {
    let column = batch.column(batch.num_columns() - 1);
    let offsets = arrow::compute::cast(column, &DataType::UInt64)?;
    let offsets = offsets.as_any().downcast_ref::<UInt64Array>().ok_or_else(|| EngineError::Internal(format!("{AUDIT_TOPIC}: no offsets")))?;
    Ok(offsets.values().to_vec())
}

/// The batch of `pending` entries chained from `head`, and the new head.
fn chain(pending: &[Pending], mut head: [u8; 32]) -> Result<(RecordBatch, [u8; 32])> {
    let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(pending.len()); 9];
    let mut times = Vec::with_capacity(pending.len());
    for Pending { entry, at_us, .. } in pending {
        let fields = [
            entry.kind.name(),
            &entry.user_name,
            &entry.role_name,
            &entry.client.address,
            &entry.application_name,
            entry.client.protocol,
            &entry.detail,
        ];
        let hash = entry_hash(&head, *at_us, fields);
        for (column, field) in columns.iter_mut().zip(fields) {
            column.push(field.to_string());
        }
        columns[7].push(hex(&head));
        columns[8].push(hex(&hash));
        times.push(*at_us);
        head = hash;
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC"))];
    arrays.extend(columns.into_iter().map(|column| Arc::new(StringArray::from(column)) as ArrayRef));
    Ok((RecordBatch::try_new(audit_schema(), arrays)?, head))
}

/// The writer task: takes what is waiting (up to [`APPEND_ENTRIES_MAX`]), chains it, appends it
/// in one write and answers each waiting recorder.
async fn write_entries(storage: Storage, topic: Arc<TopicLog>, mut head: [u8; 32], mut receiver: mpsc::Receiver<Pending>, lost: Arc<AtomicU64>) {
    while let Some(first) = receiver.recv().await {
        let mut pending = vec![first];
        while pending.len() < APPEND_ENTRIES_MAX {
            match receiver.try_recv() {
                Ok(next) => pending.push(next),
                Err(_) => break,
            }
        }
        let appended = match chain(&pending, head) {
            Ok((batch, next_head)) => storage.append(&topic, vec![batch]).await.map(|_| next_head).map_err(EngineError::from),
            Err(error) => Err(error),
        };
        match appended {
            Ok(next_head) => head = next_head,
            Err(error) => {
                lost.fetch_add(pending.len() as u64, Ordering::Relaxed);
                tracing::error!(%error, entries = pending.len(), "audit entries could not be written");
                // Whether any of it reached the log is not known: continue from what is there.
                head = match last_hash(&storage, &topic).await {
                    Ok(stored) => stored,
                    Err(error) => {
                        tracing::error!(%error, "cannot read the newest audit entry; the chain continues from the last one written");
                        head
                    }
                };
            }
        }
        for Pending { done, .. } in pending {
            let _ = done.send(());
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub entries: u64,
    pub first_offset: Option<u64>,
    pub last_offset: Option<u64>,
    /// The offset of the first entry whose link does not hold, and why.
    pub broken: Option<(u64, String)>,
    /// The hash of the last entry checked (of the newest one when the chain holds).
    pub head_hash: Option<String>,
}

/// Checks the chain from the oldest stored entry (retention may have removed older ones: the
/// first one's `prev_hash` is then taken as it is) to the newest, stopping at the first broken
/// link.
pub async fn verify(storage: &Storage) -> Result<Verification> {
    let topic = storage.topic(AUDIT_TOPIC).ok_or_else(|| EngineError::UndefinedTable(AUDIT_TOPIC.into()))?;
    let low = topic.partition(0).map_or(0, |p| p.low_watermark());
    let mut batches = read_entries(storage, &topic, low)?;
    let mut result = Verification { entries: 0, first_offset: None, last_offset: None, broken: None, head_hash: None };
    // The previous entry's offset and hash.
    let mut previous: Option<(u64, [u8; 32])> = None;
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        let times = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| EngineError::Internal(format!("{AUDIT_TOPIC}: column at is not a timestamp")))?;
        let texts: Vec<&StringArray> = (1..=HASH_COLUMN).map(|index| text_column(&batch, index)).collect::<Result<_>>()?;
        let offsets = offsets_of(&batch)?;
        for row in 0..batch.num_rows() {
            let offset = offsets[row];
            let value = |column: usize| texts[column - 1].value(row);
            let fields = [value(1), value(2), value(3), value(4), value(5), value(6), value(7)];
            let problem = match (previous, parse_hex(value(8)), parse_hex(value(9))) {
                (_, None, _) | (_, _, None) => Some("its prev_hash or hash is not 64 hex digits".to_string()),
                (Some((before, _)), _, _) if offset != before + 1 => {
                    Some(format!("entries between offsets {before} and {offset} are missing"))
                }
                (Some((before, hash)), Some(prev), _) if prev != hash => {
                    Some(format!("its prev_hash is not the hash of entry {before} (an entry was changed, removed or inserted before it)"))
                }
                (None, Some(prev), _) if offset == 0 && prev != GENESIS => Some("the first entry's prev_hash is not zeros".to_string()),
                (_, Some(prev), Some(hash)) if entry_hash(&prev, times.value(row), fields) != hash || times.is_null(row) => {
                    Some("its hash does not match its contents (the entry was changed)".to_string())
                }
                _ => None,
            };
            if let Some(problem) = problem {
                result.broken = Some((offset, problem));
                return Ok(result);
            }
            let hash = parse_hex(value(9)).unwrap_or(GENESIS);
            result.entries += 1;
            result.first_offset.get_or_insert(offset);
            result.last_offset = Some(offset);
            result.head_hash = Some(hex(&hash));
            previous = Some((offset, hash));
        }
    }
    Ok(result)
}

/// The row `streamhouse_verify_audit()` returns.
pub fn verification_batch(verification: &Verification) -> Result<RecordBatch> {
    let schema = verification_schema();
    let optional = |value: Option<u64>| Int64Array::from(vec![value.map(|v| v as i64)]);
    let broken = verification.broken.as_ref();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(arrow::array::BooleanArray::from(vec![broken.is_none()])),
        Arc::new(Int64Array::from(vec![verification.entries as i64])),
        Arc::new(optional(verification.first_offset)),
        Arc::new(optional(verification.last_offset)),
        Arc::new(optional(broken.map(|(offset, _)| *offset))),
        Arc::new(StringArray::from(vec![broken.map(|(_, problem)| problem.clone())])),
        Arc::new(StringArray::from(vec![verification.head_hash.clone()])),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The columns of `streamhouse_verify_audit()`.
pub fn verification_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("valid", DataType::Boolean, false),
        Field::new("entries", DataType::Int64, false),
        Field::new("first_offset", DataType::Int64, true),
        Field::new("last_offset", DataType::Int64, true),
        Field::new("broken_offset", DataType::Int64, true),
        Field::new("problem", DataType::Utf8, true),
        Field::new("head_hash", DataType::Utf8, true),
    ]))
}

/// Refuses what would change the audit topic: only the server writes it, no one drops, alters
/// or grants on it. `None` for any other relation.
pub fn refuse_change(relation: &str, what: &str) -> Option<EngineError> {
    (relation == AUDIT_TOPIC).then(|| EngineError::Sqlstate {
        code: "42501",
        message: format!("permission denied for table {AUDIT_TOPIC}: the audit trail is written by the server only ({what} is refused to every role)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: AuditKind, detail: &str) -> AuditEntry {
        AuditEntry {
            kind,
            user_name: "alice".into(),
            role_name: "alice".into(),
            client: Client { address: "127.0.0.1".into(), protocol: "postgres" },
            application_name: "psql".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn the_hash_covers_every_field_in_its_own_place() {
        let base = entry_hash(&GENESIS, 1, ["login", "a", "b", "", "", "postgres", ""]);
        // Moving a byte from one field to the next changes the hash (lengths are hashed).
        assert_ne!(base, entry_hash(&GENESIS, 1, ["login", "", "ab", "", "", "postgres", ""]));
        assert_ne!(base, entry_hash(&GENESIS, 2, ["login", "a", "b", "", "", "postgres", ""]));
        assert_ne!(base, entry_hash(&[1; 32], 1, ["login", "a", "b", "", "", "postgres", ""]));
        // Worked out independently: SHA-256 of 32 zero bytes, 8 zero bytes and seven zero lengths.
        let empty = entry_hash(&GENESIS, 0, [""; 7]);
        let input = [0u8; 32 + 8 + 7 * 4];
        assert_eq!(empty.as_slice(), digest::digest(&digest::SHA256, &input).as_ref());
        assert_eq!(parse_hex(&hex(&base)), Some(base));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn entries_chain_each_to_the_one_before() {
        let (done, _) = oneshot::channel();
        let (done2, _) = oneshot::channel();
        let pending = vec![
            Pending { entry: entry(AuditKind::Login, ""), at_us: 10, done },
            Pending { entry: entry(AuditKind::Ddl, "CREATE TOPIC t (a int)"), at_us: 11, done: done2 },
        ];
        let (batch, head) = chain(&pending, GENESIS).unwrap();
        let prev = text_column(&batch, 8).unwrap();
        let hash = text_column(&batch, 9).unwrap();
        assert_eq!(prev.value(0), "0".repeat(64));
        assert_eq!(prev.value(1), hash.value(0));
        assert_eq!(hash.value(1), hex(&head));
        let first = entry_hash(&GENESIS, 10, ["login", "alice", "alice", "127.0.0.1", "psql", "postgres", ""]);
        assert_eq!(hash.value(0), hex(&first));
    }

    #[test]
    fn passwords_are_redacted_and_the_rest_is_kept() {
        assert_eq!(redact_passwords("CREATE ROLE a LOGIN PASSWORD 'secret'"), "CREATE ROLE a LOGIN PASSWORD '********'");
        assert_eq!(redact_passwords("alter role a with password E'se\\'cret' superuser"), "alter role a with password '********' superuser");
        assert_eq!(redact_passwords("ALTER ROLE a PASSWORD NULL"), "ALTER ROLE a PASSWORD NULL");
        assert_eq!(redact_passwords("DROP TOPIC t"), "DROP TOPIC t");
        assert!(!redact_passwords("CREATE ROLE a PASSWORD 'unterminated").contains("unterminated"));
    }
}
