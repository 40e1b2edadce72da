//! Postgres text output format of Arrow values: what `psql` shows, what drivers parse from text
//! results, and what `COPY … TO STDOUT` writes.

use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, IntervalMonthDayNanoType, IntervalUnit, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::{EngineError, Result};

/// Whether `array[row]` is NULL. A `NullArray` (the type of a bare `NULL`) has no validity
/// bitmap, so `Array::is_null` says false for it.
pub fn is_null(array: &dyn Array, row: usize) -> bool {
    array.data_type() == &DataType::Null || array.is_null(row)
}

/// Writes the text form of `array[row]` into `out`. Returns false (writing nothing) for NULL.
pub fn write_text(array: &ArrayRef, row: usize, out: &mut String) -> Result<bool> {
    if is_null(array.as_ref(), row) {
        return Ok(false);
    }
    write_non_null(array.as_ref(), row, out)?;
    Ok(true)
}

/// Shortest text that reads back as the same value, as Postgres prints floats by default.
fn write_float<F: std::fmt::Display + Into<f64> + Copy>(value: F, out: &mut String) {
    let wide: f64 = value.into();
    if wide.is_nan() {
        out.push_str("NaN");
    } else if wide.is_infinite() {
        out.push_str(if wide > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = write!(out, "{value}");
    }
}

fn write_fraction(nanos: u32, out: &mut String) {
    let micros = nanos / 1000;
    if micros != 0 {
        let text = format!("{micros:06}");
        out.push('.');
        out.push_str(text.trim_end_matches('0'));
    }
}

fn write_time(time: NaiveTime, out: &mut String) {
    let _ = write!(out, "{:02}:{:02}:{:02}", time.hour(), time.minute(), time.second());
    write_fraction(time.nanosecond(), out);
}

fn write_date(date: NaiveDate, out: &mut String) {
    use chrono::Datelike;
    let year = date.year();
    if year <= 0 {
        let _ = write!(out, "{:04}-{:02}-{:02} BC", 1 - year, date.month(), date.day());
    } else {
        let _ = write!(out, "{:04}-{:02}-{:02}", year, date.month(), date.day());
    }
}

fn write_timestamp(value: NaiveDateTime, with_zone: bool, out: &mut String) {
    use chrono::Datelike;
    let date = value.date();
    let year = date.year();
    let _ = write!(out, "{:04}-{:02}-{:02} ", if year <= 0 { 1 - year } else { year }, date.month(), date.day());
    write_time(value.time(), out);
    if with_zone {
        out.push_str("+00");
    }
    if year <= 0 {
        out.push_str(" BC");
    }
}

fn timestamp_from(value: i64, unit: &TimeUnit) -> Option<NaiveDateTime> {
    let datetime = match unit {
        TimeUnit::Second => DateTime::from_timestamp(value, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(value),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(value),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(value)),
    };
    datetime.map(|d| d.naive_utc())
}

/// `1 year 2 mons 3 days 04:05:06.5`, as Postgres prints intervals.
pub fn write_interval(months: i32, days: i32, nanos: i64, out: &mut String) {
    let mut parts: Vec<String> = Vec::new();
    let years = months / 12;
    let months = months % 12;
    let plural = |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if years != 0 {
        parts.push(plural(years as i64, "year", "years"));
    }
    if months != 0 {
        parts.push(plural(months as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day", "days"));
    }
    if nanos != 0 || parts.is_empty() {
        let negative = nanos < 0;
        let total_micros = (nanos / 1000).unsigned_abs();
        let hours = total_micros / 3_600_000_000;
        let minutes = (total_micros / 60_000_000) % 60;
        let seconds = (total_micros / 1_000_000) % 60;
        let micros = total_micros % 1_000_000;
        let mut clock = format!("{}{hours:02}:{minutes:02}:{seconds:02}", if negative { "-" } else { "" });
        if micros != 0 {
            let fraction = format!("{micros:06}");
            clock.push('.');
            clock.push_str(fraction.trim_end_matches('0'));
        }
        parts.push(clock);
    }
    out.push_str(&parts.join(" "));
}

fn write_non_null(array: &dyn Array, row: usize, out: &mut String) -> Result<()> {
    let out_of_range = || EngineError::DataException(format!("value out of range for {}", array.data_type()));
    match array.data_type() {
        DataType::Boolean => out.push(if array.as_boolean().value(row) { 't' } else { 'f' }),
        DataType::Int8 => { let _ = write!(out, "{}", array.as_primitive::<Int8Type>().value(row)); }
        DataType::Int16 => { let _ = write!(out, "{}", array.as_primitive::<Int16Type>().value(row)); }
        DataType::Int32 => { let _ = write!(out, "{}", array.as_primitive::<Int32Type>().value(row)); }
        DataType::Int64 => { let _ = write!(out, "{}", array.as_primitive::<Int64Type>().value(row)); }
        DataType::UInt8 => { let _ = write!(out, "{}", array.as_primitive::<UInt8Type>().value(row)); }
        DataType::UInt16 => { let _ = write!(out, "{}", array.as_primitive::<UInt16Type>().value(row)); }
        DataType::UInt32 => { let _ = write!(out, "{}", array.as_primitive::<UInt32Type>().value(row)); }
        DataType::UInt64 => { let _ = write!(out, "{}", array.as_primitive::<UInt64Type>().value(row)); }
        DataType::Float32 => write_float(array.as_primitive::<Float32Type>().value(row), out),
        DataType::Float64 => write_float(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Decimal128(_, _) => {
            out.push_str(&array.as_primitive::<Decimal128Type>().value_as_string(row));
        }
        DataType::Utf8 => out.push_str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => out.push_str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => out.push_str(array.as_string_view().value(row)),
        DataType::Binary => write_bytea(array.as_binary::<i32>().value(row), out),
        DataType::LargeBinary => write_bytea(array.as_binary::<i64>().value(row), out),
        DataType::BinaryView => write_bytea(array.as_binary_view().value(row), out),
        DataType::Date32 => {
            let date = Date32Type::to_naive_date_opt(array.as_primitive::<Date32Type>().value(row)).ok_or_else(out_of_range)?;
            write_date(date, out);
        }
        DataType::Time32(unit) => {
            let seconds_nanos = match unit {
                TimeUnit::Second => (array.as_primitive::<Time32SecondType>().value(row) as i64, 0),
                _ => {
                    let ms = array.as_primitive::<Time32MillisecondType>().value(row) as i64;
                    (ms / 1000, (ms % 1000) * 1_000_000)
                }
            };
            let time = NaiveTime::from_num_seconds_from_midnight_opt(seconds_nanos.0 as u32, seconds_nanos.1 as u32)
                .ok_or_else(out_of_range)?;
            write_time(time, out);
        }
        DataType::Time64(unit) => {
            let nanos = match unit {
                TimeUnit::Microsecond => array.as_primitive::<Time64MicrosecondType>().value(row) * 1000,
                _ => array.as_primitive::<Time64NanosecondType>().value(row),
            };
            let time = NaiveTime::from_num_seconds_from_midnight_opt(
                (nanos / 1_000_000_000) as u32,
                (nanos % 1_000_000_000) as u32,
            )
            .ok_or_else(out_of_range)?;
            write_time(time, out);
        }
        DataType::Timestamp(unit, zone) => {
            let value = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            write_timestamp(timestamp_from(value, unit).ok_or_else(out_of_range)?, zone.is_some(), out);
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let value = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            write_interval(value.months, value.days, value.nanoseconds, out);
        }
        DataType::List(_) => write_array(&array.as_list::<i32>().value(row), out)?,
        DataType::LargeList(_) => write_array(&array.as_list::<i64>().value(row), out)?,
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(array, &options)?;
            let _ = write!(out, "{}", formatter.value(row));
        }
    }
    Ok(())
}

fn write_bytea(bytes: &[u8], out: &mut String) {
    out.reserve(2 + bytes.len() * 2);
    out.push_str("\\x");
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

/// `{1,2,NULL,"a b"}`: Postgres array literal syntax; an array of arrays as PostgreSQL writes a
/// multidimensional one, `{{1,2},{3,4}}` (inner arrays are not quoted: quoting them would double
/// the escapes at every level, exponential in the depth).
fn write_array(values: &ArrayRef, out: &mut String) -> Result<()> {
    out.push('{');
    let nested = matches!(values.data_type(), DataType::List(_) | DataType::LargeList(_));
    let mut element = String::new();
    for index in 0..values.len() {
        if index > 0 {
            out.push(',');
        }
        if nested {
            if !write_text(values, index, out)? {
                out.push_str("NULL");
            }
            continue;
        }
        element.clear();
        if !write_text(values, index, &mut element)? {
            out.push_str("NULL");
            continue;
        }
        let needs_quotes = element.is_empty()
            || element.eq_ignore_ascii_case("null")
            || element.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
        if needs_quotes {
            out.push('"');
            for c in element.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&element);
        }
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BinaryArray, Float64Array, IntervalMonthDayNanoArray, ListArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::IntervalMonthDayNano;
    use std::sync::Arc;

    fn text(array: ArrayRef, row: usize) -> Option<String> {
        let mut out = String::new();
        write_text(&array, row, &mut out).unwrap().then_some(out)
    }

    #[test]
    fn formats_like_postgres() {
        let ts = Arc::new(TimestampMicrosecondArray::from(vec![Some(1_500_000), Some(0), None]));
        assert_eq!(text(ts.clone(), 0).as_deref(), Some("1970-01-01 00:00:01.5"));
        assert_eq!(text(ts.clone(), 2), None);
        let tz = Arc::new(TimestampMicrosecondArray::from(vec![0]).with_timezone("UTC"));
        assert_eq!(text(tz, 0).as_deref(), Some("1970-01-01 00:00:00+00"));
        let floats = Arc::new(Float64Array::from(vec![1.5, f64::INFINITY, f64::NAN]));
        assert_eq!(text(floats.clone(), 0).as_deref(), Some("1.5"));
        assert_eq!(text(floats.clone(), 1).as_deref(), Some("Infinity"));
        assert_eq!(text(floats, 2).as_deref(), Some("NaN"));
        let bytes = Arc::new(BinaryArray::from(vec![&b"\x00\xff"[..]]));
        assert_eq!(text(bytes, 0).as_deref(), Some("\\x00ff"));
        let interval = Arc::new(IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(14, 3, 4 * 3_600_000_000_000 + 500_000_000)]));
        assert_eq!(text(interval, 0).as_deref(), Some("1 year 2 mons 3 days 04:00:00.5"));
        let list = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None, Some(3)])]));
        assert_eq!(text(list, 0).as_deref(), Some("{1,NULL,3}"));
        // Arrays of arrays as PostgreSQL prints `ARRAY[ARRAY[1, 2], ARRAY[3, NULL]]`.
        let inner = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), Some(2)]), Some(vec![Some(3), None])]);
        let field = Arc::new(arrow::datatypes::Field::new_list_field(inner.data_type().clone(), true));
        let outer = Arc::new(ListArray::new(field, arrow::buffer::OffsetBuffer::from_lengths([2]), Arc::new(inner), None));
        assert_eq!(text(outer, 0).as_deref(), Some("{{1,2},{3,NULL}}"));
    }
}
