//! Every vendor of docs/vendors.md, set up as its document does: the real binary through
//! that vendor's bootstrap (a seed file or `authorize`), then at least two access-token
//! expiries against its simulator profile: every poll successful, and the stored refresh
//! token the server's current one. And `authorize --listen` against django-oauth-toolkit's
//! authorization-code flow with PKCE, driven headlessly (log in, approve, follow the
//! redirect).

use crate::config_builder::{path, Account, Config, Endpoint};
use crate::util::*;
use oauth_poller_sim::{Profile, SimOptions};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---- a minimal HTTP client and browser --------------------------------------------------

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> Resp {
    let u = url::Url::parse(url).expect("URL");
    let host = format!(
        "{}:{}",
        u.host_str().unwrap(),
        u.port_or_known_default().unwrap()
    );
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let mut s = std::net::TcpStream::connect(&host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {url}: no HTTP response: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The redirect target of a 3xx answer, made absolute.
pub(crate) fn location(base: &str, r: &Resp) -> String {
    assert!(
        (300..400).contains(&r.status),
        "expected a redirect, got {}: {}",
        r.status,
        r.body
    );
    let loc = r.header("location").expect("Location header");
    url::Url::parse(base)
        .unwrap()
        .join(loc)
        .unwrap()
        .to_string()
}

/// Cookies across requests, as a browser keeps them (one host: loopback test servers).
#[derive(Default)]
pub(crate) struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    pub(crate) fn request(&mut self, method: &str, url: &str, body: Option<&str>) -> Resp {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let headers = vec![("Cookie", cookie)];
        let r = http(method, url, &headers, body);
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                if let Some((name, value)) = v.split(';').next().and_then(|c| c.split_once('=')) {
                    self.cookies
                        .insert(name.trim().to_string(), value.trim().to_string());
                }
            }
        }
        r
    }

    pub(crate) fn get(&mut self, url: &str) -> Resp {
        self.request("GET", url, None)
    }

    pub(crate) fn post_form(&mut self, url: &str, fields: &[(String, String)]) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        self.request("POST", url, Some(&body))
    }
}

/// The `<input name=... value=...>` fields of a page (not the submit buttons).
pub(crate) fn form_inputs(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!(" {name}=\"");
        let start = tag.find(&key)? + key.len();
        let end = tag[start..].find('"')? + start;
        Some(unescape(&tag[start..end]))
    };
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i..tag_end];
        if attr(tag, "type").as_deref() != Some("submit") {
            if let Some(name) = attr(tag, "name") {
                out.push((name, attr(tag, "value").unwrap_or_default()));
            }
        }
        rest = &rest[tag_end..];
    }
    out
}

pub(crate) fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

// ---- the binary ---------------------------------------------------------------------------

/// Kept here too: other modules import it from the vendors' helpers.
pub(crate) use crate::util::free_port;

pub(crate) fn sim(profile: Profile, ttl: u64) -> Sim {
    let mut o = SimOptions::new(profile);
    o.access_ttl = Duration::from_secs(ttl);
    Sim::start(o)
}

pub(crate) fn root(sim: &Sim) -> String {
    format!("http://{}", sim.addr)
}

pub(crate) fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    write_file(&path, text);
    path
}

/// `authorize ACCOUNT`: the URL it prints.
pub(crate) fn print_url(config: &Path, account: &str) -> String {
    let out = run(Some(config), &["authorize", account]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(stdout.starts_with("http"), "{}", text(&out));
    stdout
}

/// The simulator's consent page, approved: where it sends the browser.
pub(crate) fn approve(url: &str) -> String {
    let r = http("GET", &format!("{url}&approve=1"), &[], None);
    location(url, &r)
}

/// `authorize ACCOUNT --listen` as a process: the URL it printed, and the process.
pub(crate) struct Listening {
    pub(crate) child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    pub(crate) url: String,
}

pub(crate) fn listen(config: &Path, account: &str) -> Listening {
    listen_for(config, account, 60)
}

pub(crate) fn listen_for(config: &Path, account: &str, timeout: u64) -> Listening {
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args([
            "authorize",
            account,
            "--listen",
            "--timeout",
            &timeout.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    assert!(
        url.starts_with("http"),
        "authorize --listen printed {url:?}"
    );
    Listening {
        child,
        stdout,
        url: url.trim().to_string(),
    }
}

impl Listening {
    /// Waits for the process; returns (exit code, all it printed).
    pub(crate) fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "authorize --listen did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.stdout.read_to_string(&mut out).unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (status.code().unwrap_or(-1), out)
    }
}

/// Runs the daemon until it has refreshed `n` times and polled after that.
pub(crate) fn run_daemon_through_refreshes(config: &Path, n: i64) -> String {
    run_daemon_through_refreshes_within(config, n, Duration::from_secs(60))
}

/// The same, for providers slower to start: `n` refreshes within `timeout`. It watches the
/// store, not the log: the refresh events committed and the poll rows written.
pub(crate) fn run_daemon_through_refreshes_within(
    config: &Path,
    n: i64,
    timeout: Duration,
) -> String {
    let db = crate::config_builder::database(config);
    let mut d = Daemon::start(config, &[]);
    d.wait_events(&db, "refreshed", n, timeout);
    let polls = Polls::all().count(&db);
    d.wait_polls(&db, Polls::all(), polls + 2, Duration::from_secs(20));
    d.stop();
    d.log()
}

/// Every poll of the account succeeded, and there were at least `min`.
pub(crate) fn assert_polls_ok(db: &Path, account: &str, min: i64) {
    let n = query_i64(
        db,
        &format!("SELECT COUNT(*) FROM polls WHERE account = '{account}'"),
    );
    let bad = query_i64(
        db,
        &format!(
            "SELECT COUNT(*) FROM polls WHERE account = '{account}' AND (error IS NOT NULL OR status != 200)"
        ),
    );
    assert!(n >= min, "{account}: {n} polls, expected at least {min}");
    assert_eq!(bad, 0, "{account}: failed polls:\n{}", dump(db));
}

/// The stored refresh token is the one the server holds valid (and the only one).
pub(crate) fn assert_refresh_current(db: &Path, account: &str, valid: &serde_json::Value) {
    let stored = stored_refresh_token(db, account).expect("a stored refresh token");
    let valid: Vec<&str> = valid
        .as_array()
        .expect("valid_refresh_tokens")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(valid, vec![stored.as_str()], "{account}");
}

fn refreshes_in_log(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("token refreshed"))
        .count()
}

// ---- SciNote (Doorkeeper) -------------------------------------------------------------

/// The `scinote` account as SciNote's documentation sets it up (an out-of-band code, PKCE).
pub(crate) fn scinote_account(sim: &Sim) -> Account {
    Account::new("scinote", &format!("{}/", root(sim)))
        .set("refresh_margin", "1s")
        .oauth2("token_url", "oauth/token")
        .oauth2("authorize_url", "oauth/authorize")
        .oauth2("redirect_uri", "urn:ietf:wg:oauth:2.0:oob")
        .oauth2("client_id", "demo-client")
        .oauth2("client_secret", "demo-client-secret")
        .oauth2("client_auth", "body")
        .oauth2("pkce", true)
        .endpoint(Endpoint::new("projects", "api/v1/teams/1/projects"))
}

/// The code SciNote's out-of-band page shows for an approved authorization URL.
pub(crate) fn oob_code(url: &str) -> String {
    let page = http("GET", &approve(url), &[], None).body;
    page.split("<code id=\"authorization_code\">")
        .nth(1)
        .and_then(|r| r.split("</code>").next())
        .expect("the code on the page")
        .to_string()
}

pub(crate) fn scinote_config(sim: &Sim, dir: &Path, seed: Option<&Path>) -> PathBuf {
    let mut account = scinote_account(sim);
    if let Some(seed) = seed {
        account = account.seed_file(seed);
    }
    Config::polling(&dir.join("state.db"), "1s", "5s")
        .account(account)
        .write(&dir.join("config.toml"))
}

/// get_auth_code.py -> `authorize scinote`; the page shows the code; get_auth_tokens.py ->
/// `authorize scinote --code CODE`; then 2-hour tokens (here 3 s) rotate on every refresh.
#[test]
fn scinote_authorize_oob_code_then_two_expiries() {
    let sim = sim(Profile::Scinote, 3);
    let dir = tempdir();
    let config = scinote_config(&sim, dir.path(), None);
    let db = dir.path().join("state.db");

    let url = print_url(&config, "scinote");
    for part in [
        "response_type=code",
        "client_id=demo-client",
        "redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob",
        "code_challenge_method=S256",
        "state=",
    ] {
        assert!(url.contains(part), "{url} lacks {part}");
    }
    // The person approves; Doorkeeper shows the code on /oauth/authorize/native.
    let code = oob_code(&url);

    let out = run(Some(&config), &["authorize", "scinote", "--code", &code]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(&code), "the code was printed");
    assert!(
        text(&out).contains("authorized account `scinote`"),
        "{}",
        text(&out)
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM tokens WHERE obtained_by = 'authorization_code' AND state = 'ok'"
        ),
        1
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM token_events WHERE event = 'obtained'"
        ),
        1
    );
    // The pending request was used up: the same code again is refused (exit 1).
    let again = run(Some(&config), &["authorize", "scinote", "--code", &code]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    let log = run_daemon_through_refreshes(&config, 2);
    assert!(!log.contains(&code));
    assert_polls_ok(&db, "scinote", 3);
    assert_refresh_current(&db, "scinote", &sim.stats()["valid_refresh_tokens"]);
}

/// The settings.json that get_auth_tokens.py leaves behind, seeded.
#[test]
fn scinote_settings_json_seed_then_two_expiries() {
    let sim = sim(Profile::Scinote, 3);
    let dir = tempdir();
    let issued: serde_json::Value = serde_json::from_str(&sim.sim.issue_seed()).unwrap();
    let settings = serde_json::json!({
        "server_url": root(&sim),
        "api_uid": "demo-client",
        "api_secret": "demo-client-secret",
        "api_redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
        "authorization_code": "already-used",
        "access_token": issued["access_token"],
        "refresh_token": issued["refresh_token"],
        "access_token_created_at": issued["created_at"],
        "access_token_expires_in": issued["expires_in"],
    });
    let file = dir.path().join("settings.json");
    write_file(&file, &serde_json::to_string_pretty(&settings).unwrap());
    let config = scinote_config(&sim, dir.path(), None);
    let db = dir.path().join("state.db");
    let out = run(Some(&config), &["seed", "scinote", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    run_daemon_through_refreshes(&config, 2);
    assert_polls_ok(&db, "scinote", 3);
    assert_refresh_current(&db, "scinote", &sim.stats()["valid_refresh_tokens"]);
}

// ---- the Ruqqus-style bare-token site ----------------------------------------------------

/// `authorize --listen` takes the access token from the redirect; `Authorization: <token>`;
/// no refresh token, so a 401 puts the account into needs_reauth with the fix named, and a
/// new `authorize` (while the daemon runs) brings it back. Twice.
#[test]
fn bare_token_listen_then_401_needs_reauth_and_reauthorize() {
    let sim = Sim::start(SimOptions::new(Profile::BareToken));
    let dir = tempdir();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &Config::polling(&dir.path().join("state.db"), "1s", "5s")
            .account(
                Account::new("bare-token", &format!("{}/", root(&sim)))
                    .set("header_scheme", "")
                    .oauth2("authorize_url", "authorize/")
                    .oauth2("client_id", "demo-client")
                    .oauth2("client_auth", "none")
                    .oauth2("redirect_uri", format!("http://127.0.0.1:{port}/callback"))
                    .endpoint(Endpoint::new("frontpage", "").query("sort", "comments"))
                    .endpoint(Endpoint::new("unread", "unread")),
            )
            .toml(),
    );
    let db = dir.path().join("state.db");
    let authorize = || {
        let l = listen(&config, "bare-token");
        assert!(l.url.contains("response_type=token"), "{}", l.url);
        let redirect = approve(&l.url);
        assert!(redirect.starts_with(&format!("http://127.0.0.1:{port}/callback?access_token=")));
        let page = http("GET", &redirect, &[], None);
        assert_eq!(page.status, 200, "{}", page.body);
        let (code, out) = l.finish();
        assert_eq!(code, 0, "{out}");
        let token = redirect
            .split("access_token=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string();
        assert!(!out.contains(&token), "the token was printed: {out}");
    };

    authorize();
    let d = Daemon::start(&config, &[]);
    for round in 1..=2 {
        d.wait_for(
            " poll account=bare-token",
            4 * round,
            Duration::from_secs(15),
        );
        http_post(&format!("{}/_sim/revoke", root(&sim)));
        d.wait_for("skipping polls", 2 * round, Duration::from_secs(15));
        let status = run(Some(&config), &["status"]);
        assert_eq!(status.status.code(), Some(1), "{}", text(&status));
        assert!(
            text(&status).contains("oauth-poller authorize bare-token"),
            "{}",
            text(&status)
        );
        authorize();
    }
    d.wait_polls(&db, Polls::all(), 10, Duration::from_secs(15));
    drop(d);
    let detail: String = crate::util::db(&db)
        .query_row(
            "SELECT detail FROM token_events WHERE event = 'needs_reauth' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.contains("there is no refresh token"), "{detail}");
    assert!(
        detail.contains("oauth-poller authorize bare-token"),
        "{detail}"
    );
    assert_polls_ok(&db, "bare-token", 10);
    assert_eq!(stored_refresh_token(&db, "bare-token"), None);
    assert_eq!(sim.stats()["valid_refresh_tokens"], serde_json::json!([]));
    // Every request carried the bare token: a "Bearer" prefix would have been a 401.
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM token_events WHERE event = 'obtained'"
        ),
        3
    );
}

/// The listener's refusals: the user denies, nobody comes. Each exits 1 with a clear message
/// and stores nothing. (A redirect with another state is ignored: `authorize.rs`.)
#[test]
fn authorize_listen_denied_and_timeout() {
    let sim = sim(Profile::Highq, 60);
    let dir = tempdir();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &Config::new(&dir.path().join("state.db"))
            .account(
                Account::highq(&root(&sim))
                    .oauth2("redirect_uri", format!("http://127.0.0.1:{port}/callback"))
                    .oauth2("pkce", true),
            )
            .toml(),
    );
    let db = dir.path().join("state.db");

    let l = listen(&config, "highq");
    let denied = location(
        &l.url,
        &http("GET", &format!("{}&deny=1", l.url), &[], None),
    );
    assert!(denied.contains("error=access_denied"), "{denied}");
    // Something else on the port first: a 404, and the listener keeps waiting.
    let other = http(
        "GET",
        &format!("http://127.0.0.1:{port}/favicon.ico"),
        &[],
        None,
    );
    assert_eq!(other.status, 404);
    let page = http("GET", &denied, &[], None);
    assert_eq!(page.status, 400);
    let (code, out) = l.finish();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("denied") && out.contains("error=access_denied"),
        "{out}"
    );

    let l = listen_for(&config, "highq", 1);
    let (code, out) = l.finish();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no redirect reached") && out.contains("within 1s"),
        "{out}"
    );

    assert_eq!(query_i64(&db, "SELECT COUNT(*) FROM tokens"), 0);
    assert_eq!(sim.stats()["token_requests"]["total"], 0);
}

// ---- Citesphere (Spring) ------------------------------------------------------------------

/// Every token-request parameter in the query string; token_type "bearer"; and a short
/// lifetime with the default margin (a tenth of it): a 10 s token is refreshed about every
/// 9 s, not before every poll.
#[test]
fn citesphere_authorize_query_token_requests_default_margin() {
    let sim = sim(Profile::Citesphere, 10);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        &Config::polling(&dir.path().join("state.db"), "1s", "5s")
            .account(
                Account::new("citesphere", &format!("{}/api/", root(&sim)))
                    .oauth2("token_url", "v1/oauth/token")
                    .oauth2("authorize_url", "oauth/authorize")
                    .oauth2("token_request", "query")
                    .oauth2("client_id", "OAUTHCLIENT007")
                    .oauth2("client_secret", "demo-client-secret")
                    .oauth2("client_auth", "body")
                    .oauth2("scope", "read")
                    .oauth2("redirect_uri", "http://127.0.0.1:8765/callback")
                    .oauth2("pkce", true)
                    .endpoint(Endpoint::new("groups", "v1/groups")),
            )
            .toml(),
    );
    let db = dir.path().join("state.db");
    // Nothing listens on the redirect URI: the person copies the whole address.
    let url = print_url(&config, "citesphere");
    let redirect = approve(&url);
    assert!(
        redirect.contains("code=") && redirect.contains("state="),
        "{redirect}"
    );
    let out = run(
        Some(&config),
        &["authorize", "citesphere", "--code", &redirect],
    );
    assert!(out.status.success(), "{}", text(&out));
    // A forged address (wrong state) is refused.
    let forged = redirect.replace("state=", "state=x");
    let out = run(
        Some(&config),
        &["authorize", "citesphere", "--code", &forged],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("state"), "{}", text(&out));

    let started = Instant::now();
    let log = run_daemon_through_refreshes(&config, 2);
    let secs = started.elapsed().as_secs() as i64;
    let stats = sim.stats();
    assert_eq!(
        stats["token_requests"]["by_grant"]["authorization_code"], 1,
        "{stats}"
    );
    assert_eq!(
        stats["token_requests"]["by_outcome"]["ok"], stats["token_requests"]["total"],
        "{stats}"
    );
    let refreshes = refreshes_in_log(&log) as i64;
    let polls = query_i64(&db, "SELECT COUNT(*) FROM polls");
    assert!(
        refreshes <= secs / 8 + 1 && polls >= 3 * refreshes,
        "{refreshes} refreshes, {polls} polls in {secs}s"
    );
    assert_eq!(
        crate::util::db(&db)
            .query_row("SELECT token_type FROM tokens", [], |r| r
                .get::<_, String>(0))
            .unwrap(),
        "bearer"
    );
    assert_polls_ok(&db, "citesphere", 10);
    assert_refresh_current(&db, "citesphere", &stats["valid_refresh_tokens"]);
}

// ---- HighQ Collaborate -------------------------------------------------------------------

/// The forum thread's [AUTH] INI, seeded; the refresh-token horizon in the warning and in
/// `status`.
#[test]
fn highq_ini_seed_refresh_expiry_in_status() {
    let sim = sim(Profile::Highq, 3);
    let dir = tempdir();
    let issued: serde_json::Value = serde_json::from_str(&sim.sim.issue_seed()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ini = dir.path().join("highq-seed.ini");
    write_file(
        &ini,
        &format!(
            "[AUTH]\r\naccess_token = {}\r\naccess_expiry = {}\r\nrefresh_token= {}\r\nrefresh_expiry = {}\r\ntoken_type = bearer\r\nuser = {}\r\nissued_at = {now}\r\n",
            issued["access_token"].as_str().unwrap(),
            issued["expires_in"],
            issued["refresh_token"].as_str().unwrap(),
            issued["refresh_expires_in"],
            issued["user"].as_str().unwrap(),
        ),
    );
    let config = write_config(
        dir.path(),
        &Config::polling(&dir.path().join("state.db"), "1s", "5s")
            .account(
                Account::highq(&root(&sim))
                    .seed_file(&ini)
                    .set("refresh_margin", "1s")
                    .set("refresh_warning", "60d")
                    .oauth2("client_auth", "body")
                    .oauth2("redirect_uri", "http://127.0.0.1:8765/callback"),
            )
            .toml(),
    );
    let db = dir.path().join("state.db");
    let log = run_daemon_through_refreshes(&config, 2);
    assert!(
        log.contains("the refresh token expires in 30d")
            && log.contains("oauth-poller authorize highq"),
        "{log}"
    );
    assert_polls_ok(&db, "highq", 3);
    assert_refresh_current(&db, "highq", &sim.stats()["valid_refresh_tokens"]);

    let out = run(Some(&config), &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("refresh token: expires in 30d")
            && text(&out).contains("a human must re-authorize"),
        "{}",
        text(&out)
    );
    let out = run(Some(&config), &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let at = v["accounts"][0]["refresh_expires_at"].as_i64().unwrap();
    let expected = now as i64 + issued["refresh_expires_in"].as_i64().unwrap();
    assert!(
        (at - expected).abs() <= 15,
        "refresh_expires_at {at}, expected about {expected}"
    );
}

// ---- iNode ---------------------------------------------------------------------------------

/// The API-key mode (`Authorization: Token <key>`) next to the password grant.
#[test]
fn inode_api_key_and_password_grant() {
    let sim = sim(Profile::Inode, 3);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        &Config::polling(&dir.path().join("state.db"), "1s", "5s")
            .account(Account::inode(&sim.base_url()).endpoint(Endpoint::inode_links()))
            .account(
                Account::inode_key(&sim.base_url(), "demo-api-key")
                    .endpoint(Endpoint::inode_devices()),
            )
            .toml(),
    );
    let db = dir.path().join("state.db");
    run_daemon_through_refreshes(&config, 2);
    assert_polls_ok(&db, "inode", 3);
    assert_polls_ok(&db, "inode-key", 3);
    assert_refresh_current(&db, "inode", &sim.stats()["valid_refresh_tokens"]);
    assert_eq!(sim.stats()["unauthorized"], 0);
}

// ---- django-oauth-toolkit: authorization code + PKCE, headless ----------------------------

#[test]
fn django_authorize_listen_pkce_then_two_refreshes() {
    if !require(Need::Django) {
        return;
    }
    let port = free_port();
    let dj = Django::start_with(3, &["--redirect-port", &port.to_string()]);
    let dir = tempdir();
    let secret = dir.path().join("client-secret");
    write_file(&secret, &format!("{}\n", dj.get("authcode_client_secret")));
    let config = write_config(
        dir.path(),
        &Config::polling(&dir.path().join("state.db"), "1s", "10s")
            .account(
                Account::new("inode", &dj.get("base_url"))
                    .set("refresh_margin", "1s")
                    .oauth2("token_url", "oauth/token/")
                    .oauth2("authorize_url", dj.get("authorize_url"))
                    .oauth2("client_id", dj.get("authcode_client_id"))
                    .oauth2("client_secret_file", path(&secret))
                    .oauth2("client_auth", "basic")
                    .oauth2("scope", "sync")
                    .oauth2("redirect_uri", dj.get("redirect_uri"))
                    .oauth2("pkce", true)
                    .endpoint(Endpoint::inode_links()),
            )
            .toml(),
    );
    let db = dir.path().join("state.db");
    let l = listen(&config, "inode");
    assert!(l.url.contains("code_challenge_method=S256"), "{}", l.url);

    // The browser: the authorize URL sends it to the login page; log in; approve.
    let mut b = Browser::default();
    let r = b.get(&l.url);
    assert!(location(&l.url, &r).contains("/accounts/login/"));
    let login = dj.get("login_url");
    let page = b.get(&login);
    assert_eq!(page.status, 200);
    let mut fields = form_inputs(&page.body);
    fields.retain(|(k, _)| k != "username" && k != "password");
    fields.push(("username".into(), dj.get("username")));
    fields.push(("password".into(), dj.get("password")));
    let r = b.post_form(&login, &fields);
    assert_eq!(r.status, 302, "login: {}", r.body);
    let consent = b.get(&l.url);
    assert_eq!(consent.status, 200, "{}", consent.body);
    let mut fields = form_inputs(&consent.body);
    assert!(
        fields.iter().any(|(k, _)| k == "code_challenge"),
        "{}",
        consent.body
    );
    fields.push(("allow".into(), "Authorize".into()));
    let r = b.post_form(&dj.get("authorize_url"), &fields);
    let redirect = location(&dj.get("authorize_url"), &r);
    assert!(redirect.starts_with(&dj.get("redirect_uri")), "{redirect}");
    let done = http("GET", &redirect, &[], None);
    assert_eq!(done.status, 200, "{}", done.body);
    let (code, out) = l.finish();
    assert_eq!(code, 0, "{out}");

    run_daemon_through_refreshes(&config, 2);
    assert_polls_ok(&db, "inode", 3);
    let state = dj.state();
    assert_eq!(state["token_requests"]["authorization_code"], 1, "{state}");
    assert_eq!(state["invalid_grant"], 0, "{state}");
    assert_refresh_current(&db, "inode", &state["valid_refresh_tokens"]);
}
