//! Log output: text for terminals, JSON for collectors, and under journald (stderr is the
//! journal stream) `<N>` priority prefixes with no timestamp of our own, since journald
//! stamps every line itself.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL message key=value ...`
    Text,
    /// One JSON object per line, numbers as numbers
    Json,
}

pub fn init(format: LogFormat, level: &str) {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // The PostgreSQL client logs every statement's parameters at debug level: tokens among
    // them. Never below info, whatever `--log-level` asks.
    for quiet in ["tokio_postgres=info", "postgres=info"] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .event_format(Text {
                journal: stderr_is_journal(),
            })
            .try_init(),
    };
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for the stream it connected to stdout/stderr;
/// it is the journal only if that is stderr (the variable is inherited by children).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let stream = stream.to_string_lossy().to_string();
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>() == Ok(meta.dev()) && ino.parse::<u64>() == Ok(meta.ino())
}

/// The text line: `2026-11-22T19:01:21.123456Z  INFO message key=value ...`, the layout
/// of tracing-subscriber's default format, written without its general machinery: a poll
/// logs a line, and formatting it must cost little next to the poll. Under journald the
/// timestamp and level give way to a `<N>` syslog priority prefix, which journald reads. Control
/// characters in values are escaped, so an event is always exactly one line.
struct Text {
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        if self.journal {
            let priority = match level {
                Level::ERROR => "<3>",
                Level::WARN => "<4>",
                Level::INFO => "<6>",
                Level::DEBUG | Level::TRACE => "<7>",
            };
            writer.write_str(priority)?;
        } else {
            write_timestamp(&mut writer, std::time::SystemTime::now())?;
            writer.write_str(match level {
                Level::ERROR => "ERROR ",
                Level::WARN => " WARN ",
                Level::INFO => " INFO ",
                Level::DEBUG => "DEBUG ",
                Level::TRACE => "TRACE ",
            })?;
        }
        let mut fields = Fields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// RFC 3339 UTC with microseconds and a trailing space, e.g. `2026-11-22T19:01:21.123456Z `.
/// The part up to the seconds changes once a second, so it is formatted once a second
/// (per thread) and copied on the other lines of that second.
fn write_timestamp(w: &mut impl fmt::Write, t: std::time::SystemTime) -> fmt::Result {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1.clear();
            crate::time::write_utc(&mut cached.1, i64::try_from(secs).unwrap_or(i64::MAX))?;
            cached.1.push('.');
            cached.0 = secs;
        }
        w.write_str(&cached.1)
    })?;
    let micros = d.subsec_micros();
    let mut digits = [b'0'; 8];
    let mut n = micros;
    for i in (0..6).rev() {
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    digits[6] = b'Z';
    digits[7] = b' ';
    w.write_str(std::str::from_utf8(&digits).unwrap_or("000000Z "))
}

/// Writes `message key=value key=value` (logfmt): a string is quoted only when it needs
/// it (empty, or holding a space, `"`, `=` or `\\`), so `account=inode` reads the same
/// whether the field was recorded as a `&str` or with `%`; `%` and `?` values as they
/// format, numbers and booleans plain.
struct Fields<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> Fields<'_, W> {
    fn start(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(' ')?;
        }
        if field.name() != "message" {
            let name = field.name();
            // strip_prefix, not trim_start_matches: a string pattern builds a searcher per call.
            self.out
                .write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.out.write_char('=')?;
        }
        Ok(())
    }

    fn value(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.result = self
                .start(field)
                .and_then(|()| fmt::Write::write_fmt(&mut Escaping(&mut *self.out), value));
        }
    }
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.value(field, format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" || !needs_quotes(value) {
            self.value(field, format_args!("{value}"));
        } else {
            self.value(field, format_args!("{value:?}"));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() {
            self.result = self
                .start(field)
                .and_then(|()| self.out.write_str(itoa::Buffer::new().format(value)));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            self.result = self
                .start(field)
                .and_then(|()| self.out.write_str(itoa::Buffer::new().format(value)));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_ok() {
            self.result = self
                .start(field)
                .and_then(|()| self.out.write_str(if value { "true" } else { "false" }));
        }
    }
}

/// Whether a logfmt value must be quoted to read back as one value.
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .bytes()
            .any(|b| b <= b' ' || b == b'"' || b == b'=' || b == b'\\' || b == 0x7f)
}

/// Passes text through, escaping control characters (a newline would start a forged
/// line; ESC and C1 codes drive terminals).
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Control characters are C0 (< 0x20), DEL and C1 (UTF-8 0xC2 0x80..0x9F).
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
            return self.0.write_str(s);
        }
        let mut rest = s;
        while let Some(i) = rest.find(|c: char| c.is_control()) {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut s = String::new();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_795_461_681_123_456);
        write_timestamp(&mut s, t).unwrap();
        assert_eq!(s, "2026-11-23T19:21:21.123456Z ");
        s.clear();
        write_timestamp(
            &mut s,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400),
        )
        .unwrap();
        assert_eq!(s, "2000-02-29T00:00:00.000000Z ");
    }

    #[test]
    fn strings_are_quoted_only_when_a_reader_needs_it() {
        for plain in ["inode", "refresh_token", "/var/lib/x.db", "a-b.c:1"] {
            assert!(!needs_quotes(plain), "{plain}");
        }
        for quoted in [
            "",
            "two words",
            "a=b",
            "say \"x\"",
            "back\\slash",
            "tab\there",
        ] {
            assert!(needs_quotes(quoted), "{quoted:?}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        use fmt::Write;
        let mut s = String::new();
        write!(Escaping(&mut s), "a\nb\x1b[31mc\u{9b}d").unwrap();
        assert_eq!(s, "a\\nb\\u{1b}[31mc\\u{9b}d");
    }
}
