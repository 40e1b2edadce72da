//! Who owns each topic and view, and the privileges granted on them (and on the schema
//! `public`): the facts behind `GRANT … ON`, `REVOKE … ON` and `ALTER … OWNER TO`. Deciding what
//! they allow is the engine's; the catalog only keeps them, in the caller's transaction.
//!
//! An object without an owner row (made before ownership was recorded) belongs to the bootstrap
//! superuser. A grant's privileges are PostgreSQL's ACL letters (`r` SELECT, `a` INSERT,
//! `w` UPDATE, `d` DELETE, `C` CREATE).

use rusqlite::{params, Connection};

use crate::{Result, RoleId, TopicId, ViewId};

/// The migration that adds owners and grants.
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE object_owners (
    kind       TEXT NOT NULL,              -- 'topic', 'view'
    object_id  INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    PRIMARY KEY (kind, object_id)
);
CREATE TABLE object_grants (
    kind        TEXT NOT NULL,             -- 'topic', 'view', 'schema' (object 0: public)
    object_id   INTEGER NOT NULL,
    grantee     INTEGER NOT NULL,          -- a role id; 0 is PUBLIC
    privileges  TEXT NOT NULL,             -- ACL letters, never empty
    grantor     INTEGER NOT NULL,
    PRIMARY KEY (kind, object_id, grantee)
);
"#;

/// What privileges and ownership apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectRef {
    Topic(TopicId),
    View(ViewId),
    /// The one schema, `public`.
    PublicSchema,
}

impl ObjectRef {
    fn key(self) -> (&'static str, i64) {
        match self {
            Self::Topic(id) => ("topic", id as i64),
            Self::View(id) => ("view", id as i64),
            Self::PublicSchema => ("schema", 0),
        }
    }

    fn from_key(kind: &str, id: i64) -> Option<Self> {
        match kind {
            "topic" => Some(Self::Topic(id as u64)),
            "view" => Some(Self::View(id as u64)),
            "schema" => Some(Self::PublicSchema),
            _ => None,
        }
    }
}

/// Privileges one role (or PUBLIC) holds on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectGrant {
    pub object: ObjectRef,
    /// `None` is PUBLIC: every role.
    pub grantee: Option<RoleId>,
    /// ACL letters; empty removes the grant.
    pub privileges: String,
    pub grantor: RoleId,
}

/// Every owner and grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    pub owners: Vec<(ObjectRef, RoleId)>,
    pub grants: Vec<ObjectGrant>,
}

pub(crate) fn set_owner(connection: &Connection, object: ObjectRef, owner: RoleId) -> Result<()> {
    let (kind, id) = object.key();
    connection.execute(
        "INSERT INTO object_owners (kind, object_id, role_id) VALUES (?1, ?2, ?3) \
         ON CONFLICT (kind, object_id) DO UPDATE SET role_id = excluded.role_id",
        params![kind, id, owner as i64],
    )?;
    Ok(())
}

pub(crate) fn set_grant(connection: &Connection, grant: &ObjectGrant) -> Result<()> {
    let (kind, id) = grant.object.key();
    let grantee = grant.grantee.map_or(0, |g| g as i64);
    if grant.privileges.is_empty() {
        connection.execute("DELETE FROM object_grants WHERE kind = ?1 AND object_id = ?2 AND grantee = ?3", params![kind, id, grantee])?;
    } else {
        connection.execute(
            "INSERT INTO object_grants (kind, object_id, grantee, privileges, grantor) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (kind, object_id, grantee) DO UPDATE SET privileges = excluded.privileges, grantor = excluded.grantor",
            params![kind, id, grantee, grant.privileges, grant.grantor as i64],
        )?;
    }
    Ok(())
}

/// Forgets an object's owner and grants (it is being dropped).
pub(crate) fn forget(connection: &Connection, object: ObjectRef) -> Result<()> {
    let (kind, id) = object.key();
    connection.execute("DELETE FROM object_owners WHERE kind = ?1 AND object_id = ?2", params![kind, id])?;
    connection.execute("DELETE FROM object_grants WHERE kind = ?1 AND object_id = ?2", params![kind, id])?;
    Ok(())
}

pub(crate) fn list(connection: &Connection) -> Result<AccessList> {
    let mut owners = Vec::new();
    let mut statement = connection.prepare("SELECT kind, object_id, role_id FROM object_owners ORDER BY kind, object_id")?;
    let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
    for row in rows {
        let (kind, id, role) = row?;
        if let Some(object) = ObjectRef::from_key(&kind, id) {
            owners.push((object, role as u64));
        }
    }
    let mut grants = Vec::new();
    let mut statement =
        // In the order they were first granted, as PostgreSQL keeps an ACL.
        connection.prepare("SELECT kind, object_id, grantee, privileges, grantor FROM object_grants ORDER BY kind, object_id, rowid")?;
    let rows = statement.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?))
    })?;
    for row in rows {
        let (kind, id, grantee, privileges, grantor) = row?;
        if let Some(object) = ObjectRef::from_key(&kind, id) {
            let grantee = (grantee != 0).then_some(grantee as u64);
            grants.push(ObjectGrant { object, grantee, privileges, grantor: grantor as u64 });
        }
    }
    Ok(AccessList { owners, grants })
}
