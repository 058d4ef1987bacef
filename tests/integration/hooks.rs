//! `on_event` and `on_change` hooks: what they receive, and that they never hold up polls.

use crate::lifecycle::setup;
use crate::util::*;
use std::time::{Duration, Instant};

fn wait_file(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never had {needle:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hooks_receive_events_and_changed_bodies_without_blocking_polls() {
    let s = setup(600, "1s", "refresh_token", "");
    let dir = s.dir.path();
    let events = dir.join("events.log");
    let on_event = format!(
        r#"on_event = ["/bin/sh", "-c", "env | grep ^OAUTH_POLLER_ | sort >> {}; echo --- >> {}"]"#,
        events.display(),
        events.display()
    );
    edit_config(&s.config, "[daemon]\n", &format!("[daemon]\n{on_event}\n"));
    // links: a hook that writes the body; devices: a hook that hangs (it must not matter).
    edit_config(
        &s.config,
        "name = \"links\"\npath = \"v1/links/\"",
        &format!(
            "name = \"links\"\npath = \"v1/links/\"\non_change = [\"/bin/sh\", \"-c\", \"cat > {}/changed-$OAUTH_POLLER_ENDPOINT.json\"]",
            dir.display()
        ),
    );
    edit_config(
        &s.config,
        "name = \"devices\"\npath = \"v1/devices/\"",
        "name = \"devices\"\npath = \"v1/devices/\"\non_change = [\"/bin/sleep\", \"100\"]",
    );
    let d = Daemon::start(&s.config, &[]);

    let body = wait_file(&dir.join("changed-links.json"), "]");
    assert!(body.starts_with('['), "the new body on stdin: {body}");
    let devices_ok = Polls {
        endpoint: Some("devices"),
        ..Polls::ok()
    };
    d.wait_polls(&s.db, devices_ok, 4, Duration::from_secs(10));

    http_post(&format!(
        "http://{}/_sim/fault?target=api&kind=status&status=502&path=devices",
        s.sim.addr
    ));
    let text = wait_file(&events, "OAUTH_POLLER_EVENT=endpoint_failing");
    assert!(
        text.contains("OAUTH_POLLER_ENDPOINT=devices") && text.contains("OAUTH_POLLER_FAILURES=3"),
        "{text}"
    );
    assert!(text.contains("OAUTH_POLLER_DETAIL=HTTP 502"), "{text}");

    http_post(&format!("http://{}/_sim/revoke", s.sim.addr));
    let text = wait_file(&events, "OAUTH_POLLER_EVENT=needs_reauth");
    assert!(text.contains("OAUTH_POLLER_EVENT=refresh_failed"), "{text}");
    assert!(
        text.contains("oauth-poller seed inode FILE"),
        "the detail names the fix: {text}"
    );
    assert_eq!(
        text.matches("OAUTH_POLLER_EVENT=endpoint_failing").count(),
        1,
        "once per failing streak: {text}"
    );
    for secret in s.sim.stats()["issued_tokens"].as_array().unwrap() {
        assert!(
            !text.contains(secret.as_str().unwrap()),
            "a token reached a hook"
        );
    }
    assert!(!text.contains("demo-client-secret") && !text.contains("demo-password"));
}

/// Item 2 of issue 13: a hook's environment is cleared. It gets PATH, LANG and TZ and its
/// own OAUTH_POLLER_* variables, nothing else of the daemon's: not a secret given by
/// `client_secret_env` (even under an OAUTH_POLLER_ name), not CREDENTIALS_DIRECTORY.
#[test]
fn hooks_get_a_cleared_environment_without_the_daemons_secrets() {
    let s = setup(600, "1s", "refresh_token", "");
    let dir = s.dir.path();
    let envs = dir.join("hook-environ");
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg = cfg
        .replace(
            "[daemon]\n",
            &format!(
                "[daemon]\non_event = {}\n",
                crate::secrets::environ_hook(&envs)
            ),
        )
        .replace(
            "client_secret = \"demo-client-secret\"",
            "client_secret_env = \"OAUTH_POLLER_TEST_CLIENT_SECRET\"",
        );
    assert!(cfg.contains("client_secret_env"), "{cfg}");
    write_file(&s.config, &cfg);
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--config")
        .arg(&s.config)
        .arg("run")
        .env("OAUTH_POLLER_TEST_CLIENT_SECRET", "demo-client-secret")
        .env("CREDENTIALS_DIRECTORY", dir)
        .env("LANG", "C.UTF-8")
        .env("TZ", "UTC");
    let d = Daemon::spawn(cmd);
    let devices_ok = Polls {
        endpoint: Some("devices"),
        ..Polls::ok()
    };
    d.wait_polls(&s.db, devices_ok, 1, Duration::from_secs(10));
    http_post(&format!(
        "http://{}/_sim/fault?target=api&kind=status&status=502&path=devices",
        s.sim.addr
    ));
    let text = wait_file(&envs, "OAUTH_POLLER_EVENT=endpoint_failing");
    let allowed = [
        "PATH",
        "LANG",
        "TZ",
        "OAUTH_POLLER_EVENT",
        "OAUTH_POLLER_ACCOUNT",
        "OAUTH_POLLER_ENDPOINT",
        "OAUTH_POLLER_DETAIL",
        "OAUTH_POLLER_FAILURES",
    ];
    for line in text.lines().filter(|l| l.contains('=')) {
        let name = line.split_once('=').unwrap().0;
        assert!(allowed.contains(&name), "a hook inherited {name}:\n{text}");
    }
    for want in [
        "PATH=",
        "LANG=C.UTF-8",
        "TZ=UTC",
        "OAUTH_POLLER_ENDPOINT=devices",
    ] {
        assert!(text.lines().any(|l| l.starts_with(want)), "{want}:\n{text}");
    }
    let log = d.log();
    crate::secrets::assert_no_secrets("hook environment", &s.sim, &[&log, &text], &s.db);
}

/// A command run once (`token`) whose refresh finds the grant revoked starts `on_event`; the
/// command waits for it (each hook ends within its timeout) instead of killing it as it exits.
#[test]
fn a_command_run_once_lets_its_on_event_hooks_finish() {
    let s = setup(2, "60s", "refresh_token", "");
    let events = s.dir.path().join("events.log");
    // Slow on purpose: the hook is still running when the command has its answer.
    let on_event = format!(
        r#"on_event = ["/bin/sh", "-c", "sleep 0.5; echo $OAUTH_POLLER_EVENT >> {}"]"#,
        events.display()
    );
    edit_config(&s.config, "[daemon]\n", &format!("[daemon]\n{on_event}\n"));
    let out = run(Some(&s.config), &["token", "inode"]);
    assert!(out.status.success(), "{}", text(&out));
    http_post(&format!("http://{}/_sim/revoke", s.sim.addr));
    // The access token expires; the refresh then finds the grant revoked.
    std::thread::sleep(Duration::from_secs(3));
    let out = run(Some(&s.config), &["token", "inode"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let written = std::fs::read_to_string(&events).unwrap_or_default();
    // Both run at once: in either order.
    let mut kinds: Vec<&str> = written.lines().collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["needs_reauth", "refresh_failed"],
        "both hooks ran to their end before the command exited: {written:?}"
    );
}
