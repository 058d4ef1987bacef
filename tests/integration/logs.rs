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
    for p in &polls {
        assert!(p["account"] == "inode" && p["level"] == "INFO", "{p}");
        // Numbers are numbers: a collector sums and compares them without parsing.
        assert_eq!(p["status"], 200, "{p}");
        assert_eq!(p["items"], 3, "{p}");
        assert!(p["bytes"].as_u64().is_some_and(|b| b > 0), "{p}");
        // Milliseconds with the microseconds as a fraction: a loopback poll is not 0 ms.
        let ms = p["duration_ms"]
            .as_f64()
            .filter(|_| p["duration_ms"].is_f64());
        assert!(ms.is_some_and(|ms| ms > 0.0), "duration_ms: {p}");
    }
}

/// The values the text and JSON logs and the store give for a poll's duration are the same
/// kind of number, and a fast poll is not `0`.
#[test]
fn poll_durations_are_fractional_milliseconds_everywhere() {
    let s = setup(600, "60s", "refresh_token", "");
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let logged: Vec<f64> = log
        .lines()
        .filter(|l| l.contains(" poll account="))
        .map(|l| {
            let v = l.split_once("duration_ms=").expect(l).1;
            v.split_whitespace()
                .next()
                .unwrap()
                .parse::<f64>()
                .expect(l)
        })
        .collect();
    assert_eq!(logged.len(), 2, "{log}");
    assert!(logged.iter().all(|&ms| ms > 0.0), "{log}");
    let out = run(Some(&s.config), &["history", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let stored: Vec<f64> = rows
        .iter()
        .filter(|r| r["kind"] == "poll")
        .map(|r| r["duration_ms"].as_f64().expect("a number"))
        .collect();
    assert_eq!(stored.len(), 2);
    let mut a = logged.clone();
    let mut b = stored.clone();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    assert_eq!(a, b, "the store holds what the log said");
}

/// `token refreshed` reads like a poll line (no quotes around a plain word), its lifetime
/// carries a unit, and it has no internal timing noise.
#[test]
fn token_refreshed_line_matches_the_poll_lines() {
    // Access tokens of 1 s, expired by the time of the first poll: it refreshes.
    let s = setup(1, "60s", "refresh_token", "");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let line = log
        .lines()
        .find(|l| l.contains("token refreshed"))
        .unwrap_or_else(|| panic!("no refresh:\n{log}"));
    assert!(line.contains(" account=inode "), "{line}");
    assert!(line.contains(" expires_in_s=1"), "{line}");
    // `token` and `poll-once` write the store: the line says which one.
    assert!(
        line.contains(&format!(" database={}", s.db.display())),
        "{line}"
    );
    assert!(
        !line.contains("commit_us") && !line.contains("expires_in="),
        "{line}"
    );

    let s = setup(1, "60s", "refresh_token", "");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(Some(&s.config), &["--log-format", "json", "poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let refreshed: serde_json::Value = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"] == "token refreshed")
        .expect("a token refreshed event");
    assert_eq!(refreshed["account"], "inode", "{refreshed}");
    assert_eq!(refreshed["expires_in_s"], 1, "{refreshed}");
    assert!(refreshed.get("commit_us").is_none(), "{refreshed}");
}

/// A text line starts with the time it was written, in UTC to the microsecond:
/// `2026-11-22T19:01:21.123456Z  INFO ...`, and that time is the wall clock's.
#[test]
fn text_lines_start_with_the_utc_time_to_the_microsecond() {
    let s = setup(600, "60s", "refresh_token", "");
    let before = jiff::Timestamp::now();
    let out = run(Some(&s.config), &["poll-once"]);
    let after = jiff::Timestamp::now();
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let (stamp, rest) = line
            .split_at_checked(28)
            .unwrap_or_else(|| panic!("{line}"));
        let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            26 => b == b'Z',
            27 => b == b' ',
            _ => b.is_ascii_digit(),
        });
        assert!(shape, "not YYYY-MM-DDTHH:MM:SS.ffffffZ: {line}");
        assert!(
            rest.starts_with(" INFO ") || rest.starts_with(" WARN ") || rest.starts_with("ERROR "),
            "{line}"
        );
        // Read back with the crate the test trusts, not with the code under test.
        let at: jiff::Timestamp = stamp.trim_end().parse().expect(line);
        let tick = jiff::SignedDuration::from_micros(1);
        assert!(
            at >= before - tick && at <= after + tick,
            "{line}: not between {before} and {after}"
        );
    }
}
