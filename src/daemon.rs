//! The daemon: wiring, reload, shutdown, systemd notifications.
//!
//! [`run`] takes its control channel as an argument (mini-redis style), so tests and `demo`
//! drive it without signals; `main` feeds it from SIGTERM/SIGINT/SIGHUP.

use crate::config::{self, AuthKind, Config};
use crate::error::Error;
use crate::hooks::Hooks;
use crate::leases::Leases;
use crate::metrics::{AccountReading, Metrics, Readings};
use crate::poller::{start_offsets, Poller};
use crate::store::{Database, PollWriter};
use crate::tokens::{seed_from_file, SeedOutcome, Tokens};
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Reload,
    Stop,
}

/// Where `run` reads its configuration again on reload.
pub struct Source {
    pub config_path: PathBuf,
    pub database: Option<PathBuf>,
}

/// Runs until `control` says stop (or closes). A reload with a bad configuration is refused
/// and the old one keeps running.
pub async fn run(
    mut config: Config,
    source: Source,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), Error> {
    prepare(&config)?;
    let mut _presence = hold_presence(&config.daemon.database);
    // Both outlive a reload: counters keep counting, and a hook still running is not killed.
    let metrics = Arc::new(Metrics::new());
    let hooks = Hooks::new(
        config.daemon.on_event.clone(),
        tokio::runtime::Handle::current(),
    );
    let context = |config: &Config| Context {
        hooks: hooks.with_on_event(config.daemon.on_event.clone()),
        metrics: metrics.clone(),
        // A poll waits this long at most for another process's refresh of its account (a
        // stuck holder would otherwise cost the endpoint its ticks); then the old token
        // while valid, else the poll fails and the next tick tries again.
        refresh_lock_wait: config.daemon.timeout.min(DAEMON_REFRESH_LOCK_WAIT),
    };
    let mut running = Running::start(&config, context(&config))?;
    notify(&[NotifyState::Ready]);
    tracing::info!(accounts = config.accounts.len(),
        endpoints = config.accounts.iter().map(|a| a.endpoints.len()).sum::<usize>(),
        database = %config.daemon.database, "oauth-poller started");
    loop {
        match control.recv().await {
            None | Some(Control::Stop) => {
                notify(&[NotifyState::Stopping]);
                tracing::info!("stopping");
                running.stop().await;
                tracing::info!("stopped");
                return Ok(());
            }
            Some(Control::Reload) => {
                notify(&[
                    NotifyState::Reloading,
                    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
                ]);
                match config::load(&source.config_path, source.database.as_deref())
                    .map_err(Error::from)
                {
                    Ok(new) => {
                        // The new configuration's store (and its key) is opened only once
                        // the old one has stopped writing: a refresh in flight must not
                        // commit with the old key into a store the new key has converted.
                        running.stop().await;
                        match prepare(&new).and_then(|()| Running::start(&new, context(&new))) {
                            Ok(r) => {
                                running = r;
                                if new.daemon.database != config.daemon.database {
                                    _presence = hold_presence(&new.daemon.database);
                                }
                                config = new;
                                tracing::info!(
                                    accounts = config.accounts.len(),
                                    "configuration reloaded"
                                );
                            }
                            // E.g. its key does not open the store, or its metrics_listen
                            // port is taken: back to the old one.
                            Err(e) => {
                                tracing::error!(error = %e, "new configuration refused; the old one keeps running");
                                running = Running::start(&config, context(&config))?;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "new configuration refused; the old one keeps running")
                    }
                }
                notify(&[NotifyState::Ready]);
            }
        }
    }
}

/// Marks the database as served by a running daemon, for `status`. Not fatal: the daemon
/// works without it, only `status` cannot tell.
/// A PostgreSQL store has none: instances on many hosts share it.
fn hold_presence(database: &Database) -> Option<crate::running::Presence> {
    let database = database.file()?;
    crate::running::Presence::hold(database)
        .inspect_err(|e| {
            tracing::warn!(file = %crate::running::lock_path(database).display(), error = %e,
                "cannot hold the presence lock: `status` will not see that the daemon runs")
        })
        .ok()
}

/// Opens (creating, migrating) the store and imports seed files of accounts that have no
/// token yet. A seed file is never read again once the account has a token.
pub fn prepare(config: &Config) -> Result<(), Error> {
    for account in &config.accounts {
        prepare_one(config, account)?;
    }
    Ok(())
}

/// [`prepare`] for one account.
pub fn prepare_one(config: &Config, account: &config::Account) -> Result<(), Error> {
    let store = config.store().open()?;
    let Some(seed) = account
        .seed_file
        .as_ref()
        .filter(|_| account.auth == AuthKind::Oauth2)
    else {
        return Ok(());
    };
    if store.token(&account.name)?.is_some() {
        return Ok(());
    }
    if !seed.exists() {
        // A seed is one way to a first token among several (a fallback grant, `authorize`,
        // `oauth-poller seed` while running): its absence fails nothing. Say so only when
        // the configuration names no other way.
        if let Some(warning) = missing_seed_warning(config, account) {
            tracing::warn!("{warning}");
        }
        return Ok(());
    }
    if let SeedOutcome::Stored { generation } =
        seed_from_file(&config.store(), account, seed, false)?
    {
        tracing::info!(account = %account.name, file = %seed.display(), generation, "imported the seed file");
    }
    Ok(())
}

/// How long a stop waits for a token request in flight before abandoning it. The unit's
/// `TimeoutStopSec=10s` is shorter than the default token `timeout` (30 s): a request
/// left to time out would be SIGKILLed, perhaps between the provider's answer and its
/// commit. Abandoned before the answer, the stored refresh token stays the one to use; an
/// answer received in time is journaled and committed, well within the stop timeout.
pub const REFRESH_GRACE: Duration = Duration::from_secs(5);

/// When `account`'s seed file does not exist and nothing else in the configuration can
/// obtain a first token (no fallback `grant`, no `authorize_url`), the message that says
/// so, naming the file, line and key.
pub fn missing_seed_warning(config: &Config, account: &config::Account) -> Option<String> {
    let seed = account.seed_file.as_ref()?;
    let o = account.oauth2.as_ref()?;
    if seed.exists() || o.grant != config::FallbackGrant::RefreshToken || o.authorize_url.is_some()
    {
        return None;
    }
    let mut e = crate::error::InputError::new(
        config.path.display().to_string(),
        format!(
            "the seed file {} does not exist, and account `{}` has no other way to a first token: create it, or run `oauth-poller --config {} seed {} FILE`",
            seed.display(),
            account.name,
            config.path.display(),
            account.name
        ),
    )
    .key(format!("account[{}].seed_file", account.name));
    e.line = account.seed_file_line;
    Some(e.to_string())
}

/// What the parts of one configuration share besides the configuration: built by the daemon
/// (or a command) and passed down.
pub struct Context {
    pub hooks: Hooks,
    pub metrics: Arc<Metrics>,
    /// How long a refresh waits for another process's refresh of the same account.
    pub refresh_lock_wait: Duration,
}

/// The daemon's [`Context::refresh_lock_wait`] (at most `timeout`).
const DAEMON_REFRESH_LOCK_WAIT: Duration = Duration::from_secs(1);

impl Context {
    /// For a command run once (`poll-once`, `token`): its own hooks and (unread) metrics; it
    /// waits for another process's refresh as long as a token request may take.
    pub fn for_command(config: &Config) -> Context {
        Context {
            hooks: Hooks::new(
                config.daemon.on_event.clone(),
                tokio::runtime::Handle::current(),
            ),
            metrics: Arc::new(Metrics::new()),
            refresh_lock_wait: config.daemon.timeout,
        }
    }
}

/// The endpoint tasks of one configuration.
struct Running {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    tokens: Tokens,
    writer: Arc<PollWriter>,
}

impl Running {
    fn start(config: &Config, context: Context) -> Result<Running, Error> {
        let leases = match config.store().lease_store() {
            Some(store) => Leases::shared(
                store,
                config.accounts.iter().map(|a| a.name.clone()).collect(),
                config.daemon.lease_ttl,
            ),
            None => Leases::Solo,
        };
        let (poller, accounts) = build(config, context, leases.clone())?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let all: Vec<_> = accounts
            .iter()
            .flat_map(|a| a.endpoints.iter().map(move |e| (a.clone(), e.clone())))
            .collect();
        let offsets = start_offsets(&all.iter().map(|(_, e)| e.interval).collect::<Vec<_>>());
        // One origin for every schedule: a task that starts late (10,000 of them take a
        // while to start) still keeps its place, instead of shifting its whole schedule.
        let origin = tokio::time::Instant::now();
        for ((account, endpoint), offset) in all.into_iter().zip(offsets) {
            tasks.spawn(poller.clone().run_endpoint(
                account,
                endpoint,
                origin + offset,
                rx.clone(),
            ));
        }
        for account in &accounts {
            let tokens = poller.tokens.clone();
            tasks.spawn(watch_refresh_expiry(
                tokens,
                account.name.clone(),
                rx.clone(),
            ));
        }
        let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
        if let Some(addr) = &config.daemon.metrics_listen {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| {
                    Error::runtime(format!("cannot listen on metrics_listen {addr}: {e}"))
                })?;
            let mut stop = rx.clone();
            let stopped = async move {
                let _ = stop.changed().await;
            };
            tasks.spawn(crate::metrics::serve(
                listener,
                poller.metrics.clone(),
                readings(poller.tokens.clone(), names.clone(), poller.leases.clone()),
                poller.writer.health().clone(),
                stopped,
            ));
            tracing::info!(%addr, "serving /metrics and /healthz");
        }
        tasks.spawn(poller.leases.clone().keep(rx.clone()));
        tasks.spawn(supervise(poller.clone(), names, rx.clone()));
        Ok(Running {
            shutdown,
            tasks,
            tokens: poller.tokens.clone(),
            writer: poller.writer.clone(),
        })
    }

    /// Stops the endpoint tasks (polls in flight are abandoned), lets a refresh in flight
    /// commit (one whose answer has not come within [`REFRESH_GRACE`] is abandoned), and
    /// flushes the poll rows.
    async fn stop(mut self) {
        self.tokens.abandon_requests_after(REFRESH_GRACE);
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(2), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
        self.tokens.wait_idle().await;
        let writer = self.writer.clone();
        let _ = tokio::task::spawn_blocking(move || writer.flush()).await;
    }
}

/// What a scrape of `/metrics` or `/healthz` reads of each account.
fn readings(tokens: Tokens, accounts: Vec<String>, leases: Leases) -> Readings {
    Arc::new(move || {
        accounts
            .iter()
            .map(|name| AccountReading {
                account: name.clone(),
                needs_token: tokens.needs_token(name),
                refusing: tokens.refusing(name),
                token: tokens.read(name).ok().flatten(),
                leased: leases.held().map(|_| leases.owns(name)),
            })
            .collect()
    })
}

/// Keeps systemd informed: `WATCHDOG=1` while the schedule keeps its promises (a stuck
/// endpoint loop or a stopped process stops the pings, and systemd restarts us), and a
/// one-line `STATUS=` summary.
async fn supervise(
    poller: Arc<Poller>,
    accounts: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(Duration::from_secs(10), |w| {
        (w / 2).min(Duration::from_secs(10))
    });
    let mut stuck_logged = false;
    loop {
        if watchdog.is_some() {
            match poller.overdue(Duration::from_secs(5)) {
                None => {
                    notify(&[NotifyState::Watchdog]);
                    stuck_logged = false;
                }
                Some(late) if !stuck_logged => {
                    tracing::error!(
                        late_s = late.as_secs(),
                        "an endpoint loop is stuck: no longer pinging the systemd watchdog"
                    );
                    stuck_logged = true;
                }
                Some(_) => {}
            }
        }
        // The status line reads the store: on a blocking thread, and not waited for beyond
        // a period, so that a slow disk or a held lock never delays the watchdog.
        let (p, a) = (poller.clone(), accounts.clone());
        let status = tokio::task::spawn_blocking(move || notify_status_line(&p, &a));
        tokio::select! {
            _ = async {
                let _ = tokio::time::timeout(period, status).await;
                tokio::time::sleep(period).await;
            } => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn notify_status_line(poller: &Poller, accounts: &[String]) {
    use std::sync::atomic::Ordering::Relaxed;
    let reauth = accounts
        .iter()
        .filter(|a| {
            matches!(poller.tokens.read(a), Ok(Some(r)) if r.state == crate::store::TokenState::NeedsReauth)
        })
        .count();
    let mut line = format!("{} account(s) ok", accounts.len() - reauth);
    if let Some(outage) = poller.writer.health().state().outage() {
        line = format!("{outage}; {line}");
    }
    if reauth > 0 {
        line.push_str(&format!(", {reauth} need re-authorization"));
    }
    if let Some(held) = poller.leases.held() {
        line.push_str(&format!(", {held} leased to this instance"));
    }
    line.push_str(&format!(
        "; {} polls ok, {} failed, {} ticks skipped",
        poller.polls_ok.load(Relaxed),
        poller.polls_failed.load(Relaxed),
        poller.skipped_ticks.load(Relaxed)
    ));
    notify(&[NotifyState::Status(&line)]);
}

/// Checks each hour (and at start) whether the account's refresh token expires within
/// `refresh_warning`; the warning itself is given at most once a day.
async fn watch_refresh_expiry(
    tokens: Tokens,
    account: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (t, a) = (tokens.clone(), account.clone());
        let _ = tokio::task::spawn_blocking(move || t.check_refresh_expiry(&a)).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The shared parts every poll uses.
/// `leases`: which accounts this process may poll ([`Leases::Solo`] for a command run once).
pub fn build(
    config: &Config,
    context: Context,
    leases: Leases,
) -> Result<(Arc<Poller>, Vec<Arc<config::Account>>), Error> {
    // One handle: the token reads and the poll writer share what it knows of the store.
    let store = match leases.fence() {
        Some(fence) => config.store().fenced(fence),
        None => config.store(),
    };
    let accounts: Vec<Arc<config::Account>> = config
        .accounts
        .iter()
        .map(|a| Arc::new(clone_account(a)))
        .collect();
    let tokens = Tokens::new(
        &store,
        &accounts,
        config.daemon.timeout,
        context.refresh_lock_wait,
        context.hooks.clone(),
        context.metrics.clone(),
    )?;
    let writer =
        Arc::new(store.poll_writer(config.daemon.keep_history, config.daemon.poll_buffer)?);
    let poller = Arc::new(Poller::new(
        tokens,
        writer,
        config.daemon.clone(),
        context.hooks,
        context.metrics,
        leases,
    )?);
    Ok((poller, accounts))
}

pub fn clone_account(a: &config::Account) -> config::Account {
    config::Account {
        name: a.name.clone(),
        base_url: a.base_url.clone(),
        auth: a.auth,
        header_scheme: a.header_scheme.clone(),
        seed_file: a.seed_file.clone(),
        seed_file_line: a.seed_file_line,
        refresh_margin: a.refresh_margin,
        refresh_warning: a.refresh_warning,
        allow_http: a.allow_http,
        oauth2: a.oauth2.as_ref().map(|o| config::OAuth2 {
            token_url: o.token_url.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            client_auth: o.client_auth,
            token_request: o.token_request,
            scope: o.scope.clone(),
            grant: o.grant,
            username: o.username.clone(),
            password: o.password.clone(),
            authorize_url: o.authorize_url.clone(),
            redirect_uri: o.redirect_uri.clone(),
            pkce: o.pkce,
        }),
        api_key: a.api_key.clone(),
        endpoints: a.endpoints.clone(),
    }
}

fn notify(state: &[NotifyState]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(state);
}

/// Forwards SIGTERM/SIGINT (stop) and SIGHUP (reload) to a control channel.
pub fn signal_control() -> Result<mpsc::Receiver<Control>, Error> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::runtime(format!("cannot install signal handlers: {e}")))?;
    let (tx, rx) = mpsc::channel(8);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let control = if sig == SIGHUP {
                    Control::Reload
                } else {
                    Control::Stop
                };
                if tx.blocking_send(control).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::runtime(format!("cannot start the signal thread: {e}")))?;
    Ok(rx)
}

/// `poll-once`: every endpoint (of one account, or all) once; false if any poll failed or
/// an account needs re-authorization.
pub async fn poll_once(config: &Config, only: Option<&str>) -> Result<bool, Error> {
    if let Some(name) = only {
        if !config.accounts.iter().any(|a| a.name == name) {
            return Err(Error::Input(
                crate::error::InputError::new(
                    config.path.display().to_string(),
                    format!("no account named `{name}`"),
                )
                .key("account"),
            ));
        }
    }
    prepare(config)?;
    let (poller, accounts) = build(config, Context::for_command(config), Leases::Solo)?;
    let mut set = JoinSet::new();
    for account in accounts
        .into_iter()
        .filter(|a| only.is_none_or(|o| o == a.name))
    {
        for endpoint in account.endpoints.clone() {
            let poller = poller.clone();
            let account = account.clone();
            set.spawn(async move {
                // The last stored body, as `run` starts from: otherwise every poll-once
                // counts as a change (and runs `on_change`, and stores the body again).
                let last_hash = poller
                    .tokens
                    .with_store(|s| s.last_body_hash(&account.name, &endpoint.name))
                    .unwrap_or(None);
                let mut state = crate::poller::EndpointState {
                    last_hash,
                    ..Default::default()
                };
                poller.poll(&account, &endpoint, &mut state).await.outcome
            });
        }
    }
    let mut all_ok = true;
    while let Some(r) = set.join_next().await {
        all_ok &= matches!(r, Ok(crate::poller::Outcome::Ok));
    }
    let writer = poller.writer.clone();
    let _ = tokio::task::spawn_blocking(move || writer.flush()).await;
    // A timer or cron job driving poll-once must not kill its own hooks, as the end of this
    // runtime would.
    poller.hooks.wait().await;
    // Outside the service, which store was written is not obvious: say it.
    tracing::info!(database = %config.daemon.database, "poll results stored");
    Ok(all_ok)
}
