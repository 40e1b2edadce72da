//! Role statements: `CREATE ROLE | USER | GROUP`, `ALTER ROLE`, `DROP ROLE`, `GRANT role TO role`,
//! `REVOKE role FROM role` and `SET ROLE`, parsed into [`RoleStatement`] and carried out against
//! the catalog with PostgreSQL's rules of who may do what.

use datafusion::sql::sqlparser::ast::{self, Expr, RoleOption, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use streamhouse_catalog::{CatalogError, RoleChange, RoleDefinition, RoleMeta};

use super::scram::Verifier;
use super::BOOTSTRAP_SUPERUSER;
use crate::sql::statement::{normalize_ident, word};
use crate::{EngineError, Result};

/// A role statement, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleStatement {
    /// `CREATE ROLE`; `CREATE USER` is the same with `LOGIN` by default.
    Create { name: String, attributes: Attributes },
    Alter { name: String, attributes: Attributes },
    Rename { name: String, to: String },
    Drop { names: Vec<String>, if_exists: bool },
    Grant { roles: Vec<String>, members: Vec<String>, admin_option: bool },
    Revoke { roles: Vec<String>, members: Vec<String> },
    /// `SET ROLE name`; `None` for `SET ROLE NONE`.
    SetRole(Option<String>),
    /// `RESET ROLE`: `SET ROLE NONE` under its own tag.
    ResetRole,
}

/// Role attributes a statement gives; `None` leaves one as it is (or at its default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub superuser: Option<bool>,
    pub login: Option<bool>,
    /// `Some(None)`: `PASSWORD NULL` (or `''`). The password is already a verifier here, so the
    /// statement never carries it further.
    pub password: Option<Option<String>>,
}

fn role_name(token: Option<&&Token>) -> Result<String> {
    match token {
        Some(Token::Word(w)) if w.quote_style.is_none() => Ok(w.value.to_lowercase()),
        Some(Token::Word(w)) => Ok(w.value.clone()),
        Some(other) => Err(EngineError::Syntax(format!("syntax error at or near \"{other}\""))),
        None => Err(EngineError::Syntax("syntax error at end of input: a role name is missing".into())),
    }
}

/// A comma-separated list of role names starting at `tokens[*index]`, up to `until` (a keyword)
/// or the end.
fn role_list(tokens: &[&Token], index: &mut usize, until: Option<&str>) -> Result<Vec<String>> {
    let mut names = vec![role_name(tokens.get(*index))?];
    *index += 1;
    while tokens.get(*index) == Some(&&Token::Comma) {
        names.push(role_name(tokens.get(*index + 1))?);
        *index += 2;
    }
    match (tokens.get(*index), until) {
        (None, _) => Ok(names),
        (Some(t), Some(keyword)) if word(t).as_deref() == Some(keyword) => Ok(names),
        (Some(t), _) => Err(EngineError::Syntax(format!("syntax error at or near \"{t}\""))),
    }
}

/// Parses a role statement from its significant tokens; `sql` is its text (for sqlparser).
/// `None` if the statement is not one.
pub(crate) fn parse(sql: &str, tokens: &[&Token]) -> Result<Option<RoleStatement>> {
    let words: Vec<String> = tokens.iter().take(3).map(|t| word(t).unwrap_or_default()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let statement = match words.as_slice() {
        ["CREATE", kind @ ("ROLE" | "USER" | "GROUP"), ..] => parse_create(sql, *kind == "USER")?,
        ["ALTER", "ROLE" | "USER" | "GROUP", ..] => parse_alter(sql)?,
        ["DROP", "ROLE" | "USER" | "GROUP", ..] => {
            let mut index = 2;
            let if_exists = word(tokens.get(2).copied().unwrap_or(&Token::EOF)).as_deref() == Some("IF");
            if if_exists {
                if word(tokens.get(3).copied().unwrap_or(&Token::EOF)).as_deref() != Some("EXISTS") {
                    return Err(EngineError::Syntax("expected IF EXISTS".into()));
                }
                index = 4;
            }
            RoleStatement::Drop { names: role_list(tokens, &mut index, None)?, if_exists }
        }
        ["GRANT", ..] | ["REVOKE", ..] => return parse_membership(tokens),
        ["SET", "ROLE", ..] | ["SET", "SESSION" | "LOCAL", "ROLE"] => {
            let mut at = if words[1] == "ROLE" { 2 } else { 3 };
            // `SET role = x` and `SET role TO x`, the setting's form, mean the same.
            if matches!(tokens.get(at), Some(Token::Eq)) || tokens.get(at).and_then(|t| word(t)).as_deref() == Some("TO") {
                at += 1;
            }
            match (tokens.get(at), tokens.len() == at + 1) {
                (Some(t), true) if word(t).as_deref() == Some("NONE") => RoleStatement::SetRole(None),
                (Some(Token::SingleQuotedString(name)), true) => RoleStatement::SetRole(Some(name.clone())),
                (t, true) => RoleStatement::SetRole(Some(role_name(t)?)),
                _ => return Err(EngineError::Syntax("expected SET ROLE name or SET ROLE NONE".into())),
            }
        }
        ["RESET", "ROLE"] => RoleStatement::ResetRole,
        _ => return Ok(None),
    };
    Ok(Some(statement))
}

/// `GRANT role [, …] TO role [, …] [WITH ADMIN OPTION]`, `REVOKE role [, …] FROM role [, …]`.
/// Privileges on objects (`GRANT SELECT ON …`) are [`crate::auth::grants`]', parsed first.
fn parse_membership(tokens: &[&Token]) -> Result<Option<RoleStatement>> {
    let grant = word(tokens[0]).as_deref() == Some("GRANT");
    let mut index = 1;
    let roles = role_list(tokens, &mut index, Some(if grant { "TO" } else { "FROM" }))?;
    index += 1;
    let members = role_list(tokens, &mut index, grant.then_some("WITH"))?;
    if !grant {
        return Ok(Some(RoleStatement::Revoke { roles, members }));
    }
    let rest: Vec<String> = tokens[index..].iter().map(|t| word(t).unwrap_or_default()).collect();
    let admin_option = match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => false,
        ["WITH", "ADMIN", "OPTION"] => true,
        _ => return Err(EngineError::Syntax("expected WITH ADMIN OPTION".into())),
    };
    Ok(Some(RoleStatement::Grant { roles, members, admin_option }))
}

fn parse_create(sql: &str, user: bool) -> Result<RoleStatement> {
    // sqlparser reads PostgreSQL's CREATE ROLE; USER and GROUP are the same statement.
    let sql = replace_second_word(sql, "ROLE");
    let statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_statement()?;
    let ast::Statement::CreateRole(create) = statement else {
        return Err(EngineError::Syntax("expected CREATE ROLE name [WITH] options".into()));
    };
    let [name] = create.names.as_slice() else {
        return Err(EngineError::Syntax("CREATE ROLE creates one role".into()));
    };
    let name = match name.0.as_slice() {
        [part] => part.as_ident().map(normalize_ident).unwrap_or_else(|| part.to_string()),
        _ => return Err(EngineError::Syntax(format!("invalid role name \"{name}\""))),
    };
    refuse_unsupported_options(
        create.inherit.is_some_and(|i| !i)
            || create.bypassrls.is_some()
            || create.create_db.is_some()
            || create.create_role.is_some()
            || create.replication.is_some()
            || create.connection_limit.is_some()
            || create.valid_until.is_some()
            || !create.in_role.is_empty()
            || !create.in_group.is_empty()
            || !create.role.is_empty()
            || !create.user.is_empty()
            || !create.admin.is_empty(),
    )?;
    let mut attributes = Attributes { superuser: create.superuser, login: create.login, password: None };
    if user && attributes.login.is_none() {
        attributes.login = Some(true);
    }
    if let Some(password) = &create.password {
        attributes.password = Some(verifier(password)?);
    }
    Ok(RoleStatement::Create { name, attributes })
}

fn parse_alter(sql: &str) -> Result<RoleStatement> {
    let sql = replace_second_word(sql, "ROLE");
    let statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql)?.parse_statement()?;
    let ast::Statement::AlterRole { name, operation } = statement else {
        return Err(EngineError::Syntax("expected ALTER ROLE name [WITH] options".into()));
    };
    let name = normalize_ident(&name);
    match operation {
        ast::AlterRoleOperation::RenameRole { role_name } => Ok(RoleStatement::Rename { name, to: normalize_ident(&role_name) }),
        ast::AlterRoleOperation::WithOptions { options } => {
            let mut attributes = Attributes::default();
            for option in options {
                match option {
                    RoleOption::SuperUser(on) => attributes.superuser = Some(on),
                    RoleOption::Login(on) => attributes.login = Some(on),
                    RoleOption::Password(password) => attributes.password = Some(verifier(&password)?),
                    RoleOption::Inherit(true) => {}
                    _ => refuse_unsupported_options(true)?,
                }
            }
            Ok(RoleStatement::Alter { name, attributes })
        }
        _ => Err(EngineError::NotSupported("ALTER ROLE … SET / RESET (per-role settings)".into())),
    }
}

fn refuse_unsupported_options(any: bool) -> Result<()> {
    if any {
        return Err(EngineError::NotSupported(
            "this role option (roles take SUPERUSER, LOGIN, PASSWORD and INHERIT; use GRANT for memberships)".into(),
        ));
    }
    Ok(())
}

/// `CREATE ROLE x` → `CREATE ROLE x` with the second word replaced (USER, GROUP → ROLE).
fn replace_second_word(sql: &str, with: &str) -> String {
    let trimmed = sql.trim_start();
    let first_end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let rest = trimmed[first_end..].trim_start();
    let second_end = rest.find(|c: char| c.is_whitespace() || c == ';').unwrap_or(rest.len());
    format!("{} {with}{}", &trimmed[..first_end], &rest[second_end..])
}

/// A `PASSWORD` option as what is stored: a SCRAM verifier, or `None` for `NULL` and `''`
/// (PostgreSQL: "empty string is not a valid password, clearing password"). A verifier given as
/// text (`SCRAM-SHA-256$…`, as pg_dump writes) is kept as it is.
fn verifier(password: &ast::Password) -> Result<Option<String>> {
    let text = match password {
        ast::Password::NullPassword => return Ok(None),
        ast::Password::Password(Expr::Value(value)) => match &value.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) | Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => s.clone(),
            Value::Null => return Ok(None),
            _ => return Err(EngineError::Syntax("a password is a string literal".into())),
        },
        ast::Password::Password(_) => return Err(EngineError::Syntax("a password is a string literal".into())),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with("SCRAM-SHA-256$") {
        return match Verifier::parse(&text) {
            Some(verifier) => Ok(Some(verifier.to_string())),
            None => Err(EngineError::InvalidParameter("invalid SCRAM-SHA-256 verifier".into())),
        };
    }
    if text.len() == 35 && text.starts_with("md5") && text[3..].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EngineError::NotSupported(
            "MD5 password hashes (give the password itself, or a SCRAM-SHA-256 verifier)".into(),
        ));
    }
    Ok(Some(Verifier::new(&text).to_string()))
}

/// `42501`, PostgreSQL's `insufficient_privilege`.
pub(crate) fn permission_denied(message: impl Into<String>) -> EngineError {
    EngineError::Sqlstate { code: "42501", message: message.into() }
}

fn catalog_error(error: CatalogError) -> EngineError {
    match error {
        CatalogError::RoleExists(name) => EngineError::Sqlstate { code: "42710", message: format!("role \"{name}\" already exists") },
        CatalogError::RoleNotFound(name) => EngineError::Sqlstate { code: "42704", message: format!("role \"{name}\" does not exist") },
        error @ CatalogError::MembershipCycle { .. } => EngineError::Sqlstate { code: "0LP01", message: error.to_string() },
        other => EngineError::Storage(other.into()),
    }
}

/// Who runs a role statement, as the session knows them.
pub(crate) struct Actor<'a> {
    pub session_user: &'a str,
    pub current_user: &'a str,
}

/// Carries out `statement` for `actor`; returns the command tag, and for `SET ROLE` the role
/// the session now acts as (`Some(None)`: back to the session user).
pub(crate) fn execute(
    catalog: &dyn streamhouse_catalog::Catalog,
    actor: Actor<'_>,
    statement: RoleStatement,
) -> Result<(String, Option<Option<String>>)> {
    let roles = catalog.list_roles().map_err(catalog_error)?;
    let find = |name: &str| roles.iter().find(|r| r.name == name);
    let me = find(actor.current_user).ok_or_else(|| permission_denied(format!("role \"{}\" does not exist", actor.current_user)))?;
    let require_superuser = |what: &str| -> Result<()> {
        if me.superuser {
            Ok(())
        } else {
            Err(permission_denied(format!("permission denied to {what}")))
        }
    };
    let tag = match statement {
        RoleStatement::Create { name, attributes } => {
            require_superuser("create role")?;
            reserved_name(&name)?;
            let definition = RoleDefinition {
                name,
                superuser: attributes.superuser.unwrap_or(false),
                login: attributes.login.unwrap_or(false),
                password: attributes.password.flatten(),
            };
            catalog.create_role(&definition).map_err(catalog_error)?;
            "CREATE ROLE"
        }
        RoleStatement::Alter { name, attributes } => {
            let target = find(&name).ok_or_else(|| catalog_error(CatalogError::RoleNotFound(name.clone())))?;
            // A role may change its own password; everything else is a superuser's.
            let own_password_only = target.id == me.id && attributes.superuser.is_none() && attributes.login.is_none();
            if !own_password_only && !me.superuser {
                return Err(permission_denied(if attributes.superuser.is_some() || target.superuser {
                    "must be superuser to alter superuser roles or change superuser attribute"
                } else {
                    "permission denied"
                }));
            }
            if target.name == BOOTSTRAP_SUPERUSER && (attributes.superuser == Some(false) || attributes.login == Some(false)) {
                return Err(permission_denied("the bootstrap superuser must stay a superuser that can log in"));
            }
            let change = RoleChange { superuser: attributes.superuser, login: attributes.login, password: attributes.password, rename: None };
            catalog.alter_role(&name, &change).map_err(catalog_error)?;
            "ALTER ROLE"
        }
        RoleStatement::Rename { name, to } => {
            require_superuser("rename role")?;
            let target = find(&name).ok_or_else(|| catalog_error(CatalogError::RoleNotFound(name.clone())))?;
            if target.name == actor.session_user || target.name == actor.current_user {
                return Err(EngineError::NotSupported("renaming the role of this session".into()));
            }
            if target.name == BOOTSTRAP_SUPERUSER {
                return Err(permission_denied(format!("the bootstrap superuser \"{BOOTSTRAP_SUPERUSER}\" cannot be renamed")));
            }
            reserved_name(&to)?;
            // PostgreSQL clears an MD5 password on rename (it is salted with the name); a SCRAM
            // verifier does not depend on the name and is kept.
            catalog.alter_role(&name, &RoleChange { rename: Some(to), ..Default::default() }).map_err(catalog_error)?;
            "ALTER ROLE"
        }
        RoleStatement::Drop { names, if_exists } => {
            require_superuser("drop role")?;
            for name in &names {
                let Some(target) = find(name) else {
                    if if_exists {
                        continue;
                    }
                    return Err(catalog_error(CatalogError::RoleNotFound(name.clone())));
                };
                if target.name == actor.current_user {
                    return Err(EngineError::Sqlstate { code: "55006", message: "current user cannot be dropped".into() });
                }
                if target.name == actor.session_user {
                    return Err(EngineError::Sqlstate { code: "55006", message: "session user cannot be dropped".into() });
                }
                if target.name == BOOTSTRAP_SUPERUSER {
                    return Err(EngineError::Sqlstate {
                        code: "2BP01",
                        message: format!("cannot drop role {BOOTSTRAP_SUPERUSER} because it is required by the database system"),
                    });
                }
                // What it owns or was granted would be left to nobody (PostgreSQL: REASSIGN OWNED,
                // DROP OWNED first).
                let access = crate::auth::privileges::Access::load(catalog)?;
                if access.dependents(target.id) > 0 {
                    return Err(EngineError::Sqlstate {
                        code: "2BP01",
                        message: format!("role \"{name}\" cannot be dropped because some objects depend on it"),
                    });
                }
            }
            for name in &names {
                match catalog.drop_role(name) {
                    Ok(_) | Err(CatalogError::RoleNotFound(_)) if if_exists => {}
                    Ok(_) => {}
                    Err(error) => return Err(catalog_error(error)),
                }
            }
            "DROP ROLE"
        }
        RoleStatement::Grant { roles: granted, members, admin_option } => {
            for role in &granted {
                may_administer(catalog, &roles, me, role)?;
                for member in &members {
                    catalog.grant_role(role, member, &me.name, admin_option).map_err(catalog_error)?;
                }
            }
            "GRANT ROLE"
        }
        RoleStatement::Revoke { roles: revoked, members } => {
            for role in &revoked {
                may_administer(catalog, &roles, me, role)?;
                for member in &members {
                    catalog.revoke_role(role, member).map_err(catalog_error)?;
                }
            }
            "REVOKE ROLE"
        }
        RoleStatement::ResetRole => return Ok(("RESET".into(), Some(None))),
        RoleStatement::SetRole(role) => {
            let session = find(actor.session_user)
                .ok_or_else(|| permission_denied(format!("role \"{}\" does not exist", actor.session_user)))?;
            if let Some(name) = &role {
                let target = find(name).ok_or_else(|| catalog_error(CatalogError::RoleNotFound(name.clone())))?;
                if !session.superuser && !is_member(catalog, session, target)? {
                    return Err(permission_denied(format!("permission denied to set role \"{name}\"")));
                }
            }
            return Ok(("SET".into(), Some(role)));
        }
    };
    Ok((tag.to_string(), None))
}

/// PostgreSQL reserves names starting with `pg_` for its own roles, and `public` and `none` mean
/// something else in role lists.
fn reserved_name(name: &str) -> Result<()> {
    if name.starts_with("pg_") {
        return Err(EngineError::Sqlstate {
            code: "42939",
            message: format!("role name \"{name}\" is reserved"),
        });
    }
    if matches!(name, "public" | "none" | "current_user" | "session_user" | "current_role") {
        return Err(EngineError::Sqlstate { code: "42939", message: format!("role name \"{name}\" is reserved") });
    }
    Ok(())
}

/// Whether `member` belongs to `role` (itself included), directly or through other roles.
pub(crate) fn is_member(catalog: &dyn streamhouse_catalog::Catalog, member: &RoleMeta, role: &RoleMeta) -> Result<bool> {
    if member.id == role.id {
        return Ok(true);
    }
    let memberships = catalog.list_memberships().map_err(catalog_error)?;
    let mut reached = vec![member.id];
    let mut index = 0;
    while index < reached.len() {
        let current = reached[index];
        for m in memberships.iter().filter(|m| m.member == current) {
            if m.role == role.id {
                return Ok(true);
            }
            if !reached.contains(&m.role) {
                reached.push(m.role);
            }
        }
        index += 1;
    }
    Ok(false)
}

/// GRANT and REVOKE of `role` need a superuser or the admin option on it.
fn may_administer(catalog: &dyn streamhouse_catalog::Catalog, roles: &[RoleMeta], me: &RoleMeta, role: &str) -> Result<()> {
    if me.superuser {
        return Ok(());
    }
    let target = roles.iter().find(|r| r.name == role).ok_or_else(|| catalog_error(CatalogError::RoleNotFound(role.to_string())))?;
    let memberships = catalog.list_memberships().map_err(catalog_error)?;
    if memberships.iter().any(|m| m.role == target.id && m.member == me.id && m.admin_option) {
        return Ok(());
    }
    Err(permission_denied(format!("must have admin option on role \"{role}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::statement::tokenize;

    fn parsed(sql: &str) -> Result<Option<RoleStatement>> {
        let tokens = tokenize(sql).unwrap();
        let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
        parse(sql, &significant)
    }

    #[test]
    fn role_statements_parse_as_postgresql_reads_them() {
        let Some(RoleStatement::Create { name, attributes }) = parsed("CREATE USER \"Ann\" WITH PASSWORD 'pw' SUPERUSER").unwrap() else {
            panic!()
        };
        assert_eq!((name.as_str(), attributes.superuser, attributes.login), ("Ann", Some(true), Some(true)));
        let verifier = Verifier::parse(attributes.password.flatten().as_deref().unwrap()).unwrap();
        assert!(verifier.check_password("pw"), "the password is kept only as a verifier");
        let Some(RoleStatement::Create { attributes, .. }) = parsed("create role bob").unwrap() else { panic!() };
        assert_eq!(attributes, Attributes::default(), "CREATE ROLE does not log in by default");
        assert_eq!(
            parsed("ALTER ROLE Bob WITH NOLOGIN PASSWORD NULL").unwrap(),
            Some(RoleStatement::Alter { name: "bob".into(), attributes: Attributes { login: Some(false), password: Some(None), superuser: None } })
        );
        assert_eq!(parsed("ALTER USER a RENAME TO b").unwrap(), Some(RoleStatement::Rename { name: "a".into(), to: "b".into() }));
        assert_eq!(
            parsed("DROP ROLE IF EXISTS a, \"B\"").unwrap(),
            Some(RoleStatement::Drop { names: vec!["a".into(), "B".into()], if_exists: true })
        );
        assert_eq!(
            parsed("GRANT staff, admin TO dave WITH ADMIN OPTION").unwrap(),
            Some(RoleStatement::Grant { roles: vec!["staff".into(), "admin".into()], members: vec!["dave".into()], admin_option: true })
        );
        assert_eq!(parsed("REVOKE staff FROM dave, eve").unwrap(), Some(RoleStatement::Revoke { roles: vec!["staff".into()], members: vec!["dave".into(), "eve".into()] }));
        assert_eq!(parsed("SET ROLE staff").unwrap(), Some(RoleStatement::SetRole(Some("staff".into()))));
        assert_eq!(parsed("SET ROLE NONE").unwrap(), Some(RoleStatement::SetRole(None)));
        assert_eq!(parsed("SET role = 'staff'").unwrap(), Some(RoleStatement::SetRole(Some("staff".into()))));
        assert_eq!(parsed("SET SESSION ROLE TO staff").unwrap(), Some(RoleStatement::SetRole(Some("staff".into()))));
        assert_eq!(parsed("RESET ROLE").unwrap(), Some(RoleStatement::ResetRole));
        assert_eq!(parsed("SELECT 1").unwrap(), None);
        for refused in ["CREATE ROLE a CREATEDB", "CREATE ROLE a PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"] {
            assert_eq!(parsed(refused).unwrap_err().sqlstate(), "0A000", "{refused}");
        }
        for wrong in ["GRANT TO dave", "GRANT a TO", "REVOKE a FROM b WITH ADMIN OPTION", "DROP ROLE", "SET ROLE a b"] {
            assert!(parsed(wrong).is_err(), "{wrong}");
        }
    }
}
