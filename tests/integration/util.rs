//! Shared helpers: the real binary as a process, its logs, signals, and the servers it talks to.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oauth-poller"))
}

/// A port nothing listens on now (bound to 127.0.0.1:0 and released): other test runs on the
/// machine pick theirs the same way, so none is fixed.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oauth-poller-test-")
        .tempdir()
        .expect("tempdir")
}

/// Runs the binary to completion with `--config CONFIG` (when given) and `args`. Its
/// command line is recorded for the secrets scan ([`cmdlines_seen`]).
pub fn run(config: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let child = cmd
        .args(args)
        .env_remove("OAUTH_POLLER_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oauth-poller");
    // What every local user sees in /proc/PID/cmdline; once the process has exited (the
    // file is then empty) it is what was passed to execve.
    let seen = cmdline(child.id())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        });
    let samples = Arc::new(Mutex::new(std::collections::BTreeSet::from([seen])));
    CMDLINES.with(|c| c.borrow_mut().push(samples));
    child.wait_with_output().expect("run oauth-poller")
}

/// The command line of a process as /proc shows it (arguments joined by spaces).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A process and all its descendants (hooks, their children), from /proc.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children =
                    std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                all.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    all
}

type Cmdlines = Arc<Mutex<std::collections::BTreeSet<String>>>;

thread_local! {
    /// The command lines of the processes this test (thread) started, for the secrets scan.
    static CMDLINES: std::cell::RefCell<Vec<Cmdlines>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Every command line seen so far of the processes this test started with [`run`] and
/// [`Daemon`] (with the daemons' descendants, sampled while they ran), one per line.
pub fn cmdlines_seen() -> String {
    CMDLINES.with(|c| {
        c.borrow()
            .iter()
            .flat_map(|set| set.lock().unwrap().iter().cloned().collect::<Vec<_>>())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `oauth-poller run` with its stderr collected.
pub struct Daemon {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start(config: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.arg("--config").arg(config).args(extra).arg("run");
        Daemon::spawn(cmd)
    }

    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oauth-poller");
        let log = Arc::new(Mutex::new(String::new()));
        // Both streams go to one log: the secrets scan reads everything the process wrote.
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        fn collect(stream: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        collect(stderr, log.clone());
        collect(stdout, log.clone());
        // The command lines of the daemon and of what it starts, sampled until it exits.
        let samples: Cmdlines = Arc::default();
        CMDLINES.with(|c| c.borrow_mut().push(samples.clone()));
        let pid = child.id();
        std::thread::spawn(move || {
            while std::fs::metadata(format!("/proc/{pid}/task")).is_ok() {
                for p in process_tree(pid) {
                    if let Some(c) = cmdline(p).filter(|c| !c.is_empty()) {
                        samples.lock().unwrap().insert(c);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the log has `n` lines containing `needle`; panics with the log if not.
    pub fn wait_for(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(needle) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {n} x {needle:?}; log:\n{}",
            self.log()
        );
    }

    /// Waits until the store at `db` holds `n` token events `event` ("refreshed",
    /// "obtained") for any account: what happened, whatever the log says about it.
    pub fn wait_events(&self, db: &Path, event: &str, n: i64, timeout: Duration) {
        self.wait_store(db, timeout, &format!("{n} x {event:?} events"), |c| {
            c.query_row(
                "SELECT COUNT(*) FROM token_events WHERE event = ?1",
                [event],
                |r| r.get::<_, i64>(0),
            )
            .map(|have| have >= n)
        });
    }

    /// Waits until `sql` (one number) on the store at `db` reaches `n`.
    pub fn wait_count(&self, db: &Path, sql: &str, n: i64, timeout: Duration) {
        self.wait_store(db, timeout, &format!("{sql} >= {n}"), |c| {
            c.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|have| have >= n)
        });
    }

    /// Waits until the store at `db` holds `n` poll rows matching `filter` (see [`Polls`]).
    pub fn wait_polls(&self, db: &Path, filter: Polls, n: i64, timeout: Duration) {
        self.wait_store(db, timeout, &format!("{n} polls {filter:?}"), |c| {
            filter.count_in(c).map(|have| have >= n)
        });
    }

    fn wait_store(
        &self,
        db: &Path,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&rusqlite::Connection) -> rusqlite::Result<bool>,
    ) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            // Until the daemon has created the store (and its tables) there is nothing yet.
            if read_only(db).is_some_and(|c| done(&c).unwrap_or(false)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what} in {}; log:\n{}",
            db.display(),
            self.log()
        );
    }

    /// A graceful stop that must succeed (exit 0); panics with the log otherwise.
    pub fn stop(&mut self) {
        self.signal(SIGTERM);
        let status = self.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{status}: {}", self.log());
    }

    pub fn signal(&self, sig: i32) {
        let rc = unsafe_kill(self.child.id() as i32, sig);
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Waits for exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread drain the pipe.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A graceful stop (SIGTERM, which flushes the poll rows gathered for the next commit),
/// then SIGKILL after 5 s. Tests that mean a crash send SIGKILL themselves.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = unsafe_kill(self.child.id() as i32, SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;
pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;

fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    // `kill` from coreutils keeps the tests free of unsafe code.
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    if status.success() {
        0
    } else {
        1
    }
}

/// A minimal HTTP/1.1 GET on loopback (the test servers are plain HTTP).
pub fn http_get(url: &str) -> String {
    let text = http_request("GET", url);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return dechunk(body);
    }
    body.to_string()
}

/// One bodiless HTTP/1.1 request on loopback; the whole answer, head and body.
fn http_request(method: &str, url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    String::from_utf8_lossy(&buf).to_string()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Replaces `from` with `to` in the configuration at `path`, as an operator edits it;
/// panics when `from` is not there, so that an edit which no longer matches what the
/// builder writes cannot leave a test running on the old text.
pub fn edit_config(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} has no {from:?}:\n{text}",
        path.display()
    );
    write_file(path, &text.replace(from, to));
}

pub fn write_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn db(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open db");
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c
}

/// The store opened read-only, as a second process would read it while the daemon runs;
/// None while it does not exist yet.
pub fn read_only(path: &Path) -> Option<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    c.busy_timeout(Duration::from_secs(5)).ok()?;
    Some(c)
}

/// Which poll rows to count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Polls<'a> {
    pub account: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub status: Option<i64>,
}

impl Polls<'_> {
    /// Every poll.
    pub fn all() -> Polls<'static> {
        Polls::default()
    }

    /// Polls answered 200.
    pub fn ok() -> Polls<'static> {
        Polls {
            status: Some(200),
            ..Polls::default()
        }
    }

    fn count_in(&self, c: &rusqlite::Connection) -> rusqlite::Result<i64> {
        c.query_row(
            "SELECT COUNT(*) FROM polls WHERE (?1 IS NULL OR account = ?1) \
             AND (?2 IS NULL OR endpoint = ?2) AND (?3 IS NULL OR status = ?3)",
            rusqlite::params![self.account, self.endpoint, self.status],
            |r| r.get(0),
        )
    }

    /// How many the store at `db` holds now (0 before it exists).
    pub fn count(&self, db: &Path) -> i64 {
        read_only(db)
            .and_then(|c| self.count_in(&c).ok())
            .unwrap_or(0)
    }
}

/// The refresh tokens the simulator still honours, from its stats.
pub fn valid_refresh_tokens(stats: &serde_json::Value) -> Vec<&str> {
    stats["valid_refresh_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect()
}

/// When the simulator answered a refresh with a new access token, after checking that it
/// saw no rejected (`invalid_grant`) and no reused refresh token. `context` (the daemons'
/// logs, say) goes with a failure.
pub fn refreshes_with_no_spent_grant(stats: &serde_json::Value, context: &str) -> Vec<i64> {
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"], 0,
        "{stats}\n{context}"
    );
    assert_eq!(stats["refresh_token_reuse"], 0, "{stats}\n{context}");
    stats["issued"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["grant"] == "refresh_token" && i["kind"] == "access")
        .map(|i| i["at"].as_i64().unwrap())
        .collect()
}

/// How many token events `event` ("refreshed", "obtained") the store at `db` holds now.
pub fn events(db: &Path, event: &str) -> i64 {
    read_only(db)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM token_events WHERE event = ?1",
                [event],
                |r| r.get(0),
            )
            .ok()
        })
        .unwrap_or(0)
}

pub fn query_i64(path: &Path, sql: &str) -> i64 {
    db(path).query_row(sql, [], |r| r.get(0)).expect(sql)
}

pub fn stored_refresh_token(path: &Path, account: &str) -> Option<String> {
    db(path)
        .query_row(
            "SELECT refresh_token FROM tokens WHERE account = ?1",
            [account],
            |r| r.get(0),
        )
        .expect("token row")
}

/// Everything the store holds, as text: to show that a failed command changed nothing.
pub fn dump(path: &Path) -> String {
    if !path.exists() {
        return "<no database>".into();
    }
    let c = db(path);
    let mut out = String::new();
    for table in ["tokens", "token_events", "polls"] {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        for row in rows {
            out.push_str(&row.unwrap());
            out.push('\n');
        }
    }
    out
}

/// The real iNode software: django-oauth-toolkit + Django REST framework (tests/django_inode).
pub struct Django {
    child: Child,
    pub info: serde_json::Value,
    _dir: tempfile::TempDir,
}

impl Django {
    pub fn start(access_ttl: u64) -> Django {
        Django::start_with(access_ttl, &[])
    }

    /// With extra launcher options, e.g. `["--redirect-port", "40123"]`.
    pub fn start_with(access_ttl: u64, extra: &[&str]) -> Django {
        let dir = tempdir();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/django_inode/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--state-dir"])
            .arg(dir.path())
            .args(["--port", "0", "--access-ttl", &access_ttl.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 tests/django_inode/server.py (is .ci/run's pip install done?)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the launcher's JSON line");
        let info: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("django launcher printed {line:?}: {e} (pip install -r tests/django_inode/requirements.txt)"));
        Django {
            child,
            info,
            _dir: dir,
        }
    }

    pub fn get(&self, key: &str) -> String {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}"))
            .to_string()
    }

    pub fn state(&self) -> serde_json::Value {
        let url = self.get("base_url").replace("/api/", "/_test/state");
        serde_json::from_str(&http_get(&url)).expect("/_test/state JSON")
    }
}

impl Drop for Django {
    fn drop(&mut self) {
        let _ = unsafe_kill(self.child.id() as i32, SIGTERM);
        let _ = self.child.wait();
    }
}

/// The built-in provider simulator, served in this test process on loopback.
pub struct Sim {
    pub sim: oauth_poller_sim::Simulator,
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Serving = (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
);

fn serve(sim: &oauth_poller_sim::Simulator, addr: std::net::SocketAddr) -> Serving {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server = sim.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    (addr, stop, thread)
}

impl Sim {
    pub fn start(opts: oauth_poller_sim::SimOptions) -> Sim {
        let sim = oauth_poller_sim::Simulator::new(opts);
        let (addr, stop, thread) = serve(&sim, "127.0.0.1:0".parse().unwrap());
        Sim {
            sim,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Closes the listener (connections are refused) but keeps the simulator's state.
    pub fn stop_listening(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same address, with the same tokens.
    pub fn listen_again(&mut self) {
        let (addr, stop, thread) = serve(&self.sim, self.addr);
        assert_eq!(addr, self.addr);
        self.stop = Some(stop);
        self.thread = Some(thread);
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    pub fn stats(&self) -> serde_json::Value {
        self.sim.stats()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

/// A bodiless POST on loopback (simulator admin calls).
pub fn http_post(url: &str) -> String {
    let text = http_request("POST", url);
    assert!(text.starts_with("HTTP/1.1 2"), "POST {url}: {text}");
    text
}

/// One HTTP/1.1 request as a test server reads it from its connection.
pub struct Request {
    /// The request line and the headers, CRLFs kept.
    pub head: String,
    /// As long as `Content-Length` says (read, so that keep-alive stays in step).
    pub body: Vec<u8>,
}

impl Request {
    /// The request target (`/path?query`).
    pub fn target(&self) -> &str {
        self.head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
    }

    /// The headers, names and values trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
    }

    /// Head and body as one text, for logs and the secrets scan.
    pub fn text(&self) -> String {
        format!("{}{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

/// Reads the next request of a connection; None when the client closed it.
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { head, body })
}

/// Something a test needs from the machine beyond the binary and loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root: namespaces, mounts, files owned by others.
    Root,
    /// systemd as PID 1 in private namespaces: root, /lib/systemd/systemd, unshare, nsenter.
    Systemd,
    /// The real iNode software: Django, DRF and django-oauth-toolkit for python3.
    Django,
    /// The real SciNote token endpoint: Ruby with Rails, Doorkeeper, Puma and SQLite.
    Doorkeeper,
    /// `cargo deb`, to build the package.
    CargoDeb,
    /// An IPv6 loopback address (::1) to listen on.
    Ipv6Loopback,
    /// `script` (util-linux), to give a process a terminal.
    Script,
    /// A PostgreSQL cluster of the test's own (`pg::PgServer`): Debian's server binaries
    /// and, as root, the `postgres` user to run them as.
    Postgres,
}

impl Need {
    /// None when the machine has it, else why not and how to get it.
    fn missing(self) -> Option<String> {
        let runs = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let root = || {
            Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        };
        match self {
            Need::Root if !root() => Some("needs root".into()),
            Need::Systemd if !root() => {
                Some("runs systemd as PID 1 in private namespaces and needs root".into())
            }
            Need::Systemd if !Path::new("/lib/systemd/systemd").exists() => {
                Some("no /lib/systemd/systemd (apt-get install systemd)".into())
            }
            Need::Systemd
                if !runs("nsenter", &["--version"]) || !runs("unshare", &["--version"]) =>
            {
                Some("no nsenter or unshare (apt-get install util-linux)".into())
            }
            Need::Django
                if !runs(
                    "python3",
                    &["-c", "import django, rest_framework, oauth2_provider"],
                ) =>
            {
                Some(
                    "python3 cannot import django, rest_framework and oauth2_provider \
                     (pip install -r tests/django_inode/requirements.txt)"
                        .into(),
                )
            }
            Need::Doorkeeper
                if !runs(
                    "ruby",
                    &[
                        "-e",
                        "require 'rails'; require 'doorkeeper'; require 'puma'; require 'sqlite3'",
                    ],
                ) =>
            {
                Some(
                    "ruby cannot load rails, doorkeeper, puma and sqlite3 \
                     (apt-get install ruby-doorkeeper ruby-rails puma ruby-sqlite3)"
                        .into(),
                )
            }
            Need::CargoDeb => {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                (!runs(&cargo, &["deb", "--version"]))
                    .then(|| "cargo-deb is not installed (cargo install cargo-deb)".into())
            }
            Need::Ipv6Loopback if std::net::TcpListener::bind("[::1]:0").is_err() => {
                Some("no IPv6 loopback on this machine".into())
            }
            Need::Script if !runs("script", &["--version"]) => {
                Some("no `script` (util-linux) to give the process a terminal".into())
            }
            Need::Postgres => crate::pg::missing(),
            _ => None,
        }
    }
}

/// Whether CI runs this: there a test that would skip fails instead, so that a CI machine
/// missing a piece cannot pass by testing less.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// True when the machine has `need`. Otherwise prints `skipped: <why>` and returns false
/// (the test then returns), or, under CI, panics with the reason (.ci/run installs it all).
pub fn require(need: Need) -> bool {
    let Some(why) = need.missing() else {
        return true;
    };
    assert!(!in_ci(), "CI=true but {need:?} is missing: {why}");
    eprintln!("skipped: {why}");
    false
}

/// The local ports of the TCP connections process `pid` holds open to port `to` (its
/// sockets, found in `/proc/PID/net/tcp` by inode): the simulator's
/// [`oauth_poller_sim::Arrival::peer`] of a request this process sent on a connection it
/// still holds.
pub fn tcp_ports(pid: u32, to: u16) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        // sl local_address rem_address st queues tr retrnsmt uid timeout inode ...
        for f in text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            let port = |address: &str| {
                address
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) && port(f[2]) == Some(to) {
                ports.extend(port(f[1]));
            }
        }
    }
    ports
}

/// The time of day (UTC, in seconds) a log line starting `2026-11-30T10:43:07.654898Z` was
/// written.
pub fn log_second_of_day(line: &str) -> Option<f64> {
    let t = line.get(11..line.find('Z')?)?;
    let mut parts = t.splitn(3, ':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The time of day (UTC, in seconds) now.
pub fn second_of_day_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        % 86400.0
}
