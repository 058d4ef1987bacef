//! JSON seed files: a token endpoint's response or a vendor's settings file.

use super::fields::{field_of, Fields, Scalar};
use super::{at_line, lenient_i64};
use crate::error::InputError;

pub(super) fn fields<'a>(file: &'a str, text: &str) -> Result<Fields<'a>, InputError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(file, &e))?;
    let serde_json::Value::Object(map) = value else {
        return Err(InputError::new(
            file,
            format!(
                "expected a JSON object {{...}}, found {}",
                json_kind(&value)
            ),
        ));
    };
    // serde_json keeps neither positions nor repeated keys, so a scan of the (now known to be
    // valid) text supplies both.
    let keys = top_level_keys(text);
    let mut fields = Fields::new(file);
    for (key, value) in &map {
        let mut lines = keys.iter().filter(|(k, _)| k == key).map(|&(_, line)| line);
        let line = lines.next();
        if let (Some(second), Some(_)) = (lines.next(), field_of(key)) {
            let message = format!(
                "duplicate key (already given{})",
                line.map(|n| format!(" on line {n}")).unwrap_or_default()
            );
            return Err(InputError::new(file, message)
                .line(second)
                .key(key.as_str()));
        }
        if let Some(scalar) = json_scalar(value) {
            fields.insert(key, line, scalar)?;
        }
    }
    Ok(fields)
}

/// `null` counts as absent: token responses send `"refresh_token": null`.
fn json_scalar(value: &serde_json::Value) -> Option<Scalar> {
    use serde_json::Value;
    Some(match value {
        Value::Null => return None,
        Value::String(s) => Scalar::Text(s.clone()),
        Value::Number(n) => lenient_i64(value)
            .map(Scalar::Int)
            .unwrap_or_else(|| Scalar::Text(n.to_string())),
        other => Scalar::Other(json_kind(other)),
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_error(file: &str, error: &serde_json::Error) -> InputError {
    // serde_json appends " at line L column C"; the line goes where every error puts it.
    let text = error.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text);
    let message = format!("invalid JSON (column {}): {message}", error.column());
    // Line 0 means serde_json knows no position (an I/O error, which cannot happen here).
    let line = Some(error.line()).filter(|&n| n > 0);
    at_line(InputError::new(file, message), line)
}

/// The keys of the top-level object with their lines, in file order, repeats included.
/// Only called on text serde_json has accepted, so the scan can be simple.
fn top_level_keys(text: &str) -> Vec<(String, usize)> {
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut expect_key = false;
    // (start byte, line, whether it is a key of the top-level object)
    let mut string: Option<(usize, usize, bool)> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            line += 1;
        }
        if let Some((start, start_line, is_key)) = string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                string = None;
                let decoded = text
                    .get(start..=i)
                    .and_then(|raw| serde_json::from_str::<String>(raw).ok());
                if let (true, Some(key)) = (is_key, decoded) {
                    keys.push((key, start_line));
                }
            }
            continue;
        }
        match c {
            '{' | '[' => {
                depth += 1;
                expect_key = depth == 1 && c == '{';
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_key = true,
            '"' => {
                string = Some((i, line, depth == 1 && expect_key));
                expect_key = false;
            }
            _ => {}
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use crate::seed::testing::*;

    #[test]
    fn scinote_example() {
        let t = parse("settings.json", SCINOTE);
        assert_eq!(exposed(&t.access_token), Some("xxxxxx"));
        assert_eq!(exposed(&t.refresh_token), Some("xxxxx"));
        assert_eq!(t.issued_at, 1_616_778_780);
        assert_eq!(t.access_expires_at, Some(1_616_778_780 + 7200));
        assert_eq!(t.refresh_expires_at, None);
        assert_eq!(t.token_type, None);
    }

    #[test]
    fn scinote_snippet_with_ellipsis_names_the_line() {
        let doc = "{\n...\n...\n\"access_token\": \"xxxxxx\"\n}";
        let e = fail("settings.json", doc);
        assert!(e.starts_with("settings.json:2: invalid JSON"), "{e}");
    }

    #[test]
    fn citesphere_response() {
        let doc = r#"{
    "access_token": "2c7c0f10-adf5-ed55-a931-caeea29464ee",
    "token_type": "bearer",
    "refresh_token": "0d06219a-1b49-7895-9220-ef3b9810f09d",
    "expires_in": 406,
    "scope": "read"
}"#;
        let t = parse("response.json", doc);
        assert_eq!(t.scope.as_deref(), Some("read"));
        assert_eq!(t.issued_at, MTIME);
        assert_eq!(t.access_expires_at, Some(MTIME + 406));
        assert_eq!(t.refresh_expires_at, None);
    }

    #[test]
    fn json_created_at_and_refresh_expires_in() {
        let doc = r#"{"access_token":"a","refresh_token":"r","expires_in":3600,
            "created_at":1890000000,"refresh_expires_in":31536000,"id_token":null}"#;
        let t = parse("t.json", doc);
        assert_eq!(t.issued_at, 1_890_000_000);
        assert_eq!(t.access_expires_at, Some(1_890_003_600));
        assert_eq!(t.refresh_expires_at, Some(1_890_000_000 + 31_536_000));
    }

    #[test]
    fn json_numbers_may_be_strings_or_whole_floats() {
        let doc = r#"{"access_token":"a","expires_in":" 3600 ","created_at":"1890000000",
            "refresh_token":"r","refresh_expires_in":86400000.0}"#;
        let t = parse("t.json", doc);
        assert_eq!(t.access_expires_at, Some(1_890_003_600));
        assert_eq!(t.refresh_expires_at, Some(1_890_000_000 + 86_400_000));
        let t = parse(
            "t.json",
            r#"{"access_token":"a","created_at":"2030-01-01T00:00:00Z"}"#,
        );
        assert_eq!(t.issued_at, 1_893_456_000);
    }

    #[test]
    fn json_null_counts_as_absent() {
        let t = parse(
            "t.json",
            r#"{"access_token":"a","refresh_token":null,"scope":null}"#,
        );
        assert!(t.refresh_token.is_none());
        assert!(t.scope.is_none());
    }

    #[test]
    fn json_structural_errors() {
        let e = fail("t.json", r#"[{"access_token":"a"}]"#);
        assert!(
            e.contains("expected a JSON object") && e.contains("an array"),
            "{e}"
        );
        let e = fail("t.json", "\"just a string\"");
        assert!(e.contains("expected a JSON object"), "{e}");
        let e = fail("t.json", "{\n\"access_token\": \"a\",\n}");
        assert!(e.starts_with("t.json:3: invalid JSON"), "{e}");
        let e = fail("t.json", "");
        assert!(e.contains("invalid JSON"), "{e}");
        let e = fail("t.json", "{\"access_token\":\"a\",\n\"expires_in\":[1]}");
        assert!(e.contains(":2: key `expires_in`: expected a string or a number, not an array"));
        let e = fail("t.json", "{\"access_token\":\"a\",\n\"scope\":true}");
        assert!(e.contains(":2: key `scope`"), "{e}");
    }

    #[test]
    fn json_duplicate_and_alias() {
        let e = fail(
            "t.json",
            "{\"access_token\":\"a\",\n\"access_token\":\"b\"}",
        );
        assert!(e.contains("t.json:2: key `access_token`: duplicate key (already given on line 1)"));
        let e = fail(
            "t.json",
            "{\"access_token\":\"a\",\n\"expires_in\":1,\n\"access_token_expires_in\":2}",
        );
        assert!(
            e.contains(":3: key `access_token_expires_in`: same setting as `expires_in` on line 2"),
            "{e}"
        );
        // Repeated keys nobody reads are not our business.
        parse("t.json", r#"{"access_token":"a","x":1,"x":2}"#);
    }

    #[test]
    fn json_key_lines_ignore_nested_objects_and_strings() {
        let doc = "{\"a\": {\"expires_in\": 1},\n \"b\": \"\\\"expires_in\\\": ,\",\n\"access_token\":\"x\",\n\"expires_in\": \"soon\"}";
        let e = fail("t.json", doc);
        assert!(e.contains("t.json:4: key `expires_in`"), "{e}");
    }
}
