//! Logging in through real client programs (psql, psycopg, asyncpg, pgjdbc, node-postgres), each
//! a small script in `clients/` that prints `ok <current_user> <session_user>` or
//! `error <SQLSTATE or code> <message>`.
//!
//! Where and how a client connects is given the way libpq takes it from the environment (PGHOST,
//! PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGCHANNELBINDING); psql and psycopg read those
//! through libpq, asyncpg reads them itself, and the node and Java scripts map them to their
//! drivers' options.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every client program the login tests use.
pub const CLIENTS: [&str; 5] = ["psql", "psycopg", "asyncpg", "pgjdbc", "node-postgres"];

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients")
}

/// One login attempt through `client`: `ok <current_user> <session_user>`, or `error …` (psql
/// prints the server's FATAL message instead of a SQLSTATE). `env` adds libpq-style variables.
pub fn login(client: &str, port: u16, user: &str, password: &str, env: &[(&str, &str)]) -> String {
    let port = port.to_string();
    let mut command = match client {
        "psql" => {
            let mut command = Command::new("psql");
            command
                .args(["-X", "-tA", "-p", &port, "-U", user, "-d", "streamhouse", "-c"])
                .arg("SELECT 'ok ' || current_user || ' ' || session_user");
            command
        }
        "psycopg" | "asyncpg" => {
            let mut command = Command::new("python3");
            command.arg(clients_dir().join(format!("python/login_{client}.py"))).args([&port, user, password]);
            command
        }
        "node-postgres" => {
            let mut command = Command::new("node");
            command.arg(clients_dir().join("node/login.js")).args([&port, user, password]);
            command
        }
        "pgjdbc" => {
            let mut command = Command::new("java");
            command
                .args(["-cp", "/usr/share/java/postgresql.jar"])
                .arg(clients_dir().join("java/Login.java"))
                .args([&port, user, password]);
            command
        }
        other => panic!("unknown client {other}"),
    };
    for variable in ["PGHOST", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGCHANNELBINDING", "PGPASSWORD"] {
        command.env_remove(variable);
    }
    command.env("PGHOST", "127.0.0.1").env("PGPASSWORD", password).env("PGCONNECT_TIMEOUT", "30");
    command.envs(env.iter().copied());
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {client} (scripts/test.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if client == "psql" && !output.status.success() {
        // psql prints the server's FATAL message; it has no SQLSTATE at this verbosity.
        return format!("error {stderr}");
    }
    assert!(!stdout.is_empty(), "{client} printed nothing; stderr:\n{stderr}");
    stdout
}

/// This machine's first IPv4 address that is not loopback: a connection to it comes from
/// another host as far as the server can tell.
pub fn non_loopback_address() -> String {
    let output = Command::new("hostname").arg("-I").output().expect("hostname runs");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .unwrap_or_else(|| panic!("this test needs a non-loopback IPv4 address (hostname -I printed none)"))
        .to_string()
}
