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

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

/// How long a hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Consecutive failed polls of one endpoint that make an `endpoint_failing` event.
pub const FAILING_AFTER: u32 = 3;

/// What `on_event` is told about. The names are an interface (a hook's
/// `OAUTH_POLLER_EVENT`): they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The account needs a human: a new seed or `authorize`.
    NeedsReauth,
    /// A token request failed for good.
    RefreshFailed,
    /// The refresh token expires within `refresh_warning`.
    RefreshTokenExpiring,
    /// An endpoint failed [`FAILING_AFTER`] polls in a row.
    EndpointFailing,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NeedsReauth => "needs_reauth",
            EventKind::RefreshFailed => "refresh_failed",
            EventKind::RefreshTokenExpiring => "refresh_token_expiring",
            EventKind::EndpointFailing => "endpoint_failing",
        }
    }
}

pub struct Event<'a> {
    pub kind: EventKind,
    pub account: &'a str,
    pub endpoint: Option<&'a str>,
    pub detail: &'a str,
    pub failures: Option<u32>,
}

/// The configured `on_event` command and the runtime its hooks run on. Built by the daemon
/// (or a command) and handed to whoever reports events: holding the runtime's handle, it
/// runs hooks from any thread (a refresh-expiry check runs on a blocking one).
#[derive(Clone)]
pub struct Hooks {
    /// Empty: no hook.
    on_event: Arc<[String]>,
    running: Arc<Running>,
}

/// Hooks still running, kept across reloads: a reload must not kill them.
struct Running {
    runtime: tokio::runtime::Handle,
    tasks: Mutex<JoinSet<()>>,
}

impl Hooks {
    /// Hooks that run on `runtime`, with `on_event` (empty: none).
    pub fn new(on_event: Vec<String>, runtime: tokio::runtime::Handle) -> Hooks {
        Hooks {
            on_event: on_event.into(),
            running: Arc::new(Running {
                runtime,
                tasks: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// The same running hooks with another `on_event` command (a reloaded configuration).
    pub fn with_on_event(&self, on_event: Vec<String>) -> Hooks {
        Hooks {
            on_event: on_event.into(),
            running: self.running.clone(),
        }
    }

    fn spawn(&self, hook: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.running.tasks.lock();
        // Finished hooks are reaped here, so that a daemon running for months keeps none.
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(hook, &self.running.runtime);
    }

    /// Waits for the hooks started so far (each ends within [`HOOK_TIMEOUT`]): `poll-once`
    /// must not kill them by ending its runtime.
    pub async fn wait(&self) {
        let mut tasks = std::mem::take(&mut *self.running.tasks.lock());
        while tasks.join_next().await.is_some() {}
    }

    /// Runs `on_event` for this event in the background, if one is configured.
    pub fn event(&self, e: Event<'_>) {
        if self.on_event.is_empty() {
            return;
        }
        let mut env = vec![
            ("OAUTH_POLLER_EVENT", e.kind.as_str().to_string()),
            ("OAUTH_POLLER_ACCOUNT", e.account.to_string()),
            ("OAUTH_POLLER_DETAIL", e.detail.to_string()),
        ];
        if let Some(ep) = e.endpoint {
            env.push(("OAUTH_POLLER_ENDPOINT", ep.to_string()));
        }
        if let Some(n) = e.failures {
            env.push(("OAUTH_POLLER_FAILURES", n.to_string()));
        }
        let label = format!("on_event {}", e.kind.as_str());
        self.spawn(run(self.on_event.to_vec(), env, None, label));
    }

    /// Runs an endpoint's `on_change` command (if any) in the background, with the new body
    /// on stdin.
    pub fn changed(&self, command: &[String], account: &str, endpoint: &str, body: Vec<u8>) {
        if command.is_empty() {
            return;
        }
        let env = vec![
            ("OAUTH_POLLER_ACCOUNT", account.to_string()),
            ("OAUTH_POLLER_ENDPOINT", endpoint.to_string()),
        ];
        self.spawn(run(
            command.to_vec(),
            env,
            Some(body),
            format!("on_change {account}/{endpoint}"),
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime is part of the value: an event reported from a thread outside it (a
    /// blocking task, a plain thread) still runs the hook.
    #[test]
    fn an_event_from_outside_the_runtime_runs_the_hook() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("event");
        let hooks = Hooks::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo $OAUTH_POLLER_EVENT > {}", out.display()),
            ],
            rt.handle().clone(),
        );
        let from_thread = hooks.clone();
        std::thread::spawn(move || {
            from_thread.event(Event {
                kind: EventKind::NeedsReauth,
                account: "a",
                endpoint: None,
                detail: "",
                failures: None,
            })
        })
        .join()
        .unwrap();
        rt.block_on(hooks.wait());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "needs_reauth\n");
    }
}
