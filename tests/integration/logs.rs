//! Log output as journald and other collectors read it.

use crate::lifecycle::setup;
use crate::util::*;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

/// Under journald (stderr is the journal stream) lines carry `<N>` priorities and no
/// timestamp of our own.
#[test]
fn journal_stream_lines_have_priorities_and_no_timestamps() {
    let s = setup(600, "60s", "refresh_token", "");
    let log_path = s.dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    http_post(&format!(
        "http://{}/_sim/fault?target=api&kind=status&status=500&path=devices",
        s.sim.addr
    ));
    let status = Command::new(bin())
        .arg("--config")
        .arg(&s.config)
        .arg("poll-once")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(Stdio::from(log))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&log_path).unwrap();
    let ok = text
        .lines()
        .find(|l| l.contains("endpoint=links"))
        .expect(&text);
    assert!(ok.starts_with("<6>poll account=inode"), "{ok}");
    let failed = text
        .lines()
        .find(|l| l.contains("endpoint=devices"))
        .expect(&text);
    assert!(failed.starts_with("<4>poll failed"), "{failed}");
    assert!(
        !text.contains("Z  INFO") && !text.contains(" INFO "),
        "no timestamp or level text:\n{text}"
    );

    // The variable alone (inherited from a parent) does not switch the format.
    let out = Command::new(bin())
        .arg("--config")
        .arg(&s.config)
        .arg("poll-once")
        .env("JOURNAL_STREAM", "1:1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(" INFO poll account=inode"));
}

#[test]
fn json_log_format_is_one_object_per_line() {
    let s = setup(600, "60s", "refresh_token", "");
    let out = run(Some(&s.config), &["--log-format", "json", "poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let polls: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|v: &serde_json::Value| v["message"] == "poll")
        .collect();
    assert_eq!(polls.len(), 2);
    assert!(polls
        .iter()
        .all(|p| p["status"] == "200" && p["account"] == "inode" && p["level"] == "INFO"));
}
