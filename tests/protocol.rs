//! Bad protocol input never panics the server: malformed, truncated, oversized and random
//! messages get an error (or the connection closes), and other connections keep working.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use streamhouse_sql_tests::TestServer;

/// A hand-rolled frontend, so the test can send what no driver would.
struct RawClient {
    stream: TcpStream,
}

/// A backend message: type and body.
type Message = (u8, Vec<u8>);

impl RawClient {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self { stream }
    }

    fn startup(port: u16) -> Self {
        let mut client = Self::connect(port);
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        for (k, v) in [("user", "fuzz"), ("database", "streamhouse")] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        client.stream.write_all(&packet).unwrap();
        client.read_until(b'Z');
        client
    }

    fn send(&mut self, tag: u8, body: &[u8]) {
        let mut message = vec![tag];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        let _ = self.stream.write_all(&message);
    }

    /// Reads one message, or `None` if the server closed the connection.
    fn read(&mut self) -> Option<Message> {
        let mut header = [0u8; 5];
        self.stream.read_exact(&mut header).ok()?;
        let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; length.saturating_sub(4)];
        self.stream.read_exact(&mut body).ok()?;
        Some((header[0], body))
    }

    /// Messages up to and including the first of type `tag` (or until the connection closes).
    fn read_until(&mut self, tag: u8) -> Vec<Message> {
        let mut messages = Vec::new();
        while let Some(message) = self.read() {
            let done = message.0 == tag;
            messages.push(message);
            if done {
                break;
            }
        }
        messages
    }

    fn query(&mut self, sql: &str) -> Vec<Message> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(b'Q', &body);
        self.read_until(b'Z')
    }
}

fn sqlstate(message: &Message) -> Option<String> {
    if message.0 != b'E' {
        return None;
    }
    let mut fields = message.1.split(|&b| b == 0);
    fields.find(|f| f.first() == Some(&b'C')).map(|f| String::from_utf8_lossy(&f[1..]).to_string())
}

/// No task of the server panicked (the panic hook writes to the server log).
fn assert_no_panic(server: &TestServer) {
    let log = std::fs::read_to_string(server.data_dir.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

fn assert_alive(port: u16) {
    let mut client = RawClient::startup(port);
    let messages = client.query("SELECT 41 + 1");
    let row = messages.iter().find(|m| m.0 == b'D').expect("a data row");
    assert!(row.1.ends_with(b"42"), "server answers correctly");
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

#[test]
fn malformed_messages_get_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let port = server.pg_port;

    // Invalid UTF-8 in a query: an error, and the session goes on.
    let mut client = RawClient::startup(port);
    client.send(b'Q', &[0xff, 0xfe, b' ', 0]);
    let messages = client.read_until(b'Z');
    assert_eq!(messages.iter().find_map(sqlstate).as_deref(), Some("22021"));
    assert!(client.query("SELECT 1").iter().any(|m| m.0 == b'D'));

    // Bind with the wrong number of parameters: error, skip to Sync, session usable.
    let mut parse = cstr("s1");
    parse.extend(cstr("SELECT $1::BIGINT + 1"));
    parse.extend_from_slice(&0i16.to_be_bytes());
    client.send(b'P', &parse);
    let mut bind = cstr("");
    bind.extend(cstr("s1"));
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&2i16.to_be_bytes());
    for _ in 0..2 {
        bind.extend_from_slice(&1i32.to_be_bytes());
        bind.push(b'1');
    }
    bind.extend_from_slice(&0i16.to_be_bytes());
    client.send(b'B', &bind);
    client.send(b'E', &[0, 0, 0, 0, 0]);
    client.send(b'S', &[]);
    let messages = client.read_until(b'Z');
    assert!(messages.iter().any(|m| m.0 == b'1'), "ParseComplete");
    assert!(messages.iter().filter_map(sqlstate).next().is_some(), "an error for the bad Bind");
    assert!(!messages.iter().any(|m| m.0 == b'D'), "Execute skipped after the error");
    assert!(client.query("SELECT 2").iter().any(|m| m.0 == b'D'));

    // A Bind whose body is cut short.
    let mut client = RawClient::startup(port);
    client.send(b'B', &[0, 0, 0, 1]);
    client.send(b'S', &[]);
    let messages = client.read_until(b'Z');
    assert!(messages.iter().any(|m| m.0 == b'E'));

    // A binary parameter of the wrong width.
    let mut client = RawClient::startup(port);
    let mut parse = cstr("");
    parse.extend(cstr("SELECT $1::INT"));
    parse.extend_from_slice(&1i16.to_be_bytes());
    parse.extend_from_slice(&23u32.to_be_bytes());
    client.send(b'P', &parse);
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&2i32.to_be_bytes());
    bind.extend_from_slice(&[0, 1]);
    bind.extend_from_slice(&0i16.to_be_bytes());
    client.send(b'B', &bind);
    client.send(b'S', &[]);
    let messages = client.read_until(b'Z');
    assert_eq!(messages.iter().find_map(sqlstate).as_deref(), Some("22P02"));

    // An unknown message type ends that connection with a protocol violation.
    let mut client = RawClient::startup(port);
    client.send(b'!', b"junk");
    let messages = client.read_until(b'Z');
    assert_eq!(messages.iter().find_map(sqlstate).as_deref(), Some("08P01"));

    // A length word claiming 2 GiB: refused without allocating it.
    let mut client = RawClient::startup(port);
    let _ = client.stream.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b'S']);
    let messages = client.read_until(b'Z');
    assert_eq!(messages.iter().find_map(sqlstate).as_deref(), Some("08P01"));

    // A message cut off mid-body, then the peer goes away.
    let mut client = RawClient::startup(port);
    let _ = client.stream.write_all(&[b'Q', 0, 0, 0, 100, b'S', b'E']);
    drop(client);

    // Garbage instead of a startup packet, and an absurd startup length.
    let mut client = RawClient::connect(port);
    let _ = client.stream.write_all(&[0, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8]);
    let _ = client.read_until(b'Z');
    let mut client = RawClient::connect(port);
    let _ = client.stream.write_all(&[0x7f, 0xff, 0xff, 0xff]);
    let _ = client.read_until(b'Z');

    // An SSL request is declined and startup continues in the clear.
    let mut client = RawClient::connect(port);
    client.stream.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    let mut answer = [0u8; 1];
    client.stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");

    assert_alive(port);
    assert_no_panic(&server);
}

#[test]
fn random_bytes_never_take_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let port = server.pg_port;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let tags = [b'Q', b'P', b'B', b'D', b'E', b'C', b'S', b'H', b'd', b'c', b'f', b'X', b'F', b'p', 0, 255];
    for _ in 0..200 {
        let mut client = RawClient::startup(port);
        for _ in 0..rng.random_range(1..6) {
            let tag = tags[rng.random_range(0..tags.len())];
            let mut body = vec![0u8; rng.random_range(0..64)];
            rng.fill_bytes(&mut body);
            // Sometimes a plausible shape: strings with terminators.
            if rng.random_bool(0.5) {
                for byte in body.iter_mut().step_by(5) {
                    *byte = 0;
                }
            }
            client.send(tag, &body);
        }
        client.send(b'S', &[]);
        let _ = client.read_until(b'Z');
    }
    assert_alive(port);
    assert_no_panic(&server);
}

/// One connection holds at most 10 000 named prepared statements, 1 000 portals (within one
/// transaction or until Sync) and 1 000 cursors: one more of each is refused with 54000, and
/// the session and the server go on.
#[test]
fn a_session_holds_a_bounded_number_of_statements_portals_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), &[]);
    let mut client = RawClient::startup(server.pg_port);
    let count = |messages: &[Message], tag: u8| messages.iter().filter(|m| m.0 == tag).count();

    for i in 0..=10_000 {
        let mut parse = cstr(&format!("s{i}"));
        parse.extend(cstr("SELECT 1"));
        parse.extend_from_slice(&0i16.to_be_bytes());
        client.send(b'P', &parse);
    }
    client.send(b'S', &[]);
    let messages = client.read_until(b'Z');
    assert_eq!(count(&messages, b'1'), 10_000, "ParseComplete");
    assert_eq!(messages.iter().find_map(sqlstate).as_deref(), Some("54000"));

    // Portals live until Sync outside a transaction block: 1 000 in one pipeline, then one more.
    // Bind of `portal` to s0: no parameter formats, no parameters, no result formats.
    let bind = |portal: &str| [cstr(portal), cstr("s0"), vec![0; 6]].concat();
    for i in 0..=1_000 {
        client.send(b'B', &bind(&format!("p{i}")));
    }
    client.send(b'S', &[]);
    let messages = client.read_until(b'Z');
    assert_eq!(count(&messages, b'2'), 1_000, "BindComplete");
    assert_eq!(messages.iter().find_map(sqlstate).as_deref(), Some("54000"));
    // After Sync the portals are gone: binding works again.
    client.send(b'B', &bind("again"));
    client.send(b'S', &[]);
    assert_eq!(count(&client.read_until(b'Z'), b'2'), 1);

    let declares: Vec<String> = (0..=1_000).map(|i| format!("DECLARE c{i} CURSOR FOR SELECT {i}")).collect();
    let messages = client.query(&declares.join("; "));
    assert_eq!(count(&messages, b'C'), 1_000, "DECLARE CURSOR");
    assert_eq!(messages.iter().find_map(sqlstate).as_deref(), Some("54000"));
    // The cursors declared are there; closing one makes room for another.
    let fetched = client.query("FETCH c999");
    assert!(fetched.iter().any(|m| m.0 == b'D' && m.1.ends_with(b"999")), "{fetched:?}");
    let messages = client.query("CLOSE c0; DECLARE c1000 CURSOR FOR SELECT 1000");
    assert_eq!(messages.iter().find_map(sqlstate), None);
    assert_no_panic(&server);
    assert_alive(server.pg_port);
}
