//! Privileges on topics, keyed tables and materialized views, and CREATE on the schema `public`,
//! decided as PostgreSQL decides them:
//!
//! - a superuser may do anything;
//! - the owner of an object (its creator, or whom `ALTER … OWNER TO` named) holds every privilege
//!   on it and alone (with superusers) may drop it or grant on it;
//! - any other role holds what was granted to it, to a role it is a member of (roles inherit, as
//!   PostgreSQL's default `INHERIT`), or to PUBLIC;
//! - PostgreSQL 15's default: nobody but superusers and those granted it may CREATE in `public`.
//!
//! A snapshot ([`Access`]) is read from the catalog for each statement that needs one, so a REVOKE
//! takes effect on sessions already open at their next statement. A materialized view's results
//! are stored, so reading one needs SELECT on the view only, not on its sources (its owner needed
//! that to create it).

use std::collections::{BTreeSet, HashMap};

use streamhouse_catalog::{AccessList, Catalog, ObjectGrant, ObjectRef, RoleId, RoleMembership, RoleMeta};

use crate::auth::BOOTSTRAP_SUPERUSER;
use crate::{EngineError, Result};

/// A privilege on a relation (or CREATE on the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Create,
}

/// Every privilege a relation can be granted, in PostgreSQL's ACL order.
pub const RELATION_PRIVILEGES: [Privilege; 4] = [Privilege::Insert, Privilege::Select, Privilege::Update, Privilege::Delete];

impl Privilege {
    /// PostgreSQL's ACL letter.
    pub fn letter(self) -> char {
        match self {
            Self::Select => 'r',
            Self::Insert => 'a',
            Self::Update => 'w',
            Self::Delete => 'd',
            Self::Create => 'C',
        }
    }

    pub fn keyword(self) -> &'static str {
        match self {
            Self::Select => "SELECT",
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Create => "CREATE",
        }
    }

    pub fn from_keyword(word: &str) -> Option<Self> {
        match word.to_ascii_uppercase().as_str() {
            "SELECT" => Some(Self::Select),
            "INSERT" => Some(Self::Insert),
            "UPDATE" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            "CREATE" => Some(Self::Create),
            _ => None,
        }
    }
}

/// What an object is called in PostgreSQL's messages.
pub fn object_word(object: ObjectRef) -> &'static str {
    match object {
        ObjectRef::Topic(_) => "table",
        ObjectRef::View(_) => "materialized view",
        ObjectRef::PublicSchema => "schema",
    }
}

/// `42501 permission denied for table bids`, as PostgreSQL words it.
pub fn permission_denied(object: ObjectRef, name: &str) -> EngineError {
    EngineError::Sqlstate { code: "42501", message: format!("permission denied for {} {name}", object_word(object)) }
}

/// `42501 must be owner of table bids`.
pub fn must_be_owner(object: ObjectRef, name: &str) -> EngineError {
    EngineError::Sqlstate { code: "42501", message: format!("must be owner of {} {name}", object_word(object)) }
}

/// Roles, memberships, owners and grants as the catalog holds them at one moment.
pub struct Access {
    roles: Vec<RoleMeta>,
    memberships: Vec<RoleMembership>,
    owners: HashMap<ObjectRef, RoleId>,
    grants: Vec<ObjectGrant>,
}

fn storage_error(error: streamhouse_catalog::CatalogError) -> EngineError {
    EngineError::Storage(error.into())
}

impl Access {
    pub fn load(catalog: &dyn Catalog) -> Result<Self> {
        let roles = catalog.list_roles().map_err(storage_error)?;
        Self::load_with_roles(catalog, roles)
    }

    /// The snapshot, with the roles already read.
    fn load_with_roles(catalog: &dyn Catalog, roles: Vec<RoleMeta>) -> Result<Self> {
        let memberships = catalog.list_memberships().map_err(storage_error)?;
        let AccessList { owners, grants } = catalog.access_list().map_err(storage_error)?;
        Ok(Self { roles, memberships, owners: owners.into_iter().collect(), grants })
    }

    pub fn role(&self, name: &str) -> Option<&RoleMeta> {
        self.roles.iter().find(|r| r.name == name)
    }

    fn role_by_id(&self, id: RoleId) -> Option<&RoleMeta> {
        self.roles.iter().find(|r| r.id == id)
    }

    pub fn is_superuser(&self, name: &str) -> bool {
        self.role(name).is_some_and(|r| r.superuser)
    }

    /// `role` and every role it is a member of, directly or through others.
    fn effective_roles(&self, role: RoleId) -> BTreeSet<RoleId> {
        let mut roles = BTreeSet::from([role]);
        let mut frontier = vec![role];
        while let Some(member) = frontier.pop() {
            for membership in self.memberships.iter().filter(|m| m.member == member) {
                if roles.insert(membership.role) {
                    frontier.push(membership.role);
                }
            }
        }
        roles
    }

    /// Whether `member` belongs to `role` (is it, or a member of it, directly or not).
    pub fn is_member(&self, member: RoleId, role: RoleId) -> bool {
        self.effective_roles(member).contains(&role)
    }

    /// The owner of `object`: recorded, or the bootstrap superuser.
    pub fn owner(&self, object: ObjectRef) -> Option<&RoleMeta> {
        match self.owners.get(&object) {
            Some(&id) => self.role_by_id(id),
            None => self.role(BOOTSTRAP_SUPERUSER),
        }
    }

    /// Whether `role` may act as `object`'s owner: a superuser, the owner, or a member of it.
    pub fn owns(&self, role: &str, object: ObjectRef) -> bool {
        let Some(meta) = self.role(role) else { return false };
        if meta.superuser {
            return true;
        }
        self.owner(object).is_some_and(|owner| self.effective_roles(meta.id).contains(&owner.id))
    }

    /// Whether `role` holds `privilege` on `object`.
    pub fn has(&self, role: &str, object: ObjectRef, privilege: Privilege) -> bool {
        if self.owns(role, object) {
            return true;
        }
        let Some(meta) = self.role(role) else { return false };
        let effective = self.effective_roles(meta.id);
        self.grants.iter().any(|grant| {
            grant.object == object
                && grant.grantee.is_none_or(|grantee| effective.contains(&grantee))
                && grant.privileges.contains(privilege.letter())
        })
    }

    /// The privileges `grantee` (`None`: PUBLIC) holds on `object` by a direct grant.
    pub fn granted(&self, object: ObjectRef, grantee: Option<RoleId>) -> String {
        self.grants.iter().find(|g| g.object == object && g.grantee == grantee).map(|g| g.privileges.clone()).unwrap_or_default()
    }

    /// Fails with `42501` unless `role` holds `privilege` on `object` (called `name`).
    pub fn require(&self, role: &str, object: ObjectRef, name: &str, privilege: Privilege) -> Result<()> {
        if self.has(role, object, privilege) {
            Ok(())
        } else {
            Err(permission_denied(object, name))
        }
    }

    /// The object's ACL in PostgreSQL's text form (`pg_class.relacl`): `None` while nothing was
    /// granted (the owner's default), else the owner's entry then each grant's, e.g.
    /// `["streamhouse=arwdDxt/streamhouse", "alice=r/streamhouse", "=r/streamhouse"]`.
    pub fn acl(&self, object: ObjectRef) -> Option<Vec<String>> {
        let grants: Vec<&ObjectGrant> = self.grants.iter().filter(|g| g.object == object).collect();
        if grants.is_empty() {
            return None;
        }
        let name_of = |id: RoleId| self.role_by_id(id).map_or_else(|| id.to_string(), |r| r.name.clone());
        let owner = self.owner(object).map(|r| r.name.clone()).unwrap_or_default();
        // PostgreSQL shows the owner's implicit privileges once the ACL is not the default; a
        // relation's owner also holds TRUNCATE, REFERENCES and TRIGGER there.
        let mut items = vec![format!("{owner}=arwdDxt/{owner}")];
        for grant in grants {
            let grantee = grant.grantee.map(name_of).unwrap_or_default();
            let letters: String = RELATION_PRIVILEGES.iter().map(|p| p.letter()).filter(|l| grant.privileges.contains(*l)).collect();
            items.push(format!("{grantee}={letters}/{}", name_of(grant.grantor)));
        }
        Some(items)
    }

    /// `nspacl` of `public` as PostgreSQL 15 shows it: its owner's `UC`, everyone's `U`, and each
    /// `GRANT CREATE ON SCHEMA public` (`C`).
    pub fn public_schema_acl(&self, owner: &str) -> Vec<String> {
        let name_of = |id: RoleId| self.role_by_id(id).map_or_else(|| id.to_string(), |r| r.name.clone());
        let mut items = vec![format!("{owner}=UC/{owner}"), format!("=U/{owner}")];
        for grant in self.grants.iter().filter(|g| g.object == ObjectRef::PublicSchema) {
            items.push(format!("{}=C/{}", grant.grantee.map(name_of).unwrap_or_default(), name_of(grant.grantor)));
        }
        items
    }

    /// Objects `role` owns or holds a grant on (DROP ROLE refuses while there are any).
    pub fn dependents(&self, role: RoleId) -> usize {
        self.owners.values().filter(|&&owner| owner == role).count()
            + self.grants.iter().filter(|g| g.grantee == Some(role) || g.grantor == role).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(id: RoleId, name: &str, superuser: bool) -> RoleMeta {
        RoleMeta { id, name: name.into(), superuser, login: true, password: None, created_ms: 0 }
    }

    fn access() -> Access {
        let topic = ObjectRef::Topic(1);
        Access {
            roles: vec![role(1, "streamhouse", true), role(2, "alice", false), role(3, "staff", false), role(4, "bob", false), role(5, "eve", false)],
            // bob is in staff; staff owns nothing but was granted SELECT.
            memberships: vec![RoleMembership { role: 3, member: 4, grantor: 1, admin_option: false }],
            owners: HashMap::from([(topic, 2)]),
            grants: vec![
                ObjectGrant { object: topic, grantee: Some(3), privileges: "r".into(), grantor: 2 },
                ObjectGrant { object: ObjectRef::View(7), grantee: None, privileges: "r".into(), grantor: 1 },
            ],
        }
    }

    #[test]
    fn owners_members_grants_and_public_decide_as_postgresql_does() {
        let access = access();
        let topic = ObjectRef::Topic(1);
        assert!(access.owns("alice", topic) && access.owns("streamhouse", topic) && !access.owns("bob", topic));
        assert!(access.has("alice", topic, Privilege::Delete), "the owner holds everything");
        assert!(access.has("bob", topic, Privilege::Select), "through staff");
        assert!(!access.has("bob", topic, Privilege::Insert));
        assert!(!access.has("eve", topic, Privilege::Select));
        assert!(access.has("eve", ObjectRef::View(7), Privilege::Select), "granted to PUBLIC");
        assert!(!access.has("ghost", ObjectRef::View(7), Privilege::Select), "a role that does not exist holds nothing");
        assert_eq!(access.owner(ObjectRef::View(7)).map(|r| r.name.as_str()), Some("streamhouse"), "unrecorded: the bootstrap superuser");
        let error = access.require("eve", topic, "bids", Privilege::Select).unwrap_err();
        assert_eq!((error.sqlstate(), error.to_string().as_str()), ("42501", "permission denied for table bids"));
        assert_eq!(access.acl(topic).unwrap(), ["alice=arwdDxt/alice", "staff=r/alice"]);
        assert_eq!(access.acl(ObjectRef::View(8)), None);
        assert_eq!((access.dependents(2), access.dependents(3), access.dependents(5)), (2, 1, 0));
    }
}

/// The relations a plan reads (SELECT) and writes (INSERT), by name, subqueries included.
/// Scans of `pg_catalog` and `information_schema` need nothing.
pub fn plan_needs(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<(String, Privilege)> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::{LogicalPlan, WriteOp};
    let mut needs = Vec::new();
    let public = |reference: &datafusion::common::TableReference| reference.schema().is_none_or(|s| s == "public");
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) if public(&scan.table_name) => needs.push((scan.table_name.table().to_string(), Privilege::Select)),
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) && public(&dml.table_name) => {
                needs.push((dml.table_name.table().to_string(), Privilege::Insert))
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    needs.sort();
    needs.dedup();
    needs
}

impl crate::Engine {
    /// The topic or view called `name`, as privileges name it.
    pub fn object_of(&self, name: &str) -> Option<ObjectRef> {
        if let Some(view) = self.views().get(name) {
            return Some(ObjectRef::View(view.meta.id));
        }
        self.storage().topic(name).map(|topic| ObjectRef::Topic(topic.id()))
    }

    /// Roles, memberships, owners and grants as they are now.
    pub fn access(&self) -> Result<Access> {
        Access::load(self.storage().catalog().as_ref())
    }

    /// Fails with `42501` unless `role` holds each privilege on each named relation (one that
    /// does not exist is left to the statement to report).
    pub fn authorize(&self, role: &str, needs: &[(String, Privilege)]) -> Result<()> {
        if needs.is_empty() {
            return Ok(());
        }
        for (name, privilege) in needs {
            if *privilege != Privilege::Select {
                if let Some(refusal) = crate::auth::audit::refuse_change(name, privilege.keyword()) {
                    return Err(refusal);
                }
            }
        }
        // A superuser (most sessions of a quickstart) costs one read of the roles.
        let roles = self.storage().catalog().list_roles().map_err(storage_error)?;
        if roles.iter().any(|r| r.name == role && r.superuser) {
            return Ok(());
        }
        let access = Access::load_with_roles(self.storage().catalog().as_ref(), roles)?;
        for (name, privilege) in needs {
            let object = match privilege {
                Privilege::Create => Some(ObjectRef::PublicSchema),
                _ => self.object_of(name),
            };
            if let Some(object) = object {
                access.require(role, object, name, *privilege)?;
            }
        }
        Ok(())
    }

    /// Fails with `42501 must be owner of …` unless `role` may act as the owner of `name`.
    pub fn authorize_owner(&self, role: &str, name: &str) -> Result<()> {
        if let Some(refusal) = crate::auth::audit::refuse_change(name, "DROP") {
            return Err(refusal);
        }
        let Some(object) = self.object_of(name) else { return Ok(()) };
        if self.access()?.owns(role, object) {
            Ok(())
        } else {
            Err(must_be_owner(object, name))
        }
    }

    /// Records `role` as the owner of the relation `name` just created.
    pub fn record_owner(&self, role: &str, name: &str) -> Result<()> {
        let catalog = self.storage().catalog();
        let Some(object) = self.object_of(name) else { return Ok(()) };
        let roles = catalog.list_roles().map_err(storage_error)?;
        let Some(owner) = roles.iter().find(|r| r.name == role) else { return Ok(()) };
        catalog.set_owner(object, owner.id).map_err(storage_error)
    }
}

/// PostgreSQL's `has_table_privilege(role, table, privileges)`: whether `role` holds any of the
/// comma-separated `privileges` (`SELECT`, `INSERT`, `UPDATE`, `DELETE`; `TRUNCATE`,
/// `REFERENCES` and `TRIGGER` only an owner holds; `… WITH GRANT OPTION` likewise) on `table`.
pub fn has_table_privilege(engine: &crate::Engine, access: &Access, role: &str, table: &str, privileges: &str) -> Result<bool> {
    if access.role(role).is_none() {
        return Err(EngineError::Sqlstate { code: "42704", message: format!("role \"{role}\" does not exist") });
    }
    // `bids`, `public.bids`, `"public"."bids"`: a name as PostgreSQL reads it.
    let name = match crate::pg_functions::parse_ident(table)?.as_slice() {
        [name] => name.clone(),
        [schema, name] if schema == "public" => name.clone(),
        _ => return Err(EngineError::UndefinedTable(table.to_string())),
    };
    let object = engine.object_of(&name).ok_or_else(|| EngineError::UndefinedTable(table.to_string()))?;
    let mut any = false;
    for wanted in privileges.split(',') {
        let wanted = wanted.trim().to_ascii_uppercase();
        let (keyword, grant_option) = match wanted.strip_suffix(" WITH GRANT OPTION") {
            Some(keyword) => (keyword.trim().to_string(), true),
            None => (wanted.clone(), false),
        };
        let holds = match Privilege::from_keyword(&keyword) {
            Some(privilege @ (Privilege::Select | Privilege::Insert | Privilege::Update | Privilege::Delete)) if !grant_option => {
                access.has(role, object, privilege)
            }
            Some(Privilege::Select | Privilege::Insert | Privilege::Update | Privilege::Delete) => access.owns(role, object),
            _ if matches!(keyword.as_str(), "TRUNCATE" | "REFERENCES" | "TRIGGER") => access.owns(role, object),
            _ => return Err(EngineError::Sqlstate { code: "22023", message: format!("unrecognized privilege type: \"{}\"", wanted.trim()) }),
        };
        any |= holds;
    }
    Ok(any)
}

/// PostgreSQL's `has_schema_privilege(role, schema, privileges)`: `USAGE` of `public`,
/// `pg_catalog` and `information_schema` is everyone's; `CREATE` in `public` is the superusers'
/// (through [`Access::has`]) and the grantees' of `GRANT CREATE ON SCHEMA public` (nobody may
/// create in the other two).
pub fn has_schema_privilege(access: &Access, role: &str, schema: &str, privileges: &str) -> Result<bool> {
    if access.role(role).is_none() {
        return Err(EngineError::UndefinedObject(format!("role \"{role}\" does not exist")));
    }
    if !["public", "pg_catalog", "information_schema"].contains(&schema) {
        return Err(EngineError::Sqlstate { code: "3F000", message: format!("schema \"{schema}\" does not exist") });
    }
    let mut any = false;
    for wanted in privileges.split(',') {
        let keyword = wanted.trim().to_ascii_uppercase();
        any |= match keyword.strip_suffix(" WITH GRANT OPTION").map(str::trim).unwrap_or(&keyword) {
            "USAGE" => true,
            "CREATE" => schema == "public" && access.has(role, ObjectRef::PublicSchema, Privilege::Create),
            _ => return Err(EngineError::InvalidParameter(format!("unrecognized privilege type: \"{}\"", wanted.trim()))),
        };
    }
    Ok(any)
}
