//! `authorize` as a user runs it: codes that start with a dash, the code on stdin instead of
//! the command line, a listener that no stray redirect can end, `localhost` on both loopback
//! families, and PKCE by default.

use crate::config_builder::{Account, Config};
use crate::util::*;
use crate::vendors::{
    approve, free_port, http, listen, listen_for, oob_code, print_url, root, scinote_config, sim,
    write_config,
};
use oauth_poller_sim::{Profile, SimOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs the binary with `stdin` written to its standard input.
pub(crate) fn run_with_stdin(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("OAUTH_POLLER_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oauth-poller");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `authorize scinote` until the provider hands out a code that starts with `-` (about one
/// in 64: the codes are URL-safe base64). The newest printed URL's verifier is stored.
fn dash_code(config: &Path) -> String {
    for _ in 0..2000 {
        let code = oob_code(&print_url(config, "scinote"));
        if code.starts_with('-') {
            return code;
        }
    }
    panic!("no code starting with '-' in 2000 authorizations");
}

fn obtained(db: &Path) -> i64 {
    query_i64(
        db,
        "SELECT COUNT(*) FROM token_events WHERE event = 'obtained'",
    )
}

/// Issue 16 item 1 and audit item 6: a code that starts with `-` is accepted after `--code`
/// and on stdin (`--code -`), and neither way puts it in what the process prints.
#[test]
fn code_starting_with_a_dash_on_the_command_line_and_on_stdin() {
    let sim = sim(Profile::Scinote, 60);
    let dir = tempdir();
    let config = scinote_config(&sim, dir.path(), None);
    let db = dir.path().join("state.db");

    let code = dash_code(&config);
    let out = run(Some(&config), &["authorize", "scinote", "--code", &code]);
    assert!(out.status.success(), "--code {code:.2}...: {}", text(&out));
    assert!(!text(&out).contains(&code), "the code was printed");
    assert_eq!(obtained(&db), 1);

    let code = dash_code(&config);
    let out = run_with_stdin(
        &config,
        &["authorize", "scinote", "--code", "-"],
        &format!("{code}\n"),
    );
    assert!(out.status.success(), "--code - : {}", text(&out));
    assert!(text(&out).contains("authorized account `scinote`"));
    assert!(!text(&out).contains(&code), "the code was printed");
    assert_eq!(obtained(&db), 2);
    assert_eq!(sim.stats()["token_requests"]["by_outcome"]["ok"], 2);
}

/// `--code -` with nothing on stdin is bad input (exit 2, naming stdin and the option), and
/// changes nothing.
#[test]
fn code_from_empty_stdin_is_bad_input() {
    let sim = sim(Profile::Scinote, 60);
    let dir = tempdir();
    let config = scinote_config(&sim, dir.path(), None);
    let db = dir.path().join("state.db");
    print_url(&config, "scinote");
    let before = dump(&db);
    let out = run_with_stdin(&config, &["authorize", "scinote", "--code", "-"], "\n  \n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("<stdin>: key `--code`") && text(&out).contains("read no code"),
        "{}",
        text(&out)
    );
    assert_eq!(dump(&db), before);
    assert_eq!(sim.stats()["token_requests"]["total"], 0);
}

/// `authorize` suggests stdin, not the command line, for the code.
#[test]
fn authorize_suggests_the_code_on_stdin() {
    let sim = sim(Profile::Scinote, 60);
    let dir = tempdir();
    let config = scinote_config(&sim, dir.path(), None);
    let out = run(Some(&config), &["authorize", "scinote"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oauth-poller authorize scinote --code -\n")
            || err
                .trim_end()
                .ends_with("oauth-poller authorize scinote --code -"),
        "{err}"
    );
    assert!(!err.contains("--code '"), "{err}");
}

fn highq_config(
    sim: &crate::util::Sim,
    dir: &Path,
    redirect_host: &str,
    port: u16,
) -> std::path::PathBuf {
    write_config(
        dir,
        &Config::new(&dir.join("state.db"))
            .account(Account::highq(&root(sim)).oauth2(
                "redirect_uri",
                format!("http://{redirect_host}:{port}/callback"),
            ))
            .toml(),
    )
}

/// Audit item 12: a redirect with another `state` (any local user can send one) gets an
/// error page and is ignored; the real redirect still completes the flow.
#[test]
fn listen_ignores_a_redirect_with_another_state() {
    let sim = sim(Profile::Highq, 60);
    let dir = tempdir();
    let config = highq_config(&sim, dir.path(), "127.0.0.1", free_port());
    let db = dir.path().join("state.db");

    let mut l = listen(&config, "highq");
    let redirect = approve(&l.url);
    let forged = redirect.replace("state=", "state=forged");
    let page = http("GET", &forged, &[], None);
    assert_eq!(page.status, 400);
    assert!(page.body.contains("does not match"), "{}", page.body);
    let denied_forged = format!(
        "{}?error=access_denied&state=forged",
        redirect.split('?').next().unwrap()
    );
    assert_eq!(http("GET", &denied_forged, &[], None).status, 400);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        l.child.try_wait().unwrap().is_none(),
        "the listener gave up after a forged redirect"
    );
    let done = http("GET", &redirect, &[], None);
    assert_eq!(done.status, 200, "{}", done.body);
    let (code, out) = l.finish();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ignored a redirect whose state does not match"),
        "{out}"
    );
    assert_eq!(obtained(&db), 1);
    assert_eq!(sim.stats()["token_requests"]["total"], 1);
}

/// After only forged redirects, the timeout says how many were ignored; nothing is stored.
#[test]
fn listen_times_out_after_ignored_redirects() {
    let sim = sim(Profile::Highq, 60);
    let dir = tempdir();
    let config = highq_config(&sim, dir.path(), "127.0.0.1", free_port());
    let l = listen_for(&config, "highq", 2);
    let redirect = approve(&l.url);
    let forged = redirect.replace("state=", "state=forged");
    assert_eq!(http("GET", &forged, &[], None).status, 400);
    let (code, out) = l.finish();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("within 2s") && out.contains("1 redirect(s) with another state were ignored"),
        "{out}"
    );
    assert_eq!(
        query_i64(&dir.path().join("state.db"), "SELECT COUNT(*) FROM tokens"),
        0
    );
}

/// Audit item 12: `localhost` in the redirect URI is bound on 127.0.0.1 and ::1, whichever
/// the browser resolves it to.
#[test]
fn listen_on_localhost_answers_on_both_loopback_families() {
    if !require(Need::Ipv6Loopback) {
        return;
    }
    let mut opts = SimOptions::new(Profile::Highq);
    opts.redirect_uris
        .push("http://localhost:8765/callback".to_string());
    let sim = crate::util::Sim::start(opts);
    let dir = tempdir();
    let port = free_port();
    let config = highq_config(&sim, dir.path(), "localhost", port);

    // A browser that resolved localhost to ::1.
    let l = listen(&config, "highq");
    let redirect = approve(&l.url);
    assert!(
        redirect.starts_with(&format!("http://localhost:{port}/")),
        "{redirect}"
    );
    let v6 = redirect.replace("localhost", "[::1]");
    let done = http("GET", &v6, &[], None);
    assert_eq!(done.status, 200, "{}", done.body);
    let (code, out) = l.finish();
    assert_eq!(code, 0, "{out}");

    // And one that resolved it to 127.0.0.1.
    let l = listen(&config, "highq");
    let redirect = approve(&l.url).replace("localhost", "127.0.0.1");
    let done = http("GET", &redirect, &[], None);
    assert_eq!(done.status, 200, "{}", done.body);
    let (code, out) = l.finish();
    assert_eq!(code, 0, "{out}");
    assert_eq!(obtained(&dir.path().join("state.db")), 2);
}

/// Audit item 12: without `pkce` in the configuration, the authorization URL carries a
/// PKCE challenge (the code exchange its verifier); `pkce = false` still turns it off.
#[test]
fn pkce_is_on_by_default() {
    let sim = sim(Profile::Highq, 60);
    let dir = tempdir();
    let config = highq_config(&sim, dir.path(), "127.0.0.1", free_port());
    let url = print_url(&config, "highq");
    assert!(
        url.contains("code_challenge=") && url.contains("code_challenge_method=S256"),
        "{url}"
    );
    let redirect = approve(&url);
    let out = run_with_stdin(&config, &["authorize", "highq", "--code", "-"], &redirect);
    assert!(out.status.success(), "{}", text(&out));

    let text_off = std::fs::read_to_string(&config)
        .unwrap()
        .replace("redirect_uri =", "pkce = false\nredirect_uri =");
    write_file(&config, &text_off);
    let url = print_url(&config, "highq");
    assert!(!url.contains("code_challenge"), "{url}");
}

/// `authorize scinote` with a terminal for stdin and stdout (`script` gives it one);
/// `answer` turns the printed URL into what the person types. None when there is no `script`.
fn authorize_at_a_terminal(
    config: &Path,
    answer: impl FnOnce(&str) -> String,
) -> Option<(std::process::ExitStatus, String)> {
    use std::io::{BufRead, BufReader};
    if !require(Need::Script) {
        return None;
    }
    let command = format!(
        "exec {} --config {} authorize scinote",
        bin().display(),
        config.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no URL: {seen}");
        seen.push_str(&line);
        if line.trim_start().starts_with("http") {
            break line.trim().to_string();
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", answer(&url)).unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    let status = child.wait().unwrap();
    drop(stdin);
    Some((status, format!("{seen}{rest}")))
}

/// Audit item 6: at a terminal, `authorize ACCOUNT` asks for the code after printing the URL,
/// so that it never has to go on a command line; just Enter leaves it for later.
#[test]
fn authorize_at_a_terminal_asks_for_the_code() {
    let sim = sim(Profile::Scinote, 60);
    let dir = tempdir();
    let config = scinote_config(&sim, dir.path(), None);
    let db = dir.path().join("state.db");
    let Some((status, all)) = authorize_at_a_terminal(&config, oob_code) else {
        return;
    };
    assert!(status.success(), "{all}");
    assert!(all.contains("Paste the authorization code"), "{all}");
    assert!(all.contains("authorized account `scinote`"), "{all}");
    assert_eq!(obtained(&db), 1);

    let Some((status, all)) = authorize_at_a_terminal(&config, |_| String::new()) else {
        return;
    };
    assert!(status.success(), "{all}");
    assert!(
        all.contains("Nothing pasted") && all.contains("--code -"),
        "{all}"
    );
    assert_eq!(obtained(&db), 1);
    assert_eq!(sim.stats()["token_requests"]["total"], 1);
}

/// Issue 16 item 1, for paths: `--config`, `--database` and `seed`'s FILE take values that
/// start with `-` (a relative path such as `-prod.toml`).
#[test]
fn paths_starting_with_a_dash_are_accepted() {
    let sim = sim(Profile::Scinote, 60);
    let dir = tempdir();
    let config = scinote_config(&sim, dir.path(), None);
    std::fs::rename(&config, dir.path().join("-scinote.toml")).unwrap();
    write_file(&dir.path().join("-seed.json"), &sim.sim.issue_seed());
    let out = Command::new(bin())
        .current_dir(dir.path())
        .args(["--config", "-scinote.toml", "--database", "-state.db"])
        .args(["seed", "scinote", "-seed.json"])
        .env_remove("OAUTH_POLLER_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        query_i64(
            &dir.path().join("-state.db"),
            "SELECT COUNT(*) FROM token_events WHERE event = 'seeded'"
        ),
        1
    );
}
