//! SQL column types of `CREATE TOPIC` and the Arrow types that store them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, DataType as SqlType, ExactNumberInfo, TimezoneInfo,
};

use crate::{EngineError, Result};

/// Field metadata key naming the Postgres type a column was declared with, where the Arrow type
/// alone does not say it (`jsonb` is stored as UTF-8 text).
pub const PG_TYPE_METADATA: &str = "streamhouse.pg_type";

/// Precision and scale of an unconstrained `numeric`.
pub const NUMERIC_DEFAULT: (u8, i8) = (38, 10);

/// The Arrow field for a declared column.
pub fn column_field(name: &str, sql_type: &SqlType, nullable: bool) -> Result<Field> {
    let (data_type, pg_type) = arrow_type(sql_type)?;
    let field = Field::new(name, data_type, nullable);
    Ok(match pg_type {
        Some(pg) => field.with_metadata(HashMap::from([(PG_TYPE_METADATA.to_string(), pg.to_string())])),
        None => field,
    })
}

fn arrow_type(sql_type: &SqlType) -> Result<(DataType, Option<&'static str>)> {
    let unsupported = || EngineError::NotSupported(format!("column type {sql_type}"));
    let data_type = match sql_type {
        SqlType::Bool | SqlType::Boolean => DataType::Boolean,
        SqlType::SmallInt(_) | SqlType::Int2(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => DataType::Int32,
        SqlType::BigInt(_) | SqlType::Int8(_) => DataType::Int64,
        SqlType::Real | SqlType::Float4 => DataType::Float32,
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 => DataType::Float64,
        SqlType::Float(info) => match info {
            ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float32,
            _ => DataType::Float64,
        },
        SqlType::Numeric(info) | SqlType::Decimal(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => NUMERIC_DEFAULT,
                ExactNumberInfo::Precision(p) => (*p as u8, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p as u8, *s as i8),
            };
            if precision == 0 || precision > 38 || scale < 0 || scale as u8 > precision {
                return Err(EngineError::InvalidDefinition(format!(
                    "NUMERIC precision {precision} and scale {scale} must satisfy 1 <= precision <= 38 and 0 <= scale <= precision"
                )));
            }
            DataType::Decimal128(precision, scale)
        }
        SqlType::Text
        | SqlType::Varchar(_)
        | SqlType::CharacterVarying(_)
        | SqlType::Char(_)
        | SqlType::Character(_)
        | SqlType::String(_) => DataType::Utf8,
        SqlType::Bytea => DataType::Binary,
        SqlType::Date => DataType::Date32,
        SqlType::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            DataType::Time64(TimeUnit::Microsecond)
        }
        SqlType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) | SqlType::Datetime(_) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        SqlType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        SqlType::Interval { .. } => DataType::Interval(IntervalUnit::MonthDayNano),
        SqlType::JSON | SqlType::JSONB => return Ok((DataType::Utf8, Some("jsonb"))),
        SqlType::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
            "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "int2" => DataType::Int16,
            "int4" => DataType::Int32,
            "int8" => DataType::Int64,
            "float4" => DataType::Float32,
            "float8" => DataType::Float64,
            "bool" => DataType::Boolean,
            "jsonb" | "json" => return Ok((DataType::Utf8, Some("jsonb"))),
            _ => return Err(unsupported()),
        },
        SqlType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::Parenthesis(inner),
        ) => {
            let (element, pg) = arrow_type(inner)?;
            if pg.is_some() || matches!(element, DataType::List(_)) {
                return Err(unsupported());
            }
            DataType::List(Arc::new(Field::new("item", element, true)))
        }
        _ => return Err(unsupported()),
    };
    Ok((data_type, None))
}
