//! Roles and memberships in the SQLite catalog: the statements behind the role methods of
//! [`crate::Catalog`], each run inside the caller's transaction.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{CatalogError, Result, RoleChange, RoleDefinition, RoleMembership, RoleMeta};

/// The migration that adds roles.
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE roles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    superuser   INTEGER NOT NULL,
    login       INTEGER NOT NULL,
    password    TEXT,                      -- a SCRAM-SHA-256 verifier, never a password
    created_ms  INTEGER NOT NULL
);
CREATE TABLE role_members (
    role_id      INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    member_id    INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    grantor_id   INTEGER NOT NULL,
    admin_option INTEGER NOT NULL,
    PRIMARY KEY (role_id, member_id)
);
"#;

const COLUMNS: &str = "id, name, superuser, login, password, created_ms";

fn read_role(row: &Row<'_>) -> rusqlite::Result<RoleMeta> {
    Ok(RoleMeta {
        id: row.get::<_, i64>(0)? as u64,
        name: row.get(1)?,
        superuser: row.get(2)?,
        login: row.get(3)?,
        password: row.get(4)?,
        created_ms: row.get(5)?,
    })
}

fn role_named(connection: &Connection, name: &str) -> Result<RoleMeta> {
    connection
        .query_row(&format!("SELECT {COLUMNS} FROM roles WHERE name = ?1"), [name], read_role)
        .optional()?
        .ok_or_else(|| CatalogError::RoleNotFound(name.to_string()))
}

pub(crate) fn create(connection: &Connection, definition: &RoleDefinition, created_ms: i64) -> Result<RoleMeta> {
    let taken: Option<i64> =
        connection.query_row("SELECT id FROM roles WHERE name = ?1", [&definition.name], |r| r.get(0)).optional()?;
    if taken.is_some() {
        return Err(CatalogError::RoleExists(definition.name.clone()));
    }
    connection.execute(
        "INSERT INTO roles (name, superuser, login, password, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![definition.name, definition.superuser, definition.login, definition.password, created_ms],
    )?;
    role_named(connection, &definition.name)
}

pub(crate) fn alter(connection: &Connection, name: &str, change: &RoleChange) -> Result<RoleMeta> {
    let mut role = role_named(connection, name)?;
    if let Some(new_name) = &change.rename {
        if new_name != name && role_named(connection, new_name).is_ok() {
            return Err(CatalogError::RoleExists(new_name.clone()));
        }
        role.name = new_name.clone();
    }
    role.superuser = change.superuser.unwrap_or(role.superuser);
    role.login = change.login.unwrap_or(role.login);
    if let Some(password) = &change.password {
        role.password = password.clone();
    }
    connection.execute(
        "UPDATE roles SET name = ?2, superuser = ?3, login = ?4, password = ?5 WHERE id = ?1",
        params![role.id as i64, role.name, role.superuser, role.login, role.password],
    )?;
    Ok(role)
}

pub(crate) fn drop(connection: &Connection, name: &str) -> Result<RoleMeta> {
    let role = role_named(connection, name)?;
    connection.execute("DELETE FROM role_members WHERE role_id = ?1 OR member_id = ?1", [role.id as i64])?;
    connection.execute("DELETE FROM roles WHERE id = ?1", [role.id as i64])?;
    Ok(role)
}

pub(crate) fn list(connection: &Connection) -> Result<Vec<RoleMeta>> {
    let mut statement = connection.prepare(&format!("SELECT {COLUMNS} FROM roles ORDER BY name"))?;
    let roles = statement.query_map([], read_role)?.collect::<rusqlite::Result<_>>()?;
    Ok(roles)
}

pub(crate) fn grant(connection: &Connection, role: &str, member: &str, grantor: &str, admin_option: bool) -> Result<bool> {
    let (role_meta, member_meta, grantor_meta) =
        (role_named(connection, role)?, role_named(connection, member)?, role_named(connection, grantor)?);
    // `member` may not be `role` itself or any role `role` already belongs to, directly or not.
    let reaches_member: bool = connection.query_row(
        "WITH RECURSIVE above(id) AS (SELECT ?1 UNION SELECT m.role_id FROM role_members m JOIN above a ON m.member_id = a.id) \
         SELECT EXISTS (SELECT 1 FROM above WHERE id = ?2)",
        params![role_meta.id as i64, member_meta.id as i64],
        |r| r.get(0),
    )?;
    if reaches_member {
        return Err(CatalogError::MembershipCycle { role: role.to_string(), member: member.to_string() });
    }
    let ids = params![role_meta.id as i64, member_meta.id as i64];
    let existing: Option<bool> = connection
        .query_row("SELECT admin_option FROM role_members WHERE role_id = ?1 AND member_id = ?2", ids, |r| r.get(0))
        .optional()?;
    if existing.is_some() {
        if admin_option {
            connection.execute("UPDATE role_members SET admin_option = 1 WHERE role_id = ?1 AND member_id = ?2", ids)?;
        }
        return Ok(false);
    }
    connection.execute(
        "INSERT INTO role_members (role_id, member_id, grantor_id, admin_option) VALUES (?1, ?2, ?3, ?4)",
        params![role_meta.id as i64, member_meta.id as i64, grantor_meta.id as i64, admin_option],
    )?;
    Ok(true)
}

pub(crate) fn revoke(connection: &Connection, role: &str, member: &str) -> Result<bool> {
    let (role_meta, member_meta) = (role_named(connection, role)?, role_named(connection, member)?);
    let deleted = connection.execute(
        "DELETE FROM role_members WHERE role_id = ?1 AND member_id = ?2",
        params![role_meta.id as i64, member_meta.id as i64],
    )?;
    Ok(deleted > 0)
}

pub(crate) fn memberships(connection: &Connection) -> Result<Vec<RoleMembership>> {
    let mut statement = connection
        .prepare("SELECT role_id, member_id, grantor_id, admin_option FROM role_members ORDER BY role_id, member_id")?;
    let rows = statement.query_map([], |row| {
        Ok(RoleMembership {
            role: row.get::<_, i64>(0)? as u64,
            member: row.get::<_, i64>(1)? as u64,
            grantor: row.get::<_, i64>(2)? as u64,
            admin_option: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use crate::{Catalog, CatalogError, RoleChange, RoleDefinition, SqliteCatalog};

    fn role(name: &str) -> RoleDefinition {
        RoleDefinition { name: name.into(), superuser: false, login: true, password: None }
    }

    #[test]
    fn roles_survive_reopen_and_renames_keep_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let alice = {
            let catalog = SqliteCatalog::open(&path).unwrap();
            let alice = catalog.create_role(&role("alice")).unwrap();
            assert!(matches!(catalog.create_role(&role("alice")), Err(CatalogError::RoleExists(_))));
            let change = RoleChange { password: Some(Some("SCRAM-SHA-256$x".into())), login: Some(false), ..Default::default() };
            catalog.alter_role("alice", &change).unwrap();
            alice
        };
        let catalog = SqliteCatalog::open(&path).unwrap();
        let roles = catalog.list_roles().unwrap();
        assert_eq!(roles.len(), 1);
        assert_eq!((roles[0].id, roles[0].login, roles[0].password.as_deref()), (alice.id, false, Some("SCRAM-SHA-256$x")));
        catalog.create_role(&role("bob")).unwrap();
        let rename = RoleChange { rename: Some("bob".into()), ..Default::default() };
        assert!(matches!(catalog.alter_role("alice", &rename), Err(CatalogError::RoleExists(_))));
        let rename = RoleChange { rename: Some("carol".into()), password: Some(None), ..Default::default() };
        let carol = catalog.alter_role("alice", &rename).unwrap();
        assert_eq!((carol.id, carol.password), (alice.id, None));
        assert!(matches!(catalog.drop_role("alice"), Err(CatalogError::RoleNotFound(_))));
    }

    #[test]
    fn memberships_refuse_cycles_and_go_with_their_roles() {
        let catalog = SqliteCatalog::open_in_memory().unwrap();
        for name in ["admin", "staff", "dave"] {
            catalog.create_role(&role(name)).unwrap();
        }
        assert!(catalog.grant_role("staff", "dave", "admin", false).unwrap());
        assert!(catalog.grant_role("admin", "staff", "admin", false).unwrap());
        assert!(!catalog.grant_role("staff", "dave", "admin", true).unwrap(), "already a member");
        // dave ∈ staff ∈ admin: admin may not become a member of dave, nor a role of itself.
        for (role, member) in [("dave", "admin"), ("dave", "staff"), ("admin", "admin")] {
            match catalog.grant_role(role, member, "admin", false) {
                Err(CatalogError::MembershipCycle { role: r, member: m }) => assert_eq!((r.as_str(), m.as_str()), (role, member)),
                other => panic!("{role} to {member}: {other:?}"),
            }
        }
        let memberships = catalog.list_memberships().unwrap();
        assert_eq!(memberships.len(), 2);
        assert!(memberships.iter().any(|m| m.admin_option), "the second grant added the admin option");
        catalog.drop_role("staff").unwrap();
        assert!(catalog.list_memberships().unwrap().is_empty());
        assert!(!catalog.revoke_role("admin", "dave").unwrap());
    }
}
