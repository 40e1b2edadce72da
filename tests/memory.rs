//! Memory is bounded by configuration, not by the size of a view's state: a GROUP BY view
//! over a million distinct keys catches up from a backlog (killed with `kill -9` half way and
//! restarted) and is read whole by a SELECT with the server's anonymous memory under a bound
//! worked out from the configured caches, and its rows are exact: each key counted once, every
//! value summed once.
//!
//! Before epochs were bounded by memory this test measured 528 MiB (an epoch held every group
//! of its 256 Ki rows per partition); now about 100 MiB.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::SinkExt;
use streamhouse_sql_tests::{connect, sorted_rows, TestServer};

const GROUPS: u64 = 1_000_000;
const MIB: u64 = 1 << 20;
/// Each of the server's memory settings: the view's state, RocksDB's block cache (memtables
/// included), the segment cache and the partition tail.
const CACHE_BYTES: u64 = 16 * MIB;
/// Anonymous memory the server may hold: the four caches, then as much again for what they do
/// not count (allocator slack, an epoch's input and output, RocksDB's tables), and the
/// process's own 64 MiB (about 35 MB idle).
const ANON_BYTES_MAX: u64 = 4 * CACHE_BYTES * 2 + 64 * MIB;

/// Row `i`: a distinct key (multiplying by an odd number is a bijection modulo 2^40) and a
/// value below 1000.
fn row(i: u64) -> (u64, u64) {
    ((i.wrapping_mul(2_654_435_761)) % (1 << 40), i % 1000)
}

/// Samples a process's anonymous resident memory (`RssAnon`) until stopped; keeps the largest.
fn sample_anon(pid: u32, peak: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let path = format!("/proc/{pid}/status");
        while !stop.load(Ordering::Relaxed) {
            let Ok(status) = std::fs::read_to_string(&path) else { return };
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            if let Some(kib) = kib {
                peak.fetch_max(kib * 1024, Ordering::Relaxed);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    })
}

async fn copy_rows(client: &tokio_postgres::Client, range: std::ops::Range<u64>) {
    let sink = client.copy_in("COPY t FROM STDIN (FORMAT csv)").await.unwrap();
    let mut sink = Box::pin(sink);
    let mut chunk = String::new();
    for i in range {
        let (k, v) = row(i);
        chunk.push_str(&format!("{k},{v}\n"));
        if chunk.len() > 1 << 20 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk))).await.unwrap();
        }
    }
    sink.send(bytes::Bytes::from(chunk)).await.unwrap();
    sink.as_mut().finish().await.unwrap();
}

/// `lag_rows` of the view, from SHOW MATERIALIZED VIEWS.
async fn lag_rows(client: &tokio_postgres::Client) -> u64 {
    let shown = sorted_rows(client, "SHOW MATERIALIZED VIEWS").await;
    let fields: Vec<&str> = shown[0].split('|').collect();
    fields[5].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_groups_catch_up_within_the_configured_memory_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CACHE_BYTES.to_string();
    let args = [
        "--state-cache-bytes-max",
        &cache,
        "--state-block-cache-bytes",
        &cache,
        "--segment-cache-bytes-max",
        &cache,
        "--partition-tail-bytes-max",
        &cache,
    ];
    let mut server = TestServer::start(&dir.path().join("data"), &args);
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_anon(server.pid().unwrap(), peak.clone(), stop.clone());
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE TOPIC t (k bigint, v bigint) WITH (partitions = 2);
             CREATE MATERIALIZED VIEW mv AS SELECT k, count(*) AS c, sum(v) AS s FROM t GROUP BY k;",
        )
        .await
        .unwrap();
    let half = GROUPS / 2;
    copy_rows(&client, 0..half).await;
    client.batch_execute("FLUSH").await.unwrap();
    copy_rows(&client, half..GROUPS).await;
    // Half a million new groups take the view seconds: the kill lands while it catches up.
    assert!(lag_rows(&client).await > 0, "the view had caught up before the kill");
    server.kill();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    server.restart();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_anon(server.pid().unwrap(), peak.clone(), stop.clone());
    let client = connect(&server).await;
    client.batch_execute("FLUSH").await.unwrap();
    // Reading the view streams it (sampled too): its million rows are never all in memory.
    let values: u64 = (0..GROUPS).map(|i| row(i).1).sum();
    let (low, high) = (0..GROUPS).map(|i| row(i).0).fold((u64::MAX, 0), |(l, h), k| (l.min(k), h.max(k)));
    let totals = sorted_rows(&client, "SELECT count(*), sum(c), max(c), sum(s), min(k), max(k) FROM mv").await;
    assert_eq!(totals, vec![format!("{GROUPS}|{GROUPS}|1|{values}|{low}|{high}")]);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak > 0, "no memory sample was taken");
    eprintln!("peak anonymous memory {} MiB (bound {} MiB)", peak / MIB, ANON_BYTES_MAX / MIB);
    assert!(
        peak <= ANON_BYTES_MAX,
        "the server held {} MiB of anonymous memory; the configured caches allow {} MiB",
        peak / MIB,
        ANON_BYTES_MAX / MIB
    );

}
