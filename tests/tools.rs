//! The tools people already use, against StreamHouse and against PostgreSQL with the same
//! objects (a topic there is a table here): each tool's view of the database must be the same.
//! SQLAlchemy 2's inspector, reflection and Core reads, and pandas (clients/python/inspect_sqlalchemy.py);
//! pgjdbc's DatabaseMetaData and date, timestamp and decimal parameters (clients/java/Metadata.java);
//! `information_schema` as BI tools read it.

use std::path::Path;
use std::process::Command;

use streamhouse_sql_tests::{PostgresOracle, TestServer};

/// The same objects on both sides; `TABLE` becomes `TOPIC` for StreamHouse's bids.
const SETUP: [&str; 5] = [
    "CREATE TABLE bids (auction bigint, price numeric(10,2), bidder text, date_time timestamp)",
    "CREATE TABLE people (id bigint PRIMARY KEY, name text, score double precision)",
    "INSERT INTO bids VALUES (1, 10.50, 'ann', '2024-01-01 10:00:00'), (1, 12.00, 'bob', '2024-01-01 10:00:05'), (2, 7.25, 'cy', '2024-01-01 10:00:09')",
    "INSERT INTO people VALUES (1, 'Ada', 1.5), (2, 'Bob', NULL), (3, 'Cy', 3.25)",
    "CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n FROM bids GROUP BY auction",
];

fn run(script: &str, port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python").join(script);
    output(script, Command::new("python3").arg(&path).arg(port.to_string()))
}

fn output(what: &str, command: &mut Command) -> String {
    let output = command.env("PGPASSWORD", "unused").output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(output.status.success(), "{what}:\n{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// PostgreSQL and StreamHouse with the same objects.
fn both() -> (PostgresOracle, TestServer, tempfile::TempDir) {
    let oracle = PostgresOracle::start_like_streamhouse();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    for sql in SETUP {
        oracle.psql("streamhouse", "streamhouse", sql);
        let ours = sql.replace("CREATE TABLE bids", "CREATE TOPIC bids");
        let port = server.pg_port.to_string();
        output(&ours, Command::new("psql").args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port, "-U", "streamhouse", "-d", "streamhouse", "-c", &ours]));
    }
    (oracle, server, dir)
}

#[test]
fn sqlalchemy_and_pandas_see_what_they_see_in_postgres() {
    let (oracle, server, _dir) = both();
    let expected = run("inspect_sqlalchemy.py", oracle.port);
    let ours = run("inspect_sqlalchemy.py", server.pg_port);
    // The inspection saw the objects (so equality is not two empty answers).
    for needle in ["\"people_pkey\"", "\"per_auction\"", "NUMERIC(precision=10, scale=2)", "\"Bob\""] {
        assert!(expected.contains(needle), "{needle} in PostgreSQL's answer:\n{expected}");
    }
    assert_eq!(ours, expected);
}

#[test]
fn pgjdbc_metadata_and_parameters_are_what_they_are_in_postgres() {
    let (oracle, server, _dir) = both();
    let java = |port: u16| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/java/Metadata.java");
        output("pgjdbc Metadata.java", Command::new("java").arg("-cp").arg("/usr/share/java/postgresql.jar").arg(&source).arg(port.to_string()))
    };
    let expected = java(oracle.port);
    let ours = java(server.pg_port);
    for needle in ["PK_NAME=people_pkey", "TABLE_NAME=per_auction | TABLE_TYPE=MATERIALIZED VIEW", "COLUMN_NAME=price | DATA_TYPE=2", "numeric | DATA_TYPE=2", "2024-01-01 | 2024-02-03 04:05:06.789"] {
        assert!(expected.contains(needle), "{needle} in PostgreSQL's answer:\n{expected}");
    }
    assert_eq!(ours, expected);
}

fn psql_output(port: u16, sql: &str) -> String {
    output(sql, Command::new("psql").args(["-X", "-A", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "streamhouse", "-d", "streamhouse", "-c", sql]))
}

#[test]
fn information_schema_is_postgres_information_schema() {
    let (oracle, server, _dir) = both();
    // Every column of each view but `columns.is_updatable` (compared below).
    let columns = "table_catalog, table_schema, table_name, column_name, ordinal_position, column_default, is_nullable, data_type, \
        character_maximum_length, character_octet_length, numeric_precision, numeric_precision_radix, numeric_scale, \
        datetime_precision, interval_type, interval_precision, character_set_catalog, character_set_schema, character_set_name, \
        collation_catalog, collation_schema, collation_name, domain_catalog, domain_schema, domain_name, udt_catalog, udt_schema, \
        udt_name, scope_catalog, scope_schema, scope_name, maximum_cardinality, dtd_identifier, is_self_referencing, is_identity, \
        identity_generation, identity_start, identity_increment, identity_maximum, identity_minimum, identity_cycle, is_generated, \
        generation_expression";
    let queries = [
        format!("SELECT {columns} FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"),
        "SELECT * FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name".into(),
        "SELECT table_schema, table_type FROM information_schema.tables WHERE table_name IN ('pg_class', 'pg_type', 'pg_roles', 'columns', 'tables') ORDER BY 1, 2".into(),
        // PostgreSQL's NOT NULL checks are named by OIDs, which differ: compared by count.
        "SELECT * FROM information_schema.table_constraints WHERE table_schema = 'public' AND constraint_type <> 'CHECK' ORDER BY constraint_name".into(),
        "SELECT table_name, count(*) FROM information_schema.table_constraints WHERE constraint_type = 'CHECK' AND table_schema = 'public' GROUP BY table_name".into(),
        "SELECT * FROM information_schema.key_column_usage WHERE table_schema = 'public'".into(),
        "SELECT * FROM information_schema.views WHERE table_schema = 'public'".into(),
        "SELECT catalog_name, schema_name FROM information_schema.schemata WHERE schema_name IN ('public', 'pg_catalog', 'information_schema') ORDER BY 2".into(),
    ];
    for sql in &queries {
        let expected = psql_output(oracle.port, sql);
        assert!(expected.lines().count() > 2 || sql.contains("views"), "{sql} has rows on PostgreSQL:\n{expected}");
        assert_eq!(psql_output(server.pg_port, sql), expected, "{sql}");
    }
    // Deliberately not PostgreSQL's: a topic is append-only, so its columns are not updatable.
    let updatable = "SELECT table_name, column_name, is_updatable FROM information_schema.columns WHERE table_schema = 'public' AND ordinal_position = 1 ORDER BY 1";
    assert_eq!(psql_output(server.pg_port, updatable), "table_name|column_name|is_updatable\nbids|auction|NO\npeople|id|YES\n(2 rows)\n");
}

/// What a recorded query must answer.
enum Expected {
    /// What PostgreSQL answers, line for line.
    Postgres,
    /// PostgreSQL's rows in any order (the query has no ORDER BY).
    PostgresUnordered,
    /// This output (where StreamHouse deliberately differs).
    Exactly(String),
}

/// The statements of a file of a tool's queries (each ends with `;` at the end of a line), each
/// with what it must answer: PostgreSQL's output, in any row order after an `-- unordered` line,
/// or the output after an `-- expect: a|b|c` line (`|`-separated lines of psql's unaligned
/// output).
fn tool_queries(file: &str) -> Vec<(String, Expected)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools").join(file)).unwrap();
    let (mut queries, mut statement, mut expected) = (Vec::new(), String::new(), Expected::Postgres);
    for line in text.lines() {
        if let Some(output) = line.strip_prefix("-- expect: ") {
            expected = Expected::Exactly(format!("{}\n", output.split('|').collect::<Vec<_>>().join("\n")));
            continue;
        }
        if line == "-- unordered" {
            expected = Expected::PostgresUnordered;
            continue;
        }
        if line.starts_with("--") {
            continue;
        }
        statement.push_str(line);
        statement.push('\n');
        if line.trim_end().ends_with(';') {
            queries.push((std::mem::take(&mut statement), std::mem::replace(&mut expected, Expected::Postgres)));
        }
    }
    queries
}

/// psql's output with its rows (between the header and the footer) sorted.
fn rows_sorted(output: &str) -> String {
    let mut lines: Vec<&str> = output.lines().collect();
    if lines.len() > 2 {
        let last = lines.len() - 1;
        lines[1..last].sort_unstable();
    }
    lines.join("\n")
}

/// Replays a tool's recorded queries against both servers.
fn replay(file: &str, statements: usize) {
    let (oracle, server, _dir) = both();
    let queries = tool_queries(file);
    assert_eq!(queries.len(), statements, "{file}");
    for (sql, expected) in queries {
        let ours = psql_output(server.pg_port, &sql);
        match expected {
            Expected::Exactly(output) => assert_eq!(ours, output, "{sql}"),
            Expected::Postgres => assert_eq!(ours, psql_output(oracle.port, &sql), "{sql}"),
            Expected::PostgresUnordered => assert_eq!(rows_sorted(&ours), rows_sorted(&psql_output(oracle.port, &sql)), "{sql}"),
        }
    }
}

#[test]
fn grafana_catalog_queries_answer_as_in_postgres() {
    replay("grafana.sql", 6);
}

#[test]
fn metabase_catalog_queries_answer_as_in_postgres() {
    replay("metabase.sql", 5);
}

#[test]
fn pg_settings_shows_the_session_settings_with_postgres_columns() {
    let (oracle, server, _dir) = both();
    // The same columns as PostgreSQL's view (psql prints the header of an empty result).
    let empty = "SELECT * FROM pg_settings WHERE false";
    assert_eq!(psql_output(server.pg_port, empty), psql_output(oracle.port, empty));
    // The session's own values: a SET shows, with its source; the others are the defaults.
    let sql = "SET application_name = 'tools test'; SET statement_timeout = 2500; \
        SELECT name, setting, unit, context, vartype, source, boot_val FROM pg_catalog.pg_settings \
        WHERE name IN ('application_name', 'statement_timeout', 'TimeZone', 'DateStyle') ORDER BY name";
    assert_eq!(
        psql_output(server.pg_port, sql),
        "SET\nSET\nname|setting|unit|context|vartype|source|boot_val\n\
         DateStyle|ISO, MDY||user|string|default|ISO, MDY\n\
         TimeZone|UTC||user|string|default|UTC\n\
         application_name|tools test||user|string|session|\n\
         statement_timeout|2500|ms|user|integer|session|0\n(4 rows)\n"
    );
}
