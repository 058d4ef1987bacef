//! TOML seed files: keys at the top level or in an `[auth]` or `[token]` table.

use super::fields::{Fields, Scalar};
use super::{at_line, line_of_byte, whole_f64};
use crate::error::InputError;
use ::toml::de::{DeTable, DeValue};
use ::toml::Spanned;

pub(super) fn fields<'a>(file: &'a str, text: &str) -> Result<Fields<'a>, InputError> {
    let doc = DeTable::parse(text).map_err(|e| toml_error(file, text, &e))?;
    let mut fields = Fields::new(file);
    for (key, value) in doc.get_ref().iter() {
        match value.get_ref() {
            DeValue::Table(table) if is_token_table(key.get_ref()) => {
                for (key, value) in table.iter() {
                    insert_toml(&mut fields, text, key, value)?;
                }
            }
            _ => insert_toml(&mut fields, text, key, value)?,
        }
    }
    Ok(fields)
}

/// Whether `text` is valid TOML: how a seed file without a telling extension is told apart
/// from INI.
pub(super) fn parses(text: &str) -> bool {
    DeTable::parse(text).is_ok()
}

/// Case-insensitive like the INI section, so that a quoted `[AUTH]` INI file that happens to
/// be valid TOML reads the same.
fn is_token_table(name: &str) -> bool {
    name.eq_ignore_ascii_case("auth") || name.eq_ignore_ascii_case("token")
}

fn insert_toml(
    fields: &mut Fields<'_>,
    text: &str,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
) -> Result<(), InputError> {
    let line = line_of_byte(text.as_bytes(), key.span().start);
    fields.insert(key.get_ref(), Some(line), toml_scalar(value.get_ref()))
}

fn toml_scalar(value: &DeValue<'_>) -> Scalar {
    match value {
        DeValue::String(s) => Scalar::Text(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(Scalar::Int)
            .unwrap_or_else(|_| Scalar::Text(i.as_str().to_owned())),
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(whole_f64)
            .map(Scalar::Int)
            .unwrap_or_else(|| Scalar::Text(f.as_str().to_owned())),
        // Display gives RFC 3339 for offset datetimes; local ones then fail as they should.
        DeValue::Datetime(d) => Scalar::Text(d.to_string()),
        DeValue::Boolean(_) => Scalar::Other("a boolean"),
        DeValue::Array(_) => Scalar::Other("an array"),
        DeValue::Table(_) => Scalar::Other("a table"),
    }
}

/// Only the message: the crate's `Display` quotes the offending source line, which may hold
/// a token.
fn toml_error(file: &str, text: &str, error: &::toml::de::Error) -> InputError {
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let line = error
        .span()
        .map(|span| line_of_byte(text.as_bytes(), span.start));
    at_line(
        InputError::new(file, format!("invalid TOML: {message}")),
        line,
    )
}

#[cfg(test)]
mod tests {
    use crate::seed::testing::*;

    #[test]
    fn toml_top_level() {
        let doc = "access_token = \"a\"\nexpires_in = 3600\nissued_at = 1890000000\n";
        let t = parse("t.toml", doc);
        assert_eq!(t.access_expires_at, Some(1_890_003_600));
    }

    #[test]
    fn toml_auth_and_token_tables() {
        let doc = "name = 'x'\n[auth]\naccess_token = \"a\"\naccess_expiry = \"60\"\n\
                   expires_at = 2030-01-01T01:00:00+01:00\n[other]\nrefresh_token = 'no'\n";
        let t = parse("t.toml", doc);
        assert_eq!(exposed(&t.access_token), Some("a"));
        assert!(t.refresh_token.is_none());
        assert_eq!(t.access_expires_at, Some(1_893_456_000));
        let t = parse(
            "t.toml",
            "[token]\nrefresh_token = 'r'\nrefresh_expires_at = '2099-01-01T00:00:00Z'\n",
        );
        assert_eq!(t.refresh_expires_at, Some(4_070_908_800));
        parse("t.toml", "[AUTH]\naccess_token = 'a'\n");
        parse("t.toml", "auth.access_token = 'a'\n");
    }

    #[test]
    fn toml_numbers_and_datetimes() {
        let t = parse(
            "t.toml",
            "access_token = 'a'\nexpires_in = 3_600.0\nissued_at = 0x10\n",
        );
        assert_eq!(t.issued_at, 16);
        assert_eq!(t.access_expires_at, Some(3616));
        let e = fail(
            "t.toml",
            "access_token = 'a'\n\nexpires_at = 2030-01-01T00:00:00\n",
        );
        assert!(
            e.contains("t.toml:3: key `expires_at`: expected Unix seconds or an RFC 3339"),
            "{e}"
        );
        let e = fail("t.toml", "access_token = 'a'\nexpires_in = 1.5\n");
        assert!(
            e.contains("t.toml:2: key `expires_in`: expected a lifetime"),
            "{e}"
        );
        let e = fail("t.toml", "access_token = true\n");
        assert!(e.contains(
            "t.toml:1: key `access_token`: expected a string or a number, not a boolean"
        ));
        let e = fail(
            "t.toml",
            "[auth]\naccess_token = 'a'\nexpires_in = 99999999999999999999\n",
        );
        assert!(e.contains("t.toml:3:"), "{e}");
    }

    #[test]
    fn toml_errors_name_the_line_but_not_the_source() {
        let e = fail(
            "t.toml",
            "[auth]\naccess_token = \"SECRET\nexpires_in = 1\n",
        );
        assert!(e.starts_with("t.toml:2: invalid TOML"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        let e = fail("t.toml", "access_token = 'a'\naccess_token = 'b'\n");
        assert!(e.starts_with("t.toml:2: invalid TOML"), "{e}");
    }

    #[test]
    fn toml_duplicate_across_tables_reported_at_the_later_line() {
        let e = fail(
            "t.toml",
            "[token]\naccess_token = 'a'\n[auth]\naccess_token = 'b'\n",
        );
        assert!(
            e.contains("t.toml:4: key `access_token`: duplicate key (already given on line 2)"),
            "{e}"
        );
    }
}
