//! The fault matrix: every fault the simulator can inject, on the token endpoint and on the
//! API, plus connection refused. For each: the daemon does not crash, does not loop (the
//! requests during the fault are counted and compared with the schedule), says what is
//! wrong in its log, recovers within one interval after the fault clears, and leaks no
//! secret (it runs at `--log-level trace`).
//!
//! Every token-endpoint fault lasts `FAULT` = 6 s, three times the access-token lifetime
//! (2 s): each one is also an outage longer than the access-token lifetime.

use crate::lifecycle::{setup, Setup};
use crate::secrets::assert_no_secrets;
use crate::util::*;
use std::time::{Duration, Instant};

const INTERVAL: u64 = 2;
const TIMEOUT: u64 = 2;
const FAULT: u64 = 6;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Token,
    Api,
    /// The listener is closed: token endpoint and API both refuse connections.
    Refused,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    target: Target,
    /// The `/_sim/fault` query (without `target=`).
    fault: &'static str,
    /// A line of the log during the fault must contain this.
    log: &'static str,
    /// The fault's `Retry-After`, seconds.
    retry_after: u64,
    /// Requests may take the whole timeout (hang, trickle).
    slow: bool,
}

const fn case(name: &'static str, target: Target, fault: &'static str, log: &'static str) -> Case {
    Case {
        name,
        target,
        fault,
        log,
        retry_after: 0,
        slow: false,
    }
}

const TOKEN_CASES: &[Case] = &[
    case(
        "token 500",
        Target::Token,
        "kind=status&status=500",
        "token endpoint answered 500",
    ),
    case(
        "token 502",
        Target::Token,
        "kind=status&status=502",
        "token endpoint answered 502",
    ),
    case(
        "token 503",
        Target::Token,
        "kind=status&status=503",
        "token endpoint answered 503",
    ),
    case(
        "token 429",
        Target::Token,
        "kind=status&status=429",
        "token endpoint answered 429",
    ),
    Case {
        retry_after: 3,
        ..case(
            "token 429 Retry-After",
            Target::Token,
            "kind=status&status=429&retry_after=3",
            "token endpoint answered 429",
        )
    },
    Case {
        retry_after: 3,
        ..case(
            "token 503 Retry-After",
            Target::Token,
            "kind=status&status=503&retry_after=3",
            "token endpoint answered 503",
        )
    },
    case(
        "token reset",
        Target::Token,
        "kind=reset",
        "token endpoint: network error",
    ),
    Case {
        slow: true,
        ..case(
            "token hang",
            Target::Token,
            "kind=hang",
            "token endpoint: timeout error",
        )
    },
    Case {
        slow: true,
        ..case(
            "token trickle",
            Target::Token,
            "kind=trickle&trickle_ms=200",
            "token endpoint: timeout error",
        )
    },
    case(
        "token big",
        Target::Token,
        "kind=big&bytes=400000",
        "larger than 262144 bytes",
    ),
    case(
        "token invalid JSON",
        Target::Token,
        "kind=invalid_json",
        "not a JSON object",
    ),
    case(
        "token 200 HTML",
        Target::Token,
        "kind=html",
        "not a JSON object",
    ),
    case(
        "token without access_token",
        Target::Token,
        "kind=no_access_token",
        "without an access_token",
    ),
];

const API_CASES: &[Case] = &[
    case(
        "api 500",
        Target::Api,
        "kind=status&status=500",
        "status=500",
    ),
    case(
        "api 502",
        Target::Api,
        "kind=status&status=502",
        "status=502",
    ),
    case(
        "api 503",
        Target::Api,
        "kind=status&status=503",
        "status=503",
    ),
    case(
        "api 429",
        Target::Api,
        "kind=status&status=429",
        "status=429",
    ),
    Case {
        retry_after: 4,
        ..case(
            "api 429 Retry-After",
            Target::Api,
            "kind=status&status=429&retry_after=4",
            "Retry-After 4s",
        )
    },
    Case {
        retry_after: 4,
        ..case(
            "api 503 Retry-After",
            Target::Api,
            "kind=status&status=503&retry_after=4",
            "Retry-After 4s",
        )
    },
    case("api reset", Target::Api, "kind=reset", "request failed"),
    Case {
        slow: true,
        ..case("api hang", Target::Api, "kind=hang", "timeout")
    },
    Case {
        slow: true,
        ..case(
            "api trickle",
            Target::Api,
            "kind=trickle&trickle_ms=200",
            "timeout",
        )
    },
    case(
        "api big",
        Target::Api,
        "kind=big&bytes=200000",
        "larger than max_body",
    ),
    case(
        "api invalid JSON",
        Target::Api,
        "kind=invalid_json",
        "body that is not JSON",
    ),
    case(
        "api 200 HTML",
        Target::Api,
        "kind=html",
        "body that is not JSON (text/html",
    ),
    case(
        "connection refused",
        Target::Refused,
        "",
        "Connection refused",
    ),
];

/// What one case measured.
#[derive(Debug)]
struct Measured {
    name: &'static str,
    token_requests: i64,
    token_bound: i64,
    api_requests: i64,
    api_bound: i64,
    recovery: Duration,
    secrets: usize,
}

fn one(c: Case) -> Measured {
    let ttl = if c.target == Target::Api { 600 } else { 2 };
    // The fallback grant lets the account recover when a fault lost a rotated refresh token
    // (trickle: the provider rotated, the answer never arrived); the other faults must not
    // need it.
    let mut s: Setup = setup(
        ttl,
        &format!("{INTERVAL}s"),
        "password",
        &format!("max_body = \"64KiB\"\ntimeout = \"{TIMEOUT}s\""),
    );

    let mut d = Daemon::start(&s.config, &["--log-level", "trace"]);
    d.wait_for("status=200", 3, Duration::from_secs(20));
    let before = s.sim.stats();
    let log_lines_before = d.log().lines().count();
    match c.target {
        Target::Token | Target::Api => {
            let target = if c.target == Target::Token {
                "token"
            } else {
                "api"
            };
            http_post(&format!(
                "http://{}/_sim/fault?target={target}&{}",
                s.sim.addr, c.fault
            ));
        }
        Target::Refused => s.sim.stop_listening(),
    }
    std::thread::sleep(Duration::from_secs(FAULT));
    let during = s.sim.stats();
    let log_during: Vec<String> = d
        .log()
        .lines()
        .skip(log_lines_before)
        .map(String::from)
        .collect();
    match c.target {
        Target::Refused => s.sim.listen_again(),
        _ => {
            s.sim.sim.clear_faults();
        }
    }
    let cleared = Instant::now();
    let ok_at_clear = d.count("status=200");
    // Recovery: a successful poll within one interval (plus a request's timeout when
    // requests hang, plus Retry-After when the server asked for it, plus scheduling slack).
    let mut bound = INTERVAL + c.retry_after + 2;
    if c.slow || c.target == Target::Refused {
        bound += TIMEOUT;
    }
    d.wait_for("status=200", ok_at_clear + 1, Duration::from_secs(bound));
    let recovery = cleared.elapsed();

    let alive = d.child.try_wait().unwrap().is_none();
    assert!(alive, "{}: the daemon died:\n{}", c.name, d.log());
    assert!(
        log_during.iter().any(|l| l.contains(c.log)),
        "{}: no log line says {:?}:\n{}",
        c.name,
        c.log,
        log_during.join("\n")
    );

    let n = |v: &serde_json::Value, path: &[&str]| {
        path.iter().fold(v, |v, k| &v[*k]).as_i64().unwrap_or(0)
    };
    let token_requests =
        n(&during, &["token_requests", "total"]) - n(&before, &["token_requests", "total"]);
    let api_requests =
        n(&during, &["api_requests", "total"]) - n(&before, &["api_requests", "total"]);
    // The schedule: one attempt per tick at most (a tick every INTERVAL, or every
    // Retry-After when the server sent one), one extra for the tick in progress.
    let spacing = INTERVAL.max(c.retry_after) as i64;
    let ticks = FAULT as i64 / spacing + 2;
    // What the daemon says it tried (a hung request never reaches the server's counters;
    // a refused one never reaches the server).
    let logged_token = log_during
        .iter()
        .filter(|l| l.contains("token request failed"))
        .count() as i64;
    let logged_polls = log_during
        .iter()
        .filter(|l| l.contains("poll failed"))
        .count() as i64;
    let token_requests = token_requests.max(logged_token);
    let (token_bound, api_bound) = match c.target {
        Target::Token => (ticks, 2 * (FAULT as i64 / INTERVAL as i64 + 2)),
        Target::Api => (0, 2 * ticks),
        Target::Refused => (ticks, 2 * ticks),
    };
    let api_requests = if c.target == Target::Refused {
        logged_polls
    } else {
        api_requests
    };
    assert!(
        token_requests <= token_bound,
        "{}: {token_requests} token requests in {FAULT}s, the schedule allows {token_bound}",
        c.name
    );
    assert!(
        api_requests <= api_bound && logged_polls <= api_bound,
        "{}: {api_requests} API requests ({logged_polls} failed polls) in {FAULT}s, the schedule allows {api_bound}",
        c.name
    );
    if c.target == Target::Token {
        assert!(token_requests >= 1, "{}: the fault was met", c.name);
        assert!(
            log_during
                .iter()
                .any(|l| l.contains("no valid access token: the token endpoint is failing")),
            "{}: the polls say why they fail once the token expired:\n{}",
            c.name,
            log_during.join("\n")
        );
    }

    d.signal(SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{}: exit {status:?}\n{}", c.name, d.log());

    let stats = s.sim.stats();
    let password = n(&stats, &["token_requests", "by_grant", "password"]);
    if c.name == "token trickle" {
        // The provider rotated and the answer was lost in transit: the grant is spent, the
        // fallback grant recovers it.
        assert!(password >= 1, "{}: {stats}", c.name);
    } else {
        assert_eq!(
            password, 0,
            "{}: the refresh-token chain was never broken: {stats}",
            c.name
        );
        assert_eq!(
            n(&stats, &["token_requests", "by_outcome", "invalid_grant"]),
            0,
            "{}: {stats}",
            c.name
        );
    }
    let secrets = assert_no_secrets(c.name, &s.sim, &[&d.log()], &s.db);
    Measured {
        name: c.name,
        token_requests,
        token_bound,
        api_requests,
        api_bound,
        recovery,
        secrets,
    }
}

/// Runs the cases side by side (each has its own simulator and daemon, and spends its time
/// waiting for the schedule); panics with every failure.
fn matrix(cases: &[Case]) {
    let handles: Vec<_> = cases
        .iter()
        .map(|&c| (c.name, std::thread::spawn(move || one(c))))
        .collect();
    let mut failures = Vec::new();
    for (name, h) in handles {
        match h.join() {
            Ok(m) => eprintln!(
                "fault {:<28} token requests {:>2} (bound {:>2})  api requests {:>2} (bound {:>2})  recovered in {:>4.1}s  secrets checked {}",
                m.name,
                m.token_requests,
                m.token_bound,
                m.api_requests,
                m.api_bound,
                m.recovery.as_secs_f64(),
                m.secrets
            ),
            Err(e) => failures.push(format!(
                "{name}: {}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn token_endpoint_faults() {
    matrix(TOKEN_CASES);
}

#[test]
fn api_faults_and_connection_refused() {
    matrix(API_CASES);
}
