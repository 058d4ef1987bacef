//! Hooks: commands an operator configures to hear about events (`[daemon] on_event`) and
//! about changed data (`on_change` per endpoint). They run in the background with a
//! timeout; a slow or broken hook never delays a poll.
//!
//! `on_event` gets the event in its environment: `OAUTH_POLLER_EVENT` (`needs_reauth`,
//! `refresh_failed`, `refresh_token_expiring`, `endpoint_failing`), `OAUTH_POLLER_ACCOUNT`,
//! `OAUTH_POLLER_ENDPOINT` (endpoint events), `OAUTH_POLLER_DETAIL` (never a secret) and
//! `OAUTH_POLLER_FAILURES` (consecutive failures). `on_change` gets the new body on stdin
//! and `OAUTH_POLLER_ACCOUNT` / `OAUTH_POLLER_ENDPOINT`.
//!
//! A hook's environment is cleared: besides its `OAUTH_POLLER_*` variables it gets only
//! `PATH`, `LANG` and `TZ` from the daemon's (see [`INHERITED`]).

use std::sync::RwLock;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Consecutive failed polls of one endpoint that make an `endpoint_failing` event.
pub const FAILING_AFTER: u32 = 3;

static ON_EVENT: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Sets the `on_event` command (at start and on reload). Empty: no hook.
pub fn set_on_event(command: Vec<String>) {
    *ON_EVENT.write().unwrap_or_else(|e| e.into_inner()) = command;
}

pub struct Event<'a> {
    pub kind: &'a str,
    pub account: &'a str,
    pub endpoint: Option<&'a str>,
    pub detail: &'a str,
    pub failures: Option<u32>,
}

/// Runs `on_event` for this event, if one is configured (and only inside the daemon).
pub fn event(e: Event<'_>) {
    let command = ON_EVENT.read().unwrap_or_else(|e| e.into_inner()).clone();
    if command.is_empty() || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let mut env = vec![
        ("OAUTH_POLLER_EVENT", e.kind.to_string()),
        ("OAUTH_POLLER_ACCOUNT", e.account.to_string()),
        ("OAUTH_POLLER_DETAIL", e.detail.to_string()),
    ];
    if let Some(ep) = e.endpoint {
        env.push(("OAUTH_POLLER_ENDPOINT", ep.to_string()));
    }
    if let Some(n) = e.failures {
        env.push(("OAUTH_POLLER_FAILURES", n.to_string()));
    }
    let label = format!("on_event {}", e.kind);
    tokio::spawn(run(command, env, None, label));
}

/// An endpoint's `on_change` command with the new body on stdin, to be spawned by the
/// caller (who decides how long the process waits for it), or None without a command.
pub fn changed(
    command: &[String],
    account: &str,
    endpoint: &str,
    body: Vec<u8>,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    if command.is_empty() {
        return None;
    }
    let env = vec![
        ("OAUTH_POLLER_ACCOUNT", account.to_string()),
        ("OAUTH_POLLER_ENDPOINT", endpoint.to_string()),
    ];
    Some(run(
        command.to_vec(),
        env,
        Some(body),
        format!("on_change {account}/{endpoint}"),
    ))
}

/// What a hook inherits from the daemon's environment: only these. The rest may hold
/// secrets (a `client_secret_env` variable, `CREDENTIALS_DIRECTORY`, whatever the service
/// manager passed); even `OAUTH_POLLER_*` variables are not inherited, since one may be named
/// by a `*_env` key: a hook's `OAUTH_POLLER_*` variables are the ones set for its event.
const INHERITED: &[&str] = &["PATH", "LANG", "TZ"];

fn inherited_env() -> impl Iterator<Item = (&'static str, std::ffi::OsString)> {
    INHERITED
        .iter()
        .filter_map(|&name| std::env::var_os(name).map(|v| (name, v)))
}

async fn run(
    command: Vec<String>,
    env: Vec<(&'static str, String)>,
    stdin: Option<Vec<u8>>,
    label: String,
) {
    let Some((program, args)) = command.split_first() else {
        return;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(inherited_env())
        .envs(env)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(hook = %label, program = %program, error = %e, "cannot run the hook");
            return;
        }
    };
    if let (Some(body), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A hook that does not read its input must not block us either.
        let _ = tokio::time::timeout(HOOK_TIMEOUT, pipe.write_all(&body)).await;
        drop(pipe);
    }
    match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => tracing::debug!(hook = %label, "hook done"),
        Ok(Ok(status)) => tracing::warn!(hook = %label, %status, "hook failed"),
        Ok(Err(e)) => tracing::warn!(hook = %label, error = %e, "hook failed"),
        Err(_) => {
            let _ = child.kill().await;
            tracing::warn!(hook = %label, timeout_s = HOOK_TIMEOUT.as_secs(), "hook timed out and was killed");
        }
    }
}
