//! Property tests over the parsers of untrusted input: seed files, configuration files and
//! token-endpoint responses. No input makes them panic; every rejection names the file
//! (and the line or the key where one applies) and repeats no secret; and through the
//! binary, a rejected seed is exit 2 and leaves the store unchanged.
//!
//! Inputs are arbitrary bytes and, more usefully, valid documents with random lines
//! inserted, removed or garbled, drawn from the keys the parsers know.

use crate::util::*;

use proptest::prelude::*;
use std::path::Path;

const SECRET: &str = "SECRET-prop-0123456789";

/// Lines a seed or configuration file might hold, good and bad.
const SEED_LINES: &[&str] = &[
    "[AUTH]",
    "[auth]",
    "[token]",
    "[",
    "access_token = SECRET-prop-0123456789",
    "access_token = \"SECRET-prop-0123456789\"",
    "refresh_token = SECRET-prop-0123456789",
    "refresh_token =",
    "token_type = bearer",
    "access_expiry = 3600",
    "access_expiry = -5",
    "access_expiry = soon",
    "expires_in = \"406\"",
    "refresh_expiry = 99999999999999999999999",
    "issued_at = 2021-03-26T17:13:00Z",
    "issued_at = yesterday",
    "expires_at = 1",
    "refresh_expires_at = 0",
    "; comment",
    "# comment",
    "=",
    "key without value",
    "\u{feff}access_token = x",
    "user = someone",
    "scope = read write",
    "\"unterminated",
    "{",
    "}",
    "{\"access_token\": \"SECRET-prop-0123456789\", \"expires_in\": \"12\"}",
    "{\"refresh_token\": 5}",
    "[1, 2, 3]",
    "null",
];

const CONFIG_LINES: &[&str] = &[
    "[daemon]",
    "interval = \"60s\"",
    "interval = \"soon\"",
    "interval = 5",
    "timeout = \"0s\"",
    "max_body = \"10MiB\"",
    "max_body = \"lots\"",
    "keep_history = \"7d\"",
    "store_bodies = \"sometimes\"",
    "[[account]]",
    "name = \"inode\"",
    "name = \"Bad Name\"",
    "base_url = \"https://inode.example.com/api/\"",
    "base_url = \"http://example.com/\"",
    "base_url = \"not a url\"",
    "auth = \"oauth2\"",
    "auth = \"api_key\"",
    "auth = \"magic\"",
    "allow_http = true",
    "refresh_margin = \"5m\"",
    "seed_file = \"${NO_SUCH_VARIABLE_FOR_PROPTEST}/seed\"",
    "[account.oauth2]",
    "token_url = \"oauth/token/\"",
    "client_id = \"id\"",
    "client_secret = \"SECRET-prop-0123456789\"",
    "client_secret_env = \"NO_SUCH_VARIABLE_FOR_PROPTEST\"",
    "password = \"SECRET-prop-0123456789\"",
    "grant = \"password\"",
    "grant = \"telepathy\"",
    "client_auth = \"body\"",
    "token_request = \"query\"",
    "[account.api_key]",
    "key = \"SECRET-prop-0123456789\"",
    "[[account.endpoint]]",
    "name = \"links\"",
    "path = \"v1/links/\"",
    "query = { no_pagination = \"\" }",
    "intervall = \"60s\"",
    "= \"x\"",
    "[[",
    "\"",
];

const GOOD_CONFIG: &str = "[[account]]\nname = \"inode\"\nbase_url = \"https://inode.example.com/api/\"\n\n[account.oauth2]\ntoken_url = \"oauth/token/\"\nclient_id = \"id\"\nclient_secret = \"SECRET-prop-0123456789\"\n\n[[account.endpoint]]\nname = \"links\"\npath = \"v1/links/\"\n";

/// A document: a valid one with random edits, or random lines, or random bytes.
fn document(lines: &'static [&'static str], base: &'static str) -> BoxedStrategy<Vec<u8>> {
    let edits = prop::collection::vec((0usize..40, prop::sample::select(lines), 0u8..4), 0..8);
    prop_oneof![
        edits.prop_map(move |edits| {
            let mut doc: Vec<String> = base.lines().map(String::from).collect();
            for (at, line, op) in edits {
                let i = at % (doc.len() + 1);
                match op {
                    0 | 1 => doc.insert(i, line.to_string()),
                    2 if i < doc.len() => {
                        doc.remove(i);
                    }
                    _ if i < doc.len() => {
                        let keep = at % (doc[i].len() + 1);
                        let cut: String = doc[i].chars().take(keep).collect();
                        doc[i] = cut;
                    }
                    _ => {}
                }
            }
            doc.join("\n").into_bytes()
        }),
        prop::collection::vec(prop::sample::select(lines), 0..12)
            .prop_map(|l| l.join("\n").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
    .boxed()
}

const SEED_BASE: &str = "[AUTH]\naccess_token = SECRET-prop-0123456789\nrefresh_token = SECRET-prop-0123456789\naccess_expiry = 3600\nrefresh_expiry = 86400\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn seed_parser_never_panics_and_names_the_file(
        doc in document(SEED_LINES, SEED_BASE),
        ext in prop::sample::select(&["seed.ini", "seed.toml", "seed.json", "seed.txt"][..]),
    ) {
        let now = 1_700_000_000;
        match oauth_poller::parse_seed_bytes(ext, &doc, now - 10, now) {
            Ok(seed) => prop_assert!(seed.access_token.is_some() || seed.refresh_token.is_some()),
            Err(e) => {
                prop_assert_eq!(&e.file, ext);
                prop_assert!(!e.message.is_empty());
                prop_assert!(!e.to_string().contains(SECRET), "{}", e);
            }
        }
    }

    #[test]
    fn config_parser_never_panics_and_names_file_and_line_or_key(
        doc in document(CONFIG_LINES, GOOD_CONFIG),
    ) {
        let text = String::from_utf8_lossy(&doc);
        match oauth_poller::parse_config("config.toml", &text, Some(Path::new("/nonexistent/db"))) {
            Ok(c) => prop_assert!(!c.accounts.is_empty()),
            Err(e) => {
                prop_assert_eq!(&e.file, "config.toml");
                prop_assert!(e.line.is_some() || e.key.is_some(), "neither line nor key: {}", e);
                prop_assert!(!e.to_string().contains(SECRET), "{}", e);
            }
        }
    }

    #[test]
    fn token_response_parser_never_panics_nor_repeats_what_was_sent(
        status in prop::sample::select(&[200u16, 201, 400, 401, 429, 500, 503][..]),
        doc in document(SEED_LINES, "{\"access_token\": \"a\", \"expires_in\": 60}"),
        echo in any::<bool>(),
    ) {
        let mut body = doc;
        if echo {
            body = format!(
                "{{\"error\": \"invalid_grant\", \"error_description\": \"Invalid refresh token: {SECRET}\"}}"
            )
            .into_bytes();
        }
        match oauth_poller::parse_token_response(status, &body, None, &[SECRET]) {
            Ok(r) => {
                let debug = format!("{:?}", r);
                prop_assert!((200..300).contains(&status) && !debug.contains(SECRET));
            }
            Err(e) => prop_assert!(!e.message.contains(SECRET), "{}", e.message),
        }
    }
}

proptest! {
    // Through the binary: slower, fewer cases.
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_rejected_seed_is_exit_2_and_changes_nothing(
        doc in document(SEED_LINES, SEED_BASE),
        ext in prop::sample::select(&["ini", "toml", "json"][..]),
    ) {
        let dir = tempdir();
        let config = dir.path().join("config.toml");
        let db = dir.path().join("state.db");
        write_file(&config, &format!("[daemon]\ndatabase = \"{}\"\n{GOOD_CONFIG}", db.display()));
        let good = dir.path().join("good.json");
        write_file(&good, r#"{"access_token":"first-0123456789abcdef","refresh_token":"first-r-0123456789abcdef","expires_in":3600}"#);
        let out = run(Some(&config), &["seed", "inode", good.to_str().unwrap()]);
        prop_assert!(out.status.success(), "{}", text(&out));
        let before = dump(&db);
        let file = dir.path().join(format!("seed.{ext}"));
        std::fs::write(&file, &doc).unwrap();
        let out = run(Some(&config), &["seed", "inode", file.to_str().unwrap(), "--force"]);
        let t = text(&out);
        prop_assert!(!t.contains("panicked"), "{}", t);
        prop_assert!(!t.contains(SECRET), "{}", t);
        match out.status.code() {
            Some(0) => {}
            Some(2) => {
                prop_assert!(t.contains(&file.display().to_string()), "names the file: {}", t);
                prop_assert_eq!(dump(&db), before, "the store is unchanged");
            }
            other => prop_assert!(false, "exit {:?}: {}", other, t),
        }
    }
}
