//! Mixed load from many connections at once: each writes small batches to one of four topics
//! and now and then reads a count or a view, while two materialized views aggregate two of the
//! topics. Every statement must succeed; afterwards every topic holds exactly the acknowledged
//! rows and both views equal an aggregation of their topic after `FLUSH`.
//!
//! `STREAMHOUSE_LOAD_SECONDS` (default 20) and `STREAMHOUSE_LOAD_CONNECTIONS` (default 200) size
//! it; `benches/soak.sh` runs it for ten minutes against a release server and reports the
//! server's resident memory over time (sampled every second, printed at the end).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use streamhouse_sql_tests::{connect, TestServer};

const TOPICS: usize = 4;
const ROWS_PER_WRITE: i64 = 10;

/// What was acknowledged into one topic.
#[derive(Default)]
struct Acked {
    rows: AtomicI64,
    sum: AtomicI64,
}

/// The server's resident memory in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_writing_and_reading_get_no_errors_and_views_stay_exact() {
    let seconds = env_or("STREAMHOUSE_LOAD_SECONDS", 20);
    let connections = env_or("STREAMHOUSE_LOAD_CONNECTIONS", 200) as usize;
    let dir = tempfile::tempdir().unwrap();
    let max = (connections + 16).to_string();
    let server = TestServer::start(&dir.path().join("data"), &["--pg-connections-max", &max]);
    let pid = server.pid().unwrap();
    let setup = connect(&server).await;
    for topic in 0..TOPICS {
        setup.batch_execute(&format!("CREATE TOPIC t{topic} (k int, v bigint) WITH (partitions = 2)")).await.unwrap();
    }
    setup
        .batch_execute(
            "CREATE MATERIALIZED VIEW by_key AS SELECT k, count(*) AS n, sum(v) AS total FROM t0 GROUP BY k; \
             CREATE MATERIALIZED VIEW overall AS SELECT count(*) AS n, sum(v) AS total, max(v) AS top FROM t1",
        )
        .await
        .unwrap();

    let acked: Arc<Vec<Acked>> = Arc::new((0..TOPICS).map(|_| Acked::default()).collect());
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let statements = Arc::new(AtomicU64::new(0));
    let next_value = Arc::new(AtomicI64::new(1));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(connect(&server).await);
    }
    let mut workers = Vec::with_capacity(connections);
    for (index, client) in clients.into_iter().enumerate() {
        let (acked, errors, statements, next_value) = (acked.clone(), errors.clone(), statements.clone(), next_value.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(index as u64);
            while Instant::now() < deadline {
                let topic = rng.random_range(0..TOPICS);
                let result = if rng.random_ratio(1, 5) {
                    let read = match rng.random_range(0..3) {
                        0 => format!("SELECT count(*) FROM t{topic}"),
                        1 => "SELECT sum(n) FROM by_key".to_string(),
                        _ => "SELECT n, total FROM overall".to_string(),
                    };
                    client.simple_query(&read).await.map(|_| ())
                } else {
                    let first = next_value.fetch_add(ROWS_PER_WRITE, Ordering::Relaxed);
                    let key = rng.random_range(0..50);
                    let sql = format!(
                        "INSERT INTO t{topic} SELECT {key} + (v % 3)::int, v FROM generate_series({first}, {}) AS g(v)",
                        first + ROWS_PER_WRITE - 1
                    );
                    let written = client.simple_query(&sql).await.map(|_| ());
                    if written.is_ok() {
                        acked[topic].rows.fetch_add(ROWS_PER_WRITE, Ordering::Relaxed);
                        acked[topic].sum.fetch_add((first..first + ROWS_PER_WRITE).sum::<i64>(), Ordering::Relaxed);
                    }
                    written
                };
                statements.fetch_add(1, Ordering::Relaxed);
                if let Err(error) = result {
                    let code = error.code().map(|c| c.code().to_string()).unwrap_or_else(|| error.to_string());
                    *errors.lock().unwrap().entry(code).or_default() += 1;
                }
            }
        }));
    }
    // Resident memory each second while the load runs.
    let mut samples = Vec::new();
    let started = Instant::now();
    while Instant::now() < deadline {
        samples.push((started.elapsed().as_secs(), rss_kib(pid).unwrap_or(0)));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let total = statements.load(Ordering::Relaxed);
    eprintln!("load: {connections} connections, {seconds} s, {total} statements ({:.0}/s)", total as f64 / seconds as f64);
    let rss: Vec<String> = samples.iter().map(|(second, kib)| format!("{second}s={}MB", kib / 1024)).collect();
    eprintln!("load: server RSS {}", rss.join(" "));
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "errors under load (SQLSTATE: count): {errors:?}");

    setup.batch_execute("FLUSH").await.unwrap();
    for (topic, acked) in acked.iter().enumerate() {
        let row = setup.query_one(&format!("SELECT count(*), coalesce(sum(v), 0)::bigint FROM t{topic}"), &[]).await.unwrap();
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1)),
            (acked.rows.load(Ordering::Relaxed), acked.sum.load(Ordering::Relaxed)),
            "topic t{topic} holds exactly the acknowledged rows"
        );
    }
    let expected = |sql: &str| {
        let setup = &setup;
        let sql = sql.to_string();
        async move {
            let rows = setup.query(&sql, &[]).await.unwrap();
            rows.iter().map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        expected("SELECT k, n, total FROM by_key ORDER BY k").await,
        expected("SELECT k, count(*), sum(v) FROM t0 GROUP BY k ORDER BY k").await,
        "view by_key equals its aggregation of t0"
    );
    let view = setup.query_one("SELECT n, total, top FROM overall", &[]).await.unwrap();
    let topic = setup.query_one("SELECT count(*), sum(v), max(v) FROM t1", &[]).await.unwrap();
    for column in 0..3 {
        assert_eq!(view.get::<_, Option<i64>>(column), topic.get::<_, Option<i64>>(column), "view overall, column {column}");
    }
}
