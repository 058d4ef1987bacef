//! `pg3x10k`: three instances of the daemon share 10,000 endpoints through one PostgreSQL
//! (the tests' cluster: initdb in a temporary directory, see tests/integration/pg.rs), the
//! accounts split between them by leases. What the three daemons and the cluster spend per
//! poll, beside the single-node SQLite figure.

use super::*;
use crate::pg::PgServer;

/// Instances on the one database.
const INSTANCES: usize = 3;
/// Accounts the endpoints are spread over: enough that the lease split is even (10 each).
const ACCOUNTS: usize = 30;
const ENDPOINTS: usize = 10_000;
const INTERVAL: Duration = Duration::from_secs(30);

/// The section's title, also how an update of docs/benchmarks.md finds it.
pub const TITLE: &str = "PostgreSQL: 3 instances x 10000 endpoints over 30 accounts, interval 30 s";

/// Runs the scenario for `secs` measured seconds into `report`; `sqlite` is the single-node
/// figure of the same run (`scale10k`), printed beside. Without a PostgreSQL to start, a
/// row says why.
pub fn pg_scale(sim: &SimHandle, report: &mut Report, secs: u64, sqlite: Option<&ScaleResult>) {
    report.section(TITLE);
    if let Some(why) = crate::pg::missing() {
        println!("pg3x10k: not measured: {why}");
        report.row("not measured", &why);
        return;
    }
    println!(
        "pg3x10k: {INSTANCES} instances, {ENDPOINTS} endpoints over {ACCOUNTS} accounts, every {INTERVAL:?}, {secs} s ..."
    );
    report.row(
        "machine, load average (1 min) before",
        &format!("{}, {}", machine(), load_average()),
    );
    report.row("date", &oauth_poller::format_utc(oauth_poller::now()));
    let pg = PgServer::start();
    report.row("PostgreSQL", &pg.psql("SHOW server_version"));

    let dir = bench_dir();
    let password = dir.path().join("db-password");
    crate::util::write_file(&password, pg.password());
    // lease_ttl stays at its default (15 s): the deployment docs/postgres.md describes.
    let cfg = Config::default()
        .daemon("database", pg.url())
        .daemon("database_password_file", password.to_str().unwrap())
        .daemon("interval", format!("{}ms", INTERVAL.as_millis()))
        .daemon("timeout", "10s");
    let tag = format!("p{ENDPOINTS}-");
    let s = setup_with(sim, dir, cfg, &tag, ACCOUNTS, ENDPOINTS, INTERVAL);
    // Seeded before any daemon starts: three daemons importing one seed file at once would
    // race for the first token, which is not what is measured here.
    for a in 0..ACCOUNTS {
        let seed = s.dir.path().join(format!("seed{a}.json"));
        let out = crate::util::run(
            Some(&s.config),
            &["seed", &format!("a{a}"), seed.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "seed a{a}: {}",
            crate::util::text(&out)
        );
    }

    let started = Instant::now();
    let daemons: Vec<Daemon> = (0..INSTANCES)
        .map(|i| Daemon::start_logging_to(&s, &[], &format!("daemon{i}.log")))
        .collect();
    let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect();
    // Warm-up: every instance holds its share, and one interval has passed since the last
    // start (every endpoint has had its first tick).
    let split = wait_for_even_split(&pg, &pids, Duration::from_secs(120));
    println!(
        "pg3x10k: leases split {split:?} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep((INTERVAL + Duration::from_secs(2)).saturating_sub(started.elapsed()));

    let owners0 = owners(&pg);
    let rows0 = count_rows(&pg);
    let commits0 = commits(&pg);
    arrivals(sim, &tag);
    // The cluster's CPU is read after the queries above and before those below: their
    // backends are not in the window.
    let postmaster = pg.postmaster_pid().expect("the postmaster's pid");
    let pg_cpu0 = cluster_cpu(postmaster);
    let cpu0: Vec<Duration> = pids.iter().map(|&p| cpu(p)).collect();
    let threads0: Vec<ThreadCpus> = pids.iter().map(|&p| thread_cpus(p)).collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu1: Vec<Duration> = pids.iter().map(|&p| cpu(p)).collect();
    let threads1: Vec<ThreadCpus> = pids.iter().map(|&p| thread_cpus(p)).collect();
    let pg_cpu1 = cluster_cpu(postmaster);
    let elapsed = t0.elapsed().as_secs_f64();
    let got = arrivals(sim, &tag);
    let hwm: Vec<u64> = pids.iter().map(|&p| status_kib(p, "VmHWM")).collect();
    let rows1 = count_rows(&pg);
    let commits1 = commits(&pg);
    let owners1 = owners(&pg);
    let load_after = load_average();
    for d in daemons {
        d.stop();
    }
    drop(pg);

    let polls = got.len();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / polls.max(1) as f64;
    let daemons_cpu: Duration = cpu1.iter().zip(&cpu0).map(|(a, b)| *a - *b).sum();
    let daemons_us = per(daemons_cpu);
    let pg_us = per(pg_cpu1.saturating_sub(pg_cpu0));
    let moved = owners0
        .iter()
        .filter(|(a, o)| owners1.get(*a) != Some(o))
        .count();
    // Lateness per daemon (each keeps its own schedule's origin), then over all three.
    let mut late = Vec::new();
    for pid in &pids {
        let mine: Vec<(String, f64)> = got
            .iter()
            .filter(|(t, _)| account_of(&tag, t).and_then(|a| owners0.get(&a)) == Some(pid))
            .cloned()
            .collect();
        late.extend(late_starts(&s, &mine));
    }
    let unattributed = polls - late.len();
    let (p50, p99, max, _) = spread(late);
    let twice = polled_twice(&got);

    report.row(
        "polls in the measured window",
        &format!(
            "{polls} in {elapsed:.0} s ({:.0}/s); accounts per instance {split:?}, {moved} changed hands in the window",
            polls as f64 / elapsed
        ),
    );
    report.row(
        "polls less than half an interval after the endpoint's previous one",
        &twice.to_string(),
    );
    report.row(
        "daemons' CPU per poll (sum of the three, user+sys)",
        &format!(
            "{daemons_us:.1} µs; each instance {}",
            cpu1.iter()
                .zip(&cpu0)
                .map(|(a, b)| format!("{:.2} s", (*a - *b).as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    );
    let mut threads_before = ThreadCpus::new();
    let mut threads_after = ThreadCpus::new();
    for (sum, each) in [
        (&mut threads_before, &threads0),
        (&mut threads_after, &threads1),
    ] {
        for t in each {
            for (name, d) in t {
                *sum.entry(name.clone()).or_default() += *d;
            }
        }
    }
    report.row(
        "of which, by thread, the three summed (µs per poll)",
        &by_thread(&threads_before, &threads_after, polls),
    );
    report.row(
        "PostgreSQL CPU per poll (postmaster and all its children)",
        &format!(
            "{pg_us:.1} µs ({:.2} s in the window)",
            pg_cpu1.saturating_sub(pg_cpu0).as_secs_f64()
        ),
    );
    report.row(
        "daemons + PostgreSQL per poll",
        &format!("{:.1} µs", daemons_us + pg_us),
    );
    if let Some(one) = sqlite {
        report.row(
            "single node on SQLite, same run (10000 endpoints over 10 accounts)",
            &format!(
                "{:.1} µs per poll, peak RSS {}: PostgreSQL's three daemons {:.2}x, with the cluster {:.2}x",
                one.cpu_per_poll_us,
                mib(one.rss_kib),
                daemons_us / one.cpu_per_poll_us,
                (daemons_us + pg_us) / one.cpu_per_poll_us
            ),
        );
    }
    report.row(
        "peak RSS (VmHWM) per daemon",
        &hwm.iter().map(|&k| mib(k)).collect::<Vec<_>>().join(" / "),
    );
    report.row(
        "start lateness p50 / p99 / max, the three together",
        &format!(
            "{p50:.1} / {p99:.1} / {max:.1} ms{}",
            if unattributed > 0 {
                format!(" ({unattributed} polls of accounts that changed hands left out)")
            } else {
                String::new()
            }
        ),
    );
    report.row(
        "poll rows written per second (window) / transactions committed per second",
        &format!(
            "{:.0} ({} rows) / {:.0}",
            (rows1 - rows0) as f64 / elapsed,
            rows1 - rows0,
            (commits1 - commits0) as f64 / elapsed
        ),
    );
    report.row("load average (1 min) after", &load_after);
}

/// Waits until each of `pids` holds ACCOUNTS / INSTANCES live leases; the split.
fn wait_for_even_split(pg: &PgServer, pids: &[u32], timeout: Duration) -> Vec<usize> {
    let started = Instant::now();
    loop {
        let owners = owners(pg);
        let split: Vec<usize> = pids
            .iter()
            .map(|p| owners.values().filter(|o| *o == p).count())
            .collect();
        if split.iter().all(|&n| n == ACCOUNTS / INSTANCES) {
            return split;
        }
        assert!(
            started.elapsed() < timeout,
            "the leases are split {split:?} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Account -> pid of the instance holding its live lease.
fn owners(pg: &PgServer) -> HashMap<String, u32> {
    pg.psql(
        "SELECT l.account, i.pid FROM leases l JOIN instances i ON i.id = l.owner \
         WHERE l.expires_at > now()",
    )
    .lines()
    .filter_map(|l| l.split_once('|'))
    .map(|(a, p)| (a.to_string(), p.trim().parse().unwrap()))
    .collect()
}

fn count_rows(pg: &PgServer) -> i64 {
    pg.psql("SELECT count(*) FROM polls")
        .trim()
        .parse()
        .unwrap()
}

/// Transactions committed in the daemon's database (PostgreSQL's statistics: a few of them
/// the benchmark's own queries).
fn commits(pg: &PgServer) -> i64 {
    pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        .trim()
        .parse()
        .unwrap()
}

/// How many of `arrivals` came less than half an interval after the same endpoint's
/// previous one: an endpoint polled by two instances, or out of its schedule.
fn polled_twice(arrivals: &[(String, f64)]) -> usize {
    let mut by_endpoint: HashMap<&str, Vec<f64>> = HashMap::new();
    for (t, at) in arrivals {
        by_endpoint.entry(t).or_default().push(*at);
    }
    by_endpoint
        .values_mut()
        .map(|times| {
            times.sort_by(f64::total_cmp);
            times
                .windows(2)
                .filter(|w| w[1] - w[0] < INTERVAL.as_secs_f64() / 2.0)
                .count()
        })
        .sum()
}

/// `aN` for an endpoint tagged `TAG N-E`.
fn account_of(tag: &str, endpoint: &str) -> Option<String> {
    let (a, _) = endpoint.strip_prefix(tag)?.split_once('-')?;
    Some(format!("a{a}"))
}

/// The CPU a PostgreSQL cluster has used so far: the postmaster's own and its live
/// children's (the scheduler's exact sums), and its children that exited (cutime + cstime:
/// the postmaster waits for each). A backend that exits between two readings is counted
/// once: live in the first, among the exited in the second.
fn cluster_cpu(postmaster: u32) -> Duration {
    let exited = stat(postmaster).map(|s| s.children_cpu).unwrap_or_default();
    let mut live = scheduled_cpu(postmaster).unwrap_or_default();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if stat(pid).is_some_and(|s| s.ppid == postmaster) {
            live += scheduled_cpu(pid).unwrap_or_default();
        }
    }
    exited + live
}

/// /proc/loadavg's 1-, 5- and 15-minute figures: how busy the machine was.
fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let f: Vec<&str> = l.split_whitespace().collect();
    format!(
        "{} (5 min {}, 15 min {})",
        f.first().unwrap_or(&"?"),
        f.get(1).unwrap_or(&"?"),
        f.get(2).unwrap_or(&"?")
    )
}
