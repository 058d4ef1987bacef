//! Findings of the security audit (issue 13) in the store, secrets and configuration: each
//! test shows the defect's user-visible effect through the real binary.

use crate::config_builder::{path, Account, Config, Endpoint};
use crate::util::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A configuration for `base` with its database at `db` (secret in a 0600 file).
fn config(dir: &Path, db: &Path, base: &str) -> PathBuf {
    let secret = dir.join("client-secret");
    write_file(&secret, "SECRET-client-0123456789\n");
    Config::new(db)
        .account(
            Account::new("inode", base)
                .oauth2("token_url", "oauth/token/")
                .oauth2("client_id", "id")
                .oauth2("client_secret_file", path(&secret))
                .oauth2("client_auth", "body")
                .endpoint(Endpoint::new("links", "v1/links/")),
        )
        .write(&dir.join("config.toml"))
}

fn seed_file(dir: &Path, access_expires_long_ago: bool) -> PathBuf {
    let seed = dir.join("seed.json");
    let created = if access_expires_long_ago {
        1_000_000_000
    } else {
        1_893_456_000
    };
    write_file(
        &seed,
        &format!(
            r#"{{"access_token":"at-9f8e7d6c5b4a","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-0a1b2c3d4e5f","created_at":{created}}}"#
        ),
    );
    seed
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_refused(out: &std::process::Output, path: &Path, want: &str) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(2), "exit code:\n{t}");
    assert!(
        t.contains(&path.display().to_string()) && t.contains(want),
        "must name {} and say {want:?}:\n{t}",
        path.display()
    );
}

/// Item 1: the database's directory is created 0700 even under umask 000; a database
/// directory writable by others or owned by another user, and a database with group or other
/// permissions, are refused (exit 2, naming the path) before anything is written.
#[test]
fn a_shared_state_directory_or_database_is_refused_and_new_directories_are_0700() {
    let dir = tempdir();
    let state = dir.path().join("state");
    let db = state.join("sub").join("state.db");
    let config = config(dir.path(), &db, "http://127.0.0.1:9/api/");
    let seed = seed_file(dir.path(), false);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec '{}' --config '{}' seed inode '{}'",
            bin().display(),
            config.display(),
            seed.display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for d in [&state, &state.join("sub")] {
        assert_eq!(mode(d), 0o700, "{} under umask 000", d.display());
    }
    assert_eq!(mode(&db), 0o600);
    let before = dump(&db);

    let sub = state.join("sub");
    chmod(&sub, 0o777);
    for args in [
        &["poll-once"][..],
        &["seed", "inode", seed.to_str().unwrap()],
    ] {
        assert_refused(&run(Some(&config), args), &sub, "writable by other users");
    }
    chmod(&sub, 0o700);

    // Only root can hand a directory to another user and run the binary as a third.
    if require(Need::Root) {
        // Another user's directory, to a user other than root: refused. (Root may use the
        // service user's store: `sudo oauth-poller status`.)
        for p in [dir.path(), state.as_path()] {
            chmod(p, 0o711);
        }
        chmod(&config, 0o644);
        chmod(&dir.path().join("client-secret"), 0o644);
        std::os::unix::fs::chown(&sub, Some(65534), Some(65534)).unwrap();
        let as_another_user = Command::new("setpriv")
            .args(["--reuid=65533", "--regid=65533", "--clear-groups"])
            .arg(bin())
            .arg("--config")
            .arg(&config)
            .arg("poll-once")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_refused(&as_another_user, &sub, "belongs to uid 65534");
        let out = run(Some(&config), &["status"]);
        assert!(out.status.success(), "root: {}", text(&out));
        std::os::unix::fs::chown(&sub, Some(0), Some(0)).unwrap();
    }

    for m in [0o644, 0o640, 0o604] {
        chmod(&db, m);
        for args in [&["poll-once"][..], &["status"], &["token", "inode"]] {
            assert_refused(&run(Some(&config), args), &db, "accessible to other users");
        }
    }
    chmod(&db, 0o600);
    assert_eq!(dump(&db), before, "a refused command changed the store");
    let out = run(Some(&config), &["status"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Item 1: a symlink planted where the refresh journal goes is not written through: the
/// rotated refresh token does not reach the link's target, and the refresh still commits.
#[test]
fn a_link_planted_at_the_journal_path_is_never_written_through() {
    let s = crate::lifecycle::setup(1, "60s", "refresh_token", "");
    let stolen = s.dir.path().join("stolen");
    let journal = PathBuf::from(format!("{}-pending-inode", s.db.display()));
    std::os::unix::fs::symlink(&stolen, &journal).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(Some(&s.config), &["--log-level", "debug", "poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("token refreshed"),
        "a refresh happened:\n{}",
        text(&out)
    );
    let content = std::fs::read_to_string(&stolen).unwrap_or_default();
    assert!(
        content.is_empty(),
        "the journal was written through the planted link:\n{content}"
    );
    let rotated = stored_refresh_token(&s.db, "inode").unwrap();
    assert!(!content.contains(&rotated));
}

/// Item 8: a 64-byte key file holding a multi-byte character is bad input (exit 2), not a
/// panic that prints the key.
#[test]
fn a_key_file_with_a_multibyte_character_is_bad_input_and_never_printed() {
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let config = config(dir.path(), &db, "http://127.0.0.1:9/api/");
    let key = dir.path().join("store-key");
    let secret_part = "k".repeat(62);
    // The two-byte character straddles the first pair of hex digits.
    write_file(&key, &format!("k{}", secret_part.replacen("k", "é", 1)));
    assert!(std::fs::read_to_string(&key).unwrap().starts_with("ké"));
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 64);
    let cfg = std::fs::read_to_string(&config).unwrap().replacen(
        "[daemon]\n",
        &format!("[daemon]\nencryption_key_file = \"{}\"\n", key.display()),
        1,
    );
    write_file(&config, &cfg);
    for args in [&["check"][..], &["poll-once"]] {
        let out = run(Some(&config), args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(
            t.contains("encryption_key_file") && t.contains("32 bytes"),
            "{t}"
        );
        assert!(!t.contains("panicked") && !t.contains("kkkkkkkk"), "{t}");
    }
}

/// Item 13: a configuration readable by others that holds a secret inline is warned about
/// like a secret file; one that holds none, or is private, is not.
#[test]
fn a_configuration_readable_by_others_with_an_inline_secret_is_warned_about() {
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let config = config(dir.path(), &db, "http://127.0.0.1:9/api/");
    let warned = |t: &str| {
        t.lines().any(|l| {
            l.contains("readable by other users") && l.contains(&config.display().to_string())
        })
    };
    chmod(&config, 0o644);
    let out = run(Some(&config), &["check"]);
    assert!(
        out.status.success() && !warned(&text(&out)),
        "{}",
        text(&out)
    );

    let inline = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("client_secret_file") {
                "client_secret = \"SECRET-inline-0123456789\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, inline).unwrap();
    chmod(&config, 0o644);
    let out = run(Some(&config), &["check"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(warned(&t), "not warned:\n{t}");
    assert!(!t.contains("SECRET-inline"), "{t}");
    chmod(&config, 0o600);
    let out = run(Some(&config), &["check"]);
    assert!(
        out.status.success() && !warned(&text(&out)),
        "{}",
        text(&out)
    );
}

/// Item 17: `token` never prints a stored access token holding CR/LF (from a provider):
/// exit 1 without the value; a clean token still prints.
#[test]
fn token_refuses_to_print_a_value_with_control_characters() {
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let config = config(dir.path(), &db, "http://127.0.0.1:9/api/");
    let seed = seed_file(dir.path(), false);
    let out = run(Some(&config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Some(&config), &["token", "inode", "--header"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Authorization: Bearer at-9f8e7d6c5b4a\n"
    );
    db_conn_plant(&db, "at-9f8e7d6c5b4a\r\nX-Injected: yes");
    for args in [&["token", "inode", "--header"][..], &["token", "inode"]] {
        let out = run(Some(&config), args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(out.stdout.is_empty(), "printed: {t}");
        assert!(!t.contains("X-Injected"), "{t}");
        assert!(t.contains("control"), "{t}");
    }
}

fn db_conn_plant(db: &Path, access_token: &str) {
    let n = crate::util::db(db)
        .execute(
            "UPDATE tokens SET access_token = ?1 WHERE account = 'inode'",
            [access_token],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// A token endpoint on loopback that answers every request with `status` and `body`.
fn fixed_server(status: u16, body: &'static str) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            // Read the head and the body the head announces, then answer and close.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = conn.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// Item 16: a provider's error text is redacted by a token's shape even when it has no
/// digit: a letters-only token the daemon never sent reaches neither the log nor the store.
#[test]
fn a_letters_only_token_in_provider_error_text_is_redacted() {
    const ECHOED: &str = "QwErTzUiOpAsDfGhJkLyXcVbNm";
    let addr = fixed_server(
        400,
        r#"{"error":"invalid_grant","error_description":"refresh token revoked, token QwErTzUiOpAsDfGhJkLyXcVbNm issued instead"}"#,
    );
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let config = config(dir.path(), &db, &format!("http://{addr}/api/"));
    let seed = seed_file(dir.path(), true);
    let out = run(Some(&config), &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Some(&config), &["--log-level", "trace", "poll-once"]);
    let t = text(&out);
    assert!(t.contains("invalid_grant"), "the refresh was refused:\n{t}");
    assert!(t.contains("[redacted]"), "{t}");
    let found = crate::secrets::leaks(&[ECHOED.to_string()], &[&t], &db);
    assert!(found.is_empty(), "leaked:\n{}", found.join("\n"));
}
