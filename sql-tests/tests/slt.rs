//! Runs every `.slt` file in `sql-tests/slt/` against a real server over the wire, once with
//! the simple query protocol and once with the extended protocol (tokio-postgres, binary
//! results decoded independently of the server's own encoder).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};
use streamhouse_sql_tests::TestServer;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    Simple,
    Extended,
}

struct Connection {
    client: Client,
    protocol: Protocol,
}

#[derive(Debug)]
struct Error(tokio_postgres::Error);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{}", db.message()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for Error {}

/// Any value, kept as its type and raw binary bytes.
struct Raw(Type, Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(ty.clone(), raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

const PG_EPOCH_US: i64 = 946_684_800_000_000;

fn be_i64(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes[..8].try_into().unwrap())
}

fn fraction(micros: i64) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{:06}", micros).trim_end_matches('0').to_string()
    }
}

fn timestamp_text(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let rest = micros.rem_euclid(1_000_000);
    let datetime = chrono::DateTime::from_timestamp(seconds, 0).unwrap().naive_utc();
    format!("{}{}", datetime.format("%Y-%m-%d %H:%M:%S"), fraction(rest))
}

/// Postgres text form of a binary value, decoded here independently of the server.
fn binary_to_text(ty: &Type, bytes: &[u8]) -> String {
    match *ty {
        Type::BOOL => if bytes[0] != 0 { "t" } else { "f" }.to_string(),
        Type::INT2 => i16::from_be_bytes([bytes[0], bytes[1]]).to_string(),
        Type::INT4 => i32::from_be_bytes(bytes[..4].try_into().unwrap()).to_string(),
        Type::INT8 => be_i64(bytes).to_string(),
        Type::FLOAT4 => f32::from_be_bytes(bytes[..4].try_into().unwrap()).to_string(),
        Type::FLOAT8 => f64::from_be_bytes(bytes[..8].try_into().unwrap()).to_string(),
        Type::NUMERIC => numeric_text(bytes),
        Type::BYTEA => format!("\\x{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Type::DATE => {
            let days = i32::from_be_bytes(bytes[..4].try_into().unwrap()) as i64 + 10_957;
            chrono::DateTime::from_timestamp(days * 86_400, 0).unwrap().format("%Y-%m-%d").to_string()
        }
        Type::TIME => {
            let micros = be_i64(bytes);
            let seconds = micros / 1_000_000;
            format!("{:02}:{:02}:{:02}{}", seconds / 3600, (seconds / 60) % 60, seconds % 60, fraction(micros % 1_000_000))
        }
        Type::TIMESTAMP => timestamp_text(be_i64(bytes) + PG_EPOCH_US),
        Type::TIMESTAMPTZ => format!("{}+00", timestamp_text(be_i64(bytes) + PG_EPOCH_US)),
        Type::JSONB => String::from_utf8_lossy(&bytes[1..]).to_string(),
        Type::INTERVAL => interval_text(be_i64(bytes), i32::from_be_bytes(bytes[8..12].try_into().unwrap()), i32::from_be_bytes(bytes[12..16].try_into().unwrap())),
        _ => match ty.kind() {
            tokio_postgres::types::Kind::Array(element) => array_text(element, bytes),
            _ => String::from_utf8_lossy(bytes).to_string(),
        },
    }
}

/// `1 year 2 mons 3 days 04:05:06.5`
fn interval_text(micros: i64, days: i32, months: i32) -> String {
    let mut parts = Vec::new();
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if months / 12 != 0 {
        parts.push(unit((months / 12) as i64, "year", "years"));
    }
    if months % 12 != 0 {
        parts.push(unit((months % 12) as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        parts.push(format!("{sign}{:02}:{:02}:{:02}{}", m / 3_600_000_000, (m / 60_000_000) % 60, (m / 1_000_000) % 60, fraction((m % 1_000_000) as i64)));
    }
    parts.join(" ")
}

/// One-dimensional arrays: `{1,2,NULL}`.
fn array_text(element: &Type, bytes: &[u8]) -> String {
    let int = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    if int(0) == 0 {
        return "{}".into();
    }
    let count = int(12) as usize;
    let mut position = 20;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let length = int(position);
        position += 4;
        if length < 0 {
            items.push("NULL".to_string());
            continue;
        }
        let value = binary_to_text(element, &bytes[position..position + length as usize]);
        position += length as usize;
        let quote = value.is_empty() || value.contains([',', '{', '}', '"', '\\', ' ']) || value.eq_ignore_ascii_case("null");
        items.push(if quote { format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")) } else { value });
    }
    format!("{{{}}}", items.join(","))
}

fn numeric_text(bytes: &[u8]) -> String {
    let word = |i: usize| i16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let count = word(0) as usize;
    let weight = word(2) as i32;
    let negative = word(4) as u16 == 0x4000;
    let scale = word(6) as usize;
    let digits: Vec<i16> = (0..count).map(|i| word(8 + 2 * i)).collect();
    let mut integer = String::new();
    for position in (0..=weight.max(0)).rev() {
        let index = weight - position;
        let digit = if index >= 0 && (index as usize) < digits.len() && weight >= 0 { digits[index as usize] } else { 0 };
        integer.push_str(&format!("{digit:04}"));
    }
    let integer = integer.trim_start_matches('0');
    let mut fraction = String::new();
    let mut position = -1;
    while fraction.len() < scale {
        let index = weight - position;
        let digit = if index >= 0 && (index as usize) < digits.len() { digits[index as usize] } else { 0 };
        fraction.push_str(&format!("{digit:04}"));
        position -= 1;
    }
    fraction.truncate(scale);
    let mut text = String::new();
    if negative {
        text.push('-');
    }
    text.push_str(if integer.is_empty() { "0" } else { integer });
    if scale > 0 {
        text.push('.');
        text.push_str(&fraction);
    }
    text
}

fn cell(value: Option<String>) -> String {
    match value {
        None => "NULL".into(),
        Some(text) if text.is_empty() => "(empty)".into(),
        Some(text) => text,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Connection {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        match self.protocol {
            Protocol::Simple => {
                let messages = self.client.simple_query(sql).await.map_err(Error)?;
                let mut rows = Vec::new();
                let mut columns = None;
                let mut count = 0;
                for message in messages {
                    match message {
                        SimpleQueryMessage::RowDescription(description) => columns = Some(description.len()),
                        SimpleQueryMessage::Row(row) => {
                            rows.push((0..row.len()).map(|i| cell(row.get(i).map(str::to_string))).collect::<Vec<_>>())
                        }
                        SimpleQueryMessage::CommandComplete(n) => count = n,
                        _ => {}
                    }
                }
                Ok(match columns {
                    Some(n) => DBOutput::Rows { types: vec![DefaultColumnType::Any; n], rows },
                    None => DBOutput::StatementComplete(count),
                })
            }
            Protocol::Extended => {
                let statement = self.client.prepare(sql).await.map_err(Error)?;
                if statement.columns().is_empty() {
                    let count = self.client.execute(&statement, &[]).await.map_err(Error)?;
                    return Ok(DBOutput::StatementComplete(count));
                }
                let result = self.client.query(&statement, &[]).await.map_err(Error)?;
                let rows = result
                    .iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| {
                                let raw: Option<Raw> = row.get(i);
                                cell(raw.map(|Raw(ty, bytes)| binary_to_text(&ty, &bytes)))
                            })
                            .collect()
                    })
                    .collect();
                Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; statement.columns().len()], rows })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "streamhouse"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await
    }

    fn error_sql_state(error: &Error) -> Option<String> {
        error.0.code().map(|c| c.code().to_string())
    }
}

async fn run_file(path: PathBuf, protocol: Protocol) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let connection_string = server.connection_string();
    let mut runner = sqllogictest::Runner::new(move || {
        let connection_string = connection_string.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&connection_string, NoTls).await.map_err(Error)?;
            tokio::spawn(connection);
            Ok(Connection { client, protocol })
        }
    });
    runner.with_column_validator(|_, _| true);
    runner.add_label(match protocol {
        Protocol::Simple => "simple",
        Protocol::Extended => "extended",
    });
    let result = runner.run_file_async(&path).await.map_err(|e| format!("{e}"));
    drop(server);
    result
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("slt");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("sql-tests/slt directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| filter.as_ref().is_none_or(|f| p.to_string_lossy().contains(f.as_str())))
        .collect();
    files.sort();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut passed = 0;
    let mut failed = 0;
    for file in &files {
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let name = format!("{} ({protocol:?})", file.file_name().unwrap_or_default().to_string_lossy());
            match runtime.block_on(run_file(file.clone(), protocol)) {
                Ok(()) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Err(error) => {
                    println!("test {name} ... FAILED\n{error}");
                    failed += 1;
                }
            }
        }
    }
    println!("\nsql-tests: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
