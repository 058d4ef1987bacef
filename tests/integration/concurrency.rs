//! One refresh at a time across processes: `run` plus four processes calling `token` in a
//! loop on one database, against a simulator whose refresh tokens rotate and die at once.

use crate::lifecycle::setup;
use crate::util::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn run_and_four_token_loops_refresh_once_per_expiry() {
    const TTL: u64 = 4; // with refresh_margin 1s: a refresh every ~3 s
    let s = setup(TTL, "1s", "refresh_token", "");
    let daemon = Daemon::start(&s.config, &[]);
    daemon.wait_polls(&s.db, Polls::all(), 2, Duration::from_secs(10));

    let loops = TokenLoops::start(&s.config, 4, &[]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(TTL * 5 + 2));
    let done = loops.finish();
    let elapsed = started.elapsed().as_secs_f64();
    drop(daemon);

    let stats = s.sim.stats();
    let times = assert_one_refresh_per_expiry(&stats, &s.db);
    let most = (elapsed / (TTL - 1) as f64).ceil() as usize + 1;
    assert!(
        times.len() <= most,
        "{} refreshes in {elapsed:.0}s (at most {most})",
        times.len()
    );
    assert_eq!(
        stats["valid_refresh_tokens"][0].as_str(),
        stored_refresh_token(&s.db, "inode").as_deref()
    );
    eprintln!(
        "{} token calls, {} refreshes in {elapsed:.1}s",
        done.calls,
        times.len()
    );
}

/// `run`, eight processes calling `token` in a loop and an operator's `seed` in the middle:
/// one refresh per expiry, no `invalid_grant`, no `database is locked`, nothing leaked.
#[test]
fn run_eight_token_loops_and_a_seed_in_the_middle() {
    const TTL: u64 = 4;
    const LOOPS: usize = 8;
    let s = setup(TTL, "1s", "refresh_token", "");
    let daemon = Daemon::start(&s.config, &["--log-level", "trace"]);
    daemon.wait_polls(&s.db, Polls::all(), 2, Duration::from_secs(10));

    let loops = TokenLoops::start(&s.config, LOOPS, &["--log-level", "trace"]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(TTL * 3));
    // The operator seeds a new grant while everything runs.
    let seed = s.dir.path().join("new-seed.json");
    write_file(&seed, &s.sim.sim.issue_seed());
    let out = run(
        Some(&s.config),
        &["seed", "inode", seed.to_str().unwrap(), "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let seeded_rt = stored_refresh_token(&s.db, "inode");
    std::thread::sleep(Duration::from_secs(TTL * 3));
    let done = loops.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let daemon_log = daemon.log();
    drop(daemon);

    let stats = s.sim.stats();
    let stderr = done.stderr.clone();
    for (what, out) in [("daemon", &daemon_log), ("token calls", &stderr)] {
        assert!(
            !out.contains("database is locked"),
            "{what}: database is locked:\n{out}"
        );
    }
    let times = assert_one_refresh_per_expiry(&stats, &s.db);
    // The seeded grant took over: the stored refresh token descends from it, and it is
    // one the provider still honours.
    assert_ne!(seeded_rt, None);
    let stored = stored_refresh_token(&s.db, "inode");
    let valid = valid_refresh_tokens(&stats);
    assert!(
        valid.contains(&stored.as_deref().unwrap()),
        "{stored:?} not in {valid:?}"
    );
    let cmdlines = done.cmdlines.clone();
    assert!(
        cmdlines.contains(" token inode"),
        "the loops' command lines were recorded"
    );
    crate::secrets::assert_no_secrets(
        "8 token loops",
        &s.sim,
        &[&daemon_log, &stderr, &cmdlines],
        &s.db,
    );
    eprintln!(
        "{} token calls by {LOOPS} processes, {} refreshes in {elapsed:.1}s, a seed in the middle",
        done.calls,
        times.len()
    );
}

/// An operator holds a write transaction open (as `sqlite3` would) for 10 s: the daemon
/// waits, does not crash, does not fail with `database is locked`, and catches up.
#[test]
fn an_operator_holding_the_write_lock_delays_the_daemon() {
    const HOLD: u64 = 10;
    let s = setup(3, "1s", "refresh_token", "");
    let mut d = Daemon::start(&s.config, &[]);
    d.wait_polls(&s.db, Polls::ok(), 2, Duration::from_secs(10));
    let refreshed_before = events(&s.db, "refreshed");
    let logged_before = d.count("token refreshed");

    let c = db(&s.db);
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    let held = Instant::now();
    // Readers are not blocked: `token` answers at once while the token is valid, or waits.
    std::thread::sleep(Duration::from_secs(HOLD));
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon died while the lock was held:\n{}",
        d.log()
    );
    // The log, not the store: nothing can commit while the lock is held, so only the log
    // would show a refresh that went round the lock.
    let refreshed_during = d.count("token refreshed") - logged_before;
    c.execute_batch("COMMIT").unwrap();
    drop(c);
    let released = held.elapsed();

    // It catches up: a refresh and good polls within a few seconds of the release.
    d.wait_events(
        &s.db,
        "refreshed",
        refreshed_before + 1,
        Duration::from_secs(5),
    );
    let ok = Polls::ok().count(&s.db);
    d.wait_polls(&s.db, Polls::ok(), ok + 2, Duration::from_secs(5));
    d.stop();
    let log = d.log();
    assert!(!log.contains("database is locked"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(
        refreshed_during, 0,
        "no token was committed while the operator held the lock"
    );
    assert_stored_grant_is_the_live_one(&s);
    eprintln!("write lock held {released:?}: the daemon waited and caught up");
}

/// A full disk (simulated with SQLite's `max_page_count`): poll rows fail with a clear
/// error, token rotation keeps committing.
#[test]
fn a_full_database_fails_poll_rows_but_rotation_keeps_committing() {
    let s = setup(2, "1s", "refresh_token", "store_bodies = \"all\"");
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let pages = query_i64(&s.db, "PRAGMA page_count");
    // Fill every free byte of those pages (token_events included), as a long-running daemon
    // on a full disk would have.
    {
        let c = db(&s.db);
        c.execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
        for size in [1000, 100, 10, 1] {
            while c
                .execute(
                    "INSERT INTO token_events (account, at, event, detail) VALUES ('filler', strftime('%s','now'), 'refreshed', ?1)",
                    ["x".repeat(size)],
                )
                .is_ok()
            {}
        }
    }
    let generation_before = query_i64(&s.db, "SELECT generation FROM tokens");

    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--config")
        .arg(&s.config)
        .arg("run")
        .env("OAUTH_POLLER_MAX_DB_PAGES", pages.to_string());
    let mut d = Daemon::spawn(cmd);
    d.wait_for(
        "cannot store poll results: the database is full",
        1,
        Duration::from_secs(20),
    );
    // The fillers above are `refreshed` events too: count token generations instead.
    d.wait_count(
        &s.db,
        "SELECT generation FROM tokens",
        generation_before + 3,
        Duration::from_secs(15),
    );
    d.stop();
    let log = d.log();
    assert!(log.contains("database or disk is full"), "{log}");

    assert!(
        query_i64(&s.db, "PRAGMA page_count") <= pages,
        "the database did not grow"
    );
    let generation = query_i64(&s.db, "SELECT generation FROM tokens");
    assert!(
        generation >= generation_before + 3,
        "rotation kept committing: generation {generation_before} -> {generation}"
    );
    assert_stored_grant_is_the_live_one(&s);
    let integrity: String = db(&s.db)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// The provider saw no rejected or reused grant and refreshed once per expiry, five times at
/// least: refreshes are spaced by the token's life, never twice for one expiry (that would
/// show as two refreshes within the same second or the next). And the store committed every
/// refresh the provider made. Returns the refresh times.
fn assert_one_refresh_per_expiry(stats: &serde_json::Value, db: &std::path::Path) -> Vec<i64> {
    let times = refreshes_with_no_spent_grant(stats, "");
    assert!(times.len() >= 5, "five expiries passed: {times:?}");
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&g| g >= 2),
        "two refreshes for one expiry: gaps {gaps:?}"
    );
    assert_eq!(events(db, "refreshed") as usize, times.len());
    times
}

/// Processes calling `oauth-poller [ARGS] token inode` in a loop, as scripts do, until
/// [`TokenLoops::finish`].
struct TokenLoops {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Finished>>,
}

/// What the loops saw: every call, the failed ones' output, all stderr, and the command lines
/// for the secrets scan.
#[derive(Default)]
struct Finished {
    calls: usize,
    failures: Vec<String>,
    stderr: String,
    cmdlines: String,
}

impl TokenLoops {
    fn start(config: &std::path::Path, n: usize, args: &[&str]) -> TokenLoops {
        let stop = Arc::new(AtomicBool::new(false));
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.extend(["token".into(), "inode".into()]);
        let threads = (0..n)
            .map(|_| {
                let (stop, config, argv) = (stop.clone(), config.to_path_buf(), argv.clone());
                std::thread::spawn(move || {
                    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                    let mut seen = Finished::default();
                    while !stop.load(Ordering::Relaxed) {
                        let out = run(Some(&config), &argv);
                        seen.calls += 1;
                        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
                        if !out.status.success() || token.len() < 20 {
                            seen.failures.push(text(&out));
                        }
                        // stdout is the token, by design; everything else must be clean.
                        seen.stderr.push_str(&String::from_utf8_lossy(&out.stderr));
                    }
                    // `run` records command lines per thread: this thread's are these.
                    seen.cmdlines = cmdlines_seen();
                    seen
                })
            })
            .collect();
        TokenLoops { stop, threads }
    }

    /// Stops the loops; every call must have printed a token.
    fn finish(self) -> Finished {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Finished::default();
        for t in self.threads {
            let seen = t.join().unwrap();
            all.calls += seen.calls;
            all.failures.extend(seen.failures);
            all.stderr.push_str(&seen.stderr);
            all.cmdlines.push_str(&seen.cmdlines);
        }
        assert!(
            all.failures.is_empty(),
            "{} of {} `token` calls failed, first:\n{}",
            all.failures.len(),
            all.calls,
            all.failures[0]
        );
        all
    }
}

/// The provider rejected no grant, and the refresh token in the store is the one it honours.
fn assert_stored_grant_is_the_live_one(s: &crate::lifecycle::Setup) {
    let stats = s.sim.stats();
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"], 0,
        "{stats}"
    );
    assert_eq!(
        stats["valid_refresh_tokens"][0].as_str(),
        stored_refresh_token(&s.db, "inode").as_deref(),
        "the stored refresh token is the live one"
    );
}

/// Another process holds the account's refresh lock and never lets go (stuck: paused, or cut
/// off; here `flock(1)` holding the lock file): a refresh waits for it at most the token
/// request's `timeout`, then says so, rather than hang the poll or the command.
#[test]
fn a_refresh_lock_a_stuck_process_holds_is_waited_for_at_most_timeout() {
    let s = setup(1, "1s", "refresh_token", "timeout = \"2s\"");
    let seed = s.dir.path().join("seed.json");
    let out = run(Some(&s.config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // The 1-second access token expires: `token` must refresh.
    std::thread::sleep(Duration::from_secs(2));
    let lock_file = format!("{}-lock-inode", s.db.display());
    let mut holder = std::process::Command::new("flock")
        .args(["--exclusive", "--no-fork", &lock_file, "sleep", "60"])
        .spawn()
        .expect("flock(1), from util-linux");
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let out = run(Some(&s.config), &["token", "inode"]);
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("refresh lock"), "it says why: {t}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "waited {took:?}, for a timeout of 2 s"
    );
    assert_eq!(s.sim.stats()["token_requests"]["total"], 0);
    // Once the holder is gone, the refresh goes ahead.
    let out = run(Some(&s.config), &["token", "inode"]);
    assert!(out.status.success(), "{}", text(&out));
}
