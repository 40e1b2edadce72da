//! TLS for every listener: the server's certificate and key (PEM), optionally the certificate
//! authority whose client certificates are accepted (mutual TLS), and what a connection learns
//! from the handshake — the role a client certificate names and the channel binding that
//! SCRAM-SHA-256-PLUS checks.
//!
//! rustls with the ring provider does the cryptography; this module only loads the files, builds
//! one `rustls::ServerConfig` per protocol (they differ only in ALPN) and reads the two facts out
//! of certificates that rustls does not expose (a subject's common name, a signature's hash).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Where the TLS files are, as configured (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// Client certificates signed by this authority are accepted, and name their role in their
    /// subject's common name. A client without one still logs in with its password.
    pub client_ca: Option<PathBuf>,
}

/// The loaded certificate and key, ready to accept TLS on any listener.
pub struct Tls {
    certificate_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<Arc<rustls::RootCertStore>>,
    /// RFC 5929 `tls-server-end-point`: the hash of the server's certificate, or `None` when its
    /// signature algorithm names no single hash (Ed25519, RSA-PSS), so SCRAM-SHA-256-PLUS is not
    /// offered.
    channel_binding: Option<Vec<u8>>,
    /// The PEM files as read, for tonic (which builds its own rustls configuration).
    certificate_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("certificates", &self.certificate_chain.len()).field("mutual", &self.client_roots.is_some()).finish()
    }
}

/// A TLS file that cannot be used, with the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    pub path: String,
    pub reason: String,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError { path: path.display().to_string(), reason: e.to_string() })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError { path: path.display().to_string(), reason };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM certificate file: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid("holds no certificate (expected -----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certificates)
}

impl Tls {
    /// Reads and checks the files: the key must be the certificate's, the authority a
    /// certificate.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let certificate_pem = read(&files.certificate)?;
        let certificate_chain = certificates(&files.certificate, &certificate_pem)?;
        let key_pem = read(&files.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError {
            path: files.key.display().to_string(),
            reason: format!("no private key in it (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        })?;
        let (client_roots, client_ca_pem) = match &files.client_ca {
            None => (None, None),
            Some(path) => {
                let pem = read(path)?;
                let mut roots = rustls::RootCertStore::empty();
                for certificate in certificates(path, &pem)? {
                    roots.add(certificate).map_err(|e| TlsError { path: path.display().to_string(), reason: e.to_string() })?;
                }
                (Some(Arc::new(roots)), Some(pem))
            }
        };
        let channel_binding = certificate_chain.first().and_then(|leaf| end_point_hash(leaf));
        let tls = Self { certificate_chain, key, client_roots, channel_binding, certificate_pem, key_pem, client_ca_pem };
        // Building a configuration checks that the key matches the certificate.
        tls.server_config(&[]).map_err(|reason| TlsError { path: files.key.display().to_string(), reason })?;
        Ok(tls)
    }

    /// A server configuration that offers `protocols` by ALPN (a client that offers none is
    /// accepted; one that offers only others is refused by the handshake).
    pub fn server_config(&self, protocols: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| e.to_string())?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(self.certificate_chain.clone(), self.key.clone_key())
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The `tls-server-end-point` channel binding data, if SCRAM-SHA-256-PLUS can be offered.
    pub fn channel_binding(&self) -> Option<&[u8]> {
        self.channel_binding.as_deref()
    }

    /// Whether client certificates are asked for.
    pub fn is_mutual(&self) -> bool {
        self.client_roots.is_some()
    }

    pub fn certificate_pem(&self) -> &[u8] {
        &self.certificate_pem
    }

    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    pub fn client_ca_pem(&self) -> Option<&[u8]> {
        self.client_ca_pem.as_deref()
    }
}

/// What a connection's TLS handshake established.
#[derive(Debug, Clone, Default)]
pub struct TlsSession {
    /// The role a verified client certificate names (its subject's common name), if the client
    /// sent one.
    pub certificate_role: Option<String>,
    /// The channel binding data SCRAM-SHA-256-PLUS checks, if offered.
    pub channel_binding: Option<Vec<u8>>,
}

impl TlsSession {
    /// The facts of a finished handshake: rustls has verified `peer_certificates` (if any)
    /// against the client authority.
    pub fn new(tls: &Tls, peer_certificates: Option<&[CertificateDer<'_>]>) -> Self {
        let certificate_role = peer_certificates.and_then(|chain| chain.first()).and_then(|leaf| common_name(leaf));
        Self { certificate_role, channel_binding: tls.channel_binding.clone() }
    }
}

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0usize, |n, &b| (n << 8) | b as usize);
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OBJECT_IDENTIFIER: u8 = 0x06;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The certificate's `tbsCertificate` fields and its `signatureAlgorithm`.
fn certificate_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (SEQUENCE, certificate, _) = element(der)? else { return None };
    let (SEQUENCE, to_be_signed, rest) = element(certificate)? else { return None };
    let (SEQUENCE, algorithm, _) = element(rest)? else { return None };
    Some((to_be_signed, algorithm))
}

/// The last common name in the subject of a DER certificate (the most specific one, as
/// PostgreSQL reads it), if it is text.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (mut fields, _) = certificate_parts(der)?;
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    if fields.first() == Some(&0xa0) {
        fields = element(fields)?.2;
    }
    for _ in 0..4 {
        fields = element(fields)?.2;
    }
    let (SEQUENCE, mut subject, _) = element(fields)? else { return None };
    let mut name = None;
    while !subject.is_empty() {
        let (SET, mut attributes, rest) = element(subject)? else { return None };
        subject = rest;
        while !attributes.is_empty() {
            let (SEQUENCE, attribute, rest) = element(attributes)? else { return None };
            attributes = rest;
            let (OBJECT_IDENTIFIER, oid, value) = element(attribute)? else { return None };
            if oid == COMMON_NAME {
                let (tag, text, _) = element(value)?;
                // UTF8String, PrintableString, IA5String, TeletexString (as Latin-1 would be
                // wrong for bytes above 0x7f, only ASCII is taken from it).
                name = match tag {
                    0x0c | 0x13 | 0x16 => std::str::from_utf8(text).ok().map(str::to_string),
                    0x14 if text.is_ascii() => std::str::from_utf8(text).ok().map(str::to_string),
                    _ => None,
                };
            }
        }
    }
    name
}

/// RFC 5929's `tls-server-end-point` data: the certificate hashed with its signature's hash
/// (SHA-256 for MD5 and SHA-1); `None` for algorithms without one (PostgreSQL refuses those
/// too).
fn end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    use ring::digest;
    let (_, algorithm) = certificate_parts(der)?;
    let (OBJECT_IDENTIFIER, oid, _) = element(algorithm)? else { return None };
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let hash = match oid {
        // md5WithRSA (4), sha1WithRSA (5), sha256WithRSA (11), ecdsa-with-SHA1 (4.1), -SHA256 (4.3.2)
        [prefix @ .., 4 | 5 | 11] if prefix == RSA => &digest::SHA256,
        [prefix @ .., 1] if prefix == ECDSA => &digest::SHA256,
        [prefix @ .., 3, 2] if prefix == ECDSA => &digest::SHA256,
        [prefix @ .., 12] if prefix == RSA => &digest::SHA384,
        [prefix @ .., 3, 3] if prefix == ECDSA => &digest::SHA384,
        [prefix @ .., 13] if prefix == RSA => &digest::SHA512,
        [prefix @ .., 3, 4] if prefix == ECDSA => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(hash, der).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes a key and a self-signed certificate with openssl (the tool an operator uses).
    fn openssl_certificate(dir: &Path, subject: &str, key_options: &[&str], digest: &str) -> (PathBuf, PathBuf) {
        let digest: &[&str] = if digest.is_empty() { &[] } else { &[digest] };
        let (certificate, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2", "-subj", subject])
            .args(digest)
            .args(key_options)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success());
        (certificate, key)
    }

    fn der(path: &Path) -> Vec<u8> {
        certificates(path, &std::fs::read(path).unwrap()).unwrap().remove(0).to_vec()
    }

    #[test]
    fn the_common_name_is_read_from_the_subject_and_its_last_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, _) = openssl_certificate(dir.path(), "/O=Acme/CN=first/CN=alice", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha256");
        assert_eq!(common_name(&der(&certificate)).as_deref(), Some("alice"));
        let (certificate, _) = openssl_certificate(dir.path(), "/O=Acme/OU=no name", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha256");
        assert_eq!(common_name(&der(&certificate)), None);
        for garbage in [&b""[..], b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x30\x01"] {
            assert_eq!(common_name(garbage), None);
            assert_eq!(end_point_hash(garbage), None);
        }
    }

    #[test]
    fn the_channel_binding_hash_follows_the_signature_as_openssl_computes_it() {
        let dir = tempfile::tempdir().unwrap();
        for (digest, length) in [("-sha256", 32), ("-sha384", 48), ("-sha512", 64)] {
            let (certificate, key) = openssl_certificate(dir.path(), "/CN=server", &["-newkey", "rsa:2048"], digest);
            let tls = Tls::load(&TlsFiles { certificate: certificate.clone(), key, client_ca: None }).unwrap();
            let binding = tls.channel_binding().expect("an RSA certificate has a hash").to_vec();
            assert_eq!(binding.len(), length);
            // The independent computation: openssl's digest of the DER form.
            let der_path = dir.path().join("cert.der");
            std::fs::write(&der_path, der(&certificate)).unwrap();
            let output = std::process::Command::new("openssl").args(["dgst", digest, "-binary"]).arg(&der_path).output().unwrap();
            assert_eq!(output.stdout, binding, "{digest}");
        }
        let (certificate, key) = openssl_certificate(dir.path(), "/CN=server", &["-newkey", "ed25519"], "");
        let tls = Tls::load(&TlsFiles { certificate, key, client_ca: None }).unwrap();
        assert_eq!(tls.channel_binding(), None, "Ed25519 names no hash: no SCRAM-SHA-256-PLUS");
    }

    #[test]
    fn unusable_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = openssl_certificate(dir.path(), "/CN=server", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha256");
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = openssl_certificate(other.path(), "/CN=other", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha256");
        let error = Tls::load(&TlsFiles { certificate: certificate.clone(), key: other_key.clone(), client_ca: None }).unwrap_err();
        assert!(error.to_string().contains("does not fit the certificate"), "{error}");
        let error = Tls::load(&TlsFiles { certificate: key.clone(), key: key.clone(), client_ca: None }).unwrap_err();
        assert!(error.to_string().starts_with(&key.display().to_string()) && error.reason.contains("no certificate"), "{error}");
        let error = Tls::load(&TlsFiles { certificate: certificate.clone(), key: certificate.clone(), client_ca: None }).unwrap_err();
        assert!(error.reason.contains("no private key"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = Tls::load(&TlsFiles { certificate: missing.clone(), key, client_ca: None }).unwrap_err();
        assert_eq!(error.path, missing.display().to_string());
    }
}
