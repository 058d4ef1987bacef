//! The store on a real PostgreSQL (a cluster of each test's own, see `pg`): the commands an
//! operator runs, several processes refreshing one account, TLS verified against a CA, and a
//! database URL that would show a password refused.

use crate::config_builder::{Account, Config, Endpoint};
use crate::pg::PgServer;
use crate::secrets::{leaks, panics, secrets_of};
use crate::util::*;
use oauth_poller_sim::{FaultKind, FaultSpec, FaultTarget, Profile, SimOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A simulator with single-use refresh tokens, a PostgreSQL of its own, and a configuration
/// pointing the `inode` account at both (the password in a file of mode 0600).
pub(crate) struct Setup {
    pub sim: Sim,
    pub pg: PgServer,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

fn setup(pg: PgServer, access_ttl: u64, daemon_toml: &str) -> Setup {
    setup_with(pg, access_ttl, daemon_toml, "")
}

/// [`setup`], with more keys for the account (`account_toml`).
pub(crate) fn setup_with(
    pg: PgServer,
    access_ttl: u64,
    daemon_toml: &str,
    account_toml: &str,
) -> Setup {
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = Duration::from_secs(access_ttl);
    setup_opts(pg, opts, daemon_toml, account_toml)
}

/// [`setup_with`], with a simulator of other options (faults).
fn setup_opts(pg: PgServer, opts: SimOptions, daemon_toml: &str, account_toml: &str) -> Setup {
    assert!(opts.rotate, "refresh tokens last one use");
    let sim = Sim::start(opts);
    let dir = tempdir();
    let seed = dir.path().join("seed.json");
    write_file(&seed, &sim.sim.issue_seed());
    let password = dir.path().join("db-password");
    write_file(&password, &format!("{}\n", pg.password()));
    let config = Config::default()
        .daemon("database", pg.url())
        .daemon("database_password_file", password.to_str().unwrap())
        .daemon("interval", "1s")
        .daemon("timeout", "5s")
        .daemon_toml(daemon_toml)
        .account(
            Account::inode(&sim.base_url())
                .toml(account_toml)
                .seed_file(&seed)
                .oauth2("grant", "refresh_token")
                .endpoint(Endpoint::inode_links())
                .endpoint(Endpoint::inode_devices()),
        )
        .write(&dir.path().join("config.toml"));
    Setup {
        sim,
        pg,
        dir,
        config,
    }
}

pub(crate) fn count(pg: &PgServer, sql: &str) -> i64 {
    pg.psql(sql).trim().parse().unwrap_or(-1)
}

/// Waits until `sql` (a count) reaches `n`.
pub(crate) fn wait_count(
    pg: &PgServer,
    sql: &str,
    n: i64,
    timeout: Duration,
    log: impl Fn() -> String,
) {
    let until = Instant::now() + timeout;
    loop {
        let c = count(pg, sql);
        if c >= n {
            return;
        }
        assert!(Instant::now() < until, "{sql}: {c} of {n}\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An operator's path, on PostgreSQL: `seed`, `run` through expiries with rotating refresh
/// tokens, `status`, `history`, `token`; every table where it belongs; nothing secret in
/// plaintext when the store is encrypted.
#[test]
fn seed_run_status_history_and_token_on_a_real_postgres() {
    if !require(Need::Postgres) {
        return;
    }
    let key = tempdir();
    let key_file = key.path().join("store.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let s = setup(
        PgServer::start(),
        2,
        &format!("encryption_key_file = {:?}", key_file.to_str().unwrap()),
    );
    let seed = s.dir.path().join("seed.json");
    let out = run(Some(&s.config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "seed: {}", text(&out));
    assert_eq!(count(&s.pg, "SELECT count(*) FROM tokens"), 1);

    let mut d = Daemon::start(&s.config, &["--log-level", "debug"]);
    wait_count(
        &s.pg,
        "SELECT count(*) FROM token_events WHERE event = 'refreshed'",
        3,
        Duration::from_secs(20),
        || d.log(),
    );
    wait_count(
        &s.pg,
        "SELECT count(*) FROM polls WHERE error IS NULL",
        4,
        Duration::from_secs(10),
        || d.log(),
    );
    d.stop();
    let log = d.log();
    assert!(log.contains("token refreshed"), "{log}");

    let stats = s.sim.stats();
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"], 0,
        "{stats}"
    );
    assert_eq!(stats["refresh_token_reuse"], 0, "{stats}");
    // What the store holds is what the provider honours, sealed.
    let stored =
        s.pg.psql("SELECT refresh_token FROM tokens WHERE account = 'inode'");
    let valid = valid_refresh_tokens(&stats);
    assert_eq!(valid.len(), 1, "{valid:?}");
    assert!(!stored.contains(valid[0]), "stored in plaintext: {stored}");
    assert!(stored.trim().starts_with("enc:"), "{stored}");
    let out = run(Some(&s.config), &["token", "inode"]);
    assert!(out.status.success(), "token: {}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    // Read after `token`: on a loaded machine the 2 s token may have expired, and `token`
    // refreshed it.
    let after = s.sim.stats();
    let issued = after["issued"].as_array().unwrap();
    assert!(
        issued
            .iter()
            .any(|i| i["kind"] == "access" && printed.contains(i["token"].as_str().unwrap())),
        "`token` printed an access token the provider issued: {printed}"
    );

    let out = run(Some(&s.config), &["status"]);
    let status = text(&out);
    assert!(out.status.success(), "status: {status}");
    assert!(
        status.contains(&s.pg.url().replace("postgres://", "")),
        "{status}"
    );
    assert!(status.contains("inode"), "{status}");
    assert!(!status.contains(s.pg.password()), "{status}");
    let out = run(Some(&s.config), &["history", "--limit", "50"]);
    let history = text(&out);
    assert!(out.status.success(), "history: {history}");
    assert!(
        history.contains("links") && history.contains("refreshed"),
        "{history}"
    );
    assert_eq!(
        count(&s.pg, "SELECT count(*) FROM refresh_journal"),
        0,
        "every journaled answer was committed and removed"
    );
    assert_no_secrets(&s, &[&log, &status, &history]);
}

/// No token, nor the database's password, in `outputs`, the command lines seen, or the
/// store's free text (event details, account states, poll errors).
pub(crate) fn assert_no_secrets(s: &Setup, outputs: &[&str]) {
    let mut secrets = secrets_of(&s.sim);
    assert!(secrets.len() >= 4, "the scan has secrets to look for");
    secrets.push(s.pg.password().to_string());
    let free_text = s.pg.psql(
        "SELECT detail FROM token_events UNION ALL SELECT state_detail FROM tokens \
         UNION ALL SELECT error FROM polls",
    );
    let cmdlines = cmdlines_seen();
    let mut all = outputs.to_vec();
    all.push(&cmdlines);
    all.push(&free_text);
    // No SQLite store to scan here: the PostgreSQL store's text is among the outputs.
    let mut found = leaks(&secrets, &all, Path::new("/nonexistent"));
    found.extend(panics(outputs));
    assert!(
        found.is_empty(),
        "{} secret(s) leaked:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// Three processes on one account through one PostgreSQL, single-use refresh tokens
/// expiring every 3 s: two daemons (the account's lease goes to one of them) and two
/// processes calling `token` in a loop, as scripts on other hosts do (a command run once
/// holds no lease: the refresh gate alone keeps it to one refresh at a time). The token
/// endpoint answers after 300 ms, so that refreshes overlap unless they are serialized.
/// Each expiry is refreshed once, and no refresh token is presented after it was spent.
#[test]
fn daemons_and_token_loops_on_one_postgres_refresh_once_per_expiry() {
    use std::sync::atomic::{AtomicBool, Ordering};
    if !require(Need::Postgres) {
        return;
    }
    const TTL: u64 = 3;
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = Duration::from_secs(TTL);
    let mut slow = FaultSpec::new(FaultTarget::Token, FaultKind::Delay);
    slow.delay_ms = 300;
    opts.faults.push(slow);
    let s = setup_opts(PgServer::start(), opts, "", "");
    let seed = s.dir.path().join("seed.json");
    let out = run(Some(&s.config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "seed: {}", text(&out));
    let started = Instant::now();
    let mut daemons: Vec<Daemon> = (0..2).map(|_| Daemon::start(&s.config, &[])).collect();
    let stop = AtomicBool::new(false);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let loops: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let out = run(Some(&s.config), &["token", "inode"]);
                        if !out.status.success() {
                            failed.push(text(&out));
                        }
                    }
                    failed
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(TTL * 5 + 1));
        stop.store(true, Ordering::Relaxed);
        loops.into_iter().flat_map(|l| l.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    for d in &mut daemons {
        d.stop();
    }
    assert!(failures.is_empty(), "`token` failed: {failures:?}");
    let logs: Vec<String> = daemons.iter().map(|d| d.log()).collect();
    let stats = s.sim.stats();
    let times = refreshes_with_no_spent_grant(&stats, &logs.join("\n----\n"));
    assert!(times.len() >= 4, "expiries passed: {times:?}");
    let most = (elapsed / (TTL - 1) as f64).ceil() as usize + 1;
    assert!(
        times.len() <= most,
        "{} refreshes in {elapsed:.0}s (at most {most}): {times:?}",
        times.len()
    );
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&g| g >= 1),
        "two refreshes for one expiry: gaps {gaps:?}"
    );
    assert_eq!(
        count(
            &s.pg,
            "SELECT count(*) FROM token_events WHERE event = 'refreshed'"
        ) as usize,
        times.len()
    );
    eprintln!(
        "two daemons and two token loops on one PostgreSQL: {} refreshes in {elapsed:.1}s, 0 invalid_grant",
        times.len()
    );
}

/// `sslmode=verify-full`: with the server's CA among the trusted roots the store works;
/// without it the connection is refused, naming the database, and nothing is written.
#[test]
fn verify_full_trusts_only_a_known_ca() {
    if !require(Need::Postgres) {
        return;
    }
    let pg = PgServer::start_tls();
    let ca = pg.ca_file().to_path_buf();
    let url = format!(
        "postgres://oauth_poller@localhost:{}/oauth_poller?sslmode=verify-full",
        pg.port()
    );
    let s = setup(pg, 60, "");
    let text_config = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(&s.pg.url(), &url);
    write_file(&s.config, &text_config);
    let seed = s.dir.path().join("seed.json");

    let untrusted = run(Some(&s.config), &["seed", "inode", seed.to_str().unwrap()]);
    let said = text(&untrusted);
    assert_eq!(untrusted.status.code(), Some(1), "{said}");
    assert!(
        said.contains("localhost") && said.to_lowercase().contains("certificate"),
        "{said}"
    );
    assert!(!said.contains(s.pg.password()), "{said}");

    let trusted = run_with_ca(&s.config, &ca, &["seed", "inode", seed.to_str().unwrap()]);
    assert!(trusted.status.success(), "{}", text(&trusted));
    assert_eq!(count(&s.pg, "SELECT count(*) FROM tokens"), 1);
    let polled = run_with_ca(&s.config, &ca, &["poll-once"]);
    assert!(polled.status.success(), "{}", text(&polled));
    assert!(count(&s.pg, "SELECT count(*) FROM polls") >= 2);
}

fn run_with_ca(config: &Path, ca: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap()
}

/// `authorize` (its pending PKCE verifier kept in PostgreSQL, sealed), then `token` and
/// `rekey` on a store with an encryption key: the two commands the other PostgreSQL tests do
/// not run.
#[test]
fn authorize_then_rekey_on_a_real_postgres() {
    use crate::vendors::{oob_code, scinote_account, sim};
    if !require(Need::Postgres) {
        return;
    }
    let pg = PgServer::start();
    let sim = sim(Profile::Scinote, 60);
    let dir = tempdir();
    let password = dir.path().join("db-password");
    write_file(&password, pg.password());
    let (old_key, new_key) = (dir.path().join("old.key"), dir.path().join("new.key"));
    std::fs::write(&old_key, [7u8; 32]).unwrap();
    std::fs::write(&new_key, [9u8; 32]).unwrap();
    let config_with = |key: &Path| {
        Config::default()
            .daemon("database", pg.url())
            .daemon("database_password_file", password.to_str().unwrap())
            .daemon("encryption_key_file", key.to_str().unwrap())
            .account(scinote_account(&sim))
            .write(&dir.path().join("config.toml"))
    };
    let config = config_with(&old_key);

    // The URL, then the code the provider's page shows.
    let out = run(Some(&config), &["authorize", "scinote"]);
    assert!(out.status.success(), "{}", text(&out));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let verifier = pg.psql("SELECT code_verifier FROM authorizations");
    assert!(
        verifier.trim().starts_with("enc:"),
        "the PKCE verifier is sealed: {verifier}"
    );
    let code = oob_code(&url);
    let out = run(Some(&config), &["authorize", "scinote", "--code", &code]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        pg.psql("SELECT obtained_by FROM tokens WHERE account = 'scinote'")
            .trim(),
        "authorization_code"
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM authorizations"), 0);

    let out = run(Some(&config), &["token", "scinote"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stored = pg.psql("SELECT access_token FROM tokens");
    assert!(
        !token.is_empty() && !stored.contains(&token),
        "the access token is stored sealed"
    );

    // rekey: every secret re-sealed with the new key, in one transaction.
    let out = run(Some(&config), &["rekey", new_key.to_str().unwrap()]);
    assert!(out.status.success(), "rekey: {}", text(&out));
    assert_ne!(pg.psql("SELECT access_token FROM tokens"), stored);
    let out = run(Some(&config), &["token", "scinote"]);
    assert_eq!(out.status.code(), Some(1), "the old key opens nothing now");
    let config = config_with(&new_key);
    let out = run(Some(&config), &["token", "scinote"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token);
    let stats = sim.stats();
    assert_eq!(stats["token_requests"]["by_outcome"]["ok"], 1, "{stats}");
}
