//! Statements written to exhaust the server's stack get an error or an answer, never an abort:
//! every shape of deep nesting (operator chains, unions, chains of CTEs, parentheses, function
//! calls, subqueries, prefix operators, arrays of arrays) over the simple and the extended
//! protocol, at the default depth limit, past it, and as a 1 MB statement. After each one the
//! same server (same process) answers a normal query.
//!
//! The server runs with a quarter of the default thread stack, so statements at the default
//! `statement_depth_max` planning here shows the default has at least that margin (in a debug
//! build, whose frames are larger than a release build's).

use streamhouse_engine::{STATEMENT_DEPTH_MAX_DEFAULT, THREAD_STACK_BYTES_DEFAULT};
use streamhouse_sql_tests::{connect, TestServer};
use tokio_postgres::{Client, SimpleQueryMessage};

/// The first column of the single row of `sql` as text, over the simple protocol, or the
/// error's SQLSTATE.
async fn simple(client: &Client, sql: &str) -> Result<String, String> {
    match client.simple_query(sql).await {
        Ok(messages) => Ok(messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            })
            .expect("a row")),
        Err(error) => Err(error.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {error}"))),
    }
}

/// The same over the extended protocol (Parse, Bind, Execute; binary results), the column as
/// text.
async fn extended(client: &Client, sql: &str) -> Result<String, String> {
    match client.query(sql, &[]).await {
        Ok(rows) => {
            let row = rows.first().expect("a row");
            let text = row
                .try_get::<_, i64>(0)
                .map(|v| v.to_string())
                .or_else(|_| row.try_get::<_, i32>(0).map(|v| v.to_string()))
                .or_else(|_| row.try_get::<_, bool>(0).map(|v| if v { "t" } else { "f" }.to_string()))
                .or_else(|_| row.try_get::<_, String>(0))
                .unwrap_or_else(|e| panic!("a column of {:?}: {e}", row.columns()[0].type_()));
            Ok(text)
        }
        Err(error) => Err(error.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {error}"))),
    }
}

fn chain(n: usize, term: &str, op: &str) -> String {
    vec![term; n].join(op)
}

/// `n` common table expressions, each reading the one before and adding one.
fn ctes(n: usize) -> String {
    let defs: Vec<String> =
        (0..n).map(|i| if i == 0 { "c0 AS (SELECT 1 AS x)".to_string() } else { format!("c{i} AS (SELECT x + 1 AS x FROM c{})", i - 1) }).collect();
    format!("WITH {} SELECT x FROM c{}", defs.join(", "), n - 1)
}

fn nested(n: usize, open: &str, inner: &str, close: &str) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

async fn still_serving(server: &TestServer, pid: Option<u32>, client: &Client, after: &str) {
    assert_eq!(simple(client, "SELECT 41 + 1").await, Ok("42".into()), "the connection after {after}");
    let other = connect(server).await;
    assert_eq!(simple(&other, "SELECT 1").await, Ok("1".into()), "a new connection after {after}");
    assert_eq!(server.pid(), pid, "the same server process after {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_statements_get_an_error_or_an_answer_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let stack = (THREAD_STACK_BYTES_DEFAULT / 4).to_string();
    let server = TestServer::start(&dir.path().join("data"), &["--thread-stack-bytes", &stack]);
    let pid = server.pid();
    let client = connect(&server).await;
    let limit = STATEMENT_DEPTH_MAX_DEFAULT;

    // At the limit: answered, with the value worked out here. (`SELECT` counts as one level.)
    let n = limit - 1;
    let at_limit: Vec<(&str, String, String)> = vec![
        ("a chain of +", format!("SELECT {}", chain(n, "1", " + ")), n.to_string()),
        ("a chain of AND", format!("SELECT {}", chain(n / 2, "true", " AND ")), "t".into()),
        ("a chain of ||", format!("SELECT {}", chain(n, "'a'", " || ")), "a".repeat(n)),
        ("a chain of OR in WHERE", format!("SELECT count(*) FROM generate_series(1, 10) AS g(v) WHERE {}", chain(n / 4, "v = 3", " OR ")), "1".into()),
        ("a UNION ALL of query blocks", (0..limit / 2).map(|i| format!("SELECT {i}")).collect::<Vec<_>>().join(" UNION ALL "), "".into()),
        // Each CTE is a query block, and so is the final SELECT.
        ("a chain of CTEs", ctes(n), n.to_string()),
    ];
    for (what, sql, expected) in &at_limit {
        for (protocol, answer) in [("simple", simple(&client, sql).await), ("extended", extended(&client, sql).await)] {
            match answer {
                // The union's rows come in any order: any of its values will do.
                Ok(value) if expected.is_empty() => assert!(value.parse::<usize>().unwrap() < limit / 2, "{what}: {value}"),
                Ok(value) => assert_eq!(&value, expected, "{what} over the {protocol} protocol"),
                Err(code) => panic!("{what} over the {protocol} protocol: {code}"),
            }
            still_serving(&server, pid, &client, what).await;
        }
    }

    // Past the limit, and 1 MB statements of the same shapes: 54001 before planning.
    let megabyte = 1 << 20;
    let past_limit: Vec<(&str, String)> = vec![
        ("a chain of + past the limit", format!("SELECT {}", chain(limit + 1, "1", " + "))),
        ("a UNION past the limit", (0..limit).map(|i| format!("SELECT {i}")).collect::<Vec<_>>().join(" UNION ")),
        ("a chain of CTEs past the limit", ctes(limit)),
        ("1 MB of +", format!("SELECT {}", chain(megabyte / 4, "1", " + "))),
        ("1 MB of AND", format!("SELECT {}", chain(megabyte / 9, "true", " AND "))),
        ("1 MB of UNION", (0..megabyte / 20).map(|i| format!("SELECT {i}")).collect::<Vec<_>>().join(" UNION ")),
        ("1 MB of CTEs", ctes(megabyte / 40)),
        // Recursion in the parser itself: sqlparser's recursion limit.
        ("parentheses", format!("SELECT {}", nested(100, "(", "1", ")"))),
        ("1 MB of parentheses", format!("SELECT {}", nested(megabyte / 2, "(", "1", ")"))),
        ("function calls", format!("SELECT {}", nested(100, "abs(", "1", ")"))),
        ("subqueries", format!("SELECT * FROM {}", nested(100, "(SELECT * FROM ", "(SELECT 1 AS x) AS t", ") AS t"))),
        ("prefix minus", format!("SELECT {}1", "- ".repeat(megabyte / 2))),
        ("NOT", format!("SELECT {}true", "NOT ".repeat(1000))),
    ];
    for (what, sql) in &past_limit {
        for (protocol, answer) in [("simple", simple(&client, sql).await), ("extended", extended(&client, sql).await)] {
            assert_eq!(answer, Err("54001".to_string()), "{what} over the {protocol} protocol");
            still_serving(&server, pid, &client, what).await;
        }
    }

    // A value over PostgreSQL's 1 GB field limit (its length once wrapped around in the row
    // message, desynchronizing the protocol): 54000, like PostgreSQL's "requested length too
    // large", in both formats; the connection goes on.
    // (Over a topic's row: a constant would be folded by the optimizer, copying its gigabyte
    // many times over in a debug build.)
    client.batch_execute("CREATE TOPIC one (x TEXT); INSERT INTO one VALUES ('x')").await.unwrap();
    let huge = "SELECT repeat(x, 1073741824) AS big FROM one";
    assert_eq!(simple(&client, huge).await, Err("54000".to_string()));
    assert_eq!(extended(&client, huge).await, Err("54000".to_string()));
    still_serving(&server, pid, &client, "a value over 1 GB").await;

    // Arrays of arrays 40 deep (once exponential in their text): printed as PostgreSQL prints a
    // multidimensional array.
    let array = format!("SELECT {}", nested(40, "ARRAY[", "1", "]"));
    assert_eq!(simple(&client, &array).await, Ok(nested(40, "{", "1", "}")));
    still_serving(&server, pid, &client, "arrays of arrays").await;
}

/// Connections past `pg_connections_max` are refused with 53300 (those still in their startup
/// count), half-open ones are closed after `pg_startup_timeout_ms` and free their slot, and a
/// cancel request is served even when every slot is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_and_half_open_ones_time_out() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--pg-connections-max", "3", "--pg-startup-timeout-ms", "3000"]);
    let refused = async || {
        let error = tokio_postgres::connect(&server.connection_string(), tokio_postgres::NoTls).await.err().expect("refused");
        error.code().map(|c| c.code().to_string())
    };
    // Two sessions and one connection that never says anything take the three slots.
    let first = connect(&server).await;
    let second = connect(&server).await;
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", server.pg_port)).unwrap();
    // The silent connection holds its slot until the server gives up on it: until then, a
    // fourth is refused. (The refusal is checked right away: well within the timeout.)
    assert_eq!(refused().await.as_deref(), Some("53300"));
    // A cancel request needs no slot: it cancels the first session's query.
    let cancel = first.cancel_token();
    // (The task hands the session back: its slot stays taken.)
    let running = tokio::spawn(async move {
        let code = first.simple_query("SELECT count(*) FROM generate_series(1, 100000000000)").await.err().and_then(|e| e.code().map(|c| c.code().to_string()));
        (first, code)
    });
    // (Cancel until the query is running: a cancel that arrives first cancels nothing.)
    let canceled = loop {
        cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
        if running.is_finished() {
            let (first, code) = running.await.unwrap();
            break (first, code);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (first, canceled) = canceled;
    assert_eq!(canceled.as_deref(), Some("57014"));
    // The server closes the silent connection at the timeout (EOF on our side)...
    silent.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    assert_eq!(silent.read(&mut [0u8; 16]).unwrap(), 0, "closed without a byte");
    // ... and its slot takes a new session (the first one's slot is still held).
    let third = connect(&server).await;
    assert_eq!(simple(&third, "SELECT 7").await, Ok("7".into()));
    assert_eq!(simple(&second, "SELECT 8").await, Ok("8".into()));
    assert_eq!(simple(&first, "SELECT 9").await, Ok("9".into()));
    // All three slots are sessions now.
    assert_eq!(refused().await.as_deref(), Some("53300"));
    let metrics = streamhouse_sql_tests::http_get(server.http_port, "/metrics");
    for (name, value) in [("streamhouse_pg_connections_refused_total", 2), ("streamhouse_pg_startups_timed_out_total", 1)] {
        assert!(metrics.lines().any(|l| l == format!("{name} {value}")), "{name} {value} in {metrics}");
    }
}

/// Reads a streamed result to its end, dropping the rows; returns the SQLSTATE it ended with.
async fn drain(client: &Client, sql: &str) -> Option<String> {
    use futures::StreamExt;
    let stream = match client.simple_query_raw(sql).await {
        Ok(stream) => stream,
        Err(error) => return error.code().map(|c| c.code().to_string()),
    };
    let mut stream = std::pin::pin!(stream);
    // (A liveness guard, not a measurement: without the interrupt this would never end.)
    let ended = tokio::time::timeout(std::time::Duration::from_secs(300), async {
        while let Some(message) = stream.next().await {
            if let Err(error) = message {
                return error.code().map(|c| c.code().to_string());
            }
        }
        None
    });
    ended.await.expect("the endless result was not stopped")
}

/// A result streamed without end stops at a cancel and at `statement_timeout`, whether the
/// timeout is the server's default, set in the `options` startup parameter, or SET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_results_stop_at_cancel_and_at_every_kind_of_statement_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--statement-timeout-ms", "300"]);
    let endless = "SELECT * FROM generate_series(1, 10000000000000)";
    // The server's default.
    let client = connect(&server).await;
    assert_eq!(simple(&client, "SHOW statement_timeout").await, Ok("300".into()));
    assert_eq!(drain(&client, endless).await.as_deref(), Some("57014"));
    // The options startup parameter (as `PGOPTIONS` or a libpq `options=` sets it).
    let (with_options, connection) = format!("{} options='-c statement_timeout=200'", server.connection_string())
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    assert_eq!(simple(&with_options, "SHOW statement_timeout").await, Ok("200".into()));
    assert_eq!(drain(&with_options, endless).await.as_deref(), Some("57014"));
    // Bad options refuse the connection.
    let refused = format!("{} options='-x'", server.connection_string()).parse::<tokio_postgres::Config>().unwrap().connect(tokio_postgres::NoTls).await;
    assert_eq!(refused.err().and_then(|e| e.code().map(|c| c.code().to_string())).as_deref(), Some("22023"));
    // No timeout: a cancel request stops it.
    client.batch_execute("SET statement_timeout = 0").await.unwrap();
    let cancel = client.cancel_token();
    let running = tokio::spawn(async move { (drain(&client, endless).await, client) });
    let mut running = running;
    let (code, client) = loop {
        cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
        if let Ok(finished) = tokio::time::timeout(std::time::Duration::from_millis(50), &mut running).await {
            break finished.unwrap();
        }
    };
    assert_eq!(code.as_deref(), Some("57014"));
    // A cancel request sent while the statement was ending may land on the next statement (in
    // PostgreSQL too: a cancel names a backend, not a statement); at most one is in flight.
    let next = match simple(&client, "SELECT 5").await {
        Err(code) if code == "57014" => simple(&client, "SELECT 5").await,
        other => other,
    };
    assert_eq!(next, Ok("5".into()));
}

/// A statement past `query_memory_bytes_max` fails with 53200 naming the limit; the session and
/// the server go on, and smaller statements run. Settings that multiply memory are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_their_memory_limit_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--query-memory-bytes-max", "33554432"]);
    let pid = server.pid();
    let client = connect(&server).await;
    for sql in [
        // A sort of 4 M rows (about 100 MB in DataFusion's row format).
        "SELECT v FROM generate_series(1, 4000000) AS g(v) ORDER BY v % 1000, v OFFSET 3999995",
        // An aggregate holding 8 M values.
        "SELECT cardinality(array_agg(v)) FROM generate_series(1, 8000000) AS g(v)",
    ] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(error.code().map(|c| c.code()), Some("53200"), "{sql}: {error}");
        assert!(error.as_db_error().is_some_and(|e| e.message().contains("query_memory_bytes_max")), "{error}");
        still_serving(&server, pid, &client, sql).await;
    }
    // Within the limit: the same shapes, smaller, answer (worked out: the largest multiples of
    // 1000 plus 999 below 40 000, and the count).
    let rows = client.query("SELECT v FROM generate_series(1, 40000) AS g(v) ORDER BY v % 1000, v OFFSET 39997", &[]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), [37999, 38999, 39999]);
    assert_eq!(simple(&client, "SELECT cardinality(array_agg(v)) FROM generate_series(1, 80000) AS g(v)").await, Ok("80000".into()));
    // 100 000 target partitions once took 22 GB for a GROUP BY of a thousand rows.
    let error = client.simple_query("SET datafusion.execution.target_partitions = 100000").await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("22023"), "{error}");
    client.batch_execute("SET datafusion.execution.target_partitions = 8").await.unwrap();
    assert_eq!(simple(&client, "SELECT count(*) FROM (SELECT v % 10 FROM generate_series(1, 1000) AS g(v) GROUP BY v % 10)").await, Ok("10".into()));
}

/// The other hostile shapes: runaway recursion, huge IN lists, thousands of columns (in a
/// query and in a topic), a huge generate_series under a timeout, and malformed COPY data, over
/// both protocols where they apply. Each gets an answer worked out here or an error with the
/// SQLSTATE PostgreSQL gives (its own limits where it has them: 1664 target list entries, 1600
/// table columns), and the same server answers a normal query after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statements_get_an_answer_or_a_sqlstate_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // A small memory limit, so that a recursion growing its rows reaches it in a few seconds.
    let server = TestServer::start(&dir.path().join("data"), &["--recursive-iterations-max", "1000", "--query-memory-bytes-max", "16777216"]);
    let pid = server.pid();
    let client = connect(&server).await;
    let both = async |sql: &str| [simple(&client, sql).await, extended(&client, sql).await];

    // A recursion whose 1000 iterations produce rows (1 to 1001; the run after finds none) is
    // answered; one more iteration, or one that does not end, fails with 54000.
    let ending = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1001) SELECT sum(n) FROM r";
    assert_eq!(both(ending).await, [Ok((1001 * 1002 / 2).to_string()), Ok((1001 * 1002 / 2).to_string())]);
    let past = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1002) SELECT sum(n) FROM r";
    assert_eq!(both(past).await, [Err("54000".to_string()), Err("54000".to_string())]);
    let runaway = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";
    assert_eq!(both(runaway).await, [Err("54000".to_string()), Err("54000".to_string())]);
    // Rows that double at each step: the limit or the memory limit, whichever comes first.
    let doubling = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r CROSS JOIN (VALUES (1), (2)) AS two(x)) SELECT count(*) FROM r";
    for answer in both(doubling).await {
        assert!(answer.as_ref().is_err_and(|code| code == "54000" || code == "53200"), "{answer:?}");
    }
    still_serving(&server, pid, &client, "recursion").await;

    // An IN list of 100 000 constants.
    let list: Vec<String> = (0..100_000).map(|i| (i * 3).to_string()).collect();
    let in_list = format!("SELECT count(*) FROM generate_series(1, 30) AS g(v) WHERE v IN ({})", list.join(", "));
    // 3, 6, …, 30
    assert_eq!(both(&in_list).await, [Ok("10".to_string()), Ok("10".to_string())]);
    still_serving(&server, pid, &client, "an IN list of 100 000").await;

    // Columns: a query may return 1664, a topic may have 1600, as in PostgreSQL; past that 54011.
    let columns = |n: usize| (0..n).map(|i| format!("{} AS c{i}", i + 7)).collect::<Vec<_>>().join(", ");
    assert_eq!(both(&format!("SELECT {}", columns(1664))).await, [Ok("7".to_string()), Ok("7".to_string())]);
    for n in [1665, 10_000] {
        assert_eq!(both(&format!("SELECT {}", columns(n))).await, [Err("54011".to_string()), Err("54011".to_string())], "{n} columns");
    }
    let topic = |name: &str, n: usize| format!("CREATE TOPIC {name} ({})", (0..n).map(|i| format!("c{i} int")).collect::<Vec<_>>().join(", "));
    assert_eq!(client.batch_execute(&topic("wide", 10_000)).await.unwrap_err().code().map(|c| c.code()), Some("54011"));
    client.batch_execute(&topic("wide", 1600)).await.unwrap();
    let values = (0..1600).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    client.batch_execute(&format!("INSERT INTO wide VALUES ({values})")).await.unwrap();
    assert_eq!(both("SELECT c1599 FROM wide").await, [Ok("1599".to_string()), Ok("1599".to_string())]);
    assert_eq!(both("SELECT * FROM wide AS a CROSS JOIN wide AS b").await, [Err("54011".to_string()), Err("54011".to_string())]);
    still_serving(&server, pid, &client, "thousands of columns").await;

    // Ten billion rows to count: the statement timeout ends it, for this statement only.
    client.batch_execute("SET statement_timeout = 500").await.unwrap();
    assert_eq!(
        both("SELECT count(*) FROM generate_series(1, 10000000000)").await,
        [Err("57014".to_string()), Err("57014".to_string())]
    );
    client.batch_execute("RESET statement_timeout").await.unwrap();
    still_serving(&server, pid, &client, "a huge generate_series").await;

    // Malformed COPY data: text that is not a bigint, too many columns, a bad binary
    // signature; nothing of a refused COPY is stored.
    client.batch_execute("CREATE TOPIC target (id bigint, name text)").await.unwrap();
    let malformed: [(&str, &[u8], &str); 5] = [
        ("COPY target FROM STDIN", b"1\tone\nx\ttwo\n", "22P02"),
        ("COPY target FROM STDIN", b"1\tone\textra\n", "22P04"),
        ("COPY target FROM STDIN", b"1\n", "22P04"),
        ("COPY target FROM STDIN", b"1\t\xff\xfe\n", "22021"),
        ("COPY target FROM STDIN (FORMAT csv)", b"1,\"unterminated\n", "22P04"),
    ];
    for (copy, data, code) in malformed {
        let sink = client.copy_in::<_, bytes::Bytes>(copy).await.unwrap();
        let result = async {
            use futures::SinkExt;
            let mut sink = Box::pin(sink);
            sink.send(bytes::Bytes::from_static(data)).await?;
            sink.as_mut().finish().await
        }
        .await;
        let error = result.expect_err(copy);
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{copy} of {data:?}: {error}");
        still_serving(&server, pid, &client, copy).await;
    }
    // Binary COPY is not supported: refused before any data.
    let binary = client.copy_in::<_, bytes::Bytes>("COPY target FROM STDIN (FORMAT binary)").await.map(|_| ()).unwrap_err();
    assert_eq!(binary.code().map(|c| c.code()), Some("0A000"), "{binary}");
    still_serving(&server, pid, &client, "binary COPY").await;
    assert_eq!(simple(&client, "SELECT count(*) FROM target").await, Ok("0".to_string()));
}
