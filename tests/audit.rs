//! The audit trail over real sockets: logins (and failed ones, refused startup parameters too), DDL, GRANT/REVOKE, role
//! statements and refusals over the Postgres protocol and Arrow Flight land in
//! `streamhouse_audit` in order, as a SHA-256 chain that an independent implementation (Python's
//! hashlib, below) recomputes; no one writes, drops or grants on it; and an entry edited in the
//! stored log is named by `streamhouse_verify_audit()`.

use std::process::Command;

use streamhouse_sql_tests::TestServer;

/// Runs a Python script with arguments; its standard output (the script fails the test by
/// exiting non-zero).
fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "the script failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Helpers of both scripts: connecting, SQLSTATEs, and the chain recomputed from the rows.
const COMMON: &str = r#"
import sys, hashlib, datetime, psycopg

def connect(port, user, password=None, app=""):
    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="streamhouse",
                           application_name=app, autocommit=True)

def sqlstate(conn, sql):
    try:
        conn.execute(sql)
        return "ok"
    except psycopg.Error as error:
        return error.sqlstate

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

def entry_hash(prev, at, fields):
    micros = (at - EPOCH) // datetime.timedelta(microseconds=1)
    data = bytes.fromhex(prev) + micros.to_bytes(8, "big", signed=True)
    for field in fields:
        data += len(field.encode()).to_bytes(4, "big") + field.encode()
    return hashlib.sha256(data).hexdigest()

COLUMNS = "_offset, at, kind, user_name, role_name, client_addr, application_name, protocol, detail, prev_hash, hash"

def entries(conn):
    return conn.execute(f"SELECT {COLUMNS} FROM streamhouse_audit ORDER BY _offset").fetchall()

def check_chain(rows):
    """Every entry links to the one before and hashes to its hash; the head's hash."""
    prev = "0" * 64
    for number, (offset, at, *fields, prev_hash, hash_) in enumerate(rows):
        assert offset == number, (offset, number)
        assert prev_hash == prev, f"entry {offset}: prev_hash {prev_hash} is not {prev}"
        assert entry_hash(prev_hash, at, fields) == hash_, f"entry {offset}: hash does not match"
        prev = hash_
    return prev
"#;

const EVENTS: &str = r#"
import pyarrow as pa, pyarrow.flight as flight
pg, flight_port = sys.argv[1], sys.argv[2]

admin = connect(pg, "streamhouse", "admin-pw", "audit-admin")
admin.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-secret'")
admin.execute("CREATE TOPIC t (a INT)")
admin.execute("GRANT SELECT ON t TO alice")
alice = connect(pg, "alice", "alice-secret", "audit-alice")
assert alice.execute("SELECT count(*) FROM t").fetchone()[0] == 0
assert sqlstate(alice, "INSERT INTO t VALUES (1)") == "42501"
try:
    connect(pg, "alice", "wrong")
    raise SystemExit("a wrong password logged in")
except psycopg.OperationalError as error:
    assert "password authentication failed" in str(error), error
# The right password, but a startup parameter PostgreSQL would refuse too: also a failed login.
try:
    psycopg.connect(host="127.0.0.1", port=pg, user="alice", password="alice-secret", dbname="streamhouse", options="-x")
    raise SystemExit("a refused startup parameter logged in")
except psycopg.OperationalError as error:
    assert "invalid command-line argument" in str(error), error
# The trail is the superusers' to read, and no one's to change.
assert sqlstate(alice, "SELECT * FROM streamhouse_audit") == "42501"
assert sqlstate(alice, "SELECT * FROM streamhouse_verify_audit()") == "42501"
changes = ["INSERT INTO streamhouse_audit SELECT * FROM streamhouse_audit", "DROP TOPIC streamhouse_audit",
           "GRANT SELECT ON streamhouse_audit TO alice", "ALTER TABLE streamhouse_audit OWNER TO alice"]
for sql in changes:
    assert sqlstate(admin, sql) == "42501", sql
assert "streamhouse_audit" not in [row[0] for row in admin.execute("SHOW TOPICS").fetchall()]
admin.execute("SET ROLE alice")
admin.execute("RESET ROLE")
# Flight: alice proves her password, then is refused a write.
client = flight.FlightClient(f"grpc://127.0.0.1:{flight_port}")
options = flight.FlightCallOptions(headers=[client.authenticate_basic_token("alice", "alice-secret")])
table = pa.table({"a": pa.array([1], pa.int32())})
try:
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("t"), table.schema, options=options)
    writer.write_table(table)
    writer.close()
    raise SystemExit("a DoPut without INSERT was let through")
except flight.FlightError as error:
    assert "permission denied for table t" in str(error), error
admin.execute("DROP TOPIC t")

rows = entries(admin)
head = check_chain(rows)
for row in rows:
    for secret in ("alice-secret", "admin-pw", "wrong"):
        assert all(secret not in str(value) for value in row), (secret, row)
    assert row[5] == "127.0.0.1", row
events = [(kind, user, role, protocol, app, detail) for (_, _, kind, user, role, _, app, protocol, detail, _, _) in rows]
expected = [
    ("login", "streamhouse", "streamhouse", "postgres", "audit-admin", "no TLS"),
    ("role", "streamhouse", "streamhouse", "postgres", "audit-admin", "CREATE ROLE alice LOGIN PASSWORD '********'"),
    ("ddl", "streamhouse", "streamhouse", "postgres", "audit-admin", "CREATE TOPIC t (a INT)"),
    ("privilege", "streamhouse", "streamhouse", "postgres", "audit-admin", "GRANT SELECT ON t TO alice"),
    ("login", "alice", "alice", "postgres", "audit-alice", "no TLS"),
    ("denied", "alice", "alice", "postgres", "audit-alice", "INSERT INTO t VALUES (1) -- refused: permission denied for table t"),
    ("login failed", "alice", "alice", "postgres", "", '28P01: password authentication failed for user "alice"'),
    ("login failed", "alice", "alice", "postgres", "", "22023: invalid command-line argument in the options startup parameter: -x"),
    ("denied", "alice", "alice", "postgres", "audit-alice", "SELECT * FROM streamhouse_audit -- refused: permission denied for table streamhouse_audit"),
    ("denied", "alice", "alice", "postgres", "audit-alice", "SELECT * FROM streamhouse_verify_audit() -- refused: permission denied for function streamhouse_verify_audit"),
] + [("denied", "streamhouse", "streamhouse", "postgres", "audit-admin", sql + " -- refused: permission denied for table streamhouse_audit")
     for sql in changes] + [
    ("role", "streamhouse", "alice", "postgres", "audit-admin", "SET ROLE alice"),
    ("role", "streamhouse", "streamhouse", "postgres", "audit-admin", "RESET ROLE"),
    ("login", "alice", "alice", "flight", None, "basic authentication"),
    ("denied", "alice", "alice", "flight", None, "DoPut to t -- refused: permission denied for table t"),
    ("ddl", "streamhouse", "streamhouse", "postgres", "audit-admin", "DROP TOPIC t"),
]
assert len(events) == len(expected), "\n".join(map(str, events))
for got, want in zip(events, expected):
    # Details are compared by their start (a refusal goes on with the reason); the Flight
    # client's application is its user-agent, whatever that version says.
    same = got[:4] == want[:4] and (want[4] is None or got[4] == want[4]) and got[5].startswith(want[5])
    assert same, f"got {got}, expected {want}"
valid, count, broken, problem, head_hash = admin.execute(
    "SELECT valid, entries, broken_offset, problem, head_hash FROM streamhouse_verify_audit()").fetchone()
assert (valid, count, broken, problem, head_hash) == (True, len(rows), None, None, head), (valid, count, broken, problem, head_hash)
print(len(rows))
"#;

#[test]
fn logins_ddl_grants_roles_and_refusals_form_a_hash_chain_only_superusers_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &["--auth", "scram", "--superuser-password", "admin-pw"]);
    let script = format!("{COMMON}{EVENTS}");
    let entries = python(&script, &[&server.pg_port.to_string(), &server.flight_port.to_string()]);
    assert_eq!(entries, "19", "the entries the script expected, counted by the server");
}

/// Makes entries, as the superuser over loopback (trusted): a login and two DDL statements.
const SOME_EVENTS: &str = r#"
pg, name = sys.argv[1], sys.argv[2]
conn = connect(pg, "streamhouse")
conn.execute(f"CREATE TOPIC {name} (x INT)")
conn.execute(f"DROP TOPIC {name}")
"#;

/// Checks the chain in Python and with the server's verifier; prints `valid,broken_offset,problem`.
const VERIFY: &str = r#"
conn = connect(sys.argv[1], "streamhouse")
valid, broken, problem, last, head_hash = conn.execute(
    "SELECT valid, broken_offset, problem, last_offset, head_hash FROM streamhouse_verify_audit()").fetchone()
if valid:
    # This script's own login may be stored after the verifier read the trail: compare up to
    # where the verifier read.
    assert head_hash == check_chain([row for row in entries(conn) if row[0] <= last])
print(f"{valid},{broken},{problem}")
"#;

/// Rewrites the audit trail's sealed segments, changing the detail of the entry that says
/// `CREATE TOPIC first` (or already `forged`); with `rehash`, its hash is recomputed too, as a forger would.
const TAMPER: &str = r#"
import glob, pyarrow as pa, pyarrow.ipc as ipc
data_dir, rehash = sys.argv[1], sys.argv[2] == "rehash"
edited = 0
for path in sorted(glob.glob(f"{data_dir}/**/topics/*/0/*.arrow", recursive=True)):
    with ipc.open_file(path) as reader:
        if "prev_hash" not in reader.schema.names:
            continue
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        schema = reader.schema
    out = []
    for batch in batches:
        columns = {name: batch.column(name).to_pylist() for name in schema.names}
        for row, detail in enumerate(columns["detail"]):
            if detail.startswith(("CREATE TOPIC first", "CREATE TOPIC forged")):
                columns["detail"][row] = "CREATE TOPIC forged (x INT)"
                if rehash:
                    fields = [columns[name][row] for name in ("kind", "user_name", "role_name", "client_addr", "application_name", "protocol", "detail")]
                    columns["hash"][row] = entry_hash(columns["prev_hash"][row], columns["at"][row], fields)
                edited += 1
        out.append(pa.record_batch([pa.array(columns[name], type=schema.field(name).type) for name in schema.names], schema=schema))
    with ipc.new_file(path, schema, options=ipc.IpcWriteOptions(compression="lz4")) as writer:
        for batch in out:
            writer.write_batch(batch)
assert edited == 1, edited
"#;

#[test]
fn an_entry_edited_in_the_stored_log_is_named_by_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start(&data, &[]);
    let events = format!("{COMMON}{SOME_EVENTS}");
    let verify = format!("{COMMON}{VERIFY}");
    python(&events, &[&server.pg_port.to_string(), "first"]);
    // The chain goes on across a restart (its head read back from the sealed log).
    assert_eq!(server.stop(), Some(0));
    server.restart();
    python(&events, &[&server.pg_port.to_string(), "second"]);
    assert_eq!(python(&verify, &[&server.pg_port.to_string()]), "True,None,None");

    // Which entry will be edited: the first login is entry 0, then CREATE TOPIC first.
    let offset_of = r#"
conn = connect(sys.argv[1], "streamhouse")
print(conn.execute("SELECT _offset FROM streamhouse_audit WHERE detail = 'CREATE TOPIC first (x INT)'").fetchone()[0])
"#;
    let edited: u64 = python(&format!("{COMMON}{offset_of}"), &[&server.pg_port.to_string()]).parse().unwrap();
    assert_eq!(edited, 1);

    // Edited in place: the entry's own hash no longer matches it.
    assert_eq!(server.stop(), Some(0));
    python(&format!("{COMMON}{TAMPER}"), &[data.to_str().unwrap(), "keep"]);
    server.restart();
    assert_eq!(
        python(&verify, &[&server.pg_port.to_string()]),
        format!("False,{edited},its hash does not match its contents (the entry was changed)")
    );

    // Edited with its hash recomputed: the next entry's link names the break.
    assert_eq!(server.stop(), Some(0));
    python(&format!("{COMMON}{TAMPER}"), &[data.to_str().unwrap(), "rehash"]);
    server.restart();
    assert_eq!(
        python(&verify, &[&server.pg_port.to_string()]),
        format!(
            "False,{},its prev_hash is not the hash of entry {edited} (an entry was changed, removed or inserted before it)",
            edited + 1
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_statement_is_in_the_trail_after_kill_9_and_the_chain_holds() {
    use streamhouse_sql_tests::{connect, kill_during_writes, sorted_rows, StatementFn};
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(&dir.path().join("data"), &[]);
    let statement: StatementFn = std::sync::Arc::new(|w, n| format!("CREATE TOPIC k{w}_{n} (x INT)"));
    // Two writers of DDL, killed mid-write three times.
    let mut next = [0u64, 0];
    let mut acknowledged = Vec::new();
    for round in 1..=3u64 {
        let first = next;
        kill_during_writes(&mut server, &mut next, 20, statement.clone()).await;
        // A writer's statements from `first` on were acknowledged but for its last one, cut by
        // the kill (which may or may not have been carried out).
        for (w, (&from, &sent)) in first.iter().zip(&next).enumerate() {
            acknowledged.extend((from..sent.saturating_sub(1)).map(|n| statement(w as u64, n)));
        }
        let client = connect(&server).await;
        let recorded = sorted_rows(&client, "SELECT detail FROM streamhouse_audit WHERE kind = 'ddl'").await;
        for detail in &acknowledged {
            assert!(recorded.binary_search(detail).is_ok(), "round {round}: \"{detail}\" was acknowledged but is not in the trail");
        }
        let verified = sorted_rows(&client, "SELECT valid, broken_offset FROM streamhouse_verify_audit()").await;
        assert_eq!(verified, ["t|NULL"], "round {round}");
    }
}
