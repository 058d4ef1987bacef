//! HighQ-style INI seed files.

use super::fields::{field_of, Fields, Scalar};
use crate::error::InputError;

/// HighQ-style INI. Keys before any section header count as if in `[AUTH]`, because HighQ
/// users keep both shapes; syntax in other sections is not ours to judge.
pub(super) fn fields<'a>(file: &'a str, text: &str) -> Result<Fields<'a>, InputError> {
    let mut fields = Fields::new(file);
    let mut in_auth = true;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with([';', '#']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = section_name(header)
                .ok_or_else(|| InputError::new(file, "malformed section header").line(number))?;
            in_auth = name.eq_ignore_ascii_case("auth");
            continue;
        }
        if !in_auth {
            continue;
        }
        let (key, value) = line
            .split_once(['=', ':'])
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| InputError::new(file, "expected `key = value`").line(number))?;
        // An unknown "key" may be a stray token fragment: never judge or name it.
        if field_of(key).is_none() {
            continue;
        }
        let value =
            unquote(value).map_err(|msg| InputError::new(file, msg).line(number).key(key))?;
        fields.insert(key, Some(number), Scalar::Text(value.to_owned()))?;
    }
    Ok(fields)
}

/// `AUTH] ; comment` -> `AUTH`.
fn section_name(after_bracket: &str) -> Option<&str> {
    let (name, rest) = after_bracket.split_once(']')?;
    is_comment_or_empty(rest).then_some(name.trim())
}

fn is_comment_or_empty(s: &str) -> bool {
    let s = s.trim_start();
    s.is_empty() || s.starts_with([';', '#'])
}

/// Strips one pair of quotes (no escapes, as in Python's configparser files), or an inline
/// comment from an unquoted value. A comment needs whitespace before it, and tokens cannot
/// contain whitespace, so no token is ever cut short.
fn unquote(value: &str) -> Result<&str, &'static str> {
    let quote = match value.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Ok(strip_inline_comment(value)),
    };
    let inner = value.strip_prefix(quote).unwrap_or(value);
    let (content, rest) = inner
        .split_once(quote)
        .ok_or("the value has no closing quote")?;
    if is_comment_or_empty(rest) {
        Ok(content)
    } else {
        Err("unexpected text after the closing quote")
    }
}

fn strip_inline_comment(value: &str) -> &str {
    let mut previous_blank = false;
    for (i, c) in value.char_indices() {
        if previous_blank && (c == ';' || c == '#') {
            return value.get(..i).unwrap_or(value).trim_end();
        }
        previous_blank = c.is_whitespace();
    }
    value
}

#[cfg(test)]
mod tests {
    use crate::seed::testing::*;

    #[test]
    fn highq_example() {
        let t = parse("highq.ini", HIGHQ);
        assert_eq!(exposed(&t.access_token), Some("REDACTED_your_token_here"));
        assert_eq!(exposed(&t.refresh_token), Some("REDACTED_your_token_here"));
        assert_eq!(t.token_type.as_deref(), Some("bearer"));
        assert_eq!(t.user.as_deref(), Some("peter.simpson@highq.com"));
        assert_eq!(t.scope, None);
        assert_eq!(t.issued_at, MTIME);
        assert_eq!(t.access_expires_at, Some(MTIME + 2_592_000));
        assert_eq!(t.refresh_expires_at, Some(MTIME + 2_628_000));
    }

    #[test]
    fn ini_separators_quotes_and_comments() {
        let doc = "; comment\n# comment\naccess_token:'a1'\nrefresh_token =\"r1\"\n\
                   token_type=bearer\n  scope = \"read write\" ; trailing comment\n\
                   access_expiry = 60 # a minute\nuser = 'x' # who\n";
        let t = parse("s.ini", doc);
        assert_eq!(exposed(&t.access_token), Some("a1"));
        assert_eq!(exposed(&t.refresh_token), Some("r1"));
        assert_eq!(t.token_type.as_deref(), Some("bearer"));
        assert_eq!(t.scope.as_deref(), Some("read write"));
        assert_eq!(t.user.as_deref(), Some("x"));
        assert_eq!(t.access_expires_at, Some(MTIME + 60));
    }

    #[test]
    fn ini_crlf_and_bom() {
        let doc = "\u{feff}[AUTH]\r\naccess_token = a\r\nexpires_in = 10\r\n";
        let t = parse("s.ini", doc);
        assert_eq!(exposed(&t.access_token), Some("a"));
        assert_eq!(t.access_expires_at, Some(MTIME + 10));
    }

    #[test]
    fn ini_keys_and_section_are_case_insensitive() {
        let t = parse(
            "s.ini",
            "[auth]\nACCESS_TOKEN = a\nRefresh_Expires_In = 10000000\nRefresh_Token = r\n",
        );
        assert_eq!(exposed(&t.refresh_token), Some("r"));
        assert_eq!(t.refresh_expires_at, Some(MTIME + 10_000_000));
        parse("s.ini", "[ Auth ] ; the token\naccess_token = a\n");
    }

    #[test]
    fn ini_other_sections_and_unknown_keys_are_ignored() {
        let doc = "[AUTH]\naccess_token = a\nclient_secret = whatever\n\
                   [PROXY]\naccess_token = other\nnot a pair\n[auth]\nrefresh_token = r\n";
        let t = parse("s.ini", doc);
        assert_eq!(exposed(&t.access_token), Some("a"));
        assert_eq!(exposed(&t.refresh_token), Some("r"));
    }

    #[test]
    fn ini_keys_before_a_section_count() {
        let t = parse("s.ini", "access_token = a\n[AUTH]\nrefresh_token = r\n");
        assert!(t.access_token.is_some() && t.refresh_token.is_some());
        let e = fail("s.ini", "access_token = a\n[AUTH]\naccess_token = b\n");
        assert!(
            e.contains("s.ini:3: key `access_token`: duplicate key"),
            "{e}"
        );
    }

    #[test]
    fn ini_duplicate_key_names_line_and_key() {
        let e = fail("s.ini", "[AUTH]\naccess_token = a\nscope = x\nSCOPE = y\n");
        assert_eq!(
            e,
            "s.ini:4: key `SCOPE`: duplicate key (already given on line 3)"
        );
    }

    #[test]
    fn ini_alias_conflict() {
        let e = fail(
            "s.ini",
            "access_token = a\nrefresh_expiry = 1\nrefresh_expires_in = 1\n",
        );
        assert!(
            e.contains(":3: key `refresh_expires_in`: same setting as `refresh_expiry` on line 2")
        );
    }

    #[test]
    fn ini_syntax_errors() {
        let e = fail("s.ini", "[AUTH\naccess_token = a\n");
        assert_eq!(e, "s.ini:1: malformed section header");
        let e = fail("s.ini", "[AUTH] junk\naccess_token = a\n");
        assert!(e.starts_with("s.ini:1:"), "{e}");
        let e = fail("s.ini", "[AUTH]\naccess_token\n");
        assert_eq!(e, "s.ini:2: expected `key = value`");
        let e = fail("s.ini", "= a\n");
        assert_eq!(e, "s.ini:1: expected `key = value`");
        let e = fail("s.ini", "access_token = 'a\n");
        assert!(e.contains("s.ini:1: key `access_token`: the value has no closing quote"));
        let e = fail("s.ini", "access_token = 'a' b\n");
        assert!(e.contains("after the closing quote"), "{e}");
    }

    #[test]
    fn ini_empty_values_count_as_absent() {
        let t = parse(
            "s.ini",
            "access_token = a\nrefresh_token =\nrefresh_expiry = ''\n",
        );
        assert!(t.refresh_token.is_none());
        assert_eq!(t.refresh_expires_at, None);
    }
}
