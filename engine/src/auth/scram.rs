//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the stored verifier and the
//! server's side of the exchange.
//!
//! A password is never stored: a role keeps a verifier in PostgreSQL's text form,
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), so `CREATE ROLE … PASSWORD
//! 'SCRAM-SHA-256$…'` with a verifier made by PostgreSQL (pg_dump's output) works unchanged.
//!
//! PostgreSQL ignores the user name inside the SCRAM messages (the startup packet's counts), and so
//! does this exchange. Over TLS with a certificate whose hash is known, the exchange also offers
//! SCRAM-SHA-256-PLUS (RFC 5929 `tls-server-end-point` channel binding): the client then proves
//! that its TLS session ends at this server's certificate, so a man in the middle with another
//! certificate cannot relay the exchange.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};
use std::num::NonZeroU32;

/// PostgreSQL's `scram_iterations` default.
pub const ITERATIONS_DEFAULT: u32 = 4096;
/// Most iterations a verifier given as text may ask for: each login runs them once, so a huge
/// count would let `CREATE ROLE` make every later login a denial of service.
pub const ITERATIONS_MAX: u32 = 10_000_000;
/// Salt length PostgreSQL uses.
const SALT_BYTES: usize = 16;
/// Random bytes of the server's nonce half (PostgreSQL's `SCRAM_RAW_NONCE_LEN`).
const NONCE_BYTES: usize = 18;
const KEY_BYTES: usize = 32;
/// Longest client message accepted (PostgreSQL's own are under 200 bytes).
const MESSAGE_BYTES_MAX: usize = 1024;
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding (offered over TLS only).
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel binding type PostgreSQL and its clients use.
const CHANNEL_BINDING_TYPE: &str = "tls-server-end-point";

/// What a role stores instead of its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_BYTES],
    server_key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(SCRAM-SHA-256)")
    }
}

/// Why an exchange or a verifier was refused. The message is for the server log, never for the
/// client (which is told only that authentication failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScramError(pub String);

fn error(message: impl Into<String>) -> ScramError {
    ScramError(message.into())
}

/// A password as SCRAM hashes it: SASLprep-normalized when it can be, its bytes as given when not
/// (PostgreSQL does the same, so a password that is not valid SASLprep input still works).
fn normalized(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepared) if !prepared.is_empty() => prepared.as_bytes().to_vec(),
        _ => password.as_bytes().to_vec(),
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; KEY_BYTES] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0; KEY_BYTES];
    out.copy_from_slice(hmac::sign(&key, message).as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; KEY_BYTES] {
    let mut out = [0; KEY_BYTES];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// Equality of two secrets in time that does not depend on where they differ.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    // The system's random source failing is not something a server can go on from safely.
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

impl Verifier {
    /// A verifier for `password` with a fresh random salt and PostgreSQL's iteration count.
    pub fn new(password: &str) -> Self {
        Self::with_salt(password, &random_bytes(SALT_BYTES), ITERATIONS_DEFAULT)
    }

    fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Reads PostgreSQL's text form; `None` if `text` is not a SCRAM-SHA-256 verifier.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (parameters, keys) = rest.split_once('$')?;
        let (iterations, salt) = parameters.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|i| (1..=ITERATIONS_MAX).contains(i))?;
        let salt = BASE64.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(Self {
            iterations,
            salt,
            stored_key: BASE64.decode(stored_key).ok()?.try_into().ok()?,
            server_key: BASE64.decode(server_key).ok()?.try_into().ok()?,
        })
    }

    /// Whether `password` is the one this verifier was made from (cleartext password
    /// authentication, and Flight's basic authentication).
    pub fn check_password(&self, password: &str) -> bool {
        let candidate = Self::with_salt(password, &self.salt, self.iterations);
        equal_in_constant_time(&candidate.stored_key, &self.stored_key)
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; KEY_BYTES] {
    let mut out = [0; KEY_BYTES];
    let iterations = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, &normalized(password), &mut out);
    out
}

/// The server's side of one SCRAM exchange.
///
/// For a role that does not exist or has no password, the exchange runs on a made-up verifier
/// (`Verifier::mock`) and fails at its end, so a client cannot tell a wrong user from a wrong
/// password (PostgreSQL does the same).
pub struct ServerExchange {
    verifier: Verifier,
    /// Whether the exchange must fail at its end whatever the proof.
    doomed: bool,
    /// The TLS session's `tls-server-end-point` data, when channel binding is offered.
    channel_binding: Option<Vec<u8>>,
    /// Whether the client chose SCRAM-SHA-256-PLUS.
    plus: bool,
    state: State,
}

enum State {
    /// Waiting for the client's first message.
    Start,
    /// Sent the server's first message; waiting for the client's final one.
    Challenged { expected_binding: Vec<u8>, client_first_bare: String, server_first: String, nonce: String },
    Done,
}

/// What the server answers a client message with.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this `server-first-message` and wait for the client's final message.
    Continue(String),
    /// The proof is right: send this `server-final-message`, then the session starts.
    Success(String),
}

impl ServerExchange {
    /// An exchange against `verifier`, or against a mock one when there is none; with
    /// `channel_binding` (the TLS session's end-point hash) SCRAM-SHA-256-PLUS is offered too.
    pub fn new(verifier: Option<Verifier>, mock_seed: &[u8], channel_binding: Option<Vec<u8>>) -> Self {
        let doomed = verifier.is_none();
        let verifier = verifier.unwrap_or_else(|| Verifier::mock(mock_seed));
        Self { verifier, doomed, channel_binding, plus: false, state: State::Start }
    }

    /// The mechanisms to offer, the preferred first (PostgreSQL's order).
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.channel_binding.is_some() {
            &[MECHANISM_PLUS, MECHANISM]
        } else {
            &[MECHANISM]
        }
    }

    /// Takes the client's choice of mechanism; `false` if it was not offered.
    pub fn choose(&mut self, mechanism: &[u8]) -> bool {
        match std::str::from_utf8(mechanism) {
            Ok(chosen) if self.mechanisms().contains(&chosen) => {
                self.plus = chosen == MECHANISM_PLUS;
                true
            }
            _ => false,
        }
    }

    /// Handles the next client message. Any error ends the exchange as failed.
    pub fn step(&mut self, message: &[u8]) -> Result<Step, ScramError> {
        self.step_with_nonce(message, &BASE64.encode(random_bytes(NONCE_BYTES)))
    }

    fn step_with_nonce(&mut self, message: &[u8], server_nonce: &str) -> Result<Step, ScramError> {
        if message.len() > MESSAGE_BYTES_MAX {
            return Err(error("SCRAM message too long"));
        }
        let message = std::str::from_utf8(message).map_err(|_| error("SCRAM message is not valid UTF-8"))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => {
                let (gs2_header, client_first_bare, client_nonce) = parse_client_first(message)?;
                let expected_binding = self.expected_binding(gs2_header)?;
                let nonce = format!("{client_nonce}{server_nonce}");
                let server_first =
                    format!("r={nonce},s={},i={}", BASE64.encode(&self.verifier.salt), self.verifier.iterations);
                self.state =
                    State::Challenged { expected_binding, client_first_bare, server_first: server_first.clone(), nonce };
                Ok(Step::Continue(server_first))
            }
            State::Challenged { expected_binding, client_first_bare, server_first, nonce } => {
                let (without_proof, proof) = message.rsplit_once(",p=").ok_or_else(|| error("SCRAM final message without a proof"))?;
                let mut fields = without_proof.split(',');
                let binding = fields.next().and_then(|f| f.strip_prefix("c=")).ok_or_else(|| error("SCRAM final message without channel binding"))?;
                let client_nonce = fields.next().and_then(|f| f.strip_prefix("r=")).ok_or_else(|| error("SCRAM final message without a nonce"))?;
                if fields.any(|f| f.starts_with("m=")) {
                    return Err(error("SCRAM mandatory extension not supported"));
                }
                if BASE64.decode(binding).ok() != Some(expected_binding) {
                    return Err(error("SCRAM channel binding check failed"));
                }
                if client_nonce != nonce {
                    return Err(error("SCRAM nonce mismatch"));
                }
                let proof: [u8; KEY_BYTES] = BASE64
                    .decode(proof)
                    .ok()
                    .and_then(|p| p.try_into().ok())
                    .ok_or_else(|| error("malformed SCRAM proof"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
                let mut client_key = [0; KEY_BYTES];
                for (i, byte) in client_key.iter_mut().enumerate() {
                    *byte = proof[i] ^ client_signature[i];
                }
                let proof_is_right = equal_in_constant_time(&sha256(&client_key), &self.verifier.stored_key);
                if self.doomed {
                    return Err(error("the role does not exist or has no password"));
                }
                if !proof_is_right {
                    return Err(error("wrong password (the SCRAM proof did not match)"));
                }
                let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
                Ok(Step::Success(format!("v={}", BASE64.encode(server_signature))))
            }
            State::Done => Err(error("SCRAM exchange already finished")),
        }
    }
}

impl ServerExchange {
    /// What the final message's `c=` must carry for this first message's GS2 header: the header,
    /// followed by the channel binding data when the client binds. The client's flag must agree
    /// with the mechanism it chose, and `y` (a client that could bind but believes the server
    /// cannot) is a downgrade when the server offered binding (RFC 5802 §6).
    fn expected_binding(&self, header: Gs2Header) -> Result<Vec<u8>, ScramError> {
        let Gs2Header { flag, text } = header;
        match (flag, self.plus) {
            (Binding::Bound, true) => {
                let data = self.channel_binding.as_deref().ok_or_else(|| error("SCRAM channel binding without TLS"))?;
                Ok([text.as_bytes(), data].concat())
            }
            (Binding::Bound, false) => Err(error("the client bound the channel but did not choose SCRAM-SHA-256-PLUS")),
            (_, true) => Err(error("the client chose SCRAM-SHA-256-PLUS but did not bind the channel")),
            (Binding::Possible, false) if self.channel_binding.is_some() => {
                Err(error("SCRAM channel binding negotiation error (the client believes the server cannot bind)"))
            }
            (Binding::None | Binding::Possible, false) => Ok(text.into_bytes()),
        }
    }
}

/// The client's channel binding flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// `n`: the client does not bind.
    None,
    /// `y`: the client could, but thinks the server cannot.
    Possible,
    /// `p=tls-server-end-point`.
    Bound,
}

/// The GS2 header of a client's first message.
struct Gs2Header {
    flag: Binding,
    /// As sent (`n,,`, `y,,`, `p=tls-server-end-point,,`).
    text: String,
}

impl Verifier {
    /// A verifier no password matches, with a salt that depends only on `seed` (the user name and
    /// a server secret), so repeated attempts for one unknown user see the same salt.
    pub(crate) fn mock(seed: &[u8]) -> Self {
        let salt = sha256(seed)[..SALT_BYTES].to_vec();
        Self { iterations: ITERATIONS_DEFAULT, salt, stored_key: sha256(&random_bytes(KEY_BYTES)), server_key: [0; KEY_BYTES] }
    }
}

/// `gs2-header client-first-message-bare`: the header, the bare part and the client's nonce.
fn parse_client_first(message: &str) -> Result<(Gs2Header, String, String), ScramError> {
    let (flag, rest) = message.split_once(',').ok_or_else(|| error("malformed SCRAM first message"))?;
    let binding = match flag {
        "n" => Binding::None,
        "y" => Binding::Possible,
        f if f.strip_prefix("p=") == Some(CHANNEL_BINDING_TYPE) => Binding::Bound,
        f if f.starts_with("p=") => return Err(error("unsupported SCRAM channel binding type")),
        _ => return Err(error("malformed SCRAM channel binding flag")),
    };
    let (authzid, bare) = rest.split_once(',').ok_or_else(|| error("malformed SCRAM first message"))?;
    if !authzid.is_empty() {
        return Err(error("SCRAM authorization identities are not supported"));
    }
    let mut fields = bare.split(',');
    let user = fields.next().unwrap_or("");
    if user.starts_with("m=") {
        return Err(error("SCRAM mandatory extension not supported"));
    }
    if !user.starts_with("n=") {
        return Err(error("malformed SCRAM first message: no user name field"));
    }
    let nonce = fields.next().and_then(|f| f.strip_prefix("r=")).ok_or_else(|| error("malformed SCRAM first message: no nonce"))?;
    // RFC 5802: printable ASCII except ','.
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return Err(error("malformed SCRAM nonce"));
    }
    Ok((Gs2Header { flag: binding, text: format!("{flag},{authzid},") }, bare.to_string(), nonce.to_string()))
}

/// The client's side of the proof, to test the server's against.
#[cfg(test)]
pub(crate) fn client_proof(password: &str, salt: &[u8], iterations: u32, auth_message: &str) -> String {
    let salted = salted_password(password, salt, iterations);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let signature = hmac_sha256(&sha256(&client_key), auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
    BASE64.encode(proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 §3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_verifier() -> Verifier {
        Verifier::with_salt("pencil", &BASE64.decode(SALT).unwrap(), 4096)
    }

    #[test]
    fn the_rfc_7677_exchange_succeeds_with_its_server_signature() {
        let mut exchange = ServerExchange::new(Some(rfc_verifier()), b"", None);
        let first = exchange.step_with_nonce(CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
        assert_eq!(first, Step::Continue(format!("r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE},s={SALT},i=4096")));
        assert_eq!(exchange.step(CLIENT_FINAL.as_bytes()).unwrap(), Step::Success(SERVER_FINAL.into()));
        assert!(exchange.step(CLIENT_FINAL.as_bytes()).is_err(), "an exchange is used once");
    }

    #[test]
    fn a_wrong_password_a_changed_nonce_or_a_missing_role_fail() {
        let attempts: [(&str, Option<Verifier>); 3] = [
            (CLIENT_FINAL, Some(Verifier::with_salt("pencil!", &BASE64.decode(SALT).unwrap(), 4096))),
            (&CLIENT_FINAL.replace("k0,p=", "k1,p="), Some(rfc_verifier())),
            (CLIENT_FINAL, None),
        ];
        for (last, verifier) in attempts {
            let mut exchange = ServerExchange::new(verifier, b"someone", None);
            exchange.step_with_nonce(CLIENT_FIRST.as_bytes(), SERVER_NONCE).unwrap();
            assert!(exchange.step(last.as_bytes()).is_err(), "{last}");
        }
    }

    #[test]
    fn a_mock_exchange_looks_like_a_real_one_until_its_end() {
        let mut one = ServerExchange::new(None, b"ghost", None);
        let mut two = ServerExchange::new(None, b"ghost", None);
        let (Step::Continue(a), Step::Continue(b)) =
            (one.step_with_nonce(CLIENT_FIRST.as_bytes(), "x").unwrap(), two.step_with_nonce(CLIENT_FIRST.as_bytes(), "x").unwrap())
        else {
            panic!("expected a challenge")
        };
        assert_eq!(a, b, "the same unknown user sees the same salt");
        assert!(a.ends_with(",i=4096"));
    }

    #[test]
    fn verifiers_round_trip_through_postgresql_text_and_check_passwords() {
        let verifier = rfc_verifier();
        let text = verifier.to_string();
        assert!(text.starts_with(&format!("SCRAM-SHA-256$4096:{SALT}$")), "{text}");
        assert_eq!(Verifier::parse(&text), Some(verifier.clone()));
        assert!(verifier.check_password("pencil"));
        assert!(!verifier.check_password("pencil "));
        let fresh = Verifier::new("s3cret");
        assert!(fresh.check_password("s3cret") && !fresh.check_password("S3cret"));
        assert_ne!(Verifier::new("s3cret"), fresh, "each verifier has its own salt");
        for bad in ["md5abc", "SCRAM-SHA-256$0:c2FsdA==$a:b", "SCRAM-SHA-256$4096:$a:b", "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA"] {
            assert_eq!(Verifier::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_client_side_helper_agrees_with_the_rfc() {
        let bare = &CLIENT_FIRST[3..];
        let server_first = format!("r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE},s={SALT},i=4096");
        let without_proof = format!("c=biws,r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE}");
        let proof = client_proof("pencil", &BASE64.decode(SALT).unwrap(), 4096, &format!("{bare},{server_first},{without_proof}"));
        assert_eq!(format!("{without_proof},p={proof}"), CLIENT_FINAL);
    }

    #[test]
    fn malformed_first_messages_are_refused() {
        for message in ["", "n", "n,,", "x,,n=,r=abc", "p=tls-server-end-point,,n=,r=abc", "n,a=admin,n=,r=abc", "n,,r=abc", "n,,n=,r=", "n,,n=,r=a\u{7f}"] {
            let mut exchange = ServerExchange::new(Some(rfc_verifier()), b"", None);
            assert!(exchange.step(message.as_bytes()).is_err(), "{message:?}");
        }
        let mut exchange = ServerExchange::new(Some(rfc_verifier()), b"", None);
        assert!(exchange.step(&[0xff, 0xfe]).is_err());
    }

    /// The client's final message without its proof and the proof, for `gs2_header` and
    /// `binding` over the RFC's nonces and password.
    fn bound_final(gs2_header: &str, binding: &[u8]) -> String {
        let c = BASE64.encode([gs2_header.as_bytes(), binding].concat());
        let without_proof = format!("c={c},r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE}");
        let server_first = format!("r=rOprNGfwEbeRWgbNEkqO{SERVER_NONCE},s={SALT},i=4096");
        let auth_message = format!("n=user,r=rOprNGfwEbeRWgbNEkqO,{server_first},{without_proof}");
        format!("{without_proof},p={}", client_proof("pencil", &BASE64.decode(SALT).unwrap(), 4096, &auth_message))
    }

    /// Runs an exchange offering `offered` binding data where the client chooses `mechanism`,
    /// sends `gs2_header` and binds `bound`.
    fn bound_exchange(offered: Option<&[u8]>, mechanism: &str, gs2_header: &str, bound: &[u8]) -> Result<Step, ScramError> {
        let mut exchange = ServerExchange::new(Some(rfc_verifier()), b"", offered.map(<[u8]>::to_vec));
        if !exchange.choose(mechanism.as_bytes()) {
            return Err(error("not offered"));
        }
        exchange.step_with_nonce(format!("{gs2_header}n=user,r=rOprNGfwEbeRWgbNEkqO").as_bytes(), SERVER_NONCE)?;
        exchange.step(bound_final(gs2_header, bound).as_bytes())
    }

    #[test]
    fn channel_binding_proves_the_tls_end_point_and_refuses_downgrades() {
        let hash = [7u8; 32];
        let plus = "p=tls-server-end-point,,";
        assert!(matches!(bound_exchange(Some(&hash), MECHANISM_PLUS, plus, &hash), Ok(Step::Success(_))));
        // A relay through another certificate has another hash.
        assert!(bound_exchange(Some(&hash), MECHANISM_PLUS, plus, &[8u8; 32]).is_err());
        // Over TLS a client may still skip binding with plain SCRAM and `n`…
        assert!(matches!(bound_exchange(Some(&hash), MECHANISM, "n,,", b""), Ok(Step::Success(_))));
        // …but `y` says it saw no PLUS offered: someone removed it.
        assert!(bound_exchange(Some(&hash), MECHANISM, "y,,", b"").is_err());
        assert!(matches!(bound_exchange(None, MECHANISM, "y,,", b""), Ok(Step::Success(_))));
        // Flag and mechanism must agree; PLUS is not offered without TLS; other binding types fail.
        assert!(bound_exchange(Some(&hash), MECHANISM_PLUS, "n,,", b"").is_err());
        assert!(bound_exchange(Some(&hash), MECHANISM, plus, &hash).is_err());
        assert!(bound_exchange(None, MECHANISM_PLUS, plus, &hash).is_err());
        assert!(bound_exchange(Some(&hash), MECHANISM_PLUS, "p=tls-unique,,", &hash).is_err());
        assert!(bound_exchange(Some(&hash), "SCRAM-SHA-1", "n,,", b"").is_err());
    }
}
