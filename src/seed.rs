//! Seed files: the initial token an operator hands over once (INI, TOML or JSON).
//!
//! Each format is read into the same [`Fields`] (the known keys, each with the line it came
//! from), and one function turns those into a [`SeedToken`], so the rules are identical
//! whichever format the operator used. Token values never reach an error message: errors
//! name the file, the line and the key, and say what is wrong without quoting the value.

use crate::error::InputError;
use secrecy::SecretString;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A seed is a few hundred bytes; anything this large is a wrong path, not a seed.
const MAX_SEED_BYTES: u64 = 1 << 20;

/// What a seed file says about a token. Times are Unix seconds.
#[derive(Debug)]
pub struct SeedToken {
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub token_type: Option<String>,
    pub scope: Option<String>,
    pub user: Option<String>,
    /// When the token was issued: `issued_at`/`created_at` from the file, else the file's mtime.
    pub issued_at: i64,
    pub access_expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
}

/// Reads and validates a seed file. `now` is used to refuse an already-expired refresh token.
/// A seed file holds tokens: one readable by other users is warned about.
pub fn parse_seed_file(path: &Path, now: i64) -> Result<SeedToken, InputError> {
    crate::files::warn_if_readable_by_others(path);
    let name = path.display().to_string();
    let (bytes, mtime) = read_seed(path, now).map_err(|msg| InputError::new(&name, msg))?;
    parse_seed_bytes(&name, &bytes, mtime, now)
}

/// The same on bytes already read; `name` is the file name shown in errors and used for the
/// extension; `mtime` the file's modification time.
pub fn parse_seed_bytes(
    name: &str,
    bytes: &[u8],
    mtime: i64,
    now: i64,
) -> Result<SeedToken, InputError> {
    let text = decode(name, bytes)?;
    let fields = match Format::of(name, text) {
        Format::Ini => ini_fields(name, text)?,
        Format::Toml => toml_fields(name, text)?,
        Format::Json => json_fields(name, text)?,
    };
    fields.into_seed(mtime, now)
}

/// Lenient integer: JSON number (integer or float with no fraction), or a string of digits
/// (trimmed; a sign is accepted so that a negative value is reported as negative rather than
/// as "not a number"). Used by the token-response parser too.
pub fn lenient_i64(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole_f64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Unix seconds (integer or digit string) or RFC 3339 -> Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    parse_rfc3339(s)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads at most [`MAX_SEED_BYTES`]; works on pipes too (`seed acct <(vault read ...)`).
fn read_seed(path: &Path, now: i64) -> Result<(Vec<u8>, i64), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mtime = file
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(unix_seconds)
        .unwrap_or(now);
    let mut bytes = Vec::new();
    file.take(MAX_SEED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_SEED_BYTES {
        return Err(format!(
            "larger than {MAX_SEED_BYTES} bytes: not a seed file"
        ));
    }
    Ok((bytes, mtime))
}

fn unix_seconds(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    }
}

/// UTF-8 with an optional byte-order mark (Windows editors add one).
fn decode<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, InputError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        InputError::new(
            name,
            format!("not UTF-8 text (invalid byte at offset {offset})"),
        )
        .line(line_of_byte(bytes, offset))
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn at_line(error: InputError, line: Option<usize>) -> InputError {
    match line {
        Some(n) => error.line(n),
        None => error,
    }
}

fn line_of_byte(bytes: &[u8], offset: usize) -> usize {
    let before = bytes.get(..offset).unwrap_or(bytes);
    1 + before.iter().filter(|&&b| b == b'\n').count()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ini,
    Toml,
    Json,
}

impl Format {
    fn of(name: &str, text: &str) -> Format {
        let ext = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("ini") => Format::Ini,
            Some("toml") => Format::Toml,
            Some("json") => Format::Json,
            _ => Format::sniff(text),
        }
    }

    /// HighQ's INI example is not valid TOML (bare values), while a quoted INI file usually
    /// is, and then reads the same either way; so TOML is tried first and INI is the fallback.
    fn sniff(text: &str) -> Format {
        if text.trim_start().starts_with('{') {
            Format::Json
        } else if DeTable::parse(text).is_ok() {
            Format::Toml
        } else {
            Format::Ini
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The keys every format shares

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
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
const KEYS: &[(&str, Field)] = &[
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

fn field_of(key: &str) -> Option<Field> {
    KEYS.iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(key))
        .map(|&(_, field)| field)
}

/// A value as the file gave it. Deliberately not `Debug`: it may hold a token.
enum Scalar {
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
struct Fields<'a> {
    file: &'a str,
    entries: Vec<(Field, Entry)>,
}

impl<'a> Fields<'a> {
    fn new(file: &'a str) -> Self {
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
    fn insert(&mut self, key: &str, line: Option<usize>, value: Scalar) -> Result<(), InputError> {
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

    fn into_seed(self, mtime: i64, now: i64) -> Result<SeedToken, InputError> {
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
            format_time(at),
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

// ---------------------------------------------------------------------------------------------
// INI

/// HighQ-style INI. Keys before any section header count as if in `[AUTH]`, because HighQ
/// users keep both shapes; syntax in other sections is not ours to judge.
fn ini_fields<'a>(file: &'a str, text: &str) -> Result<Fields<'a>, InputError> {
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

// ---------------------------------------------------------------------------------------------
// TOML

fn toml_fields<'a>(file: &'a str, text: &str) -> Result<Fields<'a>, InputError> {
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
fn toml_error(file: &str, text: &str, error: &toml::de::Error) -> InputError {
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

// ---------------------------------------------------------------------------------------------
// JSON

fn json_fields<'a>(file: &'a str, text: &str) -> Result<Fields<'a>, InputError> {
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

// ---------------------------------------------------------------------------------------------
// Numbers and times

/// `i64::MAX as f64` rounds up to 2^63, hence the exclusive upper bound.
fn whole_f64(f: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; `t`, `z` and a space for `T` as RFC 3339 allows.
/// Fractions are dropped: the store counts whole seconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
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
            let seconds = h * 3600 + m * 60;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    // A leap second (:60) is accepted and lands on the next second.
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    valid.then(|| {
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset
    })
}

fn digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 in UTC for messages; Unix seconds outside years 0000-9999.
fn format_time(t: i64) -> String {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    if !(MIN..=MAX).contains(&t) {
        return format!("Unix time {t}");
    }
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const NOW: i64 = 1_900_000_000; // 2030-03-17
    const MTIME: i64 = 1_899_000_000;
    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

    fn parse(name: &str, text: &str) -> SeedToken {
        parse_seed_bytes(name, text.as_bytes(), MTIME, NOW).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fail(name: &str, text: &str) -> String {
        match parse_seed_bytes(name, text.as_bytes(), MTIME, NOW) {
            Ok(_) => panic!("{name} should have been refused"),
            Err(e) => e.to_string(),
        }
    }

    fn exposed(s: &Option<SecretString>) -> Option<&str> {
        s.as_ref().map(|s| s.expose_secret())
    }

    // --- vendor examples, verbatim -------------------------------------------------------

    /// HighQ's example from the Collaborate forum, including `refresh_token= X`.
    const HIGHQ: &str = "[AUTH]
access_token = REDACTED_your_token_here
access_expiry = 2592000
refresh_token= REDACTED_your_token_here
refresh_expiry = 2628000
token_type = bearer
user = peter.simpson@highq.com
";

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

    /// SciNote's settings.json after get_auth_tokens.py, with the earlier keys filled in.
    const SCINOTE: &str = r#"{
"server_url": "https://your-instance.scinote.net",
"api_uid": "xxx",
"api_secret": "xxx",
"api_redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
"authorization_code": "PASTE THE CODE HERE",
"access_token": "xxxxxx",
"refresh_token": "xxxxx",
"access_token_created_at": 1616778780,
"access_token_expires_in": 7200
}"#;

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

    // --- JSON ----------------------------------------------------------------------------

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

    // --- INI -----------------------------------------------------------------------------

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

    // --- TOML ----------------------------------------------------------------------------

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

    // --- format selection ----------------------------------------------------------------

    #[test]
    fn format_by_extension_case_insensitive() {
        assert_eq!(Format::of("a.JSON", ""), Format::Json);
        assert_eq!(Format::of("dir.d/a.Ini", "{"), Format::Ini);
        assert_eq!(Format::of("a.TOML", "{"), Format::Toml);
        // By extension a quoted INI file is INI even though it is valid TOML too.
        let t = parse("q.ini", "access_token = \"a\\b\"\n");
        assert_eq!(exposed(&t.access_token), Some("a\\b"));
    }

    #[test]
    fn format_sniffed_from_content() {
        assert_eq!(Format::of("seed", " \n\t{\"a\": 1}"), Format::Json);
        assert_eq!(
            Format::of("seed.txt", "[auth]\naccess_token = 'a'\n"),
            Format::Toml
        );
        assert_eq!(Format::of("seed.conf", HIGHQ), Format::Ini);
        assert_eq!(Format::of("seed", "access_token: a\n"), Format::Ini);
        let t = parse_seed_bytes(
            "seed",
            "\u{feff}  {\"access_token\":\"a\"}".as_bytes(),
            0,
            0,
        );
        assert!(t.is_ok());
        parse("seed.conf", HIGHQ);
        parse("seed", "access_token = 'a'\nexpires_in = 5\n");
    }

    // --- token rules ---------------------------------------------------------------------

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

    #[test]
    fn errors_never_show_token_values() {
        let docs = [
            ("a.ini", "access_token = SECRET1\naccess_expiry = SECRET2\n"),
            (
                "a.ini",
                "refresh_token = SECRET1\nrefresh_expires_at = SECRET2\n",
            ),
            ("a.ini", "access_token = SECRET1\naccess_token = SECRET2\n"),
            ("a.ini", "access_token = \"SECRET1\nx\n"),
            ("a.toml", "access_token = SECRET1\n"),
            (
                "a.toml",
                "access_token = 'SECRET1'\nrefresh_token = 'SECRET2\n",
            ),
            ("a.toml", "access_token = 'SECRET1' SECRET2\n"),
            (
                "a.toml",
                "[auth]\naccess_token = 'SECRET1'\naccess_token = 'SECRET2'\n",
            ),
            ("a.json", "{\"access_token\": \"SECRET1\" \"SECRET2\"}"),
            ("a.json", "{\"access_token\": SECRET1}"),
            ("a.json", "{\"access_token\": \"SECRET1\\q\"}"),
            ("a.json", "[\"SECRET1\"]"),
        ];
        for (name, doc) in docs {
            let e = fail(name, doc);
            assert!(!e.contains("SECRET"), "{name}: {e}");
        }
    }

    #[test]
    fn debug_output_hides_tokens() {
        let t = parse("d.ini", "access_token = SECRET1\nrefresh_token = SECRET2\n");
        let debug = format!("{t:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let e = parse_seed_bytes("u.ini", b"[AUTH]\naccess_token = a\xff\n", 0, 0).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().starts_with("u.ini:2: not UTF-8"), "{e}");
        assert!(parse_seed_bytes("u.json", b"\xfe\xff{}", 0, 0).is_err());
    }

    // --- helpers -------------------------------------------------------------------------

    #[test]
    fn parse_time_forms() {
        assert_eq!(parse_time("1616778780"), Some(1_616_778_780));
        assert_eq!(parse_time(" 0 "), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2030-01-01T00:00:00Z"), Some(1_893_456_000));
        assert_eq!(
            parse_time("2030-01-01t01:30:00.123456+01:30"),
            Some(1_893_456_000)
        );
        assert_eq!(parse_time("2029-12-31 19:00:00-05:00"), Some(1_893_456_000));
        assert_eq!(parse_time("2028-02-29T00:00:00z"), Some(1_835_395_200));
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_time("2016-12-31T23:59:60Z"), Some(1_483_228_800));
        for bad in [
            "",
            " ",
            "-1",
            "+5",
            "2030-02-29T00:00:00Z",
            "2030-00-01T00:00:00Z",
            "2030-01-01T24:00:00Z",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00.Z",
            "2030-01-01T00:00:00+1:00",
            "2030-01-01T00:00:00+24:00",
            "2030-1-01T00:00:00Z",
            "99999999999999999999",
            "2030-01-01T00:00:00Zjunk",
            "２０３０-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_time_round_trips() {
        for t in [
            0,
            -1,
            1_893_456_000,
            951_782_400,
            -62_167_219_200,
            253_402_300_799,
        ] {
            assert_eq!(parse_time(&format_time(t)), Some(t), "{t}");
        }
        assert_eq!(format_time(i64::MIN), format!("Unix time {}", i64::MIN));
    }

    #[test]
    fn lenient_i64_forms() {
        use serde_json::json;
        assert_eq!(lenient_i64(&json!(7200)), Some(7200));
        assert_eq!(lenient_i64(&json!(-3)), Some(-3));
        assert_eq!(lenient_i64(&json!(7200.0)), Some(7200));
        assert_eq!(lenient_i64(&json!(" 7200 ")), Some(7200));
        assert_eq!(lenient_i64(&json!("-3")), Some(-3));
        assert_eq!(lenient_i64(&json!(7200.5)), None);
        assert_eq!(lenient_i64(&json!("7200.0")), None);
        assert_eq!(lenient_i64(&json!("")), None);
        assert_eq!(lenient_i64(&json!("2h")), None);
        assert_eq!(lenient_i64(&json!(true)), None);
        assert_eq!(lenient_i64(&json!(null)), None);
        assert_eq!(lenient_i64(&json!(u64::MAX)), None);
        assert_eq!(lenient_i64(&json!(1e300)), None);
        assert_eq!(lenient_i64(&json!(i64::MIN)), Some(i64::MIN));
    }

    // --- files ---------------------------------------------------------------------------

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("oauth-poller-seed-{}-{name}", std::process::id()))
    }

    #[test]
    fn file_mtime_is_the_default_issue_time() {
        let path = temp_path("mtime.ini");
        std::fs::write(&path, "access_token = a\naccess_expiry = 100\n").unwrap();
        let mtime = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let t = parse_seed_file(&path, NOW);
        std::fs::remove_file(&path).unwrap();
        let t = t.unwrap();
        assert_eq!(t.issued_at, 1_800_000_000);
        assert_eq!(t.access_expires_at, Some(1_800_000_100));
    }

    #[test]
    fn file_errors_name_the_path() {
        let path = temp_path("missing.ini");
        let e = parse_seed_file(&path, NOW).unwrap_err();
        assert_eq!(e.file, path.display().to_string());
        assert!(e.message.contains("cannot open"), "{e}");
        let e = parse_seed_file(&std::env::temp_dir(), NOW).unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
        let path = temp_path("bad.json");
        std::fs::write(&path, "{\n\"expires_in\": 1}\n").unwrap();
        let e = parse_seed_file(&path, NOW);
        std::fs::remove_file(&path).unwrap();
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with(&path.display().to_string()));
    }

    fn corpus_files(dir: &str) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(format!("{CORPUS}/{dir}"))
            .unwrap_or_else(|e| panic!("{CORPUS}/{dir}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n != "EXPECT"))
            .collect();
        files.sort();
        files
    }

    fn now() -> i64 {
        unix_seconds(SystemTime::now()).unwrap()
    }

    #[test]
    fn corpus_good_seeds_parse() {
        let files = corpus_files("seed");
        assert!(files.len() >= 8);
        for path in files {
            let t = parse_seed_file(&path, now()).unwrap_or_else(|e| panic!("{e}"));
            assert!(t.access_token.is_some() || t.refresh_token.is_some());
        }
    }

    #[test]
    fn corpus_bad_seeds_fail_as_expected() {
        let expect = std::fs::read_to_string(format!("{CORPUS}/bad-seed/EXPECT")).unwrap();
        let expect: Vec<(&str, &str)> = expect
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_once('\t')
                    .unwrap_or_else(|| panic!("EXPECT line {l:?}"))
            })
            .collect();
        let files = corpus_files("bad-seed");
        assert!(files.len() >= 14);
        assert_eq!(files.len(), expect.len(), "one EXPECT line per bad file");
        for path in files {
            let name = path.file_name().unwrap().to_str().unwrap();
            let want = expect
                .iter()
                .find(|(file, _)| *file == name)
                .unwrap_or_else(|| panic!("no EXPECT line for {name}"))
                .1;
            let e = match parse_seed_file(&path, now()) {
                Ok(_) => panic!("{name} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.starts_with(&path.display().to_string()), "{e}");
            assert!(e.contains(want), "{name}: {e:?} lacks {want:?}");
            assert!(!e.contains("SECRET"), "{name} leaks a token: {e}");
        }
    }

    // --- robustness ----------------------------------------------------------------------

    #[test]
    fn deep_nesting_does_not_overflow() {
        for (name, open) in [
            ("d.json", "["),
            ("d.json", "{\"a\":"),
            ("d.toml", "a = "),
            ("d", ""),
        ] {
            let mut doc = open.to_owned();
            doc.push_str(&"[".repeat(100_000));
            let _ = parse_seed_bytes(name, doc.as_bytes(), 0, 0);
            let mut doc = "a = ".to_owned();
            doc.push_str(&"{b = ".repeat(50_000));
            let _ = parse_seed_bytes("d.toml", doc.as_bytes(), 0, 0);
        }
    }

    /// xorshift64: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const INTERESTING: &[u8] = b"\n\r\t =:;#'\"[]{},.-+0123456789eEZT\\\x00\x07\xff\xef\xbb\xbf";

    fn mutate(rng: &mut Rng, mut doc: Vec<u8>) -> Vec<u8> {
        for _ in 0..=rng.below(8) {
            let at = rng.below(doc.len() + 1);
            match rng.below(6) {
                0 if at < doc.len() => doc[at] = rng.next() as u8,
                1 => doc.insert(at, *rng.pick(INTERESTING)),
                2 if at < doc.len() => {
                    doc.remove(at);
                }
                3 => {
                    let end = (at + rng.below(20)).min(doc.len());
                    let chunk = doc[at..end].to_vec();
                    let to = rng.below(doc.len() + 1);
                    doc.splice(to..to, chunk);
                }
                4 => doc.truncate(at),
                _ => {
                    let key = *rng.pick(&KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
                    let line = format!("\n{key} = {}\n", rng.next() as i64);
                    doc.splice(at..at, line.bytes());
                }
            }
        }
        doc
    }

    #[test]
    fn fuzz_never_panics_nor_leaks() {
        let mut seeds: Vec<Vec<u8>> = vec![HIGHQ.into(), SCINOTE.into()];
        for dir in ["seed", "bad-seed"] {
            for path in corpus_files(dir) {
                seeds.push(std::fs::read(path).unwrap());
            }
        }
        let names = ["f.ini", "f.toml", "f.json", "f.txt", "f"];
        let times = [0, NOW, i64::MIN, i64::MAX, -1];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..20_000 {
            let doc = if i % 4 == 0 {
                (0..rng.below(200)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = rng.pick(&seeds).clone();
                mutate(&mut rng, seed)
            };
            let name = *rng.pick(&names);
            let (mtime, now) = (*rng.pick(&times), *rng.pick(&times));
            if let Err(e) = parse_seed_bytes(name, &doc, mtime, now) {
                let e = e.to_string();
                assert!(e.starts_with(name), "{e}");
                assert!(!e.contains("SECRET"), "iteration {i}: {e}");
            }
        }
    }
}
