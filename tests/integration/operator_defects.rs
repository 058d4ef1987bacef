//! What an operator meets outside the happy path (issue 12's smaller defects): a store from a
//! newer version, rejected seeds, unknown accounts, what `status` and `history` say, help.

use crate::config_builder::{Account, Config, Endpoint};
use crate::lifecycle::setup;
use crate::util::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration for three accounts that have no token yet, each with a different way in.
fn three_accounts(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("state.db");
    let account = |name: &str| {
        Account::new(name, "http://127.0.0.1:9/api/")
            .oauth2("token_url", "oauth/token/")
            .oauth2("client_id", "id")
            .oauth2("client_secret", "SECRET-client")
            .endpoint(Endpoint::new("links", "v1/links/"))
    };
    let config = Config::new(&db)
        .account(account("seeded"))
        .account(
            account("pw")
                .oauth2("grant", "password")
                .oauth2("username", "owner")
                .oauth2("password", "SECRET-password"),
        )
        .account(
            account("consent")
                .oauth2("authorize_url", "oauth/authorize/")
                .oauth2("redirect_uri", "http://127.0.0.1:8765/callback"),
        )
        .write(&dir.join("config.toml"));
    (config, db)
}

fn good_seed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/seed/token-response.json")
}

/// An empty store, made the way the daemon makes one.
fn empty_store(db: &Path) {
    oauth_poller::Store::open(db, None).expect("create the store");
}

#[test]
fn a_database_from_a_newer_version_exits_2_and_stays_byte_identical() {
    let dir = tempdir();
    let (config, db) = three_accounts(dir.path());
    {
        // Rollback-journal mode, as a newer version might leave it: WAL would rewrite it.
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    // Private, as every store the daemon makes is: a shared one is refused before its
    // version is read.
    std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let before = std::fs::read(&db).unwrap();
    let seed = good_seed();
    for args in [
        &["run"][..],
        &["poll-once"],
        &["status"],
        &["history"],
        &["seed", "seeded", seed.to_str().unwrap()],
    ] {
        let out = run(Some(&config), args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            t.contains(&db.display().to_string()) && t.contains("schema version 99"),
            "{args:?}: the message names the file and the version:\n{t}"
        );
        assert!(!t.contains("SECRET"), "{t}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "{args:?} changed the refused file"
        );
    }
}

#[test]
fn a_rejected_seed_creates_no_database() {
    let dir = tempdir();
    let (config, db) = three_accounts(dir.path());
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bad-seed/no-tokens.ini");
    let out = run(Some(&config), &["seed", "seeded", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!db.exists(), "an empty database was left behind");
    // A good one does create it.
    let out = run(
        Some(&config),
        &["seed", "seeded", good_seed().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(db.exists());
}

#[test]
fn history_of_an_unknown_account_exits_2() {
    let dir = tempdir();
    let (config, db) = three_accounts(dir.path());
    let out = run(
        Some(&config),
        &["seed", "seeded", good_seed().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));

    let out = run(Some(&config), &["history", "--account", "nosuch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&config.display().to_string()) && t.contains("nosuch"),
        "{t}"
    );
    // With the store alone (no configuration) too.
    let out = run(
        None,
        &[
            "--database",
            db.to_str().unwrap(),
            "history",
            "--account",
            "nosuch",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&db.display().to_string()),
        "{}",
        text(&out)
    );
    // A configured account without history is not an error, and says so.
    let out = run(Some(&config), &["history", "--account", "pw"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no polls or token events"),
        "{}",
        text(&out)
    );
}

#[test]
fn history_says_when_the_store_is_empty_and_names_an_event_once() {
    let dir = tempdir();
    let (config, db) = three_accounts(dir.path());
    empty_store(&db);
    let out = run(Some(&config), &["history"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        t.contains("no polls or token events") && t.contains(&db.display().to_string()),
        "an empty history says so:\n{t}"
    );

    let out = run(
        Some(&config),
        &["seed", "seeded", good_seed().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Some(&config), &["history"]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(t.contains("seeded: access token present"), "{t}");
    assert!(!t.contains("seeded: seeded"), "{t}");
}

#[test]
fn status_hints_fit_each_grant_and_repeat_the_config_in_use() {
    let dir = tempdir();
    let (config, db) = three_accounts(dir.path());
    empty_store(&db);
    let out = run(Some(&config), &["status"]);
    assert_eq!(out.status.code(), Some(1), "no tokens yet: {}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    let section = |name: &str| -> String {
        let start = t
            .find(&format!("account {name}:"))
            .unwrap_or_else(|| panic!("no account {name}:\n{t}"));
        let rest = &t[start..];
        let end = rest[1..].find("\naccount ").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let with_config = format!("oauth-poller --config {}", config.display());
    let seeded = section("seeded");
    assert!(
        seeded.contains(&format!("`{with_config} seed seeded FILE`")),
        "{seeded}"
    );
    let pw = section("pw");
    assert!(pw.contains("password grant"), "{pw}");
    assert!(!pw.contains("seed pw FILE"), "no seed needed: {pw}");
    let consent = section("consent");
    assert!(
        consent.contains(&format!("`{with_config} authorize consent`")),
        "{consent}"
    );
}

#[test]
fn status_with_database_reports_a_configuration_that_does_not_load() {
    let dir = tempdir();
    let (_, db) = three_accounts(dir.path());
    empty_store(&db);
    let broken = dir.path().join("broken.toml");
    write_file(&broken, "[daemon\n");
    let out = run(
        Some(&broken),
        &["--database", db.to_str().unwrap(), "status"],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        err.contains("warning") && err.contains(&broken.display().to_string()),
        "the failed configuration is reported:\n{err}"
    );
}

#[test]
fn status_says_whether_the_daemon_runs_and_aligns_endpoints() {
    let s = setup(2, "1s", "refresh_token", "");
    let mut d = Daemon::start(&s.config, &[]);
    d.wait_for(
        " poll account=inode endpoint=devices",
        1,
        Duration::from_secs(10),
    );
    let out = run(Some(&s.config), &["status"]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(t.contains("daemon:   running"), "{t}");
    assert!(t.contains("account inode: ok"), "{t}");
    assert!(!t.contains("0 consecutive"), "{t}");
    // Where each endpoint's summary starts, after its name and the padding.
    let columns: Vec<usize> = t
        .lines()
        .filter_map(|l| l.strip_prefix("  endpoint "))
        .map(|rest| {
            let name_end = rest.find(' ').expect(rest);
            rest.len() - rest[name_end..].trim_start().len()
        })
        .collect();
    assert_eq!(columns.len(), 2, "{t}");
    assert_eq!(columns[0], columns[1], "endpoint lines are aligned:\n{t}");
    let out = run(Some(&s.config), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(v["daemon"], "running", "{v}");

    d.stop();
    // The last access token (2 s) runs out with nobody to refresh it.
    std::thread::sleep(Duration::from_secs(3));
    let out = run(Some(&s.config), &["status"]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(t.contains("daemon:   not running"), "{t}");
    assert!(t.contains("expired"), "{t}");
    assert!(
        !t.contains("account inode: ok"),
        "`ok` beside an expired token nobody refreshes:\n{t}"
    );
    assert!(
        t.contains(&format!(
            "oauth-poller --config {} token inode",
            s.config.display()
        )),
        "{t}"
    );
    let out = run(Some(&s.config), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(v["daemon"], "not_running", "{v}");
    assert_eq!(v["accounts"][0]["access_expired"], true, "{v}");
}

/// Every option and positional argument of every command explains itself in `--help`
/// (clap's `[default: ...]` alone does not count).
#[test]
fn every_argument_has_help_text() {
    let mut missing = Vec::new();
    for sub in [
        "",
        "run",
        "poll-once",
        "check",
        "seed",
        "authorize",
        "token",
        "status",
        "history",
        "demo",
    ] {
        let args: Vec<&str> = [sub, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let out = run(None, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = help.lines().collect();
        let mut in_args = false;
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                in_args = line.starts_with("Arguments:") || line.starts_with("Options:");
                continue;
            }
            let entry = line.trim_start();
            if !in_args
                || !(entry.starts_with('-') || entry.starts_with('<') || entry.starts_with('['))
            {
                continue;
            }
            let indent = line.len() - entry.len();
            let text_after = entry.split_once("  ").map(|(_, h)| h.trim()).unwrap_or("");
            let without_defaults = strip_brackets(text_after);
            let next_line_help = lines
                .get(i + 1)
                .is_some_and(|n| n.len() - n.trim_start().len() > indent);
            if without_defaults.is_empty() && !next_line_help {
                missing.push(format!("{sub}: {entry}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "arguments without help text:\n{}",
        missing.join("\n")
    );
}

/// Removes the annotations clap adds by itself (`[default: ...]`, `[possible values: ...]`).
fn strip_brackets(s: &str) -> String {
    let mut out = s.to_string();
    for tag in ["[default: ", "[possible values: ", "[aliases: "] {
        while let Some(start) = out.find(tag) {
            let end = out[start..].find(']').map_or(out.len(), |e| start + e + 1);
            out.replace_range(start..end, "");
        }
    }
    out.trim().to_string()
}
