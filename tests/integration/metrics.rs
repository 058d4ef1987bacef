//! `[daemon] metrics_listen`: Prometheus text at /metrics, and /healthz.

use crate::lifecycle::{setup, Setup};
use crate::util::*;
use std::time::Duration;

fn status_of(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, buf)
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in:\n{text}"))
}

/// `setup` with a metrics endpoint on a free port: (setup, port).
pub(crate) fn setup_with_metrics(ttl: u64) -> (Setup, u16) {
    let port = free_port();
    let metrics = format!("metrics_listen = \"127.0.0.1:{port}\"");
    (setup(ttl, "1s", "refresh_token", &metrics), port)
}

#[test]
fn metrics_and_health() {
    let (s, port) = setup_with_metrics(4);
    let d = Daemon::start(&s.config, &[]);
    d.wait_events(&s.db, "refreshed", 1, Duration::from_secs(10));
    let links_ok = Polls {
        endpoint: Some("links"),
        ..Polls::ok()
    };
    d.wait_polls(&s.db, links_ok, 3, Duration::from_secs(10));
    let base = format!("http://127.0.0.1:{port}");
    let m = http_get(&format!("{base}/metrics"));
    assert!(
        metric(
            &m,
            r#"oauth_poller_polls_total{account="inode",endpoint="links",class="2xx"}"#
        ) >= 3.0
    );
    assert!(
        metric(
            &m,
            r#"oauth_poller_refreshes_total{account="inode",outcome="ok"}"#
        ) >= 1.0
    );
    let left = metric(
        &m,
        r#"oauth_poller_access_token_expires_in_seconds{account="inode"}"#,
    );
    assert!((0.0..=4.0).contains(&left), "{left}");
    assert!(
        metric(
            &m,
            r#"oauth_poller_poll_duration_seconds_count{account="inode",endpoint="links"}"#
        ) >= 3.0
    );
    assert!(m.contains(r#"oauth_poller_poll_duration_seconds_bucket{le="0.005",account="inode",endpoint="links"}"#), "{m}");
    let last = metric(
        &m,
        r#"oauth_poller_last_success_timestamp_seconds{account="inode",endpoint="links"}"#,
    );
    assert!(last > 1.7e9);
    assert_eq!(
        metric(&m, r#"oauth_poller_needs_reauth{account="inode"}"#),
        0.0
    );
    assert_eq!(status_of(&format!("{base}/healthz")).0, 200);

    http_post(&format!("http://{}/_sim/revoke", s.sim.addr));
    d.wait_for("needs re-authorization", 1, Duration::from_secs(10));
    let (code, body) = status_of(&format!("{base}/healthz"));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("inode"), "{body}");
    let m = http_get(&format!("{base}/metrics"));
    assert_eq!(
        metric(&m, r#"oauth_poller_needs_reauth{account="inode"}"#),
        1.0
    );
    assert!(
        metric(
            &m,
            r#"oauth_poller_refreshes_total{account="inode",outcome="permanent_failure"}"#
        ) >= 1.0
    );
    for secret in s.sim.stats()["issued_tokens"].as_array().unwrap() {
        assert!(!m.contains(secret.as_str().unwrap()), "a token in /metrics");
    }
}

/// A reload whose new configuration cannot start (its metrics port is taken) keeps the old
/// configuration running instead of ending the daemon.
#[test]
fn a_reload_that_cannot_start_keeps_the_old_configuration() {
    let (s, port) = setup_with_metrics(600);
    let mut d = Daemon::start(&s.config, &[]);
    d.wait_for("endpoint=links status=200", 1, Duration::from_secs(10));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    edit_config(&s.config, &format!(":{port}\""), &format!(":{busy}\""));
    d.signal(SIGHUP);
    d.wait_for("new configuration refused", 1, Duration::from_secs(10));
    let polls = d.count("endpoint=links status=200");
    d.wait_for(
        "endpoint=links status=200",
        polls + 2,
        Duration::from_secs(5),
    );
    assert_eq!(
        status_of(&format!("http://127.0.0.1:{port}/healthz")).0,
        200,
        "the old listener is back"
    );
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "still running:\n{}",
        d.log()
    );
    drop(taken);
}
