//! Real Postgres clients against a real server: each script in `clients/` creates topics,
//! writes with bound parameters of every supported type, reads back and compares exactly.
//! The clients are installed by `scripts/test.sh` (psql, psycopg 3, asyncpg, pgjdbc from
//! Debian's libpostgresql-jdbc-java, node-postgres), and Arrow Flight clients (pyarrow.flight,
//! the ADBC Flight SQL driver).

use std::path::{Path, PathBuf};
use std::process::Command;

use streamhouse_sql_tests::TestServer;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs a client program against a fresh server and checks it succeeded.
fn run_client(name: &str, command: &mut Command) -> String {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let output = command
        .env("STREAMHOUSE_PG_PORT", server.pg_port.to_string())
        .env("STREAMHOUSE_FLIGHT_PORT", server.flight_port.to_string())
        .env("STREAMHOUSE_HTTP_PORT", server.http_port.to_string())
        .env("PGPASSWORD", "unused")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {name} client (run scripts/test.sh to install it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}

#[test]
fn psql_walkthrough_matches_expected_output() {
    let dir = clients_dir().join("psql");
    let stdout = run_client(
        "psql",
        Command::new("sh").current_dir(&dir).arg("-c").arg(
            "psql -X -P format=unaligned -P footer=off -h 127.0.0.1 -p $STREAMHOUSE_PG_PORT -U streamhouse -d streamhouse -f walkthrough.sql 2>&1",
        ),
    );
    let expected = std::fs::read_to_string(dir.join("walkthrough.expected")).unwrap();
    assert_eq!(stdout, expected);
}

#[test]
fn psycopg() {
    let stdout = run_client("psycopg", Command::new("python3").arg(clients_dir().join("python/test_psycopg.py")));
    assert!(stdout.contains("psycopg: ok"));
}

#[test]
fn asyncpg() {
    let stdout = run_client("asyncpg", Command::new("python3").arg(clients_dir().join("python/test_asyncpg.py")));
    assert!(stdout.contains("asyncpg: ok"));
}

#[test]
fn pgjdbc() {
    let stdout = run_client(
        "pgjdbc",
        Command::new("java")
            .arg("-cp")
            .arg("/usr/share/java/postgresql.jar")
            .arg(clients_dir().join("java/ClientTest.java")),
    );
    assert!(stdout.contains("pgjdbc: ok"));
}

#[test]
fn node_postgres() {
    let stdout = run_client("node-postgres", Command::new("node").arg(clients_dir().join("node/test.js")));
    assert!(stdout.contains("node-postgres: ok"));
}

#[test]
fn pyarrow_flight() {
    let stdout = run_client("pyarrow.flight", Command::new("python3").arg(clients_dir().join("python/test_flight.py")));
    assert!(stdout.contains("pyarrow.flight: ok"), "{stdout}");
}

#[test]
fn adbc_flight_sql() {
    let stdout = run_client("adbc flightsql", Command::new("python3").arg(clients_dir().join("python/test_adbc_flightsql.py")));
    assert!(stdout.contains("adbc flightsql: ok"), "{stdout}");
}
