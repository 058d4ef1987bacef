//! One refresh at a time across processes: `run` plus four processes calling `token` in a
//! loop on one database, against a simulator whose refresh tokens rotate and die at once.

use crate::lifecycle::setup;
use crate::util::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn run_and_four_token_loops_refresh_once_per_expiry() {
    const TTL: u64 = 4; // with refresh_margin 1s: a refresh every ~3 s
    let s = setup(TTL, "1s", "refresh_token", "");
    let daemon = Daemon::start(&s.config, &[]);
    daemon.wait_for(" poll account=inode", 2, Duration::from_secs(10));

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (stop, calls, failures, config) = (
                stop.clone(),
                calls.clone(),
                failures.clone(),
                s.config.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = run(Some(&config), &["token", "inode"]);
                    calls.fetch_add(1, Ordering::Relaxed);
                    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if !out.status.success() || token.len() < 20 {
                        failures.lock().unwrap().push(text(&out));
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(TTL * 5 + 2));
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(daemon);

    let stats = s.sim.stats();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} `token` calls failed, first:\n{}",
        failures.len(),
        calls.load(Ordering::Relaxed),
        failures[0]
    );
    assert_eq!(
        stats["token_requests"]["by_outcome"]["invalid_grant"], 0,
        "{stats}"
    );
    assert_eq!(stats["refresh_token_reuse"], 0, "{stats}");

    // Exactly one refresh per expiry: refreshes are spaced by the token's life, never twice
    // for one expiry (that would show as two refreshes within the same second or the next).
    let times: Vec<i64> = stats["issued"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["grant"] == "refresh_token" && i["kind"] == "access")
        .map(|i| i["at"].as_i64().unwrap())
        .collect();
    assert!(times.len() >= 5, "five expiries passed: {times:?}");
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&g| g >= 2),
        "two refreshes for one expiry: gaps {gaps:?}"
    );
    let most = (elapsed / (TTL - 1) as f64).ceil() as usize + 1;
    assert!(
        times.len() <= most,
        "{} refreshes in {elapsed:.0}s (at most {most})",
        times.len()
    );
    // And every refresh the server made is committed in the store.
    let refreshed = query_i64(
        &s.db,
        "SELECT COUNT(*) FROM token_events WHERE event = 'refreshed'",
    );
    assert_eq!(refreshed as usize, times.len());
    assert_eq!(
        stats["valid_refresh_tokens"][0].as_str(),
        stored_refresh_token(&s.db, "inode").as_deref()
    );
    eprintln!(
        "{} token calls, {} refreshes in {elapsed:.1}s",
        calls.load(Ordering::Relaxed),
        times.len()
    );
}

use std::sync::Mutex;
