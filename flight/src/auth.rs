//! Who a Flight request is: the same roles and rules as the Postgres protocol, in Flight's
//! way of carrying them.
//!
//! - `authorization: Basic base64(user:password)` (what pyarrow's `authenticate_basic_token` and
//!   ADBC's `username`/`password` options send with `Handshake`): the password is checked against
//!   the role's SCRAM verifier, and the handshake answers with `authorization: Bearer <token>`,
//!   which the client sends on every later call (checking a password costs PBKDF2's 4096
//!   rounds; a token costs a map lookup). Basic is accepted on any call too.
//! - A client certificate under mutual TLS names its role (its common name) without a password.
//! - No credentials: from loopback under `loopback-trust`, the request runs as the superuser
//!   `streamhouse`, as before Flight authenticated (the quickstart); from anywhere else it is
//!   refused with `UNAUTHENTICATED`.
//!
//! A password crosses the network only over TLS or from loopback (or with `--auth password`),
//! as [`Engine::check_password`] decides. Tokens live in memory: a restart or their expiry makes
//! the client authenticate again.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use streamhouse_engine::auth::audit::{AuditEntry, AuditKind, Client};
use streamhouse_engine::auth::tls::{common_name, TlsSession};
use streamhouse_engine::auth::{random_hex, BOOTSTRAP_SUPERUSER};
use streamhouse_engine::{Engine, EngineError};
use tonic::{Request, Status};

/// The role a request runs as, put in its extensions once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub role: String,
    /// Where the request came from, and its client's `user-agent`, for the audit trail.
    pub client: Client,
    pub application_name: String,
}

impl Principal {
    /// An audit entry of this principal's.
    pub(crate) fn audit_entry(&self, kind: AuditKind, detail: String) -> AuditEntry {
        AuditEntry::of_user(kind, &self.role, self.client.clone(), &self.application_name, detail)
    }
}

/// The role of an authenticated request (every request passes [`Tokens::authenticate`] first).
pub(crate) fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request.extensions().get::<Principal>().cloned().ok_or_else(|| Status::unauthenticated("the request was not authenticated"))
}

/// How long a failed authentication waits before it is answered (as on the Postgres port).
const FAILURE_DELAY: Duration = Duration::from_millis(200);

/// Bearer tokens handed out by `Handshake`.
#[derive(Debug)]
pub(crate) struct Tokens {
    by_token: Mutex<HashMap<String, Issued>>,
    lifetime: Duration,
    count_max: usize,
}

#[derive(Debug, Clone)]
struct Issued {
    role: String,
    expires: Instant,
}

fn unauthenticated(message: impl Into<String>) -> Status {
    Status::unauthenticated(message.into())
}

impl Tokens {
    pub(crate) fn new(lifetime: Duration, count_max: usize) -> Self {
        Self { by_token: Mutex::new(HashMap::new()), lifetime, count_max }
    }

    /// A new token for `role`. Past `count_max` live tokens the expired ones are dropped, then
    /// the one expiring first.
    pub(crate) fn issue(&self, role: &str) -> String {
        let token = random_hex(32);
        let now = Instant::now();
        let mut tokens = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= self.count_max {
            tokens.retain(|_, issued| issued.expires > now);
            if tokens.len() >= self.count_max {
                if let Some(oldest) = tokens.iter().min_by_key(|(_, issued)| issued.expires).map(|(token, _)| token.clone()) {
                    tokens.remove(&oldest);
                }
            }
        }
        tokens.insert(token.clone(), Issued { role: role.to_string(), expires: now + self.lifetime });
        token
    }

    fn role_of(&self, token: &str) -> Option<String> {
        let mut tokens = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(token) {
            Some(issued) if issued.expires > Instant::now() => Some(issued.role.clone()),
            Some(_) => {
                tokens.remove(token);
                None
            }
            None => None,
        }
    }

    /// Decides who `request` is and records it in its extensions. `Ok(true)` when it proved a
    /// password (a handshake then issues a token).
    pub(crate) async fn authenticate<T>(&self, engine: &std::sync::Arc<Engine>, tls_on: bool, request: &mut Request<T>) -> Result<bool, Status> {
        let peer = request.remote_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let client = Client { address: peer.to_canonical().to_string(), protocol: "flight" };
        let application_name = request.metadata().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let entry = |kind, user: &str, detail: String| AuditEntry::of_user(kind, user, client.clone(), &application_name, detail);
        let claimed = claimed_user(request);
        let (role, proved) = match self.identify(engine, tls_on, peer, request).await {
            Ok(identified) => identified,
            Err(status) => {
                engine.audit(entry(AuditKind::LoginFailed, &claimed, status.message().to_string())).await;
                return Err(status);
            }
        };
        // The role must (still) exist and may log in.
        if let Err(error) = engine.login_role(&role) {
            engine.audit(entry(AuditKind::LoginFailed, &role, format!("{}: {error}", error.sqlstate()))).await;
            return Err(match error {
                EngineError::Sqlstate { message, .. } => unauthenticated(message),
                other => crate::status::engine_status(&other),
            });
        }
        // A password proved is a login; a token, certificate or trusted address on each call is
        // not (a Handshake with them is recorded by the handshake).
        if proved {
            engine.audit_login(entry(AuditKind::Login, &role, "basic authentication".into())).await;
        }
        request.extensions_mut().insert(Principal { role, client, application_name });
        Ok(proved)
    }

    /// Who the request says it is and whether it proved a password.
    async fn identify<T>(&self, engine: &std::sync::Arc<Engine>, tls_on: bool, peer: IpAddr, request: &Request<T>) -> Result<(String, bool), Status> {
        let certificate_role = request.peer_certs().and_then(|chain| chain.first().and_then(|leaf| common_name(leaf)));
        let tls = tls_on.then(|| TlsSession { certificate_role: certificate_role.clone(), channel_binding: None });
        let header = request.metadata().get("authorization").map(|v| v.to_str().map(str::to_string));
        let (role, proved) = match header {
            Some(Err(_)) => return Err(unauthenticated("the authorization header is not text")),
            Some(Ok(value)) => match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    let role = self.role_of(token.trim()).ok_or_else(|| {
                        unauthenticated("the bearer token is unknown or expired (tokens do not outlive a restart): authenticate again with Handshake")
                    })?;
                    (role, false)
                }
                Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
                    let (user, password) = basic_credentials(encoded.trim())?;
                    let checked = {
                        let (engine, user, tls) = (engine.clone(), user.clone(), tls.clone());
                        // PBKDF2 takes milliseconds: off the request threads.
                        tokio::task::spawn_blocking(move || engine.check_password(&user, &password, peer, tls.as_ref()))
                            .await
                            .map_err(|e| Status::internal(format!("password check failed: {e}")))?
                    };
                    if let Err(error) = checked {
                        tokio::time::sleep(FAILURE_DELAY).await;
                        return Err(unauthenticated(error.to_string()));
                    }
                    (user, true)
                }
                _ => return Err(unauthenticated("unknown authorization scheme: use Basic (user and password) or Bearer (a Handshake's token)")),
            },
            None => match certificate_role {
                Some(role) => (role, false),
                None => match engine.challenge(BOOTSTRAP_SUPERUSER, peer, tls.as_ref()) {
                    streamhouse_engine::auth::Challenge::Trusted => (BOOTSTRAP_SUPERUSER.to_string(), false),
                    _ => {
                        tokio::time::sleep(FAILURE_DELAY).await;
                        return Err(unauthenticated(
                            "Arrow Flight needs credentials from this address: a user and password (basic authentication with Handshake), then its bearer token",
                        ));
                    }
                },
            },
        };
        Ok((role, proved))
    }
}

/// The user a request names, for the audit entry of a failure: the Basic credential's user, or
/// `streamhouse` when it names none (what a request without credentials would run as).
fn claimed_user<T>(request: &Request<T>) -> String {
    let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
    match header.and_then(|value| value.split_once(' ')) {
        Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
            basic_credentials(encoded.trim()).map(|(user, _)| user).unwrap_or_default()
        }
        _ => BOOTSTRAP_SUPERUSER.to_string(),
    }
}

/// `user:password` from a Basic credential.
fn basic_credentials(encoded: &str) -> Result<(String, String), Status> {
    let malformed = || unauthenticated("malformed basic credentials: expected base64 of user:password");
    // Padded (pyarrow) or not (the Go Flight client under ADBC).
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const EITHER: GeneralPurpose =
        GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));
    let decoded = EITHER.decode(encoded).map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    if user.is_empty() {
        return Err(unauthenticated("no user name in the basic credentials"));
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_role_until_they_expire_and_the_table_stays_bounded() {
        let tokens = Tokens::new(Duration::from_secs(60), 2);
        let (a, b) = (tokens.issue("alice"), tokens.issue("bob"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(tokens.role_of(&a).as_deref(), Some("alice"));
        assert_eq!(tokens.role_of("not a token"), None);
        let c = tokens.issue("carol");
        assert_eq!(tokens.role_of(&a), None, "past count_max the first to expire goes");
        assert_eq!((tokens.role_of(&b).as_deref(), tokens.role_of(&c).as_deref()), (Some("bob"), Some("carol")));
        let short = Tokens::new(Duration::ZERO, 10);
        let token = short.issue("alice");
        assert_eq!(short.role_of(&token), None, "an expired token names no one");
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(basic_credentials(&encode("alice:pa:ss")).unwrap(), ("alice".into(), "pa:ss".into()));
        assert_eq!(basic_credentials(&encode("alice:")).unwrap(), ("alice".into(), String::new()));
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("alice:pw");
        assert_eq!(basic_credentials(&unpadded).unwrap(), ("alice".into(), "pw".into()));
        for bad in [encode("alice"), encode(":pw"), String::from("%%%")] {
            assert_eq!(basic_credentials(&bad).unwrap_err().code(), tonic::Code::Unauthenticated);
        }
    }
}
