//! PostgreSQL's system catalog as DataFusion tables, made from ours when a query names them, so
//! the catalog queries tools send (psql's `\dt`, drivers' table lists) are planned like any
//! query instead of being matched as text.
//!
//! Every topic, keyed table and materialized view has a stable OID: `16384 + 2 × topic id` for a
//! topic or keyed table (`relkind` `r`), `16385 + 2 × view id` for a view (`relkind` `m`); ids
//! are never reused, so neither are OIDs. Everything lives in the `public` namespace (OID 2200)
//! and is owned by the role [`OWNER`] (OID 10, PostgreSQL's bootstrap superuser).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;

use streamhouse_catalog::RoleMeta;

use crate::auth::role_oid;
use crate::pg_types::{oid, pg_type, pg_type_table, PG_CATALOG_NAMESPACE};
use crate::{Engine, Result};

/// The role that owns every relation.
pub const OWNER: &str = crate::auth::BOOTSTRAP_SUPERUSER;
/// The owner's OID.
pub const OWNER_OID: i64 = crate::auth::BOOTSTRAP_SUPERUSER_OID;
/// `public`'s OID, as in PostgreSQL.
pub const PUBLIC_NAMESPACE: i64 = 2200;
/// The first OID PostgreSQL gives user objects.
const FIRST_USER_OID: i64 = 16384;
/// OIDs of memberships in `pg_auth_members` start here (role id × 2^16 + member id above it).
const MEMBERSHIP_OID_BASE: i64 = 1 << 31;
/// `heap`, the access method of a table in `pg_am`.
const HEAP_AM: i64 = 2;

/// A topic's (or keyed table's) OID.
pub fn topic_oid(topic_id: u64) -> i64 {
    FIRST_USER_OID + 2 * topic_id as i64
}

/// A materialized view's OID.
pub fn view_oid(view_id: u64) -> i64 {
    FIRST_USER_OID + 1 + 2 * view_id as i64
}

/// One relation as `pg_class` and `pg_attribute` describe it.
struct Relation {
    oid: i64,
    name: String,
    kind: &'static str,
    schema: SchemaRef,
    keyed: bool,
    /// The owner's OID (`relowner`).
    owner: i64,
    /// `relacl`: `None` while the owner's default privileges apply.
    acl: Option<Vec<String>>,
}

fn relations(engine: &Engine) -> Result<Vec<Relation>> {
    use streamhouse_catalog::ObjectRef;
    let access = engine.access()?;
    let owner = |object| access.owner(object).map_or(OWNER_OID, crate::auth::role_oid);
    let mut relations: Vec<Relation> = engine
        .listed_topics()
        .iter()
        .map(|topic| Relation {
            oid: topic_oid(topic.id()),
            name: topic.name().to_string(),
            kind: "r",
            schema: topic.schema().clone(),
            keyed: topic.is_keyed(),
            owner: owner(ObjectRef::Topic(topic.id())),
            acl: access.acl(ObjectRef::Topic(topic.id())),
        })
        .collect();
    relations.extend(engine.views().list().iter().map(|view| Relation {
        oid: view_oid(view.meta.id),
        name: view.meta.name.clone(),
        kind: "m",
        schema: view.schema.clone(),
        keyed: false,
        owner: owner(ObjectRef::View(view.meta.id)),
        acl: access.acl(ObjectRef::View(view.meta.id)),
    }));
    relations.sort_by_key(|r| r.oid);
    Ok(relations)
}

/// Columns of a catalog table, built a column at a time.
struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    fn new() -> Self {
        Self { fields: Vec::new(), arrays: Vec::new() }
    }

    fn add(mut self, name: &str, array: ArrayRef) -> Self {
        self.fields.push(Field::new(name, array.data_type().clone(), true));
        self.arrays.push(array);
        self
    }

    fn int64(self, name: &str, values: impl IntoIterator<Item = i64>) -> Self {
        self.add(name, Arc::new(Int64Array::from_iter_values(values)))
    }

    fn int32(self, name: &str, values: impl IntoIterator<Item = i32>) -> Self {
        self.add(name, Arc::new(Int32Array::from_iter_values(values)))
    }

    fn int16(self, name: &str, values: impl IntoIterator<Item = i16>) -> Self {
        self.add(name, Arc::new(Int16Array::from_iter_values(values)))
    }

    fn text<S: AsRef<str>>(self, name: &str, values: impl IntoIterator<Item = S>) -> Self {
        self.add(name, Arc::new(StringArray::from_iter_values(values)))
    }

    fn null_text(self, name: &str, rows: usize) -> Self {
        self.add(name, Arc::new(StringArray::from(vec![None::<&str>; rows])))
    }

    /// A `text[]` column of NULLs (`reloptions`: no options are set).
    fn null_text_array(self, name: &str, rows: usize) -> Self {
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        self.add(name, arrow::array::new_null_array(&DataType::List(item), rows))
    }

    /// A `text[]` column, NULL where a row has `None`.
    fn text_array(self, name: &str, values: impl IntoIterator<Item = Option<Vec<String>>>) -> Self {
        use arrow::array::{ListBuilder, StringBuilder};
        let mut builder = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new("item", DataType::Utf8, true)));
        for value in values {
            builder.append_option(value.map(|items| items.into_iter().map(Some)));
        }
        self.add(name, Arc::new(builder.finish()))
    }

    fn boolean(self, name: &str, values: impl IntoIterator<Item = bool>) -> Self {
        self.add(name, Arc::new(BooleanArray::from(values.into_iter().collect::<Vec<_>>())))
    }

    fn batch(self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(Arc::new(Schema::new(self.fields)), self.arrays)?)
    }
}

fn pg_class(relations: &[Relation]) -> Result<RecordBatch> {
    let rows = relations.len();
    let each = |value: i64| std::iter::repeat_n(value, rows);
    let flag = |value: bool| std::iter::repeat_n(value, rows);
    let letter = |value: &'static str| std::iter::repeat_n(value, rows);
    Columns::new()
        .int64("oid", relations.iter().map(|r| r.oid))
        .text("relname", relations.iter().map(|r| r.name.as_str()))
        .int64("relnamespace", each(PUBLIC_NAMESPACE))
        .int64("reltype", each(0))
        .int64("reloftype", each(0))
        .int64("relowner", relations.iter().map(|r| r.owner))
        .int64("relam", relations.iter().map(|r| if r.kind == "r" { HEAP_AM } else { 0 }))
        .int64("relfilenode", relations.iter().map(|r| r.oid))
        .int64("reltablespace", each(0))
        .int32("relpages", relations.iter().map(|_| 0))
        .add("reltuples", Arc::new(Float32Array::from(vec![-1.0f32; rows])))
        .int64("reltoastrelid", each(0))
        .boolean("relhasindex", relations.iter().map(|r| r.keyed))
        .boolean("relisshared", flag(false))
        .text("relpersistence", letter("p"))
        .text("relkind", relations.iter().map(|r| r.kind))
        .int16("relnatts", relations.iter().map(|r| r.schema.fields().len() as i16))
        .int16("relchecks", relations.iter().map(|_| 0))
        .boolean("relhasrules", flag(false))
        .boolean("relhastriggers", flag(false))
        .boolean("relhassubclass", flag(false))
        .boolean("relrowsecurity", flag(false))
        .boolean("relforcerowsecurity", flag(false))
        .boolean("relispopulated", flag(true))
        .text("relreplident", letter("d"))
        .boolean("relispartition", flag(false))
        .text_array("relacl", relations.iter().map(|r| r.acl.clone()))
        .null_text_array("reloptions", rows)
        .null_text("relpartbound", rows)
        .batch()
}

fn pg_attribute(relations: &[Relation]) -> Result<RecordBatch> {
    let columns: Vec<(&Relation, usize, &Field)> = relations
        .iter()
        .flat_map(|r| r.schema.fields().iter().enumerate().map(move |(i, f)| (r, i, f.as_ref())))
        .collect();
    let types: Vec<(u32, i16, i32)> = columns.iter().map(|(_, _, f)| pg_type(f)).collect();
    Columns::new()
        .int64("attrelid", columns.iter().map(|(r, _, _)| r.oid))
        .text("attname", columns.iter().map(|(_, _, f)| f.name().as_str()))
        .int64("atttypid", types.iter().map(|t| t.0 as i64))
        .int16("attlen", types.iter().map(|t| t.1))
        .int16("attnum", columns.iter().map(|(_, i, _)| *i as i16 + 1))
        .int32("atttypmod", types.iter().map(|t| t.2))
        .int16("attndims", columns.iter().map(|(_, _, f)| i16::from(matches!(f.data_type(), DataType::List(_)))))
        .boolean("attnotnull", columns.iter().map(|(_, _, f)| !f.is_nullable()))
        .boolean("atthasdef", columns.iter().map(|_| false))
        .text("attidentity", columns.iter().map(|_| ""))
        .text("attgenerated", columns.iter().map(|_| ""))
        .boolean("attisdropped", columns.iter().map(|_| false))
        .boolean("attislocal", columns.iter().map(|_| true))
        .int32("attinhcount", columns.iter().map(|_| 0))
        .int64("attcollation", columns.iter().map(|_| 0))
        // Privileges are per relation, never per column.
        .null_text_array("attacl", columns.len())
        .batch()
}

fn pg_namespace() -> Result<RecordBatch> {
    Columns::new()
        .int64("oid", [PG_CATALOG_NAMESPACE, PUBLIC_NAMESPACE])
        .text("nspname", ["pg_catalog", "public"])
        .int64("nspowner", [OWNER_OID, OWNER_OID])
        .null_text_array("nspacl", 2)
        .batch()
}

fn pg_am() -> Result<RecordBatch> {
    Columns::new().int64("oid", [HEAP_AM, 403]).text("amname", ["heap", "btree"]).text("amtype", ["t", "i"]).batch()
}

fn pg_database(name: &str) -> Result<RecordBatch> {
    Columns::new()
        .int64("oid", [5])
        .text("datname", [name])
        .int64("datdba", [OWNER_OID])
        .int32("encoding", [6])
        .text("datlocprovider", ["c"])
        .boolean("datistemplate", [false])
        .boolean("datallowconn", [true])
        .int32("datconnlimit", [-1])
        .int64("dattablespace", [1663])
        .text("datcollate", ["C.UTF-8"])
        .text("datctype", ["C.UTF-8"])
        .null_text("daticulocale", 1)
        .null_text_array("datacl", 1)
        .batch()
}

/// `pg_roles`. The bootstrap superuser has every attribute, as `initdb` gives PostgreSQL's; other
/// roles have the ones `CREATE ROLE` can set here (`SUPERUSER`, `LOGIN`) and PostgreSQL's defaults
/// for the rest. A password is never shown (`rolpassword` is `********` when set, as there).
fn pg_roles(roles: &[RoleMeta]) -> Result<RecordBatch> {
    let bootstrap = || roles.iter().map(|r| r.name == OWNER);
    Columns::new()
        .text("rolname", roles.iter().map(|r| r.name.as_str()))
        .boolean("rolsuper", roles.iter().map(|r| r.superuser))
        .boolean("rolinherit", roles.iter().map(|_| true))
        .boolean("rolcreaterole", bootstrap())
        .boolean("rolcreatedb", bootstrap())
        .boolean("rolcanlogin", roles.iter().map(|r| r.login))
        .boolean("rolreplication", bootstrap())
        .int32("rolconnlimit", roles.iter().map(|_| -1))
        .add("rolpassword", Arc::new(roles.iter().map(|r| r.password.as_ref().map(|_| "********")).collect::<StringArray>()))
        .null_text("rolvaliduntil", roles.len())
        .boolean("rolbypassrls", bootstrap())
        .null_text_array("rolconfig", roles.len())
        .int64("oid", roles.iter().map(role_oid))
        .batch()
}

/// `pg_auth_members` (PostgreSQL 16's columns): who is a member of which role.
fn pg_auth_members(engine: &Engine, roles: &[RoleMeta]) -> Result<RecordBatch> {
    let memberships = engine.storage().catalog().list_memberships().map_err(|e| crate::EngineError::Storage(e.into()))?;
    let oid_of = |id: u64| roles.iter().find(|r| r.id == id).map(role_oid).unwrap_or(0);
    Columns::new()
        .int64("oid", memberships.iter().map(|m| MEMBERSHIP_OID_BASE + m.role as i64 * (1 << 16) + m.member as i64))
        .int64("roleid", memberships.iter().map(|m| oid_of(m.role)))
        .int64("member", memberships.iter().map(|m| oid_of(m.member)))
        .int64("grantor", memberships.iter().map(|m| oid_of(m.grantor)))
        .boolean("admin_option", memberships.iter().map(|m| m.admin_option))
        .boolean("inherit_option", memberships.iter().map(|_| true))
        .boolean("set_option", memberships.iter().map(|_| true))
        .batch()
}

/// `pg_description`: no object has a comment (there is no `COMMENT ON`).
fn pg_description() -> Result<RecordBatch> {
    Columns::new()
        .int64("objoid", [])
        .int64("classoid", [])
        .int32("objsubid", [])
        .text("description", Vec::<&str>::new())
        .batch()
}

/// Row-level security policies: there are none (psql's `\dp` lists them).
fn pg_policy() -> Result<RecordBatch> {
    let oid_array = Arc::new(Field::new("item", DataType::Int64, true));
    Columns::new()
        .int64("oid", [])
        .text("polname", Vec::<&str>::new())
        .int64("polrelid", [])
        .text("polcmd", Vec::<&str>::new())
        .boolean("polpermissive", [])
        .add("polroles", arrow::array::new_empty_array(&DataType::List(oid_array)))
        .text("polqual", Vec::<&str>::new())
        .text("polwithcheck", Vec::<&str>::new())
        .batch()
}

/// The `pg_catalog` schema: its tables are made from the engine's catalog on every lookup.
pub struct PgCatalogSchema {
    pub engine: Arc<Engine>,
}

impl std::fmt::Debug for PgCatalogSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalogSchema")
    }
}

const TABLES: &[&str] =
    &["pg_am", "pg_attribute", "pg_auth_members", "pg_class", "pg_database", "pg_description", "pg_namespace", "pg_policy", "pg_roles", "pg_type"];

/// Whether `name` is one of `pg_catalog`'s tables.
pub fn is_catalog_table(name: &str) -> bool {
    TABLES.contains(&name)
}

impl PgCatalogSchema {
    fn batch(&self, name: &str) -> Result<Option<RecordBatch>> {
        Ok(Some(match name {
            "pg_am" => pg_am()?,
            "pg_attribute" => pg_attribute(&relations(&self.engine)?)?,
            "pg_class" => pg_class(&relations(&self.engine)?)?,
            "pg_database" => pg_database(&self.engine.config().database_name)?,
            "pg_description" => pg_description()?,
            "pg_policy" => pg_policy()?,
            "pg_namespace" => pg_namespace()?,
            "pg_roles" => pg_roles(&roles(&self.engine)?)?,
            "pg_auth_members" => pg_auth_members(&self.engine, &roles(&self.engine)?)?,
            "pg_type" => pg_type_table()?,
            _ => return Ok(None),
        }))
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let batch = self.batch(name).map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(match batch {
            Some(batch) => Some(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?)),
            None => None,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// Whether `oid` is a relation of this database: `true` (everything is in `public`, which is on
/// every search path), `NULL` for an OID that names no relation, as PostgreSQL answers.
pub fn table_is_visible(engine: &Engine, oid: i64) -> Option<bool> {
    let topic = engine.storage().topics().iter().any(|t| topic_oid(t.id()) == oid);
    (topic || engine.views().list().iter().any(|v| view_oid(v.meta.id) == oid)).then_some(true)
}

/// `pg_get_userbyid`: the role's name, or PostgreSQL's `unknown (OID=n)`.
pub fn user_by_id(roles: &[RoleMeta], oid: i64) -> String {
    match roles.iter().find(|r| role_oid(r) == oid) {
        Some(role) => role.name.clone(),
        None => format!("unknown (OID={oid})"),
    }
}

/// Every role, from the catalog.
fn roles(engine: &Engine) -> Result<Vec<RoleMeta>> {
    engine.storage().catalog().list_roles().map_err(|e| crate::EngineError::Storage(e.into()))
}

/// `format_type(type_oid, typmod)` as PostgreSQL writes it (`???` for an unknown OID).
pub fn format_type(type_oid: i64, typmod: Option<i32>) -> String {
    let typmod = typmod.filter(|m| *m >= 0);
    let name = match u32::try_from(type_oid).unwrap_or(0) {
        oid::BOOL => "boolean",
        oid::BYTEA => "bytea",
        oid::CHAR => "\"char\"",
        oid::NAME => "name",
        oid::INT8 => "bigint",
        oid::INT2 => "smallint",
        oid::INT4 => "integer",
        oid::TEXT => "text",
        oid::OID => "oid",
        oid::JSON => "json",
        oid::FLOAT4 => "real",
        oid::FLOAT8 => "double precision",
        oid::BPCHAR => "character",
        oid::VARCHAR => "character varying",
        oid::DATE => "date",
        oid::TIME => "time without time zone",
        oid::TIMESTAMP => "timestamp without time zone",
        oid::TIMESTAMPTZ => "timestamp with time zone",
        oid::INTERVAL => "interval",
        oid::JSONB => "jsonb",
        oid::NUMERIC => {
            return match typmod {
                Some(m) if m >= 4 => format!("numeric({},{})", (m - 4) >> 16, (m - 4) & 0xffff),
                _ => "numeric".into(),
            };
        }
        other => match crate::pg_types::element_oid(other) {
            Some(element) => return format!("{}[]", format_type(element as i64, typmod)),
            None => "???",
        },
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_written_as_postgres_writes_them() {
        // format_type(…) as PostgreSQL 15 answers for the same arguments.
        assert_eq!(format_type(20, None), "bigint");
        assert_eq!(format_type(1700, Some((10 << 16) + 2 + 4)), "numeric(10,2)");
        assert_eq!(format_type(1700, Some(-1)), "numeric");
        assert_eq!(format_type(1007, None), "integer[]");
        assert_eq!(format_type(1184, None), "timestamp with time zone");
        assert_eq!(format_type(424242, None), "???");
        let bootstrap = RoleMeta { id: 1, name: OWNER.into(), superuser: true, login: true, password: None, created_ms: 0 };
        assert_eq!(user_by_id(&[bootstrap.clone()], 10), "streamhouse");
        assert_eq!(user_by_id(&[bootstrap], 7), "unknown (OID=7)");
    }
}
