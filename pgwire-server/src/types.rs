//! Postgres types on the wire: the OID and size of each Arrow type, values in the binary
//! format, and bind parameters (text or binary) into DataFusion scalars.

use std::sync::Arc;

use streamhouse_engine::arrow::array::{Array, ArrayRef, AsArray};
use streamhouse_engine::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use streamhouse_engine::datafusion::common::ScalarValue;
use streamhouse_engine::text::input::parse_column;
use streamhouse_engine::text::output::{is_null, write_text};
use streamhouse_engine::EngineError;

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between the Unix epoch and the Postgres epoch.
const PG_EPOCH_DAYS: i32 = 10_957;

pub use streamhouse_engine::pg_types::{array_oid, element_oid, oid, pg_type};
use streamhouse_engine::pg_types::pg_type_of;

/// The Arrow type a client's declared parameter OID stands for.
pub fn data_type_for_oid(type_oid: u32) -> Option<DataType> {
    Some(match type_oid {
        oid::BOOL => DataType::Boolean,
        oid::INT2 => DataType::Int16,
        oid::INT4 | oid::OID => DataType::Int32,
        oid::INT8 => DataType::Int64,
        oid::FLOAT4 => DataType::Float32,
        oid::FLOAT8 => DataType::Float64,
        oid::NUMERIC => DataType::Decimal128(38, 10),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::CHAR | oid::JSON | oid::JSONB => DataType::Utf8,
        oid::BYTEA => DataType::Binary,
        oid::DATE => DataType::Date32,
        oid::TIME => DataType::Time64(TimeUnit::Microsecond),
        oid::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        oid::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        oid::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        other => {
            let element = data_type_for_oid(element_oid(other)?)?;
            DataType::List(Arc::new(Field::new("item", element, true)))
        }
    })
}

/// The OID reported for a parameter of this Arrow type.
pub fn oid_for_data_type(data_type: &DataType) -> u32 {
    pg_type_of(data_type).0
}

fn protocol_error(message: impl Into<String>) -> EngineError {
    EngineError::InvalidText(message.into())
}

/// Appends the binary form of `array[row]` (non-null) to `out`.
pub fn write_binary(field: &Field, array: &ArrayRef, row: usize, out: &mut Vec<u8>) -> Result<(), EngineError> {
    let (type_oid, _, _) = pg_type(field);
    if type_oid == oid::JSONB {
        let mut text = String::new();
        write_text(array, row, &mut text)?;
        out.push(1);
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    if type_oid == oid::REGTYPE {
        // A type's binary form is its OID; the text names it.
        let mut text = String::new();
        write_text(array, row, &mut text)?;
        let named = streamhouse_engine::pg_types::type_oid_by_name(&text).unwrap_or(oid::UNKNOWN);
        out.extend_from_slice(&named.to_be_bytes());
        return Ok(());
    }
    write_binary_value(array.as_ref(), row, out)
}

fn write_binary_value(array: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<(), EngineError> {
    match array.data_type() {
        DataType::Boolean => out.push(array.as_boolean().value(row) as u8),
        DataType::Int8 => out.extend_from_slice(&(array.as_primitive::<Int8Type>().value(row) as i16).to_be_bytes()),
        DataType::UInt8 => out.extend_from_slice(&(array.as_primitive::<UInt8Type>().value(row) as i16).to_be_bytes()),
        DataType::Int16 => out.extend_from_slice(&array.as_primitive::<Int16Type>().value(row).to_be_bytes()),
        DataType::UInt16 => out.extend_from_slice(&(array.as_primitive::<UInt16Type>().value(row) as i32).to_be_bytes()),
        DataType::Int32 => out.extend_from_slice(&array.as_primitive::<Int32Type>().value(row).to_be_bytes()),
        DataType::UInt32 => out.extend_from_slice(&(array.as_primitive::<UInt32Type>().value(row) as i64).to_be_bytes()),
        DataType::Int64 => out.extend_from_slice(&array.as_primitive::<Int64Type>().value(row).to_be_bytes()),
        DataType::UInt64 => {
            let value = i64::try_from(array.as_primitive::<UInt64Type>().value(row))
                .map_err(|_| EngineError::NumericOutOfRange("bigint out of range".into()))?;
            out.extend_from_slice(&value.to_be_bytes());
        }
        DataType::Float32 => out.extend_from_slice(&array.as_primitive::<Float32Type>().value(row).to_be_bytes()),
        DataType::Float64 => out.extend_from_slice(&array.as_primitive::<Float64Type>().value(row).to_be_bytes()),
        DataType::Decimal128(_, scale) => write_numeric(array.as_primitive::<Decimal128Type>().value(row), *scale, out),
        DataType::Binary => out.extend_from_slice(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => out.extend_from_slice(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => out.extend_from_slice(array.as_binary_view().value(row)),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            out.extend_from_slice(&(days - PG_EPOCH_DAYS).to_be_bytes());
        }
        DataType::Time64(_) | DataType::Time32(_) => {
            let micros = time_micros(array, row);
            out.extend_from_slice(&micros.to_be_bytes());
        }
        DataType::Timestamp(unit, _) => {
            let value = timestamp_value(array, row, unit);
            out.extend_from_slice(&(value - PG_EPOCH_US).to_be_bytes());
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let value = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            out.extend_from_slice(&(value.nanoseconds / 1000).to_be_bytes());
            out.extend_from_slice(&value.days.to_be_bytes());
            out.extend_from_slice(&value.months.to_be_bytes());
        }
        DataType::List(field) => {
            let values = array.as_list::<i32>().value(row);
            write_binary_array(field, &values, out)?;
        }
        DataType::LargeList(field) => {
            let values = array.as_list::<i64>().value(row);
            write_binary_array(field, &values, out)?;
        }
        _ => {
            // Sent as text (its OID is text), which is also its binary form.
            let mut text = String::new();
            let array: ArrayRef = streamhouse_engine::arrow::array::make_array(array.to_data());
            write_text(&array, row, &mut text)?;
            out.extend_from_slice(text.as_bytes());
        }
    }
    Ok(())
}

fn time_micros(array: &dyn Array, row: usize) -> i64 {
    use streamhouse_engine::arrow::datatypes::{Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType};
    match array.data_type() {
        DataType::Time64(TimeUnit::Nanosecond) => array.as_primitive::<Time64NanosecondType>().value(row) / 1000,
        DataType::Time64(_) => array.as_primitive::<Time64MicrosecondType>().value(row),
        DataType::Time32(TimeUnit::Second) => array.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000,
        _ => array.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1000,
    }
}

fn timestamp_value(array: &dyn Array, row: usize, unit: &TimeUnit) -> i64 {
    use streamhouse_engine::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row).saturating_mul(1_000_000),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row).saturating_mul(1000),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row).div_euclid(1000),
    }
}

fn write_binary_array(field: &Field, values: &ArrayRef, out: &mut Vec<u8>) -> Result<(), EngineError> {
    let (element, _, _) = pg_type(field);
    let has_null = values.null_count() > 0;
    out.extend_from_slice(&(if values.is_empty() { 0i32 } else { 1 }).to_be_bytes());
    out.extend_from_slice(&(has_null as i32).to_be_bytes());
    out.extend_from_slice(&element.to_be_bytes());
    if !values.is_empty() {
        out.extend_from_slice(&(values.len() as i32).to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
    }
    for index in 0..values.len() {
        if is_null(values.as_ref(), index) {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            continue;
        }
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        write_binary(field, values, index, out)?;
        let length = (out.len() - start - 4) as i32;
        out[start..start + 4].copy_from_slice(&length.to_be_bytes());
    }
    Ok(())
}

/// Postgres' binary numeric: base-10000 digits with a weight, sign and display scale.
fn write_numeric(value: i128, scale: i8, out: &mut Vec<u8>) {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let (integer, fraction) = if digits.len() > scale {
        (digits[..digits.len() - scale].to_string(), digits[digits.len() - scale..].to_string())
    } else {
        ("0".to_string(), format!("{digits:0>scale$}"))
    };
    // Integer part: groups of four from the right; fraction: groups of four from the left.
    let integer_padded = format!("{}{}", "0".repeat((4 - integer.len() % 4) % 4), integer);
    let mut groups: Vec<i16> = integer_padded.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or("0").parse().unwrap_or(0)).collect();
    let mut weight = groups.len() as i16 - 1;
    let fraction_padded = format!("{}{}", fraction, "0".repeat((4 - fraction.len() % 4) % 4));
    groups.extend(fraction_padded.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or("0").parse::<i16>().unwrap_or(0)));
    while groups.first() == Some(&0) && !groups.is_empty() {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if negative && !groups.is_empty() { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(scale as i16).to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
}

/// The text form of a binary numeric.
fn numeric_text(bytes: &[u8]) -> Result<String, EngineError> {
    let bad = || protocol_error("invalid binary numeric parameter");
    let read = |at: usize| -> Result<i16, EngineError> {
        bytes.get(at..at + 2).map(|b| i16::from_be_bytes([b[0], b[1]])).ok_or_else(bad)
    };
    let count = read(0)?.max(0) as usize;
    let weight = read(2)? as i32;
    let sign = read(4)? as u16;
    let scale = read(6)?.max(0) as usize;
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let mut integer = String::new();
    let mut fraction = String::new();
    for index in 0..count {
        let digit = read(8 + index * 2)?;
        if !(0..10000).contains(&digit) {
            return Err(bad());
        }
        let position = weight - index as i32;
        if position >= 0 {
            integer.push_str(&format!("{digit:04}"));
        } else {
            if fraction.is_empty() {
                fraction.push_str(&"0000".repeat((-position - 1) as usize));
            }
            fraction.push_str(&format!("{digit:04}"));
        }
    }
    // Integer groups past the last digit given are zeros.
    let integer_groups = (weight + 1).max(0) as usize;
    integer.push_str(&"0000".repeat(integer_groups.saturating_sub(count)));
    let integer = integer.trim_start_matches('0');
    fraction.truncate(scale);
    while fraction.len() < scale {
        fraction.push('0');
    }
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str(if integer.is_empty() { "0" } else { integer });
    if scale > 0 {
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// Decodes one bind parameter. `declared` is the type the client named (OID, 0 if none),
/// `expected` the type the statement needs (if known).
pub fn decode_parameter(
    value: Option<&[u8]>,
    binary: bool,
    declared: u32,
    expected: Option<&DataType>,
) -> Result<ScalarValue, EngineError> {
    let target = expected.cloned().or_else(|| data_type_for_oid(declared)).unwrap_or(DataType::Utf8);
    let Some(bytes) = value else {
        return Ok(ScalarValue::try_from(&target).unwrap_or(ScalarValue::Null));
    };
    if !binary {
        let text = std::str::from_utf8(bytes).map_err(|_| EngineError::InvalidText("invalid byte sequence for encoding \"UTF8\" in parameter".into()))?;
        return text_scalar(text, &target);
    }
    let wire_oid = if declared != 0 { declared } else { oid_for_data_type(&target) };
    let scalar = decode_binary(bytes, wire_oid)?;
    if scalar.data_type() == target {
        Ok(scalar)
    } else if let ScalarValue::Utf8(Some(text)) = &scalar {
        text_scalar(text, &target)
    } else {
        scalar.cast_to(&target).map_err(EngineError::from)
    }
}

fn text_scalar(text: &str, target: &DataType) -> Result<ScalarValue, EngineError> {
    let array = parse_column(&[Some(text)], target).map_err(|e| EngineError::InvalidText(e.message))?;
    Ok(ScalarValue::try_from_array(&array, 0)?)
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], EngineError> {
    bytes.try_into().map_err(|_| protocol_error(format!("binary parameter has {} bytes, expected {N}", bytes.len())))
}

fn decode_binary(bytes: &[u8], type_oid: u32) -> Result<ScalarValue, EngineError> {
    Ok(match type_oid {
        oid::BOOL => ScalarValue::Boolean(Some(fixed::<1>(bytes)?[0] != 0)),
        oid::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(fixed(bytes)?))),
        oid::INT4 | oid::OID => ScalarValue::Int32(Some(i32::from_be_bytes(fixed(bytes)?))),
        oid::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(bytes)?))),
        oid::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(fixed(bytes)?))),
        oid::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(bytes)?))),
        oid::BYTEA => ScalarValue::Binary(Some(bytes.to_vec())),
        oid::DATE => ScalarValue::Date32(Some(i32::from_be_bytes(fixed(bytes)?) + PG_EPOCH_DAYS)),
        oid::TIME => ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(fixed(bytes)?))),
        oid::TIMESTAMP => ScalarValue::TimestampMicrosecond(Some(i64::from_be_bytes(fixed(bytes)?) + PG_EPOCH_US), None),
        oid::TIMESTAMPTZ => {
            ScalarValue::TimestampMicrosecond(Some(i64::from_be_bytes(fixed(bytes)?) + PG_EPOCH_US), Some("UTC".into()))
        }
        oid::INTERVAL => {
            let raw = fixed::<16>(bytes)?;
            let micros = i64::from_be_bytes(raw[0..8].try_into().unwrap_or_default());
            let days = i32::from_be_bytes(raw[8..12].try_into().unwrap_or_default());
            let months = i32::from_be_bytes(raw[12..16].try_into().unwrap_or_default());
            ScalarValue::IntervalMonthDayNano(Some(
                streamhouse_engine::arrow::datatypes::IntervalMonthDayNano::new(months, days, micros.saturating_mul(1000)),
            ))
        }
        oid::NUMERIC => ScalarValue::Utf8(Some(numeric_text(bytes)?)),
        oid::JSONB => {
            let text = bytes.strip_prefix(&[1]).ok_or_else(|| protocol_error("unsupported jsonb version"))?;
            ScalarValue::Utf8(Some(String::from_utf8(text.to_vec()).map_err(|_| protocol_error("invalid UTF-8 in jsonb"))?))
        }
        other if element_oid(other).is_some() => decode_binary_array(bytes, other)?,
        _ => ScalarValue::Utf8(Some(
            String::from_utf8(bytes.to_vec()).map_err(|_| EngineError::InvalidText("invalid byte sequence for encoding \"UTF8\" in parameter".into()))?,
        )),
    })
}

fn decode_binary_array(bytes: &[u8], array_type: u32) -> Result<ScalarValue, EngineError> {
    let bad = || protocol_error("malformed binary array parameter");
    let int = |at: usize| -> Result<i32, EngineError> {
        bytes.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(bad)
    };
    let element = element_oid(array_type).ok_or_else(bad)?;
    let element_type = data_type_for_oid(element).ok_or_else(bad)?;
    let dimensions = int(0)?;
    let mut values = Vec::new();
    if dimensions > 1 {
        return Err(EngineError::NotSupported("multi-dimensional arrays".into()));
    }
    if dimensions == 1 {
        let count = int(12)?;
        if count < 0 || count as usize > bytes.len() {
            return Err(bad());
        }
        let mut position = 20;
        for _ in 0..count {
            let length = int(position)?;
            position += 4;
            if length < 0 {
                values.push(ScalarValue::try_from(&element_type)?);
                continue;
            }
            let end = position.checked_add(length as usize).filter(|&e| e <= bytes.len()).ok_or_else(bad)?;
            let value = decode_binary(&bytes[position..end], element)?;
            values.push(match value {
                ScalarValue::Utf8(Some(text)) if element_type != DataType::Utf8 => text_scalar(&text, &element_type)?,
                other => other,
            });
            position = end;
        }
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(&values, &element_type)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_round_trips() {
        for (value, scale, text) in [
            (12345i128, 2i8, "123.45"),
            (-5, 0, "-5"),
            (1, 4, "0.0001"),
            (0, 2, "0.00"),
            (100_000_000, 0, "100000000"),
            (123_456_789_012, 6, "123456.789012"),
        ] {
            let mut out = Vec::new();
            write_numeric(value, scale, &mut out);
            assert_eq!(numeric_text(&out).unwrap(), text, "value {value} scale {scale}");
        }
    }

    #[test]
    fn parameters_decode_to_expected_types() {
        let value = decode_parameter(Some(b"42"), false, 0, Some(&DataType::Int64)).unwrap();
        assert_eq!(value, ScalarValue::Int64(Some(42)));
        let value = decode_parameter(Some(&7i32.to_be_bytes()), true, oid::INT4, Some(&DataType::Int64)).unwrap();
        assert_eq!(value, ScalarValue::Int64(Some(7)));
        let value = decode_parameter(None, false, 0, Some(&DataType::Utf8)).unwrap();
        assert_eq!(value, ScalarValue::Utf8(None));
        assert!(decode_parameter(Some(&[1, 2]), true, oid::INT4, None).is_err());
        assert!(decode_parameter(Some(b"abc"), false, 0, Some(&DataType::Int32)).is_err());
    }
}
