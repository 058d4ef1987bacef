//! Seed files: the initial token an operator hands over once (INI, TOML or JSON).
//!
//! Each format (`ini`, `toml`, `json`) is read into the same `fields::Fields` (the known
//! keys, each with the line it came from), and one function there turns those into a
//! [`SeedToken`], so the rules are identical whichever format the operator used. Token values
//! never reach an error message: errors name the file, the line and the key, and say what is
//! wrong without quoting the value. This module reads the file and picks the format.

mod fields;
mod ini;
mod json;
mod toml;

use crate::error::InputError;
use secrecy::SecretString;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

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
    let (bytes, mtime) = read_seed(path, now).map_err(|e| InputError::new(&name, e.to_string()))?;
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
        Format::Ini => ini::fields(name, text)?,
        Format::Toml => toml::fields(name, text)?,
        Format::Json => json::fields(name, text)?,
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
    crate::time::parse_rfc3339(s)
}

/// Why a seed file's bytes could not be had; the caller names the file.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("larger than {MAX_SEED_BYTES} bytes: not a seed file")]
    TooLarge,
}

/// Reads at most [`MAX_SEED_BYTES`]; works on pipes too (`seed acct <(vault read ...)`).
fn read_seed(path: &Path, now: i64) -> Result<(Vec<u8>, i64), ReadError> {
    let file = File::open(path).map_err(ReadError::Open)?;
    let mtime = file
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(unix_seconds)
        .unwrap_or(now);
    let mut bytes = Vec::new();
    file.take(MAX_SEED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Read)?;
    if bytes.len() as u64 > MAX_SEED_BYTES {
        return Err(ReadError::TooLarge);
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
        } else if toml::parses(text) {
            Format::Toml
        } else {
            Format::Ini
        }
    }
}

/// `i64::MAX as f64` rounds up to 2^63, hence the exclusive upper bound.
fn whole_f64(f: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

#[cfg(test)]
mod testing {
    //! What the tests of every format share: the clock, the vendors' examples, shorthands.

    use super::{parse_seed_bytes, SeedToken};
    use secrecy::{ExposeSecret, SecretString};

    pub(super) const NOW: i64 = 1_900_000_000; // 2030-03-17
    pub(super) const MTIME: i64 = 1_899_000_000;
    pub(super) const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

    pub(super) fn parse(name: &str, text: &str) -> SeedToken {
        parse_seed_bytes(name, text.as_bytes(), MTIME, NOW).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn fail(name: &str, text: &str) -> String {
        match parse_seed_bytes(name, text.as_bytes(), MTIME, NOW) {
            Ok(_) => panic!("{name} should have been refused"),
            Err(e) => e.to_string(),
        }
    }

    pub(super) fn exposed(s: &Option<SecretString>) -> Option<&str> {
        s.as_ref().map(|s| s.expose_secret())
    }

    /// HighQ's example from the Collaborate forum, including `refresh_token= X`.
    pub(super) const HIGHQ: &str = "[AUTH]
access_token = REDACTED_your_token_here
access_expiry = 2592000
refresh_token= REDACTED_your_token_here
refresh_expiry = 2628000
token_type = bearer
user = peter.simpson@highq.com
";

    /// SciNote's settings.json after get_auth_tokens.py, with the earlier keys filled in.
    pub(super) const SCINOTE: &str = r#"{
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
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

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
        let io = File::open(&path).unwrap_err();
        assert_eq!(e.message, format!("cannot open: {io}"));
        let e = parse_seed_file(&std::env::temp_dir(), NOW).unwrap_err();
        assert!(e.message.starts_with("cannot read: "), "{e}");
        let path = temp_path("large.json");
        std::fs::write(&path, vec![b' '; MAX_SEED_BYTES as usize + 1]).unwrap();
        let e = parse_seed_file(&path, NOW);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            e.unwrap_err().message,
            "larger than 1048576 bytes: not a seed file"
        );
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
                    let key = *rng.pick(&fields::KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
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
