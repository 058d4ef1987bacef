//! The `oauth-poller-sim` binary as a person runs it: it prints and writes the configuration
//! and the seed, and serves what they describe.

use oauth_poller_sim::{example_config, Profile, SimOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// Kills the simulator when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prints_and_writes_a_configuration_and_seed_that_its_server_accepts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("oauth-poller-sim-test-")
        .tempdir()
        .unwrap();
    let config_path = dir.path().join("config.toml");
    let seed_path = dir.path().join("seed.json");
    let database = dir.path().join("state.db").display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oauth-poller-sim"))
        .args([
            "--profile",
            "inode",
            "--listen",
            "127.0.0.1:0",
            "--config-out",
        ])
        .arg(&config_path)
        .arg("--seed-out")
        .arg(&seed_path)
        .args(["--config-database", &database])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let _running = Running(child);

    // Its files are written before it says where it listens.
    let mut said = String::new();
    BufReader::new(stderr).read_line(&mut said).unwrap();
    let root = said
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split_once(';'))
        .map(|(root, _)| root.to_string())
        .unwrap_or_else(|| panic!("no address in {said:?}"));

    let opts = SimOptions::new(Profile::Inode);
    let config = std::fs::read_to_string(&config_path).unwrap();
    let seed_shown = seed_path.display().to_string();
    assert_eq!(config, example_config(&opts, &root, &database, &seed_shown));
    let seed = std::fs::read_to_string(&seed_path).unwrap();
    for path in [&config_path, &seed_path] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    // stdout: the configuration, then the seed.
    let mut printed = String::new();
    let mut lines = BufReader::new(stdout).lines();
    while !printed.contains(seed.trim()) {
        let line = lines.next().expect("stdout ended").unwrap();
        printed.push_str(&line);
        printed.push('\n');
    }
    assert!(printed.contains(&config), "{printed}");

    // The seed's access token reads the profile's first endpoint.
    let seed: serde_json::Value = serde_json::from_str(&seed).unwrap();
    let token = seed["access_token"].as_str().unwrap();
    let (_, path, query) = Profile::Inode.endpoints()[0];
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let target = format!("{}{path}?{}", Profile::Inode.base_path(), query.join("&"));
    let mut conn = TcpStream::connect(root.trim_start_matches("http://")).unwrap();
    write!(
        conn,
        "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{target}: {answer}");
}
