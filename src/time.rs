//! Calendar times: Unix seconds to and from RFC 3339 in UTC. The calendar arithmetic is
//! jiff's; this is the one module that uses it, so that every date the program reads or
//! writes follows the same rules.
//!
//! Conversions go through jiff's civil `DateTime` rather than its `Timestamp`, because a
//! `Timestamp` stops a day short of the years 0000-9999 that an RFC 3339 time can spell.

use jiff::civil::{self, DateTime};
use jiff::SignedDuration;
use std::fmt;

const EPOCH: DateTime = civil::date(1970, 1, 1).at(0, 0, 0, 0);

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: what four digits of year can spell.
const FIRST: i64 = -62_167_219_200;
const LAST: i64 = 253_402_300_799;

/// The civil time in UTC of Unix seconds `t`, if jiff can represent it (years -9999-9999).
fn utc(t: i64) -> Option<DateTime> {
    EPOCH.checked_add(SignedDuration::from_secs(t)).ok()
}

/// Writes `YYYY-MM-DDTHH:MM:SS` (UTC) for years 0000-9999, else `Unix time T`.
pub fn write_utc(w: &mut impl fmt::Write, t: i64) -> fmt::Result {
    match utc(t).filter(|_| (FIRST..=LAST).contains(&t)) {
        // jiff prints a whole-second time without a fraction and such a year in four digits.
        Some(dt) => write!(w, "{dt}"),
        None => write!(w, "Unix time {t}"),
    }
}

/// RFC 3339 in UTC, `2030-01-31T12:00:00Z`; `Unix time T` outside years 0000-9999.
pub fn format_utc(t: i64) -> String {
    let mut s = String::with_capacity(20);
    // Writing to a String cannot fail.
    let _ = write_utc(&mut s, t);
    if (FIRST..=LAST).contains(&t) {
        s.push('Z');
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix seconds; `t`, `z` and a space for `T` as
/// RFC 3339 allows. Fractions are dropped: the store counts whole seconds. A leap second
/// (`:60`) lands on the next second.
///
/// The shape is checked here because jiff's parsers accept more than RFC 3339 (a missing
/// seconds field, the ISO 8601 basic format, offsets beyond 23:59), and a seed's time must
/// mean one thing; the calendar (month lengths, leap years) is jiff's.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| digits(b.get(from..to)?);
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut rest = b.get(19..)?;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        rest = fraction.get(n..).filter(|_| n > 0)?;
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = i64::from(h) * 3600 + i64::from(m) * 60;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let leap = second == 60;
    let second = if leap { 59 } else { second };
    let at = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    Some(at.duration_since(EPOCH).as_secs() + i64::from(leap) - offset)
}

/// ASCII digits only (`str::parse` would also take a sign).
fn digits(bytes: &[u8]) -> Option<u16> {
    if bytes.is_empty() || bytes.len() > 4 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2030-01-01T00:00:00Z"), Some(1_893_456_000));
        assert_eq!(
            parse_rfc3339("2030-01-01t01:30:00.123456+01:30"),
            Some(1_893_456_000)
        );
        assert_eq!(
            parse_rfc3339("2029-12-31 19:00:00-05:00"),
            Some(1_893_456_000)
        );
        assert_eq!(parse_rfc3339("2028-02-29T00:00:00z"), Some(1_835_395_200));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2016-12-31T23:59:60Z"), Some(1_483_228_800));
        assert_eq!(
            parse_rfc3339("2030-01-01T00:00:00+23:59"),
            Some(1_893_369_660)
        );
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "",
            "2030-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2030-04-31T00:00:00Z",
            "2030-00-01T00:00:00Z",
            "2030-13-01T00:00:00Z",
            "2030-01-00T00:00:00Z",
            "2030-01-01T24:00:00Z",
            "2030-01-01T00:60:00Z",
            "2030-01-01T00:00:61Z",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00Z",
            "20300101T000000Z",
            "2030-01-01T00:00:00.Z",
            "2030-01-01T00:00:00+1:00",
            "2030-01-01T00:00:00+0100",
            "2030-01-01T00:00:00+01",
            "2030-01-01T00:00:00+24:00",
            "2030-01-01T00:00:00+00:60",
            "2030-1-01T00:00:00Z",
            "+2030-01-01T00:00:00Z",
            "-030-01-01T00:00:00Z",
            "2030-01-01T00:00:00Zjunk",
            "２０３０-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bounds_are_years_0000_to_9999() {
        assert_eq!(parse_rfc3339("0000-01-01T00:00:00Z"), Some(FIRST));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59Z"), Some(LAST));
        assert_eq!(format_utc(FIRST), "0000-01-01T00:00:00Z");
        assert_eq!(format_utc(LAST), "9999-12-31T23:59:59Z");
        assert_eq!(format_utc(FIRST - 1), format!("Unix time {}", FIRST - 1));
        assert_eq!(format_utc(LAST + 1), format!("Unix time {}", LAST + 1));
        assert_eq!(format_utc(i64::MIN), format!("Unix time {}", i64::MIN));
        assert_eq!(format_utc(i64::MAX), format!("Unix time {}", i64::MAX));
        // Offsets may reach just past the ends; the arithmetic does not overflow.
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00+23:59"),
            Some(FIRST - 86_340)
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:60-23:59"),
            Some(LAST + 86_341)
        );
    }

    #[test]
    fn round_trips() {
        for t in [
            0,
            -1,
            1,
            1_893_456_000,
            951_782_400,
            1_616_778_780,
            FIRST,
            LAST,
        ] {
            assert_eq!(parse_rfc3339(&format_utc(t)), Some(t), "{t}");
        }
        // Every day of four leap cycles around the epoch and around 2000, and a few odd
        // seconds, read back as written.
        for start in [-4 * 365 * 86_400 - 86_400, 946_684_800 - 2 * 365 * 86_400] {
            for day in 0..(4 * 366) {
                let t = start + day * 86_400 + day * 37 % 86_400;
                assert_eq!(parse_rfc3339(&format_utc(t)), Some(t), "{t}");
            }
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_616_778_780), "2021-03-26T17:13:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
        let mut s = String::new();
        write_utc(&mut s, 1_795_461_681).unwrap();
        assert_eq!(s, "2026-11-23T19:21:21");
    }
}
