//! Keyed tables end to end over the wire: writers upsert, update and delete rows of a keyed
//! table while compaction runs; the server is killed with `kill -9` at random moments; after the
//! last restart and a FLUSH every view over the table equals its query run in batch over the
//! table, and a view created after the fact equals one that followed from the start.
//! Compaction has run (with tombstones dropped as soon as no view needs them) by the end, and a
//! manually refreshed view that read nothing since its creation is exact once refreshed.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use streamhouse_sql_tests::{connect, http_get, kill_during_writes, sorted_rows, TestServer};

const ROUNDS: usize = 10;
const WRITERS: u64 = 3;
const KEYS: u64 = 150;

const VIEWS: &[(&str, &str)] = &[
    (
        "by_owner",
        "SELECT owner, count(*) AS n, sum(balance) AS total, min(balance) AS lo, max(balance) AS hi FROM accounts GROUP BY owner",
    ),
    ("rich", "SELECT id, owner, balance FROM accounts WHERE balance >= 800"),
    ("totals", "SELECT count(*) AS n, sum(balance) AS total, count(DISTINCT owner) AS owners FROM accounts"),
    (
        "top2_per_owner",
        "SELECT * FROM (SELECT owner, id, balance, ROW_NUMBER() OVER (PARTITION BY owner ORDER BY balance DESC, id) AS rn FROM accounts) WHERE rn <= 2",
    ),
    // A keyed table and a topic through one UNION ALL.
    (
        "with_audit",
        "SELECT owner, count(*) AS n, sum(balance) AS total FROM \
         (SELECT owner, balance FROM accounts UNION ALL SELECT owner, balance FROM audit) GROUP BY owner",
    ),
    // Over a view: checked against the same query over the (already checked) view.
    ("owner_sizes", "SELECT n, count(*) AS owners FROM by_owner GROUP BY n"),
];

/// The statement number `n` of writer `id`: a mix of upserts, updates, deletes and
/// insert-if-absent over a small key space, so keys change and come back often.
fn statement(id: u64, n: u64) -> String {
    let seed = n * 7919 + id * 104_729;
    let key = |i: u64| (seed + i * 37) % KEYS;
    match seed % 5 {
        0 | 1 => {
            let rows: Vec<String> =
                (0..8).map(|i| format!("({}, {}, {})", key(i), (seed + i) % 7, (seed * 13 + i * 101) % 1000)).collect();
            // The same rows go to an append-only topic too (a second statement, not atomic with
            // the first: views are compared with their queries, not with each other).
            format!("INSERT INTO accounts VALUES {0}; INSERT INTO audit VALUES {0}", rows.join(", "))
        }
        2 => format!("UPDATE accounts SET balance = (balance * 3 + {}) % 1000 WHERE id % 10 = {}", seed % 97, seed % 10),
        3 => format!("DELETE FROM accounts WHERE id % 15 = {}", seed % 15),
        _ => {
            let rows: Vec<String> = (0..5).map(|i| format!("({}, {}, {})", key(i), (seed + i) % 7, 900 + i)).collect();
            format!("INSERT INTO accounts VALUES {} ON CONFLICT (id) DO NOTHING", rows.join(", "))
        }
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_a_keyed_table_equal_their_batch_query_after_kill_9_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--segment-bytes-max",
        "20000",
        "--segment-age-max-ms",
        "100",
        "--compaction-interval-ms",
        "150",
        "--compaction-segments-min",
        "2",
        "--tombstone-retention-ms",
        "0",
    ];
    let mut server = TestServer::start(&dir.path().join("data"), &args);
    {
        let client = connect(&server).await;
        client
            .batch_execute(
                "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner BIGINT, balance BIGINT) WITH (partitions = 3);
                 CREATE TOPIC audit (id BIGINT, owner BIGINT, balance BIGINT) WITH (partitions = 2);",
            )
            .await
            .unwrap();
        for (name, query) in VIEWS {
            client.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
        }
        // A reader that lags: it reads only when refreshed, so compaction must keep the
        // tombstones it has not read yet.
        let every_key: Vec<String> = (0..KEYS).map(|k| format!("({k}, {}, {})", k % 7, k * 6 % 1000)).collect();
        client.batch_execute(&format!("INSERT INTO accounts VALUES {}", every_key.join(", "))).await.unwrap();
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW lagging WITH (refresh = 'manual') AS {}", VIEWS[0].1))
            .await
            .unwrap();
    }
    let mut next: Vec<u64> = vec![0; WRITERS as usize];
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            let client = connect(&server).await;
            client.batch_execute(&format!("CREATE MATERIALIZED VIEW late_by_owner AS {}", VIEWS[0].1)).await.unwrap();
        }
        kill_during_writes(&mut server, &mut next, rng.random_range(5..60u64), Arc::new(statement)).await;
    }

    let client = connect(&server).await;
    // More changes after the last restart, then wait (bounded) for a compaction pass to replace
    // segments in this process, so the comparison below reads compacted data.
    for n in 0..40 {
        client.batch_execute(&statement(9, next[0] + n)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let compacted = metric(&http_get(server.http_port, "/metrics"), "streamhouse_segments_compacted_total");
        if compacted > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no compaction within a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.batch_execute("FLUSH").await.unwrap();
    let table = sorted_rows(&client, "SELECT * FROM accounts").await;
    eprintln!("{} live keys after {ROUNDS} kills", table.len());
    assert!(table.len() > 20, "the test wrote too little to mean anything");
    for (name, query) in VIEWS {
        let view = sorted_rows(&client, &format!("SELECT * FROM {name}")).await;
        let batch = sorted_rows(&client, query).await;
        assert!(!view.is_empty(), "{name} is empty");
        assert_eq!(view, batch, "view {name} equals its query in batch");
    }
    client.batch_execute("REFRESH MATERIALIZED VIEW lagging").await.unwrap();
    let lagging = sorted_rows(&client, "SELECT * FROM lagging").await;
    assert_eq!(lagging, sorted_rows(&client, VIEWS[0].1).await, "a view refreshed after compaction equals its query");
    let late = sorted_rows(&client, "SELECT * FROM late_by_owner").await;
    let early = sorted_rows(&client, "SELECT * FROM by_owner").await;
    assert_eq!(late, early, "a view created after the data equals one created before it");
    // Every key at most once.
    let ids: std::collections::HashSet<&str> = table.iter().map(|r| r.split('|').next().unwrap_or("")).collect();
    assert_eq!(ids.len(), table.len());
}
