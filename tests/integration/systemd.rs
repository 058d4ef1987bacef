//! Under a real systemd: PID 1 in private namespaces (as root), driving the shipped unit.

use crate::config_builder::{Account, Config, Endpoint};
use crate::util::*;
use oauth_poller_sim::{Profile, SimOptions};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/oauth-poller.service");

/// Whether this machine can run the tests that boot systemd (see [`Need::Systemd`]).
pub fn systemd_available() -> bool {
    require(Need::Systemd)
}

/// systemd as PID 1 of new PID, mount, UTS and IPC namespaces (same network: it reaches
/// the simulator on loopback). Killing PID 1 ends the namespace.
pub struct Systemd {
    unshare: Child,
    pid: u32,
}

impl Systemd {
    /// `srv` is bind-mounted at /srv inside. Before systemd runs:
    /// - /etc, /usr and /var/lib get overlays whose changes live in a tmpfs (on `srv/scratch`,
    ///   so nothing is left on the host): the tests install files and packages there as an
    ///   operator would, and the host is untouched;
    /// - /tmp, /var/tmp, /var/log and /run get tmpfs of their own: systemd-tmpfiles empties
    ///   /tmp at boot (without this it would empty the host's), the journal starts empty, and
    ///   two of these systemds (tests run in parallel) must not share /run/systemd;
    /// - `mount --make-rshared /`: systemd mounts each service's credentials in a namespace of
    ///   its own and moves them into /run/credentials, which must propagate back for
    ///   `LoadCredential=` to work (with private propagation the service sees nothing).
    pub fn boot(srv: &Path) -> Systemd {
        let script = r#"set -e
mount --bind "$0" /srv
scratch="$0/scratch"
mkdir -p "$scratch"
mount -t tmpfs -o mode=0700 tmpfs "$scratch"
for d in etc usr var/lib var/cache; do
    u="$scratch/$(echo "$d" | tr / _)"
    mkdir -p "$u/up" "$u/work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$u/up,workdir=$u/work" "/$d"
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t tmpfs -o mode=0755 tmpfs /var/log
mkdir -p /var/log/apt
mount -t tmpfs -o mode=0755 tmpfs /run
mount --make-rshared /
exec /lib/systemd/systemd --system --unit=multi-user.target"#;
        // One of these at a time on a machine (other test runs included): each is PID 1 of
        // its own PID namespace but shares the host's cgroup hierarchy, and two systemds
        // managing one hierarchy break each other. The lock is held as long as the
        // namespace lives.
        let lock_dir = if Path::new("/run/lock").is_dir() {
            "/run/lock"
        } else {
            "/tmp"
        };
        let unshare = Command::new("flock")
            .arg(format!("{lock_dir}/oauth-poller-systemd-tests.lock"))
            .arg("unshare")
            .args([
                "-f",
                "-p",
                "-m",
                "-u",
                "-i",
                "--mount-proc",
                "--propagation",
                "private",
            ])
            .args(["/bin/sh", "-c", script])
            .arg(srv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        let child_of = |pid: u32| -> Option<u32> {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        // Waiting for the lock included: another test's systemd may hold it for a while.
        let deadline = Instant::now() + Duration::from_secs(600);
        let pid = loop {
            // flock -> unshare -> PID 1.
            let child = child_of(unshare.id()).and_then(child_of);
            // Wait for the exec: until then PID 1 is the shell doing the mounts.
            let exe = child.and_then(|c| std::fs::read_link(format!("/proc/{c}/exe")).ok());
            if let (Some(pid), Some(exe)) = (child, exe) {
                if exe.ends_with("systemd") {
                    break pid;
                }
            }
            assert!(Instant::now() < deadline, "systemd did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let sd = Systemd { unshare, pid };
        // Until its bus is up, systemctl cannot even ask.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = sd.run(&["timeout", "30", "systemctl", "is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return sd;
            }
            assert!(
                Instant::now() < deadline,
                "systemd state {state:?}: {}",
                text(&out)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "-u", "-i"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn show(&self, prop: &str) -> String {
        self.ok(&["systemctl", "show", "oauth-poller", "-p", prop, "--value"])
            .trim()
            .to_string()
    }

    fn journal(&self) -> String {
        self.journal_at(None)
    }

    /// The unit's journal lines of priority `warning` or worse.
    fn warnings(&self) -> String {
        self.journal_at(Some("warning"))
    }

    fn journal_at(&self, priority: Option<&str>) -> String {
        let mut args = vec![
            "journalctl",
            "-u",
            "oauth-poller",
            "--no-pager",
            "-o",
            "cat",
        ];
        if let Some(p) = priority {
            args.extend(["-p", p]);
        }
        self.ok(&args)
    }

    fn wait_journal(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.journal().matches(needle).count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("journal never had {n} x {needle:?}:\n{}", self.journal());
    }

    fn wait_prop(&self, prop: &str, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.show(prop) == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{prop} never became {want:?} (is {:?}); journal:\n{}",
            self.show(prop),
            self.journal()
        );
    }

    /// `history --json` on the service's store, run inside the namespace.
    fn events(&self, kind: &str) -> usize {
        let out = self.ok(&[
            "/srv/oauth-poller",
            "--database",
            "/var/lib/private/oauth-poller/state.db",
            "history",
            "--json",
            "--limit",
            "10000",
        ]);
        let items: Vec<serde_json::Value> = serde_json::from_str(&out).expect("history --json");
        items.iter().filter(|i| i["event"] == kind).count()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let _ = self.unshare.wait();
    }
}

fn config(sim: &Sim, endpoints: &[&str]) -> String {
    let mut account = Account::new("inode", &sim.base_url())
        .set("seed_file", "${CREDENTIALS_DIRECTORY}/inode-seed")
        .oauth2("token_url", "oauth/token/")
        .oauth2("client_id", "demo-client")
        .oauth2(
            "client_secret_file",
            "${CREDENTIALS_DIRECTORY}/inode-client-secret",
        )
        .oauth2("client_auth", "body")
        .oauth2("scope", "sync")
        .oauth2("grant", "refresh_token");
    for e in endpoints {
        account =
            account.endpoint(Endpoint::new(e, &format!("v1/{e}/")).query("no_pagination", ""));
    }
    Config::default()
        .daemon("interval", "1s")
        .account(account)
        .toml()
}

fn write_public(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// start returns once READY; polls reach the journal with priorities; reload applies a new
/// configuration; SIGKILL and SIGSTOP (watchdog) are followed by restarts that continue from
/// the store; stop is quick; a broken configuration exits 2 without a restart loop.
#[test]
fn the_unit_under_a_real_systemd() {
    use std::os::unix::fs::PermissionsExt;
    if !systemd_available() {
        return;
    }
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = Duration::from_secs(600);
    let sim = Sim::start(opts);

    // Files the dynamic user reads: mounted at /srv inside the namespace.
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(bin(), dir.path().join("oauth-poller")).unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    write_public(&creds.join("inode-seed"), &sim.sim.issue_seed(), 0o600);
    write_public(
        &creds.join("inode-client-secret"),
        "demo-client-secret",
        0o600,
    );
    let config_path = dir.path().join("config.toml");
    write_public(&config_path, &config(&sim, &["links"]), 0o644);
    // The shipped unit with the test's binary and configuration, a shorter watchdog and
    // restart delay; its LoadCredential= line is the shipped one.
    write_public(
        &dir.path().join("test.conf"),
        "[Service]\nExecStart=\nExecStart=/srv/oauth-poller --config /srv/config.toml run\n\
         WatchdogSec=3s\nRestartSec=1s\n",
        0o644,
    );

    std::fs::copy(UNIT, dir.path().join("oauth-poller.service")).unwrap();
    let sd = Systemd::boot(dir.path());
    // The credentials where the unit loads them from (root-only, as the README has them).
    sd.ok(&["mkdir", "-p", "/etc/oauth-poller"]);
    sd.ok(&["cp", "-a", "/srv/creds", "/etc/oauth-poller/credentials"]);
    sd.ok(&["chmod", "0700", "/etc/oauth-poller/credentials"]);
    sd.ok(&["mkdir", "-p", "/run/systemd/system/oauth-poller.service.d"]);
    sd.ok(&[
        "cp",
        "/srv/oauth-poller.service",
        "/run/systemd/system/oauth-poller.service",
    ]);
    sd.ok(&[
        "cp",
        "/srv/test.conf",
        "/run/systemd/system/oauth-poller.service.d/test.conf",
    ]);
    sd.ok(&["systemctl", "daemon-reload"]);

    // `systemctl start` returns once READY=1: the store is open and the seed imported.
    sd.ok(&["systemctl", "start", "oauth-poller"]);
    assert_eq!(sd.show("ActiveState"), "active");
    assert_eq!(sd.events("seeded"), 1, "READY came after the seed import");
    sd.wait_journal(
        "poll account=inode endpoint=links status=200",
        2,
        Duration::from_secs(10),
    );
    assert!(
        sd.show("StatusText").contains("account(s) ok"),
        "{}",
        sd.show("StatusText")
    );
    // Priorities reach the journal: poll lines are info (6), not in a warning-or-worse view.
    let warnings = sd.warnings();
    assert!(!warnings.contains("poll account="), "{warnings}");

    // reload applies a changed configuration.
    write_public(&config_path, &config(&sim, &["links", "devices"]), 0o644);
    sd.ok(&["systemctl", "reload", "oauth-poller"]);
    sd.wait_journal("configuration reloaded", 1, Duration::from_secs(10));
    sd.wait_journal("endpoint=devices status=200", 1, Duration::from_secs(10));

    // SIGKILL: restarted, continuing from the store (no second seed import).
    let pid = sd.show("MainPID");
    sd.ok(&[
        "systemctl",
        "kill",
        "-s",
        "KILL",
        "--kill-whom=main",
        "oauth-poller",
    ]);
    sd.wait_prop("NRestarts", "1", Duration::from_secs(10));
    sd.wait_prop("ActiveState", "active", Duration::from_secs(10));
    assert_ne!(sd.show("MainPID"), pid);
    let polls = sd.journal().matches("endpoint=links status=200").count();
    sd.wait_journal(
        "endpoint=links status=200",
        polls + 2,
        Duration::from_secs(10),
    );
    assert_eq!(
        sd.journal().matches("imported the seed file").count(),
        1,
        "{}",
        sd.journal()
    );

    // SIGSTOP: the watchdog (3 s here) kills it and systemd restarts it.
    sd.ok(&[
        "systemctl",
        "kill",
        "-s",
        "STOP",
        "--kill-whom=main",
        "oauth-poller",
    ]);
    sd.wait_prop("NRestarts", "2", Duration::from_secs(15));
    assert!(
        sd.journal().contains("Failed with result 'watchdog'"),
        "{}",
        sd.journal()
    );
    sd.wait_prop("ActiveState", "active", Duration::from_secs(10));
    let polls = sd.journal().matches("endpoint=links status=200").count();
    sd.wait_journal(
        "endpoint=links status=200",
        polls + 2,
        Duration::from_secs(10),
    );
    assert_eq!(sd.events("seeded"), 1, "restarts continue from the store");

    // stop ends it within 2 s.
    let t = Instant::now();
    sd.ok(&["systemctl", "stop", "oauth-poller"]);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(sd.journal().contains("stopped"));

    // A broken configuration: exit 2, and no restart loop.
    write_public(
        &config_path,
        &format!("bogus = 1\n{}", config(&sim, &["links"])),
        0o644,
    );
    let out = sd.run(&["systemctl", "start", "oauth-poller"]);
    assert!(!out.status.success());
    assert_eq!(sd.show("ExecMainStatus"), "2");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sd.show("ActiveState"), "failed");
    assert_eq!(
        sd.show("NRestarts"),
        "0",
        "RestartPreventExitStatus=2 stops a restart loop"
    );
    assert!(sd.journal().contains("key `bogus`"), "{}", sd.journal());
}

/// `systemd-analyze verify` is clean and the unit's exposure is rated 1.5 or lower.
#[test]
fn the_unit_verifies_and_is_hardened() {
    let dir = tempdir();
    let unit = dir.path().join("oauth-poller.service");
    let text = std::fs::read_to_string(UNIT)
        .unwrap()
        .replace("/usr/bin/oauth-poller", bin().to_str().unwrap());
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text_of(&out)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = text_of(&out);
    let level: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for oauth-poller.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(level <= 1.5, "exposure {level} > 1.5:\n{report}");
}

fn text_of(out: &Output) -> String {
    text(out)
}

/// The lines of README.md's fenced block marked `<!-- operator-test: NAME -->`.
fn readme_block(name: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let marker = format!("<!-- operator-test: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    assert_eq!(
        lines.next(),
        Some("```sh"),
        "{marker} must precede a ```sh block"
    );
    lines
        .take_while(|l| *l != "```")
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Replaces `from` in `line`, which must contain it: the README and the test cannot drift.
fn substitute(line: &str, from: &str, to: &str) -> String {
    assert!(
        line.contains(from),
        "README line {line:?} no longer has {from:?}"
    );
    line.replace(from, to)
}

impl Systemd {
    /// One README line as root in a shell inside the namespace, in `dir`. `sudo` may not
    /// exist there: it runs its arguments as they are (this is root already).
    fn operator(&self, dir: &str, line: &str) -> Output {
        let script = format!("set -eo pipefail\nsudo() {{ \"$@\"; }}\ncd {dir}\n{line}\n");
        self.run(&["/bin/bash", "-c", &script])
    }

    fn operator_ok(&self, dir: &str, line: &str) -> String {
        let out = self.operator(dir, line);
        assert!(out.status.success(), "README: {line}\n{}", text(&out));
        text(&out)
    }
}

/// README's configure and start blocks, with an operator's values for config/inode.toml:
/// the secrets' contents and, for `sudoedit`, base_url and client_id. Returns once the service
/// has polled with a token from the password grant.
fn configure_and_start(sd: &Systemd, sim: &Sim, opts: &SimOptions) {
    let (client_id, secret, password) = (&opts.client_id, &opts.client_secret, &opts.password);
    let mut edits = 0;
    for line in readme_block("configure") {
        let line = if line.contains("'the-client-secret'") {
            substitute(&line, "'the-client-secret'", &format!("'{secret}'"))
        } else if line.contains("'the-owner-password'") {
            substitute(&line, "'the-owner-password'", &format!("'{password}'"))
        } else if line.starts_with("sudoedit /etc/oauth-poller/config.toml") {
            edits += 1;
            format!(
                "sed -i -e 's|https://inode.smatstraffic.com/api/|{}|' -e 's|YOUR-CLIENT-ID|{client_id}|' /etc/oauth-poller/config.toml",
                sim.base_url()
            )
        } else {
            line
        };
        let out = sd.operator_ok("/srv/home", &line);
        if line.contains(" check") {
            assert!(out.contains("OK (1 account(s), 2 endpoint(s))"), "{out}");
        }
    }
    assert_eq!(edits, 1, "configure edits the configuration once");
    // The secrets are root's alone.
    let mode = sd.ok(&[
        "stat",
        "-c",
        "%a",
        "/etc/oauth-poller/credentials/inode-password",
    ]);
    assert_eq!(mode.trim(), "600");

    for line in readme_block("start") {
        sd.operator_ok("/srv/home", &line);
    }
    assert_eq!(sd.show("ActiveState"), "active");
    assert_eq!(sd.show("UnitFileState"), "enabled");
    // The first token comes from the password grant: the secrets reached the service.
    sd.wait_journal(
        "poll account=inode endpoint=links status=200",
        1,
        Duration::from_secs(20),
    );
    assert_eq!(
        sim.stats()["token_requests"]["by_grant"]["password"],
        1,
        "{}",
        sim.stats()
    );
}

/// The operator's first hour, exactly as README.md says it: every command of its blocks
/// install-by-hand, configure, start, inspect, seed and reload-stop, run literally as root
/// under a real systemd, with the shipped unit (its `LoadCredential=` working for real) and
/// the shipped config/inode.toml. The only changes are an operator's: the secrets' contents,
/// and the edits `sudoedit` stands for (base_url and client_id; then the interval).
#[test]
fn the_readme_operator_path_under_a_real_systemd() {
    use std::os::unix::fs::PermissionsExt;
    if !systemd_available() {
        return;
    }
    let sim = Sim::start(SimOptions::new(Profile::Inode));

    // /srv/repo: what a checkout has after `cargo build --release --locked` (the binary this
    // test run built); /srv/home: the operator's current directory.
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = dir.path().join("repo");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(repo.join("target/release")).unwrap();
    std::fs::copy(bin(), repo.join("target/release/oauth-poller")).unwrap();
    // Copies, not links: a checkout under /tmp is out of reach of the booted systemd, which
    // has a /tmp of its own.
    for d in ["deploy", "config"] {
        std::fs::create_dir(repo.join(d)).unwrap();
        for entry in std::fs::read_dir(manifest.join(d)).unwrap() {
            let from = entry.unwrap().path();
            std::fs::copy(&from, repo.join(d).join(from.file_name().unwrap())).unwrap();
        }
    }
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // For Systemd::events, the test's own look into the store.
    std::fs::copy(bin(), dir.path().join("oauth-poller")).unwrap();
    let sd = Systemd::boot(dir.path());

    for line in readme_block("install-by-hand") {
        if line.starts_with("cargo ") {
            // Built already: this test runs the binary of `cargo test --release`.
            assert!(line.starts_with("cargo build --release"), "{line}");
            continue;
        }
        sd.operator_ok("/srv/repo", &line);
    }

    configure_and_start(&sd, &sim, sim.sim.options());

    let mut seen = String::new();
    for line in readme_block("inspect") {
        let out = sd.operator_ok("/srv/home", &line);
        seen.push_str(&out);
        if line.contains("token inode --header") {
            assert!(out.starts_with("Authorization: Bearer "), "{line}: {out}");
        }
    }
    assert!(
        seen.contains("poll account=inode endpoint=links status=200"),
        "{seen}"
    );
    assert!(
        seen.contains("obtained"),
        "history shows the password grant:\n{seen}"
    );

    // Seeding while the service runs writes the service's store and leaves it usable to
    // the service (SQLite gives its -wal and -shm files the database's owner).
    write_public(&home.join("token.json"), &sim.sim.issue_seed(), 0o600);
    for line in readme_block("seed") {
        let out = sd.operator_ok("/srv/home", &line);
        assert!(
            out.contains("into /var/lib/oauth-poller/state.db"),
            "{line}: {out}"
        );
    }
    assert_eq!(sd.events("seeded"), 1);
    let owner = |f: &str| {
        sd.ok(&[
            "stat",
            "-c",
            "%u:%g",
            &format!("/var/lib/private/oauth-poller/{f}"),
        ])
        .trim()
        .to_string()
    };
    let db_owner = owner("state.db");
    assert_ne!(db_owner, "0:0", "the service's dynamic user owns its store");
    for f in ["state.db-wal", "state.db-shm"] {
        assert_eq!(owner(f), db_owner, "{f} after root wrote the store");
    }

    let mut edits = 0;
    for line in readme_block("reload-stop") {
        if line.starts_with("sudoedit /etc/oauth-poller/config.toml") {
            edits += 1;
            sd.operator_ok(
                "/srv/home",
                "sed -i 's|^interval = \"60s\"|interval = \"1s\"|' /etc/oauth-poller/config.toml",
            );
            continue;
        }
        let polls = sd.journal().matches("endpoint=links status=200").count();
        sd.operator_ok("/srv/home", &line);
        if line.contains("systemctl reload") {
            sd.wait_journal("configuration reloaded", 1, Duration::from_secs(10));
            // The service polls on, with the seeded token, writing the store root wrote.
            sd.wait_journal(
                "endpoint=links status=200",
                polls + 3,
                Duration::from_secs(10),
            );
            assert_eq!(sd.show("ActiveState"), "active");
        }
    }
    assert_eq!(edits, 1);
    assert_eq!(sd.show("ActiveState"), "inactive");
    assert!(sd.journal().contains("stopped"), "{}", sd.journal());
    let warnings = sd.warnings();
    // The daemon's own lines (systemd's about the unit, such as cgroup migration in this
    // namespace, are not the operator path's).
    let warnings: Vec<&str> = warnings
        .lines()
        .filter(|l| !l.starts_with("oauth-poller.service: "))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// `cargo`, without the variables `cargo test` set for this test binary (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, ...). Build scripts such as ring's rerun when those change, so with
/// them the build below would compile its dependencies again, and so would the next build
/// from a shell (CI's package step).
fn cargo_as_a_shell_runs_it(cargo: &str) -> Command {
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_test = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*name,
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
            );
        if set_by_cargo_test {
            command.env_remove(&*name);
        }
    }
    command
}

/// The .deb, installed as README's "Install" says (`apt install ./...deb`) inside the real
/// systemd (the host is untouched: /usr, /etc and /var/lib are overlays), then configured
/// and started as README says, and stopped. Its Depends must admit glibc 2.35 (Ubuntu 22.04).
/// The package's binary is built as `cargo deb` builds it, without the default `demo` feature
/// (release profile; README's `--profile dist` builds the same package optimized), and carries
/// no simulator.
#[test]
fn the_deb_installs_with_apt_and_its_unit_starts() {
    use std::os::unix::fs::PermissionsExt;
    if !systemd_available() {
        return;
    }
    if !require(Need::CargoDeb) {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let debian = dir.path().join("repo/target/debian");
    std::fs::create_dir_all(&debian).unwrap();
    std::fs::create_dir(dir.path().join("home")).unwrap();
    std::fs::copy(bin(), dir.path().join("oauth-poller")).unwrap();
    // Into a target directory of the test's own, so that this run's binary (with `demo`,
    // which other tests are running) stays as it is; the compiled dependencies come from this
    // run's target directory (Cargo's build-dir).
    let package_target = dir.path().join("repo/target");
    let build_dir = bin().parent().and_then(Path::parent).unwrap().to_path_buf();
    let out = cargo_as_a_shell_runs_it(&cargo)
        .args(["build", "--release", "--locked", "--no-default-features"])
        .env("CARGO_TARGET_DIR", &package_target)
        .env("CARGO_BUILD_BUILD_DIR", &build_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo build: {}", text(&out));
    let out = cargo_as_a_shell_runs_it(&cargo)
        .args(["deb", "--no-build", "--output"])
        .arg(&debian)
        .env("CARGO_TARGET_DIR", &package_target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo deb: {}", text(&out));
    let deb = std::fs::read_dir(&debian)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let unpacked = tempdir();
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg-deb -x: {}", text(&out));
    let packaged = std::fs::read(unpacked.path().join("usr/bin/oauth-poller")).unwrap();
    // The simulator's admin routes and one of its log messages (the same check as .ci/run's).
    for sim_only in ["/_sim/", "sim: fault triggered"] {
        assert!(
            !packaged
                .windows(sim_only.len())
                .any(|w| w == sim_only.as_bytes()),
            "the packaged binary carries the simulator: it contains {sim_only:?}"
        );
    }
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Depends")
        .output()
        .unwrap();
    let depends = String::from_utf8_lossy(&out.stdout).trim().to_string();
    for dep in depends.split(',').map(str::trim) {
        if let Some(v) = dep.strip_prefix("libc6 (>= ") {
            let v = v.trim_end_matches(')');
            let ok = Command::new("dpkg")
                .args(["--compare-versions", "2.35", "ge", v])
                .status()
                .unwrap()
                .success();
            assert!(ok, "Depends: {depends}: refuses glibc 2.35");
        }
    }

    let sim = Sim::start(SimOptions::new(Profile::Inode));
    let sd = Systemd::boot(dir.path());
    for line in readme_block("install-deb") {
        if line.starts_with("cargo ") {
            // Built above, from this run's release binary.
            assert!(
                line.starts_with("cargo install cargo-deb") || line.starts_with("cargo deb"),
                "{line}"
            );
            continue;
        }
        sd.operator_ok("/srv/repo", &line);
    }
    let status = sd.ok(&["dpkg-query", "-W", "-f", "${Status}", "oauth-poller"]);
    assert_eq!(status, "install ok installed");
    configure_and_start(&sd, &sim, sim.sim.options());
    let main = sd.show("ExecMainPID");
    let exe = sd.ok(&["readlink", &format!("/proc/{main}/exe")]);
    assert_eq!(
        exe.trim(),
        "/usr/bin/oauth-poller",
        "the packaged binary runs"
    );
    sd.operator_ok("/srv/home", "systemctl stop oauth-poller");
    assert_eq!(sd.show("ActiveState"), "inactive");
}
