//! Postgres text input format into Arrow arrays: COPY fields and text-format bind parameters.
//! Whole columns are converted at once (Arrow's vectorized casts where its syntax matches
//! Postgres', our own parsers where it does not); the first bad value is then located for the
//! error message.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Int64Array, IntervalMonthDayNanoBuilder, ListArray, StringArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use arrow::util::display::FormatOptions;

/// A value that could not be parsed: its row within the column and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    pub row: usize,
    pub message: String,
}

type ParseResult<T> = std::result::Result<T, InvalidValue>;

/// Parses a column of text values (`None` is NULL) as `target`.
pub fn parse_column(values: &[Option<&str>], target: &DataType) -> ParseResult<ArrayRef> {
    match target {
        DataType::Boolean => {
            let mut builder = BooleanBuilder::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match value {
                    None => builder.append_null(),
                    Some(text) => builder.append_value(parse_bool(text).ok_or_else(|| InvalidValue {
                        row,
                        message: format!("invalid input syntax for type boolean: \"{text}\""),
                    })?),
                }
            }
            Ok(Arc::new(builder.finish()))
        }
        DataType::Binary => {
            let mut builder = BinaryBuilder::with_capacity(values.len(), 0);
            for (row, value) in values.iter().enumerate() {
                match value {
                    None => builder.append_null(),
                    Some(text) => builder.append_value(parse_bytea(text).map_err(|message| InvalidValue { row, message })?),
                }
            }
            Ok(Arc::new(builder.finish()))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let mut builder = IntervalMonthDayNanoBuilder::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match value {
                    None => builder.append_null(),
                    Some(text) => builder.append_value(parse_interval(text).map_err(|message| InvalidValue { row, message })?),
                }
            }
            Ok(Arc::new(builder.finish()))
        }
        DataType::List(field) => {
            let mut offsets = vec![0i32];
            let mut elements: Vec<Option<String>> = Vec::new();
            let mut element_rows: Vec<usize> = Vec::new();
            let mut validity = Vec::with_capacity(values.len());
            for (row, value) in values.iter().enumerate() {
                match value {
                    None => validity.push(false),
                    Some(text) => {
                        validity.push(true);
                        for element in parse_array_literal(text).map_err(|message| InvalidValue { row, message })? {
                            elements.push(element);
                            element_rows.push(row);
                        }
                    }
                }
                offsets.push(elements.len() as i32);
            }
            let borrowed: Vec<Option<&str>> = elements.iter().map(|e| e.as_deref()).collect();
            let child = parse_column(&borrowed, field.data_type())
                .map_err(|e| InvalidValue { row: element_rows.get(e.row).copied().unwrap_or(0), message: e.message })?;
            let list = ListArray::try_new(
                field.clone(),
                OffsetBuffer::new(offsets.into()),
                child,
                Some(NullBuffer::from(validity)),
            )
            .map_err(|e| InvalidValue { row: 0, message: e.to_string() })?;
            Ok(Arc::new(list))
        }
        DataType::Timestamp(_, Some(_)) => {
            let normalized: Vec<Option<String>> = values.iter().map(|v| v.map(normalize_zone)).collect();
            let borrowed: Vec<Option<&str>> = normalized.iter().map(|v| v.as_deref()).collect();
            cast_text(&borrowed, target)
        }
        // PostgreSQL reads a time of day and a zone after a date and ignores them (pgjdbc's
        // setDate sends `2024-01-01 +00`); a timestamp without time zone ignores a zone.
        DataType::Date32 | DataType::Timestamp(_, None) if values.iter().flatten().any(|v| has_time_or_zone(v)) => {
            let keep_time = matches!(target, DataType::Timestamp(..));
            let normalized: Vec<Option<String>> = values.iter().map(|v| v.map(|text| without_zone(text, keep_time))).collect();
            let borrowed: Vec<Option<&str>> = normalized.iter().map(|v| v.as_deref()).collect();
            let parsed = match (target, fast_column(&borrowed, parse_plain_timestamp_us)) {
                (DataType::Timestamp(TimeUnit::Microsecond, None), Some(parsed)) => Ok(Arc::new(TimestampMicrosecondArray::from(parsed)) as ArrayRef),
                _ => cast_text(&borrowed, target),
            };
            parsed.map_err(|e| InvalidValue {
                message: format!("invalid input syntax for type {}: \"{}\"", pg_type_name(target), values[e.row].unwrap_or_default()),
                row: e.row,
            })
        }
        DataType::Utf8 => Ok(Arc::new(values.iter().copied().collect::<StringArray>())),
        DataType::Int64 => match fast_column(values, parse_plain_i64) {
            Some(parsed) => Ok(Arc::new(Int64Array::from(parsed))),
            None => cast_text(values, target),
        },
        DataType::Timestamp(TimeUnit::Microsecond, None) => match fast_column(values, parse_plain_timestamp_us) {
            Some(parsed) => Ok(Arc::new(TimestampMicrosecondArray::from(parsed))),
            None => cast_text(values, target),
        },
        _ => cast_text(values, target),
    }
}

/// The column parsed by a fast parser of the plainest spellings, or `None` as soon as one value
/// is spelled otherwise (the caller then takes Arrow's cast, which accepts every spelling and
/// locates errors). The fast parsers accept only text whose value Arrow reads the same way.
fn fast_column<T>(values: &[Option<&str>], parse: fn(&[u8]) -> Option<T>) -> Option<Vec<Option<T>>> {
    values.iter().map(|v| v.map_or(Some(None), |text| parse(text.as_bytes()).map(Some))).collect()
}

/// Digits as a number: `-?[0-9]{1,18}` (18 digits cannot overflow an i64).
fn parse_plain_i64(text: &[u8]) -> Option<i64> {
    const DIGITS_MAX: usize = 18;
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > DIGITS_MAX {
        return None;
    }
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Some(if negative { -value } else { value })
}

/// `YYYY-MM-DD HH:MM:SS` with an optional fraction of 1 to 6 digits, a valid date and time of
/// day (no leap second), as microseconds since the epoch.
fn parse_plain_timestamp_us(text: &[u8]) -> Option<i64> {
    const FRACTION_DIGITS_MAX: usize = 6;
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits.iter().try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if text.len() < 19 || separators.iter().any(|&(at, byte)| text[at] != byte) {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let fraction = match &text[19..] {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= FRACTION_DIGITS_MAX => {
            number(20..text.len())? * 10u32.pow((FRACTION_DIGITS_MAX - digits.len()) as u32)
        }
        _ => return None,
    };
    let time = chrono::NaiveTime::from_hms_micro_opt(number(11..13)?, number(14..16)?, number(17..19)?, fraction)?;
    Some(date.and_time(time).and_utc().timestamp_micros())
}

/// Arrow's cast from strings, strict: a bad value is an error, not a NULL.
fn cast_text(values: &[Option<&str>], target: &DataType) -> ParseResult<ArrayRef> {
    let trimmed: Vec<Option<&str>> = if matches!(target, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        values.to_vec()
    } else {
        values.iter().map(|v| v.map(str::trim)).collect()
    };
    let strings: ArrayRef = Arc::new(StringArray::from(trimmed.clone()));
    let options = CastOptions { safe: false, format_options: FormatOptions::default() };
    match cast_with_options(&strings, target, &options) {
        Ok(array) => Ok(array),
        Err(error) => {
            // Find the first value that fails on its own, for the error message.
            for (row, value) in trimmed.iter().enumerate() {
                let Some(text) = value else { continue };
                let single: ArrayRef = Arc::new(StringArray::from(vec![*text]));
                if cast_with_options(&single, target, &options).is_err() {
                    return Err(InvalidValue {
                        row,
                        message: format!("invalid input syntax for type {}: \"{text}\"", pg_type_name(target)),
                    });
                }
            }
            Err(InvalidValue { row: 0, message: error.to_string() })
        }
    }
}

/// The Postgres name of the type that stores as `data_type`, for messages.
pub fn pg_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary => "bytea".into(),
        DataType::Date32 => "date".into(),
        DataType::Time64(_) => "time".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Interval(_) => "interval".into(),
        DataType::List(field) => format!("{}[]", pg_type_name(field.data_type())),
        other => other.to_string(),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// `\x0aff` (hex format) or the escape format (`abc\\000`).
pub fn parse_bytea(text: &str) -> std::result::Result<Vec<u8>, String> {
    if let Some(hex) = text.strip_prefix("\\x").or_else(|| text.strip_prefix("\\X")) {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if digits.len() % 2 != 0 {
            return Err(format!("invalid hexadecimal data: odd number of digits in \"{text}\""));
        }
        return digits
            .chunks(2)
            .map(|pair| {
                let hex = std::str::from_utf8(pair).unwrap_or("zz");
                u8::from_str_radix(hex, 16).map_err(|_| format!("invalid hexadecimal digit in \"{text}\""))
            })
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'\\' {
            out.push(bytes[index]);
            index += 1;
        } else if bytes.get(index + 1) == Some(&b'\\') {
            out.push(b'\\');
            index += 2;
        } else if index + 3 < bytes.len() + 0 && bytes[index + 1..index + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let octal = std::str::from_utf8(&bytes[index + 1..index + 4]).unwrap_or("0");
            out.push(u8::from_str_radix(octal, 8).map_err(|_| format!("invalid input syntax for type bytea: \"{text}\""))?);
            index += 4;
        } else {
            return Err(format!("invalid input syntax for type bytea: \"{text}\""));
        }
    }
    Ok(out)
}

/// `+00` → `+00:00`, so that Arrow's parser accepts Postgres' output.
/// Whether a date or timestamp's text goes on after its date with a zone (or, for a date, a time).
fn has_time_or_zone(text: &str) -> bool {
    let (_, rest) = split_date(text.trim());
    let rest = rest.trim();
    !rest.is_empty() && (zone_suffix(rest) > 0 || !rest.contains(':'))
}

/// `2024-01-01 10:00:00+02` as its date and what follows (split at the first space or `T`).
fn split_date(text: &str) -> (&str, &str) {
    match text.char_indices().find(|&(at, c)| at >= 8 && (c == ' ' || c == 'T')) {
        Some((at, _)) => (&text[..at], &text[at + 1..]),
        None => (text, ""),
    }
}

/// The length of a zone at the end of a time (`Z`, `UTC`, `+00`, `-08:30`, `+0530`), 0 if none.
fn zone_suffix(text: &str) -> usize {
    // No allocation: COPY asks this of every timestamp it reads.
    for name in ["UTC", "GMT", "Z"] {
        if text.len() >= name.len() && text.as_bytes()[text.len() - name.len()..].eq_ignore_ascii_case(name.as_bytes()) {
            return name.len();
        }
    }
    match text.rfind(['+', '-']) {
        Some(sign) if text.len() - sign >= 2 && text[sign + 1..].chars().all(|c| c.is_ascii_digit() || c == ':') && text.len() - sign <= 6 => {
            text.len() - sign
        }
        _ => 0,
    }
}

/// A date's or timestamp's text without its zone (and, `!keep_time`, without its time of day),
/// as PostgreSQL reads a date or a timestamp without time zone. Text that does not look so is
/// returned as it is (and fails to parse there).
fn without_zone(text: &str, keep_time: bool) -> String {
    let trimmed = text.trim();
    let (date, rest) = split_date(trimmed);
    let rest = rest.trim();
    let time = rest[..rest.len() - zone_suffix(rest)].trim();
    let is_time = time.is_empty() || (time.contains(':') && time.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '.'));
    match (is_time, keep_time) {
        (false, _) => trimmed.to_string(),
        (true, false) => date.to_string(),
        (true, true) if time.is_empty() => date.to_string(),
        (true, true) => format!("{date} {time}"),
    }
}

fn normalize_zone(text: &str) -> String {
    let trimmed = text.trim();
    let bytes = trimmed.as_bytes();
    if bytes.len() > 3 {
        let sign = bytes[bytes.len() - 3];
        if (sign == b'+' || sign == b'-') && bytes[bytes.len() - 2..].iter().all(u8::is_ascii_digit) {
            return format!("{trimmed}:00");
        }
    }
    trimmed.to_string()
}

/// Intervals: `1 year 2 mons 3 days 04:05:06.5`, `5 seconds`, `-1 day`, `00:00:01`.
pub fn parse_interval(text: &str) -> std::result::Result<IntervalMonthDayNano, String> {
    let invalid = || format!("invalid input syntax for type interval: \"{text}\"");
    let mut months: i64 = 0;
    let mut days: i64 = 0;
    let mut nanos: f64 = 0.0;
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.is_empty() {
        return Err(invalid());
    }
    let mut index = 0;
    while index < tokens.len() {
        let token = tokens[index];
        if token.contains(':') {
            let negative = token.starts_with('-');
            let parts: Vec<&str> = token.trim_start_matches(['-', '+']).split(':').collect();
            let number = |s: &str| s.parse::<f64>().map_err(|_| invalid());
            let (h, m, s) = match parts.as_slice() {
                [h, m] => (number(h)?, number(m)?, 0.0),
                [h, m, s] => (number(h)?, number(m)?, number(s)?),
                _ => return Err(invalid()),
            };
            let total = (h * 3600.0 + m * 60.0 + s) * 1e9;
            nanos += if negative { -total } else { total };
            index += 1;
            continue;
        }
        let (number_text, unit) = match token.find(|c: char| c.is_ascii_alphabetic()) {
            Some(split) if split > 0 => (&token[..split], token[split..].to_string()),
            _ => {
                let unit = tokens.get(index + 1).ok_or_else(invalid)?;
                index += 1;
                (token, unit.to_string())
            }
        };
        let value: f64 = number_text.parse().map_err(|_| invalid())?;
        match unit.to_ascii_lowercase().trim_end_matches(',') {
            "year" | "years" | "y" => months += (value * 12.0) as i64,
            "mon" | "mons" | "month" | "months" => months += value as i64,
            "week" | "weeks" | "w" => days += (value * 7.0) as i64,
            "day" | "days" | "d" => days += value as i64,
            "hour" | "hours" | "h" => nanos += value * 3.6e12,
            "minute" | "minutes" | "min" | "mins" | "m" => nanos += value * 6e10,
            "second" | "seconds" | "sec" | "secs" | "s" => nanos += value * 1e9,
            "millisecond" | "milliseconds" | "ms" => nanos += value * 1e6,
            "microsecond" | "microseconds" | "us" => nanos += value * 1e3,
            _ => return Err(invalid()),
        }
        index += 1;
    }
    let months = i32::try_from(months).map_err(|_| invalid())?;
    let days = i32::try_from(days).map_err(|_| invalid())?;
    if !nanos.is_finite() || nanos.abs() > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(IntervalMonthDayNano::new(months, days, nanos.round() as i64))
}

/// Elements of a one-dimensional array literal `{a,"b c",NULL}`.
pub fn parse_array_literal(text: &str) -> std::result::Result<Vec<Option<String>>, String> {
    let invalid = |why: &str| format!("malformed array literal: \"{text}\" ({why})");
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| invalid("must start with { and end with }"))?;
    let mut elements = Vec::new();
    if inner.trim().is_empty() {
        return Ok(elements);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or_else(|| invalid("unterminated escape"))?),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(invalid("unterminated quoted element")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' || c == '"' {
                    return Err(invalid("nested arrays are not supported"));
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        elements.push(if !quoted && value.eq_ignore_ascii_case("null") { None } else { Some(value) });
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return Err(invalid("unexpected character after element")),
        }
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Int32Type, TimeUnit, TimestampMicrosecondType};

    #[test]
    fn dates_and_timestamps_without_zone_ignore_a_zone_as_postgres_does() {
        // Each answer as PostgreSQL 15 reads the same text (`'…'::date`, `'…'::timestamp`).
        let dates = ["2024-01-01 +00", "2024-01-01", "2024-01-01 10:11:12", "2024-01-01T10:11:12Z", "2024-01-01 10:11:12.5-08:30"];
        let parsed = parse_column(&dates.map(Some), &DataType::Date32).unwrap();
        let days = parsed.as_primitive::<arrow::datatypes::Date32Type>();
        assert!(days.iter().all(|d| d == Some(19723)), "{days:?}");
        let timestamps = ["2024-02-03 04:05:06.789 +00", "2024-02-03 04:05:06.789+05:30", "2024-02-03T04:05:06.789Z", "2024-02-03 04:05:06.789"];
        let parsed = parse_column(&timestamps.map(Some), &DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap();
        let micros = parsed.as_primitive::<TimestampMicrosecondType>();
        assert!(micros.iter().all(|t| t == Some(1_706_933_106_789_000)), "{micros:?}");
        for bad in ["2024-01-01 nonsense", "2024-01-01 +00 x", "yesterday +00"] {
            let error = parse_column(&[Some(bad)], &DataType::Date32).unwrap_err();
            assert_eq!(error.message, format!("invalid input syntax for type date: \"{bad}\""));
        }
    }

    #[test]
    fn fast_paths_read_values_as_arrows_cast_does() {
        // Arrow's cast is the oracle: every value, plain or not, must come out the same.
        let integers = [
            "0", "-0", "7", "-42", "123456789012345678", "-123456789012345678", "1234567890123456789",
            "9223372036854775807", "-9223372036854775808", "+5", " 5", "5 ", "007",
        ];
        let timestamps = [
            "2023-11-14 01:02:03", "2023-11-14 01:02:03.5", "2023-11-14 01:02:03.123456", "2023-11-14 01:02:03.1234567",
            "2024-02-29 23:59:59.999999", "1969-12-31 23:59:59.9", "1900-01-01 00:00:00", "2023-11-14T01:02:03",
            " 2023-11-14 01:02:03", "2023-11-14 01:02:03 ", "0001-01-01 00:00:00.000001", "9999-12-31 23:59:59",
        ];
        for (texts, target) in [
            (&integers[..], DataType::Int64),
            (&timestamps[..], DataType::Timestamp(TimeUnit::Microsecond, None)),
        ] {
            for text in texts {
                let fast = parse_column(&[Some(text), None], &target).unwrap();
                let arrow = cast_text(&[Some(text), None], &target).unwrap();
                assert_eq!(&fast, &arrow, "{text} as {target}");
            }
        }
        // Spellings no value has: the fast paths decline them, and the error is Arrow's.
        for (text, target) in [
            ("12a", DataType::Int64),
            ("-", DataType::Int64),
            ("99999999999999999999", DataType::Int64),
            ("2023-02-29 00:00:00", DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("2023-11-14 24:00:00", DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("2023-13-01 00:00:00", DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("2023-11-14 01:02:03.", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ] {
            let arrow = cast_text(&[Some(text)], &target).unwrap_err();
            let expected = InvalidValue { row: 1, message: arrow.message };
            assert_eq!(parse_column(&[None, Some(text)], &target).unwrap_err(), expected, "{text} is refused at its row");
        }
        let strings = parse_column(&[Some(" a "), None, Some("")], &DataType::Utf8).unwrap();
        assert_eq!(&strings, &cast_text(&[Some(" a "), None, Some("")], &DataType::Utf8).unwrap());
    }

    #[test]
    fn parses_and_locates_bad_values() {
        let column = parse_column(&[Some("1"), None, Some(" 3 ")], &DataType::Int64).unwrap();
        assert_eq!(column.as_any().downcast_ref::<Int64Array>().unwrap(), &Int64Array::from(vec![Some(1), None, Some(3)]));
        let error = parse_column(&[Some("1"), Some("x")], &DataType::Int64).unwrap_err();
        assert_eq!(error.row, 1);
        assert!(error.message.contains("bigint"), "{}", error.message);
    }

    #[test]
    fn postgres_specific_syntax() {
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let column = parse_column(&[Some("2024-01-02 03:04:05.5+00")], &tz).unwrap();
        assert_eq!(column.as_primitive::<TimestampMicrosecondType>().value(0), 1_704_164_645_500_000);
        assert_eq!(parse_bytea("\\x00ff").unwrap(), vec![0, 255]);
        assert_eq!(parse_bytea("a\\\\b\\001").unwrap(), b"a\\b\x01".to_vec());
        assert_eq!(parse_interval("1 year 2 mons 3 days 04:00:00.5").unwrap(), IntervalMonthDayNano::new(14, 3, 14_400_500_000_000));
        assert_eq!(parse_array_literal("{1, NULL,\"a,b\"}").unwrap(), vec![Some("1".into()), None, Some("a,b".into())]);
        let list_type = DataType::List(Arc::new(arrow::datatypes::Field::new("item", DataType::Int32, true)));
        let list = parse_column(&[Some("{1,2}"), None], &list_type).unwrap();
        assert_eq!(list.as_list::<i32>().value(0).as_primitive::<Int32Type>().values().to_vec(), vec![1, 2]);
        assert!(list.is_null(1));
        assert!(parse_column(&[Some("maybe")], &DataType::Boolean).is_err());
    }
}
