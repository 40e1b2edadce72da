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
/// `btree`, the access method of a primary key index.
const BTREE_AM: i64 = 403;

/// A topic's (or keyed table's) OID.
pub fn topic_oid(topic_id: u64) -> i64 {
    FIRST_USER_OID + 2 * topic_id as i64
}

/// A materialized view's OID.
pub fn view_oid(view_id: u64) -> i64 {
    FIRST_USER_OID + 1 + 2 * view_id as i64
}

/// One relation as `pg_class` and `pg_attribute` describe it.
pub(crate) struct Relation {
    pub(crate) oid: i64,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) schema: SchemaRef,
    pub(crate) keyed: bool,
    /// The owner's OID (`relowner`).
    owner: i64,
    /// `relacl`: `None` while the owner's default privileges apply.
    acl: Option<Vec<String>>,
    /// A keyed table's primary key columns (indexes into `schema`); its index and constraint
    /// are in `pg_index` and `pg_constraint`.
    pub(crate) primary_key: Vec<usize>,
}

pub(crate) fn relations(engine: &Engine) -> Result<Vec<Relation>> {
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
            primary_key: topic.primary_key().to_vec(),
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
        primary_key: Vec::new(),
    }));
    // A keyed table's primary key index, as PostgreSQL makes one: `<table>_pkey`.
    let indexes: Vec<Relation> = relations
        .iter()
        .filter(|r| !r.primary_key.is_empty())
        .map(|table| Relation {
            oid: index_oid(table.oid),
            name: primary_key_name(&table.name),
            kind: "i",
            schema: Arc::new(Schema::new(table.primary_key.iter().map(|&c| table.schema.field(c).clone()).collect::<Vec<_>>())),
            keyed: false,
            owner: table.owner,
            acl: None,
            primary_key: Vec::new(),
        })
        .collect();
    relations.extend(indexes);
    relations.sort_by_key(|r| r.oid);
    Ok(relations)
}

/// OIDs of primary key indexes and constraints: past every relation's and below the roles'.
const KEY_OID_BASE: i64 = 1 << 29;

/// The name of a keyed table's primary key index and constraint, as PostgreSQL names them.
pub(crate) fn primary_key_name(table: &str) -> String {
    format!("{table}_pkey")
}

/// A keyed table's primary key columns as `attnum`s (from 1).
fn key_attnums(table: &Relation) -> Vec<i16> {
    table.primary_key.iter().map(|&c| c as i16 + 1).collect()
}

/// The OID of the primary key index of the keyed table `table_oid`.
fn index_oid(table_oid: i64) -> i64 {
    KEY_OID_BASE + 2 * table_oid
}

/// The OID of the primary key constraint of the keyed table `table_oid`.
fn constraint_oid(table_oid: i64) -> i64 {
    KEY_OID_BASE + 2 * table_oid + 1
}

/// PostgreSQL 15's keywords that are not unreserved (`pg_get_keywords()` with `catcode <> 'U'`):
/// an identifier spelled as one of them is quoted.
const QUOTED_KEYWORDS: [&str; 151] = [
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization",
    "between", "bigint", "binary", "bit", "boolean", "both", "case", "cast", "char", "character",
    "check", "coalesce", "collate", "collation", "column", "concurrently", "constraint", "create",
    "cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time",
    "current_timestamp", "current_user", "dec", "decimal", "default", "deferrable", "desc",
    "distinct", "do", "else", "end", "except", "exists", "extract", "false", "fetch", "float",
    "for", "foreign", "freeze", "from", "full", "grant", "greatest", "group", "grouping", "having",
    "ilike", "in", "initially", "inner", "inout", "int", "integer", "intersect", "interval", "into",
    "is", "isnull", "join", "lateral", "leading", "least", "left", "like", "limit", "localtime",
    "localtimestamp", "national", "natural", "nchar", "none", "normalize", "not", "notnull", "null",
    "nullif", "numeric", "offset", "on", "only", "or", "order", "out", "outer", "overlaps",
    "overlay", "placing", "position", "precision", "primary", "real", "references", "returning",
    "right", "row", "select", "session_user", "setof", "similar", "smallint", "some", "substring",
    "symmetric", "table", "tablesample", "then", "time", "timestamp", "to", "trailing", "treat",
    "trim", "true", "union", "unique", "user", "using", "values", "varchar", "variadic", "verbose",
    "when", "where", "window", "with", "xmlattributes", "xmlconcat", "xmlelement", "xmlexists",
    "xmlforest", "xmlnamespaces", "xmlparse", "xmlpi", "xmlroot", "xmlserialize", "xmltable",
];

/// An identifier as PostgreSQL's `quote_ident` writes it: quoted unless it is lower case letters,
/// digits and underscores not starting with a digit, and not a keyword that is not unreserved.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !QUOTED_KEYWORDS.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The keyed table whose primary key index (`index`) or constraint (`!index`) has `oid`, and
/// its key columns' names.
fn keyed_table_of(engine: &Engine, oid: i64, index: bool) -> Option<(String, Vec<String>)> {
    engine.listed_topics().into_iter().filter(|t| t.is_keyed()).find_map(|topic| {
        let table = topic_oid(topic.id());
        let wanted = if index { index_oid(table) } else { constraint_oid(table) };
        (wanted == oid).then(|| {
            let columns = topic.primary_key().iter().map(|&c| quote_ident(topic.schema().field(c).name())).collect();
            (topic.name().to_string(), columns)
        })
    })
}

/// `pg_get_indexdef(index, column)`: for column 0 the whole definition, `CREATE UNIQUE INDEX
/// people_pkey ON public.people USING btree (id)`; for column n its n-th key column; `NULL` for an
/// OID that is no index or a column it does not have.
pub fn index_definition(engine: &Engine, oid: i64, column: i32) -> Option<String> {
    let (table, columns) = keyed_table_of(engine, oid, true)?;
    if column > 0 {
        return columns.get(usize::try_from(column - 1).ok()?).cloned();
    }
    Some(format!(
        "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
        quote_ident(&primary_key_name(&table)),
        quote_ident(&table),
        columns.join(", ")
    ))
}

/// `pg_get_viewdef(view)`: a materialized view's query as it was written; `NULL` for an OID that is
/// no view.
pub fn view_definition(engine: &Engine, oid: i64) -> Option<String> {
    engine.views().list().iter().find(|view| view_oid(view.meta.id) == oid).map(|view| view.meta.query.clone())
}

/// `pg_table_size(relation)` (and `pg_relation_size`, `pg_total_relation_size`) of each OID: a
/// topic's or keyed table's sealed segments as stored and its unsealed tails; `NULL` for a
/// materialized view or an index (whose state in RocksDB is not measured per relation), for an
/// OID that is no relation and for a NULL OID. The topics are listed once for all the OIDs.
pub fn relation_sizes(engine: &Engine, oids: &[Option<i64>]) -> Result<Vec<Option<i64>>> {
    let topics: std::collections::HashMap<i64, Arc<streamhouse_storage::TopicLog>> =
        engine.listed_topics().into_iter().map(|topic| (topic_oid(topic.id()), topic)).collect();
    oids.iter()
        .map(|oid| match oid.and_then(|oid| topics.get(&oid)) {
            Some(topic) => Ok(Some(engine.storage().topic_bytes(topic)? as i64)),
            None => Ok(None),
        })
        .collect()
}

/// PostgreSQL's `pg_size_pretty`: bytes below 10 kB, then kB, MB, GB, TB and PB, each unit used
/// below 20 of the next (`half_rounded`, as PostgreSQL rounds).
pub fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT_ROUNDED: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    // One extra bit is kept for rounding.
    let mut size = bytes >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < LIMIT_ROUNDED {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
}

/// `pg_get_constraintdef(constraint)`: `PRIMARY KEY (id)`; `NULL` for an OID that is no constraint.
pub fn constraint_definition(engine: &Engine, oid: i64) -> Option<String> {
    let (_, columns) = keyed_table_of(engine, oid, false)?;
    Some(format!("PRIMARY KEY ({})", columns.join(", ")))
}

/// An `int2vector` or `int2[]` column (`indkey`, `conkey`, `stxkeys`, `prattrs`).
fn int16_lists(values: impl IntoIterator<Item = Vec<i16>>) -> ArrayRef {
    let mut builder = arrow::array::ListBuilder::new(arrow::array::Int16Builder::new());
    for value in values {
        builder.append_value(value.into_iter().map(Some));
    }
    Arc::new(builder.finish())
}

/// An `oidvector` or `oid[]` column (`indclass`, `indcollation`).
fn oid_lists(values: impl IntoIterator<Item = Vec<i64>>) -> ArrayRef {
    let mut builder = arrow::array::ListBuilder::new(arrow::array::Int64Builder::new());
    for value in values {
        builder.append_value(value.into_iter().map(Some));
    }
    Arc::new(builder.finish())
}

/// The btree operator class a key column of type `type_oid` sorts by (0 for a type without one).
fn opclass_of(type_oid: u32) -> i64 {
    // varchar sorts by text's class, as in PostgreSQL.
    let type_oid = if type_oid == oid::VARCHAR { oid::TEXT } else { type_oid };
    BTREE_OPCLASSES.iter().find(|c| c.3 == type_oid).map_or(0, |c| c.0)
}

/// `pg_index`: each keyed table's primary key index.
fn pg_index(relations: &[Relation]) -> Result<RecordBatch> {
    let keyed: Vec<&Relation> = relations.iter().filter(|r| !r.primary_key.is_empty()).collect();
    let each = |value: bool| keyed.iter().map(move |_| value);
    let keys = || keyed.iter().map(|r| key_attnums(r));
    Columns::new()
        .int64("indexrelid", keyed.iter().map(|r| index_oid(r.oid)))
        .int64("indrelid", keyed.iter().map(|r| r.oid))
        .int16("indnatts", keyed.iter().map(|r| r.primary_key.len() as i16))
        .int16("indnkeyatts", keyed.iter().map(|r| r.primary_key.len() as i16))
        .boolean("indisunique", each(true))
        .boolean("indnullsnotdistinct", each(false))
        .boolean("indisprimary", each(true))
        .boolean("indisexclusion", each(false))
        .boolean("indimmediate", each(true))
        .boolean("indisclustered", each(false))
        .boolean("indisvalid", each(true))
        .boolean("indcheckxmin", each(false))
        .boolean("indisready", each(true))
        .boolean("indislive", each(true))
        .boolean("indisreplident", each(false))
        .add("indkey", int16_lists(keys()))
        .add("indcollation", oid_lists(keyed.iter().map(|r| vec![0; r.primary_key.len()])))
        .add("indclass", oid_lists(keyed.iter().map(|r| r.primary_key.iter().map(|&c| opclass_of(pg_type(r.schema.field(c)).0)).collect())))
        .add("indoption", int16_lists(keyed.iter().map(|r| vec![0; r.primary_key.len()])))
        .null_text("indexprs", keyed.len())
        .null_text("indpred", keyed.len())
        .batch()
}

/// `pg_constraint`: each keyed table's primary key.
fn pg_constraint(relations: &[Relation]) -> Result<RecordBatch> {
    let keyed: Vec<&Relation> = relations.iter().filter(|r| !r.primary_key.is_empty()).collect();
    let each = |value: bool| keyed.iter().map(move |_| value);
    Columns::new()
        .int64("oid", keyed.iter().map(|r| constraint_oid(r.oid)))
        .text("conname", keyed.iter().map(|r| primary_key_name(&r.name)))
        .int64("connamespace", keyed.iter().map(|_| PUBLIC_NAMESPACE))
        .text("contype", keyed.iter().map(|_| "p"))
        .boolean("condeferrable", each(false))
        .boolean("condeferred", each(false))
        .boolean("convalidated", each(true))
        .int64("conrelid", keyed.iter().map(|r| r.oid))
        .int64("contypid", keyed.iter().map(|_| 0))
        .int64("conindid", keyed.iter().map(|r| index_oid(r.oid)))
        .int64("confrelid", keyed.iter().map(|_| 0))
        .boolean("conislocal", each(true))
        .add("conkey", int16_lists(keyed.iter().map(|r| key_attnums(r))))
        .batch()
}

/// The catalogs that have no rows, ever: [`empty_catalog`]'s and `pg_policy` (no row-level
/// security). The SQL layer may treat a query over one as empty without planning it.
pub const ALWAYS_EMPTY: &[&str] = &[
    "pg_attrdef",
    "pg_collation",
    "pg_enum",
    "pg_extension",
    "pg_inherits",
    "pg_policy",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_sequence",
    "pg_statistic_ext",
    "pg_views",
];

/// The catalogs of what StreamHouse does not have (column defaults, collations, extended
/// statistics, publications, inheritance): their columns, no rows. psql's `\d name` reads
/// them.
fn empty_catalog(name: &str) -> Option<Result<RecordBatch>> {
    let int16_list = || int16_lists(Vec::<Vec<i16>>::new());
    let text_list = || arrow::array::new_empty_array(&DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))));
    let no_text = Vec::<&str>::new;
    Some(match name {
        "pg_attrdef" => Columns::new().int64("oid", []).int64("adrelid", []).int16("adnum", []).text("adbin", no_text()).batch(),
        "pg_collation" => Columns::new()
            .int64("oid", [])
            .text("collname", no_text())
            .int64("collnamespace", [])
            .int64("collowner", [])
            .text("collprovider", no_text())
            .int32("collencoding", [])
            .batch(),
        "pg_enum" => Columns::new().int64("oid", []).int64("enumtypid", []).add("enumsortorder", Arc::new(Float32Array::from(Vec::<f32>::new()))).text("enumlabel", no_text()).batch(),
        "pg_views" => Columns::new().text("schemaname", no_text()).text("viewname", no_text()).text("viewowner", no_text()).text("definition", no_text()).batch(),
        "pg_extension" => Columns::new()
            .int64("oid", [])
            .text("extname", no_text())
            .int64("extowner", [])
            .int64("extnamespace", [])
            .boolean("extrelocatable", [])
            .text("extversion", no_text())
            .add("extconfig", arrow::array::new_empty_array(&DataType::List(Arc::new(Field::new("item", DataType::Int64, true)))))
            .add("extcondition", text_list())
            .batch(),
        "pg_sequence" => Columns::new()
            .int64("seqrelid", [])
            .int64("seqtypid", [])
            .int64("seqstart", [])
            .int64("seqincrement", [])
            .int64("seqmax", [])
            .int64("seqmin", [])
            .int64("seqcache", [])
            .boolean("seqcycle", [])
            .batch(),
        "pg_statistic_ext" => Columns::new()
            .int64("oid", [])
            .int64("stxrelid", [])
            .text("stxname", no_text())
            .int64("stxnamespace", [])
            .int64("stxowner", [])
            .int32("stxstattarget", [])
            .add("stxkeys", int16_list())
            .add("stxkind", text_list())
            .batch(),
        "pg_publication" => Columns::new()
            .int64("oid", [])
            .text("pubname", no_text())
            .int64("pubowner", [])
            .boolean("puballtables", [])
            .boolean("pubinsert", [])
            .boolean("pubupdate", [])
            .boolean("pubdelete", [])
            .boolean("pubtruncate", [])
            .boolean("pubviaroot", [])
            .batch(),
        "pg_publication_namespace" => Columns::new().int64("oid", []).int64("pnpubid", []).int64("pnnspid", []).batch(),
        "pg_publication_rel" => Columns::new()
            .int64("oid", [])
            .int64("prpubid", [])
            .int64("prrelid", [])
            .text("prqual", no_text())
            .add("prattrs", int16_list())
            .batch(),
        "pg_inherits" => Columns::new()
            .int64("inhrelid", [])
            .int64("inhparent", [])
            .int32("inhseqno", [])
            .boolean("inhdetachpending", [])
            .batch(),
        _ => return None,
    })
}

/// Columns of a catalog table, built a column at a time.
pub(crate) struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    pub(crate) fn new() -> Self {
        Self { fields: Vec::new(), arrays: Vec::new() }
    }

    pub(crate) fn add(mut self, name: &str, array: ArrayRef) -> Self {
        self.fields.push(Field::new(name, array.data_type().clone(), true));
        self.arrays.push(array);
        self
    }

    pub(crate) fn int64(self, name: &str, values: impl IntoIterator<Item = i64>) -> Self {
        self.add(name, Arc::new(Int64Array::from_iter_values(values)))
    }

    pub(crate) fn int32(self, name: &str, values: impl IntoIterator<Item = i32>) -> Self {
        self.add(name, Arc::new(Int32Array::from_iter_values(values)))
    }

    fn int16(self, name: &str, values: impl IntoIterator<Item = i16>) -> Self {
        self.add(name, Arc::new(Int16Array::from_iter_values(values)))
    }

    pub(crate) fn text<S: AsRef<str>>(self, name: &str, values: impl IntoIterator<Item = S>) -> Self {
        self.add(name, Arc::new(StringArray::from_iter_values(values)))
    }

    pub(crate) fn null_text(self, name: &str, rows: usize) -> Self {
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

    pub(crate) fn boolean(self, name: &str, values: impl IntoIterator<Item = bool>) -> Self {
        self.add(name, Arc::new(BooleanArray::from(values.into_iter().collect::<Vec<_>>())))
    }

    /// A column of PostgreSQL type `pg_type` (`name`, `varchar`): text here, described to
    /// clients as that type.
    pub(crate) fn typed_text<S: AsRef<str>>(mut self, name: &str, pg_type: &str, values: impl IntoIterator<Item = Option<S>>) -> Self {
        let array: ArrayRef = Arc::new(values.into_iter().collect::<StringArray>());
        let metadata = std::collections::HashMap::from([(crate::PG_TYPE_METADATA.to_string(), pg_type.to_string())]);
        self.fields.push(Field::new(name, DataType::Utf8, true).with_metadata(metadata));
        self.arrays.push(array);
        self
    }

    /// An `int4` column that may hold NULLs.
    pub(crate) fn nullable_int32(self, name: &str, values: impl IntoIterator<Item = Option<i32>>) -> Self {
        self.add(name, Arc::new(values.into_iter().collect::<Int32Array>()))
    }

    pub(crate) fn batch(self) -> Result<RecordBatch> {
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
        .int64("relam", relations.iter().map(|r| match r.kind {
            "r" | "m" => HEAP_AM,
            "i" => BTREE_AM,
            _ => 0,
        }))
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
        .null_text("relpartbound", rows)
        .null_text_array("reloptions", rows)
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
        // Only a table's columns are NOT NULL in PostgreSQL, never a materialized view's (which
        // has no constraints) or an index's.
        .boolean("attnotnull", columns.iter().map(|(r, _, f)| r.kind == "r" && !f.is_nullable()))
        .boolean("atthasdef", columns.iter().map(|_| false))
        .text("attidentity", columns.iter().map(|_| ""))
        .text("attgenerated", columns.iter().map(|_| ""))
        .boolean("attisdropped", columns.iter().map(|_| false))
        .boolean("attislocal", columns.iter().map(|_| true))
        .int32("attinhcount", columns.iter().map(|_| 0))
        // As PostgreSQL stores the column's type; no column compression method and the default
        // statistics target.
        .text("attstorage", types.iter().map(|t| crate::pg_types::storage_of(t.0, t.1)))
        .text("attcompression", columns.iter().map(|_| ""))
        .int16("attstattarget", columns.iter().map(|_| -1))
        .int64("attcollation", columns.iter().map(|_| 0))
        // Privileges are per relation, never per column.
        .null_text_array("attacl", columns.len())
        .batch()
}

/// `information_schema`'s OID, as PostgreSQL 15's initdb gives it.
pub const INFORMATION_SCHEMA_NAMESPACE: i64 = 13207;

fn pg_namespace(engine: &Engine) -> Result<RecordBatch> {
    let system_acl = || Some(vec![format!("{OWNER}=UC/{OWNER}"), format!("=U/{OWNER}")]);
    Columns::new()
        .int64("oid", [PG_CATALOG_NAMESPACE, INFORMATION_SCHEMA_NAMESPACE, PUBLIC_NAMESPACE])
        .text("nspname", ["pg_catalog", "information_schema", "public"])
        .int64("nspowner", [OWNER_OID, OWNER_OID, OWNER_OID])
        .text_array("nspacl", [system_acl(), system_acl(), Some(engine.access()?.public_schema_acl(OWNER))])
        .batch()
}

/// `obj_description(oid, catalog)`: the comments PostgreSQL's initdb puts on its schemas; there
/// are no others (no `COMMENT ON`).
pub fn description(oid: i64, catalog: &str) -> Option<&'static str> {
    match (catalog, oid) {
        ("pg_namespace", PUBLIC_NAMESPACE) => Some("standard public schema"),
        ("pg_namespace", PG_CATALOG_NAMESPACE) => Some("system catalog schema"),
        _ => None,
    }
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

/// `pg_user`: the roles that may log in, as PostgreSQL's view of `pg_authid` shows them (the
/// password always `********`).
fn pg_user(roles: &[RoleMeta]) -> Result<RecordBatch> {
    let users: Vec<&RoleMeta> = roles.iter().filter(|r| r.login).collect();
    let bootstrap = || users.iter().map(|r| r.name == OWNER);
    Columns::new()
        .text("usename", users.iter().map(|r| r.name.as_str()))
        .int64("usesysid", users.iter().map(|r| role_oid(r)))
        .boolean("usecreatedb", bootstrap())
        .boolean("usesuper", users.iter().map(|r| r.superuser))
        .boolean("userepl", bootstrap())
        .boolean("usebypassrls", bootstrap())
        .text("passwd", users.iter().map(|_| "********"))
        .null_text("valuntil", users.len())
        .null_text_array("useconfig", users.len())
        .batch()
}

/// `pg_tables` and `pg_matviews`: the topics and keyed tables, and the materialized views, of
/// `public` (PostgreSQL's views also list its own catalogs' tables, which are not tables here).
/// A view's `definition` is its query as it was written, where PostgreSQL prints its own
/// rendering of the parsed query.
fn pg_tables_or_matviews(engine: &Engine, matviews: bool) -> Result<RecordBatch> {
    let relations = relations(engine)?;
    let roles = roles(engine)?;
    let kind = if matviews { "m" } else { "r" };
    let chosen: Vec<&Relation> = relations.iter().filter(|r| r.kind == kind).collect();
    let owner = |r: &&Relation| user_by_id(&roles, r.owner);
    let columns = Columns::new()
        .text("schemaname", chosen.iter().map(|_| "public"))
        .text(if matviews { "matviewname" } else { "tablename" }, chosen.iter().map(|r| r.name.as_str()))
        .text(if matviews { "matviewowner" } else { "tableowner" }, chosen.iter().map(owner))
        .null_text("tablespace", chosen.len())
        .boolean("hasindexes", chosen.iter().map(|r| r.keyed));
    if matviews {
        let views = engine.views().list();
        let definition = |r: &&Relation| views.iter().find(|v| view_oid(v.meta.id) == r.oid).map_or_else(String::new, |v| v.meta.query.clone());
        return columns.boolean("ispopulated", chosen.iter().map(|_| true)).text("definition", chosen.iter().map(definition)).batch();
    }
    columns
        .boolean("hasrules", chosen.iter().map(|_| false))
        .boolean("hastriggers", chosen.iter().map(|_| false))
        .boolean("rowsecurity", chosen.iter().map(|_| false))
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

/// The default btree operator classes of the types a column can have, with PostgreSQL 15's OIDs
/// (`oid`, `opcname`, `opcfamily`, `opcintype`): what a primary key index here sorts by.
const BTREE_OPCLASSES: [(i64, &str, i64, u32); 19] = [
    (10003, "bool_ops", 424, oid::BOOL),
    (10006, "bytea_ops", 428, oid::BYTEA),
    (10007, "char_ops", 429, oid::CHAR),
    (10028, "name_ops", 1994, oid::NAME),
    (3124, "int8_ops", 1976, oid::INT8),
    (1979, "int2_ops", 1976, oid::INT2),
    (1978, "int4_ops", 1976, oid::INT4),
    (3126, "text_ops", 1994, oid::TEXT),
    (1981, "oid_ops", 1989, oid::OID),
    (10012, "float4_ops", 1970, oid::FLOAT4),
    (3123, "float8_ops", 1970, oid::FLOAT8),
    (10004, "bpchar_ops", 426, oid::BPCHAR),
    (3122, "date_ops", 434, oid::DATE),
    (10038, "time_ops", 1996, oid::TIME),
    (3128, "timestamp_ops", 434, oid::TIMESTAMP),
    (3127, "timestamptz_ops", 434, oid::TIMESTAMPTZ),
    (10022, "interval_ops", 1982, oid::INTERVAL),
    (3125, "numeric_ops", 1988, oid::NUMERIC),
    (10088, "jsonb_ops", 4033, oid::JSONB),
];

/// `pg_opclass`: the btree operator classes (all default ones; there are no others here).
fn pg_opclass() -> Result<RecordBatch> {
    let rows = BTREE_OPCLASSES.iter();
    Columns::new()
        .int64("oid", rows.clone().map(|c| c.0))
        .int64("opcmethod", rows.clone().map(|_| BTREE_AM))
        .text("opcname", rows.clone().map(|c| c.1))
        .int64("opcnamespace", rows.clone().map(|_| PG_CATALOG_NAMESPACE))
        .int64("opcowner", rows.clone().map(|_| OWNER_OID))
        .int64("opcfamily", rows.clone().map(|c| c.2))
        .int64("opcintype", rows.clone().map(|c| i64::from(c.3)))
        .boolean("opcdefault", rows.clone().map(|_| true))
        .int64("opckeytype", rows.map(|_| 0))
        .batch()
}

/// The OIDs PostgreSQL 15 gives the catalogs served here (`'pg_catalog.pg_class'::regclass`;
/// `pg_description.classoid` names the catalog of the object described).
const CATALOG_OIDS: [(&str, i64); 28] = [
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_auth_members", 1261),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_database", 1262),
    ("pg_description", 2609),
    ("pg_enum", 3501),
    ("pg_extension", 3079),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_matviews", 12038),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_policy", 3256),
    ("pg_publication", 6104),
    ("pg_publication_namespace", 6237),
    ("pg_publication_rel", 6106),
    ("pg_roles", 12000),
    ("pg_sequence", 2224),
    ("pg_statistic_ext", 3381),
    ("pg_tables", 12033),
    ("pg_tablespace", 1213),
    ("pg_type", 1247),
    ("pg_user", 12014),
    ("pg_views", 12028),
];

/// The OID of a catalog named `pg_catalog.name` or `name`.
fn catalog_oid(name: &str) -> Option<i64> {
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    CATALOG_OIDS.iter().find(|(catalog, _)| *catalog == name).map(|(_, oid)| *oid)
}

/// `pg_tablespace`: PostgreSQL's two, which every database has (relations here are in
/// `pg_default`, `reltablespace` 0).
fn pg_tablespace() -> Result<RecordBatch> {
    Columns::new()
        .int64("oid", [1663, 1664])
        .text("spcname", ["pg_default", "pg_global"])
        .int64("spcowner", [OWNER_OID, OWNER_OID])
        .null_text_array("spcacl", 2)
        .null_text_array("spcoptions", 2)
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

const TABLES: &[&str] = &[
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_auth_members",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_database",
    "pg_description",
    "pg_enum",
    "pg_extension",
    "pg_index",
    "pg_inherits",
    "pg_matviews",
    "pg_namespace",
    "pg_opclass",
    "pg_policy",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_roles",
    "pg_sequence",
    "pg_statistic_ext",
    "pg_tables",
    "pg_tablespace",
    "pg_type",
    "pg_user",
    "pg_views",
];

/// The names of `pg_catalog`'s tables.
pub fn catalog_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().copied()
}

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
            "pg_namespace" => pg_namespace(&self.engine)?,
            "pg_roles" => pg_roles(&roles(&self.engine)?)?,
            "pg_auth_members" => pg_auth_members(&self.engine, &roles(&self.engine)?)?,
            "pg_type" => pg_type_table()?,
            "pg_index" => pg_index(&relations(&self.engine)?)?,
            "pg_tables" => pg_tables_or_matviews(&self.engine, false)?,
            "pg_matviews" => pg_tables_or_matviews(&self.engine, true)?,
            "pg_user" => pg_user(&roles(&self.engine)?)?,
            "pg_constraint" => pg_constraint(&relations(&self.engine)?)?,
            "pg_opclass" => pg_opclass()?,
            "pg_tablespace" => pg_tablespace()?,
            other => match empty_catalog(other) {
                Some(batch) => batch?,
                None => return Ok(None),
            },
        }))
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        catalog_table(self.batch(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// A catalog table made of one batch (`None`: no such table), as a schema provider answers it.
pub(crate) fn catalog_table(batch: Result<Option<RecordBatch>>) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
    let batch = batch.map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(match batch {
        Some(batch) => Some(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?)),
        None => None,
    })
}

/// Whether `oid` is a relation of this database: `true` (everything is in `public`, which is on
/// every search path), `NULL` for an OID that names no relation, as PostgreSQL answers.
pub fn table_is_visible(names: &std::collections::HashMap<i64, String>, oid: i64) -> Option<bool> {
    names.contains_key(&oid).then_some(true)
}

/// Every relation's OID and name (topics, keyed tables, views, primary key indexes), from memory:
/// what `pg_table_is_visible` and `::regclass` look up for each row, without the owners and
/// privileges `pg_class` reads from the catalog.
pub fn relation_names(engine: &Engine) -> std::collections::HashMap<i64, String> {
    let mut names = std::collections::HashMap::new();
    for topic in engine.listed_topics() {
        let oid = topic_oid(topic.id());
        if topic.is_keyed() {
            names.insert(index_oid(oid), primary_key_name(topic.name()));
        }
        names.insert(oid, topic.name().to_string());
    }
    for view in engine.views().list() {
        names.insert(view_oid(view.meta.id), view.meta.name.clone());
    }
    names
}

/// `oid::regclass` as PostgreSQL prints it: the relation's name (quoted where needed), or the
/// number for an OID that names none.
pub fn relation_name(names: &std::collections::HashMap<i64, String>, oid: i64) -> String {
    if let Some(name) = names.get(&oid) {
        return quote_ident(name);
    }
    match CATALOG_OIDS.iter().find(|(_, catalog)| *catalog == oid) {
        Some((catalog, _)) => catalog.to_string(),
        None => oid.to_string(),
    }
}

/// `'name'::regclass`: the OID of the relation named so (`public.` may lead; a name in double
/// quotes keeps its case, others are folded to lower case, as PostgreSQL reads them), or the OID
/// a number gives.
pub fn relation_oid(engine: &Engine, name: &str) -> Option<i64> {
    let name = name.trim();
    // A number is an OID, taken as it is (as PostgreSQL's regclass input does).
    if let Ok(oid) = name.parse::<i64>() {
        return Some(oid);
    }
    // pg_catalog is searched first, as in PostgreSQL.
    if let Some(oid) = catalog_oid(&name.to_ascii_lowercase()) {
        return Some(oid);
    }
    let name = name.strip_prefix("public.").or_else(|| name.strip_prefix("\"public\".")).unwrap_or(name);
    let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    };
    relation_names(engine).into_iter().find(|(_, relation)| *relation == name).map(|(oid, _)| oid)
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
    fn sizes_are_written_as_postgres_writes_them() {
        // pg_size_pretty(…) as PostgreSQL 15 answers.
        for (bytes, pretty) in [(0, "0 bytes"), (10239, "10239 bytes"), (10240, "10 kB"), (20479, "20 kB"), (1_000_000, "977 kB"), (20_970_000, "20 MB"), (10_737_418_240, "10 GB"), (-10240, "-10 kB"), (1 << 50, "1024 TB")] {
            assert_eq!(size_pretty(bytes), pretty, "{bytes}");
        }
    }

    #[test]
    fn identifiers_are_quoted_as_postgres_quotes_them() {
        // quote_ident(…) as PostgreSQL 15 answers.
        for (name, quoted) in [("select", "\"select\""), ("user", "\"user\""), ("abs", "abs"), ("Foo", "\"Foo\""), ("a b", "\"a b\""), ("int", "\"int\""), ("bids", "bids"), ("a\"b", "\"a\"\"b\""), ("_x1", "_x1"), ("1x", "\"1x\"")] {
            assert_eq!(quote_ident(name), quoted, "{name}");
        }
    }

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

    #[test]
    fn every_served_catalog_has_its_postgres_oid() {
        assert_eq!(CATALOG_OIDS.len(), TABLES.len());
        for name in TABLES {
            assert!(catalog_oid(name).is_some(), "{name}");
        }
        assert_eq!(catalog_oid("pg_catalog.pg_class"), Some(1259));
    }

    #[test]
    fn the_catalogs_said_to_be_always_empty_are_served_and_have_no_rows() {
        // The SQL layer folds queries over these without planning them (see ALWAYS_EMPTY).
        for name in ALWAYS_EMPTY {
            assert!(TABLES.contains(name), "{name} is served");
            let batch = if *name == "pg_policy" { pg_policy() } else { empty_catalog(name).expect("an empty catalog") };
            assert_eq!(batch.unwrap().num_rows(), 0, "{name}");
        }
        for name in TABLES {
            assert_eq!(empty_catalog(name).is_some(), ALWAYS_EMPTY.contains(name) && *name != "pg_policy", "{name}");
        }
    }
}
