//! The files the README points operators at must stay valid.

use crate::util::*;
use std::path::Path;
use std::process::Command;

/// Dummy credentials for every `${CREDENTIALS_DIRECTORY}/...` an example names.
fn credentials() -> tempfile::TempDir {
    let creds = tempdir();
    for name in [
        "inode-client-secret",
        "inode-password",
        "inode-api-key",
        "scinote-api-secret",
        "citesphere-client-secret",
        "highq-client-secret",
    ] {
        write_file(&creds.path().join(name), "example-secret\n");
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::copy(
        examples.join("inode-seed.example.ini"),
        creds.path().join("inode-seed"),
    )
    .unwrap();
    std::fs::copy(
        examples.join("highq-seed.example.ini"),
        creds.path().join("highq-seed.ini"),
    )
    .unwrap();
    creds
}

const EXAMPLES: &[&str] = &[
    "inode.toml",
    "scinote.toml",
    "bare-token.toml",
    "citesphere.toml",
    "highq.toml",
];

#[test]
fn every_vendor_example_passes_check() {
    let creds = credentials();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let listed: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    for name in &listed {
        assert!(
            EXAMPLES.contains(&name.as_str()),
            "config/{name} is not checked here"
        );
    }
    for name in EXAMPLES {
        let config = examples.join(name);
        let out = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args([
                "--database",
                creds.path().join("state.db").to_str().unwrap(),
                "check",
            ])
            .env("CREDENTIALS_DIRECTORY", creds.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(
            !creds.path().join("state.db").exists(),
            "check touches nothing"
        );
    }

    let out = Command::new(bin())
        .arg("--config")
        .arg(examples.join("inode.toml"))
        .arg("check")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("CREDENTIALS_DIRECTORY"),
        "{}",
        text(&out)
    );
}

/// `authorize --listen` refuses a redirect URI it cannot listen on, naming the key (exit 2);
/// `authorize` prints the URL of every example that has an authorization endpoint.
#[test]
fn authorize_with_the_vendor_examples() {
    let creds = credentials();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let authorize = |file: &str, args: &[&str]| {
        Command::new(bin())
            .arg("--config")
            .arg(examples.join(file))
            .args([
                "--database",
                creds.path().join("state.db").to_str().unwrap(),
            ])
            .arg("authorize")
            .args(args)
            .env("CREDENTIALS_DIRECTORY", creds.path())
            .output()
            .unwrap()
    };
    for (file, account, expect) in [
        ("scinote.toml", "scinote", "https://your-instance.scinote.net/oauth/authorize?response_type=code&client_id=YOUR-API-UID&redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob&state="),
        ("bare-token.toml", "ruqqus", "https://ruqqus.example/authorize/?response_type=token&client_id=YOUR-CLIENT-ID"),
        ("citesphere.toml", "citesphere", "https://diging.asu.edu/citesphere/api/oauth/authorize?response_type=code&client_id=OAUTHCLIENT007"),
        ("highq.toml", "highq", "https://your-instance.highq.com/your-instance/authorize.action?response_type=code"),
    ] {
        let out = authorize(file, &[account]);
        assert!(out.status.success(), "{file}: {}", text(&out));
        let url = String::from_utf8_lossy(&out.stdout);
        assert!(url.starts_with(expect), "{file}: {url}");
    }
    let out = authorize("scinote.toml", &["scinote", "--listen"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("key `account[scinote].oauth2.redirect_uri`"),
        "{}",
        text(&out)
    );
    let out = authorize("inode.toml", &["inode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("authorize_url"), "{}", text(&out));
    let out = authorize("inode.toml", &["inode-key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn simulate_prints_a_configuration_that_passes_check() {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    let seed = dir.path().join("seed.json");
    let mut sim = Command::new(bin());
    sim.args([
        "simulate",
        "--profile",
        "inode",
        "--listen",
        "127.0.0.1:0",
        "--config-out",
    ])
    .arg(&config)
    .arg("--seed-out")
    .arg(&seed)
    .arg("--config-database")
    .arg(dir.path().join("state.db"));
    let d = Daemon::spawn(sim);
    d.wait_for("listening", 1, std::time::Duration::from_secs(10));
    let out = run(Some(&config), &["check"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        std::fs::read_to_string(&config).unwrap()
    );
    let out = run(Some(&config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
}
