//! The files the README points operators at must stay valid.

use crate::util::*;
use std::path::Path;
use std::process::Command;

/// The credential names every example's `${CREDENTIALS_DIRECTORY}/...` refers to, and the
/// seed examples as the optional seeds.
fn credential_files() -> Vec<(&'static str, String)> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<(&str, String)> = [
        "inode-client-secret",
        "inode-password",
        "inode-api-key",
        "scinote-api-secret",
        "citesphere-client-secret",
        "highq-client-secret",
    ]
    .into_iter()
    .map(|n| (n, "example-secret\n".to_string()))
    .collect();
    for (name, example) in [
        ("inode-seed", "inode-seed.example.ini"),
        ("highq-seed.ini", "highq-seed.example.ini"),
    ] {
        files.push((
            name,
            std::fs::read_to_string(examples.join(example)).unwrap(),
        ));
    }
    files
}

/// The service's view: what the shipped unit's `LoadCredential=oauth-poller:DIR` makes of
/// the files in DIR (`oauth-poller_NAME`).
fn credentials() -> tempfile::TempDir {
    let creds = tempdir();
    for (name, contents) in credential_files() {
        write_file(
            &creds.path().join(format!("oauth-poller_{name}")),
            &contents,
        );
    }
    creds
}

const EXAMPLES: &[&str] = &[
    "inode.toml",
    "inode-api-key.toml",
    "scinote.toml",
    "bare-token.toml",
    "citesphere.toml",
    "highq.toml",
];

/// An example as an operator installs it, with `[daemon] credentials_directory` pointing
/// at `creds` (the shipped ones use the default, /etc/oauth-poller/credentials).
fn with_credentials_directory(example: &str, creds: &Path, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(example),
    )
    .unwrap()
    .replacen(
        "[daemon]\n",
        &format!(
            "[daemon]\ncredentials_directory = \"{}\"\n",
            creds.display()
        ),
        1,
    );
    let path = dir.join(example);
    write_file(&path, &text);
    path
}

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
}

/// A root shell has no `$CREDENTIALS_DIRECTORY`: `${CREDENTIALS_DIRECTORY}` is then the
/// directory the unit loads from, under the names the operator gave the files there, and
/// every example checks the same as in the service.
#[test]
fn without_credentials_directory_the_examples_read_the_source_directory() {
    let dir = tempdir();
    let source = dir.path().join("credentials");
    std::fs::create_dir(&source).unwrap();
    for (name, contents) in credential_files() {
        write_file(&source.join(name), &contents);
    }
    for name in EXAMPLES {
        let config = with_credentials_directory(name, &source, dir.path());
        let out = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args([
                "--database",
                dir.path().join("state.db").to_str().unwrap(),
                "check",
            ])
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
    // A secret that is not there is named by its path in the source directory.
    std::fs::remove_file(source.join("inode-password")).unwrap();
    let config = with_credentials_directory("inode.toml", &source, dir.path());
    let out = run(Some(&config), &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}", source.join("inode-password").display()))
            && text(&out).contains("password_file"),
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
    let out = authorize("inode-api-key.toml", &["inode-key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// config/inode.toml as an operator fills it in: base_url and client_id edited, the database
/// in `dir`, nothing else changed.
fn inode_example(sim: &Sim, client_id: &str, dir: &Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/inode.toml"))
            .unwrap()
            .replace("https://inode.smatstraffic.com/api/", &sim.base_url())
            .replace("YOUR-CLIENT-ID", client_id)
            .replace(
                "/var/lib/oauth-poller/state.db",
                dir.join("state.db").to_str().unwrap(),
            );
    let path = dir.join("config.toml");
    write_file(&path, &text);
    path
}

fn with_credentials(config: &Path, creds: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("CREDENTIALS_DIRECTORY", creds)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

/// config/inode.toml for a simulator, with its secret and password in a credentials
/// directory `creds` as systemd would hand them over: (simulator, dir, creds, config).
fn inode_example_with_credentials() -> (
    Sim,
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let opts = oauth_poller_sim::SimOptions::new(oauth_poller_sim::Profile::Inode);
    let (client_id, secret, password) = (
        opts.client_id.clone(),
        opts.client_secret.clone(),
        opts.password.clone(),
    );
    let sim = Sim::start(opts);
    let dir = tempdir();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    write_file(&creds.join("inode-client-secret"), &secret);
    write_file(&creds.join("inode-password"), &password);
    let config = inode_example(&sim, &client_id, dir.path());
    (sim, dir, creds, config)
}

/// The seed of config/inode.toml is optional (grant = "password"): without the file, `check`
/// passes without a word about it and `poll-once` obtains a token with the password.
#[test]
fn a_missing_optional_seed_fails_nothing() {
    let (_sim, dir, creds, config) = inode_example_with_credentials();

    let out = with_credentials(&config, &creds, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("seed"), "{}", text(&out));
    let out = with_credentials(&config, &creds, &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    // It says which store it wrote.
    assert!(
        text(&out).contains(&format!(
            "poll results stored database={}",
            dir.path().join("state.db").display()
        )),
        "{}",
        text(&out)
    );
}

/// A seed that is the account's only way to a first token (grant = "refresh_token", no
/// authorize_url): its absence is said with the file, line and key, and still fails
/// nothing: the token may come from `oauth-poller seed`, after which the same run polls.
#[test]
fn a_missing_required_seed_is_named_with_file_line_and_key() {
    let sim = Sim::start(oauth_poller_sim::SimOptions::new(
        oauth_poller_sim::Profile::Inode,
    ));
    let dir = tempdir();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    write_file(&creds.join("secret"), &sim.sim.options().client_secret);
    let config = dir.path().join("config.toml");
    write_file(
        &config,
        &format!(
            "[daemon]\ndatabase = \"{}\"\ninterval = \"1s\"\n\n[[account]]\nname = \"inode\"\nbase_url = \"{}\"\nseed_file = \"${{CREDENTIALS_DIRECTORY}}/inode-seed\"\n\n[account.oauth2]\ntoken_url = \"oauth/token/\"\nclient_id = \"{}\"\nclient_secret_file = \"${{CREDENTIALS_DIRECTORY}}/secret\"\nclient_auth = \"body\"\n\n[[account.endpoint]]\nname = \"links\"\npath = \"v1/links/\"\n",
            dir.path().join("state.db").display(),
            sim.base_url(),
            sim.sim.options().client_id,
        ),
    );
    let want = format!(
        "{}:8: key `account[inode].seed_file`: the seed file {} does not exist",
        config.display(),
        creds.join("inode-seed").display()
    );
    let out = with_credentials(&config, &creds, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&want), "{}", text(&out));

    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(&config)
        .arg("run")
        .env("CREDENTIALS_DIRECTORY", &creds);
    let mut d = Daemon::spawn(cmd);
    d.wait_for(&want, 1, std::time::Duration::from_secs(10));
    let seed = dir.path().join("token.json");
    write_file(&seed, &sim.sim.issue_seed());
    let out = with_credentials(&config, &creds, &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    d.wait_for(
        "poll account=inode endpoint=links status=200",
        1,
        std::time::Duration::from_secs(10),
    );
    d.signal(15);
    assert!(d.wait_exit(std::time::Duration::from_secs(10)).success());
}

/// `status` and `history` read the store only: they work where no secret is readable (a
/// shell without the service's credentials), and `seed` says which database it wrote.
#[test]
fn status_and_history_need_no_secret_and_seed_names_its_database() {
    let (sim, dir, creds, config) = inode_example_with_credentials();
    let seed = dir.path().join("token.json");
    write_file(&seed, &sim.sim.issue_seed());
    let out = with_credentials(&config, &creds, &["seed", "inode", seed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("into {}", dir.path().join("state.db").display())),
        "{}",
        text(&out)
    );

    let empty = dir.path().join("no-credentials");
    std::fs::create_dir(&empty).unwrap();
    for args in [&["status"][..], &["history"][..]] {
        let out = with_credentials(&config, &empty, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("inode"), "{args:?}: {}", text(&out));
    }
    // Commands that use the secrets still need them.
    let out = with_credentials(&config, &empty, &["token", "inode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
