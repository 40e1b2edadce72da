//! End-to-end test support: starts a real `streamhouse` server process on ephemeral ports,
//! waits for it to say it is ready, and stops it gracefully or with `kill -9`.
//!
//! The SQL behaviour itself lives in the `.slt` files beside this crate, run over the wire by
//! `tests/slt.rs` with the simple and the extended query protocol.

#![forbid(unsafe_code)]

pub mod login;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `streamhouse` binary built by this workspace: `STREAMHOUSE_BIN`, or `streamhouse` next
/// to the test executable's `deps/` directory.
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("STREAMHOUSE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile> directory");
    profile_dir.join("streamhouse")
}

/// A running server.
pub struct TestServer {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub pg_port: u16,
    pub http_port: u16,
    pub flight_port: u16,
    /// The line the server printed when it was ready (its addresses, and on a first start
    /// without a configured superuser password, where it wrote the generated one).
    pub ready_line: String,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
}

impl TestServer {
    /// Starts a server on `data_dir` with extra command-line arguments.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra_args, &[])
    }

    /// Starts a server with extra arguments and environment variables.
    pub fn start_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut server = Self {
            child: None,
            data_dir: data_dir.to_path_buf(),
            pg_port: 0,
            http_port: 0,
            flight_port: 0,
            ready_line: String::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log_path = self.data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("server log file");
        let mut command = Command::new(server_binary());
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0"])
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("STREAMHOUSE_LOG", std::env::var("STREAMHOUSE_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", server_binary().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Blocks until the server prints its ready line (or exits).
        let ready = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("streamhouse ready") => break line,
                Some(Ok(_)) => continue,
                _ => {
                    let status = child.wait().ok();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("server exited before it was ready ({status:?}); log:\n{log}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let port_of = |key: &str| -> u16 {
            ready
                .split_whitespace()
                .find_map(|part| part.strip_prefix(key))
                .and_then(|address| address.rsplit(':').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in ready line: {ready}"))
        };
        self.pg_port = port_of("postgres=");
        self.http_port = port_of("http=");
        self.flight_port = port_of("flight=");
        self.ready_line = ready;
        self.child = Some(child);
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A libpq-style connection string.
    pub fn connection_string(&self) -> String {
        format!("host=127.0.0.1 port={} user=streamhouse dbname=streamhouse", self.pg_port)
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        child.wait().ok().and_then(|s| s.code())
    }

    /// Starts the server again on the same data directory (on new ports).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP GET to the server's HTTP port; the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("http request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("http response");
    response
}

/// The value of the unlabelled metric `name` in Prometheus text `metrics`; panics if it is
/// missing.
pub fn metric_in(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{metrics}"))
}

/// The value of the unlabelled metric `name` that `server` reports now.
pub fn metric(server: &TestServer, name: &str) -> u64 {
    metric_in(&http_get(server.http_port, "/metrics"), name)
}

/// A client connected to `server`, its connection driven in the background.
pub async fn connect(server: &TestServer) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&server.connection_string(), tokio_postgres::NoTls).await.expect("connect to the test server");
    tokio::spawn(connection);
    client
}

/// Rows of a query (simple protocol) as sorted `a|b|c` text lines, NULL as `NULL`.
pub async fn sorted_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect::<Vec<_>>().join("|"))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Makes statement `n` of writer `w`.
pub type StatementFn = std::sync::Arc<dyn Fn(u64, u64) -> String + Send + Sync>;

/// One round of a crash test: `next.len()` writers run their statements (writer `w` from
/// statement `next[w]` on) until `acks` statements in all have been acknowledged; then the
/// server is killed with `kill -9` mid-write and restarted. `next` is advanced past every
/// statement a writer sent (acknowledged or not).
pub async fn kill_during_writes(server: &mut TestServer, next: &mut [u64], acks: u64, statement: StatementFn) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let reached = std::sync::Arc::new(tokio::sync::Notify::new());
    let tasks: Vec<_> = next
        .iter()
        .enumerate()
        .map(|(w, &first)| {
            let (count, reached, statement) = (count.clone(), reached.clone(), statement.clone());
            let connection_string = format!("host=127.0.0.1 port={} user=streamhouse dbname=streamhouse", server.pg_port);
            tokio::spawn(async move {
                let Ok((client, connection)) = tokio_postgres::connect(&connection_string, tokio_postgres::NoTls).await else {
                    return first;
                };
                tokio::spawn(connection);
                let mut n = first;
                loop {
                    if client.batch_execute(&statement(w as u64, n)).await.is_err() {
                        return n + 1;
                    }
                    if count.fetch_add(1, Ordering::SeqCst) + 1 == acks {
                        reached.notify_one();
                    }
                    n += 1;
                }
            })
        })
        .collect();
    reached.notified().await;
    server.kill();
    for (slot, task) in next.iter_mut().zip(tasks) {
        *slot = task.await.expect("writer task");
    }
    server.restart();
}

/// A real PostgreSQL (Debian's `postgresql` package) in a temporary directory, the oracle for
/// what a client can observe. As root, the server runs as the `postgres` user the package made.
pub struct PostgresOracle {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PostgresOracle {
    /// `initdb` and `pg_ctl start -w` (which returns once the server accepts connections).
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| versions.filter_map(|v| v.ok()).map(|v| v.path().join("bin")).filter(|b| b.join("initdb").exists()).max())
            .expect("PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql package)");
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let oracle = Self { dir, bin, port };
        if Self::as_root() {
            let status = Command::new("chown").arg("postgres:postgres").arg(oracle.dir.path()).status().expect("chown");
            assert!(status.success(), "cannot give the oracle's directory to the postgres user");
        }
        let data = oracle.dir.path().join("data");
        oracle.run(oracle.bin.join("initdb"), &["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "-D", &data.to_string_lossy()]);
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c TimeZone=UTC", oracle.dir.path().display());
        let log = oracle.dir.path().join("log");
        oracle.run(oracle.bin.join("pg_ctl"), &["start", "-w", "-D", &data.to_string_lossy(), "-l", &log.to_string_lossy(), "-o", &options]);
        oracle
    }

    fn as_root() -> bool {
        Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
    }

    /// `program` as the user the server runs as.
    fn command(program: &Path) -> Command {
        if Self::as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: PathBuf, args: &[&str]) {
        let output =
            Self::command(&program).args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A libpq-style connection string for the `postgres` database.
    pub fn connection_string(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }
}

impl PostgresOracle {
    /// Runs `sql` with psql as `user` in `database`, stopping at the first error.
    pub fn psql(&self, user: &str, database: &str, sql: &str) {
        let output = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user, "-d", database, "-c", sql])
            .output()
            .expect("psql (scripts/test.sh installs postgresql-client)");
        assert!(output.status.success(), "{sql} on PostgreSQL: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// A PostgreSQL that a client reaches as it reaches StreamHouse: a superuser named
    /// `streamhouse` owning the database `streamhouse` and its `public` schema.
    pub fn start_like_streamhouse() -> Self {
        let oracle = Self::start();
        oracle.psql("postgres", "postgres", "CREATE ROLE streamhouse SUPERUSER LOGIN");
        oracle.psql("postgres", "postgres", "CREATE DATABASE streamhouse OWNER streamhouse");
        oracle.psql("postgres", "streamhouse", "ALTER SCHEMA public OWNER TO streamhouse");
        oracle
    }
}

impl Drop for PostgresOracle {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Self::command(&self.bin.join("pg_ctl")).args(["stop", "-m", "immediate", "-D"]).arg(&data).output();
    }
}

/// A protocol 3.0 startup packet with these parameters, as a raw-socket test sends it.
pub fn startup_packet(parameters: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (name, value) in parameters {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}
