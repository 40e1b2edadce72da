//! TLS over real sockets with real clients: psql, psycopg, asyncpg, pgjdbc and node-postgres
//! verify the server's certificate (`sslmode=verify-full`, made in the test by openssl) and log in
//! with SCRAM, with channel binding (SCRAM-SHA-256-PLUS) where the client offers it; client
//! certificates log in as their common name; `--tls-required` refuses plain connections from
//! another host; HTTPS and Flight over TLS take the same certificate; and the bytes a client sends
//! before the handshake are never read as if they had come through it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use streamhouse_sql_tests::login::{login, non_loopback_address, CLIENTS};
use streamhouse_sql_tests::TestServer;

const SUPERUSER_PASSWORD: &str = "tls test superuser";

/// A certificate authority, the server's certificate (for localhost, 127.0.0.1 and `address`),
/// client certificates for alice and for streamhouse, and one for alice from another authority.
struct Certificates {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

impl Certificates {
    fn make(address: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        for authority in ["ca", "other-ca"] {
            let (subject, key, certificate) = (format!("/CN=StreamHouse test {authority}"), format!("{authority}.key"), format!("{authority}.pem"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &certificate];
            args.extend(p256);
            openssl(dir.path(), &args);
        }
        let server_names = format!("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:{address}\nextendedKeyUsage=serverAuth\n");
        std::fs::write(dir.path().join("server.ext"), server_names).unwrap();
        std::fs::write(dir.path().join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, common_name, authority, extensions) in [
            ("server", "localhost", "ca", "server.ext"),
            ("alice", "alice", "ca", "client.ext"),
            ("superuser", "streamhouse", "ca", "client.ext"),
            ("impostor", "alice", "other-ca", "client.ext"),
        ] {
            let (key, request, certificate) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            let subject = format!("/CN={common_name}");
            let mut args = vec!["req", "-new", "-subj", &subject, "-keyout", &key, "-out", &request];
            args.extend(p256);
            openssl(dir.path(), &args);
            let (authority_certificate, authority_key) = (format!("{authority}.pem"), format!("{authority}.key"));
            openssl(
                dir.path(),
                &["x509", "-req", "-days", "2", "-in", &request, "-CA", &authority_certificate, "-CAkey", &authority_key, "-CAcreateserial", "-extfile", extensions, "-out", &certificate],
            );
            // libpq refuses a private key others may read.
            std::fs::set_permissions(dir.path().join(&key), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            // pgjdbc reads a client key only as PKCS#8 DER (or PKCS#12).
            openssl(dir.path(), &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in", &key, "-out", &format!("{name}.pk8")]);
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem"),
            "--tls-key".into(),
            self.path("server.key"),
            "--tls-client-ca".into(),
            self.path("ca.pem"),
        ]
    }
}

fn start(data: &Path, certificates: &Certificates, more: &[&str]) -> TestServer {
    let mut args = certificates.server_args();
    args.extend(more.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start(data, &args)
}

async fn superuser(port: u16) -> tokio_postgres::Client {
    let config = format!("host=127.0.0.1 port={port} user=streamhouse password='{SUPERUSER_PASSWORD}' dbname=streamhouse");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.expect("the superuser connects from loopback");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_verifies_the_certificate_and_logs_in_over_tls_which_other_hosts_must_use() {
    let address = non_loopback_address();
    let certificates = Certificates::make(&address);
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir.path().join("data"),
        &certificates,
        &["--pg-listen", "0.0.0.0:0", "--auth", "scram", "--tls-required", "--superuser-password", SUPERUSER_PASSWORD],
    );
    // Loopback may still connect without TLS.
    let admin = superuser(server.pg_port).await;
    admin.batch_execute("CREATE ROLE alice LOGIN PASSWORD 'alice pw'").await.unwrap();

    let ca = certificates.path("ca.pem");
    let other_ca = certificates.path("other-ca.pem");
    let verified = [("PGHOST", address.as_str()), ("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())];
    for client in CLIENTS {
        // Over TLS, to the other-host address (where a plain connection is refused, so a login
        // that works went through TLS).
        assert_eq!(login(client, server.pg_port, "alice", "alice pw", &verified), "ok alice alice", "{client}");
        let wrong = login(client, server.pg_port, "alice", "alice pW", &verified);
        assert!(wrong.starts_with("error 28P01") || wrong.contains("password authentication failed for user \"alice\""), "{client}: {wrong}");
        // Plain text from another host: refused before any password is asked.
        let plain = login(client, server.pg_port, "alice", "alice pw", &[("PGHOST", address.as_str()), ("PGSSLMODE", "disable")]);
        assert!(plain.starts_with("error 28000") || plain.contains("without TLS refused"), "{client}: {plain}");
        // A client that trusts another authority does not accept the server.
        let untrusted = login(client, server.pg_port, "alice", "alice pw", &[("PGHOST", address.as_str()), ("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", other_ca.as_str())]);
        assert!(untrusted.starts_with("error"), "{client} accepted a certificate its authority did not sign: {untrusted}");
    }
    // libpq (psql, psycopg) and node-postgres bind the channel when asked: SCRAM-SHA-256-PLUS
    // with the hash of the certificate they saw.
    let bound = [("PGHOST", address.as_str()), ("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str()), ("PGCHANNELBINDING", "require")];
    for client in ["psql", "psycopg", "node-postgres"] {
        assert_eq!(login(client, server.pg_port, "alice", "alice pw", &bound), "ok alice alice", "{client} with channel binding");
    }
    // libpq says that it asked for binding and got it: without TLS there is none to require.
    let plain_bound = login("psql", server.pg_port, "alice", "alice pw", &[("PGSSLMODE", "disable"), ("PGCHANNELBINDING", "require")]);
    assert!(plain_bound.contains("channel binding required"), "{plain_bound}");

    // psql's \conninfo names the protocol libpq negotiated.
    let output = Command::new("psql")
        .args(["-X", "-p", &server.pg_port.to_string(), "-U", "alice", "-d", "streamhouse", "-c", "\\conninfo"])
        .env("PGHOST", "localhost")
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &ca)
        .env("PGPASSWORD", "alice pw")
        .output()
        .unwrap();
    let conninfo = String::from_utf8_lossy(&output.stdout);
    assert!(conninfo.contains("SSL connection (protocol: TLSv1.3"), "{conninfo}{}", String::from_utf8_lossy(&output.stderr));
}

fn as_env(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_as_its_common_name_and_only_as_that() {
    let certificates = Certificates::make(&non_loopback_address());
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &certificates, &["--auth", "scram", "--superuser-password", SUPERUSER_PASSWORD]);
    let admin = superuser(server.pg_port).await;
    // alice has no password at all: only her certificate can let her in.
    admin.batch_execute("CREATE ROLE alice LOGIN").await.unwrap();

    let ca = certificates.path("ca.pem");
    // pgjdbc takes the key as PKCS#8 DER, the others as PEM.
    let with_certificate = |name: &str, client: &str| -> Vec<(String, String)> {
        let key = if client == "pgjdbc" { format!("{name}.pk8") } else { format!("{name}.key") };
        vec![
            ("PGSSLMODE".into(), "verify-full".into()),
            ("PGSSLROOTCERT".into(), ca.clone()),
            ("PGSSLCERT".into(), certificates.path(&format!("{name}.pem"))),
            ("PGSSLKEY".into(), certificates.path(&key)),
        ]
    };
    let superuser_certificate = with_certificate("superuser", "psql");
    for client in CLIENTS {
        let (alice, impostor) = (with_certificate("alice", client), with_certificate("impostor", client));
        assert_eq!(login(client, server.pg_port, "alice", "", &as_env(&alice)), "ok alice alice", "{client}");
        // alice's certificate does not make her the superuser.
        let other_role = login(client, server.pg_port, "streamhouse", "", &as_env(&alice));
        assert!(
            other_role.starts_with("error 28000") || other_role.contains("certificate authentication failed for user \"streamhouse\""),
            "{client}: {other_role}"
        );
        // A certificate from an authority the server does not trust ends the handshake.
        let refused = login(client, server.pg_port, "alice", "", &as_env(&impostor));
        assert!(refused.starts_with("error") && !refused.contains("ok alice"), "{client}: {refused}");
    }
    assert_eq!(login("psql", server.pg_port, "streamhouse", "", &as_env(&superuser_certificate)), "ok streamhouse streamhouse");
    // Without a certificate, alice (who has no password) cannot log in.
    let no_certificate = login("psql", server.pg_port, "alice", "guess", &[("PGSSLMODE", "require")]);
    assert!(no_certificate.contains("password authentication failed for user \"alice\""), "{no_certificate}");
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(log.contains("the client certificate names another role"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_flight_over_tls_use_the_same_certificate_and_flight_takes_client_certificates() {
    let certificates = Certificates::make(&non_loopback_address());
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &certificates, &[]);
    let ca = certificates.path("ca.pem");
    // HTTPS, verified by curl against the test authority.
    let health = Command::new("curl")
        .args(["-sS", "--cacert", &ca, &format!("https://localhost:{}/health", server.http_port)])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "ok\n", "{}", String::from_utf8_lossy(&health.stderr));
    let metrics = Command::new("curl").args(["-sS", "--cacert", &ca, &format!("https://127.0.0.1:{}/metrics", server.http_port)]).output().unwrap();
    assert!(String::from_utf8_lossy(&metrics.stdout).contains("streamhouse_active_connections"));
    // Plain HTTP gets no answer from a TLS listener.
    let plain = Command::new("curl").args(["-sS", "-m", "10", &format!("http://127.0.0.1:{}/health", server.http_port)]).output().unwrap();
    assert!(!plain.status.success() && !String::from_utf8_lossy(&plain.stdout).contains("ok"));

    // Flight over TLS from the ADBC Flight SQL driver: anonymous from loopback (the superuser),
    // and with alice's client certificate as alice; a plain client gets nothing.
    superuser(server.pg_port).await.batch_execute("CREATE ROLE alice LOGIN").await.unwrap();
    let script = r#"
import sys
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
port, ca, cert, key = sys.argv[1:5]
def who(options):
    options["adbc.flight.sql.client_option.tls_root_certs"] = open(ca).read()
    with flight_sql.connect(f"grpc+tls://localhost:{port}", db_kwargs=options) as conn, conn.cursor() as cur:
        cur.execute("SELECT 40 + 2 AS answer, current_user")
        return cur.fetchone()
print("anonymous", who({}))
print("certificate", who({"adbc.flight.sql.client_option.mtls_cert_chain": open(cert).read(),
                         "adbc.flight.sql.client_option.mtls_private_key": open(key).read()}))
try:
    list(flight.connect(f"grpc://127.0.0.1:{port}").list_flights())
    print("plain accepted")
except Exception:
    print("plain refused")
"#;
    let port = server.flight_port.to_string();
    let (cert, key) = (certificates.path("alice.pem"), certificates.path("alice.key"));
    let output = Command::new("python3").args(["-c", script, &port, &ca, &cert, &key]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout,
        "anonymous (42, 'streamhouse')\ncertificate (42, 'alice')\nplain refused\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bytes_sent_before_the_handshake_are_not_taken_as_encrypted_and_tls_errors_stop_the_start() {
    let certificates = Certificates::make(&non_loopback_address());
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &certificates, &[]);
    // An SSLRequest with a startup packet right behind it in the same write (CVE-2021-23214):
    // the server answers S and reads what follows as the TLS handshake, which it is not.
    let mut stream = TcpStream::connect(("127.0.0.1", server.pg_port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    bytes.extend(streamhouse_sql_tests::startup_packet(&[("user", "streamhouse")]));
    stream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&b'S'), "{answer:?}");
    assert!(!answer[1..].contains(&b'R'), "no authentication message may follow: {answer:?}");
    // GSS encryption is declined, and the connection may go on in the clear.
    let mut stream = TcpStream::connect(("127.0.0.1", server.pg_port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]).unwrap(); // GSSENCRequest
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"N");
    // The server still serves.
    let status = Command::new("psql")
        .args(["-X", "-tA", "-h", "127.0.0.1", "-p", &server.pg_port.to_string(), "-U", "streamhouse", "-c", "SELECT 1"])
        .env("PGSSLMODE", "require")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "1");

    // Files that cannot be used stop the start with a message naming them.
    let attempts: [(Vec<String>, &str); 4] = [
        (vec!["--tls-cert".into(), certificates.path("server.pem")], "tls_cert needs tls_key"),
        (vec!["--tls-required".into()], "tls_required needs a certificate"),
        (
            vec!["--tls-cert".into(), certificates.path("server.pem"), "--tls-key".into(), certificates.path("alice.key")],
            "does not fit the certificate",
        ),
        (
            vec!["--tls-cert".into(), certificates.path("missing.pem"), "--tls-key".into(), certificates.path("server.key")],
            "missing.pem",
        ),
    ];
    for (args, expected) in attempts {
        let output = Command::new(streamhouse_sql_tests::server_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("other"))
            .args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{args:?}: {stderr}");
    }
}
