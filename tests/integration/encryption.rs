//! Tokens encrypted at rest with `daemon.encryption_key_file`: a plaintext store is
//! encrypted at the first start with a key, no token is left readable in the database files,
//! refreshes, `status` and `history` work, and a wrong or missing key is a clear error that
//! changes nothing.

use crate::lifecycle::setup;
use crate::secrets::secrets_of;
use crate::util::*;
use std::time::Duration;

fn with_key(config: &std::path::Path, key_file: &std::path::Path) {
    let cfg = std::fs::read_to_string(config).unwrap().replacen(
        "[daemon]\n",
        &format!(
            "[daemon]\nencryption_key_file = \"{}\"\n",
            key_file.display()
        ),
        1,
    );
    write_file(config, &cfg);
}

/// Every byte of the database and its sidecars.
fn raw_files(db: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", db.display())) {
            all.extend(b);
        }
    }
    all
}

#[test]
fn tokens_are_encrypted_at_rest_and_a_wrong_or_missing_key_changes_nothing() {
    let s = setup(3, "1s", "refresh_token", "");
    // A plaintext store first.
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let plain: String = db(&s.db)
        .query_row("SELECT refresh_token FROM tokens", [], |r| r.get(0))
        .unwrap();
    assert!(!plain.starts_with("enc:"));

    // The first start with a key encrypts it; the daemon refreshes and polls as before.
    let key = s.dir.path().join("store-key");
    write_file(&key, &"ab".repeat(32));
    let plain_config = std::fs::read_to_string(&s.config).unwrap();
    with_key(&s.config, &key);
    let refreshed = events(&s.db, "refreshed");
    let mut d = Daemon::start(&s.config, &[]);
    d.wait_for(
        "encrypted the stored tokens at rest",
        1,
        Duration::from_secs(10),
    );
    d.wait_events(&s.db, "refreshed", refreshed + 2, Duration::from_secs(15));
    let ok = Polls::ok().count(&s.db);
    d.wait_polls(&s.db, Polls::ok(), ok + 2, Duration::from_secs(5));
    d.stop();
    let (access, refresh): (String, String) = db(&s.db)
        .query_row("SELECT access_token, refresh_token FROM tokens", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(access.starts_with("enc:v2:") && refresh.starts_with("enc:v2:"));
    // The live refresh token is the provider's, behind the encryption.
    let stats = s.sim.stats();
    let live = stats["valid_refresh_tokens"][0]
        .as_str()
        .unwrap()
        .to_string();
    let out = run(Some(&s.config), &["status"]);
    assert!(out.status.success(), "status works: {}", text(&out));
    let out = run(Some(&s.config), &["history", "--limit", "5"]);
    assert!(out.status.success(), "history works: {}", text(&out));
    let out = run(Some(&s.config), &["token", "inode"]);
    assert!(out.status.success(), "{}", text(&out));
    // Only tokens issued after the encryption count: older ones were stored in plaintext
    // before the key existed (SQLite may keep freed pages until they are reused).
    let bytes = raw_files(&s.db);
    let found = |t: &str| bytes.windows(t.len()).any(|w| w == t.as_bytes());
    assert!(
        !found(&live),
        "the live refresh token is readable in the database files"
    );

    // A wrong key: a clear error, nothing changed.
    let before = dump_tokens(&s.db);
    write_file(&key, &"cd".repeat(32));
    for args in [&["status"][..], &["token", "inode"], &["poll-once"]] {
        let out = run(Some(&s.config), args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            t.contains("cannot decrypt") && t.contains("wrong encryption key"),
            "{t}"
        );
    }
    let mut d = Daemon::start(&s.config, &[]);
    assert!(!d.wait_exit(Duration::from_secs(10)).success());
    assert_eq!(dump_tokens(&s.db), before, "a wrong key changes nothing");

    // No key at all: the same.
    write_file(&s.config, &plain_config);
    let out = run(Some(&s.config), &["token", "inode"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("encryption_key_file"), "{t}");
    assert_eq!(dump_tokens(&s.db), before, "a missing key changes nothing");

    // A key file that is missing or malformed: exit 2, naming the file and the key.
    with_key(&s.config, &s.dir.path().join("no-such-key"));
    let out = run(Some(&s.config), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("daemon.encryption_key_file"),
        "{}",
        text(&out)
    );
    write_file(&s.config, &plain_config);
    write_file(&key, "too short");
    with_key(&s.config, &key);
    let out = run(Some(&s.config), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The right key again: everything works, and no secret leaked anywhere.
    write_file(&key, &"ab".repeat(32));
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    crate::secrets::assert_no_secrets("encryption", &s.sim, &[&d.log()], &s.db);
    assert!(secrets_of(&s.sim).len() > 4);
}

fn dump_tokens(db_path: &std::path::Path) -> String {
    let c = db(db_path);
    let mut st = c.prepare("SELECT * FROM tokens ORDER BY account").unwrap();
    let n = st.column_count();
    st.query_map([], |r| {
        Ok((0..n)
            .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect::<Vec<_>>()
    .join("\n")
}

fn token_columns(db_path: &std::path::Path) -> (String, String) {
    db(db_path)
        .query_row(
            "SELECT access_token, refresh_token FROM tokens WHERE account = 'inode'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// Issue 13, item 11: a value is bound to its generation (an older generation's ciphertext
/// restored into the row is refused), plaintext is refused once the store is encrypted, the
/// PKCE verifier of a pending authorization is sealed too, and `rekey` re-encrypts the store
/// with a new key (the old one no longer opens it).
#[test]
fn values_are_bound_to_their_generation_plaintext_is_refused_and_rekey_works() {
    let s = setup(600, "60s", "refresh_token", "");
    let key = s.dir.path().join("store-key");
    write_file(&key, &"ab".repeat(32));
    with_key(&s.config, &key);
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let old = token_columns(&s.db);
    assert!(
        old.0.starts_with("enc:") && old.1.starts_with("enc:"),
        "{old:?}"
    );

    // A newer generation, then the older ciphertext restored into the row.
    let seed = s.dir.path().join("seed-2.json");
    write_file(&seed, &s.sim.sim.issue_seed());
    let out = run(
        Some(&s.config),
        &["seed", "inode", seed.to_str().unwrap(), "--force"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let new = token_columns(&s.db);
    let restore = |cols: &(String, String)| {
        db(&s.db)
            .execute(
                "UPDATE tokens SET access_token = ?1, refresh_token = ?2",
                [&cols.0, &cols.1],
            )
            .unwrap();
    };
    restore(&old);
    let out = run(Some(&s.config), &["token", "inode"]);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an old generation's value was accepted: {t}"
    );
    assert!(t.contains("cannot decrypt"), "{t}");
    restore(&new);
    let out = run(Some(&s.config), &["token", "inode"]);
    assert!(out.status.success(), "{}", text(&out));

    // Plaintext planted into an encrypted store is refused, never used.
    db(&s.db)
        .execute(
            "UPDATE tokens SET access_token = 'planted-plaintext-token'",
            [],
        )
        .unwrap();
    let out = run(Some(&s.config), &["token", "inode"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "plaintext was accepted: {t}");
    assert!(!t.contains("planted-plaintext-token"), "{t}");
    restore(&new);

    // The PKCE verifier of a pending authorization is sealed.
    edit_config(
        &s.config,
        "[account.oauth2]\n",
        "[account.oauth2]\nauthorize_url = \"oauth/authorize/\"\nredirect_uri = \"http://127.0.0.1:9/callback\"\npkce = true\n",
    );
    let out = run(Some(&s.config), &["authorize", "inode"]);
    assert!(out.status.success(), "{}", text(&out));
    let verifier: String = db(&s.db)
        .query_row("SELECT code_verifier FROM authorizations", [], |r| r.get(0))
        .unwrap();
    assert!(
        verifier.starts_with("enc:v2:"),
        "stored in plaintext: {verifier}"
    );

    // rekey: refused while a daemon runs on the store (its writes would use the old key).
    let new_key = s.dir.path().join("store-key-2");
    write_file(&new_key, &"cd".repeat(32));
    let check_value = || -> String {
        db(&s.db)
            .query_row("SELECT check_value FROM store_key", [], |r| r.get(0))
            .unwrap()
    };
    let before = check_value();
    {
        let d = Daemon::start(&s.config, &[]);
        d.wait_for(" poll account=inode", 1, std::time::Duration::from_secs(10));
        let out = run(Some(&s.config), &["rekey", new_key.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("daemon is running"), "{}", text(&out));
        assert_eq!(
            check_value(),
            before,
            "the key was changed under a running daemon"
        );
    }
    // With the daemon stopped, the new key opens the store, the old one no longer does.
    let out = run(Some(&s.config), &["rekey", new_key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("re-encrypted 3 stored secret(s)"),
        "{}",
        text(&out)
    );
    let out = run(Some(&s.config), &["token", "inode"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("wrong encryption key"),
        "{}",
        text(&out)
    );
    edit_config(
        &s.config,
        &key.display().to_string(),
        &new_key.display().to_string(),
    );
    let out = run(Some(&s.config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let bytes = raw_files(&s.db);
    let live = s.sim.stats()["valid_refresh_tokens"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!bytes.windows(live.len()).any(|w| w == live.as_bytes()));
    crate::secrets::assert_no_secrets("rekey", &s.sim, &[&text(&out)], &s.db);
}

/// A reload whose configuration names another key file is refused (that key does not open
/// the store), and the running daemon goes on with the key its store was opened with:
/// refreshes commit, and the store still opens with the original key afterwards. Reading
/// the new configuration must not switch any key by itself.
#[test]
fn a_refused_reload_with_another_key_keeps_the_store_on_its_own_key() {
    let s = setup(3, "1s", "refresh_token", "");
    let key = s.dir.path().join("store-key");
    write_file(&key, &"ab".repeat(32));
    let other = s.dir.path().join("other-key");
    write_file(&other, &"cd".repeat(32));
    let plain_config = std::fs::read_to_string(&s.config).unwrap();
    with_key(&s.config, &key);
    let keyed_config = std::fs::read_to_string(&s.config).unwrap();
    // 0 until the daemon has created the store (which this must not create first).
    let generation = || {
        if !s.db.exists() {
            return 0;
        }
        db(&s.db)
            .query_row("SELECT COALESCE(MAX(generation), 0) FROM tokens", [], |r| {
                r.get(0)
            })
            .unwrap_or(0i64)
    };
    let wait_generation = |at_least: i64, d: &Daemon| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while generation() < at_least {
            assert!(
                std::time::Instant::now() < deadline,
                "no refresh committed past generation {}: {}",
                generation(),
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut d = Daemon::start(&s.config, &[]);
    wait_generation(2, &d);

    write_file(&s.config, &plain_config);
    with_key(&s.config, &other);
    d.signal(SIGHUP);
    d.wait_for("new configuration refused", 1, Duration::from_secs(10));
    let refused_at = generation();
    wait_generation(refused_at + 2, &d);
    // The refusal says why; nothing after it fails to read the store.
    assert_eq!(d.count("cannot decrypt"), 1, "{}", d.log());
    d.signal(SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(10)).success(),
        "{}",
        d.log()
    );

    write_file(&s.config, &keyed_config);
    let out = run(Some(&s.config), &["token", "inode"]);
    assert!(out.status.success(), "{}", text(&out));
}
