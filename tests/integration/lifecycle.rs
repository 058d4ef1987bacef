//! The daemon against the built-in simulator (inode profile, strict rotation): demo,
//! crash and restart, signals and reload, re-authorization, 401 handling, exit codes.

use crate::config_builder::{Account, Config, Endpoint};
use crate::util::*;
use oauth_poller_sim::{Profile, SimOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Setup {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
}

/// A simulator with `ttl`-second access tokens and a daemon configuration for it, seeded
/// from the simulator (`grant` is the fallback grant: "refresh_token" means none).
pub fn setup(ttl: u64, interval: &str, grant: &str, extra_daemon: &str) -> Setup {
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = Duration::from_secs(ttl);
    setup_with(opts, interval, grant, extra_daemon)
}

/// The same with a simulator of other options (faults, profile, lifetimes).
pub fn setup_with(opts: SimOptions, interval: &str, grant: &str, extra_daemon: &str) -> Setup {
    let sim = Sim::start(opts);
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let seed = dir.path().join("seed.json");
    write_file(&seed, &sim.sim.issue_seed());
    let config = dir.path().join("config.toml");
    write_file(
        &config,
        &sim_config(&sim, &db, &seed, interval, grant, extra_daemon),
    );
    Setup {
        sim,
        dir,
        config,
        db,
    }
}

pub fn sim_config(
    sim: &Sim,
    db: &Path,
    seed: &Path,
    interval: &str,
    grant: &str,
    extra_daemon: &str,
) -> String {
    Config::polling(db, interval, "5s")
        .daemon_toml(extra_daemon)
        .account(
            Account::inode(&sim.base_url())
                .seed_file(seed)
                .oauth2("grant", grant)
                .endpoint(Endpoint::inode_links())
                .endpoint(Endpoint::inode_devices()),
        )
        .toml()
}

fn outcome(sim: &Sim, key: &str) -> i64 {
    sim.stats()["token_requests"]["by_outcome"][key]
        .as_i64()
        .unwrap_or(0)
}

/// The demo's tokens live 20 s and it polls two endpoints every 5 s: in 30 s, a refresh and
/// twelve polls, the last two with the refreshed token.
#[test]
fn demo_shows_polls_and_a_refresh_within_a_minute() {
    let tmp = tempdir();
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["demo", "--seconds", "30"])
        .env("TMPDIR", tmp.path());
    let mut demo = Daemon::spawn(cmd);
    demo.wait_for("token refreshed", 1, Duration::from_secs(30));
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{}", demo.log());
    let log = demo.log();
    let polls = log
        .lines()
        .filter(|l| l.contains(" poll account=") && l.contains("status=200"))
        .count();
    assert!(polls >= 10, "polls shown: {polls}\n{log}");
    let after_refresh = log
        .lines()
        .skip_while(|l| !l.contains("token refreshed"))
        .filter(|l| l.contains(" poll account=") && l.contains("status=200"))
        .count();
    assert!(
        after_refresh >= 1,
        "no poll with the refreshed token:\n{log}"
    );
    assert!(!log.contains("poll failed"), "{log}");
}

/// The demo's directory, from its `demo: configuration DIR/config.toml, ...` line.
fn demo_dir(demo: &Daemon) -> PathBuf {
    demo.wait_for("demo: configuration ", 1, Duration::from_secs(10));
    let log = demo.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("demo: configuration "))
        .unwrap();
    let config = line["demo: configuration ".len()..]
        .split(", database")
        .next()
        .unwrap();
    Path::new(config).parent().unwrap().to_path_buf()
}

/// The command between the backticks of the first log line containing `needle`.
fn quoted_command(log: &str, needle: &str) -> Vec<String> {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle}: {log}"));
    let cmd = line.split('`').nth(1).expect(line);
    cmd.split_whitespace().map(str::to_string).collect()
}

fn run_words(words: &[String]) -> std::process::Output {
    std::process::Command::new(&words[0])
        .args(&words[1..])
        .output()
        .unwrap_or_else(|e| panic!("{words:?}: {e}"))
}

/// The demo's files live in a new directory only its user can enter, under a name nobody
/// can guess ahead; its hint is a command that works as printed (this binary, not whatever
/// `oauth-poller` PATH may hold); the directory is gone afterwards.
#[test]
fn demo_directory_is_private_unpredictable_and_removed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["demo", "--seconds", "4"])
        .env("TMPDIR", tmp.path());
    let mut demo = Daemon::spawn(cmd);
    let dir = demo_dir(&demo);
    assert_eq!(dir.parent(), Some(tmp.path()), "{}", dir.display());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}: mode {mode:o}", dir.display());
    assert_ne!(
        dir.file_name().unwrap().to_string_lossy(),
        format!("oauth-poller-demo-{}", demo.child.id()),
        "a predictable name"
    );
    demo.wait_for("demo: meanwhile", 1, Duration::from_secs(5));
    let hint = quoted_command(&demo.log(), "demo: meanwhile");
    assert_eq!(Path::new(&hint[0]), bin().as_path(), "{hint:?}");
    demo.wait_for(" poll account=", 1, Duration::from_secs(10));
    let out = run_words(&hint);
    assert!(out.status.success(), "{hint:?}: {}", text(&out));
    assert!(text(&out).contains("account inode"), "{}", text(&out));

    assert!(
        demo.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        demo.log()
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(demo.log().contains("--keep"), "{}", demo.log());
}

#[test]
fn demo_keep_leaves_the_directory_and_says_where() {
    let tmp = tempdir();
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["demo", "--seconds", "2", "--keep"])
        .env("TMPDIR", tmp.path());
    let mut demo = Daemon::spawn(cmd);
    let dir = demo_dir(&demo);
    assert!(
        demo.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        demo.log()
    );
    let log = demo.log();
    assert!(dir.join("demo.db").exists(), "{log}");
    assert!(
        log.contains(&format!("demo: kept {}", dir.display())),
        "{log}"
    );
    let status = quoted_command(&log, "demo: kept");
    let out = run_words(&status);
    assert!(out.status.success(), "{status:?}: {}", text(&out));
}

#[test]
fn sigkill_and_restart_continue_from_the_store() {
    let s = setup(3, "1s", "refresh_token", "");
    for round in 0..3 {
        let (refreshed, polls) = (events(&s.db, "refreshed"), Polls::all().count(&s.db));
        let mut d = Daemon::start(&s.config, &[]);
        d.wait_events(&s.db, "refreshed", refreshed + 1, Duration::from_secs(15));
        d.wait_polls(&s.db, Polls::all(), polls + 4, Duration::from_secs(10));
        d.signal(SIGKILL);
        d.wait_exit(Duration::from_secs(5));
        if round > 0 {
            assert!(
                !d.log().contains("imported the seed file"),
                "round {round} re-seeded:\n{}",
                d.log()
            );
        }
    }
    let seeded = query_i64(
        &s.db,
        "SELECT COUNT(*) FROM token_events WHERE event = 'seeded'",
    );
    assert_eq!(seeded, 1, "seeded once, never again");
    assert_eq!(outcome(&s.sim, "invalid_grant"), 0, "{}", s.sim.stats());
    assert_eq!(s.sim.stats()["refresh_token_reuse"], 0);
    let failed = query_i64(&s.db, "SELECT COUNT(*) FROM polls WHERE error IS NOT NULL");
    assert_eq!(failed, 0);
    let valid = s.sim.stats()["valid_refresh_tokens"].clone();
    assert_eq!(valid.as_array().unwrap().len(), 1, "{valid}");
    assert_eq!(
        valid[0].as_str(),
        stored_refresh_token(&s.db, "inode").as_deref()
    );
}

#[test]
fn sigterm_stops_gracefully_and_sighup_reloads() {
    let s = setup(60, "1s", "refresh_token", "");
    let mut d = Daemon::start(&s.config, &[]);
    d.wait_for(
        " poll account=inode endpoint=links",
        1,
        Duration::from_secs(10),
    );

    // A bad new configuration is refused; the old one keeps running.
    let good = std::fs::read_to_string(&s.config).unwrap();
    edit_config(&s.config, "interval = \"1s\"", "interval = \"soon\"");
    d.signal(SIGHUP);
    d.wait_for("new configuration refused", 1, Duration::from_secs(5));
    let before = d.count("endpoint=links");
    d.wait_for("endpoint=links", before + 2, Duration::from_secs(5));

    // A good one is applied: a new endpoint starts polling.
    write_file(&s.config, &good);
    edit_config(
        &s.config,
        "[[account.endpoint]]\nname = \"devices\"",
        "[[account.endpoint]]\nname = \"links-paged\"\npath = \"v1/links/\"\n\n[[account.endpoint]]\nname = \"devices\"",
    );
    d.signal(SIGHUP);
    d.wait_for("configuration reloaded", 1, Duration::from_secs(5));
    d.wait_for("endpoint=links-paged status=200", 1, Duration::from_secs(5));

    let t = Instant::now();
    d.signal(SIGTERM);
    let status = d.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{}", d.log());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(d.log().contains("stopped"));
    let paged_items = query_i64(
        &s.db,
        "SELECT items FROM polls WHERE endpoint = 'links-paged' ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(paged_items, 3, "items of a DRF page come from `results`");
}

#[test]
fn revoked_grant_needs_reauth_and_a_new_seed_resumes_by_itself() {
    let s = setup(60, "1s", "refresh_token", "");
    let d = Daemon::start(&s.config, &[]);
    d.wait_for(" poll account=inode", 2, Duration::from_secs(10));
    http_post(&format!("http://{}/_sim/revoke", s.sim.addr));
    d.wait_for("needs re-authorization", 1, Duration::from_secs(10));
    d.wait_for("skipping polls", 2, Duration::from_secs(5));

    let out = run(Some(&s.config), &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("needs_reauth") && text(&out).contains("oauth-poller seed inode FILE"),
        "{}",
        text(&out)
    );
    let out = run(Some(&s.config), &["token", "inode"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run(Some(&s.config), &["poll-once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let polls_during = query_i64(&s.db, "SELECT COUNT(*) FROM polls");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        query_i64(&s.db, "SELECT COUNT(*) FROM polls"),
        polls_during,
        "endpoints are skipped"
    );

    let seed = s.dir.path().join("new-seed.json");
    write_file(&seed, &s.sim.sim.issue_seed());
    let out = run(Some(&s.config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let ok_before = d.count("status=200");
    d.wait_for("status=200", ok_before + 2, Duration::from_secs(5));
    let out = run(Some(&s.config), &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<String> = {
        let c = db(&s.db);
        let mut st = c
            .prepare("SELECT event FROM token_events ORDER BY id")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert!(
        events.ends_with(&["needs_reauth".to_string(), "seeded".to_string()]),
        "{events:?}"
    );
}

#[test]
fn a_401_refreshes_once_and_retries_once() {
    let s = setup(600, "1s", "refresh_token", "");
    let d = Daemon::start(&s.config, &[]);
    d.wait_polls(&s.db, Polls::all(), 2, Duration::from_secs(10));
    // The server forgets the access token before its stated expiry.
    http_post(&format!("http://{}/_sim/expire?what=access", s.sim.addr));
    d.wait_events(&s.db, "refreshed", 1, Duration::from_secs(10));
    let ok = Polls::ok().count(&s.db);
    d.wait_polls(&s.db, Polls::ok(), ok + 2, Duration::from_secs(5));
    drop(d);
    assert_eq!(
        s.sim.stats()["refreshes"],
        1,
        "one refresh for two endpoints: {}",
        s.sim.stats()
    );
    let failed = query_i64(&s.db, "SELECT COUNT(*) FROM polls WHERE error IS NOT NULL");
    assert_eq!(failed, 0, "the retried polls succeeded");
}

#[test]
fn poll_once_exits_1_when_a_poll_fails() {
    let s = setup(600, "60s", "refresh_token", "");
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    http_post(&format!(
        "http://{}/_sim/fault?target=api&kind=status&status=500&path=devices",
        s.sim.addr
    ));
    let out = run(Some(&s.config), &["poll-once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("endpoint=devices status=500"),
        "{}",
        text(&out)
    );
    let out = run(Some(&s.config), &["poll-once", "--account", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn password_grant_bootstraps_without_a_seed_and_recovers_a_revoked_grant() {
    let s = setup(60, "1s", "password", "");
    std::fs::remove_file(s.dir.path().join("seed.json")).unwrap();
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg: String = cfg
        .lines()
        .filter(|l| !l.starts_with("seed_file"))
        .collect::<Vec<_>>()
        .join("\n");
    write_file(&s.config, &cfg);
    let d = Daemon::start(&s.config, &[]);
    d.wait_events(&s.db, "obtained", 1, Duration::from_secs(10));
    http_post(&format!("http://{}/_sim/revoke", s.sim.addr));
    d.wait_for(
        "obtaining a new token with the fallback grant",
        1,
        Duration::from_secs(10),
    );
    d.wait_events(&s.db, "obtained", 2, Duration::from_secs(10));
    let ok = Polls::ok().count(&s.db);
    d.wait_polls(&s.db, Polls::ok(), ok + 2, Duration::from_secs(5));
    assert_eq!(s.sim.stats()["token_requests"]["by_grant"]["password"], 2);
}
