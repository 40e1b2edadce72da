//! Durability, proven by killing the server: every acknowledged row survives `kill -9` at
//! random moments, exactly once, statements are all-or-nothing, and a torn WAL tail is cut.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use streamhouse_sql_tests::TestServer;
use tokio_postgres::NoTls;

const WRITERS: u64 = 4;
const ROUNDS: usize = 20;
const ROWS_PER_STATEMENT: u64 = 5;
/// Writer 0 writes statements this large instead: large enough for the storage to pipeline them
/// (two WAL frames each), so kills also land between the frames of one statement.
const LARGE_STATEMENT_ROWS: u64 = 6000;

fn rows_per_statement(writer_id: u64) -> u64 {
    if writer_id == 0 { LARGE_STATEMENT_ROWS } else { ROWS_PER_STATEMENT }
}

fn statement_sql(writer_id: u64, statement_id: u64) -> String {
    let rows = rows_per_statement(writer_id);
    if writer_id == 0 {
        return format!(
            "INSERT INTO log SELECT {writer_id} AS writer, {statement_id} AS statement, value AS row, \
             concat('payload-{writer_id}-{statement_id}-', value) AS payload FROM generate_series(0, {})",
            rows - 1
        );
    }
    let values: Vec<String> =
        (0..rows).map(|row| format!("({writer_id}, {statement_id}, {row}, 'payload-{writer_id}-{statement_id}-{row}')")).collect();
    format!("INSERT INTO log VALUES {}", values.join(", "))
}

/// Statements each writer had acknowledged, and those it sent without an answer.
#[derive(Default)]
struct Ledger {
    acknowledged: HashSet<(u64, u64)>,
    in_doubt: HashSet<(u64, u64)>,
}

/// Counts acknowledgements in a round and wakes the test once `target` small statements and
/// at least one large one (writer 0, slower) are acknowledged.
struct AckCounter {
    small: AtomicU64,
    large: AtomicU64,
    target: u64,
    reached: tokio::sync::Notify,
    /// An error a living server answered with (a bug): the test stops and reports it.
    failure: Mutex<Option<String>>,
}

impl AckCounter {
    fn acknowledge(&self, writer_id: u64) {
        let counter = if writer_id == 0 { &self.large } else { &self.small };
        counter.fetch_add(1, Ordering::SeqCst);
        if self.small.load(Ordering::SeqCst) >= self.target && self.large.load(Ordering::SeqCst) >= 1 {
            self.reached.notify_one();
        }
    }
}

async fn writer(port: u16, writer_id: u64, first_statement: u64, ledger: Arc<Mutex<Ledger>>, acks: Arc<AckCounter>) -> u64 {
    let connection_string = format!("host=127.0.0.1 port={port} user=streamhouse dbname=streamhouse");
    let Ok((client, connection)) = tokio_postgres::connect(&connection_string, NoTls).await else { return first_statement };
    tokio::spawn(connection);
    let mut statement_id = first_statement;
    loop {
        ledger.lock().unwrap().in_doubt.insert((writer_id, statement_id));
        match client.execute(&statement_sql(writer_id, statement_id), &[]).await {
            Ok(n) => {
                assert_eq!(n, rows_per_statement(writer_id));
                let mut ledger = ledger.lock().unwrap();
                ledger.in_doubt.remove(&(writer_id, statement_id));
                ledger.acknowledged.insert((writer_id, statement_id));
                drop(ledger);
                acks.acknowledge(writer_id);
            }
            // An error from a living server is a bug, not a crash.
            Err(error) if error.as_db_error().is_some() => {
                *acks.failure.lock().unwrap() = Some(format!("writer {writer_id} statement {statement_id}: {error:?}"));
                acks.reached.notify_one();
                return statement_id;
            }
            // The server died: this statement's fate is unknown.
            Err(_) => return statement_id + 1,
        }
        statement_id += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments and short ages, so kills land during sealing too.
    let mut server = TestServer::start(
        &dir.path().join("data"),
        &["--segment-bytes-max", "20000", "--segment-age-max-ms", "50", "--wal-file-bytes-max", "65536"],
    );
    {
        let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute("CREATE TOPIC log (writer BIGINT NOT NULL, statement BIGINT NOT NULL, row BIGINT NOT NULL, payload TEXT) WITH (partitions = 3, partition_key = 'writer')")
            .await
            .unwrap();
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut next_statement: HashMap<u64, u64> = (0..WRITERS).map(|w| (w, 0)).collect();
    let mut rng = rand::rng();
    for _round in 0..ROUNDS {
        // Kill after a random number of acknowledged statements: a random moment, chosen by
        // events rather than by the clock. Every round waits for a large statement too, so
        // kills land around pipelined writes however slow the machine is.
        let acks = Arc::new(AckCounter {
            small: AtomicU64::new(0),
            large: AtomicU64::new(0),
            target: rng.random_range(5..60u64),
            reached: tokio::sync::Notify::new(),
            failure: Mutex::new(None),
        });
        let mut tasks = Vec::new();
        for writer_id in 0..WRITERS {
            tasks.push(tokio::spawn(writer(server.pg_port, writer_id, next_statement[&writer_id], ledger.clone(), acks.clone())));
        }
        acks.reached.notified().await;
        if let Some(failure) = acks.failure.lock().unwrap().take() {
            panic!("{failure}");
        }
        server.kill();
        for (writer_id, task) in tasks.into_iter().enumerate() {
            let next = task.await.unwrap();
            next_statement.insert(writer_id as u64, next);
        }
        server.restart();
    }

    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client.query("SELECT writer, statement, row, payload FROM log", &[]).await.unwrap();
    let mut by_statement: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for row in &rows {
        let writer: i64 = row.get(0);
        let statement: i64 = row.get(1);
        let index: i64 = row.get(2);
        let payload: String = row.get(3);
        assert_eq!(payload, format!("payload-{writer}-{statement}-{index}"), "row content intact");
        by_statement.entry((writer as u64, statement as u64)).or_default().push(index as u64);
    }
    let ledger = ledger.lock().unwrap();
    assert!(ledger.acknowledged.len() > ROUNDS * 5, "the test wrote too little to mean anything");
    assert!(ledger.acknowledged.iter().filter(|key| key.0 == 0).count() >= ROUNDS, "too few large statements");
    for key in &ledger.acknowledged {
        let mut indices = by_statement.get(key).cloned().unwrap_or_else(|| panic!("acknowledged statement {key:?} lost"));
        indices.sort();
        assert_eq!(indices, (0..rows_per_statement(key.0)).collect::<Vec<_>>(), "statement {key:?} exactly once, whole");
    }
    for (key, indices) in &by_statement {
        assert!(
            ledger.acknowledged.contains(key) || ledger.in_doubt.contains(key),
            "statement {key:?} was never sent"
        );
        let mut sorted = indices.clone();
        sorted.sort();
        assert_eq!(sorted, (0..rows_per_statement(key.0)).collect::<Vec<_>>(), "in-doubt statement {key:?} all or nothing");
    }
    // WAL files were reused along the way (so kills also landed on reused files).
    let spares = std::fs::read_dir(dir.path().join("data/wal"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("spare-"))
        .count();
    assert!(spares > 0, "no WAL file was ever released for reuse");
    // Offsets stay dense per partition across every crash.
    let offsets = client.query("SELECT _partition, count(*), max(_offset) FROM log GROUP BY _partition", &[]).await.unwrap();
    for row in offsets {
        let count: i64 = row.get(1);
        let max: i64 = row.get(2);
        assert_eq!(max + 1, count, "partition {} offsets dense", row.get::<_, i32>(0));
    }
}

/// Where the frames of a WAL file end (a killed server leaves the rest of a preallocated file
/// as zeros): each frame is a u32 payload length, a u32 CRC and the payload.
fn written_length(wal: &[u8]) -> usize {
    let mut position = 0;
    while let Some(header) = wal.get(position..position + 8) {
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length == 0 {
            break;
        }
        position += 8 + length;
    }
    position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_wal_tail_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Segments never seal on their own here: the rows live in the WAL.
    let mut server = TestServer::start(&data, &["--segment-age-max-ms", "3600000"]);
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TOPIC w (v BIGINT)").await.unwrap();
    client.execute("INSERT INTO w VALUES (1), (2)", &[]).await.unwrap();
    client.execute("INSERT INTO w VALUES (3)", &[]).await.unwrap();
    drop(client);
    server.kill();

    // Flip a byte inside the last record: its CRC no longer matches.
    let mut files: Vec<_> = std::fs::read_dir(data.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let last = files.iter().rev().find(|f| written_length(&std::fs::read(f).unwrap()) > 0).unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    let len = written_length(&bytes);
    bytes[len - 10] ^= 0xff;
    // And garbage after it, as a torn write might leave (in the file's preallocated space).
    bytes.splice(len..(len + 7).min(bytes.len()), [0xAB; 7]);
    std::fs::write(&last, &bytes).unwrap();

    server.restart();
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let values: Vec<i64> = client.query("SELECT v FROM w ORDER BY v", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(values, vec![1, 2], "the damaged record is gone, the one before it intact");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("truncating torn WAL tail"), "the truncation is logged");
    // Writing goes on at the offset the damaged record had.
    client.execute("INSERT INTO w VALUES (4)", &[]).await.unwrap();
    let offset: i64 = client.query_one("SELECT _offset FROM w WHERE v = 4", &[]).await.unwrap().get(0);
    assert_eq!(offset, 2);
}
