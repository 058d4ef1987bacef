//! The benchmark: what a poll costs, how much memory the daemon holds, how accurately it keeps
//! its schedule, side by side with what people run instead.
//!
//! `cargo bench --bench daemon` (add `-- --quick` for a short run, `-- --no-peers` to skip
//! the Python loop and collectd). Prints a table and writes it to docs/benchmarks.md.
//! `BENCH_ONLY=pg3x10k` runs three instances on one PostgreSQL beside the SQLite scale run,
//! and updates its own section of docs/benchmarks.md.
//!
//! The daemon is the real binary as a process; the simulator serves the API on loopback from
//! this process, so its CPU is not counted: daemon CPU is utime + stime from /proc.

use oauth_poller_sim::{Profile, SimOptions, Simulator};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The tests' configuration builder, so that the benchmark writes no TOML by hand.
#[path = "../tests/integration/config_builder.rs"]
mod config_builder;
use config_builder::{Account, Config, Endpoint};

// The tests' PostgreSQL (a cluster of its own, made with initdb in a temporary directory) and
// the helpers it stands on.
#[path = "../tests/integration/pg.rs"]
mod pg;
#[path = "../tests/integration/util.rs"]
mod util;

// Three instances on one PostgreSQL (`pg3x10k`).
#[path = "daemon/postgres.rs"]
mod postgres;

struct Opts {
    quick: bool,
    peers: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = Opts {
        quick: args.iter().any(|a| a == "--quick"),
        peers: !args.iter().any(|a| a == "--no-peers"),
    };
    let sim = SimHandle::start();
    let mut report = Report::default();
    report.line(&format!("machine: {}", machine()));
    // Relative to the repository: the report is committed, the checkout's place is not ours.
    let binary = Path::new(env!("CARGO_BIN_EXE_oauth-poller"));
    let binary = binary
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(binary);
    report.line(&format!("binary: {}", binary.display()));
    report.line(&format!(
        "date: {}",
        oauth_poller::format_utc(oauth_poller::now())
    ));

    // One scenario alone, for iteration; BENCH_SECS sets its length (e.g. to attach a profiler).
    let only = std::env::var("BENCH_ONLY").ok();
    let secs = |default: u64| {
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    match only.as_deref() {
        Some("idle") => return idle(&sim, &mut report, secs(60)),
        Some("scale10k") => {
            scale(
                &sim,
                &mut report,
                10_000,
                Duration::from_secs(30),
                secs(30),
                None,
            );
            return;
        }
        Some("pg3x10k") => {
            // The single-node SQLite figure first, in the same run, for the comparison.
            let sqlite = scale(
                &sim,
                &mut report,
                10_000,
                Duration::from_secs(30),
                secs(60),
                None,
            );
            let mut section = Report::default();
            postgres::pg_scale(&sim, &mut section, secs(60), Some(&sqlite));
            return section.update(postgres::TITLE, &report_path());
        }
        Some("startstop") => return start_stop(&sim, &mut report),
        Some("pages") => return pagination(&mut report, secs(20)),
        Some("scale1k") => {
            let floor = floor(&sim, &mut report, 10);
            scale(
                &sim,
                &mut report,
                1_000,
                Duration::from_secs(3),
                secs(30),
                Some(floor),
            );
            return;
        }
        _ => {}
    }
    let idle_secs = if opts.quick { 20 } else { 300 };
    idle(&sim, &mut report, idle_secs);
    let run_secs = if opts.quick { 20 } else { 60 };
    let floor = floor(&sim, &mut report, run_secs.min(30));
    let scale_1k = scale(
        &sim,
        &mut report,
        1_000,
        Duration::from_secs(3),
        run_secs,
        Some(floor),
    );
    let scale_10k = scale(
        &sim,
        &mut report,
        10_000,
        Duration::from_secs(30),
        run_secs.max(65),
        Some(floor),
    );
    // Three instances on PostgreSQL, beside the run above (about two minutes; not in --quick).
    if !opts.quick {
        postgres::pg_scale(&sim, &mut report, run_secs.max(65), Some(&scale_10k));
    }
    fan_in(&sim, &mut report, if opts.quick { 2_000 } else { 10_000 });
    pagination(&mut report, run_secs.min(30));
    start_stop(&sim, &mut report);
    if opts.peers {
        peers(&sim, &mut report, &scale_1k, run_secs);
    }
    let out = report_path();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, report.markdown()).unwrap();
    println!("\nwritten to {}", out.display());
}

fn report_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md")
}

// ---- the simulator, on its own runtime thread ----------------------------------------------

struct SimHandle {
    sim: Simulator,
    addr: std::net::SocketAddr,
}

impl SimHandle {
    fn start() -> SimHandle {
        SimHandle::start_with(|_| {})
    }

    /// The iNode simulator with day-long tokens, adjusted by `adjust`.
    fn start_with(adjust: impl FnOnce(&mut SimOptions)) -> SimHandle {
        let mut o = SimOptions::new(Profile::Inode);
        o.access_ttl = Duration::from_secs(24 * 3600);
        adjust(&mut o);
        let sim = Simulator::new(o);
        let (tx, rx) = std::sync::mpsc::channel();
        let server = sim.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                server.serve(l, std::future::pending()).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        sim.record_arrivals();
        SimHandle { sim, addr }
    }

    fn post(&self, path: &str) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut b = String::new();
        let _ = s.read_to_string(&mut b);
    }

    fn refreshes(&self) -> i64 {
        self.sim.stats()["refreshes"].as_i64().unwrap_or(0)
    }
}

// ---- one daemon ----------------------------------------------------------------------------

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    interval: Duration,
    /// Endpoint query tag -> position in the schedule (for the spread offsets).
    order: Vec<String>,
}

/// An account of the simulator's client, seeded from `seed`.
fn sim_account(name: &str, sim: &SimHandle, seed: &Path) -> Account {
    Account::new(name, &format!("http://{}/api/", sim.addr))
        .seed_file(seed)
        .oauth2("token_url", "oauth/token/")
        .oauth2("client_id", "demo-client")
        .oauth2("client_secret", "demo-client-secret")
        .oauth2("client_auth", "body")
}

fn bench_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oauth-poller-bench-")
        .tempdir()
        .unwrap()
}

/// `accounts` accounts sharing `endpoints` endpoints, each endpoint tagged `ep=TAG`, on a
/// SQLite store.
fn setup(
    sim: &SimHandle,
    tag: &str,
    accounts: usize,
    endpoints: usize,
    interval: Duration,
) -> Setup {
    let dir = bench_dir();
    let cfg = Config::polling(
        &dir.path().join("state.db"),
        &format!("{}ms", interval.as_millis()),
        "10s",
    );
    setup_with(sim, dir, cfg, tag, accounts, endpoints, interval)
}

/// [`setup`] on the `[daemon]` of `cfg` (its store, its interval), written into `dir`.
fn setup_with(
    sim: &SimHandle,
    dir: tempfile::TempDir,
    mut cfg: Config,
    tag: &str,
    accounts: usize,
    endpoints: usize,
    interval: Duration,
) -> Setup {
    let mut order = Vec::new();
    for a in 0..accounts {
        let seed_path = dir.path().join(format!("seed{a}.json"));
        std::fs::write(&seed_path, sim.sim.issue_seed()).unwrap();
        let mut account = sim_account(&format!("a{a}"), sim, &seed_path);
        let per = endpoints / accounts + usize::from(a < endpoints % accounts);
        for e in 0..per {
            let t = format!("{tag}{a}-{e}");
            account = account.endpoint(
                Endpoint::new(&format!("e{e}"), "v1/links/")
                    .query("no_pagination", "")
                    .query("ep", &t),
            );
            order.push(t);
        }
        cfg = cfg.account(account);
    }
    let config = cfg.write(&dir.path().join("config.toml"));
    Setup {
        dir,
        config,
        interval,
        order,
    }
}

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(setup: &Setup, env: &[(&str, String)]) -> Daemon {
        Daemon::start_logging_to(setup, env, "daemon.log")
    }

    /// [`Daemon::start`] with its log in `log` of the setup's directory (several daemons
    /// on one configuration).
    fn start_logging_to(setup: &Setup, env: &[(&str, String)], log: &str) -> Daemon {
        let log = std::fs::File::create(setup.dir.path().join(log)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_oauth-poller"))
            .arg("--config")
            .arg(&setup.config)
            // For experiments, e.g. BENCH_DAEMON_ARGS="--log-level warn".
            .args(
                std::env::var("BENCH_DAEMON_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .arg("run")
            .envs(env.iter().map(|(k, v)| (*k, v.clone())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Daemon { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) -> Duration {
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        t.elapsed()
    }
}

/// utime + stime of a process (all threads).
fn cpu(pid: u32) -> Duration {
    stat(pid).map(|s| s.cpu).unwrap_or_default()
}

/// What the benchmark reads of /proc/PID/stat.
struct Stat {
    ppid: u32,
    /// utime + stime.
    cpu: Duration,
    /// cutime + cstime: the children that exited and were waited for.
    children_cpu: Duration,
}

fn stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // After the command: state, ppid, pgrp, session, tty_nr, tpgid (may be -1), flags,
    // minflt, cminflt, majflt, cmajflt, utime, stime, cutime, cstime (proc(5) fields 3..17).
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / clock_ticks());
    Some(Stat {
        ppid: field(1) as u32,
        cpu: ticks(field(11) + field(12)),
        children_cpu: ticks(field(13) + field(14)),
    })
}

/// The CPU time a process has run, exact (the scheduler's sum over its threads, in ns), or
/// None once it is gone.
fn scheduled_cpu(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = Duration::ZERO;
    for t in tasks.flatten() {
        let ns: u64 = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        total += Duration::from_nanos(ns);
    }
    Some(total)
}

type ThreadCpus = std::collections::BTreeMap<String, Duration>;

/// CPU time of each thread of a process by thread name (the scheduler's exact sums).
fn thread_cpus(pid: u32) -> ThreadCpus {
    let mut out = ThreadCpus::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(t.path().join("schedstat"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_string()).or_default() += Duration::from_nanos(ns);
    }
    out
}

/// The CPU each thread name used between two [`thread_cpus`], per poll: "name µs, ...".
fn by_thread(before: &ThreadCpus, after: &ThreadCpus, polls: usize) -> String {
    after
        .iter()
        .map(|(name, t1)| {
            let t0 = before.get(name).copied().unwrap_or_default();
            format!(
                "{name} {:.1}",
                t1.saturating_sub(t0).as_secs_f64() * 1e6 / polls.max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

/// A /proc/PID/status field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Arrivals of one scenario's endpoints (by tag prefix), as (tag, seconds since sim start).
fn arrivals(sim: &SimHandle, tag: &str) -> Vec<(String, f64)> {
    sim.sim
        .take_arrivals()
        .into_iter()
        .filter_map(|a| {
            let ep = a.query.split('&').find_map(|kv| kv.strip_prefix("ep="))?;
            ep.starts_with(tag)
                .then(|| (ep.to_string(), a.at.as_secs_f64()))
        })
        .collect()
}

/// How late each poll started against its schedule: the schedule's origin is estimated as
/// the earliest (first arrival - spread offset) over all endpoints, then each endpoint is
/// due at origin + offset + k * interval.
fn lateness(setup: &Setup, arrivals: &[(String, f64)]) -> (f64, f64, f64, usize) {
    spread(late_starts(setup, arrivals))
}

/// How late each of `arrivals` started (see [`lateness`]), in seconds, in arrival order.
/// The arrivals must come from one daemon: each has its own schedule's origin.
fn late_starts(setup: &Setup, arrivals: &[(String, f64)]) -> Vec<f64> {
    let iv = setup.interval.as_secs_f64();
    // The daemon's own spread of first polls, over its endpoints in configuration order.
    let offsets = oauth_poller::start_offsets(&vec![setup.interval; setup.order.len()]);
    let offset: HashMap<&str, f64> = setup
        .order
        .iter()
        .zip(offsets)
        .map(|(t, o)| (t.as_str(), o.as_secs_f64()))
        .collect();
    let mut first: HashMap<&str, f64> = HashMap::new();
    for (t, at) in arrivals {
        let e = first.entry(t.as_str()).or_insert(*at);
        *e = e.min(*at);
    }
    let origin = first
        .iter()
        .map(|(t, a)| a - offset.get(t).copied().unwrap_or(0.0))
        .fold(f64::INFINITY, f64::min);
    arrivals
        .iter()
        .map(|(t, at)| {
            let due0 = origin + offset.get(t.as_str()).copied().unwrap_or(0.0);
            // The nearest due time: an arrival a hair early (a connection reused after the
            // first poll's handshake) is on time, not an interval late.
            let k = ((at - due0) / iv).round().max(0.0);
            (at - (due0 + k * iv)).max(0.0)
        })
        .collect()
}

/// p50, p99 and max of `late` (seconds) in ms, and how many.
fn spread(mut late: Vec<f64>) -> (f64, f64, f64, usize) {
    late.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pick = |q: f64| {
        late.get(((late.len() as f64 * q) as usize).min(late.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    (
        pick(0.5) * 1e3,
        pick(0.99) * 1e3,
        late.last().copied().unwrap_or(0.0) * 1e3,
        late.len(),
    )
}

// ---- scenarios -----------------------------------------------------------------------------

fn idle(sim: &SimHandle, report: &mut Report, secs: u64) {
    println!("idle: 5 accounts, 10 endpoints, 60 s interval, {secs} s ...");
    let s = setup(sim, "idle", 5, 10, Duration::from_secs(60));
    let d = Daemon::start(&s, &[]);
    std::thread::sleep(Duration::from_secs(5));
    let (rss0, hwm0, cpu0) = (
        status_kib(d.pid(), "VmRSS"),
        status_kib(d.pid(), "VmHWM"),
        cpu(d.pid()),
    );
    std::thread::sleep(Duration::from_secs(secs));
    let (rss1, hwm1, cpu1) = (
        status_kib(d.pid(), "VmRSS"),
        status_kib(d.pid(), "VmHWM"),
        cpu(d.pid()),
    );
    let (anon1, file1) = (
        status_kib(d.pid(), "RssAnon"),
        status_kib(d.pid(), "RssFile"),
    );
    d.stop();
    arrivals(sim, "idle");
    report.section("Idle (5 accounts, 10 endpoints, 60 s interval)");
    report.row(
        "VmRSS / VmHWM after start (5 s)",
        &format!("{} / {}", mib(rss0), mib(hwm0)),
    );
    report.row(
        &format!("VmRSS / VmHWM after {secs} s"),
        &format!("{} / {}", mib(rss1), mib(hwm1)),
    );
    report.row(
        &format!("of which anonymous (heap, stacks) / file (code, libraries) after {secs} s"),
        &format!("{} / {}", mib(anon1), mib(file1)),
    );
    report.row(
        &format!("CPU used over {secs} s (10 polls a minute)"),
        &format!(
            "{:.2} s ({:.3}% of a core)",
            (cpu1 - cpu0).as_secs_f64(),
            (cpu1 - cpu0).as_secs_f64() * 100.0 / secs as f64
        ),
    );
}

struct ScaleResult {
    cpu_per_poll_us: f64,
    rss_kib: u64,
    endpoints: usize,
}

fn scale(
    sim: &SimHandle,
    report: &mut Report,
    endpoints: usize,
    interval: Duration,
    secs: u64,
    floor: Option<f64>,
) -> ScaleResult {
    println!("scale: {endpoints} endpoints over 10 accounts, every {interval:?}, {secs} s ...");
    let tag = format!("s{endpoints}-");
    let s = setup(sim, &tag, 10, endpoints, interval);
    let d = Daemon::start(&s, &[]);
    // Warm up for one interval (every endpoint has polled once), then measure.
    std::thread::sleep(interval + Duration::from_secs(2));
    arrivals(sim, &tag);
    let cpu0 = cpu(d.pid());
    let threads0 = thread_cpus(d.pid());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu1 = cpu(d.pid());
    let threads1 = thread_cpus(d.pid());
    let elapsed = t0.elapsed().as_secs_f64();
    let got = arrivals(sim, &tag);
    let hwm = status_kib(d.pid(), "VmHWM");
    let rss = status_kib(d.pid(), "VmRSS");
    d.stop();
    let polls = got.len();
    let (p50, p99, max, _) = lateness(&s, &got);
    let db = s.dir.path().join("state.db");
    let rows: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM polls", [], |r| r.get(0)))
        .unwrap_or(0);
    let per_poll = (cpu1 - cpu0).as_secs_f64() * 1e6 / polls.max(1) as f64;
    report.section(&format!(
        "Scale: {endpoints} endpoints over 10 accounts, interval {} s",
        interval.as_secs_f64()
    ));
    report.row(
        "polls in the measured window",
        &format!(
            "{polls} in {elapsed:.0} s ({:.0}/s)",
            polls as f64 / elapsed
        ),
    );
    report.row(
        "daemon CPU per poll (user+sys, incl. SQLite row and log line)",
        &match floor {
            // CPU figures move by 2x between VMs; the ratio to the floor much less.
            Some(f) => format!("{per_poll:.1} µs ({:.2}x the floor)", per_poll / f),
            None => format!("{per_poll:.1} µs"),
        },
    );
    report.row(
        "of which, by thread (µs per poll)",
        &by_thread(&threads0, &threads1, polls),
    );
    report.row(
        "peak RSS (VmHWM) / RSS at end",
        &format!("{} / {}", mib(hwm), mib(rss)),
    );
    report.row(
        "start lateness p50 / p99 / max",
        &format!("{p50:.1} / {p99:.1} / {max:.1} ms"),
    );
    report.row(
        "SQLite rows written per second (whole run)",
        &format!(
            "{:.0} ({rows} rows)",
            rows as f64 / (elapsed + interval.as_secs_f64() + 2.0)
        ),
    );
    ScaleResult {
        cpu_per_poll_us: per_poll,
        rss_kib: hwm,
        endpoints,
    }
}

fn fan_in(sim: &SimHandle, report: &mut Report, endpoints: usize) {
    println!("refresh fan-in: {endpoints} endpoints of one account, token just expired ...");
    let tag = format!("f{endpoints}-");
    let interval = Duration::from_secs(30);
    let s = setup(sim, &tag, 1, endpoints, interval);
    let d = Daemon::start(&s, &[]);
    std::thread::sleep(interval + Duration::from_secs(3));
    arrivals(sim, &tag);
    let before = sim.refreshes();
    // The server forgets the access token: every endpoint's next poll meets a 401.
    sim.post("/_sim/expire?what=access");
    let t0 = Instant::now();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    while seen.len() < endpoints && t0.elapsed() < interval * 3 {
        std::thread::sleep(Duration::from_millis(200));
        for (t, _) in arrivals(sim, &tag) {
            seen.insert(t);
        }
    }
    let all = t0.elapsed();
    let token_requests = sim.refreshes() - before;
    d.stop();
    report.section(&format!(
        "Refresh fan-in: {endpoints} endpoints of one account whose access token just expired"
    ));
    report.row("token requests made", &token_requests.to_string());
    report.row(
        "time until every endpoint polled again",
        &format!(
            "{:.1} s ({} of {endpoints}; interval {} s)",
            all.as_secs_f64(),
            seen.len(),
            interval.as_secs()
        ),
    );
}

fn start_stop(sim: &SimHandle, report: &mut Report) {
    use std::os::unix::net::UnixDatagram;
    println!("start and stop ...");
    let s = setup(sim, "ss", 1, 10, Duration::from_secs(1));
    let sock_path = s.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t0 = Instant::now();
    let d = Daemon::start(&s, &[("NOTIFY_SOCKET", sock_path.display().to_string())]);
    let mut buf = [0u8; 4096];
    let ready = loop {
        let n = sock.recv(&mut buf).expect("READY=1 within 10 s");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break t0.elapsed();
        }
    };
    // Every request now takes 2 s: polls are in flight when SIGTERM comes.
    std::thread::sleep(Duration::from_millis(1500));
    sim.post("/_sim/fault?target=api&kind=delay&delay_ms=2000");
    std::thread::sleep(Duration::from_millis(1500));
    let stop = d.stop();
    sim_clear_faults(sim);
    report.section("Start and stop (1 account, 10 endpoints)");
    report.row(
        "exec to READY=1",
        &format!("{:.1} ms", ready.as_secs_f64() * 1e3),
    );
    report.row(
        "SIGTERM to exit, polls in flight",
        &format!("{:.1} ms", stop.as_secs_f64() * 1e3),
    );
}

/// A 10-page poll against a 1-page poll: the same list of 100 items in DRF pages of 10,
/// polled by 50 endpoints every second, once with `paginate = "none"` (the first page, 10
/// items) and once with `paginate = "auto"` (all 10 pages joined into one collection).
fn pagination(report: &mut Report, secs: u64) {
    const ENDPOINTS: usize = 50;
    let interval = Duration::from_secs(1);
    println!("pagination: {ENDPOINTS} endpoints every {interval:?}, 1 page vs 10 pages, {secs} s each ...");
    let sim = SimHandle::start_with(|o| {
        o.items = 100;
        o.page_size = 10;
    });
    report.section(&format!(
        "Pagination: {ENDPOINTS} endpoints every {} s, a list of 100 items in DRF pages of 10",
        interval.as_secs()
    ));
    let mut per_poll = Vec::new();
    for (paginate, what) in [
        ("none", "1 page (`paginate = \"none\"`, 10 items)"),
        ("auto", "10 pages (`paginate = \"auto\"`, 100 items joined)"),
    ] {
        let tag = format!("pg-{paginate}-");
        let s = pages_setup(&sim, &tag, ENDPOINTS, interval, paginate);
        let d = Daemon::start(&s, &[]);
        std::thread::sleep(interval + Duration::from_secs(2));
        sim.sim.take_arrivals();
        let cpu0 = cpu(d.pid());
        std::thread::sleep(Duration::from_secs(secs));
        let cpu1 = cpu(d.pid());
        let got: Vec<String> = sim
            .sim
            .take_arrivals()
            .into_iter()
            .map(|a| a.query)
            .filter(|q| q.contains(&format!("ep={tag}")))
            .collect();
        d.stop();
        // A poll's first request is the one without a page number.
        let polls = got
            .iter()
            .filter(|q| !q.split('&').any(|kv| kv.starts_with("page=")))
            .count();
        let db = s.dir.path().join("state.db");
        let (rows, pages, items): (i64, f64, f64) = rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*), AVG(pages), AVG(items) FROM polls WHERE error IS NULL",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .unwrap_or((0, 0.0, 0.0));
        let us = (cpu1 - cpu0).as_secs_f64() * 1e6 / polls.max(1) as f64;
        report.row(
            &format!("daemon CPU per poll, {what}"),
            &format!(
                "{us:.1} µs ({polls} polls, {} requests in {secs} s; rows: {rows}, {pages:.1} pages and {items:.0} items on average)",
                got.len()
            ),
        );
        per_poll.push(us);
    }
    if let [one, ten] = per_poll[..] {
        report.row(
            "10-page poll / 1-page poll",
            &format!(
                "{:.2}x (target: at most about 10x); per page {:.1} µs",
                ten / one,
                ten / 10.0
            ),
        );
    }
}

/// One account of `endpoints` endpoints polling the 100-item list with `paginate`.
fn pages_setup(
    sim: &SimHandle,
    tag: &str,
    endpoints: usize,
    interval: Duration,
    paginate: &str,
) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("oauth-poller-bench-")
        .tempdir()
        .unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, sim.sim.issue_seed()).unwrap();
    let mut account = sim_account("a", sim, &seed);
    let mut order = Vec::new();
    for e in 0..endpoints {
        let t = format!("{tag}{e}");
        account = account.endpoint(
            Endpoint::new(&format!("e{e}"), "v1/links/")
                .query("ep", &t)
                .set("paginate", paginate),
        );
        order.push(t);
    }
    let config = Config::polling(
        &dir.path().join("state.db"),
        &format!("{}ms", interval.as_millis()),
        "10s",
    )
    .account(account)
    .write(&dir.path().join("config.toml"));
    Setup {
        dir,
        config,
        interval,
        order,
    }
}

fn sim_clear_faults(sim: &SimHandle) {
    sim.sim.clear_faults();
}

// ---- the floor: one HTTP request on loopback ------------------------------------------------

/// What one poll's HTTP request costs with nothing around it: a thread that, every 3 ms
/// like the 1k scenario, writes a GET on a kept-alive connection and blocks reading the
/// answer. No runtime, no log line, no row. Its CPU (the kernel's TCP loopback path, two
/// wake-ups) is the part of a poll no daemon design removes; its parts show which is which.
/// Returns the CPU per request, µs.
fn floor(sim: &SimHandle, report: &mut Report, secs: u64) -> f64 {
    use std::io::{Read, Write};
    println!("floor: one blocking keep-alive GET every 3 ms, {secs} s ...");
    let seed: serde_json::Value = serde_json::from_str(&sim.sim.issue_seed()).unwrap();
    let token = seed["access_token"].as_str().unwrap().to_string();
    let addr = sim.addr;
    let (n, cpu, wake, ready) = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let request = format!(
            "GET /api/v1/links/?no_pagination=&ep=floor HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
        );
        let mut buf = vec![0u8; 64 * 1024];
        let send = |s: &mut std::net::TcpStream| s.write_all(request.as_bytes()).unwrap();
        let receive = |s: &mut std::net::TcpStream, buf: &mut [u8]| {
            let mut have = 0;
            loop {
                let n = s.read(&mut buf[have..]).unwrap();
                assert!(n > 0, "the simulator closed the connection");
                have += n;
                let text = &buf[..have];
                if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
                    assert!(head.starts_with("http/1.1 200"), "{head}");
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .expect("a content-length");
                    if have >= end + 4 + len {
                        return;
                    }
                }
            }
        };
        send(&mut s);
        receive(&mut s, &mut buf);
        let t0 = Instant::now();
        let cpu0 = thread_cpu();
        let mut n = 0u64;
        let mut next = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            next += Duration::from_millis(3);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            send(&mut s);
            receive(&mut s, &mut buf);
            n += 1;
        }
        let floor = thread_cpu() - cpu0;
        // Its parts: a sleeping thread's timer wake-up alone, then requests whose answer is
        // already there when read (the sleep between write and read is subtracted).
        const PARTS: u32 = 1000;
        let cpu0 = thread_cpu();
        for _ in 0..PARTS {
            std::thread::sleep(Duration::from_millis(2));
        }
        let wake = (thread_cpu() - cpu0) / PARTS;
        let cpu0 = thread_cpu();
        for _ in 0..PARTS {
            send(&mut s);
            std::thread::sleep(Duration::from_millis(2));
            receive(&mut s, &mut buf);
        }
        let ready = ((thread_cpu() - cpu0) / PARTS).saturating_sub(wake);
        (n, floor, wake, ready)
    })
    .join()
    .unwrap();
    sim.sim.take_arrivals();
    let per_request = cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
    report.section("Floor: one HTTP request on loopback, nothing else");
    report.row(
        "CPU per request: blocking keep-alive GET every 3 ms (write, sleep, read)",
        &format!("{per_request:.1} µs ({n} requests)"),
    );
    report.row(
        "its parts: a sleeping thread's timer wake-up / write + read, answer already there",
        &format!(
            "{:.1} µs / {:.1} µs",
            wake.as_secs_f64() * 1e6,
            ready.as_secs_f64() * 1e6
        ),
    );
    per_request
}

/// This thread's CPU time, exact (the scheduler's sum, in ns).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

// ---- peers ---------------------------------------------------------------------------------

fn peers(sim: &SimHandle, report: &mut Report, ours: &ScaleResult, secs: u64) {
    report.section(&format!(
        "Peers: the same {} endpoints, the same simulator, same run",
        ours.endpoints
    ));
    let ours_line = format!(
        "{:.1} µs CPU per poll, peak RSS {}",
        ours.cpu_per_poll_us,
        mib(ours.rss_kib)
    );
    report.row("oauth-poller", &ours_line);
    let seed: serde_json::Value = serde_json::from_str(&sim.sim.issue_seed()).unwrap();
    let token = seed["access_token"].as_str().unwrap().to_string();
    let urls: Vec<String> = (0..ours.endpoints)
        .map(|i| {
            format!(
                "http://{}/api/v1/links/?no_pagination&ep=peer-{i}",
                sim.addr
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    std::fs::write(&list, urls.join("\n")).unwrap();

    // (a) The loop users copy from the vendor docs: Python + requests, one process.
    println!("peer: the vendor-docs Python loop, {secs} s ...");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/vendor_loop.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(&list)
        .arg(secs.to_string())
        .env("ACCESS_TOKEN", &token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    arrivals(sim, "peer-");
    let c0 = cpu(pid);
    std::thread::sleep(Duration::from_secs(secs - 4));
    let c1 = cpu(pid);
    let hwm = status_kib(pid, "VmHWM");
    let polls = arrivals(sim, "peer-").len();
    let _ = child.wait();
    let py = (c1 - c0).as_secs_f64() * 1e6 / polls.max(1) as f64;
    report.row(
        "Python requests loop",
        &format!("{py:.1} µs CPU per poll ({polls} polls), peak RSS {}: {:.1}x oauth-poller's CPU per poll", mib(hwm), py / ours.cpu_per_poll_us),
    );

    // (b) collectd's curl_json: a real C polling agent, the same URLs every 3 s.
    let has_collectd = Command::new("sh")
        .args(["-c", "command -v collectd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_collectd {
        report.row(
            "collectd curl_json",
            "not measured: collectd is not installed (apt-get install collectd-core)",
        );
        return;
    }
    println!("peer: collectd curl_json, {secs} s ...");
    let conf = dir.path().join("collectd.conf");
    let mut c = format!(
        "Interval 3\nBaseDir \"{0}\"\nPIDFile \"{0}/collectd.pid\"\nPluginDir \"/usr/lib/collectd\"\n\
         LoadPlugin curl_json\nLoadPlugin csv\n<Plugin csv>\n  DataDir \"{0}/csv\"\n</Plugin>\n<Plugin curl_json>\n",
        dir.path().display()
    );
    for (i, u) in urls.iter().enumerate() {
        write!(
            c,
            "  <URL \"{}\">\n    Instance \"e{i}\"\n    Header \"Authorization: Bearer {token}\"\n    <Key \"*/id\">\n      Type \"gauge\"\n    </Key>\n  </URL>\n",
            u.replace("ep=peer-", "ep=peerc-")
        )
        .unwrap();
    }
    c.push_str("</Plugin>\n");
    std::fs::write(&conf, c).unwrap();
    let mut child = Command::new("collectd")
        .args(["-f", "-C"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("collectd");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5));
    arrivals(sim, "peerc-");
    let c0 = cpu(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let c1 = cpu(pid);
    let hwm = status_kib(pid, "VmHWM");
    let polls = arrivals(sim, "peerc-").len();
    let _ = child.kill();
    let _ = child.wait();
    let cd = (c1 - c0).as_secs_f64() * 1e6 / polls.max(1) as f64;
    report.row(
        "collectd curl_json",
        &format!("{cd:.1} µs CPU per poll ({polls} polls), peak RSS {}: {:.2}x oauth-poller's CPU per poll", mib(hwm), cd / ours.cpu_per_poll_us),
    );
}

// ---- the report ----------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    text: String,
}

impl Report {
    fn line(&mut self, s: &str) {
        println!("{s}");
        writeln!(self.text, "{s}  ").unwrap();
    }

    fn section(&mut self, title: &str) {
        println!("\n{title}");
        write!(
            self.text,
            "\n### {title}\n\n| measure | value |\n|---|---|\n"
        )
        .unwrap();
    }

    fn row(&mut self, what: &str, value: &str) {
        println!("  {what:<60} {value}");
        writeln!(self.text, "| {what} | {value} |").unwrap();
    }

    /// Puts this report, one section titled `title`, into the file at `path` in place of the
    /// section of that title (through the next section's heading), or at its end: a scenario
    /// run alone updates its own section and leaves the full run's others as they are.
    fn update(&self, title: &str, path: &Path) {
        let old = std::fs::read_to_string(path).unwrap_or_else(|_| self.markdown());
        let heading = format!("\n### {title}\n");
        let new = match old.find(&heading) {
            Some(start) => {
                let rest = &old[start + heading.len()..];
                let end = rest
                    .find("\n### ")
                    .map_or(old.len(), |n| start + heading.len() + n);
                format!("{}{}{}", &old[..start], self.text, &old[end..])
            }
            None => format!(
                "{}{}",
                old.trim_end_matches('\n').to_string() + "\n",
                self.text
            ),
        };
        std::fs::write(path, new).unwrap();
        println!("\nsection {title:?} written to {}", path.display());
    }

    fn markdown(&self) -> String {
        format!(
            "# Benchmarks\n\nProduced by `cargo bench --bench daemon` (method: [benchmark-method.md](benchmark-method.md)). \
             The daemon is the release binary as a process; the simulator serves the API on \
             loopback from the benchmark process, so its CPU is not counted.\n\n{}",
            self.text
        )
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0);
    format!("{model}, {cores} cores, {:.0} GiB", mem as f64 / 1048576.0)
}
