//! Durations (`"90s"`, `"5m"`, `"2h"`, `"7d"`) and sizes (`"512KiB"`, `"10MiB"`) as written in
//! the configuration.

use std::time::Duration;

/// The longest duration the configuration accepts (10 years). The daemon adds durations to
/// clocks and multiplies them (a poll's budget is three timeouts): a bound far below
/// `u64::MAX` seconds keeps that arithmetic from overflowing, and no schedule needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86400);

/// A duration or a size the configuration cannot use. `text` is the value as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("`{text}` is not a duration: write e.g. \"90s\", \"5m\", \"2h\", \"7d\"")]
    NotADuration { text: String },
    #[error("`{text}` has an unknown unit: use ms, s, m, h or d")]
    DurationUnit { text: String },
    #[error("`{text}` is too long: at most 3650d")]
    TooLong { text: String },
    #[error("`{text}` is not a size: write e.g. \"512KiB\", \"10MiB\"")]
    NotASize { text: String },
    #[error("`{text}` has an unknown unit: use B, KiB, MiB or GiB")]
    SizeUnit { text: String },
    #[error("`{text}` is too large")]
    TooLarge { text: String },
}

/// A duration of `secs` seconds, if it is within [`MAX_DURATION`].
pub fn bounded_secs(secs: u64) -> Result<Duration, UnitError> {
    bounded(Duration::from_secs(secs), &secs.to_string())
}

fn bounded(d: Duration, text: &str) -> Result<Duration, UnitError> {
    if d > MAX_DURATION {
        return Err(UnitError::TooLong { text: text.into() });
    }
    Ok(d)
}

pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::NotADuration { text: text.into() })?;
    let secs_per = match unit.trim() {
        "ms" => return bounded(Duration::from_millis(n), text),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(UnitError::DurationUnit { text: text.into() }),
    };
    let secs = n
        .checked_mul(secs_per)
        .ok_or_else(|| UnitError::TooLong { text: text.into() })?;
    bounded(Duration::from_secs(secs), text)
}

pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::NotASize { text: text.into() })?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(UnitError::SizeUnit { text: text.into() }),
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge { text: text.into() })
}

/// A duration as an operator reads it: `2h 5m`, `40s`.
pub fn human(secs: i64) -> String {
    let neg = secs < 0;
    let s = secs.unsigned_abs();
    let text = if s >= 86400 {
        format!("{}d {}h", s / 86400, (s % 86400) / 3600)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    if neg {
        format!("-{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604800));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
        assert!(parse_duration("3651d").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(bounded_secs(u64::MAX).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert!(parse_size("10 parsecs").is_err());
    }

    /// The messages reach the operator through config errors; their wording is kept.
    #[test]
    fn messages() {
        let cases = [
            (
                parse_duration("5 minutes"),
                "`5 minutes` has an unknown unit: use ms, s, m, h or d",
            ),
            (
                parse_duration("soon"),
                "`soon` is not a duration: write e.g. \"90s\", \"5m\", \"2h\", \"7d\"",
            ),
            (parse_duration("3651d"), "`3651d` is too long: at most 3650d"),
            (
                parse_duration("99999999999999999999d"),
                "`99999999999999999999d` is not a duration: write e.g. \"90s\", \"5m\", \"2h\", \"7d\"",
            ),
            (
                parse_duration("9999999999999999999d"),
                "`9999999999999999999d` is too long: at most 3650d",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
        assert_eq!(
            bounded_secs(u64::MAX).unwrap_err().to_string(),
            format!("`{}` is too long: at most 3650d", u64::MAX)
        );
        let cases = [
            (
                "10 parsecs",
                "`10 parsecs` has an unknown unit: use B, KiB, MiB or GiB",
            ),
            (
                "big",
                "`big` is not a size: write e.g. \"512KiB\", \"10MiB\"",
            ),
            ("99999999999GB", "`99999999999GB` is too large"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).unwrap_err().to_string(), want);
        }
    }
}
