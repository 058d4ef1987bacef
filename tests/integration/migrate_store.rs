//! `migrate-store --to postgres://...`: a SQLite store moved into a real PostgreSQL (a
//! cluster of each test's own, see `pg`), the daemon carrying on there; newer tokens in the
//! target, a running daemon and bad input refused, changing nothing.

use crate::config_builder::{Account, Config, Endpoint};
use crate::pg::PgServer;
use crate::util::*;
use oauth_poller_sim::{Profile, SimOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A simulator with single-use refresh tokens and a configuration on a SQLite store, its
/// `inode` account seeded from `seed.json`.
struct Setup {
    sim: Sim,
    dir: tempfile::TempDir,
    db: PathBuf,
    config: Config,
    config_file: PathBuf,
}

fn setup(access_ttl: u64, daemon_toml: &str) -> Setup {
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = Duration::from_secs(access_ttl);
    assert!(opts.rotate, "refresh tokens last one use");
    let sim = Sim::start(opts);
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let seed = dir.path().join("seed.json");
    write_file(&seed, &sim.sim.issue_seed());
    let config = Config::polling(&db, "1s", "5s")
        .daemon_toml(daemon_toml)
        .account(
            Account::inode(&sim.base_url())
                .seed_file(&seed)
                .oauth2("grant", "refresh_token")
                .endpoint(Endpoint::inode_links())
                .endpoint(Endpoint::inode_devices()),
        );
    let config_file = config.write(&dir.path().join("config.toml"));
    let out = run(
        Some(&config_file),
        &["seed", "inode", seed.to_str().unwrap()],
    );
    assert!(out.status.success(), "seed: {}", text(&out));
    Setup {
        sim,
        dir,
        db,
        config,
        config_file,
    }
}

impl Setup {
    /// The daemon's password for `pg`, in a file of mode 0600.
    fn password_file(&self, pg: &PgServer) -> PathBuf {
        let file = self.dir.path().join("pg-password");
        write_file(&file, &format!("{}\n", pg.password()));
        file
    }

    /// This set-up's configuration with its store on `pg`, written to `config-pg.toml`.
    fn config_on(&self, pg: &PgServer) -> PathBuf {
        let password = self.password_file(pg);
        self.config
            .clone()
            .daemon("database", pg.url())
            .daemon("database_password_file", password.to_str().unwrap())
            .write(&self.dir.path().join("config-pg.toml"))
    }

    fn migrate(&self, pg: &PgServer, extra: &[&str]) -> std::process::Output {
        let password = self.password_file(pg);
        let mut args = vec![
            "migrate-store",
            "--to",
            &pg.url(),
            "--to-password-file",
            password.to_str().unwrap(),
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(Some(&self.config_file), &args)
    }
}

fn count(pg: &PgServer, sql: &str) -> i64 {
    pg.psql(sql).trim().parse().unwrap_or(-1)
}

/// Every table of the PostgreSQL database, row by row, as text: to show nothing changed.
fn pg_dump(pg: &PgServer) -> String {
    let tables = pg.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' \
         ORDER BY 1",
    );
    let mut out = String::new();
    for t in tables.lines().filter(|t| !t.is_empty()) {
        out.push_str(&format!("== {t}\n"));
        out.push_str(&pg.psql(&format!("SELECT x::text FROM {t} x ORDER BY 1")));
        out.push('\n');
    }
    out
}

/// A SQLite store with history (refreshes with single-use refresh tokens, polls) moved into
/// PostgreSQL; a second run copies nothing again; the daemon, pointed at PostgreSQL, goes on
/// refreshing the moved refresh token without a re-seed, and `history` there shows the
/// SQLite store's polls and events.
#[test]
fn a_sqlite_store_moves_to_postgres_and_the_daemon_continues_there() {
    if !require(Need::Postgres) {
        return;
    }
    let key = tempdir();
    let key_file = key.path().join("store.key");
    std::fs::write(&key_file, [5u8; 32]).unwrap();
    let s = setup(
        2,
        &format!("encryption_key_file = {:?}", key_file.to_str().unwrap()),
    );
    let mut d = Daemon::start(&s.config_file, &[]);
    d.wait_events(&s.db, "refreshed", 3, Duration::from_secs(30));
    d.wait_polls(&s.db, Polls::ok(), 4, Duration::from_secs(10));
    d.stop();
    let events = query_i64(&s.db, "SELECT COUNT(*) FROM token_events");
    let refreshed = events_in(&s.db, "refreshed");
    let polls = query_i64(&s.db, "SELECT COUNT(*) FROM polls");
    let sqlite_generation = query_i64(&s.db, "SELECT generation FROM tokens");

    let pg = PgServer::start();
    let out = s.migrate(&pg, &[]);
    let said = text(&out);
    assert!(out.status.success(), "migrate-store: {said}");
    eprintln!("{said}");
    assert!(
        said.contains(&format!("token events: {events} copied"))
            && said.contains(&format!("polls: {polls} copied"))
            && said.contains("tokens: 1 copied"),
        "{said}"
    );
    assert!(
        said.contains(&format!("set daemon.database = \"{}", pg.url())),
        "{said}"
    );
    assert!(!said.contains(pg.password()), "{said}");
    assert_eq!(count(&pg, "SELECT count(*) FROM token_events"), events);
    assert_eq!(count(&pg, "SELECT count(*) FROM polls"), polls);
    assert_eq!(
        count(&pg, "SELECT generation FROM tokens WHERE account = 'inode'"),
        sqlite_generation
    );
    let stored = pg.psql("SELECT refresh_token FROM tokens");
    assert!(stored.starts_with("enc:"), "sealed with the key: {stored}");

    // Idempotent: the same token is skipped, no history row is copied twice.
    let again = s.migrate(&pg, &[]);
    let said = text(&again);
    assert!(again.status.success(), "second run: {said}");
    assert!(
        said.contains("tokens: 0 copied, 1 already there")
            && said.contains(&format!("token events: 0 copied, {events} already there"))
            && said.contains(&format!("polls: 0 copied, {polls} already there")),
        "{said}"
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM token_events"), events);
    assert_eq!(count(&pg, "SELECT count(*) FROM polls"), polls);
    let moved_at = now();

    // The daemon on PostgreSQL: the configuration's seed file is not used again.
    let on_pg = s.config_on(&pg);
    let mut d = Daemon::start(&on_pg, &[]);
    let until = Instant::now() + Duration::from_secs(30);
    while count(
        &pg,
        "SELECT count(*) FROM token_events WHERE event = 'refreshed'",
    ) < refreshed + 2
    {
        assert!(
            Instant::now() < until,
            "no refresh on PostgreSQL:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.stop();
    let stats = s.sim.stats();
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"],
        0,
        "{stats}\n{}",
        d.log()
    );
    assert_eq!(stats["refresh_token_reuse"], 0, "{stats}");
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM token_events WHERE event = 'seeded'"
        ),
        1,
        "no re-seed"
    );

    let out = run(Some(&on_pg), &["history", "--json", "--limit", "10000"]);
    assert!(out.status.success(), "history: {}", text(&out));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = history.as_array().unwrap();
    let old = |kind: &str| {
        list.iter()
            .filter(|i| i["kind"] == kind && i["at"].as_i64().unwrap() <= moved_at)
            .count() as i64
    };
    assert!(old("poll") >= polls, "{history}");
    assert!(old("event") >= events, "{history}");
    assert!(
        list.iter().any(|i| i["event"] == "seeded"),
        "the seed event of the SQLite store: {history}"
    );
}

/// A seed for the simulator's account whose token was issued at `issued_at`.
fn seed_issued_at(sim: &Sim, path: &Path, issued_at: i64) {
    let mut seed: serde_json::Value = serde_json::from_str(&sim.sim.issue_seed()).unwrap();
    seed["issued_at"] = issued_at.into();
    write_file(path, &seed.to_string());
}

/// The target already holds a newer token for the account (a daemon there refreshed it):
/// refused with exit 2 naming the account, and the target is left as it was; `--force`
/// replaces it.
#[test]
fn a_newer_token_in_the_target_is_refused_and_changes_nothing() {
    if !require(Need::Postgres) {
        return;
    }
    let s = setup(60, "");
    let older = s.dir.path().join("older.json");
    seed_issued_at(&s.sim, &older, now() - 600);
    let out = run(
        Some(&s.config_file),
        &["seed", "inode", older.to_str().unwrap(), "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let sqlite_token = stored_refresh_token(&s.db, "inode").unwrap();

    let pg = PgServer::start();
    let on_pg = s.config_on(&pg);
    let newer = s.dir.path().join("newer.json");
    seed_issued_at(&s.sim, &newer, now() - 60);
    let out = run(Some(&on_pg), &["seed", "inode", newer.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let before = pg_dump(&pg);

    let out = s.migrate(&pg, &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("--to") && said.contains("`inode`"), "{said}");
    assert!(said.contains("--force"), "{said}");
    assert!(!said.contains(pg.password()), "{said}");
    assert_eq!(pg_dump(&pg), before, "the target changed");

    let out = s.migrate(&pg, &["--force"]);
    assert!(out.status.success(), "--force: {}", text(&out));
    assert_eq!(
        pg.psql("SELECT refresh_token FROM tokens WHERE account = 'inode'"),
        sqlite_token
    );
    let generations = pg.psql("SELECT generation FROM tokens");
    assert_eq!(generations, "2", "past the target's generation");
}

/// The target is encrypted with another key than the configured one (which opens the
/// SQLite store and would seal the tokens there): refused with exit 1, and the target is
/// left as it was.
#[test]
fn a_target_sealed_with_another_key_is_refused_and_changes_nothing() {
    if !require(Need::Postgres) {
        return;
    }
    let keys = tempdir();
    let (ours, theirs) = (keys.path().join("ours.key"), keys.path().join("theirs.key"));
    std::fs::write(&ours, [1u8; 32]).unwrap();
    std::fs::write(&theirs, [2u8; 32]).unwrap();
    let s = setup(
        60,
        &format!("encryption_key_file = {:?}", ours.to_str().unwrap()),
    );
    let pg = PgServer::start();
    let password = s.password_file(&pg);
    let other = Config::default()
        .daemon("database", pg.url())
        .daemon("database_password_file", password.to_str().unwrap())
        .daemon("encryption_key_file", theirs.to_str().unwrap())
        .account(
            Account::inode(&s.sim.base_url())
                .oauth2("grant", "refresh_token")
                .endpoint(Endpoint::inode_links()),
        )
        .write(&s.dir.path().join("config-other.toml"));
    let seed = s.dir.path().join("other-seed.json");
    write_file(&seed, &s.sim.sim.issue_seed());
    let out = run(Some(&other), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let before = pg_dump(&pg);

    let out = s.migrate(&pg, &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("wrong encryption key"), "{said}");
    assert_eq!(pg_dump(&pg), before, "the target changed");
}

/// A daemon running on the SQLite store would go on rotating its refresh token there: the
/// move is refused (exit 1) and the target gets nothing, not even tables.
#[test]
fn a_daemon_running_on_the_sqlite_store_is_refused() {
    if !require(Need::Postgres) {
        return;
    }
    let s = setup(60, "");
    let pg = PgServer::start();
    let mut d = Daemon::start(&s.config_file, &[]);
    d.wait_polls(&s.db, Polls::ok(), 1, Duration::from_secs(10));
    let out = s.migrate(&pg, &[]);
    d.stop();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("daemon is running"), "{said}");
    assert_eq!(pg.psql("SELECT to_regclass('tokens') IS NULL"), "t");
}

/// An unparseable URL, a URL holding a password, a URL that is not PostgreSQL's, and a
/// password file that cannot be read: exit 2 naming the option, never the password, and the
/// store unchanged.
#[test]
fn bad_targets_are_input_errors_naming_the_option() {
    let s = setup(60, "");
    let before = dump(&s.db);
    let missing = s.dir.path().join("no-such-password");
    let missing_password = format!("error: {}: key `--to-password-file`", missing.display());
    let cases: [(&[&str], &str); 5] = [
        (
            &["--to", "postgres://poller@[::1/tokens"],
            "error: --to: not a valid",
        ),
        (
            &["--to", "postgres://poller:Hunter2pw@127.0.0.1/tokens"],
            "error: --to: the URL holds a password",
        ),
        (
            &[
                "--to",
                "postgres://poller@127.0.0.1/tokens?password=Hunter2pw",
            ],
            "error: --to: the URL holds a password",
        ),
        (
            &["--to", "/var/lib/other.db"],
            "error: --to: not a postgres:// URL",
        ),
        (
            &[
                "--to",
                "postgres://poller@127.0.0.1/tokens",
                "--to-password-file",
                missing.to_str().unwrap(),
            ],
            &missing_password,
        ),
    ];
    for (args, option) in cases {
        let mut all = vec!["migrate-store"];
        all.extend_from_slice(args);
        let out = run(Some(&s.config_file), &all);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(option), "{args:?}: {said}");
        assert!(!said.contains("Hunter2pw"), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
        assert_eq!(dump(&s.db), before, "{args:?}");
    }
}

fn events_in(db: &Path, event: &str) -> i64 {
    events(db, event)
}

fn now() -> i64 {
    oauth_poller::now()
}
