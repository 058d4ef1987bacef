//! The files the README points operators at must stay valid.

use crate::util::*;
use std::path::Path;
use std::process::Command;

#[test]
fn example_configuration_and_seed_pass_check() {
    let creds = tempdir();
    for name in ["inode-client-secret", "inode-password"] {
        write_file(&creds.path().join(name), "example-secret\n");
    }
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/inode-seed.example.ini");
    std::fs::copy(&seed, creds.path().join("inode-seed")).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.example.toml");
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
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !creds.path().join("state.db").exists(),
        "check touches nothing"
    );

    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
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
