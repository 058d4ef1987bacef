//! Issue 13's refresh, network and shutdown findings, each reproduced against the real
//! binary: a refresh expiry in the past, a token endpoint answering a redirect or a WAF page,
//! absurd `expires_in` values, a local proxy, a hanging token endpoint while an operator
//! seeds, a journal whose commit fails, and a stop during a refresh.

use crate::config_builder::{Account, Config, Endpoint};
use crate::lifecycle::setup;
use crate::secrets::{leaks, secrets_of};
use crate::util::*;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback HTTP server answering each request (head and body as text) with `respond`,
/// one thread per connection, and keeping every request.
struct Scripted {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn start(respond: impl Fn(&str) -> String + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, respond) = (seen.clone(), Arc::new(respond));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (log, respond) = (log.clone(), respond.clone());
                std::thread::spawn(move || serve_one(stream, &log, &*respond));
            }
        });
        Scripted { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, start: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(start))
            .count()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

fn serve_one(
    mut stream: std::net::TcpStream,
    log: &Mutex<Vec<String>>,
    respond: &dyn Fn(&str) -> String,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let head = request.text();
        log.lock().unwrap().push(head.clone());
        let answer = respond(&head);
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn json(body: &str) -> String {
    answer("200 OK", "Content-Type: application/json\r\n", body)
}

/// A configuration with one OAuth2 account whose token endpoint and API are `server`.
fn scripted_config(dir: &Path, server: &Scripted, seed: &str, interval: &str) -> PathBuf {
    let seed_file = dir.join("seed.json");
    write_file(&seed_file, seed);
    let config = dir.join("config.toml");
    write_file(
        &config,
        &Config::polling(&dir.join("state.db"), interval, "3s")
            .account(
                Account::new("a", &server.url())
                    .seed_file(&seed_file)
                    .set("refresh_margin", "1s")
                    .oauth2("token_url", format!("{}token", server.url()))
                    .oauth2("client_id", "id")
                    .oauth2("client_secret", "SECRET-client-0123456789")
                    .endpoint(Endpoint::new("things", "things")),
            )
            .toml(),
    );
    config
}

/// `scripted_config` for `server` in a new directory, seeded with refresh token
/// `RT-seed-0123456789`: (dir, config).
fn seeded_scripted(server: &Scripted, interval: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let config = scripted_config(
        dir.path(),
        server,
        r#"{"refresh_token":"RT-seed-0123456789"}"#,
        interval,
    );
    (dir, config)
}

fn token_state(db: &Path, account: &str) -> String {
    db_conn(db)
        .query_row(
            "SELECT state FROM tokens WHERE account = ?1",
            [account],
            |r| r.get(0),
        )
        .expect("token row")
}

fn db_conn(db: &Path) -> rusqlite::Connection {
    crate::util::db(db)
}

/// Item 4: a local refresh expiry in the past (a clock that jumped forward) does not stop
/// the daemon presenting the refresh token; only the provider's `invalid_grant` does.
#[test]
fn a_refresh_expiry_in_the_past_still_tries_the_refresh_token() {
    let s = setup(600, "60s", "refresh_token", "");
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let past = oauth_poller::now() - 3600;
    db_conn(&s.db)
        .execute(
            "UPDATE tokens SET access_expires_at = ?1, refresh_expires_at = ?1",
            [past],
        )
        .unwrap();
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.sim.stats()["refreshes"], 1, "{}", s.sim.stats());
    assert_eq!(token_state(&s.db, "inode"), "ok");
}

/// Item 4: a 3xx, or a 4xx without an OAuth error body (a WAF's HTML page), from the token
/// endpoint is temporary: the account keeps its refresh token and its `ok` state, and the
/// next refresh that gets through works.
#[test]
fn a_redirect_or_a_waf_page_from_the_token_endpoint_is_temporary() {
    let replies = Arc::new(Mutex::new(vec![
        answer("302 Found", "Location: https://login.example/\r\n", ""),
        answer(
            "403 Forbidden",
            "Content-Type: text/html\r\n",
            "<html><body>Request blocked by the web application firewall</body></html>",
        ),
        answer("401 Unauthorized", "", ""),
    ]));
    let next = replies.clone();
    let server = Scripted::start(move |req| {
        if req.starts_with("POST /token") {
            match next.lock().unwrap().pop() {
                Some(reply) => reply,
                None => json(
                    r#"{"access_token":"AT-good-0123456789","expires_in":3600,"refresh_token":"RT-next-0123456789"}"#,
                ),
            }
        } else {
            json("[1]")
        }
    });
    let (dir, config) = seeded_scripted(&server, "60s");
    let db = dir.path().join("state.db");
    for round in 0..3 {
        let out = run(Some(&config), &["token", "a"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "round {round}: {t}");
        assert_eq!(token_state(&db, "a"), "ok", "round {round}: {t}");
        assert_eq!(
            stored_refresh_token(&db, "a").as_deref(),
            Some("RT-seed-0123456789")
        );
        // The backoff of one process does not outlive it.
    }
    let out = run(Some(&config), &["token", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "AT-good-0123456789"
    );
    assert_eq!(server.count("POST /token"), 4, "{:?}", server.requests());
}

/// Item 10: `expires_in` of 0 or of i64::MAX neither overflows nor refreshes on every poll.
#[test]
fn absurd_expires_in_values_do_not_refresh_on_every_poll() {
    for expires_in in ["9223372036854775807", "\"9223372036854775807\"", "0"] {
        let body = format!(
            r#"{{"access_token":"AT-0123456789abcdef","expires_in":{expires_in},"refresh_token":"RT-0123456789abcdef"}}"#
        );
        let server = Scripted::start(move |req| {
            if req.starts_with("POST /token") {
                json(&body)
            } else {
                json("[1]")
            }
        });
        let (dir, config) = seeded_scripted(&server, "1s");
        let d = Daemon::start(&config, &[]);
        let db = dir.path().join("state.db");
        d.wait_polls(&db, Polls::all(), 5, Duration::from_secs(15));
        drop(d);
        assert_eq!(
            server.count("POST /token"),
            1,
            "expires_in {expires_in}: one refresh for five polls, got {:?}",
            server.requests()
        );
        let db = dir.path().join("state.db");
        let expires = query_i64(&db, "SELECT COALESCE(access_expires_at, -1) FROM tokens");
        assert!(
            expires == -1 || expires > oauth_poller::now(),
            "expires_in {expires_in}: stored expiry {expires}"
        );
    }
}

/// Item 7: `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` never carry a request to a loopback
/// host: a local "proxy" sees neither the refresh token nor the bearer token.
#[test]
fn a_local_proxy_never_sees_loopback_traffic() {
    let s = setup(1, "60s", "refresh_token", "");
    let proxy = Scripted::start(|_| answer("502 Bad Gateway", "", ""));
    // The seed's access token lives 1 s: the poll below refreshes first.
    std::thread::sleep(Duration::from_millis(2100));
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&s.config)
        .arg("poll-once")
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("HTTPS_PROXY", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env("all_proxy", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let traffic = proxy.requests().join("\n");
    let found = leaks(&secrets_of(&s.sim), &[&traffic], &s.db);
    assert!(found.is_empty(), "secrets in proxy traffic: {found:?}");
    assert!(
        proxy.requests().is_empty(),
        "loopback traffic went through the proxy: {traffic}"
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.sim.stats()["refreshes"], 1, "{}", s.sim.stats());
}

/// Item 5: a hanging token endpoint (with a long `timeout`) holds no database lock: an
/// operator's `seed --force` completes at once and the other account keeps polling and
/// storing its rows.
#[test]
fn a_hanging_token_request_blocks_neither_seed_nor_other_accounts() {
    use oauth_poller_sim::{FaultKind, FaultSpec, FaultTarget, Profile, SimOptions};
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = Duration::from_secs(1);
    let s = crate::lifecycle::setup_with(opts, "1s", "refresh_token", "");
    let (sim, config, db) = (&s.sim, s.config.clone(), s.db.clone());
    let seed = s.dir.path().join("seed.json");
    let api = Scripted::start(|_| json("[1,2]"));
    // Another configuration than setup's: a second account, and a long timeout.
    write_file(
        &config,
        &Config::polling(&db, "1s", "100s")
            .account(
                Account::new("inode", &sim.base_url())
                    .seed_file(&seed)
                    .set("refresh_margin", "1s")
                    .oauth2("token_url", "oauth/token/")
                    .oauth2("client_id", "demo-client")
                    .oauth2("client_secret", "demo-client-secret")
                    .oauth2("client_auth", "body")
                    .endpoint(Endpoint::new("links", "v1/links/")),
            )
            .account(
                Account::new("other", &api.url())
                    .api_key("SECRET-api-key-0123456789")
                    .endpoint(Endpoint::new("things", "things")),
            )
            .toml(),
    );
    sim.sim
        .add_fault(FaultSpec::new(FaultTarget::Token, FaultKind::Hang));
    std::thread::sleep(Duration::from_millis(1100));
    let d = Daemon::start(&config, &["--log-level", "debug"]);
    d.wait_for("token request sent", 1, Duration::from_secs(15));
    let rows_before = query_i64(&db, "SELECT COUNT(*) FROM polls WHERE account = 'other'");

    let fresh = s.dir.path().join("fresh.json");
    write_file(&fresh, &sim.sim.issue_seed());
    let started = Instant::now();
    let mut child = std::process::Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["seed", "inode"])
        .arg(&fresh)
        .arg("--force")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "seed --force still blocked after 15 s by the refresh in flight; log:\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", text(&out));

    // The other account's polls go on, and their rows reach the database.
    let other = Polls {
        account: Some("other"),
        ..Polls::all()
    };
    d.wait_polls(&db, other, rows_before + 3, Duration::from_secs(10));
    assert!(!d.log().contains("database is locked"), "{}", d.log());
}

/// Item 14: a journal whose commit fails (a full disk, here a trigger that refuses the
/// write) stays in place, and the next attempt commits it.
#[test]
fn a_journal_whose_commit_fails_is_kept_for_the_next_attempt() {
    let s = setup(600, "1s", "refresh_token", "");
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let generation = query_i64(&s.db, "SELECT generation FROM tokens");
    // The refresh a dead process had made (the simulator also revokes the stored access
    // token, so the next poll gets a 401 and refreshes).
    let (fresh, journal) = crate::crash::refresh_behind_its_back(&s, generation);

    db_conn(&s.db)
        .execute_batch(
            "CREATE TRIGGER full_disk BEFORE INSERT ON tokens \
             BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END;",
        )
        .unwrap();
    let out = run(Some(&s.config), &["poll-once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        journal.exists(),
        "the journal was removed although its commit failed: {}",
        text(&out)
    );
    db_conn(&s.db)
        .execute_batch("DROP TRIGGER full_disk")
        .unwrap();
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    crate::crash::assert_recovered_from_the_journal(&s, &fresh, &journal);
}

/// Item 18: `systemctl stop` (SIGTERM) during a token request that would take the whole
/// 30 s timeout ends well within the unit's `TimeoutStopSec=10s`, keeping the stored
/// refresh token; an answer that arrives within the grace is committed before exit.
#[test]
fn a_stop_during_a_refresh_ends_within_the_stop_timeout() {
    use oauth_poller_sim::{FaultKind, FaultSpec, FaultTarget};
    for (fault, committed) in [
        (FaultSpec::new(FaultTarget::Token, FaultKind::Hang), false),
        (
            FaultSpec {
                delay_ms: 2500,
                ..FaultSpec::new(FaultTarget::Token, FaultKind::Delay)
            },
            true,
        ),
    ] {
        let s = setup(1, "1s", "refresh_token", "timeout = \"30s\"");
        s.sim.sim.add_fault(fault);
        std::thread::sleep(Duration::from_millis(1100));
        let mut d = Daemon::start(&s.config, &["--log-level", "debug"]);
        d.wait_for("token request sent", 1, Duration::from_secs(15));
        let seeded_rt = stored_refresh_token(&s.db, "inode");
        let stopped = Instant::now();
        d.signal(SIGTERM);
        let status = d.wait_exit(Duration::from_secs(30));
        let took = stopped.elapsed();
        assert!(status.success(), "{}", d.log());
        assert!(
            took < Duration::from_secs(9),
            "stopping took {took:?}, longer than TimeoutStopSec=10s allows; log:\n{}",
            d.log()
        );
        let stored = stored_refresh_token(&s.db, "inode");
        if committed {
            assert_ne!(
                stored,
                seeded_rt,
                "the answer was not committed: {}",
                d.log()
            );
            assert!(d.log().contains("token refreshed"), "{}", d.log());
        } else {
            assert_eq!(stored, seeded_rt);
            assert!(d.log().contains("abandoned at shutdown"), "{}", d.log());
        }
        assert!(
            !PathBuf::from(format!("{}-pending-inode", s.db.display())).exists(),
            "{}",
            d.log()
        );
    }
}

/// The value of the metric line starting with `start`, if any.
fn metric(text: &str, start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Item 3: an API that answers 401 to every token, even one the provider has just issued,
/// does not rotate the refresh token on every poll: after the first fresh token is refused
/// the account backs off, says so once in the log, in `status` and in the metrics, and
/// recovers by itself when the API accepts its token again.
#[test]
fn an_api_refusing_fresh_tokens_backs_off_instead_of_rotating_every_poll() {
    use oauth_poller_sim::{FaultSpec, FaultTarget};
    let (s, port) = crate::metrics::setup_with_metrics(600);
    s.sim
        .sim
        .add_fault(FaultSpec::status(FaultTarget::Api, 401));
    let d = Daemon::start(&s.config, &[]);
    // Two endpoints every second for 8 s: 16 polls, each answered 401.
    d.wait_for("status=401", 16, Duration::from_secs(20));
    let refreshes = s.sim.stats()["refreshes"].as_i64().unwrap();
    assert_eq!(
        refreshes,
        1,
        "one refresh, then the backoff's first step (30 s); log:\n{}",
        d.log()
    );
    assert_eq!(
        d.count("the API refuses freshly refreshed tokens (401)"),
        1,
        "{}",
        d.log()
    );
    let metrics = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(
        metric(
            &metrics,
            "oauth_poller_api_refuses_fresh_tokens{account=\"inode\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let out = run(Some(&s.config), &["status"]);
    assert!(
        text(&out).contains("api: the API refuses freshly refreshed tokens"),
        "{}",
        text(&out)
    );

    // The API accepts the token again: no refresh needed, the backoff ends.
    s.sim.sim.clear_faults();
    d.wait_for(
        "the API accepts the token again",
        1,
        Duration::from_secs(10),
    );
    let ok = Polls::ok().count(&s.db);
    d.wait_polls(&s.db, Polls::ok(), ok + 2, Duration::from_secs(10));
    let metrics = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(
        metric(
            &metrics,
            "oauth_poller_api_refuses_fresh_tokens{account=\"inode\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    let out = run(Some(&s.config), &["status"]);
    assert!(!text(&out).contains("api: "), "{}", text(&out));
    assert_eq!(s.sim.stats()["refreshes"].as_i64().unwrap(), 1);
    drop(d);
}
