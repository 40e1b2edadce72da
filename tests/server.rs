//! The server end to end over real sockets: COPY, pruning, cancellation, portals, the CLI,
//! graceful shutdown, HTTP health and metrics.

use std::process::Command;

use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use streamhouse_sql_tests::{http_get, server_binary, TestServer};
use tokio_postgres::{Client, NoTls};

async fn connect(server: &TestServer) -> Client {
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}



#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_round_trip_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let client = connect(&server).await;
    client.batch_execute("CREATE TOPIC people (id INT NOT NULL, name TEXT, height DOUBLE PRECISION)").await.unwrap();

    // CSV with a header, quoting, an empty string and a NULL, split across CopyData messages.
    let rows: Vec<(i32, Option<String>, Option<f64>)> = (0..5000)
        .map(|i| {
            let name = match i % 4 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(format!("name, with \"quotes\" {i}")),
                _ => Some(format!("plain{i}")),
            };
            (i, name, if i % 3 == 0 { None } else { Some(i as f64 / 4.0) })
        })
        .collect();
    let mut csv = String::from("id,name,height\n");
    for (id, name, height) in &rows {
        let name = match name {
            None => String::new(),
            Some(n) => format!("\"{}\"", n.replace('"', "\"\"")),
        };
        let height = height.map(|h| h.to_string()).unwrap_or_default();
        csv.push_str(&format!("{id},{name},{height}\n"));
    }
    let sink = client.copy_in("COPY people FROM STDIN (FORMAT csv, HEADER true)").await.unwrap();
    futures::pin_mut!(sink);
    for chunk in csv.as_bytes().chunks(1000) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), rows.len() as u64);

    let out = client.copy_out("COPY (SELECT id, name, height FROM people ORDER BY id) TO STDOUT (FORMAT csv)").await.unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let text = String::from_utf8(chunks.concat()).unwrap();
    let expected: String = rows
        .iter()
        .map(|(id, name, height)| {
            let name = match name {
                None => String::new(),
                Some(n) if n.is_empty() || n.contains(',') || n.contains('"') => format!("\"{}\"", n.replace('"', "\"\"")),
                Some(n) => n.clone(),
            };
            format!("{id},{name},{}\n", height.map(|h| h.to_string()).unwrap_or_default())
        })
        .collect();
    assert_eq!(text, expected);

    // Text format: tab separated, \N for NULL.
    let out = client.copy_out("COPY people TO STDOUT").await.unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let text = String::from_utf8(chunks.concat()).unwrap();
    assert_eq!(text.lines().count(), rows.len());
    assert!(text.lines().any(|l| l == "0\t\\N\t\\N"), "row 0 in text format");

    // A bad value on line 3 rejects the whole COPY and says where.
    let sink = client.copy_in("COPY people FROM STDIN (FORMAT csv)").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"9001,a,1\n9002,b,2\n9003,c,tall\n")).await.unwrap();
    let error = sink.finish().await.unwrap_err();
    let db = error.as_db_error().expect("database error");
    assert_eq!(db.code().code(), "22P02");
    assert!(db.message().contains("line 3") && db.message().contains("column height"), "{}", db.message());
    let count: i64 = client.query_one("SELECT count(*) FROM people", &[]).await.unwrap().get(0);
    assert_eq!(count, rows.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predicates_on_offsets_and_event_time_prune_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Every statement seals into a segment of its own at shutdown (1-byte segments).
    let mut server = TestServer::start(&dir.path().join("data"), &["--segment-bytes-max", "1", "--segment-age-max-ms", "3600000"]);
    let client = connect(&server).await;
    client
        .batch_execute("CREATE TOPIC readings (v BIGINT, at TIMESTAMP, WATERMARK FOR at AS at - INTERVAL '1 second')")
        .await
        .unwrap();
    for day in 1..=3 {
        let values: Vec<String> = (0..10).map(|i| format!("({}, '2024-01-0{day} 00:00:{i:02}')", day * 100 + i)).collect();
        client.batch_execute(&format!("INSERT INTO readings VALUES {}", values.join(", "))).await.unwrap();
    }
    drop(client);
    assert_eq!(server.stop(), Some(0));
    server.restart();
    let client = connect(&server).await;

    let plan = |sql: &str| {
        let client = &client;
        let sql = format!("EXPLAIN {sql}");
        async move {
            let rows = client.query(&sql, &[]).await.unwrap();
            rows.iter().map(|r| r.get::<_, String>(1)).collect::<Vec<_>>().join("\n")
        }
    };
    let explained = plan("SELECT v FROM readings WHERE _offset >= 20").await;
    assert!(explained.contains("segments=1 of 3"), "{explained}");
    let explained = plan("SELECT v FROM readings WHERE at < '2024-01-02'").await;
    assert!(explained.contains("segments=1 of 3"), "{explained}");
    let explained = plan("SELECT v FROM readings").await;
    assert!(explained.contains("segments=3 of 3"), "{explained}");

    // Pruning never changes answers.
    let sum: i64 = client.query_one("SELECT sum(v) FROM readings WHERE _offset >= 20", &[]).await.unwrap().get(0);
    assert_eq!(sum, (300..310).sum::<i64>());
    let sum: i64 = client.query_one("SELECT sum(v) FROM readings WHERE at < '2024-01-02'", &[]).await.unwrap().get(0);
    assert_eq!(sum, (100..110).sum::<i64>());
    let count: i64 = client.query_one("SELECT count(*) FROM readings WHERE _offset BETWEEN 5 AND 24", &[]).await.unwrap().get(0);
    assert_eq!(count, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let client = connect(&server).await;
    let token = client.cancel_token();
    let query = client.query_one("SELECT count(*) FROM generate_series(1, 1000000000000)", &[]);
    futures::pin_mut!(query);
    // The cancel may arrive before the query starts (and is then ignored, as in Postgres), so
    // keep cancelling until the query ends; it must end with 57014.
    let mut attempts = 0;
    let result = loop {
        tokio::select! {
            result = &mut query => break result,
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                attempts += 1;
                assert!(attempts < 300, "query was never cancelled");
                token.cancel_query(NoTls).await.unwrap();
            }
        }
    };
    let error = result.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("57014"), "{error}");
    let one: i64 = client.query_one("SELECT 1::BIGINT", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_suspend_after_max_rows_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let mut client = connect(&server).await;
    client.batch_execute("CREATE TOPIC n (v BIGINT)").await.unwrap();
    client.execute("INSERT INTO n SELECT value FROM generate_series(1, 95)", &[]).await.unwrap();
    let transaction = client.transaction().await.unwrap();
    let statement = transaction.prepare("SELECT v FROM n WHERE v > $1 ORDER BY v").await.unwrap();
    let portal = transaction.bind(&statement, &[&10i64]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = transaction.query_portal(&portal, 20).await.unwrap();
        assert!(rows.len() <= 20);
        if rows.is_empty() {
            break;
        }
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, (11..=95).collect::<Vec<i64>>());
    transaction.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_streams_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let client = connect(&server).await;
    let stream = client.query_raw("SELECT value FROM generate_series(1, 300000)", Vec::<i64>::new()).await.unwrap();
    futures::pin_mut!(stream);
    let mut count = 0u64;
    let mut sum = 0i64;
    while let Some(row) = stream.next().await {
        sum += row.unwrap().get::<_, i64>(0);
        count += 1;
    }
    assert_eq!(count, 300_000);
    assert_eq!(sum, 300_000 * 300_001 / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_data_and_metrics_count_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &[]);
    assert!(http_get(server.http_port, "/health").ends_with("ok\n"));
    assert!(http_get(server.http_port, "/nope").starts_with("HTTP/1.1 404"));
    let client = connect(&server).await;
    client.batch_execute("CREATE TOPIC m (v INT)").await.unwrap();
    client.execute("INSERT INTO m VALUES (1), (2), (3)", &[]).await.unwrap();
    client.execute("INSERT INTO m VALUES (4)", &[]).await.unwrap();
    let metrics = http_get(server.http_port, "/metrics");
    // The four rows, and two entries of the audit trail (the login and CREATE TOPIC).
    assert_eq!(streamhouse_sql_tests::metric_in(&metrics, "streamhouse_rows_appended_total"), 4 + 2);
    assert_eq!(streamhouse_sql_tests::metric_in(&metrics, "streamhouse_active_connections"), 1);
    assert!(streamhouse_sql_tests::metric_in(&metrics, "streamhouse_wal_fsync_seconds_count") >= 1);
    drop(client);
    assert_eq!(server.stop(), Some(0), "SIGTERM exits 0");
    server.restart();
    let client = connect(&server).await;
    let sum: i64 = client.query_one("SELECT sum(v) FROM m", &[]).await.unwrap().get(0);
    assert_eq!(sum, 10);
    let metrics = http_get(server.http_port, "/metrics");
    assert!(streamhouse_sql_tests::metric_in(&metrics, "streamhouse_segments_sealed_total") == 0, "sealed at the previous shutdown, not now");
}

#[test]
fn bad_configuration_fails_fast_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(server_binary()).args(["serve", "--no-such-flag"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");

    // A data directory that cannot be created (a regular file is in the way).
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let output = Command::new(server_binary())
        .args(["serve", "--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(file.join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("data directory"), "{stderr}");

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = Command::new(server_binary())
        .args(["serve", "--http-listen", "127.0.0.1:0", "--pg-listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("d2"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");

    // Zero where a positive limit is needed.
    let output = Command::new(server_binary()).args(["serve", "--segment-bytes-max", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("segment_bytes_max must be greater than 0"));
}

#[test]
fn one_data_directory_serves_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let _server = TestServer::start(&dir.path().join("data"), &[]);
    let output = Command::new(server_binary())
        .args(["serve", "--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another streamhouse process"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_a_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("streamhouse.toml");
    // The file sets a tiny segment size (with the default 16 MiB both rows would share one).
    std::fs::write(&config, "segment_bytes_max = 1\nsegment_age_max_ms = 3600000\nlog = \"info\"\n").unwrap();
    let mut server = TestServer::start(&data, &["--config", config.to_str().unwrap()]);
    let client = connect(&server).await;
    client.batch_execute("CREATE TOPIC cfg (v INT)").await.unwrap();
    client.batch_execute("INSERT INTO cfg VALUES (1)").await.unwrap();
    client.batch_execute("INSERT INTO cfg VALUES (2)").await.unwrap();
    drop(client);
    assert_eq!(server.stop(), Some(0));
    server.restart();
    let client = connect(&server).await;
    // segment_bytes_max = 1 from the file: one segment per statement after the shutdown seal.
    let rows = client.query("DESCRIBE cfg", &[]).await.unwrap();
    let segments: i64 = rows.iter().filter(|r| r.get::<_, String>(0) == "partition").map(|r| r.get::<_, i64>(6)).sum();
    assert_eq!(segments, 2);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "no_such_setting = 1\n").unwrap();
    let output = Command::new(server_binary()).args(["serve", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid config file"));
}
