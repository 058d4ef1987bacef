//! The secrets scan: every secret the simulator ever issued or was configured with (client
//! secret, password, API key, each access and refresh token) must appear nowhere in what
//! the processes wrote (stdout and stderr, at `--log-level trace`), nor in the store's free
//! text (`token_events.detail`, `polls.error`, `tokens.state_detail`), nor on the command
//! line of any process a test started (`/proc/PID/cmdline`, hooks included), nor in a hook's
//! environment (recorded with [`environ_hook`]); and no output may show a panic.
//!
//! The fault, crash and concurrency tests call [`assert_no_secrets`] at their end; the tests
//! here cover the cases built to leak (a provider that echoes tokens in its errors).

use crate::util::*;
use oauth_poller_sim::{Profile, SimOptions};
use std::path::Path;
use std::time::Duration;

/// An `on_event`/`on_change` command (as a TOML array) that appends the environment the
/// hook was started with, as the kernel holds it (`/proc/PID/environ`), to `file`: to scan
/// hook environments for secrets.
pub fn environ_hook(file: &Path) -> String {
    format!(
        r#"["/bin/sh", "-c", "tr '\\0' '\\n' < /proc/$$/environ >> '{}'; echo --- >> '{}'"]"#,
        file.display(),
        file.display()
    )
}

/// Every secret the simulator knows: configured ones and every token it ever issued.
pub fn secrets_of(sim: &Sim) -> Vec<String> {
    let o = sim.sim.options();
    let mut all = vec![
        o.client_secret.clone(),
        o.password.clone(),
        o.api_key.clone(),
    ];
    if let Some(issued) = sim.stats()["issued_tokens"].as_array() {
        all.extend(issued.iter().filter_map(|t| t.as_str()).map(String::from));
    }
    all.retain(|s| s.len() >= 8);
    all.sort();
    all.dedup();
    all
}

/// The store's free text: (where, text).
pub fn store_texts(db: &Path) -> Vec<(String, String)> {
    if !db.exists() {
        return Vec::new();
    }
    let c = crate::util::db(db);
    let mut out = Vec::new();
    for (table, column) in [
        ("token_events", "detail"),
        ("polls", "error"),
        ("tokens", "state_detail"),
    ] {
        let mut st = c
            .prepare(&format!(
                "SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL"
            ))
            .unwrap();
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .unwrap();
        for row in rows {
            let (id, text) = row.unwrap();
            out.push((format!("{table}.{column} rowid {id}"), text));
        }
    }
    out
}

/// Finds every secret of `secrets` in `outputs` and the store's free text.
pub fn leaks(secrets: &[String], outputs: &[&str], db: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let texts = store_texts(db);
    for secret in secrets {
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let forms = [secret.as_str(), encoded.as_str()];
        for (i, out) in outputs.iter().enumerate() {
            for line in out.lines() {
                if forms.iter().any(|f| line.contains(f)) {
                    found.push(format!("output {i}: {line}"));
                }
            }
        }
        for (place, text) in &texts {
            if forms.iter().any(|f| text.contains(f)) {
                found.push(format!("{place}: {text}"));
            }
        }
    }
    found
}

/// A panic's message is printed as it is, whatever it holds (a key file's contents, once):
/// every panic in `outputs` counts as a leak.
pub fn panics(outputs: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        for line in out.lines().filter(|l| l.contains("panicked at")) {
            found.push(format!("output {i}: a panic: {line}"));
        }
    }
    found
}

/// Panics, listing the leaks, if any secret of `sim` shows up in `outputs`, the store, or the
/// command line of any process this test started (the daemons' hooks included, see
/// [`cmdlines_seen`]), or if any output shows a panic. Returns how many secrets were looked
/// for (to print, and to show the scan was not empty).
pub fn assert_no_secrets(label: &str, sim: &Sim, outputs: &[&str], db: &Path) -> usize {
    let secrets = secrets_of(sim);
    assert!(
        secrets.len() >= 4,
        "{label}: the scan has secrets to look for"
    );
    let cmdlines = cmdlines_seen();
    assert!(
        !cmdlines.is_empty(),
        "{label}: no command line was recorded"
    );
    let mut all = outputs.to_vec();
    all.push(&cmdlines);
    let mut found = leaks(&secrets, &all, db);
    found.extend(panics(outputs));
    assert!(
        found.is_empty(),
        "{label}: {} secret(s) leaked:\n{}",
        found.len(),
        found.join("\n")
    );
    secrets.len()
}

/// The scan itself finds what it should: a planted token in the log and in the store.
#[test]
fn the_scan_finds_planted_secrets() {
    let s = crate::lifecycle::setup(600, "60s", "refresh_token", "");
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let secrets = secrets_of(&s.sim);
    let token = secrets
        .iter()
        .find(|t| !t.starts_with("demo-"))
        .unwrap()
        .clone();
    assert!(leaks(&secrets, &[&text(&out)], &s.db).is_empty());
    let planted = format!("INFO something token={token}\n");
    assert_eq!(leaks(&secrets, &[&planted], &s.db).len(), 1);
    db(&s.db)
        .execute(
            "UPDATE polls SET error = ?1 WHERE id = (SELECT MIN(id) FROM polls)",
            [format!("oops {token}")],
        )
        .unwrap();
    assert_eq!(leaks(&secrets, &[], &s.db).len(), 1);
    // A command line holding a token is found, and so is any panic.
    assert!(leaks(&secrets, &[&cmdlines_seen()], &s.db).len() == 1);
    let _ = run(None, &["--version", &token]);
    assert!(
        leaks(&secrets, &[&cmdlines_seen()], &s.db).len() == 2,
        "{}",
        cmdlines_seen()
    );
    assert!(panics(&[&text(&out)]).is_empty());
    assert_eq!(
        panics(&["thread 'main' panicked at src/store/crypto.rs:45:30:"]).len(),
        1
    );
}

/// Citesphere (Spring) echoes the refused refresh token in `error_description`; in query
/// mode the token travels in the URL. At trace level nothing of it reaches the output or
/// the store, through the daemon, `token` and `status`.
#[test]
fn an_echoing_provider_leaks_nothing_at_trace_level() {
    let mut opts = SimOptions::new(Profile::Citesphere);
    opts.access_ttl = Duration::from_secs(2);
    let sim = Sim::start(opts.clone());
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let seed = dir.path().join("seed.json");
    write_file(&seed, &sim.sim.issue_seed());
    let mut cfg = oauth_poller_sim::example_config(
        &opts,
        &format!("http://{}", sim.addr),
        db.to_str().unwrap(),
        seed.to_str().unwrap(),
    );
    cfg = cfg.replace("# seed_file", "seed_file");
    assert!(cfg.contains("token_request = \"query\""), "{cfg}");
    let config = dir.path().join("config.toml");
    write_file(&config, &cfg);

    let trace = ["--log-level", "trace"];
    let mut d = Daemon::start(&config, &trace);
    d.wait_for("token refreshed", 2, Duration::from_secs(20));
    http_post(&format!("http://{}/_sim/revoke", sim.addr));
    d.wait_for("needs re-authorization", 1, Duration::from_secs(15));
    d.signal(SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    let mut outputs = vec![d.log()];
    for args in [
        &["--log-level", "trace", "token", "citesphere"][..],
        &["--log-level", "trace", "status"],
        &["--log-level", "trace", "history", "--limit", "100"],
        &["--log-level", "trace", "poll-once"],
    ] {
        outputs.push(text(&run(Some(&config), args)));
    }
    let all: Vec<&str> = outputs.iter().map(|s| s.as_str()).collect();
    // The provider did echo a token: the case is real.
    assert!(
        all[0].contains("invalid_grant"),
        "the refresh was refused:\n{}",
        all[0]
    );
    let n = assert_no_secrets("citesphere echo", &sim, &all, &db);
    eprintln!("citesphere echo: {n} secrets, 0 found");
}
