//! A full disk: the server's data directory on a small tmpfs of its own (mounted by the test,
//! which needs root, as the test command runs), filled by inserts and then by another file to
//! the last byte. Writes must fail with `53100` and leave nothing of themselves in the log
//! (after a `kill -9` and a restart, the topic holds exactly the acknowledged rows), reads go
//! on, `DROP TOPIC` works on the full disk and frees space, and writes resume without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use streamhouse_sql_tests::{connect, TestServer};
use tokio_postgres::Client;

/// A tmpfs of a given size, unmounted when dropped.
struct SmallDisk {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount");
        assert!(status.success(), "cannot mount a tmpfs at {}: this test needs root (the test command runs as root)", path.display());
        Self { _dir: dir, path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a file until the disk has no byte left; returns how much it wrote.
fn fill_to_the_last_byte(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut written = 0u64;
    let mut size = chunk.len();
    // Halve the chunk at each refusal down to one byte, so that no room is left.
    while size > 0 {
        match file.write(&chunk[..size]) {
            Ok(0) => size /= 2,
            Ok(n) => written += n as u64,
            Err(error) if error.raw_os_error() == Some(28) => size /= 2,
            Err(error) => panic!("filling the disk: {error}"),
        }
    }
    written
}

/// The error's SQLSTATE and message, or `None` if the statement succeeded.
async fn outcome(client: &Client, sql: &str) -> Option<(String, String)> {
    match client.simple_query(sql).await {
        Ok(_) => None,
        Err(error) => {
            let db = error.as_db_error().unwrap_or_else(|| panic!("{sql}: not a server error: {error}"));
            Some((db.code().code().to_string(), db.message().to_string()))
        }
    }
}

async fn count_and_sum(client: &Client, sql: &str) -> (i64, i64) {
    let row = client.query_one(sql, &[]).await.unwrap();
    (row.get(0), row.get::<_, Option<i64>>(1).unwrap_or(0))
}

/// Ten thousand rows of 96 random hex characters (they do not compress) into `filler`.
fn filler_insert(round: u64) -> String {
    let first = round * 10_000;
    format!(
        "INSERT INTO filler SELECT v, md5(random()::text) || md5(random()::text) || md5(random()::text) \
         FROM generate_series({first}, {}) g(v)",
        first + 9_999
    )
}

/// `rows` ids from `first` into `t`.
fn t_insert(first: i64, rows: i64) -> String {
    format!("INSERT INTO t SELECT v FROM generate_series({first}, {}) g(v)", first + rows - 1)
}

/// The ids acknowledged into `t`.
#[derive(Default)]
struct Acked {
    rows: i64,
    sum: i64,
}

impl Acked {
    fn add(&mut self, first: i64, rows: i64) {
        self.rows += rows;
        self.sum += (first..first + rows).sum::<i64>();
    }

    fn expected(&self) -> (i64, i64) {
        (self.rows, self.sum)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_whole_keeps_reads_and_drop_frees_space() {
    let disk = SmallDisk::mount(48 * 1024 * 1024);
    let data = disk.path.join("data");
    let mut server = TestServer::start(
        &data,
        &[
            "--wal-file-bytes-max",
            "4194304",
            "--segment-bytes-max",
            "1048576",
            "--disk-reserve-bytes",
            "4194304",
            "--retention-check-interval-ms",
            "500",
        ],
    );
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE TOPIC filler (id bigint, s text); CREATE TOPIC t (id bigint); \
             CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n, sum(id) AS total FROM t",
        )
        .await
        .unwrap();

    // Acknowledged ids of `t`: its count and sum must come back exactly.
    let mut acked = Acked::default();
    let mut filler_rows = 0i64;
    let mut round = 0;
    let (code, message) = loop {
        round += 1;
        assert!(round < 100, "48 MiB never filled up");
        if let Some(error) = outcome(&client, &filler_insert(round)).await {
            break error;
        }
        filler_rows += 10_000;
        // A small write to the other topic between: it may still find room.
        match outcome(&client, &t_insert(round as i64 * 100, 10)).await {
            None => acked.add(round as i64 * 100, 10),
            Some((code, message)) => assert_eq!(code, "53100", "{message}"),
        }
    };
    assert_eq!(code, "53100", "{message}");
    assert!(message.contains("no space left on device"), "{message}");

    // Someone else takes the rest of the disk.
    fill_to_the_last_byte(&disk.path.join("someone-else"));

    // Writes of more than a block fail whole; reads go on.
    for marker in 0..3 {
        let (code, message) = outcome(&client, &t_insert(1_000_000 + marker * 10_000, 10_000)).await.expect("a write to a full disk");
        assert_eq!(code, "53100", "{message}");
    }
    assert_eq!(outcome(&client, &filler_insert(1000)).await.map(|e| e.0), Some("53100".to_string()));
    let read = client.query_one("SELECT count(*) FROM filler", &[]).await.unwrap();
    assert_eq!(read.get::<_, i64>(0), filler_rows);
    assert_eq!(count_and_sum(&client, "SELECT count(*), sum(id) FROM t").await, acked.expected());

    // DROP must work on the full disk (the reserve is given back for it), and frees space.
    client.batch_execute("DROP TOPIC filler").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut next = 2_000_000i64;
    loop {
        match outcome(&client, &t_insert(next, 10_000)).await {
            None => {
                acked.add(next, 10_000);
                next += 10_000;
                break;
            }
            Some((code, message)) => assert_eq!(code, "53100", "{message}"),
        }
        assert!(std::time::Instant::now() < deadline, "writes did not resume within 60 s of the DROP");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(outcome(&client, &t_insert(next, 10_000)).await, None, "writes go on once there is room");
        acked.add(next, 10_000);
        next += 10_000;
    }
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(count_and_sum(&client, "SELECT n, total FROM v").await, acked.expected());

    // Nothing refused is in the log, nothing acknowledged is lost.
    server.restart();
    let client = connect(&server).await;
    assert_eq!(count_and_sum(&client, "SELECT count(*), sum(id) FROM t").await, acked.expected());
    let refused = client.query_one("SELECT count(*) FROM t WHERE id >= 1000000 AND id < 2000000", &[]).await.unwrap();
    assert_eq!(refused.get::<_, i64>(0), 0, "a refused write came back");
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(count_and_sum(&client, "SELECT n, total FROM v").await, acked.expected());
    assert!(outcome(&client, "SELECT count(*) FROM filler").await.is_some_and(|e| e.0 == "42P01"));
}
