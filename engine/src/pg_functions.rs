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

/// Registers the functions with a session's context.
pub fn register(context: &SessionContext, engine: &Arc<Engine>) {
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
    let privileges = engine.clone();
    context.register_udf(create_udf(
        "has_table_privilege",
        vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let external = |e: crate::EngineError| datafusion::error::DataFusionError::External(Box::new(e));
                let access = privileges.access().map_err(external)?;
                let strings = |array: &ArrayRef| arrow::compute::cast(array, &DataType::Utf8);
                let (roles, tables, wanted) = (strings(&arrays[0])?, strings(&arrays[1])?, strings(&arrays[2])?);
                let (roles, tables, wanted) = (roles.as_string::<i32>(), tables.as_string::<i32>(), wanted.as_string::<i32>());
                let mut answers = arrow::array::BooleanBuilder::with_capacity(roles.len());
                for row in 0..roles.len() {
                    if roles.is_null(row) || tables.is_null(row) || wanted.is_null(row) {
                        answers.append_null();
                        continue;
                    }
                    let answer = crate::auth::privileges::has_table_privilege(&privileges, &access, roles.value(row), tables.value(row), wanted.value(row));
                    answers.append_value(answer.map_err(external)?);
                }
                Ok(Arc::new(answers.finish()) as ArrayRef)
            })
        }),
    ));
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
    let lookup = engine.clone();
    context.register_udf(create_udf(
        "pg_regclass_oid",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let names = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
                let mut oids = arrow::array::Int64Builder::with_capacity(names.len());
                for name in names.as_string::<i32>() {
                    match name {
                        None => oids.append_null(),
                        Some(name) => match crate::pg_catalog::relation_oid(&lookup, name) {
                            Some(oid) => oids.append_value(oid),
                            None => {
                                let error = crate::EngineError::UndefinedTable(name.to_string());
                                return Err(datafusion::error::DataFusionError::External(Box::new(error)));
                            }
                        },
                    }
                }
                Ok(Arc::new(oids.finish()) as ArrayRef)
            })
        }),
    ));
    context.register_udf(create_udf(
        "pg_regnamespace_name",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            rows_of(args, |arrays| {
                let names: StringArray = int64s(&arrays[0])?
                    .into_iter()
                    .map(|oid| {
                        oid.map(|oid| match oid {
                            crate::pg_types::PG_CATALOG_NAMESPACE => "pg_catalog".to_string(),
                            crate::pg_catalog::PUBLIC_NAMESPACE => "public".to_string(),
                            other => other.to_string(),
                        })
                    })
                    .collect();
                Ok(Arc::new(names) as ArrayRef)
            })
        }),
    ));
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
}
