//! Segments in S3: the topic round trip (write, seal, restart, read) against a real S3 API
//! server, moto's (`moto_server`, from PyPI `moto[server]`), on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use streamhouse_sql_tests::{connect, metric, TestServer};
use tokio_postgres::NoTls;

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        // Take a free port from the kernel, then hand it to moto.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; scripts/test.sh does)");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        // Werkzeug announces the address once it accepts connections.
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Running on") => break,
                Some(Ok(_)) => continue,
                _ => panic!("moto_server exited before it was ready"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self { child, port }
    }

    /// A plain HTTP request to moto (it accepts unsigned requests).
    fn request(&self, method: &str, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

impl Moto {
    /// The environment that points a server at this moto.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the moto process: while stopped, requests to
    /// it hang, as to an S3 that stopped answering.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} moto");
    }

    /// Keys of the objects under `prefix` in `bucket`.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listing = self.request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"));
        listing.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_string).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_round_trip_through_s3() {
    let moto = Moto::start();
    assert!(moto.request("PUT", "/streamhouse-test").starts_with("HTTP/1.1 200"), "bucket created");
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let args = ["--object-store", "s3://streamhouse-test/cluster-a", "--segment-bytes-max", "4096"];
    let mut server = TestServer::start_with_env(&dir.path().join("data"), &args, &env);
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TOPIC trades (id BIGINT, symbol TEXT, qty INT) WITH (partitions = 2)").await.unwrap();
    for batch in 0..10 {
        let values: Vec<String> = (0..100).map(|i| format!("({}, 'SYM{}', {})", batch * 100 + i, i % 7, i)).collect();
        client.batch_execute(&format!("INSERT INTO trades VALUES {}", values.join(", "))).await.unwrap();
    }
    drop(client);
    assert_eq!(server.stop(), Some(0));

    // The segments are objects in the bucket, under the prefix and the documented layout.
    let listing = moto.request("GET", "/streamhouse-test?list-type=2&prefix=cluster-a/topics/");
    let keys: Vec<&str> = listing.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).collect();
    assert!(!keys.is_empty(), "no segment objects in S3:\n{listing}");
    for key in &keys {
        assert!(key.starts_with("cluster-a/topics/") && key.ends_with(".arrow"), "{key}");
    }

    server.restart();
    let (client, connection) = tokio_postgres::connect(&server.connection_string(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client.query_one("SELECT count(*), sum(id), count(DISTINCT symbol) FROM trades", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1000);
    assert_eq!(row.get::<_, i64>(1), (0..1000).sum::<i64>());
    assert_eq!(row.get::<_, i64>(2), 7);
    // After a restart the cache is empty: the rows came from S3.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut metrics = String::new();
    stream.read_to_string(&mut metrics).unwrap();
    let misses: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("streamhouse_segment_cache_misses_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(misses >= 1, "segments were fetched from the object store");
}

/// A TCP proxy in front of moto that can turn into an S3 answering `503 Slow Down` to every
/// request (connections already open are cut, so that pooled ones come back through it).
struct FaultyProxy {
    port: u16,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered with 503.
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl FaultyProxy {
    async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let (accept_failing, accept_refused) = (failing.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if accept_failing.load(Ordering::Acquire) {
                    let refused = accept_refused.clone();
                    tokio::spawn(async move { answer_slow_down(&mut client, &refused).await });
                    continue;
                }
                let mut cuts = cuts.clone();
                // Only cuts after this connection was made end it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { port, failing, refused, cut }
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::Release);
        self.cut.send_modify(|generation| *generation += 1);
    }

    fn env(&self, moto: &Moto) -> Vec<(String, String)> {
        let mut env = moto.env();
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), format!("http://127.0.0.1:{}", self.port)));
        env
    }
}

/// Reads one HTTP request (head and body) and answers `503 Slow Down`, as S3 does when it
/// sheds load.
async fn answer_slow_down(client: &mut tokio::net::TcpStream, refused: &std::sync::atomic::AtomicU64) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut reader = tokio::io::BufReader::new(&mut *client);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    let error = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let response = format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{error}",
        error.len()
    );
    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = client.write_all(response.as_bytes()).await;
}

/// About 200 KB of rows that do not compress, ids from `first`.
fn incompressible_insert(first: i64) -> String {
    format!(
        "INSERT INTO t SELECT v, md5(random()::text) || md5(random()::text) || md5(random()::text) \
         FROM generate_series({first}, {}) g(v)",
        first + 1999
    )
}

/// Writes of [`incompressible_insert`] and what they acknowledged.
#[derive(Default)]
struct Load {
    rows: i64,
    sum: i64,
    next: i64,
}

impl Load {
    async fn insert(&mut self, client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
        client.batch_execute(&incompressible_insert(self.next)).await?;
        self.rows += 2000;
        self.sum += (self.next..self.next + 2000).sum::<i64>();
        self.next += 2000;
        Ok(())
    }
}

/// An S3 outage in the middle of a load, started and ended by `outage(true)` / `outage(false)`,
/// with the server's S3 at `env`, in `bucket` under `prefix`: writes go on landing in the WAL
/// until the partition's unsealed rows reach `partition_tail_bytes_max`, then fail with `53000`
/// after `append_wait_ms_max`; once S3 answers again, sealing catches up by itself while the
/// server runs and writes resume; after a graceful stop and after a `kill -9` in the middle of
/// another outage every acknowledged row is there.
async fn ride_out_an_outage(moto: &Moto, env: &[(String, String)], bucket: &str, outage: impl Fn(bool)) {
    assert!(moto.request("PUT", &format!("/{bucket}")).starts_with("HTTP/1.1 200"), "bucket created");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/p");
    let args = ["--object-store", &url, "--segment-bytes-max", "262144", "--partition-tail-bytes-max", "2097152", "--append-wait-ms-max", "1500"];
    let mut server = TestServer::start_with_env(&dir.path().join("data"), &args, &env);
    let client = connect(&server).await;
    client.batch_execute("CREATE TOPIC t (id bigint, s text) WITH (partitions = 1)").await.unwrap();
    let mut load = Load::default();
    for _ in 0..5 {
        load.insert(&client).await.unwrap();
    }
    let sealed = || metric(&server, "streamhouse_segments_sealed_total");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sealed() == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing sealed to S3 within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let objects_before = moto.keys(bucket, "p/topics/").len();

    // The outage: writes keep being acknowledged (from the WAL) up to the tail bound.
    outage(true);
    let mut during = 0;
    let refused = loop {
        match load.insert(&client).await {
            Ok(()) => during += 1,
            Err(error) => break error,
        }
        assert!(during < 100, "writes never refused during the outage");
    };
    let refused = refused.as_db_error().expect("a server error").clone();
    assert_eq!(refused.code().code(), "53000", "{}", refused.message());
    assert!(refused.message().contains("partition_tail_bytes_max"), "{}", refused.message());
    assert!(during >= 5, "only {during} writes acknowledged during the outage");

    // S3 answers again: writes resume and sealing catches up, without a restart.
    outage(false);
    let sealed_at_return = sealed();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match load.insert(&client).await {
            Ok(()) => break,
            Err(error) => assert_eq!(error.code().map(|c| c.code()), Some("53000"), "{error}"),
        }
        assert!(std::time::Instant::now() < deadline, "writes did not resume within 120 s of S3's return");
    }
    for _ in 0..3 {
        load.insert(&client).await.unwrap();
    }
    while sealed() <= sealed_at_return {
        assert!(std::time::Instant::now() < deadline, "nothing sealed within 120 s of S3's return");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(client);

    // A graceful stop seals everything; a restart reads it back from S3.
    assert_eq!(server.stop(), Some(0));
    assert!(moto.keys(bucket, "p/topics/").len() > objects_before, "the rows written during the outage were sealed to S3");
    server.restart();
    let client = connect(&server).await;
    let row = client.query_one("SELECT count(*), sum(id) FROM t", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (load.rows, load.sum));
    // Nothing is lost to a kill -9 in the middle of another outage.
    outage(true);
    for _ in 0..3 {
        load.insert(&client).await.unwrap();
    }
    outage(false);
    server.kill();
    server.restart();
    let client = connect(&server).await;
    let row = client.query_one("SELECT count(*), sum(id) FROM t", &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (load.rows, load.sum));
}

/// S3 stops answering (moto stopped with SIGSTOP: requests hang) and comes back (SIGCONT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_ride_out_a_stopped_s3_in_the_wal_and_sealing_catches_up() {
    let moto = Moto::start();
    ride_out_an_outage(&moto, &moto.env(), "faults", |on| moto.signal(if on { "STOP" } else { "CONT" })).await;
}

/// S3 answers `503 Slow Down` to everything for a while (moto behind a proxy): the S3 client
/// retries with backoff meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_ride_out_an_s3_answering_503_and_sealing_catches_up() {
    let moto = Moto::start();
    let proxy = FaultyProxy::start(moto.port).await;
    ride_out_an_outage(&moto, &proxy.env(&moto), "shed", |on| proxy.fail(on)).await;
    assert!(proxy.refused.load(std::sync::atomic::Ordering::Relaxed) >= 2, "the S3 client retried");
}
