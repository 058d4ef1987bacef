//! Every bad configuration and seed file in the corpus: exit 2, a message naming the file
//! (and line or key), no panic, no secret, and the store unchanged.

use crate::util::*;
use std::path::{Path, PathBuf};

fn corpus(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let expect = std::fs::read_to_string(root.join("EXPECT")).expect("EXPECT");
    let cases: Vec<_> = expect
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (file, want) = l.split_once('\t').expect("file<TAB>expected");
            (root.join(file), want.to_string())
        })
        .collect();
    let files = std::fs::read_dir(&root).unwrap().count() - 1;
    assert_eq!(
        cases.len(),
        files,
        "every file in {dir} has one EXPECT line"
    );
    cases
}

const GOOD_CONFIG: &str = r#"
[[account]]
name = "inode"
base_url = "http://127.0.0.1:9/api/"

[account.oauth2]
token_url = "oauth/token/"
client_id = "id"
client_secret = "SECRET-client"
client_auth = "body"

[[account.endpoint]]
name = "links"
path = "v1/links/"
"#;

/// A store with a seeded token, so "unchanged" means something.
fn seeded_store(dir: &Path) -> (PathBuf, PathBuf) {
    let config = dir.join("config.toml");
    let db = dir.join("state.db");
    write_file(
        &config,
        &format!("[daemon]\ndatabase = \"{}\"\n{GOOD_CONFIG}", db.display()),
    );
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/seed/token-response.json");
    let out = run(Some(&config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    (config, db)
}

fn assert_input_error(out: &std::process::Output, file: &Path, want: &str) {
    let t = text(out);
    let name = file.display().to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: exit code; output:\n{t}"
    );
    assert!(
        t.contains(&name),
        "{name}: message must name the file:\n{t}"
    );
    assert!(
        t.contains(want),
        "{name}: message must contain {want:?}:\n{t}"
    );
    assert!(!t.contains("panicked"), "{name}: panic:\n{t}");
    assert!(
        !t.contains("SECRET") && !t.contains("987654321"),
        "{name}: a secret leaked:\n{t}"
    );
}

#[test]
fn bad_configurations_exit_2_and_change_nothing() {
    let cases = corpus("bad-config");
    assert!(
        cases.len() >= 12,
        "the corpus has at least a dozen bad configurations"
    );
    let dir = tempdir();
    let (_, db) = seeded_store(dir.path());
    let before = dump(&db);
    for (file, want) in &cases {
        // `path-var-unset` and `database-*` are about `daemon.database` itself: no
        // --database override.
        let db_arg = ["--database", db.to_str().unwrap()];
        let name = file.file_name().unwrap().to_string_lossy();
        let extra: &[&str] = if name == "path-var-unset.toml" || name.starts_with("database-") {
            &[]
        } else {
            &db_arg
        };
        for command in [&["check"][..], &["run"], &["poll-once"], &["status"][..]] {
            if command == ["status"] && !extra.is_empty() {
                continue; // status falls back to --database alone, by design
            }
            let args: Vec<&str> = extra.iter().chain(command.iter()).copied().collect();
            let out = run(Some(file), &args);
            assert_input_error(&out, file, want);
        }
    }
    assert_eq!(dump(&db), before, "the store changed");
}

#[test]
fn bad_seed_files_exit_2_and_change_nothing() {
    let cases = corpus("bad-seed");
    assert!(cases.len() >= 12);
    let dir = tempdir();
    let (config, db) = seeded_store(dir.path());
    let before = dump(&db);
    for (file, want) in &cases {
        let out = run(
            Some(&config),
            &["seed", "inode", file.to_str().unwrap(), "--force"],
        );
        assert_input_error(&out, file, want);
    }
    assert_eq!(dump(&db), before, "the store changed");
}

#[test]
fn bad_seed_file_named_in_the_configuration_stops_check_and_run() {
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bad-seed/no-tokens.ini");
    let config = dir.path().join("config.toml");
    let text_ = GOOD_CONFIG.replace(
        "base_url = \"http://127.0.0.1:9/api/\"",
        &format!(
            "base_url = \"http://127.0.0.1:9/api/\"\nseed_file = \"{}\"",
            seed.display()
        ),
    );
    write_file(
        &config,
        &format!("[daemon]\ndatabase = \"{}\"\n{text_}", db.display()),
    );
    for command in ["check", "run"] {
        let out = run(Some(&config), &[command]);
        assert_input_error(&out, &seed, "neither an access_token nor a refresh_token");
    }
    let tokens = if db.exists() {
        query_i64(&db, "SELECT COUNT(*) FROM tokens")
    } else {
        0
    };
    assert_eq!(tokens, 0);
}

#[test]
fn every_good_seed_is_accepted() {
    let dir = tempdir();
    let (config, db) = seeded_store(dir.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/seed");
    let mut n = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let file = entry.unwrap().path();
        let out = run(
            Some(&config),
            &["seed", "inode", file.to_str().unwrap(), "--force"],
        );
        assert!(out.status.success(), "{}: {}", file.display(), text(&out));
        assert!(
            !text(&out).contains("rt-") && !text(&out).contains("at-"),
            "token in output: {}",
            text(&out)
        );
        n += 1;
    }
    assert!(n >= 8);
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM token_events WHERE event = 'seeded'"
        ),
        n + 1
    );
}

#[test]
fn seed_refuses_an_older_file_without_force() {
    let dir = tempdir();
    let (config, db) = seeded_store(dir.path());
    // The stored token was issued in 2030 (created_at 1893456000); this file is older.
    let old = dir.path().join("old.ini");
    write_file(&old, "[AUTH]\naccess_token = abc\nrefresh_token = def\nissued_at = 1700000000\naccess_expiry = 3600\n");
    let before = dump(&db);
    let out = run(Some(&config), &["seed", "inode", old.to_str().unwrap()]);
    assert_input_error(&out, &old, "--force");
    assert_eq!(dump(&db), before);
    let out = run(
        Some(&config),
        &["seed", "inode", old.to_str().unwrap(), "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["seed"],
        &["token"],
        &["--log-format", "xml", "status"],
    ] {
        let out = run(None, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    let out = run(Some(Path::new("/nonexistent/config.toml")), &["check"]);
    assert_input_error(
        &out,
        Path::new("/nonexistent/config.toml"),
        "cannot read the configuration",
    );
}
