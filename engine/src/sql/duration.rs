//! Durations as users write them: `'7 days'`, `'5 seconds'`, `'1 hour 30 minutes'`, `'250ms'`.

use crate::{EngineError, Result};

/// Parses a duration into microseconds.
pub fn parse_duration_us(text: &str) -> Result<i64> {
    let invalid = || {
        EngineError::InvalidParameter(format!(
            "invalid duration \"{text}\": expected a number and a unit, e.g. '7 days', '5 seconds', '250 ms'"
        ))
    };
    let mut total: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_end == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        rest = rest[number_end..].trim_start();
        let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = rest[..unit_end].to_ascii_lowercase();
        rest = rest[unit_end..].trim_start().trim_start_matches(',').trim_start();
        let unit_us: f64 = match unit.as_str() {
            "us" | "microsecond" | "microseconds" => 1.0,
            "ms" | "millisecond" | "milliseconds" => 1e3,
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1e6,
            "m" | "min" | "mins" | "minute" | "minutes" => 60e6,
            "h" | "hour" | "hours" => 3600e6,
            "d" | "day" | "days" => 86_400e6,
            "w" | "week" | "weeks" => 7.0 * 86_400e6,
            _ => return Err(invalid()),
        };
        let part = number * unit_us;
        if !part.is_finite() || part > i64::MAX as f64 / 2.0 {
            return Err(invalid());
        }
        total = total.checked_add(part as i64).ok_or_else(invalid)?;
    }
    Ok(total)
}

/// The largest whole unit that divides `ms`: `7 days`, `90 minutes`, `1500 ms`.
pub fn format_duration_ms(ms: u64) -> String {
    let units: [(u64, &str, &str); 5] =
        [(86_400_000, "day", "days"), (3_600_000, "hour", "hours"), (60_000, "minute", "minutes"), (1000, "second", "seconds"), (1, "ms", "ms")];
    for (size, one, many) in units {
        if ms >= size && ms % size == 0 {
            let n = ms / size;
            return format!("{n} {}", if n == 1 { one } else { many });
        }
    }
    "0 ms".into()
}

/// Parses a size: a number of bytes, optionally with a unit (`KB`, `MB`, `GB`, `TB`, powers of
/// 1024, also written `KiB`…).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let invalid = || {
        EngineError::InvalidParameter(format!("invalid size \"{text}\": expected e.g. '1048576', '512 MB', '10 GB'"))
    };
    let text = text.trim();
    let number_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: u64 = text[..number_end].parse().map_err(|_| invalid())?;
    let multiplier: u64 = match text[number_end..].trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        "tb" | "tib" => 1 << 40,
        _ => return Err(invalid()),
    };
    number.checked_mul(multiplier).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("7 days").unwrap(), 7 * 86_400 * 1_000_000);
        assert_eq!(parse_duration_us("5 seconds").unwrap(), 5_000_000);
        assert_eq!(parse_duration_us("1 hour 30 minutes").unwrap(), 5_400_000_000);
        assert_eq!(parse_duration_us("250ms").unwrap(), 250_000);
        assert_eq!(parse_duration_us("1.5 s").unwrap(), 1_500_000);
        assert!(parse_duration_us("soon").is_err());
        assert!(parse_duration_us("").is_err());
        assert!(parse_duration_us("5 fortnights").is_err());
        assert_eq!(format_duration_ms(7 * 86_400_000), "7 days");
        assert_eq!(format_duration_ms(90 * 60_000), "90 minutes");
        assert_eq!(format_duration_ms(1500), "1500 ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("512 MB").unwrap(), 512 << 20);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999 TB").is_err());
    }
}
