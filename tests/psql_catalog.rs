//! psql's catalog commands (lists of relations, schemas, databases, roles and privileges, and
//! `\d name`) against StreamHouse print what they print against PostgreSQL for the
//! same objects: a real PostgreSQL (the oracle) gets a table and a materialized view with the
//! topic's and the view's columns, owned by a role named like StreamHouse's owner, and each
//! command's output (psql itself runs the queries it always sends) must be equal on both.

use std::process::Command;

use streamhouse_sql_tests::{PostgresOracle, TestServer};

fn psql(port: u16, user: &str, command: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-A", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", "streamhouse", "-c", command])
        .env("PGPASSWORD", "unused")
        .output()
        .expect("psql (scripts/test.sh installs postgresql-client)");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn list_commands_print_what_postgres_prints() {
    let oracle = PostgresOracle::start_like_streamhouse();
    let setup = [
        "CREATE TABLE bids (auction bigint, price numeric(10,2), date_time timestamp)",
        "CREATE TABLE people (id bigint PRIMARY KEY, name text)",
        "CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n FROM bids GROUP BY auction",
    ];
    // Roles made the same way on both (the bootstrap superusers differ in name, so \du is
    // compared role by role).
    let roles = [
        "CREATE ROLE alice LOGIN PASSWORD 'pw'",
        "CREATE ROLE staff",
        "CREATE ROLE boss SUPERUSER",
        "GRANT staff TO alice",
        "GRANT alice TO boss",
        "GRANT SELECT ON bids TO alice",
        "GRANT SELECT, INSERT ON people TO staff",
        "GRANT SELECT ON per_auction TO PUBLIC",
    ];
    for sql in setup.iter().chain(&roles) {
        let out = psql(oracle.port, "streamhouse", sql);
        assert!(!out.contains("ERROR"), "{sql}: {out}");
    }

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    for sql in [
        "CREATE TOPIC bids (auction bigint, price numeric(10,2), date_time timestamp)",
        "CREATE TABLE people (id bigint PRIMARY KEY, name text)",
        "CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n FROM bids GROUP BY auction",
    ]
    .iter()
    .chain(&roles)
    {
        let out = psql(server.pg_port, "streamhouse", sql);
        assert!(!out.contains("ERROR"), "{sql}: {out}");
    }

    for command in ["\\dt", "\\dm", "\\dn", "\\dn+", "\\dT", "\\dT+", "\\dp", "\\dp bids", "\\z people", "\\d bids", "\\d people", "\\d per_auction", "\\d people_pkey", "\\d+ bids", "\\d+ people", "\\d+ people_pkey", "\\l streamhouse", "\\dt bids", "\\dt nothing*", "\\du alice", "\\du staff", "\\du boss", "\\du nothing*",
        "SELECT * FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
        "SELECT schemaname, matviewname, matviewowner, tablespace, hasindexes, ispopulated FROM pg_matviews",
        "SELECT usename, usecreatedb, usesuper, userepl, usebypassrls, passwd, valuntil, useconfig FROM pg_user WHERE usename = 'alice'",
    ] {
        let expected = psql(oracle.port, "streamhouse", command);
        let ours = psql(server.pg_port, "streamhouse", command);
        assert!(!expected.contains("ERROR"), "{command} on PostgreSQL: {expected}");
        assert_eq!(ours, expected, "{command}");
    }

    // `\d+` of a view shows its query: PostgreSQL's rendering there, the query as written here.
    let without_definition = |output: &str| -> String {
        let mut kept = Vec::new();
        let mut in_definition = false;
        for line in output.lines() {
            if line == "View definition:" {
                in_definition = true;
            } else if line.starts_with("Access method") {
                in_definition = false;
            }
            if !in_definition {
                kept.push(line);
            }
        }
        kept.join("\n")
    };
    let expected = psql(oracle.port, "streamhouse", "\\d+ per_auction");
    let ours = psql(server.pg_port, "streamhouse", "\\d+ per_auction");
    assert_eq!(without_definition(&ours), without_definition(&expected));
    assert!(ours.contains("View definition:\nSELECT auction, count(*) AS n FROM bids GROUP BY auction\n"), "{ours}");

    // The `+` lists also show each relation's size, which is PostgreSQL's pages there and the
    // stored segments and unsealed rows here: compared without it, and checked on its own.
    for (command, size_column) in [("\\dt+", 6), ("\\dm+", 6), ("\\di+", 7)] {
        let without_size = |output: &str| -> Vec<String> {
            output.lines().map(|line| line.split('|').enumerate().map(|(i, f)| if i == size_column { "<size>" } else { f }).collect::<Vec<_>>().join("|")).collect()
        };
        let expected = psql(oracle.port, "streamhouse", command);
        let ours = psql(server.pg_port, "streamhouse", command);
        assert_eq!(without_size(&ours), without_size(&expected), "{command}");
        let sizes: Vec<&str> = ours.lines().skip(2).filter_map(|line| line.split('|').nth(size_column)).collect();
        match command {
            // Topics and keyed tables: their bytes (nothing was written to them here).
            "\\dt+" => assert_eq!(sizes, ["0 bytes", "0 bytes"], "{ours}"),
            // A view's state and a key index are not measured per relation.
            _ => assert!(sizes.iter().all(|s| s.is_empty()), "{ours}"),
        }
    }
}
