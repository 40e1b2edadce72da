//! Materialized views are exact after crashes: a topic is fed continuously, the server is
//! killed with `kill -9` at random moments, and after the last restart and a FLUSH every view
//! equals its query run in batch over the topic — nothing lost, nothing applied twice. A view
//! created after the data was loaded equals one that followed it from the start.

use std::sync::Arc;

use rand::Rng;
use streamhouse_sql_tests::{connect, http_get, kill_during_writes, metric, sorted_rows, TestServer};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const ROUNDS: usize = 10;
const WRITERS: u64 = 3;
const ROWS_PER_STATEMENT: u64 = 20;

/// Views and their queries; each is checked against its query run in batch.
const VIEWS: &[(&str, &str)] = &[
    ("by_key", "SELECT k, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, avg(v) AS mean FROM events GROUP BY k"),
    (
        "by_window",
        "SELECT window_start, k, count(*) AS n, max(v) AS hi FROM TUMBLE(events, ts, INTERVAL '1 second') GROUP BY window_start, k",
    ),
    ("sevens", "SELECT k, v, ts FROM events WHERE v % 7 = 0"),
    ("totals", "SELECT count(*) AS n, count(DISTINCT k) AS keys, sum(v) AS s, bool_or(v > 990) AS high FROM events"),
    // Over 32 distinct values a group's set is stored a value per state entry.
    ("distinct_v", "SELECT k % 5 AS g, count(DISTINCT v) AS vs, count(*) AS n FROM events GROUP BY k % 5"),
    (
        "window_distinct",
        "SELECT window_start, count(DISTINCT v) AS vs, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '1 second') GROUP BY window_start",
    ),
    ("busy_keys", "SELECT k, count(*) AS n FROM events GROUP BY k HAVING count(*) > 40"),
    ("first_last", "SELECT k, first_value(v ORDER BY ts) AS first_v, last_value(v ORDER BY ts DESC) AS earliest_last FROM events GROUP BY k"),
    (
        "top3_per_key",
        "SELECT * FROM (SELECT k, v, ts, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC, ts) AS rn FROM events) WHERE rn <= 3",
    ),
    // A key's rows come 161 ms apart per writer: with a 200 ms gap each writer's rows of a key
    // form one session that grows with every row (and is retracted and reinserted each time).
    (
        "sessions",
        "SELECT k, window_start, window_end, count(*) AS n, max(v) AS hi FROM SESSION(events, ts, INTERVAL '200 milliseconds', k) GROUP BY k, window_start, window_end",
    ),
    // One topic read by two branches of a UNION ALL: a row may count twice.
    ("evens_and_sevens", "SELECT k, v, 'even' AS why FROM events WHERE v % 2 = 0 UNION ALL SELECT k, v, 'seven' FROM events WHERE v % 7 = 0"),
    // Over a view: checked against the same query over the (already checked) view.
    ("key_sizes", "SELECT n, count(*) AS keys, max(hi) AS hi FROM by_key GROUP BY n"),
    // Over an append-only view (`sevens` and this one keep their rows as a log of batches).
    ("big_sevens", "SELECT k, v FROM sevens WHERE v > 500"),
    // Over a view whose rows are its top-N's state (read by snapshot, then changelog).
    ("top3_sizes", "SELECT k, count(*) AS n, sum(v) AS s FROM top3_per_key GROUP BY k"),
    // A top-N over a retracting input whose state is the view's rows.
    ("two_biggest_keys", "SELECT k, n FROM (SELECT k, n, ROW_NUMBER() OVER (ORDER BY n DESC, k) AS rn FROM by_key) WHERE rn <= 2"),
];

async fn rows(client: &Client, sql: &str) -> Vec<String> {
    sorted_rows(client, sql).await
}

/// Statement `n` of writer `id`: ROWS_PER_STATEMENT rows whose keys and values spread
/// deterministically; event times advance 7 ms a row.
fn insert(id: u64, statement: u64) -> String {
    let values: Vec<String> = (0..ROWS_PER_STATEMENT)
        .map(|row| {
            let n = statement * ROWS_PER_STATEMENT + row;
            let k = (n * 31 + id * 7) % 23;
            let v = (n * 7919 + id * 104729) % 1000;
            let ms = (id * 1_000_000 + n) * 7;
            format!("({k}, {v}, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL '{ms} milliseconds')")
        })
        .collect();
    format!("INSERT INTO events VALUES {}", values.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_batch_query_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &["--segment-bytes-max", "50000", "--segment-age-max-ms", "100"]);
    {
        let client = connect(&server).await;
        client.batch_execute("CREATE TOPIC events (k BIGINT, v BIGINT, ts TIMESTAMP) WITH (partitions = 3)").await.unwrap();
        for (name, query) in VIEWS {
            client.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
        }
    }
    let mut next: Vec<u64> = vec![0; WRITERS as usize];
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            // Created over data already loaded: it backfills, then follows like the others.
            let client = connect(&server).await;
            client.batch_execute(&format!("CREATE MATERIALIZED VIEW late_by_key AS {}", VIEWS[0].1)).await.unwrap();
        }
        kill_during_writes(&mut server, &mut next, rng.random_range(3..40u64), Arc::new(insert)).await;
    }

    let client = connect(&server).await;
    client.batch_execute("FLUSH").await.unwrap();
    let total = rows(&client, "SELECT count(*) FROM events").await;
    let total: u64 = total[0].parse().unwrap();
    eprintln!("{total} rows in the topic after {ROUNDS} kills");
    assert!(total > (ROUNDS as u64) * ROWS_PER_STATEMENT, "the test wrote too little to mean anything: {total} rows");
    for (name, query) in VIEWS {
        let view = rows(&client, &format!("SELECT * FROM {name}")).await;
        let batch = rows(&client, query).await;
        assert!(!view.is_empty(), "{name} is empty");
        assert_eq!(view, batch, "view {name} equals its query in batch");
    }
    let late = rows(&client, "SELECT * FROM late_by_key").await;
    let early = rows(&client, "SELECT * FROM by_key").await;
    assert_eq!(late, early, "a view created after the data equals one created before it");

    // SHOW MATERIALIZED VIEWS reports each view caught up, with its row count.
    let shown = client.simple_query("SHOW MATERIALIZED VIEWS").await.unwrap();
    let mut seen = 0;
    for message in shown {
        if let SimpleQueryMessage::Row(row) = message {
            let name = row.get("name").unwrap().to_string();
            assert_eq!(row.get("status"), Some("running"), "{name}");
            assert_eq!(row.get("lag_rows"), Some("0"), "{name}");
            let count = rows(&client, &format!("SELECT count(*) FROM {name}")).await;
            assert_eq!(row.get("rows"), Some(count[0].as_str()), "{name} row count");
            seen += 1;
        }
    }
    assert_eq!(seen, VIEWS.len() + 1);
}


/// One column of SHOW MATERIALIZED VIEWS for one view.
async fn shown(client: &Client, view: &str, column: &str) -> Option<String> {
    client.simple_query("SHOW MATERIALIZED VIEWS").await.unwrap().into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) if row.get("name") == Some(view) => Some(row.get(column).map(str::to_string)),
        _ => None,
    })?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_rows_are_counted_and_the_watermark_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &[]);
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE TOPIC readings (sensor BIGINT, at TIMESTAMP, WATERMARK FOR at AS at - INTERVAL '10 seconds');
             CREATE MATERIALIZED VIEW per_sensor AS SELECT sensor, count(*) AS n FROM readings GROUP BY sensor;
             INSERT INTO readings VALUES (1, '2024-01-01 00:01:00');
             FLUSH;",
        )
        .await
        .unwrap();
    // The watermark is now 00:00:50: two of these three rows are late.
    client
        .batch_execute(
            "INSERT INTO readings VALUES (1, '2024-01-01 00:00:49'), (2, '2024-01-01 00:00:50'), (3, '2024-01-01 00:00:10');
             FLUSH;",
        )
        .await
        .unwrap();
    assert_eq!(shown(&client, "per_sensor", "late_rows").await.as_deref(), Some("2"));
    assert_eq!(shown(&client, "per_sensor", "watermark").await.as_deref(), Some("2024-01-01 00:00:50"));
    let metrics = http_get(server.http_port, "/metrics");
    assert!(metrics.contains("streamhouse_view_late_rows_total{view=\"per_sensor\"} 2"), "{metrics}");
    assert!(metrics.contains("streamhouse_view_rows{view=\"per_sensor\"} 2"), "{metrics}");

    // After kill -9 the committed watermark and late count are back: a row behind it is still
    // late, and the count goes on from 2.
    drop(client);
    server.kill();
    server.restart();
    let client = connect(&server).await;
    client.batch_execute("INSERT INTO readings VALUES (4, '2024-01-01 00:00:20'); FLUSH;").await.unwrap();
    assert_eq!(shown(&client, "per_sensor", "late_rows").await.as_deref(), Some("3"));
    assert_eq!(rows(&client, "SELECT * FROM per_sensor").await, vec!["1|1", "2|1"]);
    // The topic itself keeps every row.
    assert_eq!(rows(&client, "SELECT count(*) FROM readings").await, vec!["5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_stops_holding_back_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--watermark-idle-timeout-ms", "300"]);
    let client = connect(&server).await;
    // Every row has the same key, so one partition of the two never receives any.
    client
        .batch_execute(
            "CREATE TOPIC ticks (k BIGINT, at TIMESTAMP, WATERMARK FOR at AS at - INTERVAL '1 second')
               WITH (partitions = 2, partition_key = 'k');
             CREATE MATERIALIZED VIEW per_second AS
               SELECT window_start, count(*) AS n FROM TUMBLE(ticks, at, INTERVAL '1 second')
               GROUP BY window_start EMIT ON WINDOW CLOSE;
             INSERT INTO ticks VALUES (7, '2024-01-01 00:00:00.5'), (7, '2024-01-01 00:00:05');",
        )
        .await
        .unwrap();
    // Once the empty partition is idle the watermark is 00:00:04, closing [00:00:00, 00:00:01).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let current = rows(&client, "SELECT * FROM per_second").await;
        if !current.is_empty() {
            assert_eq!(current, vec!["2024-01-01 00:00:00|1"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the watermark never advanced past the idle partition");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(shown(&client, "per_second", "watermark").await.as_deref(), Some("2024-01-01 00:00:04"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_changes_until_cancelled() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE TOPIC hits (k BIGINT);
             INSERT INTO hits VALUES (1), (1), (2);
             CREATE MATERIALIZED VIEW counts AS SELECT k, count(*) AS n FROM hits GROUP BY k;",
        )
        .await
        .unwrap();
    let stream = client.query_raw("SUBSCRIBE TO counts", std::iter::empty::<i64>()).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut next_row = async || {
        let row = stream.next().await.expect("the subscription goes on").expect("a row");
        (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, String>(2), row.get::<_, i64>(3))
    };
    let mut snapshot = vec![next_row().await, next_row().await];
    snapshot.sort();
    let epoch = snapshot[0].3;
    assert_eq!(snapshot, vec![(1, 2, "insert".to_string(), epoch), (2, 1, "insert".to_string(), epoch)]);

    // A write from another session arrives as a retraction and an insertion of a later epoch.
    let writer = connect(&server).await;
    writer.batch_execute("INSERT INTO hits VALUES (2)").await.unwrap();
    let changes = vec![next_row().await, next_row().await];
    assert!(changes[0].3 > epoch && changes[0].3 == changes[1].3, "{changes:?}");
    assert_eq!((changes[0].0, changes[0].1, changes[0].2.as_str()), (2, 1, "delete"));
    assert_eq!((changes[1].0, changes[1].1, changes[1].2.as_str()), (2, 2, "insert"));

    // Cancelling ends it with 57014, and the session stays usable.
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let error = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error,
            None => panic!("the subscription ended without an error"),
        }
    };
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{error}");
    assert_eq!(rows(&client, "SELECT n FROM counts WHERE k = 2").await, vec!["2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_views_refresh_themselves_and_manual_views_wait_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &[]);
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE TOPIC m (x BIGINT);
             CREATE MATERIALIZED VIEW m_manual WITH (refresh = 'manual') AS SELECT count(*) AS n FROM m;
             CREATE MATERIALIZED VIEW m_often WITH (refresh = 'every 200 milliseconds') AS SELECT count(*) AS n FROM m;
             INSERT INTO m VALUES (1), (2);",
        )
        .await
        .unwrap();
    // The periodic view picks the rows up by itself within an interval or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rows(&client, "SELECT n FROM m_often").await != vec!["2"] {
        assert!(std::time::Instant::now() < deadline, "the periodic view never refreshed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&client, "SELECT n FROM m_manual").await, vec!["0"]);

    // After kill -9 the manual view still waits for REFRESH.
    drop(client);
    server.kill();
    server.restart();
    let client = connect(&server).await;
    client.batch_execute("INSERT INTO m VALUES (3); FLUSH;").await.unwrap();
    assert_eq!(rows(&client, "SELECT n FROM m_manual").await, vec!["0"]);
    assert_eq!(
        shown(&client, "m_manual", "definition").await.as_deref(),
        Some("SELECT count(*) AS n FROM m WITH (refresh = 'manual')")
    );
    client.batch_execute("REFRESH MATERIALIZED VIEW m_manual").await.unwrap();
    assert_eq!(rows(&client, "SELECT n FROM m_manual").await, vec!["3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_of_a_subscription_streams_csv_lines() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE TOPIC clicks (page TEXT);
             INSERT INTO clicks VALUES ('a'), ('b'), ('a');
             CREATE MATERIALIZED VIEW per_page AS SELECT page, count(*) AS n FROM clicks GROUP BY page;",
        )
        .await
        .unwrap();
    let stream = client.copy_out("COPY (SUBSCRIBE TO per_page) TO STDOUT WITH (FORMAT csv)").await.unwrap();
    let mut stream = std::pin::pin!(stream);
    // COPY data arrives a row per message.
    let mut next_line = async || {
        let data = stream.next().await.expect("the subscription goes on").expect("copy data");
        String::from_utf8(data.to_vec()).unwrap()
    };
    let mut snapshot = vec![next_line().await, next_line().await];
    snapshot.sort();
    let epoch = snapshot[0].trim_end().rsplit(',').next().unwrap().to_string();
    assert_eq!(snapshot, vec![format!("a,2,insert,{epoch}\n"), format!("b,1,insert,{epoch}\n")]);
    let writer = connect(&server).await;
    writer.batch_execute("INSERT INTO clicks VALUES ('b')").await.unwrap();
    let changes = vec![next_line().await, next_line().await];
    assert!(changes[0].starts_with("b,1,delete,") && changes[1].starts_with("b,2,insert,"), "{changes:?}");
    client.cancel_token().cancel_query(NoTls).await.unwrap();
    let ended = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error,
            None => panic!("the COPY ended without an error"),
        }
    };
    assert_eq!(ended.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{ended}");
}


/// Reads of a view between two commits are answered from the read cache; every commit makes
/// the next read go to the state store, so a read after a FLUSH always has the FLUSHed rows
/// (for each kind of result store: a multiset, an append-only log, a top-N's state). With the
/// cache off, every read goes to the state store and answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_an_unchanged_view_come_from_the_cache_and_never_lag_a_commit() {
    const VIEWS: [(&str, &str); 3] = [
        ("per_k", "SELECT k, count(*) AS n, sum(v) AS s FROM events GROUP BY k"),
        ("odd", "SELECT k, v FROM events WHERE v % 2 = 1"),
        ("top2", "SELECT * FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM events) WHERE rn <= 2"),
    ];
    for cache_bytes in ["268435456", "0"] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("data"), &["--view-read-cache-bytes", cache_bytes]);
        let cached = cache_bytes != "0";
        let client = connect(&server).await;
        client.batch_execute("CREATE TOPIC events (k BIGINT, v BIGINT, ts TIMESTAMP)").await.unwrap();
        for (name, query) in VIEWS {
            client.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
        }
        for round in 0..6u64 {
            let values: Vec<String> =
                (0..50).map(|i| format!("({}, {}, TIMESTAMP '2024-01-01 00:00:00')", (round * 50 + i) % 7, (round * 50 + i) * 37 % 101)).collect();
            client.batch_execute(&format!("INSERT INTO events VALUES {}; FLUSH", values.join(", "))).await.unwrap();
            for (name, query) in VIEWS {
                let expected = rows(&client, &format!("SELECT * FROM ({query})")).await;
                let (hits, misses) = (metric(&server, "streamhouse_view_read_cache_hits_total"), metric(&server, "streamhouse_view_read_cache_misses_total"));
                // The first read after the commit goes to the state store, the second (no commit
                // in between: nothing was written) to the cache when it is on.
                assert_eq!(rows(&client, &format!("SELECT * FROM {name}")).await, expected, "{name}, round {round}, first read");
                assert_eq!(rows(&client, &format!("SELECT * FROM {name}")).await, expected, "{name}, round {round}, second read");
                let (hits_after, misses_after) = (metric(&server, "streamhouse_view_read_cache_hits_total"), metric(&server, "streamhouse_view_read_cache_misses_total"));
                assert_eq!((hits_after - hits, misses_after - misses), if cached { (1, 1) } else { (0, 2) }, "{name}, round {round}");
            }
        }
        assert_eq!(metric(&server, "streamhouse_view_read_cache_bytes") > 0, cached);
        // A dropped view's read leaves the cache.
        let held = metric(&server, "streamhouse_view_read_cache_bytes");
        client.batch_execute("DROP MATERIALIZED VIEW per_k").await.unwrap();
        assert_eq!(metric(&server, "streamhouse_view_read_cache_bytes") < held, cached);
    }
}
