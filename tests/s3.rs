//! Segments in S3: the topic round trip (write, seal, restart, read) against a real S3 API
//! server, moto's (`moto_server`, from PyPI `moto[server]`), on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use streamhouse_sql_tests::TestServer;
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
