//! Chaos on one PostgreSQL: three instances share fifty accounts of a provider whose refresh
//! tokens last one use and whose access tokens last three seconds, for minutes, while the
//! instances are killed (SIGKILL, then restarted) or paused (SIGSTOP for longer than their
//! leases) at random, and PostgreSQL itself is restarted once. Counted at the end: grants
//! lost, `invalid_grant`, the longest time an account went unpolled, and polls of one account
//! by two instances within one interval.
//!
//! `OAUTH_POLLER_CHAOS_SECS` sets the length (default 180 s). At the end a fourth instance
//! joins, and the time it takes to get its share is measured.

use crate::config_builder::{Account, Config, Endpoint};
use crate::pg::PgServer;
use crate::util::*;
use oauth_poller_sim::{Profile, SimOptions};
use rand::Rng;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 50;
const INSTANCES: usize = 3;
/// Access tokens last this long (the refresh margin is 1 s: a refresh every ~2 s per account).
const ACCESS_TTL: u64 = 3;
const LEASE_TTL: u64 = 3;
const INTERVAL: u64 = 1;

fn secs() -> u64 {
    std::env::var("OAUTH_POLLER_CHAOS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180)
}

#[test]
fn three_instances_fifty_accounts_kills_pauses_and_a_database_restart() {
    if !require(Need::Postgres) {
        return;
    }
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = Duration::from_secs(ACCESS_TTL);
    assert!(opts.rotate, "refresh tokens last one use");
    let sim = Sim::start(opts);
    let mut pg = PgServer::start();
    let dir = tempdir();
    let password = dir.path().join("db-password");
    write_file(&password, pg.password());
    let names: Vec<String> = (1..=ACCOUNTS).map(|i| format!("acct{i:02}")).collect();
    let mut config = Config::default()
        .daemon("database", pg.url())
        .daemon("database_password_file", password.to_str().unwrap())
        .daemon("interval", format!("{INTERVAL}s"))
        .daemon("timeout", "5s")
        .daemon("lease_ttl", format!("{LEASE_TTL}s"));
    for name in &names {
        config = config.account(
            Account::inode(&sim.base_url())
                .set("name", name.as_str())
                .endpoint(Endpoint::inode_links()),
        );
    }
    let config = config.write(&dir.path().join("config.toml"));
    for name in &names {
        let seed = dir.path().join(format!("{name}.json"));
        write_file(&seed, &sim.sim.issue_seed());
        let out = run(Some(&config), &["seed", name, seed.to_str().unwrap()]);
        assert!(out.status.success(), "seed {name}: {}", text(&out));
    }

    let start_db = db_now(&pg);
    let mut instances: Vec<Daemon> = (0..INSTANCES)
        .map(|_| Daemon::start(&config, &[]))
        .collect();
    let mut logs: Vec<String> = Vec::new();
    let length = Duration::from_secs(secs());
    let started = Instant::now();
    let mut rng = rand::rng();
    let (mut kills, mut pauses) = (0, 0);
    let mut restart_window: Option<(i64, i64)> = None;
    while started.elapsed() < length {
        // One disturbance at a time: each settles (a lease expires, another instance claims
        // it at its next renewal, the next tick polls) before the next one comes.
        std::thread::sleep(Duration::from_millis(
            rng.random_range(LEASE_TTL * 1000 + 3000..LEASE_TTL * 1000 + 7000),
        ));
        if restart_window.is_none() && started.elapsed() > length / 2 {
            // PostgreSQL restarts (a fast shutdown, as a failover or an upgrade does).
            let from = db_now(&pg);
            pg.stop();
            std::thread::sleep(Duration::from_secs(2));
            pg.start_again();
            restart_window = Some((from, db_now(&pg)));
            continue;
        }
        let victim = rng.random_range(0..INSTANCES);
        if rng.random_bool(0.5) {
            instances[victim].signal(SIGKILL);
            instances[victim].wait_exit(Duration::from_secs(5));
            logs.push(instances[victim].log());
            std::thread::sleep(Duration::from_millis(rng.random_range(200..2000)));
            instances[victim] = Daemon::start(&config, &[]);
            kills += 1;
        } else {
            instances[victim].signal(SIGSTOP);
            std::thread::sleep(Duration::from_millis(
                rng.random_range(LEASE_TTL * 1000 + 500..LEASE_TTL * 1000 + 3000),
            ));
            instances[victim].signal(SIGCONT);
            pauses += 1;
        }
    }
    // Let the last disturbance settle.
    std::thread::sleep(Duration::from_secs(LEASE_TTL + 2));
    let end_db = db_now(&pg);
    // Joining: a fourth instance gets its share (50 / 4: 12) within two renewals of its
    // first heartbeat (the others hand over at their next renewal, it claims at its own).
    instances.push(Daemon::start(&config, &[]));
    let fourth = instances.last().unwrap().child.id();
    let held_by_fourth = || {
        pg.psql(&format!(
            "SELECT count(*) FROM leases WHERE owner LIKE '%:{fourth}:%' AND expires_at > now()"
        ))
        .trim()
        .parse::<usize>()
        .unwrap_or(0)
    };
    let asked = Instant::now();
    while pg
        .psql(&format!(
            "SELECT count(*) FROM instances WHERE pid = {fourth}"
        ))
        .trim()
        != "1"
    {
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "the fourth instance heartbeats"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let heartbeat = Instant::now();
    while held_by_fourth() < ACCOUNTS / 4 {
        assert!(
            heartbeat.elapsed() < Duration::from_secs(15),
            "the fourth instance holds {} leases",
            held_by_fourth()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let joined = heartbeat.elapsed();
    // Then stop everyone (handing the leases over).
    for d in &mut instances {
        d.stop();
        logs.push(d.log());
    }

    let stats = sim.stats();
    let invalid_grant = stats["token_requests"]["by_outcome"]["invalid_grant"]
        .as_i64()
        .unwrap_or(-1);
    let reuse = stats["refresh_token_reuse"].as_i64().unwrap_or(-1);
    let refreshes = stats["refreshes"].as_i64().unwrap_or(0);
    // A grant is lost when the stored refresh token is not one the provider honours, or the
    // account needs re-authorization.
    let valid = valid_refresh_tokens(&stats);
    let stored = pg.psql("SELECT account, refresh_token, state FROM tokens ORDER BY account");
    // An answer a killed instance journaled but nobody has committed yet is not lost: the
    // account's next refresh commits it (the journal is stored unencrypted here).
    let journaled = pg.psql("SELECT account, body FROM refresh_journal");
    let mut lost = Vec::new();
    for line in stored.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        let in_journal = journaled.lines().any(|j| {
            j.split_once('|')
                .is_some_and(|(a, body)| a == fields[0] && valid.iter().any(|v| body.contains(v)))
        });
        if fields.len() != 3 || fields[2] != "ok" || !(valid.contains(&fields[1]) || in_journal) {
            lost.push(fields[0].to_string());
            let lines: Vec<&str> = logs
                .iter()
                .flat_map(|l| l.lines())
                .filter(|l| l.contains(&format!("account={} ", fields[0])) && !l.contains(" poll "))
                .collect();
            eprintln!(
                "lost {}: stored {line}; journal {:?}; its log lines:\n{}",
                fields[0],
                journaled
                    .lines()
                    .filter(|j| j.starts_with(fields[0]))
                    .count(),
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
    }
    assert_eq!(stored.lines().count(), ACCOUNTS);

    // The longest an account went unpolled, from the first poll to the end.
    let polls = pg.psql(&format!(
        "SELECT account, started_at, coalesce(instance, '') FROM polls \
         WHERE started_at >= {start_db} AND started_at <= {end_db} \
         ORDER BY account, started_at, id"
    ));
    let mut by_account: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for line in polls.lines() {
        let f: Vec<&str> = line.split('|').collect();
        by_account
            .entry(f[0].to_string())
            .or_default()
            .push((f[1].parse().unwrap(), f[2].to_string()));
    }
    let warm_up = 10;
    let mut longest = (0i64, String::new());
    let mut doubles = 0;
    let mut doubles_at_restart = 0;
    // When each account changed hands, from the instances' `leases changed` lines: the log's
    // timestamps to the second, as the polls' are.
    let mut handovers: Vec<(String, String)> = Vec::new();
    for l in logs.iter().flat_map(|l| l.lines()) {
        if let Some(i) = l.find("leases changed") {
            let second = l.get(..19).unwrap_or_default().to_string();
            for name in l[i..].split('"').skip(1).step_by(2) {
                handovers.push((name.to_string(), second.clone()));
            }
        }
    }
    let takeover = |name: &str, t: i64| {
        (t - 1..=t + 1).any(|s| {
            let second = oauth_poller::format_utc(s);
            let second = second.get(..19).unwrap_or_default();
            handovers.iter().any(|(n, at)| n == name && at == second)
        })
    };
    let mut doubles_at_takeover = 0;
    let near_restart = |t: i64| {
        restart_window.is_some_and(|(from, to)| t >= from && t <= to + LEASE_TTL as i64 + 2)
    };
    for name in &names {
        let list = by_account.get(name).cloned().unwrap_or_default();
        let times: Vec<i64> = std::iter::once(start_db + warm_up)
            .chain(
                list.iter()
                    .map(|(t, _)| *t)
                    .filter(|&t| t >= start_db + warm_up),
            )
            .chain(std::iter::once(end_db))
            .collect();
        for w in times.windows(2) {
            if w[1] - w[0] > longest.0 {
                longest = (w[1] - w[0], format!("{name} from {} to {}", w[0], w[1]));
            }
        }
        // Two instances polling one account in one second.
        for w in list.windows(2) {
            if w[0].0 == w[1].0 && w[0].1 != w[1].1 {
                if near_restart(w[0].0) {
                    doubles_at_restart += 1;
                } else if takeover(name, w[0].0) {
                    doubles_at_takeover += 1;
                } else {
                    doubles += 1;
                    if std::env::var_os("CHAOS_DEBUG").is_some() {
                        eprintln!("double: {name} at {}: {} and {}", w[0].0, w[0].1, w[1].1);
                    }
                }
            }
        }
    }
    // The bound docs/postgres.md states: the lease's TTL and one interval (seconds, on
    // whole-second timestamps: +1).
    let bound = (LEASE_TTL + INTERVAL + 1) as i64;
    // What happened around the longest gap, when it is too long (or when asked).
    if std::env::var_os("CHAOS_DEBUG").is_some() || longest.0 > bound {
        let account = longest.1.split(' ').next().unwrap_or_default();
        for (t, i) in by_account.get(account).into_iter().flatten() {
            eprintln!("poll {account} {t} {i}");
        }
        eprintln!("restart {restart_window:?}");
        for l in &logs {
            let about = format!("account={account} ");
            for line in l.lines().filter(|l| {
                l.contains(&about)
                    || l.contains("leases changed")
                    || l.contains(" WARN ")
                    || l.contains(" ERROR ")
                    || l.contains("oauth-poller started")
            }) {
                eprintln!("{line}");
            }
        }
    }
    // Another instance's token request found in flight (its answer waited for), and one
    // that left no answer (replaced by a request of the account's own grant).
    let all_lines = || logs.iter().flat_map(|l| l.lines());
    let waited = all_lines()
        .filter(|l| l.contains("may still be answered: waiting"))
        .count();
    let replaced = all_lines()
        .filter(|l| l.contains("for this account left no answer"))
        .count();
    eprintln!(
        "chaos: {:.0}s, {INSTANCES} instances, {ACCOUNTS} accounts, {kills} kills, {pauses} pauses, \
         1 PostgreSQL restart; {refreshes} refreshes ({waited} waits for another's request, \
         {replaced} requests that left no answer), invalid_grant {invalid_grant}, reuse {reuse}, \
         grants lost {}, longest without a poll {} s ({}), double polls {doubles} outside a \
         takeover (+{doubles_at_takeover} at a handover, +{doubles_at_restart} around the restart); \
         a fourth instance had its share {:.1} s after its first heartbeat",
        started.elapsed().as_secs_f64(),
        lost.len(),
        longest.0,
        longest.1,
        joined.as_secs_f64(),
    );
    if invalid_grant != 0 || reuse != 0 {
        eprintln!("the simulator's counts: {stats}");
    }
    // Short messages: CI shows the end of the output.
    assert_eq!(invalid_grant, 0, "invalid_grant answers");
    assert_eq!(reuse, 0, "refresh tokens presented after they were spent");
    assert!(lost.is_empty(), "grants lost: {lost:?}");
    assert!(
        refreshes as usize >= ACCOUNTS * 10,
        "refreshes happened: {refreshes}"
    );
    assert!(
        longest.0 <= bound,
        "an account went {} s without a poll ({}), more than {bound} s",
        longest.0,
        longest.1
    );
    assert_eq!(
        doubles, 0,
        "one account polled by two instances in one second, outside a takeover"
    );
    let renewals = Duration::from_millis(2 * LEASE_TTL * 1000 / 3);
    assert!(
        joined <= renewals + Duration::from_secs(1),
        "the fourth instance waited {joined:?} for its share, more than two renewals ({renewals:?}) and a second"
    );
    let outputs: Vec<&str> = logs.iter().map(String::as_str).collect();
    let panicked: Vec<&&str> = outputs.iter().filter(|l| l.contains("panicked")).collect();
    assert!(panicked.is_empty(), "{panicked:?}");
}

fn db_now(pg: &PgServer) -> i64 {
    pg.psql("SELECT extract(epoch FROM now())::BIGINT")
        .trim()
        .parse()
        .unwrap()
}
