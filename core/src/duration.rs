//! Go's `time.ParseDuration`, which Reloader uses for `pause-period` and
//! which users therefore already write (`5m`, `1h30m`, `1.5h`, `300ms`).

use std::time::Duration;

use thiserror::Error;

use crate::quote::UserValue;

/// The value is kept cut (it may come from an annotation of any size).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {0}: {WANT_DURATION}")]
pub struct DurationError(pub UserValue);

/// What a duration should look like, for messages that quote the value themselves.
pub const WANT_DURATION: &str = "want a Go duration such as 30s, 5m or 1h30m";

/// Parses a Go duration. Negative durations are refused: nothing here waits
/// a negative time.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(UserValue::new(input));
    let mut s = input.trim();
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    let mut total_nanos: f64 = 0.0;
    while !s.is_empty() {
        let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let value: f64 = s[..num_end].parse().map_err(|_| err())?;
        s = &s[num_end..];
        let unit_end = s.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        total_nanos += value * scale;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Formats a duration the short way (`1s`, `250ms`, `1m30s`) for messages and configs.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse_go_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("2s500ms"), Ok(Duration::from_millis(2500)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "5", "m", "5 m", "-5m", "5d", "1..2s", "abc"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formats_short() {
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
