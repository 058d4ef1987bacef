//! The keys every format shares, and the one set of rules that turns them into a
//! [`SeedToken`], whichever format the operator used.

use super::{at_line, parse_time, SeedToken};
use crate::error::InputError;
use secrecy::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    AccessToken,
    RefreshToken,
    TokenType,
    Scope,
    User,
    AccessLifetime,
    RefreshLifetime,
    IssuedAt,
    AccessExpiresAt,
    RefreshExpiresAt,
}

/// Every spelling the supported vendors use: HighQ's INI, token-endpoint responses, SciNote's
/// settings.json. Matched case-insensitively.
pub(super) const KEYS: &[(&str, Field)] = &[
    ("access_token", Field::AccessToken),
    ("refresh_token", Field::RefreshToken),
    ("token_type", Field::TokenType),
    ("scope", Field::Scope),
    ("user", Field::User),
    ("access_expiry", Field::AccessLifetime),
    ("expires_in", Field::AccessLifetime),
    ("access_token_expires_in", Field::AccessLifetime),
    ("refresh_expiry", Field::RefreshLifetime),
    ("refresh_expires_in", Field::RefreshLifetime),
    ("refresh_token_expires_in", Field::RefreshLifetime),
    ("issued_at", Field::IssuedAt),
    ("created_at", Field::IssuedAt),
    ("access_token_created_at", Field::IssuedAt),
    ("expires_at", Field::AccessExpiresAt),
    ("access_expires_at", Field::AccessExpiresAt),
    ("refresh_expires_at", Field::RefreshExpiresAt),
];

pub(super) fn field_of(key: &str) -> Option<Field> {
    KEYS.iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(key))
        .map(|&(_, field)| field)
}

/// A value as the file gave it. Deliberately not `Debug`: it may hold a token.
pub(super) enum Scalar {
    Text(String),
    Int(i64),
    /// A type no seed key can have (boolean, array, table); the name is for the message.
    Other(&'static str),
}

impl Scalar {
    fn is_blank(&self) -> bool {
        matches!(self, Scalar::Text(s) if s.trim().is_empty())
    }

    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.trim().to_owned(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Other(_) => String::new(),
        }
    }
}

struct Entry {
    /// As spelled in the file, so that the operator can find it.
    key: String,
    line: Option<usize>,
    value: Scalar,
}

/// The known keys found in a seed file, whatever its format.
pub(super) struct Fields<'a> {
    file: &'a str,
    entries: Vec<(Field, Entry)>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(file: &'a str) -> Self {
        Fields {
            file,
            entries: Vec::new(),
        }
    }

    fn error(&self, key: &str, line: Option<usize>, message: impl Into<String>) -> InputError {
        at_line(InputError::new(self.file, message).key(key), line)
    }

    fn entry_error(&self, entry: &Entry, message: impl Into<String>) -> InputError {
        self.error(&entry.key, entry.line, message)
    }

    /// Unknown keys are skipped: vendor files carry other settings (SciNote's `api_secret`).
    /// Two spellings of one setting are refused like a repeated key: which should win is a
    /// guess, and a wrong guess would be silent.
    pub(super) fn insert(
        &mut self,
        key: &str,
        line: Option<usize>,
        value: Scalar,
    ) -> Result<(), InputError> {
        let Some(field) = field_of(key) else {
            return Ok(());
        };
        if let Scalar::Other(kind) = value {
            return Err(self.error(
                key,
                line,
                format!("expected a string or a number, not {kind}"),
            ));
        }
        if let Some((_, first)) = self.entries.iter().find(|(f, _)| *f == field) {
            return Err(self.duplicate(first, key, line));
        }
        let key = key.to_owned();
        self.entries.push((field, Entry { key, line, value }));
        Ok(())
    }

    /// Reported at the later of the two lines (TOML tables are not visited in file order).
    fn duplicate(&self, first: &Entry, key: &str, line: Option<usize>) -> InputError {
        let (earlier, later) = if line < first.line && line.is_some() {
            ((key, line), (first.key.as_str(), first.line))
        } else {
            ((first.key.as_str(), first.line), (key, line))
        };
        let place = earlier
            .1
            .map(|n| format!(" on line {n}"))
            .unwrap_or_default();
        let message = if earlier.0.eq_ignore_ascii_case(later.0) {
            format!("duplicate key (already given{place})")
        } else {
            format!("same setting as `{}`{place}; give only one", earlier.0)
        };
        self.error(later.0, later.1, message)
    }

    /// An empty value counts as absent: templates often leave the unused keys blank.
    fn present(&self, field: Field) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|(f, e)| *f == field && !e.value.is_blank())
            .map(|(_, e)| e)
    }

    fn text(&self, field: Field) -> Option<String> {
        self.present(field).map(|e| e.value.text())
    }

    fn token(&self, field: Field) -> Result<Option<SecretString>, InputError> {
        let Some(entry) = self.present(field) else {
            return Ok(None);
        };
        let value = entry.value.text();
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.entry_error(
                entry,
                "the token contains whitespace or control characters (value not shown); \
                 was it pasted with a line break or a comment?",
            ));
        }
        Ok(Some(SecretString::from(value)))
    }

    fn lifetime(&self, field: Field) -> Result<Option<i64>, InputError> {
        let Some(entry) = self.present(field) else {
            return Ok(None);
        };
        let seconds = match &entry.value {
            Scalar::Int(n) => Some(*n),
            Scalar::Text(s) => s.trim().parse::<i64>().ok(),
            Scalar::Other(_) => None,
        };
        match seconds {
            None => Err(self.entry_error(entry, "expected a lifetime in whole seconds")),
            Some(s) if s < 0 => Err(self.entry_error(entry, "the lifetime is negative")),
            Some(s) => Ok(Some(s)),
        }
    }

    fn time(&self, field: Field) -> Result<Option<i64>, InputError> {
        let Some(entry) = self.present(field) else {
            return Ok(None);
        };
        let time = match &entry.value {
            Scalar::Int(n) => Some(*n),
            Scalar::Text(s) => parse_time(s),
            Scalar::Other(_) => None,
        };
        time.map(Some).ok_or_else(|| {
            self.entry_error(
                entry,
                "expected Unix seconds or an RFC 3339 time such as 2030-01-31T12:00:00Z",
            )
        })
    }

    /// An absolute time wins over a lifetime (it is what the operator computed), but a bad
    /// lifetime is still reported rather than silently ignored.
    fn expiry(
        &self,
        absolute: Field,
        lifetime: Field,
        issued_at: i64,
    ) -> Result<Option<i64>, InputError> {
        let seconds = self.lifetime(lifetime)?;
        if let Some(at) = self.time(absolute)? {
            return Ok(Some(at));
        }
        let Some(seconds) = seconds else {
            return Ok(None);
        };
        match issued_at.checked_add(seconds) {
            Some(at) => Ok(Some(at)),
            None => Err(self
                .present(lifetime)
                .map(|e| self.entry_error(e, "the lifetime is too large"))
                .unwrap_or_else(|| InputError::new(self.file, "a lifetime is too large"))),
        }
    }

    pub(super) fn into_seed(self, mtime: i64, now: i64) -> Result<SeedToken, InputError> {
        let access_token = self.token(Field::AccessToken)?;
        let refresh_token = self.token(Field::RefreshToken)?;
        if access_token.is_none() && refresh_token.is_none() {
            return Err(InputError::new(
                self.file,
                "holds neither an access_token nor a refresh_token \
                 (INI: looked in [AUTH] and before any section; TOML: top level, [auth], [token])",
            ));
        }
        let issued_at = self.time(Field::IssuedAt)?.unwrap_or(mtime);
        let access_expires_at =
            self.expiry(Field::AccessExpiresAt, Field::AccessLifetime, issued_at)?;
        let refresh_expires_at =
            self.expiry(Field::RefreshExpiresAt, Field::RefreshLifetime, issued_at)?;
        if refresh_token.is_some() {
            self.refuse_expired_refresh(refresh_expires_at, now)?;
        }
        Ok(SeedToken {
            access_token,
            refresh_token,
            token_type: self.text(Field::TokenType),
            scope: self.text(Field::Scope),
            user: self.text(Field::User),
            issued_at,
            access_expires_at,
            refresh_expires_at,
        })
    }

    /// Seeding a dead refresh token would only move the failure to the first refresh, when
    /// nobody is watching.
    fn refuse_expired_refresh(&self, expires_at: Option<i64>, now: i64) -> Result<(), InputError> {
        let Some(at) = expires_at.filter(|&at| at <= now) else {
            return Ok(());
        };
        let message = format!(
            "the refresh token expired at {} ({} s ago); obtain a new one",
            crate::time::format_utc(at),
            now.saturating_sub(at)
        );
        let source = self
            .present(Field::RefreshExpiresAt)
            .or_else(|| self.present(Field::RefreshLifetime));
        Err(match source {
            Some(entry) => self.entry_error(entry, message),
            None => InputError::new(self.file, message),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::seed::testing::*;

    #[test]
    fn needs_a_token() {
        for (name, doc) in [
            ("e.ini", ""),
            ("e.toml", ""),
            ("e.json", "{}"),
            ("e.ini", "[AUTH]\ntoken_type = bearer\n"),
            ("e.json", r#"{"access_token":"  ","refresh_token":""}"#),
            ("e.ini", "[OTHER]\naccess_token = a\n"),
        ] {
            let e = fail(name, doc);
            assert!(e.starts_with(&format!("{name}: holds neither")), "{e}");
        }
    }

    #[test]
    fn either_token_alone_is_enough() {
        let t = parse("a.ini", "access_token = a\n");
        assert!(t.refresh_token.is_none() && t.access_expires_at.is_none());
        let t = parse("r.ini", "refresh_token = r\n");
        assert!(t.access_token.is_none());
    }

    #[test]
    fn lifetimes_count_from_issued_at() {
        let t = parse(
            "a.ini",
            "access_token = a\nissued_at = 2030-01-01T00:00:00Z\naccess_expiry = 60\n",
        );
        assert_eq!(t.issued_at, 1_893_456_000);
        assert_eq!(t.access_expires_at, Some(1_893_456_060));
    }

    #[test]
    fn absolute_expiry_wins_over_lifetime() {
        let doc =
            "access_token = a\nrefresh_token = r\naccess_expiry = 60\nexpires_at = 1999999999\n\
                   refresh_expiry = 60\nrefresh_expires_at = 2099-01-01T00:00:00+00:00\n";
        let t = parse("a.ini", doc);
        assert_eq!(t.access_expires_at, Some(1_999_999_999));
        assert_eq!(t.refresh_expires_at, Some(4_070_908_800));
        // ... but a broken lifetime beside it is still reported.
        let e = fail(
            "a.ini",
            "access_token = a\naccess_expiry = soon\nexpires_at = 1999999999\n",
        );
        assert!(e.contains(":2: key `access_expiry`"), "{e}");
    }

    #[test]
    fn expired_refresh_token_is_refused() {
        let e = fail(
            "r.ini",
            "refresh_token = r\nrefresh_expires_at = 2020-01-01T00:00:00Z\n",
        );
        assert!(e.starts_with("r.ini:2: key `refresh_expires_at`: the refresh token expired at 2020-01-01T00:00:00Z"), "{e}");
        let e = fail(
            "r.ini",
            "refresh_token = r\nissued_at = 1000\nrefresh_expiry = 10\n",
        );
        assert!(e.contains(":3: key `refresh_expiry`"), "{e}");
        // Expiring exactly now is expired.
        let doc = format!("refresh_token = r\nrefresh_expires_at = {NOW}\n");
        assert!(fail("r.ini", &doc).contains("refresh_expires_at"));
        let doc = format!("refresh_token = r\nrefresh_expires_at = {}\n", NOW + 1);
        parse("r.ini", &doc);
        // Without a refresh token there is nothing to refuse; an expired access token is fine.
        parse(
            "a.ini",
            "access_token = a\nrefresh_expires_at = 1\nexpires_at = 1\n",
        );
    }

    #[test]
    fn bad_lifetimes() {
        let cases = [
            (
                "a = b\naccess_token = a\naccess_expiry = 1 month\n",
                ":3: key `access_expiry`: expected a lifetime in whole seconds",
            ),
            (
                "access_token = a\nexpires_in = -5\n",
                ":2: key `expires_in`: the lifetime is negative",
            ),
            (
                "access_token = a\nrefresh_expires_in = 3600s\n",
                ":2: key `refresh_expires_in`",
            ),
            (
                "access_token = a\nexpires_in = 1e3\n",
                ":2: key `expires_in`",
            ),
            (
                "access_token = a\nissued_at = 1\nexpires_in = 9223372036854775807\n",
                ":3: key `expires_in`: the lifetime is too large",
            ),
            (
                "access_token = a\nexpires_in = 99999999999999999999\n",
                ":2: key `expires_in`",
            ),
        ];
        for (doc, want) in cases {
            let e = fail("l.ini", doc);
            assert!(e.contains(want), "{e} lacks {want}");
        }
        let e = fail("l.json", "{\"access_token\":\"a\",\n\"expires_in\":\"-1\"}");
        assert!(
            e.contains(":2: key `expires_in`: the lifetime is negative"),
            "{e}"
        );
    }

    #[test]
    fn bad_times() {
        for value in [
            "2030-02-30T00:00:00Z",
            "2030-01-01",
            "tomorrow",
            "2030-01-01T00:00:00",
            "-5",
        ] {
            let doc = format!("access_token = a\nexpires_at = {value}\n");
            let e = fail("t.ini", &doc);
            assert!(
                e.contains("t.ini:2: key `expires_at`: expected Unix seconds or an RFC 3339"),
                "{e}"
            );
        }
    }

    #[test]
    fn token_with_whitespace_or_control_is_refused_without_showing_it() {
        for doc in [
            "access_token = abc SECRET\n",
            "access_token = 'abc\tSECRET'\n",
            "refresh_token = \"abc\u{7}SECRET\"\n",
            "access_token = abc\u{a0}SECRET\n",
        ] {
            let e = fail("w.ini", doc);
            assert!(e.starts_with("w.ini:1: key `"), "{e}");
            assert!(e.contains("whitespace or control characters"), "{e}");
            assert!(!e.contains("SECRET") && !e.contains("abc"), "{e}");
        }
        let e = fail("w.json", "{\"access_token\": \"abc\\nSECRET\"}");
        assert!(
            e.contains("w.json:1: key `access_token`") && !e.contains("SECRET"),
            "{e}"
        );
        // Surrounding whitespace is not part of the token.
        let t = parse("w.json", r#"{"access_token": "  abc\n"}"#);
        assert_eq!(exposed(&t.access_token), Some("abc"));
    }
}
