//! The schedule and what each poll stores: no overlap, Retry-After, bodies, pruning, and
//! the token endpoint failing for a while.

use crate::lifecycle::{setup, Setup};
use crate::util::*;
use std::time::Duration;

fn fault(s: &Setup, query: &str) {
    http_post(&format!("http://{}/_sim/fault?{query}", s.sim.addr));
}

fn poll_times(s: &Setup, endpoint: &str) -> Vec<(i64, Option<i64>)> {
    let c = db(&s.db);
    let mut st = c
        .prepare("SELECT started_at, status FROM polls WHERE endpoint = ?1 ORDER BY id")
        .unwrap();
    st.query_map([endpoint], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn a_slow_endpoint_is_not_overlapped_and_skipped_ticks_are_counted() {
    let s = setup(600, "1s", "refresh_token", "");
    fault(&s, "target=api&kind=delay&delay_ms=2500&path=devices");
    let d = Daemon::start(&s.config, &[]);
    d.wait_for("skipped", 2, Duration::from_secs(15));
    drop(d);
    let by_path = s.sim.stats()["faults"]["by_kind"]["delay"]
        .as_i64()
        .unwrap_or(0);
    let links = poll_times(&s, "links").len() as i64;
    // links polls every second; devices, taking 2.5 s a poll, about every 3 s, never two at once.
    assert!(
        by_path * 2 <= links,
        "devices requests {by_path}, links polls {links}"
    );
}

#[test]
fn retry_after_delays_that_endpoints_next_poll() {
    let s = setup(600, "1s", "refresh_token", "");
    fault(
        &s,
        "target=api&kind=status&status=429&retry_after=3&count=1&path=devices",
    );
    let d = Daemon::start(&s.config, &[]);
    let devices_ok = Polls {
        endpoint: Some("devices"),
        ..Polls::ok()
    };
    d.wait_polls(&s.db, devices_ok, 2, Duration::from_secs(15));
    drop(d);
    let devices = poll_times(&s, "devices");
    assert_eq!(devices[0].1, Some(429), "{devices:?}");
    assert!(
        devices[1].0 - devices[0].0 >= 3,
        "Retry-After 3 s honoured: {devices:?}"
    );
    let links = poll_times(&s, "links");
    assert!(
        links.len() >= 3,
        "other endpoints keep their schedule: {links:?}"
    );
}

#[test]
fn store_bodies_changes_all_none() {
    for (mode, expect_all) in [("changes", false), ("all", true), ("none", false)] {
        let s = setup(
            600,
            "1s",
            "refresh_token",
            &format!("store_bodies = \"{mode}\""),
        );
        let mut d = Daemon::start(&s.config, &[]);
        let links_ok = Polls {
            endpoint: Some("links"),
            ..Polls::ok()
        };
        d.wait_polls(&s.db, links_ok, 3, Duration::from_secs(10));
        // A graceful stop flushes the rows gathered for the next commit.
        d.signal(SIGTERM);
        d.wait_exit(Duration::from_secs(5));
        let rows = query_i64(&s.db, "SELECT COUNT(*) FROM polls WHERE endpoint = 'links'");
        let bodies = query_i64(
            &s.db,
            "SELECT COUNT(*) FROM polls WHERE endpoint = 'links' AND body IS NOT NULL",
        );
        let changed = query_i64(
            &s.db,
            "SELECT COUNT(*) FROM polls WHERE endpoint = 'links' AND changed = 1",
        );
        assert_eq!(
            changed, 1,
            "{mode}: the list is static, it changed once (first poll)"
        );
        match mode {
            "all" => assert_eq!(bodies, rows),
            "changes" => assert_eq!(bodies, 1),
            _ => assert_eq!(bodies, 0),
        }
        assert!(!expect_all || rows >= 3);
        if mode == "changes" {
            let body: String = db(&s.db)
                .query_row("SELECT body FROM polls WHERE body IS NOT NULL", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert!(
                body.starts_with('['),
                "the JSON array of ?no_pagination: {body}"
            );
        }
    }
}

#[test]
fn history_older_than_keep_history_is_pruned() {
    let s = setup(600, "60s", "refresh_token", "keep_history = \"1h\"");
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let c = db(&s.db);
    c.execute_batch(
        "INSERT INTO polls (account, endpoint, started_at, duration_ms, status) VALUES ('inode', 'links', 1000, 1, 200);
         INSERT INTO token_events (account, at, event, detail) VALUES ('inode', 1000, 'refreshed', 'old');",
    )
    .unwrap();
    drop(c);
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        query_i64(&s.db, "SELECT COUNT(*) FROM polls WHERE started_at = 1000"),
        0
    );
    assert_eq!(
        query_i64(&s.db, "SELECT COUNT(*) FROM token_events WHERE at = 1000"),
        0
    );
    assert_eq!(
        query_i64(&s.db, "SELECT COUNT(*) FROM polls"),
        4,
        "recent polls are kept"
    );
}

#[test]
fn a_failing_token_endpoint_backs_off_and_the_old_token_stays_in_use() {
    // Tokens of 8 s refreshed 4 s before expiry: four seconds in which the old one still works.
    let s = setup(8, "1s", "refresh_token", "");
    edit_config(
        &s.config,
        "refresh_margin = \"1s\"",
        "refresh_margin = \"4s\"",
    );
    fault(&s, "target=token&kind=status&status=503&count=2");
    let d = Daemon::start(&s.config, &[]);
    d.wait_events(&s.db, "refreshed", 1, Duration::from_secs(12));
    assert_eq!(
        d.count("token request failed (temporary)"),
        2,
        "{}",
        d.log()
    );
    drop(d);
    let stats = s.sim.stats();
    assert_eq!(
        stats["token_requests"]["total"], 3,
        "two failures with backoff, then one success: {stats}"
    );
    assert_eq!(stats["token_requests"]["by_outcome"]["fault"], 2, "{stats}");
    assert_eq!(stats["refreshes"], 1, "{stats}");
    assert_eq!(
        query_i64(&s.db, "SELECT COUNT(*) FROM polls WHERE error IS NOT NULL"),
        0,
        "polls went on with the old token"
    );
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT COUNT(*) FROM token_events WHERE event = 'refresh_failed'"
        ),
        2
    );
}

#[test]
fn client_credentials_grant_bootstraps_an_account() {
    let mut opts = oauth_poller_sim::SimOptions::new(oauth_poller_sim::Profile::Inode);
    opts.allow_client_credentials = true;
    let sim = Sim::start(opts);
    let dir = tempdir();
    let db_path = dir.path().join("state.db");
    let seed = dir.path().join("unused.json");
    let cfg = crate::lifecycle::sim_config(&sim, &db_path, &seed, "60s", "client_credentials", "");
    let cfg: String = cfg
        .lines()
        .filter(|l| !l.starts_with("seed_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let config = dir.path().join("config.toml");
    write_file(&config, &cfg);
    let out = run(Some(&config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        sim.stats()["token_requests"]["by_grant"]["client_credentials"],
        1
    );
    let by: String = db(&db_path)
        .query_row("SELECT obtained_by FROM tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(by, "client_credentials");
}

#[test]
fn a_refresh_token_near_expiry_is_warned_about_once_a_day() {
    let s = setup(600, "60s", "refresh_token", "");
    let seed: serde_json::Value = serde_json::from_str(&s.sim.sim.issue_seed()).unwrap();
    let ini = s.dir.path().join("seed.ini");
    write_file(
        &ini,
        &format!(
            "[AUTH]\naccess_token = {}\nrefresh_token = {}\naccess_expiry = 600\nrefresh_expiry = 172800\n",
            seed["access_token"].as_str().unwrap(),
            seed["refresh_token"].as_str().unwrap()
        ),
    );
    let out = run(
        Some(&s.config),
        &["seed", "inode", ini.to_str().unwrap(), "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut d = Daemon::start(&s.config, &[]);
    // 172800 s from the file's mtime: "2d 0h" when the daemon starts within that second.
    d.wait_for("the refresh token expires in ", 1, Duration::from_secs(10));
    assert!(
        d.log().contains("expires in 1d 23h") || d.log().contains("expires in 2d 0h"),
        "{}",
        d.log()
    );
    d.signal(SIGTERM);
    d.wait_exit(Duration::from_secs(5));
    let mut d = Daemon::start(&s.config, &[]);
    d.wait_for("endpoint=links status=200", 1, Duration::from_secs(10));
    d.signal(SIGTERM);
    d.wait_exit(Duration::from_secs(5));
    assert!(
        !d.log().contains("the refresh token expires"),
        "warned twice in a day:\n{}",
        d.log()
    );
    let out = run(Some(&s.config), &["status"]);
    assert!(
        text(&out).contains("a human must re-authorize before then"),
        "{}",
        text(&out)
    );
}
