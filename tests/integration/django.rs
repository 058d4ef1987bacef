//! Against the real software iNode runs: django-oauth-toolkit + Django REST framework.

use crate::util::*;
use std::time::{Duration, Instant};

fn config(dj: &Django, dir: &std::path::Path, interval: &str) -> std::path::PathBuf {
    let secret = dir.join("client-secret");
    let password = dir.join("password");
    write_file(&secret, &format!("{}\n", dj.get("client_secret")));
    write_file(&password, &format!("{}\n", dj.get("password")));
    let path = dir.join("config.toml");
    write_file(
        &path,
        &format!(
            r#"
[daemon]
database = "{db}"
interval = "{interval}"
timeout = "10s"

[[account]]
name = "inode"
base_url = "{base}"

[account.oauth2]
token_url = "oauth/token/"
client_id = "{client_id}"
client_secret_file = "{secret}"
client_auth = "body"
scope = "sync"
grant = "password"
username = "owner"
password_file = "{password}"

[[account.endpoint]]
name = "links"
path = "v1/links/"
query = {{ no_pagination = "" }}

[[account.endpoint]]
name = "devices"
path = "v1/devices/"
query = {{ no_pagination = "" }}

[[account]]
name = "inode-key"
base_url = "{base}"
auth = "api_key"
header_scheme = "Token"

[account.api_key]
key = "{api_key}"

[[account.endpoint]]
name = "links"
path = "v1/links/"
query = {{ no_pagination = "" }}
"#,
            db = dir.join("state.db").display(),
            base = dj.get("base_url"),
            client_id = dj.get("client_id"),
            secret = secret.display(),
            password = password.display(),
            api_key = dj.get("api_key"),
        ),
    );
    path
}

/// Over at least five access-token expiries: every poll succeeds, no `invalid_grant`, and
/// the stored refresh token is always the server's current one.
#[test]
fn password_grant_and_rotation_over_five_expiries() {
    const TTL: u64 = 3;
    let dj = Django::start(TTL);
    let dir = tempdir();
    let config = config(&dj, dir.path(), "1s");
    let db = dir.path().join("state.db");
    let daemon = Daemon::start(&config, &[]);
    daemon.wait_for("token obtained", 1, Duration::from_secs(20));

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
