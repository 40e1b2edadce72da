//! The SQL standard's `information_schema` as PostgreSQL 15 shows it, made from our catalog when
//! a query names one of its views: `schemata`, `tables`, `columns`, `views`,
//! `table_constraints` and `key_column_usage`. Columns have PostgreSQL's names, types (`name`,
//! `int4`, `varchar` on the wire) and values: SQL type names (`bigint`, `character varying`),
//! positions from 1, no system columns (`_partition`, `_offset`, `_timestamp`). As in
//! PostgreSQL, materialized views are in none of them (they are in `pg_matviews`), and a NOT NULL
//! column is a CHECK constraint named `<namespace oid>_<table oid>_<attnum>_not_null`.
//!
//! Topics are append-only: their columns say `is_updatable` `NO`; keyed tables' say `YES`.

use std::sync::Arc;

use arrow::datatypes::Field;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;

use crate::pg_catalog::{primary_key_name, relations, Columns, Relation, PUBLIC_NAMESPACE};
use crate::pg_types::{oid, pg_type, TYPES};
use crate::{Engine, Result};

/// The views served, by name.
const VIEWS: [&str; 6] = ["columns", "key_column_usage", "schemata", "table_constraints", "tables", "views"];

/// The schema provider of `information_schema`.
pub struct InformationSchema {
    pub engine: Arc<Engine>,
}

impl std::fmt::Debug for InformationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InformationSchema")
    }
}

/// The tables and keyed tables (`pg_class` relkind `r`), with the database's name.
struct Tables {
    database: String,
    tables: Vec<Relation>,
}

impl Tables {
    fn of(engine: &Engine) -> Result<Self> {
        let tables = relations(engine)?.into_iter().filter(|r| r.kind == "r").collect();
        Ok(Self { database: engine.config().database_name.clone(), tables })
    }
}

/// How `information_schema.columns` describes a column's type.
#[derive(Default)]
struct ColumnType {
    data_type: String,
    udt_name: String,
    character_octet_length: Option<i32>,
    numeric_precision: Option<i32>,
    numeric_precision_radix: Option<i32>,
    numeric_scale: Option<i32>,
    datetime_precision: Option<i32>,
}

/// The largest text value PostgreSQL stores, in bytes (`character_octet_length` of `text`).
const TEXT_OCTETS_MAX: i32 = 1 << 30;

fn column_type(field: &Field) -> ColumnType {
    let (type_oid, _, typmod) = pg_type(field);
    let udt_name = TYPES
        .iter()
        .find_map(|t| match () {
            _ if t.oid == type_oid => Some(t.name.to_string()),
            _ if t.array == type_oid => Some(format!("_{}", t.name)),
            _ => None,
        })
        .unwrap_or_else(|| "text".into());
    let integer = |bits| ColumnType { numeric_precision: Some(bits), numeric_precision_radix: Some(2), numeric_scale: Some(0), ..Default::default() };
    let float = |bits| ColumnType { numeric_precision: Some(bits), numeric_precision_radix: Some(2), ..Default::default() };
    let time = || ColumnType { datetime_precision: Some(6), ..Default::default() };
    let text = || ColumnType { character_octet_length: Some(TEXT_OCTETS_MAX), ..Default::default() };
    let (data_type, described) = match type_oid {
        oid::INT2 => ("smallint", integer(16)),
        oid::INT4 => ("integer", integer(32)),
        oid::INT8 => ("bigint", integer(64)),
        oid::FLOAT4 => ("real", float(24)),
        oid::FLOAT8 => ("double precision", float(53)),
        oid::NUMERIC if typmod >= 4 => (
            "numeric",
            ColumnType {
                numeric_precision: Some((typmod - 4) >> 16),
                numeric_precision_radix: Some(10),
                numeric_scale: Some((typmod - 4) & 0xffff),
                ..Default::default()
            },
        ),
        oid::NUMERIC => ("numeric", ColumnType { numeric_precision_radix: Some(10), ..Default::default() }),
        oid::TEXT => ("text", text()),
        oid::VARCHAR => ("character varying", text()),
        oid::BOOL => ("boolean", ColumnType::default()),
        oid::BYTEA => ("bytea", ColumnType::default()),
        oid::DATE => ("date", ColumnType { datetime_precision: Some(0), ..Default::default() }),
        oid::TIME => ("time without time zone", time()),
        oid::TIMESTAMP => ("timestamp without time zone", time()),
        oid::TIMESTAMPTZ => ("timestamp with time zone", time()),
        oid::INTERVAL => ("interval", time()),
        oid::JSONB => ("jsonb", ColumnType::default()),
        oid::JSON => ("json", ColumnType::default()),
        _ if udt_name.starts_with('_') => ("ARRAY", ColumnType::default()),
        _ => ("text", text()),
    };
    ColumnType { data_type: data_type.into(), udt_name, ..described }
}

/// Each column of a table (its user columns: a topic's schema has no system columns), with its
/// position from 1.
fn visible_columns(table: &Relation) -> impl Iterator<Item = (i32, &Field)> {
    table.schema.fields().iter().enumerate().map(|(i, f)| (i as i32 + 1, f.as_ref()))
}

fn schemata(engine: &Engine) -> Result<RecordBatch> {
    let database = engine.config().database_name.clone();
    let names = ["information_schema", "pg_catalog", "public"];
    let owners = [crate::pg_catalog::OWNER, crate::pg_catalog::OWNER, crate::pg_catalog::OWNER];
    let none = || names.iter().map(|_| None::<&str>);
    Ok(Columns::new()
        .typed_text("catalog_name", "name", names.iter().map(|_| Some(database.as_str())))
        .typed_text("schema_name", "name", names.iter().map(|n| Some(*n)))
        .typed_text("schema_owner", "name", owners.iter().map(|o| Some(*o)))
        .typed_text("default_character_set_catalog", "name", none())
        .typed_text("default_character_set_schema", "name", none())
        .typed_text("default_character_set_name", "name", none())
        .typed_text("sql_path", "varchar", none())
        .batch()?)
}

/// The catalogs in `pg_catalog` that are views in PostgreSQL (the others are tables).
const CATALOG_VIEWS: [&str; 5] = ["pg_matviews", "pg_roles", "pg_tables", "pg_user", "pg_views"];

fn tables(t: &Tables) -> Result<RecordBatch> {
    // (schema, name, type): the database's tables, then the system's catalogs and these views.
    let rows: Vec<(&str, &str, &str)> = t
        .tables
        .iter()
        .map(|r| ("public", r.name.as_str(), "BASE TABLE"))
        .chain(crate::pg_catalog::catalog_names().map(|name| ("pg_catalog", name, if CATALOG_VIEWS.contains(&name) { "VIEW" } else { "BASE TABLE" })))
        .chain(VIEWS.iter().map(|name| ("information_schema", *name, "VIEW")))
        .collect();
    let each = |value: &'static str| rows.iter().map(move |_| Some(value));
    let none = || rows.iter().map(|_| None::<&str>);
    Ok(Columns::new()
        .typed_text("table_catalog", "name", rows.iter().map(|_| Some(t.database.as_str())))
        .typed_text("table_schema", "name", rows.iter().map(|r| Some(r.0)))
        .typed_text("table_name", "name", rows.iter().map(|r| Some(r.1)))
        .typed_text("table_type", "varchar", rows.iter().map(|r| Some(r.2)))
        .typed_text("self_referencing_column_name", "name", none())
        .typed_text("reference_generation", "varchar", none())
        .typed_text("user_defined_type_catalog", "name", none())
        .typed_text("user_defined_type_schema", "name", none())
        .typed_text("user_defined_type_name", "name", none())
        .typed_text("is_insertable_into", "varchar", rows.iter().map(|r| Some(if r.2 == "VIEW" { "NO" } else { "YES" })))
        .typed_text("is_typed", "varchar", each("NO"))
        .typed_text("commit_action", "varchar", none())
        .batch()?)
}

fn columns(t: &Tables) -> Result<RecordBatch> {
    struct Row<'a> {
        table: &'a Relation,
        position: i32,
        field: &'a Field,
        described: ColumnType,
    }
    let rows: Vec<Row> = t
        .tables
        .iter()
        .flat_map(|table| visible_columns(table).map(move |(position, field)| Row { table, position, field, described: column_type(field) }))
        .collect();
    let none = || rows.iter().map(|_| None::<&str>);
    let no_number = || rows.iter().map(|_| None::<i32>);
    let each = |value: &'static str| rows.iter().map(move |_| Some(value));
    let positions: Vec<String> = rows.iter().map(|r| r.position.to_string()).collect();
    Ok(Columns::new()
        .typed_text("table_catalog", "name", rows.iter().map(|_| Some(t.database.as_str())))
        .typed_text("table_schema", "name", each("public"))
        .typed_text("table_name", "name", rows.iter().map(|r| Some(r.table.name.as_str())))
        .typed_text("column_name", "name", rows.iter().map(|r| Some(r.field.name().as_str())))
        .nullable_int32("ordinal_position", rows.iter().map(|r| Some(r.position)))
        .typed_text("column_default", "varchar", none())
        .typed_text("is_nullable", "varchar", rows.iter().map(|r| Some(if r.field.is_nullable() { "YES" } else { "NO" })))
        .typed_text("data_type", "varchar", rows.iter().map(|r| Some(r.described.data_type.as_str())))
        .nullable_int32("character_maximum_length", no_number())
        .nullable_int32("character_octet_length", rows.iter().map(|r| r.described.character_octet_length))
        .nullable_int32("numeric_precision", rows.iter().map(|r| r.described.numeric_precision))
        .nullable_int32("numeric_precision_radix", rows.iter().map(|r| r.described.numeric_precision_radix))
        .nullable_int32("numeric_scale", rows.iter().map(|r| r.described.numeric_scale))
        .nullable_int32("datetime_precision", rows.iter().map(|r| r.described.datetime_precision))
        .typed_text("interval_type", "varchar", none())
        .nullable_int32("interval_precision", no_number())
        .typed_text("character_set_catalog", "name", none())
        .typed_text("character_set_schema", "name", none())
        .typed_text("character_set_name", "name", none())
        .typed_text("collation_catalog", "name", none())
        .typed_text("collation_schema", "name", none())
        .typed_text("collation_name", "name", none())
        .typed_text("domain_catalog", "name", none())
        .typed_text("domain_schema", "name", none())
        .typed_text("domain_name", "name", none())
        .typed_text("udt_catalog", "name", rows.iter().map(|_| Some(t.database.as_str())))
        .typed_text("udt_schema", "name", each("pg_catalog"))
        .typed_text("udt_name", "name", rows.iter().map(|r| Some(r.described.udt_name.as_str())))
        .typed_text("scope_catalog", "name", none())
        .typed_text("scope_schema", "name", none())
        .typed_text("scope_name", "name", none())
        .nullable_int32("maximum_cardinality", no_number())
        .typed_text("dtd_identifier", "name", positions.iter().map(|p| Some(p.as_str())))
        .typed_text("is_self_referencing", "varchar", each("NO"))
        .typed_text("is_identity", "varchar", each("NO"))
        .typed_text("identity_generation", "varchar", none())
        .typed_text("identity_start", "varchar", none())
        .typed_text("identity_increment", "varchar", none())
        .typed_text("identity_maximum", "varchar", none())
        .typed_text("identity_minimum", "varchar", none())
        .typed_text("identity_cycle", "varchar", each("NO"))
        .typed_text("is_generated", "varchar", each("NEVER"))
        .typed_text("generation_expression", "varchar", none())
        // Topics are append-only; keyed tables take UPDATE.
        .typed_text("is_updatable", "varchar", rows.iter().map(|r| Some(if r.table.keyed { "YES" } else { "NO" })))
        .batch()?)
}

/// PostgreSQL's `information_schema.views` lists plain views; StreamHouse has none (materialized
/// views are not listed there, as in PostgreSQL).
fn views() -> Result<RecordBatch> {
    let none = || std::iter::empty::<Option<&str>>();
    let mut columns = Columns::new();
    for (name, pg_type) in [("table_catalog", "name"), ("table_schema", "name"), ("table_name", "name"), ("view_definition", "varchar")]
        .into_iter()
        .chain(["check_option", "is_updatable", "is_insertable_into", "is_trigger_updatable", "is_trigger_deletable", "is_trigger_insertable_into"].map(|n| (n, "varchar")))
    {
        columns = columns.typed_text(name, pg_type, none());
    }
    columns.batch()
}

/// One constraint: a primary key or a NOT NULL check.
struct Constraint<'a> {
    name: String,
    table: &'a Relation,
    kind: &'static str,
}

fn constraints(t: &Tables) -> Vec<Constraint<'_>> {
    let mut constraints = Vec::new();
    for table in &t.tables {
        if !table.primary_key.is_empty() {
            constraints.push(Constraint { name: primary_key_name(&table.name), table, kind: "PRIMARY KEY" });
        }
        for (position, field) in visible_columns(table) {
            if !field.is_nullable() {
                constraints.push(Constraint { name: format!("{PUBLIC_NAMESPACE}_{}_{position}_not_null", table.oid), table, kind: "CHECK" });
            }
        }
    }
    constraints
}

fn table_constraints(t: &Tables) -> Result<RecordBatch> {
    let rows = constraints(t);
    let each = |value: &'static str| rows.iter().map(move |_| Some(value));
    Ok(Columns::new()
        .typed_text("constraint_catalog", "name", rows.iter().map(|_| Some(t.database.as_str())))
        .typed_text("constraint_schema", "name", each("public"))
        .typed_text("constraint_name", "name", rows.iter().map(|c| Some(c.name.as_str())))
        .typed_text("table_catalog", "name", rows.iter().map(|_| Some(t.database.as_str())))
        .typed_text("table_schema", "name", each("public"))
        .typed_text("table_name", "name", rows.iter().map(|c| Some(c.table.name.as_str())))
        .typed_text("constraint_type", "varchar", rows.iter().map(|c| Some(c.kind)))
        .typed_text("is_deferrable", "varchar", each("NO"))
        .typed_text("initially_deferred", "varchar", each("NO"))
        .typed_text("enforced", "varchar", each("YES"))
        .typed_text("nulls_distinct", "varchar", rows.iter().map(|c| (c.kind == "UNIQUE").then_some("YES")))
        .batch()?)
}

fn key_column_usage(t: &Tables) -> Result<RecordBatch> {
    let rows: Vec<(&Relation, String, i32)> = t
        .tables
        .iter()
        .flat_map(|table| table.primary_key.iter().enumerate().map(move |(i, &column)| (table, table.schema.field(column).name().clone(), i as i32 + 1)))
        .collect();
    let each = |value: &'static str| rows.iter().map(move |_| Some(value));
    let constraint_names: Vec<String> = rows.iter().map(|(table, _, _)| primary_key_name(&table.name)).collect();
    Ok(Columns::new()
        .typed_text("constraint_catalog", "name", rows.iter().map(|_| Some(t.database.as_str())))
        .typed_text("constraint_schema", "name", each("public"))
        .typed_text("constraint_name", "name", constraint_names.iter().map(|n| Some(n.as_str())))
        .typed_text("table_catalog", "name", rows.iter().map(|_| Some(t.database.as_str())))
        .typed_text("table_schema", "name", each("public"))
        .typed_text("table_name", "name", rows.iter().map(|(table, _, _)| Some(table.name.as_str())))
        .typed_text("column_name", "name", rows.iter().map(|(_, column, _)| Some(column.as_str())))
        .nullable_int32("ordinal_position", rows.iter().map(|(_, _, position)| Some(*position)))
        .nullable_int32("position_in_unique_constraint", rows.iter().map(|_| None))
        .batch()?)
}

impl InformationSchema {
    fn batch(&self, name: &str) -> Result<Option<RecordBatch>> {
        Ok(Some(match name {
            "schemata" => schemata(&self.engine)?,
            "tables" => tables(&Tables::of(&self.engine)?)?,
            "columns" => columns(&Tables::of(&self.engine)?)?,
            "views" => views()?,
            "table_constraints" => table_constraints(&Tables::of(&self.engine)?)?,
            "key_column_usage" => key_column_usage(&Tables::of(&self.engine)?)?,
            _ => return Ok(None),
        }))
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        VIEWS.iter().map(|v| v.to_string()).collect()
    }

    async fn table(&self, name: &str) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        crate::pg_catalog::catalog_table(self.batch(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        VIEWS.contains(&name)
    }
}
