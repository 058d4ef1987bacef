//! `poll-once` from a timer or cron: it remembers the last body as `run` does.

use crate::lifecycle::setup;
use crate::util::*;

/// Issue 16 item 2: three `poll-once` runs over an unchanged body report one change, store
/// one body and run `on_change` once (not three times).
#[test]
fn poll_once_reports_a_change_only_when_the_body_changed() {
    let s = setup(600, "60s", "refresh_token", "store_bodies = \"changes\"");
    let dir = s.dir.path();
    let hook_log = dir.join("on-change.log");
    edit_config(
        &s.config,
        "name = \"links\"\npath = \"v1/links/\"",
        &format!(
            "name = \"links\"\npath = \"v1/links/\"\non_change = [\"/bin/sh\", \"-c\", \"cat >/dev/null; echo changed >> {}\"]",
            hook_log.display()
        ),
    );
    let mut changed_lines = 0;
    for _ in 0..3 {
        let out = run(Some(&s.config), &["poll-once", "--account", "inode"]);
        assert!(out.status.success(), "{}", text(&out));
        changed_lines += text(&out)
            .lines()
            .filter(|l| l.contains("endpoint=links") && l.contains("changed=true"))
            .count();
    }
    assert_eq!(changed_lines, 1, "the first poll only");
    let q = |sql: &str| query_i64(&s.db, sql);
    assert_eq!(
        q("SELECT COUNT(*) FROM polls WHERE endpoint = 'links' AND status = 200"),
        3
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM polls WHERE endpoint = 'links' AND changed = 1"),
        1
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM polls WHERE endpoint = 'links' AND body IS NOT NULL"),
        1
    );
    // on_change runs in the background; give a late one time to show up.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let runs = std::fs::read_to_string(&hook_log).unwrap_or_default();
    assert_eq!(runs.lines().count(), 1, "on_change runs: {runs:?}");
}

/// `poll-once` waits for the `on_change` hooks it started: the end of the process used to
/// kill a hook that was still running, so a cron job's hook never finished its work.
#[test]
fn poll_once_lets_its_on_change_hook_finish() {
    let s = setup(600, "60s", "refresh_token", "");
    let done = s.dir.path().join("hook-finished");
    edit_config(
        &s.config,
        "name = \"links\"\npath = \"v1/links/\"",
        &format!(
            "name = \"links\"\npath = \"v1/links/\"\non_change = [\"/bin/sh\", \"-c\", \"cat >/dev/null; sleep 1; echo done > {}\"]",
            done.display()
        ),
    );
    let out = run(Some(&s.config), &["poll-once", "--account", "inode"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("changed=true"),
        "the first poll is a change: {}",
        text(&out)
    );
    // No waiting here: when poll-once has exited, its hook has finished.
    assert_eq!(
        std::fs::read_to_string(&done).unwrap_or_default().trim(),
        "done",
        "the on_change hook was killed when poll-once exited"
    );
}
