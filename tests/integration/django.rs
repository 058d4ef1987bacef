//! Against the real software iNode runs: django-oauth-toolkit + Django REST framework.

use crate::config_builder::{path, Account, Config, Endpoint};
use crate::util::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The server's password-grant client as account `inode` (secret and password in 0600
/// files in `dir`), polling nothing yet.
pub(crate) fn inode_account(dj: &Django, dir: &Path) -> Account {
    let secret = dir.join("client-secret");
    let password = dir.join("password");
    write_file(&secret, &format!("{}\n", dj.get("client_secret")));
    write_file(&password, &format!("{}\n", dj.get("password")));
    Account::new("inode", &dj.get("base_url"))
        .oauth2("token_url", "oauth/token/")
        .oauth2("client_id", dj.get("client_id"))
        .oauth2("client_secret_file", path(&secret))
        .oauth2("client_auth", "body")
        .oauth2("scope", "sync")
        .oauth2("grant", "password")
        .oauth2("username", "owner")
        .oauth2("password_file", path(&password))
}

fn config(dj: &Django, dir: &Path, interval: &str) -> PathBuf {
    Config::polling(&dir.join("state.db"), interval, "10s")
        .account(
            inode_account(dj, dir)
                .endpoint(Endpoint::inode_links())
                .endpoint(Endpoint::inode_devices()),
        )
        .account(
            Account::inode_key(&dj.get("base_url"), &dj.get("api_key"))
                .endpoint(Endpoint::inode_links()),
        )
        .write(&dir.join("config.toml"))
}

/// Over at least five access-token expiries: every poll succeeds, no `invalid_grant`, and
/// the stored refresh token is always the server's current one.
#[test]
fn password_grant_and_rotation_over_five_expiries() {
    if !require(Need::Django) {
        return;
    }
    const TTL: u64 = 3;
    let dj = Django::start(TTL);
    let dir = tempdir();
    let config = config(&dj, dir.path(), "1s");
    let db = dir.path().join("state.db");
    let daemon = Daemon::start(&config, &[]);
    daemon.wait_events(&db, "obtained", 1, Duration::from_secs(20));

    let deadline = Instant::now() + Duration::from_secs(TTL * 6 + 2);
    let mut samples = 0;
    let mut mismatches = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(700));
        let valid = dj.state()["valid_refresh_tokens"]
            .as_array()
            .unwrap()
            .clone();
        let stored = stored_refresh_token(&db, "inode");
        samples += 1;
        if valid.len() != 1 || valid[0].as_str() != stored.as_deref() {
            // The server may have issued a token the daemon is committing this instant.
            std::thread::sleep(Duration::from_millis(300));
            let valid = dj.state()["valid_refresh_tokens"]
                .as_array()
                .unwrap()
                .clone();
            let stored = stored_refresh_token(&db, "inode");
            if valid.len() != 1 || valid[0].as_str() != stored.as_deref() {
                mismatches += 1;
            }
        }
    }
    let state = dj.state();
    let refreshes = state["token_requests"]["refresh_token"].as_i64().unwrap();
    assert!(refreshes >= 5, "at least five expiries passed: {state}");
    assert_eq!(state["invalid_grant"], 0, "{state}");
    assert_eq!(
        state["token_requests"]["password"], 1,
        "bootstrapped once: {state}"
    );
    assert_eq!(
        mismatches, 0,
        "stored refresh token differed from the server's in {mismatches}/{samples} samples"
    );
    drop(daemon);
    let valid = dj.state()["valid_refresh_tokens"].clone();
    assert_eq!(valid.as_array().unwrap().len(), 1);
    assert_eq!(
        valid[0].as_str(),
        stored_refresh_token(&db, "inode").as_deref()
    );

    let polls = query_i64(&db, "SELECT COUNT(*) FROM polls WHERE account = 'inode'");
    let failed = query_i64(
        &db,
        "SELECT COUNT(*) FROM polls WHERE error IS NOT NULL OR status <> 200",
    );
    assert!(polls >= 2 * (TTL as i64 * 5), "polls: {polls}");
    assert_eq!(failed, 0, "every poll succeeds:\n{}", daemon_log_hint(&db));
    let key_polls = query_i64(
        &db,
        "SELECT COUNT(*) FROM polls WHERE account = 'inode-key' AND status = 200 AND items = 3",
    );
    assert!(key_polls >= 5, "API-key (`Token`) polls: {key_polls}");
    let refreshed = query_i64(
        &db,
        "SELECT COUNT(*) FROM token_events WHERE account = 'inode' AND event = 'refreshed'",
    );
    assert_eq!(
        refreshed, refreshes,
        "every server refresh is committed as one event"
    );
}

fn daemon_log_hint(db: &std::path::Path) -> String {
    let c = crate::util::db(db);
    let mut stmt = c
        .prepare("SELECT endpoint, status, error FROM polls WHERE error IS NOT NULL LIMIT 5")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(format!(
            "{:?} {:?} {:?}",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<String>>(2)?
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect::<Vec<_>>()
    .join("\n")
}

/// `poll-once` and `token` against the real server; the token printed works on the API.
#[test]
fn poll_once_and_token_against_django() {
    if !require(Need::Django) {
        return;
    }
    let dj = Django::start(60);
    let dir = tempdir();
    let config = config(&dj, dir.path(), "60s");
    let out = run(Some(&config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let ok_lines = text(&out)
        .lines()
        .filter(|l| l.contains(" poll account=") && l.contains("status=200"))
        .count();
    assert_eq!(
        ok_lines,
        3,
        "one log line per poll (2 OAuth2 + 1 API-key endpoint):\n{}",
        text(&out)
    );
    let out = run(Some(&config), &["token", "inode"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.len() >= 20);
    let state = dj.state();
    assert_eq!(
        state["token_requests"]["password"], 1,
        "token reused the stored one: {state}"
    );
    let out = run(Some(&config), &["token", "inode", "--header"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("Authorization: Bearer {token}")
    );
}
