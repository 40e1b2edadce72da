//! The Postgres types StreamHouse speaks on the wire, and what drivers ask about them.
//!
//! Drivers learn about types they do not know by querying the catalog. asyncpg asks about every
//! array type but `text[]` and `oid[]` with one recursive query over `pg_type`, `pg_namespace`,
//! `pg_range`, `pg_attribute` and `pg_class` (with `::regtype` casts and correlated recursive
//! subqueries that DataFusion cannot plan). StreamHouse has no domains, ranges, enums or
//! composite types, so the answer is fully determined by [`TYPES`]: that statement is recognized
//! by its text and answered from the table ([`is_type_lookup`], [`type_lookup`]), with the
//! columns and row order asyncpg reads. `current_setting(name [, missing_ok])`, which asyncpg
//! calls first, is replaced by the session setting's value before planning
//! ([`inline_current_setting`]).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int32Array, Int64Array, ListArray, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, IntervalUnit, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, VisitMut, VisitorMut,
};

use crate::{EngineError, Result, PG_TYPE_METADATA};

/// Type OIDs, as Postgres assigns them.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const JSONB: u32 = 3802;
    /// A type's name (`pg_typeof`'s answer); its text is the name.
    pub const REGTYPE: u32 = 2206;
}

/// A base type: its OID, its name in `pg_catalog`, the OID of its array type, its size (`-1`
/// variable) and its `typcategory`.
pub struct PgType {
    pub oid: u32,
    pub name: &'static str,
    pub array: u32,
    pub len: i16,
    pub category: &'static str,
}

/// Every base type StreamHouse describes on the wire, with its array type.
pub const TYPES: [PgType; 21] = [
    PgType { oid: oid::BOOL, name: "bool", array: 1000, len: 1, category: "B" },
    PgType { oid: oid::BYTEA, name: "bytea", array: 1001, len: -1, category: "U" },
    PgType { oid: oid::CHAR, name: "char", array: 1002, len: 1, category: "Z" },
    PgType { oid: oid::NAME, name: "name", array: 1003, len: 64, category: "S" },
    PgType { oid: oid::INT8, name: "int8", array: 1016, len: 8, category: "N" },
    PgType { oid: oid::INT2, name: "int2", array: 1005, len: 2, category: "N" },
    PgType { oid: oid::INT4, name: "int4", array: 1007, len: 4, category: "N" },
    PgType { oid: oid::TEXT, name: "text", array: 1009, len: -1, category: "S" },
    PgType { oid: oid::OID, name: "oid", array: 1028, len: 4, category: "N" },
    PgType { oid: oid::JSON, name: "json", array: 199, len: -1, category: "U" },
    PgType { oid: oid::FLOAT4, name: "float4", array: 1021, len: 4, category: "N" },
    PgType { oid: oid::FLOAT8, name: "float8", array: 1022, len: 8, category: "N" },
    PgType { oid: oid::BPCHAR, name: "bpchar", array: 1014, len: -1, category: "S" },
    PgType { oid: oid::VARCHAR, name: "varchar", array: 1015, len: -1, category: "S" },
    PgType { oid: oid::DATE, name: "date", array: 1182, len: 4, category: "D" },
    PgType { oid: oid::TIME, name: "time", array: 1183, len: 8, category: "D" },
    PgType { oid: oid::TIMESTAMP, name: "timestamp", array: 1115, len: 8, category: "D" },
    PgType { oid: oid::TIMESTAMPTZ, name: "timestamptz", array: 1185, len: 8, category: "D" },
    PgType { oid: oid::INTERVAL, name: "interval", array: 1187, len: 16, category: "T" },
    PgType { oid: oid::NUMERIC, name: "numeric", array: 1231, len: -1, category: "N" },
    PgType { oid: oid::JSONB, name: "jsonb", array: 3807, len: -1, category: "U" },
];

/// The array type OID of an element type OID.
pub fn array_oid(element: u32) -> Option<u32> {
    TYPES.iter().find(|t| t.oid == element).map(|t| t.array)
}

/// The size of a type's values in bytes (`typlen`): `-1` for variable-length types, arrays and
/// types not in [`TYPES`].
pub fn type_len(type_oid: u32) -> i16 {
    TYPES.iter().find(|t| t.oid == type_oid).map_or(-1, |t| t.len)
}

/// The element type OID of an array type OID.
pub fn element_oid(array: u32) -> Option<u32> {
    TYPES.iter().find(|t| t.array == array).map(|t| t.oid)
}

/// The OID of a type named as PostgreSQL's `to_regtype` and `::regtype` read it: its catalog name
/// (`int4`), its SQL name (`integer`, `character varying`, `double precision`), either with
/// `pg_catalog.` before it, any case outside quotes, a modifier (`numeric(10,2)`) and `[]` for
/// its array type. `None` for a type StreamHouse does not have.
pub fn type_oid_by_name(name: &str) -> Option<u32> {
    let name = name.trim();
    if let Some(element) = name.strip_suffix("[]") {
        return array_oid(type_oid_by_name(element)?);
    }
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    // A modifier names no other type: `varchar(10)` is varchar.
    let name = match name.find('(') {
        Some(open) if name.ends_with(')') => name[..open].trim_end(),
        _ => name,
    };
    let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => name.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase(),
    };
    let canonical = match name.as_str() {
        "boolean" => "bool",
        "smallint" => "int2",
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "decimal" => "numeric",
        "character varying" => "varchar",
        "character" => "bpchar",
        "time without time zone" => "time",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        other => other,
    };
    TYPES.iter().find(|t| t.name == canonical).map(|t| t.oid).or_else(|| {
        let element = canonical.strip_prefix('_')?;
        TYPES.iter().find(|t| t.name == element).map(|t| t.array)
    })
}

/// The Postgres type of an Arrow field: OID, size (`-1` variable) and type modifier.
pub fn pg_type(field: &Field) -> (u32, i16, i32) {
    match (field.metadata().get(PG_TYPE_METADATA).map(String::as_str), field.data_type()) {
        (Some("jsonb"), _) => described(oid::JSONB),
        (Some("oid"), DataType::Int32) => described(oid::OID),
        (Some("name"), DataType::Utf8) => described(oid::NAME),
        (Some("varchar"), DataType::Utf8) => described(oid::VARCHAR),
        (Some("regtype"), DataType::Utf8) => (oid::REGTYPE, 4, -1),
        (_, data_type) => pg_type_of(data_type),
    }
}

/// A type without a modifier, with its size from the type table.
fn described(type_oid: u32) -> (u32, i16, i32) {
    (type_oid, type_len(type_oid), -1)
}

pub fn pg_type_of(data_type: &DataType) -> (u32, i16, i32) {
    match data_type {
        DataType::Boolean => described(oid::BOOL),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => described(oid::INT2),
        DataType::Int32 | DataType::UInt16 => described(oid::INT4),
        // DataFusion's counters (`row_number()`, `rank()`, `cardinality`) are unsigned where
        // PostgreSQL's are bigint; a value past bigint's range fails when written in binary.
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => described(oid::INT8),
        DataType::Float16 | DataType::Float32 => described(oid::FLOAT4),
        DataType::Float64 => described(oid::FLOAT8),
        DataType::Decimal128(p, s) => (oid::NUMERIC, type_len(oid::NUMERIC), ((*p as i32) << 16 | (*s as i32 & 0xffff)) + 4),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => described(oid::TEXT),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => described(oid::BYTEA),
        DataType::Date32 | DataType::Date64 => described(oid::DATE),
        DataType::Time32(_) | DataType::Time64(_) => described(oid::TIME),
        DataType::Timestamp(_, None) => described(oid::TIMESTAMP),
        DataType::Timestamp(_, Some(_)) => described(oid::TIMESTAMPTZ),
        DataType::Interval(IntervalUnit::MonthDayNano) => described(oid::INTERVAL),
        DataType::List(field) | DataType::LargeList(field) => {
            let (element, _, _) = pg_type(field);
            described(array_oid(element).unwrap_or(oid::TEXT))
        }
        // Anything else travels as its text form.
        _ => described(oid::TEXT),
    }
}

/// How PostgreSQL stores values of a type (`typstorage`, and `attstorage` of a column of it):
/// `p`lain for fixed sizes, `m`ain (compressible, in line) for numeric, e`x`tended (compressible,
/// out of line) for other variable sizes.
pub fn storage_of(type_oid: u32, len: i16) -> &'static str {
    match (len, type_oid) {
        (-1, oid::NUMERIC) => "m",
        (-1, _) => "x",
        _ => "p",
    }
}

/// `pg_catalog.pg_type`: every base type and its array type, with the columns clients read
/// most (`oid`, `typname`, `typnamespace`, `typlen`, `typtype`, `typcategory`, `typelem`,
/// `typarray`, `typdelim`, `typbasetype`, `typnotnull`, `typrelid`).
pub fn pg_type_table() -> Result<RecordBatch> {
    struct Row {
        oid: u32,
        name: String,
        len: i16,
        category: &'static str,
        element: u32,
        array: u32,
    }
    let rows: Vec<Row> = TYPES
        .iter()
        .flat_map(|t| {
            [
                Row { oid: t.oid, name: t.name.to_string(), len: t.len, category: t.category, element: 0, array: t.array },
                Row { oid: t.array, name: format!("_{}", t.name), len: -1, category: "A", element: t.oid, array: 0 },
            ]
        })
        .collect();
    let int64 = |value: &dyn Fn(&Row) -> i64| -> ArrayRef { Arc::new(Int64Array::from_iter_values(rows.iter().map(value))) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("oid", DataType::Int64, false),
        Field::new("typname", DataType::Utf8, false),
        Field::new("typnamespace", DataType::Int64, false),
        Field::new("typlen", DataType::Int16, false),
        Field::new("typtype", DataType::Utf8, false),
        Field::new("typcategory", DataType::Utf8, false),
        Field::new("typelem", DataType::Int64, false),
        Field::new("typarray", DataType::Int64, false),
        Field::new("typdelim", DataType::Utf8, false),
        Field::new("typbasetype", DataType::Int64, false),
        Field::new("typnotnull", DataType::Boolean, false),
        Field::new("typrelid", DataType::Int64, false),
        Field::new("typcollation", DataType::Int64, false),
        Field::new("typowner", DataType::Int64, false),
        Field::new("typbyval", DataType::Boolean, false),
        Field::new("typisdefined", DataType::Boolean, false),
        Field::new("typispreferred", DataType::Boolean, false),
        Field::new("typalign", DataType::Utf8, false),
        Field::new("typstorage", DataType::Utf8, false),
        Field::new("typtypmod", DataType::Int32, false),
        Field::new("typndims", DataType::Int32, false),
        Field::new("typdefault", DataType::Utf8, true),
        Field::new("typdefaultbin", DataType::Utf8, true),
        Field::new("typacl", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
        Field::new("typinput", DataType::Utf8, false),
        Field::new("typoutput", DataType::Utf8, false),
        Field::new("typreceive", DataType::Utf8, false),
        Field::new("typsend", DataType::Utf8, false),
    ]));
    // The type's input, output, receive and send functions, named as in PostgreSQL: `int4in`,
    // `date_in` (an underscore for some), `array_in` for every array.
    let function = |r: &Row, suffix: &str| match r.element {
        0 if ["json", "jsonb", "date", "time", "timestamp", "timestamptz", "interval", "numeric"].contains(&r.name.as_str()) => {
            format!("{}_{suffix}", r.name)
        }
        0 => format!("{}{suffix}", r.name),
        _ => format!("array_{suffix}"),
    };
    let functions = |suffix: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(|r| function(r, suffix)))) };
    // As PostgreSQL 15 has them on a 64-bit machine: values of 1, 2, 4 and 8 bytes are passed by
    // value; alignment follows the size (varlena values and arrays of them align to 4); numeric
    // is stored compressible in line (`m`), other varlenas extended (`x`).
    let alignment = |r: &Row| match (r.len, r.element) {
        (1, _) | (64, _) => "c",
        (2, _) => "s",
        (8, _) | (16, _) => "d",
        (-1, element) if element != 0 && matches!(type_len(element), 8 | 16) => "d",
        _ => "i",
    };
    let storage = |r: &Row| storage_of(r.oid, r.len);
    let preferred = [oid::BOOL, oid::TEXT, oid::OID, oid::FLOAT8, oid::TIMESTAMPTZ, oid::INTERVAL];
    let columns: Vec<ArrayRef> = vec![
        int64(&|r| r.oid as i64),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.name.as_str()))),
        int64(&|_| PG_CATALOG_NAMESPACE),
        Arc::new(arrow::array::Int16Array::from_iter_values(rows.iter().map(|r| r.len))),
        Arc::new(StringArray::from(vec!["b"; rows.len()])),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.category))),
        int64(&|r| r.element as i64),
        int64(&|r| r.array as i64),
        Arc::new(StringArray::from(vec![","; rows.len()])),
        int64(&|_| 0),
        Arc::new(arrow::array::BooleanArray::from(vec![false; rows.len()])),
        int64(&|_| 0),
        // No collations: text compares byte by byte (as "C").
        int64(&|_| 0),
        int64(&|_| crate::pg_catalog::OWNER_OID),
        Arc::new(arrow::array::BooleanArray::from_iter(rows.iter().map(|r| Some(matches!(r.len, 1 | 2 | 4 | 8))))),
        Arc::new(arrow::array::BooleanArray::from(vec![true; rows.len()])),
        Arc::new(arrow::array::BooleanArray::from_iter(rows.iter().map(|r| Some(preferred.contains(&r.oid))))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(alignment))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(storage))),
        Arc::new(Int32Array::from(vec![-1; rows.len()])),
        Arc::new(Int32Array::from(vec![0; rows.len()])),
        Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
        Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
        arrow::array::new_null_array(&DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), rows.len()),
        functions("in"),
        functions("out"),
        functions("recv"),
        functions("send"),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The OID of the `pg_catalog` namespace.
/// `pg_catalog`'s OID, as in PostgreSQL.
pub const PG_CATALOG_NAMESPACE: i64 = 11;


/// Whether `sql` is asyncpg's type introspection statement (`INTRO_LOOKUP_TYPES`, for every
/// server version it knows): a recursive walk named `typeinfo_tree` over the OIDs in `$1`.
pub fn is_type_lookup(sql: &str) -> bool {
    sql.contains("typeinfo_tree") && sql.contains("any($1::oid[])") && sql.contains("pg_catalog.pg_type")
}

/// An `oid[]` (Int32 items marked as `oid` for the wire): asyncpg has built-in codecs for
/// `oid[]` and `text[]` only, so the lookup's own array parameter and column must be of those
/// types or asyncpg would have to look them up first.
fn oid_array() -> DataType {
    let item = Field::new("item", DataType::Int32, true)
        .with_metadata(std::collections::HashMap::from([(crate::PG_TYPE_METADATA.to_string(), "oid".to_string())]));
    DataType::List(Arc::new(item))
}

/// The parameter of [`type_lookup`]: the OIDs asked about, an `oid[]`.
pub fn type_lookup_parameter() -> DataType {
    oid_array()
}

/// The columns asyncpg reads from its introspection statement.
pub fn type_lookup_schema() -> SchemaRef {
    let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
    let nullable = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    Arc::new(Schema::new(vec![
        nullable("oid", DataType::Int64),
        nullable("ns", DataType::Utf8),
        nullable("name", DataType::Utf8),
        nullable("kind", DataType::Utf8),
        nullable("basetype", DataType::Int64),
        nullable("elemtype", DataType::Int64),
        nullable("elemdelim", DataType::Utf8),
        nullable("range_subtype", DataType::Int64),
        nullable("attrtypoids", oid_array()),
        nullable("attrnames", list(DataType::Utf8)),
        nullable("depth", DataType::Int32),
        nullable("basetype_name", DataType::Utf8),
        nullable("elemtype_name", DataType::Utf8),
        nullable("range_subtype_name", DataType::Utf8),
    ]))
}

/// One row of the answer: a type asked about, or the element type of an array asked about.
struct LookupRow {
    oid: u32,
    name: String,
    element: Option<&'static PgType>,
    depth: i32,
}

/// Answers asyncpg's introspection statement for the OIDs in `params[0]`: each known type asked
/// about (depth 0) and the element type of each array among them (depth 1), deepest first, as
/// Postgres' recursive query returns them. Unknown OIDs have no row, as in Postgres.
pub fn type_lookup(params: &[ScalarValue]) -> Result<RecordBatch> {
    let asked: Vec<u32> = match params {
        [ScalarValue::List(list)] => list
            .iter()
            .flatten()
            .flat_map(|array| array.as_primitive::<Int32Type>().iter().flatten().collect::<Vec<_>>())
            .map(|oid| oid as u32)
            .collect(),
        [ScalarValue::Null] => Vec::new(),
        _ => return Err(EngineError::Internal("the type lookup takes one oid[] parameter".into())),
    };
    let mut rows = Vec::new();
    for &oid in &asked {
        if let Some(base) = TYPES.iter().find(|t| t.oid == oid) {
            rows.push(LookupRow { oid, name: base.name.to_string(), element: None, depth: 0 });
        } else if let Some(base) = TYPES.iter().find(|t| t.array == oid) {
            rows.push(LookupRow { oid, name: format!("_{}", base.name), element: Some(base), depth: 0 });
            rows.push(LookupRow { oid: base.oid, name: base.name.to_string(), element: None, depth: 1 });
        }
    }
    rows.sort_by_key(|row| (-row.depth, row.oid));
    rows.dedup_by_key(|row| (row.depth, row.oid));

    let none_i64 = || Arc::new(Int64Array::from(vec![None::<i64>; rows.len()])) as ArrayRef;
    let none_text = || Arc::new(StringArray::from(vec![None::<&str>; rows.len()])) as ArrayRef;
    let schema = type_lookup_schema();
    let null_list = |index: usize| -> ArrayRef {
        let DataType::List(item) = schema.field(index).data_type().clone() else {
            unreachable!("attrtypoids and attrnames are lists")
        };
        Arc::new(ListArray::new_null(item, rows.len()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.oid as i64))),
        Arc::new(StringArray::from(vec!["pg_catalog"; rows.len()])),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.name.as_str()))),
        Arc::new(StringArray::from(vec!["b"; rows.len()])),
        none_i64(),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.element.map(|e| e.oid as i64)))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.element.map(|_| ",")))),
        none_i64(),
        null_list(8),
        null_list(9),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.depth))),
        none_text(),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.element.map(|e| e.name)))),
        none_text(),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Replaces every `current_setting('name')` and `current_setting('name', missing_ok)` call
/// with the setting's value as a text literal (the function is stable within a statement).
/// An unknown setting is an error (42704) unless `missing_ok` is true, which gives NULL.
pub fn inline_current_setting<T: VisitMut>(statement: &mut T, settings: &BTreeMap<String, String>) -> Result<()> {
    struct Inliner<'a> {
        settings: &'a BTreeMap<String, String>,
    }
    impl VisitorMut for Inliner<'_> {
        type Break = EngineError;
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<EngineError> {
            let Expr::Function(function) = expr else { return ControlFlow::Continue(()) };
            if !function.name.to_string().eq_ignore_ascii_case("current_setting") {
                return ControlFlow::Continue(());
            }
            let args: Vec<&FunctionArg> = match &function.args {
                FunctionArguments::List(list) => list.args.iter().collect(),
                _ => Vec::new(),
            };
            let literal = |arg: &FunctionArg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value))) => Some(value.value.clone()),
                _ => None,
            };
            let name = match args.first().and_then(|a| literal(a)) {
                Some(Value::SingleQuotedString(name)) if args.len() <= 2 => name.to_ascii_lowercase(),
                // A name known only when the statement runs (a bound parameter, a column): each
                // setting's value by its name, chosen then.
                _ if (1..=2).contains(&args.len()) => {
                    let argument = |arg: &FunctionArg| match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr.clone()),
                        _ => None,
                    };
                    let (Some(name), missing_ok) = (argument(args[0]), args.get(1).map(|a| argument(a))) else {
                        return ControlFlow::Break(EngineError::NotSupported("current_setting with a named argument".into()));
                    };
                    let missing_ok = missing_ok.flatten().unwrap_or(Expr::value(Value::Boolean(false)));
                    *expr = setting_by_name(self.settings, name, missing_ok);
                    return ControlFlow::Continue(());
                }
                _ => {
                    return ControlFlow::Break(EngineError::Sqlstate {
                        code: "0A000",
                        message: "current_setting takes a setting name as a string literal".into(),
                    })
                }
            };
            let missing_ok = matches!(args.get(1).and_then(|a| literal(a)), Some(Value::Boolean(true)));
            let value = match self.settings.get(&name) {
                Some(value) => Value::SingleQuotedString(value.clone()),
                None if missing_ok => Value::Null,
                None => {
                    return ControlFlow::Break(EngineError::Sqlstate {
                        code: "42704",
                        message: format!("unrecognized configuration parameter \"{name}\""),
                    })
                }
            };
            *expr = Expr::Cast {
                kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
                expr: Box::new(Expr::value(value)),
                data_type: datafusion::sql::sqlparser::ast::DataType::Text,
                array: false,
                format: None,
            };
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Inliner { settings }) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The name of the function that answers `current_setting` for a setting that does not exist.
pub const UNKNOWN_SETTING: &str = "pg_unknown_setting";

/// `current_setting(name, missing_ok)` for a name computed when the statement runs:
/// `CASE lower(name) WHEN 'setting' THEN 'value' … ELSE pg_unknown_setting(name, missing_ok) END`.
fn setting_by_name(settings: &BTreeMap<String, String>, name: Expr, missing_ok: Expr) -> Expr {
    use crate::sql::postgres_meaning::{call, case, cast};
    let text = |value: &str| Expr::value(Value::SingleQuotedString(value.to_string()));
    case(
        Some(call("lower", vec![cast(name.clone(), datafusion::sql::sqlparser::ast::DataType::Text)])),
        settings.iter().map(|(setting, value)| (text(setting), text(value))).collect(),
        Some(call(UNKNOWN_SETTING, vec![name, missing_ok])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn arrays_and_elements_map_both_ways() {
        for t in &TYPES {
            assert_eq!(array_oid(t.oid), Some(t.array));
            assert_eq!(element_oid(t.array), Some(t.oid));
        }
        assert_eq!(array_oid(oid::UNKNOWN), None);
        let table = pg_type_table().unwrap();
        assert_eq!(table.num_rows(), 2 * TYPES.len());
        let oids: std::collections::HashSet<i64> =
            table.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().iter().copied().collect();
        assert_eq!(oids.len(), 2 * TYPES.len(), "OIDs are unique");
        for column in [6, 7] {
            let refs = table.column(column).as_primitive::<arrow::datatypes::Int64Type>();
            assert!(refs.values().iter().all(|r| *r == 0 || oids.contains(r)), "typelem and typarray point at rows");
        }
    }

    #[test]
    fn lookup_returns_elements_first_and_skips_unknown_oids() {
        let asked = ScalarValue::List(Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![
            Some(1007),
            Some(123_456),
            Some(23),
        ])])));
        let batch = type_lookup(&[asked]).unwrap();
        let oids: Vec<i64> = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec();
        // int4 as the element of int4[] (depth 1), then int4 and int4[] asked about (depth 0).
        assert_eq!(oids, vec![23, 23, 1007]);
        let names = batch.column(2).as_string::<i32>();
        assert_eq!(names.value(2), "_int4");
        assert_eq!(batch.column(5).as_primitive::<arrow::datatypes::Int64Type>().value(2), 23);
        assert!(batch.column(5).is_null(0));
        assert_eq!(batch.column(12).as_string::<i32>().value(2), "int4");
    }
}
