//! Privileges over real sockets: for each kind of statement, a role without the privilege is
//! refused with `42501` and one with it succeeds, over the Postgres protocol and over Arrow Flight;
//! owners alone drop and refresh; a view reads with its owner's rights; a REVOKE reaches sessions
//! already open; and PostgreSQL 15, run beside, gives the same answers to the same script.

use std::process::Command;

use streamhouse_sql_tests::{PostgresOracle, TestServer};

async fn connect(port: u16, user: &str) -> tokio_postgres::Client {
    let config = format!("host=127.0.0.1 port={port} user={user} dbname=streamhouse");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.unwrap_or_else(|e| panic!("{user} connects: {e}"));
    tokio::spawn(connection);
    client
}

/// `ok` or the SQLSTATE of running `sql`.
async fn outcome(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => "ok".into(),
        Err(error) => error.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {error}")),
    }
}

/// `ok` or the error psql printed running `sql` (a COPY) as `user`, with `input` on its stdin.
fn psql_as(port: u16, user: &str, sql: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", "streamhouse", "-c", sql])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        "ok".into()
    } else {
        String::from_utf8_lossy(&output.stderr).trim().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_statement_needs_its_privilege_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let admin = connect(server.pg_port, "streamhouse").await;
    admin
        .batch_execute(
            "CREATE TOPIC bids (auction BIGINT NOT NULL, price BIGINT); \
             CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT); \
             INSERT INTO bids VALUES (1, 10), (2, 20); INSERT INTO accounts VALUES (1, 100), (2, 200); \
             CREATE MATERIALIZED VIEW totals AS SELECT auction, sum(price) AS total FROM bids GROUP BY auction; \
             CREATE ROLE reader LOGIN; CREATE ROLE writer LOGIN; CREATE ROLE changer LOGIN; CREATE ROLE nobody LOGIN; \
             CREATE ROLE readers; GRANT readers TO reader; \
             GRANT SELECT ON bids, totals TO readers; \
             GRANT INSERT ON TOPIC bids TO writer; GRANT INSERT ON TABLE accounts TO writer; \
             GRANT SELECT, UPDATE, DELETE ON accounts TO changer",
        )
        .await
        .unwrap();
    let reader = connect(server.pg_port, "reader").await;
    let writer = connect(server.pg_port, "writer").await;
    let changer = connect(server.pg_port, "changer").await;
    let nobody = connect(server.pg_port, "nobody").await;

    // (statement, the roles that may run it); everyone else gets 42501.
    let matrix: [(&str, &[&str]); 12] = [
        ("SELECT * FROM bids", &["reader"]),
        ("SELECT count(*) FROM bids b JOIN accounts a ON a.id = b.auction", &[]),
        ("SELECT * FROM totals", &["reader"]),
        ("SELECT auction FROM bids WHERE price IN (SELECT balance FROM accounts)", &[]),
        ("INSERT INTO bids VALUES (3, 30)", &["writer"]),
        ("INSERT INTO bids SELECT auction + 100, price FROM bids", &[]),
        ("INSERT INTO accounts VALUES (9, 9) ON CONFLICT DO NOTHING", &["writer"]),
        ("UPDATE accounts SET balance = balance + 1 WHERE id = 1", &["changer"]),
        ("DELETE FROM accounts WHERE id = 2", &["changer"]),
        ("EXPLAIN SELECT * FROM bids", &["reader"]),
        ("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE totals WITH (snapshot = false); CLOSE c; COMMIT", &["reader"]),
        ("CREATE TOPIC mine (x BIGINT)", &[]),
    ];
    let sessions = [("reader", &reader), ("writer", &writer), ("changer", &changer), ("nobody", &nobody)];
    for (sql, allowed) in matrix {
        for (name, client) in sessions {
            let got = outcome(client, sql).await;
            if got != "ok" {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            let expected = if allowed.contains(&name) { "ok" } else { "42501" };
            assert_eq!(got, expected, "{name}: {sql}");
        }
    }
    for (name, client) in sessions {
        let may_insert = name == "writer";
        let copied = psql_as(server.pg_port, name, "COPY bids FROM STDIN", "7\t70\n\\.\n");
        assert_eq!(copied, if may_insert { "ok" } else { "ERROR:  permission denied for table bids" }, "{name}: COPY FROM");
        let copied = psql_as(server.pg_port, name, "COPY (SELECT * FROM bids) TO STDOUT", "");
        assert_eq!(copied, if name == "reader" { "ok" } else { "ERROR:  permission denied for table bids" }, "{name}: COPY TO");
        // Owners alone drop, refresh, grant and change owners.
        for sql in ["DROP TOPIC bids", "DROP MATERIALIZED VIEW totals", "REFRESH MATERIALIZED VIEW totals", "GRANT SELECT ON bids TO nobody", "ALTER TOPIC bids OWNER TO nobody"] {
            assert_eq!(outcome(client, sql).await, "42501", "{name}: {sql}");
        }
    }
    let denied = reader.batch_execute("INSERT INTO bids VALUES (1, 1)").await.unwrap_err();
    assert_eq!(denied.as_db_error().unwrap().message(), "permission denied for table bids");
    let denied = nobody.batch_execute("SELECT * FROM totals").await.unwrap_err();
    assert_eq!(denied.as_db_error().unwrap().message(), "permission denied for materialized view totals");
    let denied = nobody.batch_execute("DROP MATERIALIZED VIEW totals").await.unwrap_err();
    assert_eq!(denied.as_db_error().unwrap().message(), "must be owner of materialized view totals");

    // CREATE on the schema lets a role create; it owns what it creates. Its view needs SELECT on
    // what it reads, and then reads with its owner's rights: SELECT on the view is enough.
    admin.batch_execute("GRANT CREATE ON SCHEMA public TO nobody").await.unwrap();
    assert_eq!(outcome(&nobody, "CREATE TOPIC mine (x BIGINT)").await, "ok");
    assert_eq!(outcome(&nobody, "CREATE MATERIALIZED VIEW peek AS SELECT auction FROM bids").await, "42501");
    admin.batch_execute("GRANT SELECT ON bids TO nobody").await.unwrap();
    assert_eq!(outcome(&nobody, "CREATE MATERIALIZED VIEW peek AS SELECT auction, count(*) AS n FROM bids GROUP BY auction").await, "ok");
    assert_eq!(outcome(&nobody, "GRANT SELECT ON peek TO writer; INSERT INTO mine VALUES (1); FLUSH").await, "ok");
    assert_eq!(outcome(&writer, "SELECT * FROM peek").await, "ok", "the view reads with its owner's rights");
    assert_eq!(outcome(&writer, "SELECT * FROM mine").await, "42501");
    let owners = admin.query("SELECT relname, pg_get_userbyid(relowner) FROM pg_class WHERE relname IN ('mine', 'peek', 'bids') ORDER BY 1", &[]).await.unwrap();
    let owners: Vec<(String, String)> = owners.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(owners, [("bids".into(), "streamhouse".into()), ("mine".into(), "nobody".into()), ("peek".into(), "nobody".into())]);
    let dropped = admin.batch_execute("DROP ROLE nobody").await.unwrap_err();
    assert_eq!(dropped.code().unwrap().code(), "2BP01");
    assert_eq!(outcome(&nobody, "REFRESH MATERIALIZED VIEW peek; DROP MATERIALIZED VIEW peek; DROP TOPIC mine").await, "ok");

    // A REVOKE reaches a session already open, at its next statement.
    assert_eq!(outcome(&reader, "SELECT * FROM bids").await, "ok");
    admin.batch_execute("REVOKE SELECT ON bids FROM readers").await.unwrap();
    assert_eq!(outcome(&reader, "SELECT * FROM bids").await, "42501");
    assert_eq!(outcome(&reader, "SELECT * FROM totals").await, "ok");
    let answers = admin
        .query_one(
            "SELECT has_table_privilege('reader', 'totals', 'SELECT'), has_table_privilege('reader', 'bids', 'select'), \
             has_table_privilege('writer', 'bids', 'SELECT, INSERT'), has_table_privilege('bids', 'DELETE')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((answers.get::<_, bool>(0), answers.get::<_, bool>(1), answers.get::<_, bool>(2), answers.get::<_, bool>(3)), (true, false, true, true));

    // Flight applies the same privileges: DoGet of a partition, DoPut and Flight SQL.
    let script = r#"
import sys
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as flight
port = sys.argv[1]
def attempt(name, call):
    try:
        call()
        print(name, "ok")
    except flight.FlightUnauthorizedError:
        print(name, "denied")
    except Exception as error:
        print(name, "denied" if "permission denied" in str(error) else f"error {error}")
for role in ["writer", "nobody"]:
    client = flight.connect(f"grpc://127.0.0.1:{port}")
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(role, "")])
    attempt(f"{role}-doget", lambda: client.do_get(flight.Ticket(b'{"topic": "bids", "partition": 0}'), options=options).read_all())
    def put():
        batch = pa.record_batch([pa.array([5], pa.int64()), pa.array([50], pa.int64())], names=["auction", "price"])
        writer, reader = client.do_put(flight.FlightDescriptor.for_path("bids"), batch.schema, options=options)
        writer.write_batch(batch)
        writer.done_writing()
        reader.read()
        writer.close()
    attempt(f"{role}-doput", put)
    def sql():
        with flight_sql.connect(f"grpc://127.0.0.1:{port}", db_kwargs={"username": role, "password": ""}) as conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM accounts")
            cur.fetchall()
    attempt(f"{role}-sql-select", sql)
"#;
    let output = Command::new("python3").args(["-c", script, &server.flight_port.to_string()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout,
        "writer-doget denied\nwriter-doput ok\nwriter-sql-select denied\nnobody-doget ok\nnobody-doput denied\nnobody-sql-select denied\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The same script on PostgreSQL 15 and here: the same answers and errors, line for line (only
/// the word TOPIC, where PostgreSQL says TABLE, differs).
#[test]
fn the_answers_are_postgresqls() {
    let script = "CREATE ROLE alice LOGIN;\nCREATE ROLE bob LOGIN;\nCREATE ROLE staff;\nGRANT staff TO bob;\n\
        CREATE @T bids (id bigint, price bigint);\nINSERT INTO bids VALUES (1, 10);\nSET ROLE alice;\n\
        SELECT * FROM bids;\nINSERT INTO bids VALUES (2, 20);\nCREATE @T a_t (x bigint);\nDROP @T bids;\n\
        GRANT SELECT ON bids TO bob;\nSELECT has_table_privilege('bids', 'SELECT');\nRESET ROLE;\n\
        GRANT SELECT ON bids TO staff;\nGRANT INSERT ON TABLE bids TO alice;\nSET ROLE bob;\nSELECT count(*) FROM bids;\n\
        INSERT INTO bids VALUES (3, 30);\nSET ROLE alice;\nINSERT INTO bids VALUES (2, 20);\nSELECT price FROM bids;\nRESET ROLE;\n\
        SELECT has_table_privilege('alice','bids','INSERT'), has_table_privilege('alice','bids','select'), has_table_privilege('bob','bids','SELECT, INSERT');\n\
        SELECT relacl FROM pg_class WHERE relname = 'bids';\nREVOKE INSERT ON bids FROM alice;\nSELECT relacl FROM pg_class WHERE relname = 'bids';\n\
        GRANT CREATE ON SCHEMA public TO alice;\nSET ROLE alice;\nCREATE @T alices (x bigint);\nINSERT INTO alices VALUES (1);\n\
        SELECT * FROM alices;\nRESET ROLE;\nSELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'alices';\n\
        ALTER @T alices OWNER TO bob;\nSELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'alices';\nDROP ROLE bob;\n\
        SELECT has_table_privilege('nobody', 'bids', 'SELECT');\nSELECT has_table_privilege('alice', 'nothere', 'SELECT');\n\
        SELECT has_table_privilege('alice', 'bids', 'FLY');\nGRANT SELECT ON nothere TO alice;\nGRANT SELECT ON bids TO nobody;\n";
    let run = |host: &str, port: u16, user: &str, database: &str, table_word: &str| -> String {
        let output = Command::new("psql")
            .args(["-X", "-q", "-A", "-h", host, "-p", &port.to_string(), "-U", user, "-d", database, "-v", "VERBOSITY=terse"])
            .env("PGOPTIONS", "")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(script.replace("@T", table_word).as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        // Errors go to stderr with a line number; interleave by keeping both, in order of lines.
        // PostgreSQL places some errors (`at character 14`); the wire protocol lets a server
        // leave that out, and this one does.
        let stderr: String = String::from_utf8_lossy(&output.stderr)
            .lines()
            .map(|line| match line.find(" at character ") {
                Some(at) => format!("{}\n", &line[..at]),
                None => format!("{line}\n"),
            })
            .collect();
        format!("{}\n--- errors ---\n{stderr}", String::from_utf8_lossy(&output.stdout))
            .replace(&format!("{user}=arwdDxt/{user}"), "OWNER=arwdDxt/OWNER")
            .replace(&format!("/{user}"), "/OWNER")
    };
    let oracle = PostgresOracle::start();
    let expected = run("127.0.0.1", oracle.port, "postgres", "postgres", "TABLE");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let got = run("127.0.0.1", server.pg_port, "streamhouse", "streamhouse", "TOPIC");
    assert_eq!(got, expected);
}
