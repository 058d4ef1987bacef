//! Against the real software SciNote runs: Doorkeeper 5.5 in a Rails 6.1 app configured as
//! SciNote configures it (tests/doorkeeper_scinote/). The real binary goes through the
//! out-of-band bootstrap (sign in, consent, the code from the native page) and at least
//! three refreshes, and Doorkeeper's own token table is the judge.

use crate::authorize::run_with_stdin;
use crate::config_builder::{path, Account, Config, Endpoint};
use crate::util::*;
use crate::vendors::{
    assert_polls_ok, form_inputs, location, run_daemon_through_refreshes_within, write_config,
    Browser,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/doorkeeper_scinote/server.rb"
);

/// The Rails app with Doorkeeper, on a free loopback port.
struct Doorkeeper {
    child: Child,
    info: serde_json::Value,
    _dir: tempfile::TempDir,
}

impl Doorkeeper {
    /// None (after printing `skipped: <why>`) when Ruby, Rails, Doorkeeper, Puma or the
    /// SQLite driver is missing, except under CI, where that is a failure.
    fn start(access_ttl: u64, extra: &[&str]) -> Option<Doorkeeper> {
        if !require(Need::Doorkeeper) {
            return None;
        }
        let dir = tempdir();
        let mut child = Command::new("ruby")
            .arg(SERVER)
            .arg("--state-dir")
            .arg(dir.path())
            .args(["--access-ttl", &access_ttl.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ruby tests/doorkeeper_scinote/server.rb");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the launcher's JSON line");
        let info = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the Doorkeeper app printed {line:?}: {e}"));
        Some(Doorkeeper {
            child,
            info,
            _dir: dir,
        })
    }

    fn get(&self, key: &str) -> String {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}"))
            .to_string()
    }

    fn database(&self) -> PathBuf {
        PathBuf::from(self.get("database"))
    }
}

impl Drop for Doorkeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dk: &Doorkeeper, dir: &Path) -> PathBuf {
    let secret = dir.join("scinote-api-secret");
    write_file(&secret, &format!("{}\n", dk.get("client_secret")));
    write_config(
        dir,
        &Config::polling(&dir.join("state.db"), "1s", "10s")
            .account(
                Account::new("scinote", &dk.get("base_url"))
                    .set("refresh_margin", "1s")
                    .oauth2("token_url", "oauth/token")
                    .oauth2("authorize_url", "oauth/authorize")
                    .oauth2("redirect_uri", "urn:ietf:wg:oauth:2.0:oob")
                    .oauth2("client_id", dk.get("client_id"))
                    .oauth2("client_secret_file", path(&secret))
                    .oauth2("client_auth", "body")
                    .endpoint(Endpoint::new("projects", "api/v1/teams/1/projects")),
            )
            .toml(),
    )
}

/// A person in a browser: opens the URL `authorize` printed, signs in, approves, and reads
/// the code on Doorkeeper's native page.
fn consent(dk: &Doorkeeper, b: &mut Browser, url: &str) -> String {
    let r = b.get(url);
    if r.status != 200 {
        let next = location(url, &r);
        if next.contains("/oauth/authorize/native?code=") {
            // Approved before: Doorkeeper skips the consent page for an application the
            // user already holds a token for, and shows the code at once.
            return native_code(b, &next);
        }
        // Not signed in yet: Doorkeeper's resource_owner_authenticator sends us to sign in.
        let sign_in = next;
        assert!(sign_in.ends_with("/users/sign_in"), "{sign_in}");
        let page = b.get(&sign_in);
        assert_eq!(page.status, 200, "{}", page.body);
        let mut fields = form_inputs(&page.body);
        fields.retain(|(k, _)| k != "email" && k != "password");
        fields.push(("email".into(), dk.get("email")));
        fields.push(("password".into(), dk.get("password")));
        let r = b.post_form(&sign_in, &fields);
        assert_eq!(
            location(&sign_in, &r),
            url,
            "signed in, back to the consent page"
        );
    }
    let page = b.get(url);
    assert_eq!(page.status, 200, "the consent page: {}", page.body);
    // The first form approves (the second, with _method=delete, denies).
    let approve = page.body.split("<form").nth(1).expect("the approve form");
    let fields = form_inputs(approve);
    assert!(
        fields.iter().any(|(k, v)| k == "scope" && v == "public"),
        "default_scopes :public: {fields:?}"
    );
    let action = dk.get("authorize_url");
    let r = b.post_form(&action, &fields);
    let native = location(&action, &r);
    assert!(native.contains("/oauth/authorize/native?code="), "{native}");
    native_code(b, &native)
}

/// The code on Doorkeeper's out-of-band page.
fn native_code(b: &mut Browser, native: &str) -> String {
    let page = b.get(native);
    assert_eq!(page.status, 200);
    page.body
        .split("<code id=\"authorization_code\">")
        .nth(1)
        .and_then(|r| r.split("</code>").next())
        .expect("the code on the native page")
        .to_string()
}

fn print_url(config: &Path) -> String {
    let out = run(Some(config), &["authorize", "scinote"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issue 16: the out-of-band bootstrap against the real Doorkeeper (codes that start with
/// `-`, on the command line and on stdin), then at least three refreshes: every poll
/// succeeds, the stored tokens are Doorkeeper's newest live ones, and no refresh token is
/// presented twice (with SciNote's lazy rotation Doorkeeper would not refuse a reuse).
#[test]
fn scinote_doorkeeper_oob_bootstrap_and_three_refreshes() {
    const TTL: u64 = 4;
    let Some(dk) = Doorkeeper::start(TTL, &["--dash-codes"]) else {
        return;
    };
    let dir = tempdir();
    let config = config(&dk, dir.path());
    let db = dir.path().join("state.db");
    let mut browser = Browser::default();

    // The code on the command line (still supported), then, as the README says, on stdin.
    let url = print_url(&config);
    assert!(url.starts_with(&dk.get("authorize_url")), "{url}");
    let code = consent(&dk, &mut browser, &url);
    assert!(code.starts_with('-'), "{code:.3}...");
    let out = run(Some(&config), &["authorize", "scinote", "--code", &code]);
    assert!(out.status.success(), "{}", text(&out));
    let mut secrets = vec![code];

    let url = print_url(&config);
    let code = consent(&dk, &mut browser, &url);
    assert!(code.starts_with('-'), "{code:.3}...");
    let out = run_with_stdin(
        &config,
        &["authorize", "scinote", "--code", "-"],
        &format!("{code}\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("authorized account `scinote`"));
    secrets.push(code);

    let log = run_daemon_through_refreshes_within(&config, 3, Duration::from_secs(90));
    assert_polls_ok(&db, "scinote", 6);

    let dk_db = crate::util::db(&dk.database());
    let (token, refresh, revoked): (String, String, Option<String>) = dk_db
        .query_row(
            "SELECT token, refresh_token, revoked_at FROM oauth_access_tokens ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(revoked.is_none(), "Doorkeeper's newest token is live");
    let stored_access: String = crate::util::db(&db)
        .query_row(
            "SELECT access_token FROM tokens WHERE account = 'scinote'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored_access, token,
        "the stored access token is Doorkeeper's newest"
    );
    assert_eq!(
        stored_refresh_token(&db, "scinote").as_deref(),
        Some(refresh.as_str()),
        "the stored refresh token is Doorkeeper's newest"
    );

    let count = |sql: &str| -> i64 { dk_db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let refreshes = count("SELECT COUNT(*) FROM token_requests WHERE grant_type = 'refresh_token'");
    assert!(refreshes >= 3, "{refreshes} refreshes");
    assert_eq!(
        count("SELECT COUNT(*) FROM token_requests WHERE status <> 200"),
        0,
        "Doorkeeper refused a token request"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM (SELECT refresh_token FROM token_requests \
             WHERE grant_type = 'refresh_token' GROUP BY refresh_token HAVING COUNT(*) > 1)"
        ),
        0,
        "a refresh token was presented twice"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM token_requests WHERE grant_type = 'authorization_code'"),
        2
    );
    // Every refresh token the daemon presented was one Doorkeeper had issued to it.
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM token_requests WHERE grant_type = 'refresh_token' \
             AND refresh_token NOT IN (SELECT refresh_token FROM oauth_access_tokens)"
        ),
        0
    );
    assert_eq!(
        crate::util::query_i64(
            &db,
            "SELECT COUNT(*) FROM token_events WHERE account = 'scinote' AND event = 'refreshed'"
        ),
        refreshes,
        "every refresh Doorkeeper answered is committed"
    );

    let mut stmt = dk_db
        .prepare("SELECT token, refresh_token FROM oauth_access_tokens")
        .unwrap();
    let issued: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    secrets.extend(issued.into_iter().flat_map(|(a, r)| [a, r]));
    secrets.push(dk.get("client_secret"));
    println!(
        "doorkeeper: {} polls, {refreshes} refreshes, {} access tokens issued",
        crate::util::query_i64(&db, "SELECT COUNT(*) FROM polls"),
        count("SELECT COUNT(*) FROM oauth_access_tokens")
    );
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}
