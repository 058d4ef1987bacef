//! PostgreSQL unavailable for a while (stopped, or killed, and later back): polls go on
//! while the access token is valid, their rows are kept and written when the database
//! returns (bounded, drops counted), no refresh happens without a commit, and the daemon
//! reconnects by itself.

use crate::pg::PgServer;
use crate::postgres::{assert_no_secrets, count, setup_with, wait_count, Setup};
use crate::util::*;
use std::time::{Duration, Instant};

/// How long each test keeps PostgreSQL down.
const OUTAGE: Duration = Duration::from_secs(10);

fn seeded(access_ttl: u64, daemon_toml: &str, account_toml: &str) -> (Setup, u16) {
    let port = free_port();
    let daemon_toml = format!("metrics_listen = \"127.0.0.1:{port}\"\n{daemon_toml}");
    let s = setup_with(PgServer::start(), access_ttl, &daemon_toml, account_toml);
    let seed = s.dir.path().join("seed.json");
    let out = run(Some(&s.config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "seed: {}", text(&out));
    (s, port)
}

/// A daemon on `s`, once `n` successful polls are stored.
fn started_with_polls(s: &Setup, n: i64) -> Daemon {
    let d = Daemon::start(&s.config, &[]);
    wait_count(
        &s.pg,
        "SELECT count(*) FROM polls WHERE error IS NULL",
        n,
        Duration::from_secs(20),
        || d.log(),
    );
    d
}

/// Polls the simulator answered with 200: each is one poll row the store should get.
fn api_ok(s: &Setup) -> i64 {
    s.sim.stats()["api_requests"]["by_status"]["200"]
        .as_i64()
        .unwrap_or(0)
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let text = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn ok_rows(s: &Setup) -> i64 {
    count(&s.pg, "SELECT count(*) FROM polls WHERE error IS NULL")
}

/// Stops (or kills) PostgreSQL for [`OUTAGE`] under a running daemon: it keeps polling with
/// its valid token and says the store is unavailable; once the server is back it reconnects
/// and every poll made meanwhile is in the store.
fn polls_go_on_and_every_row_arrives(kill: bool) {
    let (mut s, port) = seeded(120, "", "");
    let mut d = started_with_polls(&s, 4);
    let before = api_ok(&s);
    if kill {
        s.pg.kill();
    } else {
        s.pg.stop();
    }
    std::thread::sleep(OUTAGE / 2);
    assert_eq!(metric(port, "oauth_poller_store_available"), Some(0.0));
    let buffered = metric(port, "oauth_poller_poll_rows_buffered").unwrap_or(0.0);
    assert!(buffered >= 1.0, "buffered {buffered}\n{}", d.log());
    let health = http_get(&format!("http://127.0.0.1:{port}/healthz"));
    assert!(health.contains("store unavailable since"), "{health}");
    std::thread::sleep(OUTAGE / 2);
    let during = api_ok(&s) - before;
    // Two endpoints every second for ten seconds.
    assert!(
        during >= 10,
        "{during} polls while PostgreSQL was down\n{}",
        d.log()
    );
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log());

    s.pg.start_again();
    let target = api_ok(&s);
    wait_count(
        &s.pg,
        "SELECT count(*) FROM polls WHERE error IS NULL",
        target,
        Duration::from_secs(30),
        || d.log(),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while metric(port, "oauth_poller_store_available") != Some(1.0) {
        assert!(
            Instant::now() < until,
            "store still unavailable\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric(port, "oauth_poller_poll_rows_dropped_total"),
        Some(0.0)
    );
    d.stop();
    let log = d.log();
    assert_eq!(ok_rows(&s), api_ok(&s), "every poll is in the store\n{log}");
    assert!(log.contains("store unavailable"), "{log}");
    assert!(log.contains("store available again"), "{log}");
    eprintln!(
        "PostgreSQL {} for {OUTAGE:?}: {during} polls meanwhile, {} rows in the store, 0 lost",
        if kill { "killed" } else { "stopped" },
        ok_rows(&s)
    );
}

#[test]
fn polls_go_on_while_postgres_is_stopped_and_every_row_arrives_after() {
    if !require(Need::Postgres) {
        return;
    }
    polls_go_on_and_every_row_arrives(false);
}

#[test]
fn polls_go_on_while_postgres_is_killed_and_every_row_arrives_after() {
    if !require(Need::Postgres) {
        return;
    }
    polls_go_on_and_every_row_arrives(true);
}

/// `poll_buffer` bounds the rows kept: beyond it the oldest are dropped, counted in the
/// metric and the log, and the rest (in order) reach the store.
#[test]
fn a_tiny_poll_buffer_drops_rows_and_counts_them() {
    if !require(Need::Postgres) {
        return;
    }
    let (mut s, port) = seeded(120, "poll_buffer = \"2KiB\"\nstore_bodies = \"none\"", "");
    let mut d = started_with_polls(&s, 2);
    s.pg.stop();
    std::thread::sleep(OUTAGE);
    s.pg.start_again();
    // Back, and the rows kept are written (no more drops after that).
    let until = Instant::now() + Duration::from_secs(20);
    while metric(port, "oauth_poller_store_available") != Some(1.0)
        || metric(port, "oauth_poller_poll_rows_buffered") != Some(0.0)
    {
        assert!(Instant::now() < until, "rows still kept\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let dropped = metric(port, "oauth_poller_poll_rows_dropped_total").unwrap_or(0.0) as i64;
    assert!(dropped >= 1, "dropped {dropped}\n{}", d.log());
    d.stop();
    let log = d.log();
    assert!(log.contains("poll rows dropped"), "{log}");
    assert_eq!(
        ok_rows(&s) + dropped,
        api_ok(&s),
        "rows written and rows dropped add up to the polls made\n{log}"
    );
    // Written in order: ids grow with the polls' start times.
    let disorder = count(
        &s.pg,
        "SELECT count(*) FROM polls a JOIN polls b ON a.id < b.id WHERE a.started_at > b.started_at",
    );
    assert_eq!(disorder, 0, "{log}");
    eprintln!("poll_buffer = 2KiB: {dropped} rows dropped, counted");
}

/// The token's refresh falls due while PostgreSQL is down: the daemon keeps polling with
/// the old access token (still valid) and asks the provider only once the store is back.
#[test]
fn a_refresh_due_while_postgres_is_down_waits_for_it() {
    if !require(Need::Postgres) {
        return;
    }
    // Due 10 s after the seed, expiring after 24 s: the outage covers the due time.
    let (mut s, _port) = seeded(24, "", "refresh_margin = \"14s\"");
    let mut d = started_with_polls(&s, 2);
    s.pg.stop();
    let stopped = Instant::now();
    let before = api_ok(&s);
    std::thread::sleep(OUTAGE);
    let refreshes_meanwhile = s.sim.stats()["token_requests"]["total"].as_i64().unwrap();
    let during = api_ok(&s) - before;
    s.pg.start_again();
    wait_count(
        &s.pg,
        "SELECT count(*) FROM token_events WHERE event = 'refreshed'",
        1,
        Duration::from_secs(20),
        || d.log(),
    );
    d.stop();
    let log = d.log();
    let stats = s.sim.stats();
    assert_eq!(
        refreshes_meanwhile, 0,
        "no refresh without the store\n{log}"
    );
    assert!(during >= 10, "{during} polls while down\n{log}");
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"], 0,
        "{stats}"
    );
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    assert!(
        stopped.elapsed() < Duration::from_secs(24),
        "within the token's life"
    );
}

/// PostgreSQL goes away while the provider is asked: its answer (a new single-use refresh
/// token) is kept and committed once the store is back, so the next refresh presents the
/// token the provider honours.
#[test]
fn an_answer_received_while_postgres_is_down_is_committed_when_it_returns() {
    if !require(Need::Postgres) {
        return;
    }
    let (mut s, _port) = seeded(6, "", "");
    s.sim
        .sim
        .add_fault("token:delay,delay_ms=3000,count=1".parse().unwrap());
    let mut d = Daemon::start(&s.config, &["--log-level", "debug"]);
    d.wait_for("token request sent", 1, Duration::from_secs(20));
    s.pg.kill();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        d.log().contains("token response received"),
        "the answer came while the store was down\n{}",
        d.log()
    );
    s.pg.start_again();
    wait_count(
        &s.pg,
        "SELECT count(*) FROM token_events WHERE event = 'refreshed'",
        3,
        Duration::from_secs(30),
        || d.log(),
    );
    d.stop();
    let log = d.log();
    let stats = s.sim.stats();
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"], 0,
        "{stats}\n{log}"
    );
    assert_eq!(stats["refresh_token_reuse"], 0, "{stats}");
    let valid = valid_refresh_tokens(&stats);
    assert_eq!(valid.len(), 1, "{valid:?}");
    assert!(
        log.contains("answer kept in memory is committed"),
        "the commit waited for the store\n{log}"
    );
    // At debug level too: the PostgreSQL client's own debug lines (statements with their
    // parameters) stay out of the log.
    assert_no_secrets(&s, &[&log]);
}

/// Under systemd (a notify socket and a watchdog of 2 s, as the unit sets them): while
/// PostgreSQL is down the watchdog keeps being pinged (polls go on: no restart) and the
/// `STATUS=` line says the store is unavailable, until it is back.
#[test]
fn the_watchdog_goes_on_and_the_status_line_says_the_store_is_unavailable() {
    if !require(Need::Postgres) {
        return;
    }
    let (mut s, _port) = seeded(120, "", "");
    let socket_path = s.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log_path = s.dir.path().join("daemon.log");
    let mut child = std::process::Command::new(bin())
        .arg("--config")
        .arg(&s.config)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Every message until `until`, one datagram each.
    let gather = |until: Instant, stop_at: &dyn Fn(&str) -> bool| {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = socket.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                let stop = stop_at(&m);
                got.push(m);
                if stop {
                    break;
                }
            }
        }
        got
    };
    let ready = gather(Instant::now() + Duration::from_secs(20), &|m| {
        m.contains("READY=1")
    });
    assert!(
        ready.iter().any(|m| m.contains("READY=1")),
        "{ready:?}\n{}",
        log()
    );
    s.pg.stop();
    let down = gather(Instant::now() + OUTAGE, &|_| false);
    let pings = down.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    let said = down
        .iter()
        .find(|m| m.contains("STATUS=store unavailable since"));
    s.pg.start_again();
    let back = gather(Instant::now() + Duration::from_secs(30), &|m| {
        m.starts_with("STATUS=") && !m.contains("store unavailable")
    });
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", log());
    assert!(
        pings >= 5,
        "{pings} watchdog pings in {OUTAGE:?}: {down:?}\n{}",
        log()
    );
    let said = said.unwrap_or_else(|| panic!("no STATUS about the store: {down:?}\n{}", log()));
    assert!(said.contains("poll rows buffered"), "{said}");
    assert!(
        back.last()
            .is_some_and(|m| m.starts_with("STATUS=") && !m.contains("store unavailable")),
        "{back:?}\n{}",
        log()
    );
}

/// Two instances. The one holding the account has a token request in flight when PostgreSQL
/// goes away; the answer arrives while it is away, and this instance comes back later than
/// the other (it is paused once it has the answer, until after the other took the lease
/// over). The other finds that request in flight: it does not present the refresh token the
/// provider has already spent, it waits, and the answer is committed once journaled.
#[test]
fn a_lease_taken_over_while_its_answer_is_in_memory_waits_for_that_answer() {
    if !require(Need::Postgres) {
        return;
    }
    // (No metrics listener: two instances on one host.)
    let mut s = setup_with(PgServer::start(), 4, "lease_ttl = \"3s\"", "");
    let seed = s.dir.path().join("seed.json");
    let out = run(Some(&s.config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "seed: {}", text(&out));
    let debug = ["--log-level", "debug"];
    let mut daemons = [
        Daemon::start(&s.config, &debug),
        Daemon::start(&s.config, &debug),
    ];
    // Settled: one owner, unchanged over two renewals.
    let owner = |pg: &PgServer| {
        pg.psql("SELECT owner FROM leases WHERE owner IS NOT NULL AND expires_at > now()")
            .trim()
            .to_string()
    };
    let started = Instant::now();
    let holder_id = loop {
        let first = owner(&s.pg);
        std::thread::sleep(Duration::from_secs(2));
        if !first.is_empty() && owner(&s.pg) == first {
            break first;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no settled owner"
        );
    };
    let pid_of = |id: &str| id.split(':').nth(1).and_then(|p| p.parse::<u32>().ok());
    let holder = daemons
        .iter()
        .position(|d| Some(d.child.id()) == pid_of(&holder_id))
        .expect("the owner is one of the two");
    let other = 1 - holder;

    let sent = daemons[holder].count("token request sent");
    s.sim
        .sim
        .add_fault("token:delay,delay_ms=2000,count=1".parse().unwrap());
    daemons[holder].wait_for("token request sent", sent + 1, Duration::from_secs(20));
    s.pg.kill();
    let killed = Instant::now();
    // The answer came while the store was down: kept in memory.
    daemons[holder].wait_for("answer cannot be committed", 1, Duration::from_secs(10));
    daemons[holder].signal(SIGSTOP);
    // The lease expires meanwhile.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed()));
    s.pg.start_again();
    let taken = Instant::now();
    let other_pid = daemons[other].child.id();
    while pid_of(&owner(&s.pg)) != Some(other_pid) {
        assert!(
            taken.elapsed() < Duration::from_secs(15),
            "the other instance took the lease over\n{}",
            daemons[other].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The new owner's token has expired: it would refresh at once.
    std::thread::sleep(Duration::from_secs(1));
    daemons[holder].signal(SIGCONT);
    // The answer is committed from the journal (by whichever instance holds the lease).
    let resumed = Instant::now();
    while count(
        &s.pg,
        "SELECT count(*) FROM token_events WHERE event = 'refreshed' \
         AND detail LIKE '%refresh journal%'",
    ) < 1
        && resumed.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    for d in &mut daemons {
        d.stop();
    }
    let logs = format!("{}\n{}", daemons[holder].log(), daemons[other].log());
    let stats = s.sim.stats();
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"], 0,
        "{stats}\n{logs}"
    );
    assert_eq!(stats["refresh_token_reuse"], 0, "{stats}\n{logs}");
    let stored =
        s.pg.psql("SELECT refresh_token FROM tokens WHERE account = 'inode'");
    assert!(
        valid_refresh_tokens(&stats).contains(&stored.trim()),
        "the stored refresh token is one the provider honours\n{logs}"
    );
    assert_no_secrets(&s, &[&logs]);
}
