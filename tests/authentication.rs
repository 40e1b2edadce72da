//! Roles and authentication over real sockets with real clients: SCRAM-SHA-256 from psql,
//! psycopg, asyncpg, pgjdbc and node-postgres (right password, wrong password, unknown role, a
//! role that may not log in), the loopback trust of the default method, the superuser the first
//! start creates, role statements with PostgreSQL's SQLSTATEs, and passwords kept out of the log.

use streamhouse_sql_tests::login::{non_loopback_address, CLIENTS};
use streamhouse_sql_tests::TestServer;

const SUPERUSER_PASSWORD: &str = "correct horse battery staple";

async fn connect_as(server: &TestServer, user: &str, password: Option<&str>) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(server.pg_port).user(user).dbname("streamhouse");
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

fn login(client: &str, port: u16, user: &str, password: &str) -> String {
    streamhouse_sql_tests::login::login(client, port, user, password, &[])
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_logs_in_with_scram_and_wrong_passwords_are_refused_alike() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--auth", "scram", "--superuser-password", SUPERUSER_PASSWORD]);
    assert!(!server.ready_line.contains("superuser_password_file"), "a configured password is not written anywhere");
    assert!(!dir.path().join("data/superuser-password").exists());

    // Without a password SCRAM cannot even start: tokio-postgres refuses to try.
    assert!(connect_as(&server, "streamhouse", None).await.is_err());
    let wrong = connect_as(&server, "streamhouse", Some("not it")).await.err().expect("a wrong password is refused");
    assert_eq!(sqlstate(&wrong), "28P01");
    assert_eq!(wrong.as_db_error().unwrap().message(), "password authentication failed for user \"streamhouse\"");

    let admin = connect_as(&server, "streamhouse", Some(SUPERUSER_PASSWORD)).await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN PASSWORD 'alice''s secret'; \
             CREATE USER carol PASSWORD 'carol-pw' NOLOGIN; \
             CREATE USER dave; \
             CREATE ROLE staff; GRANT staff TO alice",
        )
        .await
        .unwrap();

    for client in CLIENTS {
        let attempts = [
            ("streamhouse", SUPERUSER_PASSWORD, "ok streamhouse streamhouse"),
            ("alice", "alice's secret", "ok alice alice"),
            ("alice", "alice's secreT", "28P01"),
            ("alice", "", "28P01"),
            ("ghost", "alice's secret", "28P01"),
            // A role with no password cannot log in with any.
            ("dave", "anything", "28P01"),
            // The password is right, but the role may not log in (checked after, as PostgreSQL).
            ("carol", "carol-pw", "28000"),
        ];
        for (user, password, expected) in attempts {
            let answer = login(client, server.pg_port, user, password);
            if expected.starts_with("ok") {
                assert_eq!(answer, expected, "{client} as {user}");
                continue;
            }
            assert!(answer.starts_with("error"), "{client} as {user} with {password:?} got in: {answer}");
            if password.is_empty() {
                continue; // some clients refuse to send an empty password at all
            }
            // libpq (under psql and psycopg) gives a failed startup's message, not its SQLSTATE.
            if client == "psql" || client == "psycopg" {
                let message = match expected {
                    "28P01" => format!("FATAL:  password authentication failed for user \"{user}\""),
                    _ => format!("FATAL:  role \"{user}\" is not permitted to log in"),
                };
                assert!(answer.contains(&message), "{client} as {user}: {answer}");
            } else {
                assert!(answer.starts_with(&format!("error {expected}")), "{client} as {user} with {password:?}: {answer}");
            }
        }
    }
    // The server is still fine, and the log says who failed without saying any password.
    let rows = admin.query("SELECT rolname FROM pg_roles ORDER BY rolname", &[]).await.unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["alice", "carol", "dave", "staff", "streamhouse"]);
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(log.contains("password authentication failed") && log.contains("\"ghost\""), "{log}");
    for secret in [SUPERUSER_PASSWORD, "alice's secret", "alice''s secret", "carol-pw", "alice's secreT"] {
        assert!(!log.contains(secret), "the log holds a password: {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_trusts_loopback_but_only_for_roles_that_exist_and_may_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data, &["--log", "streamhouse_pgwire=debug,info"]);
    // The first start without a configured password generates one, private to the owner.
    let file = data.join("superuser-password");
    assert!(server.ready_line.contains(&format!("superuser_password_file={}", file.display())), "{}", server.ready_line);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let generated = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(generated.len(), 32);

    let admin = connect_as(&server, "streamhouse", None).await.expect("loopback is trusted");
    let row = admin.query_one("SELECT current_user, session_user, current_role, user", &[]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2)), ("streamhouse".into(), "streamhouse".into(), "streamhouse".into()));
    assert_eq!(row.columns().iter().map(|c| c.name()).collect::<Vec<_>>(), ["current_user", "session_user", "current_role", "user"]);
    for unknown in ["postgres", "me"] {
        let error = connect_as(&server, unknown, None).await.err().expect("an unknown role is refused");
        assert_eq!(sqlstate(&error), "28000");
        assert_eq!(error.as_db_error().unwrap().message(), format!("role \"{unknown}\" does not exist"));
    }
    admin.batch_execute("CREATE ROLE reader; CREATE USER writer PASSWORD 'w'").await.unwrap();
    assert_eq!(sqlstate(&connect_as(&server, "reader", None).await.err().unwrap()), "28000", "NOLOGIN by default");
    let writer = connect_as(&server, "writer", None).await.unwrap();
    let superuser: String = writer.query_one("SHOW is_superuser", &[]).await.unwrap().get(0);
    assert_eq!(superuser, "off");

    // A statement carrying a password is not logged, even at debug level.
    admin.batch_execute("ALTER ROLE writer PASSWORD 'a-new-secret-value'").await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(log.contains("simple query"), "debug logging is on");
    assert!(!log.contains("a-new-secret-value") && !log.contains(&generated));

    // The generated password works where SCRAM is asked for: restart with --auth scram.
    drop((admin, writer));
    drop(server);
    let server = TestServer::start(&data, &["--auth", "scram"]);
    assert!(!server.ready_line.contains("superuser_password_file"), "only the first start writes one");
    assert_eq!(sqlstate(&connect_as(&server, "streamhouse", Some("guess")).await.err().unwrap()), "28P01");
    connect_as(&server, "streamhouse", Some(&generated)).await.expect("the generated password");
    connect_as(&server, "writer", Some("a-new-secret-value")).await.expect("the altered password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_statements_follow_postgresql_rules_and_sqlstates() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let admin = connect_as(&server, "streamhouse", None).await.unwrap();
    admin
        .batch_execute("CREATE ROLE alice LOGIN; CREATE ROLE staff; CREATE ROLE auditors; GRANT staff TO alice; GRANT auditors TO staff")
        .await
        .unwrap();
    let alice = connect_as(&server, "alice", None).await.unwrap();
    // Every code and message below is PostgreSQL 15's for the same statement, checked by hand.
    let refused = [
        (&admin, "CREATE ROLE alice", "42710", "role \"alice\" already exists"),
        (&admin, "DROP ROLE ghost", "42704", "role \"ghost\" does not exist"),
        (&admin, "ALTER ROLE ghost LOGIN", "42704", "role \"ghost\" does not exist"),
        (&admin, "GRANT alice TO auditors", "0LP01", "role \"alice\" is a member of role \"auditors\""),
        (&admin, "DROP ROLE streamhouse", "55006", "current user cannot be dropped"),
        (&admin, "CREATE ROLE pg_mine", "42939", "role name \"pg_mine\" is reserved"),
        (&alice, "CREATE ROLE bob", "42501", "permission denied to create role"),
        (&alice, "DROP ROLE staff", "42501", "permission denied to drop role"),
        (&alice, "GRANT staff TO alice", "42501", "must have admin option on role \"staff\""),
        (&alice, "ALTER ROLE alice SUPERUSER", "42501", "must be superuser to alter superuser roles or change superuser attribute"),
        (&admin, "GRANT staff TO staff", "0LP01", "role \"staff\" is a member of role \"staff\""),
        (&alice, "SET ROLE streamhouse", "42501", "permission denied to set role \"streamhouse\""),
    ];
    for (client, sql, code, message) in refused {
        let error = client.batch_execute(sql).await.err().unwrap_or_else(|| panic!("{sql} succeeded"));
        assert_eq!(sqlstate(&error), code, "{sql}: {error:?}");
        assert!(error.as_db_error().unwrap().message().starts_with(message), "{sql}: {error:?}");
    }
    admin.batch_execute("DROP ROLE IF EXISTS ghost, nobody").await.unwrap();

    // SET ROLE to a role one belongs to, directly or not; RESET ROLE goes back.
    // RESET ALL leaves the role (PostgreSQL 15 does the same).
    for (sql, current) in [("SET ROLE staff", "staff"), ("RESET ALL", "staff"), ("SET ROLE auditors", "auditors"), ("RESET ROLE", "alice"), ("SET ROLE NONE", "alice")] {
        alice.batch_execute(sql).await.unwrap();
        let row = alice.query_one("SELECT current_user, session_user", &[]).await.unwrap();
        assert_eq!((row.get::<_, String>(0).as_str(), row.get::<_, String>(1).as_str()), (current, "alice"), "{sql}");
        let role: String = alice.query_one("SHOW role", &[]).await.unwrap().get(0);
        assert_eq!(role, if current == "alice" { "none" } else { current }, "{sql}");
    }
    // A role may change its own password, and nothing else about itself.
    alice.batch_execute("ALTER ROLE alice PASSWORD 'mine'").await.unwrap();

    // Memberships and attributes as the catalog shows them; a revoked membership is gone.
    admin.batch_execute("REVOKE auditors FROM staff; ALTER ROLE staff RENAME TO team").await.unwrap();
    let rows = admin
        .query(
            "SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON a.roleid = r.oid JOIN pg_roles m ON a.member = m.oid",
            &[],
        )
        .await
        .unwrap();
    let pairs: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(pairs, [("team".to_string(), "alice".to_string())]);
    let row = admin.query_one("SELECT rolsuper, rolcanlogin, rolpassword FROM pg_roles WHERE rolname = 'alice'", &[]).await.unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, Option<String>>(2)), (false, true, Some("********".into())));
    admin.batch_execute("CREATE TOPIC owned (a BIGINT)").await.unwrap();
    let owner: String = admin.query_one("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'owned'", &[]).await.unwrap().get(0);
    assert_eq!(owner, "streamhouse");
}

/// The SCRAM exchange under hostile input, over raw sockets: random and mangled mechanisms,
/// first and final messages (wrong nonces, bad base64, missing fields, huge and wrong lengths,
/// the wrong message type). Whatever is sent, the server never says AuthenticationOk without the
/// password, every refusal is `28P01` or `08P01`, no task panics, and the right password still
/// works after. Runs for `STREAMHOUSE_FUZZ_SECONDS` (10 by default) on four connections at once;
/// the seed is printed (`STREAMHOUSE_FUZZ_SEED` repeats a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_scram_exchanges_never_let_a_client_in_without_the_password() {
    use rand::{Rng, SeedableRng};
    let seconds: u64 = std::env::var("STREAMHOUSE_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("STREAMHOUSE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("SCRAM fuzz: STREAMHOUSE_FUZZ_SEED={seed}, {seconds} s");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--auth", "scram", "--superuser-password", SUPERUSER_PASSWORD]);
    let port = server.pg_port;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ worker);
                let mut cases = 0u64;
                while std::time::Instant::now() < deadline {
                    let case: u64 = rng.random();
                    scram_fuzz_case(port, case);
                    cases += 1;
                }
                cases
            })
        })
        .collect();
    let cases: u64 = workers.into_iter().map(|w| w.join().expect("a fuzz case failed")).sum();
    eprintln!("SCRAM fuzz: {cases} cases");
    assert!(cases > 0);
    connect_as(&server, "streamhouse", Some(SUPERUSER_PASSWORD)).await.expect("the right password still works");
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

/// One hostile exchange, made from `case` (printed when it fails, to be replayed).
fn scram_fuzz_case(port: u16, case: u64) {
    use rand::{Rng, SeedableRng};
    use std::io::{Read, Write};
    let mut rng = rand::rngs::StdRng::seed_from_u64(case);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let user = ["streamhouse", "ghost", "", "streamhouse\u{1}"][rng.random_range(0..4)];
    stream.write_all(&streamhouse_sql_tests::startup_packet(&[("user", user), ("database", "streamhouse")])).unwrap();
    let read = |stream: &mut std::net::TcpStream| -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 5];
        stream.read_exact(&mut header).ok()?;
        let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; length.saturating_sub(4)];
        stream.read_exact(&mut body).ok()?;
        Some((header[0], body))
    };
    let junk = |rng: &mut rand::rngs::StdRng, max: usize| -> Vec<u8> {
        let n = rng.random_range(0..max);
        (0..n).map(|_| rng.random()).collect()
    };
    let mut client_nonce = String::from("rOprNGfwEbeRWgbNEkqO");
    let mut server_nonce = String::new();
    for step in 0..3 {
        let Some((tag, body)) = read(&mut stream) else { return }; // closed: a refusal
        match tag {
            b'R' => {
                let code = i32::from_be_bytes(body[..4].try_into().unwrap());
                assert_ne!(code, 0, "case {case:#x}: AuthenticationOk without the password");
                if code == 11 {
                    let text = String::from_utf8_lossy(&body[4..]).to_string();
                    server_nonce = text.split(',').next().unwrap_or("").trim_start_matches("r=").to_string();
                }
            }
            b'E' => {
                let fields = body.split(|&b| b == 0);
                let code = fields.clone().find(|f| f.first() == Some(&b'C')).map(|f| String::from_utf8_lossy(&f[1..]).to_string());
                let code = code.unwrap_or_default();
                // 28000: PostgreSQL's answer to a startup packet without a user name.
                assert!(code == "28P01" || code == "08P01" || (user.is_empty() && code == "28000"), "case {case:#x}: {code}");
                assert!(read(&mut stream).is_none(), "case {case:#x}: the connection stays open after a refusal");
                return;
            }
            other => panic!("case {case:#x}: unexpected message {other} during authentication"),
        }
        if step == 2 {
            return;
        }
        // The client's next message: mostly well-formed with one thing wrong.
        let message: Vec<u8> = if step == 0 {
            let mechanism = ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN", ""][rng.random_range(0..4)];
            if rng.random_range(0..4) == 0 {
                client_nonce = String::from_utf8_lossy(&junk(&mut rng, 40)).to_string();
            }
            let first = match rng.random_range(0..6) {
                0 => junk(&mut rng, 300),
                1 => format!("p=tls-server-end-point,,n=,r={client_nonce}").into_bytes(),
                2 => format!("y,,n=,r={client_nonce},m=ext").into_bytes(),
                _ => format!("n,,n={user},r={client_nonce}").into_bytes(),
            };
            let mut body = mechanism.as_bytes().to_vec();
            body.push(0);
            let length = match rng.random_range(0..8) {
                0 => -1,
                1 => i32::MAX,
                2 => first.len() as i32 + 1,
                _ => first.len() as i32,
            };
            body.extend_from_slice(&length.to_be_bytes());
            body.extend_from_slice(&first);
            body
        } else {
            let nonce = match rng.random_range(0..4) {
                0 => format!("{client_nonce}x"),
                1 => String::new(),
                _ => server_nonce.clone(),
            };
            let proof = match rng.random_range(0..3) {
                0 => "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".to_string(),
                1 => "not base64!".to_string(),
                _ => String::from_utf8_lossy(&junk(&mut rng, 60)).to_string(),
            };
            let binding = ["biws", "eSws", "cD10bHMtc2VydmVyLWVuZC1wb2ludCws", ""][rng.random_range(0..4)];
            match rng.random_range(0..5) {
                0 => junk(&mut rng, 2000),
                1 => format!("c={binding},r={nonce}").into_bytes(),
                _ => format!("c={binding},r={nonce},p={proof}").into_bytes(),
            }
        };
        let tag = if rng.random_range(0..10) == 0 { b'Q' } else { b'p' };
        let length = match rng.random_range(0..10) {
            0 => i32::MAX,
            1 => 3,
            _ => (message.len() + 4) as i32,
        };
        let mut frame = vec![tag];
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&message);
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

/// Runs a Python snippet with arguments; its standard output, or a panic with its error.
fn python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("python3").arg("-c").arg(script).args(args).output().unwrap();
    assert!(output.status.success(), "python failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What pyarrow.flight and the ADBC Flight SQL driver meet logging in: each line names an attempt
/// and the role it ran as, or the gRPC error it got.
const FLIGHT_LOGINS: &str = r#"
import sys
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight

host, port = sys.argv[1], sys.argv[2]
uri = f"grpc://{host}:{port}"
client = flight.connect(uri)

def attempt(name, call):
    try:
        print(name, "ok", call())
    except flight.FlightUnauthenticatedError as error:
        print(name, "unauthenticated", str(error).splitlines()[0].removeprefix("Flight returned unauthenticated error, with message: "))
    except Exception as error:
        print(name, "error", type(error).__name__, str(error).splitlines()[0])

def adbc_current_user(user=None, password=None):
    kwargs = {} if user is None else {"username": user, "password": password}
    with flight_sql.connect(uri, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, session_user")
        return "/".join(cur.fetchone())

def with_token(user, password):
    header = client.authenticate_basic_token(user, password)
    options = flight.FlightCallOptions(headers=[header])
    return sorted(i.descriptor.path[0].decode() for i in client.list_flights(options=options))

attempt("anonymous-list", lambda: len(list(client.list_flights())))
attempt("anonymous-sql", adbc_current_user)
attempt("alice-token-list", lambda: with_token("alice", "alice pw"))
attempt("alice-wrong", lambda: with_token("alice", "alice pW"))
attempt("ghost", lambda: with_token("ghost", "alice pw"))
attempt("carol-nologin", lambda: with_token("carol", "carol pw"))
attempt("alice-sql", lambda: adbc_current_user("alice", "alice pw"))
attempt("alice-sql-wrong", lambda: adbc_current_user("alice", "nope"))
bogus = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer 00ff")])
attempt("bogus-bearer", lambda: list(client.list_flights(options=bogus)))
"#;

fn flight_logins(host: &str, port: u16) -> std::collections::BTreeMap<String, String> {
    python(FLIGHT_LOGINS, &[host, &port.to_string()])
        .lines()
        .map(|line| {
            let (name, outcome) = line.split_once(' ').unwrap();
            (name.to_string(), outcome.to_string())
        })
        .collect()
}

/// Flight and Flight SQL log in with the same roles as the Postgres protocol: basic credentials
/// in the handshake, then its bearer token; ADBC's username and password; the same refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_clients_log_in_with_the_roles_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--auth", "scram", "--superuser-password", SUPERUSER_PASSWORD]);
    let admin = connect_as(&server, "streamhouse", Some(SUPERUSER_PASSWORD)).await.unwrap();
    admin
        .batch_execute("CREATE ROLE alice LOGIN PASSWORD 'alice pw'; CREATE ROLE carol NOLOGIN PASSWORD 'carol pw'; CREATE TOPIC seen (x BIGINT)")
        .await
        .unwrap();
    let outcomes = flight_logins("127.0.0.1", server.flight_port);
    let expected = [
        ("anonymous-list", "unauthenticated Arrow Flight needs credentials from this address"),
        ("anonymous-sql", "error"),
        ("alice-token-list", "ok ['seen']"),
        ("alice-wrong", "unauthenticated password authentication failed for user \"alice\""),
        ("ghost", "unauthenticated password authentication failed for user \"ghost\""),
        ("carol-nologin", "unauthenticated role \"carol\" is not permitted to log in"),
        ("alice-sql", "ok alice/alice"),
        ("alice-sql-wrong", "error"),
        ("bogus-bearer", "unauthenticated the bearer token is unknown or expired"),
    ];
    for (name, prefix) in expected {
        let outcome = outcomes.get(name).unwrap_or_else(|| panic!("no {name} in {outcomes:?}"));
        assert!(outcome.starts_with(prefix), "{name}: {outcome}");
    }
    assert!(outcomes["alice-sql-wrong"].contains("password authentication failed"), "{}", outcomes["alice-sql-wrong"]);
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(!log.contains("alice pw") && !log.contains("alice pW"), "the log holds a password");

    // Under the default method, loopback without credentials runs as the superuser (the
    // quickstart), credentials name their role, and a password from another host without TLS
    // is refused before it is checked.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--flight-listen", "0.0.0.0:0"]);
    let admin = connect_as(&server, "streamhouse", None).await.unwrap();
    admin.batch_execute("CREATE ROLE alice LOGIN PASSWORD 'alice pw'; CREATE ROLE carol NOLOGIN PASSWORD 'carol pw'").await.unwrap();
    let outcomes = flight_logins("127.0.0.1", server.flight_port);
    assert_eq!(outcomes["anonymous-sql"], "ok streamhouse/streamhouse");
    assert_eq!(outcomes["alice-sql"], "ok alice/alice");
    let remote = flight_logins(&non_loopback_address(), server.flight_port);
    assert!(remote["anonymous-list"].starts_with("unauthenticated Arrow Flight needs credentials"), "{}", remote["anonymous-list"]);
    assert!(remote["alice-token-list"].starts_with("unauthenticated a password may not cross the network in the clear"), "{}", remote["alice-token-list"]);
}
