//! Who a client is: roles (in the catalog), how a connection proves it is one, and the superuser
//! the first start creates.
//!
//! Where authentication applies is PostgreSQL's `pg_hba.conf` kept to one setting,
//! [`AuthMethod`]: by default connections from a loopback address are trusted (the role must
//! exist and may log in, nothing more) and every other connection proves its password with
//! SCRAM-SHA-256; `scram` asks it of every connection; `password` takes a cleartext password
//! (for clients without SCRAM), checked against the same stored verifier.
//!
//! Over TLS ([`tls`]) two more facts count: a client certificate verified against the configured
//! authority logs its common name in without a password (PostgreSQL's `cert` method; it must be
//! the user name asked for), and SCRAM is offered with channel binding. With `tls_required`,
//! a connection from another host that did not start TLS is refused.

pub mod audit;
pub(crate) mod audit_function;
pub mod grants;
pub mod privileges;
pub mod roles;
pub mod scram;
pub mod tls;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use streamhouse_catalog::{Catalog, RoleChange, RoleDefinition, RoleMeta};

use crate::{Engine, EngineError, Result};
pub use scram::{ServerExchange, Step, Verifier};

/// The superuser the first start creates. Like PostgreSQL's bootstrap superuser it has OID 10,
/// owns every object, and cannot be dropped, renamed or lose its superuser or login attribute.
pub const BOOTSTRAP_SUPERUSER: &str = "streamhouse";
/// Where the first start writes the superuser's generated password (mode 0600), in the data
/// directory, when none was configured.
pub const SUPERUSER_PASSWORD_FILE: &str = "superuser-password";
/// The bootstrap superuser's OID, as in PostgreSQL.
pub const BOOTSTRAP_SUPERUSER_OID: i64 = 10;
/// Other roles' OIDs are this plus their id: far above the OIDs of topics and views
/// (16384 + 2 × id), so an OID names one object of any kind.
const ROLE_OID_BASE: i64 = 1 << 30;

/// A role's OID.
pub fn role_oid(role: &RoleMeta) -> i64 {
    if role.name == BOOTSTRAP_SUPERUSER {
        BOOTSTRAP_SUPERUSER_OID
    } else {
        ROLE_OID_BASE + role.id as i64
    }
}

/// How connections prove which role they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// Loopback connections are trusted; every other one uses SCRAM-SHA-256.
    #[default]
    LoopbackTrust,
    /// SCRAM-SHA-256 for every connection.
    Scram,
    /// A cleartext password for every connection (only for clients that cannot do SCRAM; the
    /// password crosses the network as it is unless the connection is encrypted).
    Password,
}

impl std::str::FromStr for AuthMethod {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "loopback-trust" => Ok(Self::LoopbackTrust),
            "scram" | "scram-sha-256" => Ok(Self::Scram),
            "password" => Ok(Self::Password),
            other => Err(format!("unknown authentication method \"{other}\" (expected loopback-trust, scram or password)")),
        }
    }
}

/// A secret from the configuration: never printed, also not by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// What a connection must do before its session starts.
pub enum Challenge {
    /// Nothing (a trusted address).
    Trusted,
    /// The SCRAM-SHA-256 exchange; for an unknown role or one without a password it runs on a
    /// mock verifier and fails at the end, like a wrong password.
    Scram(ServerExchange),
    /// A cleartext password, checked against this verifier (`None`: no role or no password, so
    /// any password fails).
    Password(Option<Verifier>),
    /// None may prove it: refuse with this error (a plain connection where TLS is required, a
    /// client certificate for another role).
    Refused(EngineError),
}

/// `bytes` random bytes from the system's secure generator, as hex digits (generated passwords,
/// Flight's bearer tokens).
pub fn random_hex(bytes: usize) -> String {
    hex(&scram::random_bytes(bytes))
}

/// Bytes as lower-case hex digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first decision about a client, before any protocol.
enum Admission {
    Trusted,
    Refused(EngineError),
    /// It must prove its password against this verifier (`None`: no such role or no password).
    Prove(Option<Verifier>),
}

/// A statement's text as it may be logged: one that may carry a password (`CREATE ROLE …
/// PASSWORD '…'`) is not.
pub fn loggable(sql: &str) -> &str {
    if sql.to_ascii_lowercase().contains("password") {
        "<a statement that may carry a password, not logged>"
    } else {
        sql
    }
}

/// The error for a failed authentication: the same for a wrong password and an unknown role.
pub fn authentication_failed(user: &str) -> EngineError {
    EngineError::Sqlstate { code: "28P01", message: format!("password authentication failed for user \"{user}\"") }
}

impl Engine {
    /// What a client from `peer` that says it is `user` must do, before any protocol: be
    /// refused, be let in, or prove its password. `tls` is what its TLS handshake established,
    /// `None` for a plain connection.
    fn admission(&self, user: &str, peer: IpAddr, tls: Option<&tls::TlsSession>) -> Admission {
        let loopback = peer.to_canonical().is_loopback();
        if tls.is_none() && self.config().tls_required && !loopback {
            tracing::warn!(user, %peer, "a connection without TLS from another host refused (tls_required)");
            return Admission::Refused(EngineError::Sqlstate {
                code: "28000",
                message: format!("connection from host \"{peer}\" without TLS refused: this server requires TLS from other hosts (connect with sslmode=require or stronger)"),
            });
        }
        if let Some(certified) = tls.and_then(|t| t.certificate_role.as_deref()) {
            if certified == user {
                return Admission::Trusted;
            }
            tracing::warn!(user, certified, %peer, "the client certificate names another role");
            return Admission::Refused(EngineError::Sqlstate {
                code: "28000",
                message: format!("certificate authentication failed for user \"{user}\""),
            });
        }
        if self.config().auth == AuthMethod::LoopbackTrust && loopback {
            return Admission::Trusted;
        }
        let verifier = match self.storage().catalog().list_roles() {
            Ok(roles) => roles.into_iter().find(|r| r.name == user).and_then(|r| r.password).and_then(|p| Verifier::parse(&p)),
            Err(error) => {
                tracing::warn!(%error, "cannot read roles; the login fails");
                None
            }
        };
        Admission::Prove(verifier)
    }

    /// What a connection from `peer` that says it is `user` must do to prove it; `tls` is what
    /// its TLS handshake established, `None` for a plain connection.
    pub fn challenge(&self, user: &str, peer: IpAddr, tls: Option<&tls::TlsSession>) -> Challenge {
        match self.admission(user, peer, tls) {
            Admission::Trusted => Challenge::Trusted,
            Admission::Refused(error) => Challenge::Refused(error),
            Admission::Prove(verifier) if self.config().auth == AuthMethod::Password => Challenge::Password(verifier),
            Admission::Prove(verifier) => {
                let seed = [self.mock_secret(), user.as_bytes()].concat();
                let binding = tls.and_then(|t| t.channel_binding.clone());
                Challenge::Scram(ServerExchange::new(verifier, &seed, binding))
            }
        }
    }

    /// Checks a password a protocol without SCRAM carries as it is (Arrow Flight's basic
    /// authentication): under the same rules as [`Engine::challenge`], and only where the password
    /// cannot be read on the way — over TLS, from loopback, or where `--auth password` accepts
    /// cleartext anyway. `Err` is the error to report (log the reason first).
    pub fn check_password(&self, user: &str, password: &str, peer: IpAddr, tls: Option<&tls::TlsSession>) -> Result<()> {
        match self.admission(user, peer, tls) {
            Admission::Trusted => Ok(()),
            Admission::Refused(error) => Err(error),
            Admission::Prove(_) if tls.is_none() && !peer.to_canonical().is_loopback() && self.config().auth != AuthMethod::Password => {
                tracing::warn!(user, %peer, "a password sent in the clear from another host refused");
                Err(EngineError::Sqlstate {
                    code: "28000",
                    message: "a password may not cross the network in the clear: connect with TLS (the server needs --tls-cert), or set --auth password".into(),
                })
            }
            Admission::Prove(verifier) => {
                // An unknown role costs the same hashing as a known one, so timing tells nothing.
                let known = verifier.is_some();
                let seed = [self.mock_secret(), user.as_bytes()].concat();
                let verifier = verifier.unwrap_or_else(|| Verifier::mock(&seed));
                if verifier.check_password(password) && known {
                    return Ok(());
                }
                let reason = if known { "wrong password" } else { "the role does not exist or has no password" };
                tracing::warn!(user, %peer, reason, "password authentication failed");
                Err(authentication_failed(user))
            }
        }
    }

    /// The role `user` if it may log in: `28000` otherwise (after authentication, as PostgreSQL).
    pub fn login_role(&self, user: &str) -> Result<RoleMeta> {
        let roles = self.storage().catalog().list_roles().map_err(|e| EngineError::Storage(e.into()))?;
        let role = roles.into_iter().find(|r| r.name == user).ok_or_else(|| EngineError::Sqlstate {
            code: "28000",
            message: format!("role \"{user}\" does not exist"),
        })?;
        if !role.login {
            return Err(EngineError::Sqlstate { code: "28000", message: format!("role \"{user}\" is not permitted to log in") });
        }
        Ok(role)
    }
}

/// Makes sure the bootstrap superuser exists. On the first start (no role yet) it is created
/// with `password`, or with a generated one written to [`SUPERUSER_PASSWORD_FILE`] (mode 0600),
/// whose path is returned. On later starts a configured `password` replaces the superuser's
/// (the way to reset a lost one).
pub(crate) fn bootstrap(catalog: &dyn Catalog, password: Option<&Secret>, data_dir: &Path) -> Result<Option<PathBuf>> {
    let storage_error = |e: streamhouse_catalog::CatalogError| EngineError::Storage(e.into());
    let roles = catalog.list_roles().map_err(storage_error)?;
    if roles.iter().any(|r| r.name == BOOTSTRAP_SUPERUSER) {
        if let Some(password) = password {
            let change = RoleChange { password: Some(Some(Verifier::new(&password.0).to_string())), ..Default::default() };
            catalog.alter_role(BOOTSTRAP_SUPERUSER, &change).map_err(storage_error)?;
        }
        return Ok(None);
    }
    let (password, written) = match password {
        Some(password) => (password.0.clone(), None),
        None => {
            let generated = random_hex(16);
            let path = data_dir.join(SUPERUSER_PASSWORD_FILE);
            write_private(&path, &format!("{generated}\n")).map_err(|source| {
                EngineError::Internal(format!("cannot write the superuser's password to {}: {source}", path.display()))
            })?;
            (generated, Some(path))
        }
    };
    let definition = RoleDefinition {
        name: BOOTSTRAP_SUPERUSER.into(),
        superuser: true,
        login: true,
        password: Some(Verifier::new(&password).to_string()),
    };
    catalog.create_role(&definition).map_err(storage_error)?;
    Ok(written)
}

/// Writes `text` to a new file only its owner can read, synced before the role that it is the
/// password of is recorded.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamhouse_catalog::SqliteCatalog;

    #[test]
    fn the_first_start_creates_the_superuser_with_a_private_generated_password() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let catalog = SqliteCatalog::open_in_memory().unwrap();
        let path = bootstrap(&catalog, None, dir.path()).unwrap().expect("a generated password");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let password = std::fs::read_to_string(&path).unwrap();
        let role = catalog.list_roles().unwrap().remove(0);
        assert!((role.superuser, role.login) == (true, true) && role_oid(&role) == 10);
        let verifier = Verifier::parse(role.password.as_deref().unwrap()).unwrap();
        assert!(verifier.check_password(password.trim()));
        assert!(!role.password.unwrap().contains(password.trim()), "only a verifier is stored");
        // A later start leaves it, unless a password is configured: then it is reset.
        assert_eq!(bootstrap(&catalog, None, dir.path()).unwrap(), None);
        assert_eq!(bootstrap(&catalog, Some(&Secret("new one".into())), dir.path()).unwrap(), None);
        let role = catalog.list_roles().unwrap().remove(0);
        assert!(Verifier::parse(role.password.as_deref().unwrap()).unwrap().check_password("new one"));
    }

    #[test]
    fn methods_are_read_by_their_names_and_secrets_are_not_printed() {
        assert_eq!("scram".parse::<AuthMethod>(), Ok(AuthMethod::Scram));
        assert_eq!("loopback-trust".parse::<AuthMethod>(), Ok(AuthMethod::LoopbackTrust));
        assert!("trust".parse::<AuthMethod>().is_err(), "trusting every address is not offered");
        assert_eq!(format!("{:?}", Some(Secret("hunter2".into()))), "Some(<secret>)");
    }
}
