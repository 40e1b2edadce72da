//! The statements that give and take privileges and ownership: `GRANT … ON`, `REVOKE … ON` and
//! `ALTER {TOPIC | TABLE | MATERIALIZED VIEW} name OWNER TO role`, parsed from their tokens.

use datafusion::sql::sqlparser::tokenizer::Token;

use crate::auth::privileges::{Privilege, RELATION_PRIVILEGES};
use crate::sql::statement::word;
use crate::{EngineError, Result};

/// Who receives or loses privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Public,
    Role(String),
}

/// What a GRANT or REVOKE is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objects {
    /// Named relations (topics, keyed tables, materialized views).
    Relations(Vec<String>),
    /// `ALL TABLES | TOPICS | MATERIALIZED VIEWS IN SCHEMA public`: every relation there now.
    AllInSchema,
    /// `SCHEMA public` (CREATE).
    Schema,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeStatement {
    Grant { privileges: Vec<Privilege>, objects: Objects, grantees: Vec<Grantee> },
    Revoke { privileges: Vec<Privilege>, objects: Objects, grantees: Vec<Grantee> },
    AlterOwner { relation: String, owner: String },
}

fn syntax(token: Option<&&Token>) -> EngineError {
    match token {
        Some(t) => EngineError::Syntax(format!("syntax error at or near \"{t}\"")),
        None => EngineError::Syntax("syntax error at end of input".into()),
    }
}

fn not_supported(what: &str) -> EngineError {
    EngineError::NotSupported(what.into())
}

/// An identifier as PostgreSQL folds it: unquoted lowercased, quoted as written.
fn identifier(token: Option<&&Token>) -> Result<String> {
    match token {
        Some(Token::Word(w)) if w.quote_style.is_none() => Ok(w.value.to_lowercase()),
        Some(Token::Word(w)) => Ok(w.value.clone()),
        other => Err(syntax(other)),
    }
}

/// Tokens read left to right.
struct Cursor<'a> {
    tokens: &'a [&'a Token],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek_word(&self) -> Option<String> {
        self.tokens.get(self.at).and_then(|t| word(t))
    }

    fn eat(&mut self, keyword: &str) -> bool {
        if self.peek_word().as_deref() == Some(keyword) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, keyword: &str) -> Result<()> {
        if self.eat(keyword) {
            Ok(())
        } else {
            Err(syntax(self.tokens.get(self.at)))
        }
    }

    fn eat_comma(&mut self) -> bool {
        if self.tokens.get(self.at) == Some(&&Token::Comma) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// A relation name, `name` or `public.name`.
    fn relation(&mut self) -> Result<String> {
        let first = identifier(self.tokens.get(self.at))?;
        self.at += 1;
        if self.tokens.get(self.at) != Some(&&Token::Period) {
            return Ok(first);
        }
        if first != "public" {
            return Err(EngineError::Sqlstate { code: "3F000", message: format!("schema \"{first}\" does not exist") });
        }
        self.at += 1;
        let name = identifier(self.tokens.get(self.at))?;
        self.at += 1;
        Ok(name)
    }

    fn done(&self) -> Result<()> {
        match self.tokens.get(self.at) {
            None => Ok(()),
            Some(Token::SemiColon) if self.at + 1 == self.tokens.len() => Ok(()),
            other => Err(syntax(other)),
        }
    }
}

/// Parses a privilege statement; `None` if the tokens are not one (a role GRANT, another ALTER).
pub(crate) fn parse(tokens: &[&Token]) -> Result<Option<PrivilegeStatement>> {
    let words: Vec<String> = tokens.iter().map(|t| word(t).unwrap_or_default()).collect();
    let mut cursor = Cursor { tokens, at: 1 };
    match words.first().map(String::as_str) {
        Some("GRANT" | "REVOKE") if words.iter().any(|w| w == "ON") => {}
        Some("ALTER") if words.len() >= 3 && words[words.len() - 3] == "OWNER" && words[words.len() - 2] == "TO" => {
            match (cursor.peek_word().as_deref(), words.get(2).map(String::as_str)) {
                (Some("TOPIC" | "TABLE"), _) => cursor.at += 1,
                (Some("MATERIALIZED"), Some("VIEW")) => cursor.at += 2,
                _ => return Ok(None),
            }
            let relation = cursor.relation()?;
            cursor.expect("OWNER")?;
            cursor.expect("TO")?;
            let owner = identifier(tokens.get(cursor.at))?;
            cursor.at += 1;
            cursor.done()?;
            return Ok(Some(PrivilegeStatement::AlterOwner { relation, owner }));
        }
        _ => return Ok(None),
    }
    let grant = words[0] == "GRANT";
    if !grant && cursor.eat("GRANT") {
        return Err(not_supported("REVOKE GRANT OPTION FOR (grant options are not kept: only owners and superusers grant)"));
    }
    let privileges = privilege_list(&mut cursor)?;
    cursor.expect("ON")?;
    let objects = objects(&mut cursor)?;
    match (&objects, privileges.iter().any(|p| *p == Privilege::Create)) {
        (Objects::Schema, _) if privileges != [Privilege::Create] => {
            return Err(EngineError::Sqlstate { code: "0LP01", message: "invalid privilege type for schema: only CREATE is kept".into() })
        }
        (Objects::Relations(_) | Objects::AllInSchema, true) => {
            return Err(EngineError::Sqlstate { code: "0LP01", message: "invalid privilege type CREATE for table".into() })
        }
        _ => {}
    }
    cursor.expect(if grant { "TO" } else { "FROM" })?;
    let mut grantees = Vec::new();
    loop {
        if cursor.eat("PUBLIC") {
            grantees.push(Grantee::Public);
        } else {
            grantees.push(Grantee::Role(identifier(tokens.get(cursor.at))?));
            cursor.at += 1;
        }
        if !cursor.eat_comma() {
            break;
        }
    }
    if grant && cursor.eat("WITH") {
        return Err(not_supported("WITH GRANT OPTION (grant options are not kept: only owners and superusers grant)"));
    }
    if !grant && !cursor.eat("RESTRICT") && cursor.eat("CASCADE") {
        // Without grant options nothing depends on a grant: CASCADE changes nothing.
    }
    cursor.done()?;
    Ok(Some(if grant {
        PrivilegeStatement::Grant { privileges, objects, grantees }
    } else {
        PrivilegeStatement::Revoke { privileges, objects, grantees }
    }))
}

fn privilege_list(cursor: &mut Cursor<'_>) -> Result<Vec<Privilege>> {
    if cursor.eat("ALL") {
        cursor.eat("PRIVILEGES");
        // ALL on a schema is CREATE (and USAGE, which every role has here).
        return Ok(match cursor.tokens.get(cursor.at + 1).and_then(|t| word(t)).as_deref() {
            Some("SCHEMA") => vec![Privilege::Create],
            _ => RELATION_PRIVILEGES.to_vec(),
        });
    }
    let mut privileges = Vec::new();
    loop {
        let keyword = cursor.peek_word().unwrap_or_default();
        let privilege = match Privilege::from_keyword(&keyword) {
            Some(privilege) => privilege,
            None if matches!(keyword.as_str(), "TRUNCATE" | "REFERENCES" | "TRIGGER" | "USAGE" | "TEMPORARY" | "CONNECT" | "EXECUTE") => {
                return Err(not_supported(&format!("the {keyword} privilege (kept: SELECT, INSERT, UPDATE, DELETE, and CREATE on the schema)")))
            }
            None => return Err(syntax(cursor.tokens.get(cursor.at))),
        };
        cursor.at += 1;
        if !privileges.contains(&privilege) {
            privileges.push(privilege);
        }
        if !cursor.eat_comma() {
            return Ok(privileges);
        }
    }
}

fn objects(cursor: &mut Cursor<'_>) -> Result<Objects> {
    if cursor.eat("SCHEMA") {
        let schema = identifier(cursor.tokens.get(cursor.at))?;
        cursor.at += 1;
        if schema != "public" {
            return Err(EngineError::Sqlstate { code: "3F000", message: format!("schema \"{schema}\" does not exist") });
        }
        return Ok(Objects::Schema);
    }
    if cursor.eat("ALL") {
        match cursor.peek_word().as_deref() {
            Some("TABLES" | "TOPICS") => cursor.at += 1,
            Some("MATERIALIZED") => {
                cursor.at += 1;
                cursor.expect("VIEWS")?;
            }
            _ => return Err(syntax(cursor.tokens.get(cursor.at))),
        }
        cursor.expect("IN")?;
        cursor.expect("SCHEMA")?;
        let schema = identifier(cursor.tokens.get(cursor.at))?;
        cursor.at += 1;
        if schema != "public" {
            return Err(EngineError::Sqlstate { code: "3F000", message: format!("schema \"{schema}\" does not exist") });
        }
        return Ok(Objects::AllInSchema);
    }
    if !cursor.eat("TABLE") && !cursor.eat("TOPIC") && cursor.eat("MATERIALIZED") {
        cursor.expect("VIEW")?;
    }
    let mut names = vec![cursor.relation()?];
    while cursor.eat_comma() {
        names.push(cursor.relation()?);
    }
    Ok(Objects::Relations(names))
}

fn catalog_error(error: streamhouse_catalog::CatalogError) -> EngineError {
    EngineError::Storage(error.into())
}

fn undefined_role(name: &str) -> EngineError {
    EngineError::Sqlstate { code: "42704", message: format!("role \"{name}\" does not exist") }
}

/// Runs a privilege statement as `current_user`; its command tag.
pub(crate) fn execute(engine: &crate::Engine, current_user: &str, statement: PrivilegeStatement) -> Result<String> {
    use streamhouse_catalog::{ObjectGrant, ObjectRef};
    let access = engine.access()?;
    let catalog = engine.storage().catalog();
    let me = access.role(current_user).ok_or_else(|| undefined_role(current_user))?;
    let (grant, privileges, objects, grantees) = match statement {
        PrivilegeStatement::AlterOwner { relation, owner } => {
            if let Some(refusal) = crate::auth::audit::refuse_change(&relation, "ALTER … OWNER TO") {
                return Err(refusal);
            }
            let object = engine.object_of(&relation).ok_or_else(|| EngineError::UndefinedTable(relation.clone()))?;
            if !access.owns(current_user, object) {
                return Err(crate::auth::privileges::must_be_owner(object, &relation));
            }
            let new_owner = access.role(&owner).ok_or_else(|| undefined_role(&owner))?;
            // A non-superuser may only give what it owns to a role it could act as.
            if !me.superuser && !access.is_member(me.id, new_owner.id) {
                return Err(EngineError::Sqlstate { code: "42501", message: format!("must be member of role \"{owner}\"") });
            }
            catalog.set_owner(object, new_owner.id).map_err(catalog_error)?;
            return Ok(match object {
                ObjectRef::View(_) => "ALTER MATERIALIZED VIEW",
                _ => "ALTER TABLE",
            }
            .into());
        }
        PrivilegeStatement::Grant { privileges, objects, grantees } => (true, privileges, objects, grantees),
        PrivilegeStatement::Revoke { privileges, objects, grantees } => (false, privileges, objects, grantees),
    };
    let targets: Vec<(ObjectRef, String)> = match objects {
        Objects::Schema => vec![(ObjectRef::PublicSchema, "public".to_string())],
        Objects::AllInSchema => {
            engine.relations().into_iter().filter_map(|r| engine.object_of(&r.name).map(|object| (object, r.name))).collect()
        }
        Objects::Relations(names) => names
            .into_iter()
            .map(|name| match crate::auth::audit::refuse_change(&name, if grant { "GRANT" } else { "REVOKE" }) {
                Some(refusal) => Err(refusal),
                None => Ok(name),
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .map(|name| engine.object_of(&name).map(|object| (object, name.clone())).ok_or(EngineError::UndefinedTable(name)))
            .collect::<Result<_>>()?,
    };
    let grantee_ids: Vec<Option<streamhouse_catalog::RoleId>> = grantees
        .iter()
        .map(|grantee| match grantee {
            Grantee::Public => Ok(None),
            Grantee::Role(name) => access.role(name).map(|r| Some(r.id)).ok_or_else(|| undefined_role(name)),
        })
        .collect::<Result<_>>()?;
    // Only owners (and superusers) grant: grant options are not kept. As in PostgreSQL, a
    // superuser's grant is recorded as the owner's.
    for (object, name) in &targets {
        if !access.owns(current_user, *object) {
            return Err(crate::auth::privileges::permission_denied(*object, name));
        }
    }
    for (object, _) in &targets {
        let grantor = access.owner(*object).map_or(me.id, |owner| owner.id);
        for grantee in &grantee_ids {
            let held = access.granted(*object, *grantee);
            let letters: String = RELATION_PRIVILEGES
                .iter()
                .chain(&[Privilege::Create])
                .map(|p| p.letter())
                .filter(|letter| {
                    let asked = privileges.iter().any(|p| p.letter() == *letter);
                    if grant { held.contains(*letter) || asked } else { held.contains(*letter) && !asked }
                })
                .collect();
            catalog.set_grant(&ObjectGrant { object: *object, grantee: *grantee, privileges: letters, grantor }).map_err(catalog_error)?;
        }
    }
    Ok(if grant { "GRANT" } else { "REVOKE" }.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn parsed(sql: &str) -> Result<Option<PrivilegeStatement>> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().unwrap();
        let significant: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
        parse(&significant)
    }

    #[test]
    fn grants_revokes_and_owner_changes_read_as_postgresql_writes_them() {
        use Privilege::*;
        let role = |name: &str| Grantee::Role(name.into());
        assert_eq!(
            parsed("GRANT SELECT, INSERT ON TABLE bids, public.\"Asks\" TO alice, PUBLIC").unwrap(),
            Some(PrivilegeStatement::Grant {
                privileges: vec![Select, Insert],
                objects: Objects::Relations(vec!["bids".into(), "Asks".into()]),
                grantees: vec![role("alice"), Grantee::Public],
            })
        );
        assert_eq!(
            parsed("revoke all privileges on all tables in schema public from Bob cascade").unwrap(),
            Some(PrivilegeStatement::Revoke { privileges: RELATION_PRIVILEGES.to_vec(), objects: Objects::AllInSchema, grantees: vec![role("bob")] })
        );
        assert_eq!(
            parsed("GRANT CREATE ON SCHEMA public TO alice").unwrap(),
            Some(PrivilegeStatement::Grant { privileges: vec![Create], objects: Objects::Schema, grantees: vec![role("alice")] })
        );
        assert_eq!(
            parsed("GRANT UPDATE ON MATERIALIZED VIEW v TO alice").unwrap(),
            Some(PrivilegeStatement::Grant { privileges: vec![Update], objects: Objects::Relations(vec!["v".into()]), grantees: vec![role("alice")] })
        );
        assert_eq!(
            parsed("ALTER MATERIALIZED VIEW v OWNER TO alice").unwrap(),
            Some(PrivilegeStatement::AlterOwner { relation: "v".into(), owner: "alice".into() })
        );
        assert_eq!(parsed("GRANT staff TO alice").unwrap(), None, "a membership is a role statement");
        assert_eq!(parsed("ALTER TOPIC t SET (retention = '1d')").unwrap(), None);
        for refused in ["GRANT SELECT ON t TO a WITH GRANT OPTION", "GRANT TRUNCATE ON t TO a", "REVOKE GRANT OPTION FOR SELECT ON t FROM a"] {
            assert_eq!(parsed(refused).unwrap_err().sqlstate(), "0A000", "{refused}");
        }
        for (wrong, state) in [
            ("GRANT SELECT ON t", "42601"),
            ("GRANT SELECT ON t TO", "42601"),
            ("GRANT SELECT ON other.t TO a", "3F000"),
            ("GRANT SELECT ON SCHEMA public TO a", "0LP01"),
            ("GRANT CREATE ON t TO a", "0LP01"),
            ("GRANT SELECT ON t TO a b", "42601"),
        ] {
            assert_eq!(parsed(wrong).unwrap_err().sqlstate(), state, "{wrong}");
        }
    }
}
