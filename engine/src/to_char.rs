//! `to_char(timestamp, template)` with PostgreSQL's templates, formatting each day (or minute)
//! once.
//!
//! The template (`'YYYY-MM-DD HH24:MI:SS'`) is translated into the strftime format DataFusion's
//! `to_char` takes ([`pg_template`]); a pattern the translation does not know is refused with
//! `0A000` rather than copied as text, since PostgreSQL would read it as a pattern.
//!
//! DataFusion's `to_char` formats every row with chrono, parsing the format string each time.
//! Grouping by a formatted day (`GROUP BY to_char(date_time, '%Y-%m-%d')`, Nexmark q15–q17) is
//! the common use, and the rows of a batch mostly fall on few days or minutes: when the format
//! names nothing finer than the day (or the minute) and the timestamp has no time zone, a row in
//! the same day (minute) as the previous one takes the previous row's text, and only the first
//! row of each day (minute) is formatted — by the same arrow formatter DataFusion uses, so the
//! texts are the same. Everything else goes to DataFusion's function unchanged.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::functions::datetime::to_char::ToCharFunc;
use datafusion::logical_expr::{ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature};

/// PostgreSQL's template patterns and their strftime equivalents, longest first where one is
/// the start of another (`DDD` before `DD`, `HH24` before `HH`). `FM` before a numeric pattern
/// drops its padding (strftime's `-` flag).
const PATTERNS: &[(&str, &str, bool)] = &[
    // (pattern, strftime, takes FM)
    ("YYYY", "Y", false),
    ("HH24", "H", true),
    ("HH12", "I", true),
    ("DDD", "j", true),
    ("YY", "y", false),
    ("MM", "m", true),
    ("DD", "d", true),
    ("HH", "I", true),
    ("MI", "M", true),
    ("SS", "S", true),
    ("MS", "3f", false),
    ("US", "6f", false),
    ("AM", "p", false),
    ("PM", "p", false),
    ("am", "P", false),
    ("pm", "P", false),
    ("Mon", "b", false),
    ("Dy", "a", false),
];

/// A PostgreSQL `to_char` template as a strftime format: patterns translated, double-quoted
/// text and other non-letters copied (`%` escaped); an unknown pattern is refused.
pub(crate) fn pg_template(template: &str) -> DfResult<String> {
    let refuse = |at: &str| {
        let pattern: String = at.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        datafusion::error::DataFusionError::External(Box::new(crate::EngineError::Sqlstate {
            code: "0A000",
            message: format!("to_char template pattern \"{pattern}\" is not supported"),
        }))
    };
    let mut format = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
            for literal in rest[1..end.min(rest.len())].trim_end_matches('"').chars() {
                if literal == '%' {
                    format.push('%');
                }
                format.push(literal);
            }
            rest = &rest[end.min(rest.len())..];
            continue;
        }
        if !c.is_ascii_alphabetic() {
            if c == '%' {
                format.push('%');
            }
            format.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (fill_mode, body) = match rest.strip_prefix("FM") {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let Some((pattern, strftime, takes_fm)) = PATTERNS.iter().find(|(p, _, _)| body.starts_with(p)) else {
            return Err(refuse(body));
        };
        if fill_mode && !takes_fm {
            return Err(refuse(rest));
        }
        format.push('%');
        if fill_mode {
            format.push('-');
        }
        format.push_str(strftime);
        rest = &body[pattern.len()..];
    }
    Ok(format)
}

/// The template argument translated ([`pg_template`]), scalar or one a row.
fn translate_template(template: &ColumnarValue) -> DfResult<ColumnarValue> {
    match template {
        ColumnarValue::Scalar(scalar) => match scalar.try_as_str() {
            Some(Some(text)) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(pg_template(text)?)))),
            _ => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        },
        ColumnarValue::Array(array) => {
            let text = arrow::compute::cast(array, &DataType::Utf8)?;
            let mut builder = StringBuilder::with_capacity(text.len(), text.len() * 16);
            for value in text.as_string::<i32>().iter() {
                match value {
                    Some(value) => builder.append_value(pg_template(value)?),
                    None => builder.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(builder.finish())))
        }
    }
}

/// `to_char` reading PostgreSQL's templates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToChar {
    inner: ToCharFunc,
    /// Format a row only when it falls on another day (minute) than the previous one.
    once_per_bucket: bool,
}

impl Default for ToChar {
    fn default() -> Self {
        Self { inner: ToCharFunc::new(), once_per_bucket: true }
    }
}

impl ToChar {
    /// DataFusion's own formatting of every row, over the translated template: what the
    /// Nexmark harness measures the engine against (its batch baseline).
    pub fn every_row() -> Self {
        Self { inner: ToCharFunc::new(), once_per_bucket: false }
    }
}

/// The finest field a format names, when it is at most a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granularity {
    Day,
    Minute,
}

impl Granularity {
    fn seconds(self) -> i64 {
        match self {
            Granularity::Day => 86_400,
            Granularity::Minute => 60,
        }
    }
}

/// The granularity of a chrono strftime format, or `None` when it names anything finer than a
/// minute (seconds, fractions, epoch seconds, time zones) or anything not known here.
fn granularity(format: &str) -> Option<Granularity> {
    let mut finest = Granularity::Day;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut spec = chars.next()?;
        // Padding flags: `%-d`, `%_m`, `%0e`.
        if matches!(spec, '-' | '_' | '0') {
            spec = chars.next()?;
        }
        match spec {
            'Y' | 'C' | 'y' | 'm' | 'b' | 'B' | 'h' | 'd' | 'e' | 'a' | 'A' | 'w' | 'u' | 'U' | 'W' | 'G' | 'g' | 'V' | 'j'
            | 'D' | 'x' | 'F' | 'v' | '%' | 'n' | 't' => {}
            'H' | 'k' | 'I' | 'l' | 'P' | 'p' | 'M' | 'R' => finest = Granularity::Minute,
            _ => return None,
        }
    }
    Some(finest)
}

/// Units of a timestamp in a second.
fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// Formats a time-zone-less timestamp array, formatting once per day or minute.
fn format_by_bucket(array: &ArrayRef, unit: TimeUnit, format: &str, bucket: Granularity) -> DfResult<ArrayRef> {
    // What DataFusion's to_char gives the arrow formatter for a timestamp.
    let options = FormatOptions::new().with_timestamp_format(Some(format)).with_timestamp_tz_format(Some(format));
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
    let values = arrow::compute::cast(array, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    let width = per_second(unit) * bucket.seconds();
    let mut builder = StringBuilder::with_capacity(array.len(), array.len() * (format.len() + 10));
    let mut last: Option<(i64, String)> = None;
    for row in 0..array.len() {
        if array.is_null(row) {
            builder.append_null();
            continue;
        }
        let key = values.value(row).div_euclid(width);
        match &last {
            Some((previous, text)) if *previous == key => builder.append_value(text),
            _ => {
                let mut text = String::new();
                formatter.value(row).write(&mut text)?;
                builder.append_value(&text);
                last = Some((key, text));
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if let Some(template) = args.args.get_mut(1) {
            *template = translate_template(template)?;
        }
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = Arc::new(field.as_ref().clone().with_data_type(DataType::Utf8));
        }
        if let (true, [ColumnarValue::Array(array), ColumnarValue::Scalar(ScalarValue::Utf8(Some(format)))]) =
            (self.once_per_bucket, args.args.as_slice())
        {
            if let (DataType::Timestamp(unit, None), Some(bucket)) = (array.data_type(), granularity(format)) {
                return Ok(ColumnarValue::Array(format_by_bucket(array, *unit, format, bucket)?));
            }
        }
        self.inner.invoke_with_args(args)
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{StringArray, TimestampMicrosecondArray, TimestampSecondArray};
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    use super::*;

    fn call(function: &dyn ScalarUDFImpl, array: ArrayRef, format: &str) -> DfResult<Vec<Option<String>>> {
        let rows = array.len();
        let args = ScalarFunctionArgs {
            arg_fields: vec![
                Arc::new(Field::new("t", array.data_type().clone(), true)),
                Arc::new(Field::new("f", DataType::Utf8, false)),
            ],
            args: vec![ColumnarValue::Array(array), ColumnarValue::Scalar(ScalarValue::Utf8(Some(format.into())))],
            number_rows: rows,
            return_field: Arc::new(Field::new("to_char", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let out = function.invoke_with_args(args)?.into_array(rows)?;
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        Ok(out.iter().map(|v| v.map(str::to_string)).collect())
    }

    #[test]
    fn formats_as_datafusion_does() {
        // Rows a few seconds to hours apart across days, years and the epoch, out of order in
        // places, with NULLs.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut values: Vec<Option<i64>> = Vec::new();
        let mut at: i64 = -3 * 86_400_000_000;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let step = match seed % 10 {
                0 => -(((seed >> 8) % 7_200_000_000) as i64),
                1 => ((seed >> 8) % 400 * 86_400_000_000) as i64,
                _ => ((seed >> 8) % 90_000_000) as i64,
            };
            at += step;
            values.push(if seed % 97 == 0 { None } else { Some(at) });
        }
        let micros: ArrayRef = Arc::new(TimestampMicrosecondArray::from(values.clone()));
        let seconds: ArrayRef = Arc::new(TimestampSecondArray::from(values.iter().map(|v| v.map(|v| v.div_euclid(1_000_000))).collect::<Vec<_>>()));
        let ours = ToChar::default();
        let theirs = ToCharFunc::new();
        for (template, format) in [
            ("YYYY-MM-DD", "%Y-%m-%d"),
            ("HH24:MI", "%H:%M"),
            ("FMDD Mon YYYY, Dy HH12:MI AM", "%-d %b %Y, %a %I:%M %p"),
            ("YYYY-MM-DD HH24:MI:SS", "%Y-%m-%d %H:%M:%S"),
            ("DDD|\"day %\" DD", "%j|day %% %d"),
        ] {
            assert_eq!(pg_template(template).unwrap(), format);
            for array in [&micros, &seconds] {
                let expected = call(&theirs, array.clone(), format).unwrap();
                assert_eq!(call(&ours, array.clone(), template).unwrap(), expected, "{template} over {}", array.data_type());
            }
        }
        // PostgreSQL would read these letters as patterns: refused, not copied.
        for template in ["%Y-%m-%d", "Month", "FMYYYY", "Q"] {
            assert!(pg_template(template).is_err(), "{template}");
        }
        assert_eq!(granularity("%Y-%m-%d"), Some(Granularity::Day));
        assert_eq!(granularity("%H:%M"), Some(Granularity::Minute));
        assert_eq!(granularity("%H:%M:%S"), None);
        assert_eq!(granularity("%Y-%m-%d %z"), None);
        assert_eq!(granularity("%"), None);
    }
}
