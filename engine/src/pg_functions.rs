//! PostgreSQL's system information functions that catalog queries call (psql's `\dt`, `\l`,
//! `\dn`; drivers' metadata), answered from our catalog (see [`crate::pg_catalog`]).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListBuilder, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;

use crate::pg_catalog::{format_type, relation_name, relation_names, table_is_visible, user_by_id};
use crate::Engine;

/// Runs `f` over the arguments as arrays of `rows` rows, and gives a scalar back for scalars.
fn rows_of(args: &[ColumnarValue], f: impl Fn(&[ArrayRef]) -> DfResult<ArrayRef>) -> DfResult<ColumnarValue> {
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let result = f(&arrays)?;
    if all_scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
    }
    Ok(ColumnarValue::Array(result))
}

fn int64s(array: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    let array = arrow::compute::cast(array, &DataType::Int64)?;
    Ok(array.as_primitive::<Int64Type>().iter().collect())
}

/// A function from a name to an object's OID (bigint): `lookup` finds it; a name it does not find
/// is `missing`'s error, or NULL without one.
fn name_to_oid(
    name: &str,
    lookup: impl Fn(&str) -> Option<i64> + Send + Sync + 'static,
    missing: Option<fn(&str) -> crate::EngineError>,
) -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let names = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
                let mut oids = arrow::array::Int64Builder::with_capacity(names.len());
                for name in names.as_string::<i32>() {
                    match (name.map(|name| (name, lookup(name))), missing) {
                        (None, _) | (Some((_, None)), None) => oids.append_null(),
                        (Some((_, Some(oid))), _) => oids.append_value(oid),
                        (Some((name, None)), Some(error)) => {
                            return Err(datafusion::error::DataFusionError::External(Box::new(error(name))));
                        }
                    }
                }
                Ok(Arc::new(oids.finish()) as ArrayRef)
            })
        }),
    )
}

/// `information_schema._pg_expandarray(a)`: each element of `a` with its position from 1, as a
/// list of records `(x, n)` (the SQL layer unnests it where PostgreSQL returns a set).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: datafusion::logical_expr::Signature,
}

impl ExpandArray {
    fn record(element: &DataType) -> DataType {
        DataType::Struct(arrow::datatypes::Fields::from(vec![Field::new("x", element.clone(), true), Field::new("n", DataType::Int32, false)]))
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        crate::sql::postgres_meaning::EXPAND_ARRAY
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [DataType::List(element)] => Ok(DataType::List(Arc::new(Field::new("item", Self::record(element.data_type()), true)))),
            other => Err(datafusion::error::DataFusionError::Plan(format!("_pg_expandarray takes an array, not {other:?}"))),
        }
    }

    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        rows_of(&args.args, |arrays| {
            let lists = arrays[0].as_list::<i32>();
            let (field, offsets, values, nulls) = lists.clone().into_parts();
            // Positions restart at 1 in each list.
            let mut positions = Vec::with_capacity(values.len());
            for window in offsets.windows(2) {
                positions.extend(1..=(window[1] - window[0]));
            }
            let DataType::Struct(fields) = Self::record(field.data_type()) else { unreachable!("a record is a struct") };
            let records = arrow::array::StructArray::try_new(fields, vec![values, Arc::new(arrow::array::Int32Array::from(positions))], None)?;
            let item = Arc::new(Field::new("item", records.data_type().clone(), true));
            Ok(Arc::new(arrow::array::ListArray::try_new(item, offsets, Arc::new(records), nulls)?) as ArrayRef)
        })
    }
}

/// A function of one OID (bigint) that answers text: `text_of` gives each row's answer (NULL for
/// `None`; a NULL OID is NULL).
fn text_of_oid(name: &str, volatility: Volatility, text_of: impl Fn(i64) -> Option<String> + Send + Sync + 'static) -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int64],
        DataType::Utf8,
        volatility,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let texts: StringArray = int64s(&arrays[0])?.into_iter().map(|oid| oid.and_then(&text_of)).collect();
                Ok(Arc::new(texts) as ArrayRef)
            })
        }),
    )
}

/// `pg_typeof(x)`: the name of `x`'s type as PostgreSQL writes it (`integer`, `numeric`,
/// `text`; `unknown` for a bare NULL), sent as PostgreSQL's `regtype`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: datafusion::logical_expr::Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: datafusion::logical_expr::ReturnFieldArgs) -> DfResult<arrow::datatypes::FieldRef> {
        let metadata = std::collections::HashMap::from([(crate::PG_TYPE_METADATA.to_string(), "regtype".to_string())]);
        Ok(Arc::new(Field::new(self.name(), DataType::Utf8, false).with_metadata(metadata)))
    }

    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let name = match args.arg_fields.first() {
            Some(field) if field.data_type() == &DataType::Null => "unknown".to_string(),
            Some(field) => format_type(i64::from(crate::pg_types::pg_type(field).0), None),
            None => return Err(datafusion::error::DataFusionError::Plan("pg_typeof takes one argument".into())),
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// `has_…_privilege(role, object, privileges)`: `holds` answers each row from the roles, owners
/// and grants read once for the batch; a NULL argument is a NULL answer.
fn privilege_function(
    name: &str,
    engine: &Arc<Engine>,
    holds: fn(&Engine, &crate::auth::privileges::Access, &str, &str, &str) -> crate::Result<bool>,
) -> datafusion::logical_expr::ScalarUDF {
    let engine = engine.clone();
    create_udf(
        name,
        vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let external = |e: crate::EngineError| datafusion::error::DataFusionError::External(Box::new(e));
                let access = engine.access().map_err(external)?;
                let strings = |array: &ArrayRef| arrow::compute::cast(array, &DataType::Utf8);
                let (roles, objects, wanted) = (strings(&arrays[0])?, strings(&arrays[1])?, strings(&arrays[2])?);
                let (roles, objects, wanted) = (roles.as_string::<i32>(), objects.as_string::<i32>(), wanted.as_string::<i32>());
                let mut answers = arrow::array::BooleanBuilder::with_capacity(roles.len());
                for row in 0..roles.len() {
                    if roles.is_null(row) || objects.is_null(row) || wanted.is_null(row) {
                        answers.append_null();
                        continue;
                    }
                    answers.append_value(holds(&engine, &access, roles.value(row), objects.value(row), wanted.value(row)).map_err(external)?);
                }
                Ok(Arc::new(answers.finish()) as ArrayRef)
            })
        }),
    )
}

/// Registers the functions with a session's context.
pub fn register(context: &SessionContext, engine: &Arc<Engine>) {
    context.register_udf(datafusion::logical_expr::ScalarUDF::from(PgTypeof {
        signature: datafusion::logical_expr::Signature::any(1, Volatility::Immutable),
    }));
    context.register_udf(datafusion::logical_expr::ScalarUDF::from(ExpandArray {
        signature: datafusion::logical_expr::Signature::any(1, Volatility::Immutable),
    }));
    let catalog = engine.clone();
    context.register_udf(create_udf(
        "pg_table_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let oids = int64s(&arrays[0])?;
                let names = relation_names(&catalog);
                let visible: BooleanArray = oids.iter().map(|oid| oid.and_then(|oid| table_is_visible(&names, oid))).collect();
                Ok(Arc::new(visible) as ArrayRef)
            })
        }),
    ));
    // `pg_get_expr(expression, relation)`: PostgreSQL stores expressions as node trees and
    // decompiles them; the catalog here keeps their text, which is the answer.
    context.register_udf(create_udf(
        "pg_get_expr",
        vec![DataType::Utf8, DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| Ok(args[0].clone())),
    ));
    context.register_udf(create_udf(
        "obj_description",
        vec![DataType::Int64, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let catalogs = arrays[1].as_string::<i32>();
                let descriptions: StringArray = int64s(&arrays[0])?
                    .into_iter()
                    .enumerate()
                    .map(|(row, oid)| oid.zip(catalogs.is_valid(row).then(|| catalogs.value(row))).and_then(|(oid, catalog)| crate::pg_catalog::description(oid, catalog)))
                    .collect();
                Ok(Arc::new(descriptions) as ArrayRef)
            })
        }),
    ));
    context.register_udf(text_of_oid("pg_size_pretty", Volatility::Immutable, |bytes| Some(crate::pg_catalog::size_pretty(bytes))));
    for name in ["pg_table_size", "pg_relation_size", "pg_total_relation_size"] {
        let sizes = engine.clone();
        context.register_udf(create_udf(
            name,
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Volatile,
            Arc::new(move |args: &[ColumnarValue]| {
                rows_of(args, |arrays| {
                    let sizes = crate::pg_catalog::relation_sizes(&sizes, &int64s(&arrays[0])?)
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                    Ok(Arc::new(arrow::array::Int64Array::from(sizes)) as ArrayRef)
                })
            }),
        ));
    }
    context.register_udf(create_udf(
        "pg_type_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let visible: BooleanArray = int64s(&arrays[0])?
                    .into_iter()
                    .map(|oid| oid.and_then(|oid| crate::pg_types::TYPES.iter().any(|t| i64::from(t.oid) == oid || i64::from(t.array) == oid).then_some(true)))
                    .collect();
                Ok(Arc::new(visible) as ArrayRef)
            })
        }),
    ));
    // The two tablespaces live in the data directory: PostgreSQL answers '' for them.
    context.register_udf(text_of_oid("pg_tablespace_location", Volatility::Immutable, |oid| [1663, 1664].contains(&oid).then(String::new)));
    context.register_udf(privilege_function("has_schema_privilege", engine, |_, access, role, schema, wanted| {
        crate::auth::privileges::has_schema_privilege(access, role, schema, wanted)
    }));
    context.register_udf(privilege_function("has_table_privilege", engine, crate::auth::privileges::has_table_privilege));
    // Relations by OID: `x::regclass` (a relation's name, or the number for an unknown OID, as
    // PostgreSQL prints it), primary key indexes' and constraints' definitions.
    let named = engine.clone();
    context.register_udf(create_udf(
        "pg_regclass_name",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let relations = relation_names(&named);
                let names: StringArray = int64s(&arrays[0])?.into_iter().map(|oid| oid.map(|oid| relation_name(&relations, oid))).collect();
                Ok(Arc::new(names) as ArrayRef)
            })
        }),
    ));
    // A relation's or type's name to its OID: `'bids'::regclass` and `'int4'::regtype` fail for
    // an unknown name (42P01, 42704), `to_regclass` and `to_regtype` answer NULL.
    let relation_oid = |engine: &Arc<Engine>| {
        let engine = engine.clone();
        move |name: &str| crate::pg_catalog::relation_oid(&engine, name)
    };
    let type_oid = |name: &str| crate::pg_types::type_oid_by_name(name).map(i64::from);
    context.register_udf(name_to_oid("pg_regclass_oid", relation_oid(engine), Some(|name: &str| crate::EngineError::UndefinedTable(name.to_string()))));
    context.register_udf(name_to_oid("to_regclass", relation_oid(engine), None));
    context.register_udf(name_to_oid("pg_regtype_oid", type_oid, Some(|name: &str| crate::EngineError::UndefinedObject(format!("type \"{name}\" does not exist")))));
    context.register_udf(name_to_oid("to_regtype", type_oid, None));
    let views = engine.clone();
    context.register_udf(text_of_oid("pg_get_viewdef", Volatility::Stable, move |oid| crate::pg_catalog::view_definition(&views, oid)));
    context.register_udf(text_of_oid("pg_regnamespace_name", Volatility::Immutable, |oid| {
        Some(match oid {
            crate::pg_types::PG_CATALOG_NAMESPACE => "pg_catalog".to_string(),
            crate::pg_catalog::PUBLIC_NAMESPACE => "public".to_string(),
            crate::pg_catalog::INFORMATION_SCHEMA_NAMESPACE => "information_schema".to_string(),
            other => other.to_string(),
        })
    }));
    let indexes = engine.clone();
    context.register_udf(create_udf(
        "pg_get_indexdef",
        vec![DataType::Int64, DataType::Int32, DataType::Boolean],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let columns = arrow::compute::cast(&arrays[1], &DataType::Int32)?;
                let columns = columns.as_primitive::<Int32Type>();
                let definitions: StringArray = int64s(&arrays[0])?
                    .into_iter()
                    .enumerate()
                    .map(|(row, oid)| match (oid, columns.is_valid(row)) {
                        (Some(oid), true) => crate::pg_catalog::index_definition(&indexes, oid, columns.value(row)),
                        _ => None,
                    })
                    .collect();
                Ok(Arc::new(definitions) as ArrayRef)
            })
        }),
    ));
    let constraints = engine.clone();
    context.register_udf(create_udf(
        "pg_get_constraintdef",
        vec![DataType::Int64, DataType::Boolean],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let definitions: StringArray = int64s(&arrays[0])?
                    .into_iter()
                    .map(|oid| oid.and_then(|oid| crate::pg_catalog::constraint_definition(&constraints, oid)))
                    .collect();
                Ok(Arc::new(definitions) as ArrayRef)
            })
        }),
    ));
    // Nothing can be published (there is no logical replication) and there are no extended
    // statistics: PostgreSQL's answers for such relations and OIDs.
    context.register_udf(create_udf(
        "pg_relation_is_publishable",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| Ok(Arc::new(int64s(&arrays[0])?.into_iter().map(|oid| oid.map(|_| false)).collect::<BooleanArray>()) as ArrayRef))
        }),
    ));
    context.register_udf(create_udf(
        "pg_get_statisticsobjdef_columns",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| Ok(Arc::new(StringArray::from(vec![None::<&str>; arrays[0].len()])) as ArrayRef))
        }),
    ));
    let owners = engine.clone();
    context.register_udf(create_udf(
        "pg_get_userbyid",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let roles = owners.storage().catalog().list_roles().map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                let names: StringArray = int64s(&arrays[0])?.into_iter().map(|oid| oid.map(|oid| user_by_id(&roles, oid))).collect();
                Ok(Arc::new(names) as ArrayRef)
            })
        }),
    ));
    context.register_udf(create_udf(
        "format_type",
        vec![DataType::Int64, DataType::Int32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let oids = int64s(&arrays[0])?;
                let typmods = arrow::compute::cast(&arrays[1], &DataType::Int32)?;
                let typmods = typmods.as_primitive::<Int32Type>();
                let names: StringArray = oids
                    .iter()
                    .enumerate()
                    .map(|(row, oid)| oid.map(|oid| format_type(oid, typmods.is_valid(row).then(|| typmods.value(row)))))
                    .collect();
                Ok(Arc::new(names) as ArrayRef)
            })
        }),
    ));
    context.register_udf(create_udf(
        "pg_encoding_to_char",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let codes = arrow::compute::cast(&arrays[0], &DataType::Int32)?;
                // The server's one encoding, and PostgreSQL's answer for any other number.
                let names: StringArray =
                    codes.as_primitive::<Int32Type>().iter().map(|code| code.map(|c| if c == 6 { "UTF8" } else { "" })).collect();
                Ok(Arc::new(names) as ArrayRef)
            })
        }),
    ));
    context.register_udf(create_udf(
        "quote_literal",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let text = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
                let quoted: StringArray = text.as_string::<i32>().iter().map(|value| value.map(quote_literal)).collect();
                Ok(Arc::new(quoted) as ArrayRef)
            })
        }),
    ));
    context.register_udf(create_udf(
        "current_schema",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some("public".into()))))),
    ));
    context.register_udf(create_udf(
        crate::sql::postgres_meaning::LIKE_ESCAPE,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let patterns = arrays[0].as_string::<i32>();
                let escapes = arrays[1].as_string::<i32>();
                let mut rewritten = StringBuilder::with_capacity(patterns.len(), 16);
                for (pattern, escape) in patterns.iter().zip(escapes.iter()) {
                    match (pattern, escape) {
                        (Some(pattern), Some(escape)) => rewritten.append_value(
                            like_pattern_with_backslash(pattern, escape).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?,
                        ),
                        _ => rewritten.append_null(),
                    }
                }
                Ok(Arc::new(rewritten.finish()) as ArrayRef)
            })
        }),
    ));
    context.register_udf(create_udf(
        crate::pg_types::UNKNOWN_SETTING,
        vec![DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        // Never folded while planning: it fails for a name that reaches it.
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let names = arrays[0].as_string::<i32>();
                let missing_ok = arrays[1].as_boolean();
                for row in 0..names.len() {
                    if names.is_valid(row) && !(missing_ok.is_valid(row) && missing_ok.value(row)) {
                        let error = crate::EngineError::UndefinedObject(format!("unrecognized configuration parameter \"{}\"", names.value(row)));
                        return Err(datafusion::error::DataFusionError::External(Box::new(error)));
                    }
                }
                Ok(arrow::array::new_null_array(&DataType::Utf8, names.len()))
            })
        }),
    ));
    context.register_udf(create_udf(
        "quote_ident",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let quoted: StringArray = arrays[0].as_string::<i32>().iter().map(|name| name.map(crate::pg_catalog::quote_ident)).collect();
                Ok(Arc::new(quoted) as ArrayRef)
            })
        }),
    ));
    let identifier_parts = Arc::new(Field::new("item", DataType::Utf8, true));
    context.register_udf(create_udf(
        "parse_ident",
        vec![DataType::Utf8],
        DataType::List(identifier_parts.clone()),
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let mut lists = ListBuilder::new(StringBuilder::new()).with_field(identifier_parts.clone());
                for text in arrays[0].as_string::<i32>() {
                    match text {
                        None => lists.append_null(),
                        Some(text) => {
                            let parts = parse_ident(text).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                            lists.append_value(parts.into_iter().map(Some));
                        }
                    }
                }
                Ok(Arc::new(lists.finish()) as ArrayRef)
            })
        }),
    ));
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    context.register_udf(create_udf(
        "current_schemas",
        vec![DataType::Boolean],
        DataType::List(item),
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let implicit = arrays[0].as_boolean();
                let mut lists = ListBuilder::new(StringBuilder::new());
                for row in 0..implicit.len() {
                    if implicit.is_null(row) {
                        lists.append_null();
                        continue;
                    }
                    if implicit.value(row) {
                        lists.values().append_value("pg_catalog");
                    }
                    lists.values().append_value("public");
                    lists.append(true);
                }
                Ok(Arc::new(lists.finish()) as ArrayRef)
            })
        }),
    ));
}

/// `quote_literal(text)` as PostgreSQL writes it: quotes doubled, and a string with a backslash
/// written as an escape string (`E'a\\b'`) with its backslashes doubled.
/// A LIKE pattern written with `escape` as its escape character (PostgreSQL's `LIKE p ESCAPE e`)
/// rewritten with a backslash, the only escape DataFusion's LIKE reads. An empty `escape` means
/// no escape character: every backslash is then literal.
pub fn like_pattern_with_backslash(pattern: &str, escape: &str) -> crate::Result<String> {
    let mut escape_chars = escape.chars();
    let escape = match (escape_chars.next(), escape_chars.next()) {
        (None, _) => None,
        (Some(c), None) => Some(c),
        _ => return Err(crate::EngineError::InvalidEscapeSequence("invalid escape string".into())),
    };
    let mut rewritten = String::with_capacity(pattern.len() + 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            let Some(escaped) = chars.next() else {
                return Err(crate::EngineError::InvalidEscapeSequence("LIKE pattern must not end with escape character".into()));
            };
            rewritten.push('\\');
            rewritten.push(escaped);
        } else if c == '\\' {
            rewritten.push_str("\\\\");
        } else {
            rewritten.push(c);
        }
    }
    Ok(rewritten)
}

/// PostgreSQL's `parse_ident`: a qualified identifier's parts, unquoted names folded to lower
/// case, quoted ones kept (with `""` as a quote).
pub fn parse_ident(text: &str) -> crate::Result<Vec<String>> {
    let invalid = || crate::EngineError::InvalidParameter(format!("string is not a valid identifier: \"{text}\""));
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(invalid()),
                }
            }
            if part.is_empty() {
                return Err(invalid());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(invalid());
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(parts),
            Some('.') => while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            },
            Some(_) => return Err(invalid()),
        }
    }
}

pub fn quote_literal(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        quoted.push('E');
    }
    quoted.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_are_quoted_as_postgres_quotes_them() {
        // quote_literal(…) as PostgreSQL 15 answers.
        assert_eq!(super::quote_literal("it's"), "'it''s'");
        assert_eq!(super::quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(super::quote_literal(""), "''");
    }

    #[test]
    fn qualified_identifiers_are_parsed_as_postgres_parses_them() {
        // parse_ident(…) as PostgreSQL 15 answers.
        assert_eq!(super::parse_ident("public.\"Foo\".bar").unwrap(), ["public", "Foo", "bar"]);
        assert_eq!(super::parse_ident("Bids").unwrap(), ["bids"]);
        assert_eq!(super::parse_ident(" a . \"b\"\"c\" ").unwrap(), ["a", "b\"c"]);
        for bad in ["", "a.", ".a", "\"a", "\"\"", "a b"] {
            assert_eq!(super::parse_ident(bad).unwrap_err().sqlstate(), "22023", "{bad:?}");
        }
    }

    #[test]
    fn like_patterns_get_a_backslash_for_their_escape_character() {
        use super::like_pattern_with_backslash as rewrite;
        assert_eq!(rewrite("pg/_%", "/").unwrap(), "pg\\_%");
        assert_eq!(rewrite("a//b", "/").unwrap(), "a\\/b");
        assert_eq!(rewrite("a\\b", "/").unwrap(), "a\\\\b", "a backslash that is not the escape is literal");
        assert_eq!(rewrite("a\\_", "").unwrap(), "a\\\\_", "no escape character");
        assert_eq!(rewrite("x_", "\\").unwrap(), "x_");
        assert_eq!(rewrite("ab/", "/").unwrap_err().sqlstate(), "22025");
        assert_eq!(rewrite("ab", "//").unwrap_err().sqlstate(), "22025");
    }
}
