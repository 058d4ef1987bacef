//! `demo`: the daemon against the simulator (the `oauth-poller-sim` crate) on loopback, with
//! tokens of about 20 s, so that polls and refreshes show within a minute. Only in builds
//! with the `demo` feature (the default): the .deb's binary has neither it nor the simulator.
//!
//! Its files (configuration, seed, database) go in a new private directory: created
//! exclusively under an unpredictable name with mode 0700 (tempfile), so nobody else can
//! prepare it, read it or plant a symlink in it; removed at exit unless `--keep`.

use crate::daemon::{self, Control};
use crate::error::Error;
use oauth_poller_sim::{example_config, Profile, SimOptions, Simulator};
use std::time::Duration;

const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(20);

pub async fn run(seconds: Option<u64>, keep: bool) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::Builder::new()
        .prefix("oauth-poller-demo-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|e| {
            Error::runtime(format!(
                "cannot create a directory in {}: {e}",
                std::env::temp_dir().display()
            ))
        })?;
    let dir = temp.path().to_path_buf();
    let result = run_in(&dir, seconds).await;
    let inspect = invocation(&dir.join("config.toml"));
    if keep {
        let dir = temp.keep();
        eprintln!(
            "demo: kept {}; inspect it with `{inspect} status` or `{inspect} history`",
            dir.display()
        );
    } else {
        let shown = dir.display().to_string();
        match temp.close() {
            Ok(()) => eprintln!("demo: removed {shown} (--keep keeps it)"),
            Err(e) => eprintln!("demo: cannot remove {shown}: {e}"),
        }
    }
    result
}

/// The command that reaches this demo's store: this very binary by its path, which works
/// whether it came from `cargo run`, `target/release` or PATH.
fn invocation(config: &std::path::Path) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "oauth-poller".into());
    let word = |s: String| crate::inspect::shell_word(&s);
    format!(
        "{} --config {}",
        word(exe),
        word(config.display().to_string())
    )
}

async fn run_in(dir: &std::path::Path, seconds: Option<u64>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::runtime(format!("cannot listen on loopback: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::runtime(e.to_string()))?;
    let mut opts = SimOptions::new(Profile::Inode);
    opts.access_ttl = DEMO_TOKEN_LIFETIME;
    let sim = Simulator::new(opts.clone());
    let seed_path = dir.join("inode-seed.json");
    let db = dir.join("demo.db");
    write_private(&seed_path, &sim.issue_seed())?;
    let config_path = dir.join("config.toml");
    let root_url = format!("http://{addr}");
    let config_text = example_config(
        &opts,
        &root_url,
        &db.display().to_string(),
        &seed_path.display().to_string(),
    );
    write_private(&config_path, &config_text)?;
    let (stop_sim, sim_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim.serve(listener, async move {
        let _ = sim_stopped.await;
    }));

    eprintln!(
        "demo: simulator (inode profile) on http://{addr}/, access tokens live {}s",
        DEMO_TOKEN_LIFETIME.as_secs()
    );
    eprintln!(
        "demo: configuration {}, database {}",
        config_path.display(),
        db.display()
    );
    eprintln!("demo: watch for `poll` lines and `token refreshed`; Ctrl-C stops");
    eprintln!(
        "demo: meanwhile, in another terminal: `{} status`",
        invocation(&config_path)
    );
    let config = crate::config::load(&config_path, None)?;
    let source = daemon::Source {
        config_path: config_path.clone(),
        database: None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let signals = daemon::signal_control()?;
    tokio::spawn(forward(signals, tx.clone()));
    if let Some(s) = seconds {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(s)).await;
            let _ = tx.send(Control::Stop).await;
        });
    }
    let result = daemon::run(config, source, rx).await;
    let _ = stop_sim.send(());
    let _ = server.await;
    result
}

async fn forward(
    mut from: tokio::sync::mpsc::Receiver<Control>,
    to: tokio::sync::mpsc::Sender<Control>,
) {
    while let Some(c) = from.recv().await {
        if to.send(c).await.is_err() {
            break;
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::runtime(format!("cannot write {}: {e}", path.display())))
}
