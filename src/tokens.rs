//! Token validity, single-flight refresh and the cross-process lock.
//!
//! One refresh at a time per account: in this process a per-account async mutex, across
//! processes a `flock` on a lock file beside the database. Under both, the stored row is
//! read again (under SQLite's write lock, for milliseconds) and the refresh happens only if
//! it is still the one that needed refreshing (same `generation`). The answer is committed
//! (fsync) under the write lock again, before anyone uses it, unless an operator replaced
//! the row meanwhile. The write lock is never held across the request to the provider, and
//! SQLite work runs on blocking threads, never on the runtime thread that keeps the
//! schedule and the watchdog.

use crate::config::{Account, AuthKind, FallbackGrant};
use crate::error::{Error, InputError};
use crate::hooks::{EventKind, Hooks};
use crate::metrics::{Metrics, RefreshOutcome};
use crate::oauth::{Grant, TokenClient, TokenError, TokenResponse};
use crate::seed::SeedToken;
use crate::store::{now, Handle, JournalEntry, RefreshGate, Store, TokenRow, TokenState};
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod backoff;
mod commit;
mod kinds;
mod outage;

pub use backoff::backoff_cap;
use backoff::{Backoff, Refusals, REFUSED_CAP};
use commit::{
    commit_if_unchanged, decide, describe_new_token, off_thread, row_from_response, Committed,
    Decision,
};
pub use kinds::{GrantKind, TokenEvent};

/// What a poll needs to authenticate.
pub struct Access {
    /// The whole `Authorization` header value.
    pub authorization: SecretString,
    /// The stored generation this came from (0 for API keys), to tell a 401 on a stale
    /// token from a 401 on a fresh one.
    pub generation: i64,
}

/// Why no usable token could be had.
#[derive(Debug)]
pub enum AccessError {
    /// The account needs a human: a new seed or `authorize`. Endpoints are skipped.
    NeedsReauth(String),
    /// The token endpoint is failing temporarily; try again later.
    Unavailable(String),
    Store(Error),
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::NeedsReauth(m) | AccessError::Unavailable(m) => write!(f, "{m}"),
            AccessError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<Error> for AccessError {
    fn from(e: Error) -> Self {
        AccessError::Store(e)
    }
}

struct AccountSlot {
    account: Arc<Account>,
    flight: Arc<tokio::sync::Mutex<()>>,
    backoff: Mutex<Backoff>,
    cache: Mutex<Option<Cached>>,
    /// The last token read or committed, kept after `cache` is forgotten: what polls use
    /// while the store is unavailable (see [`outage`]). Cleared by a 401.
    last: Mutex<Option<Cached>>,
    /// A provider's answer the store could not journal when it arrived (it was unavailable):
    /// journaled before the commit is tried again (see [`outage`]).
    unjournaled: Mutex<Option<JournalEntry>>,
    /// The other process whose token request for this account is waited for, once said in
    /// the log (see [`Decision::InFlight`]).
    waiting_for: Mutex<Option<String>>,
    backoff_cap: Duration,
    refusals: Mutex<Refusals>,
    /// `refusals.steps > 0`, read on every successful poll without taking the lock.
    refusing: AtomicBool,
}

/// The last usable token read from (or written to) the store. Reused for at most
/// [`CACHE_FOR`], so a busy schedule reads the store a few times a second rather than on
/// every poll; expiry is still checked on every use. Another process's change is seen within
/// [`CACHE_FOR`] (a token it revoked meanwhile costs one 401, which clears the cache).
struct Cached {
    read_at: Instant,
    generation: i64,
    access_expires_at: Option<i64>,
    obtained_at: i64,
    authorization: SecretString,
}

const CACHE_FOR: Duration = Duration::from_secs(1);

impl AccountSlot {
    fn cached(&self) -> Option<Access> {
        let cache = self.cache.lock();
        let c = cache.as_ref().filter(|c| c.read_at.elapsed() < CACHE_FOR)?;
        let fresh = fresh_until(&self.account, c.access_expires_at, c.obtained_at, now());
        fresh.then(|| Access {
            authorization: c.authorization.clone(),
            generation: c.generation,
        })
    }

    fn remember(&self, row: &TokenRow, access: &Access) {
        let cached = || Cached {
            read_at: Instant::now(),
            generation: row.generation,
            access_expires_at: row.access_expires_at,
            obtained_at: row.obtained_at,
            authorization: access.authorization.clone(),
        };
        *self.cache.lock() = Some(cached());
        *self.last.lock() = Some(cached());
    }

    fn forget(&self) {
        *self.cache.lock() = None;
    }
}

/// What [`Tokens::commit_attempt`] does with the refresh journal ([`pending`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Journal {
    /// The provider's answer being committed is in it: done with once committed.
    Clear,
    /// The commit stores no answer of the provider: whatever the journal holds stays for
    /// the next refresh to settle.
    Keep,
}

/// What [`Tokens::decide_to_ask`] found.
enum Before<'a> {
    /// No request: this is the answer.
    Answered(Result<Access, AccessError>),
    /// Ask the provider, holding the cross-process refresh lock until the commit.
    Ask {
        attempt: Box<Attempt<'a>>,
        lock: RefreshGate,
    },
}

/// One request to the token endpoint under way: what the steps after the decision share.
struct Attempt<'a> {
    slot: &'a AccountSlot,
    /// The stored row it starts from (None: no token is stored).
    row: Option<TokenRow>,
    /// The row's generation (0 without one): the commit is dropped if it has moved on.
    generation: i64,
    /// When the request was sent (Unix time): the new token's expiries count from it.
    started: i64,
    /// The same moment on the monotonic clock, for the backoff.
    clock: Instant,
    /// The token is known to be rejected (a 401).
    force: bool,
    /// Another process's request from the same row left no answer (it is named): the
    /// refresh token may be spent.
    unanswered: Option<String>,
}

/// Hands out valid tokens for every configured account, refreshing as needed.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    db: Handle,
    store: Mutex<Store>,
    client: TokenClient,
    accounts: HashMap<String, AccountSlot>,
    hooks: Hooks,
    metrics: Arc<Metrics>,
    /// Set at shutdown: when token requests still in flight are abandoned.
    abandon_at: watch::Sender<Option<tokio::time::Instant>>,
    /// How long a refresh waits for another process's refresh of the same account: its
    /// context's `refresh_lock_wait` (short for the daemon's polls, `timeout` for a command).
    refresh_lock_wait: Duration,
}

/// How often a refresh waiting for another process's refresh of the same account looks
/// again: waiting this way (not in a blocking `flock`) can be abandoned at shutdown.
const LOCK_POLL: Duration = Duration::from_millis(50);

impl Tokens {
    pub fn new(
        db: &Handle,
        accounts: &[Arc<Account>],
        timeout: Duration,
        refresh_lock_wait: Duration,
        hooks: Hooks,
        metrics: Arc<Metrics>,
    ) -> Result<Tokens, Error> {
        let store = db.open()?;
        let slots = accounts
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    AccountSlot {
                        account: a.clone(),
                        flight: Arc::new(tokio::sync::Mutex::new(())),
                        backoff: Mutex::new(Backoff::default()),
                        cache: Mutex::new(None),
                        last: Mutex::new(None),
                        unjournaled: Mutex::new(None),
                        waiting_for: Mutex::new(None),
                        backoff_cap: backoff_cap(a),
                        refusals: Mutex::new(Refusals::default()),
                        refusing: AtomicBool::new(false),
                    },
                )
            })
            .collect();
        Ok(Tokens {
            inner: Arc::new(Inner {
                db: db.clone(),
                store: Mutex::new(store),
                client: TokenClient::new(timeout)?,
                accounts: slots,
                hooks,
                metrics,
                abandon_at: watch::Sender::new(None),
                refresh_lock_wait,
            }),
        })
    }

    fn slot(&self, name: &str) -> Result<&AccountSlot, AccessError> {
        self.inner
            .accounts
            .get(name)
            .ok_or_else(|| AccessError::Store(Error::runtime(format!("unknown account `{name}`"))))
    }

    /// Whether the account keeps an OAuth2 token in the store (API-key accounts do not).
    pub fn needs_token(&self, name: &str) -> bool {
        self.slot(name)
            .is_ok_and(|s| s.account.auth == AuthKind::Oauth2)
    }

    pub fn read(&self, name: &str) -> Result<Option<TokenRow>, Error> {
        self.inner.store.lock().token(name)
    }

    /// [`Tokens::read`] on a blocking thread: the runtime thread keeps the schedule and the
    /// watchdog, and a read may wait for a checkpoint or a slow disk.
    async fn read_off_thread(&self, name: &str) -> Result<Option<TokenRow>, Error> {
        let (this, name) = (self.clone(), name.to_string());
        off_thread(move || this.read(&name)).await
    }

    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.inner.store.lock())
    }

    /// A token to use now: the stored one while valid, else a refreshed one.
    pub async fn access(&self, name: &str) -> Result<Access, AccessError> {
        let slot = self.slot(name)?;
        let account = &slot.account;
        if account.auth == AuthKind::ApiKey {
            let key = account
                .api_key
                .as_ref()
                .map(|k| k.expose_secret())
                .unwrap_or("");
            return Ok(Access {
                authorization: SecretString::from(account.authorization(key)),
                generation: 0,
            });
        }
        if let Some(access) = slot.cached() {
            return Ok(access);
        }
        if let Some(access) = self.while_store_down(slot) {
            return Ok(access);
        }
        let row = match self.read_off_thread(name).await {
            Ok(row) => row,
            Err(e) => return self.while_store_down(slot).ok_or(AccessError::Store(e)),
        };
        match &row {
            Some(r) if r.state == TokenState::NeedsReauth => Err(needs_reauth_error(account, r)),
            Some(r) if usable(account, r, now()) => {
                let access = access_of(account, r);
                slot.remember(r, &access);
                Ok(access)
            }
            // Boxed: the refresh's state is large, and every endpoint task would otherwise
            // carry room for it while it sleeps, so the daemon's memory would grow with its
            // endpoints for a path that runs rarely. Boxed, it costs only while refreshing.
            _ => Box::pin(self.refresh(name, row.map(|r| r.generation), false)).await,
        }
    }

    /// The API answered 401 to a token of `generation`: refresh once unless someone
    /// already did.
    pub async fn unauthorized(&self, name: &str, generation: i64) -> Result<Access, AccessError> {
        let slot = self.slot(name)?;
        if slot.account.auth == AuthKind::ApiKey {
            return Err(AccessError::Unavailable(
                "the API rejected the API key (401)".into(),
            ));
        }
        slot.forget();
        *slot.last.lock() = None;
        self.refresh(name, Some(generation), true).await
    }

    /// While the API refuses freshly refreshed tokens of the account: how long until a 401
    /// may cause a refresh again.
    pub fn refusal_backoff(&self, name: &str) -> Option<Duration> {
        let slot = self.slot(name).ok()?;
        if !slot.refusing.load(Ordering::Relaxed) {
            return None;
        }
        slot.refusals.lock().waiting()
    }

    /// Whether the API is refusing the account's freshly refreshed tokens (for metrics).
    pub fn refusing(&self, name: &str) -> bool {
        self.slot(name)
            .is_ok_and(|s| s.refusing.load(Ordering::Relaxed))
    }

    /// The API answered 401 to the token [`Tokens::unauthorized`] had just handed out:
    /// backs off (growing, capped) before a 401 may refresh again. Said once in the log and
    /// as a `rejected` token event (which `status` shows), until the API accepts a token.
    pub async fn refused_fresh(&self, name: &str, generation: i64) {
        let Ok(slot) = self.slot(name) else { return };
        let refused = slot.refusals.lock().refuse(generation);
        let Some((steps, wait)) = refused else { return };
        slot.refusing.store(true, Ordering::Relaxed);
        if steps > 1 {
            tracing::debug!(
                account = name,
                wait_s = wait.as_secs(),
                "the API still refuses a freshly refreshed token"
            );
            return;
        }
        let detail = format!(
            "the API refuses freshly refreshed tokens (401): not a token problem (permissions, scope or the API itself); a 401 refreshes at most once per {}s, doubling up to {}s",
            wait.as_secs(),
            REFUSED_CAP.as_secs()
        );
        tracing::error!(account = name, "{detail}");
        self.record_event(name, TokenEvent::Rejected, detail).await;
    }

    /// Records a token event on a blocking thread. A failure is logged, not returned: the
    /// event repeats what the log already said, and the caller's outcome does not wait on it.
    async fn record_event(&self, name: &str, event: TokenEvent, detail: String) {
        let (db, owned) = (self.inner.db.clone(), name.to_string());
        let recorded = off_thread(move || {
            db.lock(&owned)?
                .commit_event(&owned, event.as_str(), &detail)
        })
        .await;
        if let Err(e) = recorded {
            tracing::warn!(account = name, event = event.as_str(), error = %e, "token event not recorded");
        }
    }

    /// The API accepted the account's token: ends a refusal backoff.
    pub fn accepted(&self, name: &str) {
        let Ok(slot) = self.slot(name) else { return };
        // Called on every successful poll: a plain load while nothing is refused.
        if !slot.refusing.load(Ordering::Relaxed) || !slot.refusing.swap(false, Ordering::Relaxed) {
            return;
        }
        *slot.refusals.lock() = Refusals::default();
        tracing::info!(account = name, "the API accepts the token again");
    }

    /// Refreshes (or obtains) the account's token unless the stored row has moved on from
    /// `seen` and is usable. `force`: the token is known to be rejected (a 401).
    async fn refresh(
        &self,
        name: &str,
        seen: Option<i64>,
        force: bool,
    ) -> Result<Access, AccessError> {
        let slot = self.slot(name)?;
        slot.forget();
        let flight = slot.flight.clone().lock_owned().await;
        // In a task of its own: a poll cancelled at shutdown must not drop a refresh between
        // the server's answer and the commit (that would lose a rotated refresh token).
        let this = self.clone();
        let name = name.to_string();
        let result = tokio::spawn(async move {
            let _flight = flight;
            this.refresh_locked(&name, seen, force).await
        })
        .await
        .unwrap_or_else(|e| {
            Err(AccessError::Store(Error::runtime(format!(
                "refresh task failed: {e}"
            ))))
        });
        // No refresh without the store: the old token while it is valid.
        match result {
            Err(AccessError::Store(e)) => self.while_store_down(slot).ok_or(AccessError::Store(e)),
            r => r,
        }
    }

    /// At shutdown: token requests still unanswered `grace` from now are abandoned (the
    /// old refresh token stays stored; an answer already received is committed first), so
    /// that stopping ends within the service's stop timeout.
    pub fn abandon_requests_after(&self, grace: Duration) {
        self.inner
            .abandon_at
            .send_replace(Some(tokio::time::Instant::now() + grace));
    }

    /// Waits for every refresh in flight to finish (at shutdown).
    pub async fn wait_idle(&self) {
        for slot in self.inner.accounts.values() {
            let _ = slot.flight.lock().await;
        }
    }

    /// `fut`, unless shutdown abandons it first.
    async fn unless_abandoned<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, TokenError>>,
    ) -> Result<T, TokenError> {
        let mut rx = self.inner.abandon_at.subscribe();
        let abandoned = async move {
            loop {
                let at = *rx.borrow_and_update();
                match at {
                    Some(at) => return tokio::time::sleep_until(at).await,
                    None if rx.changed().await.is_err() => std::future::pending().await,
                    None => {}
                }
            }
        };
        tokio::select! {
            r = fut => r,
            _ = abandoned => Err(TokenError::temporary(
                "shutdown",
                "abandoned at shutdown before the token endpoint answered (the stored refresh token is kept)",
            )),
        }
    }

    /// Takes the account's cross-process refresh lock, waiting while another process
    /// refreshes it, for at most `refresh_lock_wait` (None after that: a poll does not wait on a
    /// holder that may be stuck, paused or cut off).
    async fn refresh_lock(&self, name: &str) -> Result<Option<RefreshGate>, AccessError> {
        let mut gate = {
            let (db, name) = (self.inner.db.clone(), name.to_string());
            off_thread(move || db.refresh_gate(&name)).await?
        };
        let give_up = tokio::time::Instant::now() + self.inner.refresh_lock_wait;
        let wait = async {
            loop {
                match gate.try_take() {
                    Ok(true) => return Ok(true),
                    Ok(false) if tokio::time::Instant::now() >= give_up => return Ok(false),
                    Ok(false) => tokio::time::sleep(LOCK_POLL).await,
                    Err(e) => {
                        return Err(TokenError::temporary(
                            "lock",
                            format!("cannot take the refresh lock: {e}"),
                        ))
                    }
                }
            }
        };
        match self.unless_abandoned(wait).await {
            Ok(true) => Ok(Some(gate)),
            Ok(false) => Ok(None),
            Err(e) => Err(AccessError::Unavailable(e.to_string())),
        }
    }

    /// A refresh under the account's flight: decide, ask the provider, commit, report. The
    /// cross-process lock is held from the decision to the commit.
    async fn refresh_locked(
        &self,
        name: &str,
        seen: Option<i64>,
        force: bool,
    ) -> Result<Access, AccessError> {
        let slot = self.slot(name)?;
        let (attempt, _refresh_lock) = match self.decide_to_ask(slot, seen, force).await? {
            Before::Answered(result) => return result,
            Before::Ask { attempt, lock } => (*attempt, lock),
        };
        let (grant, answer) = self.ask_provider(&attempt).await?;
        if answer.is_err() {
            // Nothing to wait for: another process may ask at once.
            let (db, name) = (self.inner.db.clone(), name.to_string());
            let _ = off_thread(move || {
                db.request_ended(&name);
                Ok(())
            })
            .await;
        }
        match answer {
            Ok(response) => self.commit_answer(attempt, grant, response).await,
            Err(e) if !e.is_permanent() => self.report_temporary_failure(attempt, grant, e).await,
            Err(e) => self.record_needs_reauth(attempt, grant, e).await,
        }
    }

    /// Step 1: whether to ask the provider at all. Not if someone refreshed meanwhile, while
    /// backing off, or when the store says otherwise (see [`decide`]); else takes the
    /// cross-process refresh lock and says what the request starts from.
    async fn decide_to_ask<'a>(
        &self,
        slot: &'a AccountSlot,
        seen: Option<i64>,
        force: bool,
    ) -> Result<Before<'a>, AccessError> {
        let account = &slot.account;
        let name = account.name.as_str();
        // Someone in this process may have refreshed while we waited for the flight.
        if let Some(row) = self.read_off_thread(name).await? {
            if moved_on(account, &row, seen) {
                return Ok(Before::Answered(Ok(access_of(account, &row))));
            }
        }
        let waiting = slot.backoff.lock().waiting();
        if let Some(wait) = waiting {
            return Ok(Before::Answered(
                self.while_backing_off(account, force, wait).await,
            ));
        }

        // One refresh of the account at a time across processes; the database's write lock
        // is taken only to decide and to commit, never across the request.
        let Some(lock) = self.refresh_lock(name).await? else {
            tracing::debug!(account = name, waited_ms = self.inner.refresh_lock_wait.as_millis() as u64,
                "another process holds this account's refresh lock (a refresh of its own, or it is stuck): not refreshed now (the old token stays in use while valid; the next poll tries again)");
            return Ok(Before::Answered(
                self.while_in_flight_elsewhere(account, "another process holding the refresh lock")
                    .await,
            ));
        };
        let decision = {
            let (db, account) = (self.inner.db.clone(), account.clone());
            off_thread(move || decide(&db, &account, seen, force)).await?
        };
        let (row, unanswered) = match decision {
            Decision::Use(row) => return Ok(Before::Answered(Ok(access_of(account, &row)))),
            Decision::NeedsReauth(row) => {
                return Ok(Before::Answered(Err(needs_reauth_error(account, &row))))
            }
            Decision::NoRoom(e) => {
                tracing::error!(account = name, error = %e,
                    "cannot reserve room for a new token in the database: refresh postponed (the old token stays in use while valid)");
                let waited = self
                    .while_backing_off(account, force, Duration::from_secs(1))
                    .await;
                return Ok(Before::Answered(waited));
            }
            Decision::InFlight { requester, alive } => {
                let said = slot.waiting_for.lock().replace(requester.clone());
                if said.as_ref() != Some(&requester) {
                    tracing::warn!(account = name, requester = %requester, alive,
                        "a token request another process sent for this account may still be answered: waiting for its answer (the old token stays in use while valid)");
                }
                return Ok(Before::Answered(
                    self.while_in_flight_elsewhere(account, &requester).await,
                ));
            }
            Decision::Request { from, unanswered } => (from, unanswered),
        };
        slot.waiting_for.lock().take();
        let attempt = Attempt {
            slot,
            generation: row.as_ref().map_or(0, |r| r.generation),
            row,
            started: now(),
            clock: Instant::now(),
            force,
            unanswered,
        };
        Ok(Before::Ask {
            attempt: Box::new(attempt),
            lock,
        })
    }

    /// Step 2: asks the token endpoint with the refresh token, and after a permanent failure
    /// with the account's fallback grant, if any. A 2xx answer is journaled as it arrives
    /// (see [`pending`]), before it is parsed.
    async fn ask_provider(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<(GrantKind, Result<TokenResponse, TokenError>), AccessError> {
        let account = &attempt.slot.account;
        let name = account.name.as_str();
        let oauth = account
            .oauth2
            .as_ref()
            .ok_or_else(|| Error::runtime("oauth2 account without [account.oauth2]"))?;
        let fallback = match oauth.grant {
            FallbackGrant::Password => Some(Grant::Password),
            FallbackGrant::ClientCredentials => Some(Grant::ClientCredentials),
            FallbackGrant::RefreshToken => None,
        };
        // Always tried, whatever the stored refresh expiry says: the local clock may have
        // jumped, and only the provider's `invalid_grant` says a refresh token is dead. But
        // not after another process's request from it left no answer, when the account has a
        // grant of its own: presenting a refresh token the provider spent is what it takes
        // for theft (some revoke every token of the grant).
        let refresh_token = attempt
            .row
            .as_ref()
            .and_then(|r| r.refresh_token.as_ref())
            .filter(|_| attempt.unanswered.is_none() || fallback.is_none());
        if let (Some(requester), Some(grant)) = (&attempt.unanswered, &fallback) {
            tracing::warn!(account = name, requester = %requester, grant = GrantKind::of(grant).as_str(),
                "the refresh token may have been spent by a token request that left no answer: obtaining a new token with the fallback grant instead");
        }
        let journal = |grant: GrantKind| {
            let db = self.inner.db.clone();
            let name = name.to_string();
            let (generation, started) = (attempt.generation, attempt.started);
            let unjournaled = &attempt.slot.unjournaled;
            move |status: u16, body: &[u8]| {
                if (200..300).contains(&status) {
                    let entry = JournalEntry {
                        generation,
                        started,
                        grant: grant.as_str().to_string(),
                        body: zeroize::Zeroizing::new(body.to_vec()),
                    };
                    if !db.journal_write(&name, &entry) {
                        *unjournaled.lock() = Some(entry);
                    }
                }
            }
        };
        let mut answer = match refresh_token {
            Some(rt) => {
                tracing::debug!(account = name, "token request sent");
                let grant = Grant::RefreshToken(rt);
                let mut on_body = journal(GrantKind::RefreshToken);
                let request = self.inner.client.request_with(oauth, &grant, &mut on_body);
                let result = self.unless_abandoned(request).await;
                tracing::debug!(
                    account = name,
                    ok = result.is_ok(),
                    "token response received"
                );
                (GrantKind::RefreshToken, result)
            }
            None => (
                GrantKind::RefreshToken,
                Err(no_refresh_token(attempt.row.as_ref())),
            ),
        };
        // A permanent refresh failure falls back to the account's own grant, if any.
        if let Err(e) = &answer.1 {
            if e.is_permanent() {
                if let Some(grant) = fallback {
                    let kind = GrantKind::of(&grant);
                    if refresh_token.is_some() {
                        tracing::warn!(account = name, error = %e, grant = kind.as_str(),
                            "refresh failed permanently; obtaining a new token with the fallback grant");
                    }
                    let mut on_body = journal(kind);
                    let request = self.inner.client.request_with(oauth, &grant, &mut on_body);
                    answer = (kind, self.unless_abandoned(request).await);
                }
            }
        }
        Ok(answer)
    }

    /// Step 3: commits the provider's answer (unless the row was replaced meanwhile), then
    /// removes it from the journal and reports it.
    async fn commit_answer(
        &self,
        attempt: Attempt<'_>,
        grant: GrantKind,
        response: TokenResponse,
    ) -> Result<Access, AccessError> {
        let account = &attempt.slot.account;
        let name = account.name.as_str();
        let db = self.inner.db.clone();
        // The answer is in the journal: the commit below cannot be lost to a crash, and it
        // runs in this task, which shutdown waits for.
        let received = Instant::now();
        let old = attempt.row.as_ref();
        let new_row = row_from_response(account, old, response, grant, attempt.started);
        let (event, detail) = describe_new_token(&new_row, old, grant);
        let committed = self
            .commit_answer_when_stored(name, attempt.generation, new_row, event, detail)
            .await?;
        let stored = match committed {
            Committed::Stored(stored) => stored,
            Committed::Superseded { current } => return self.superseded(account, current),
        };
        self.inner.metrics.refresh(name, RefreshOutcome::Ok);
        // Answer-to-commit time, the window in which a crash loses a rotated grant: for the
        // crash test and for debugging, not for the operator's log.
        tracing::debug!(
            account = name,
            commit_us = received.elapsed().as_micros() as u64,
            "token committed"
        );
        attempt.slot.backoff.lock().reset();
        let access = access_of(account, &stored);
        attempt.slot.remember(&stored, &access);
        tracing::info!(
            account = name,
            grant = grant.as_str(),
            generation = stored.generation,
            expires_in_s = stored.access_expires_at.map(|t| t - attempt.started),
            // Outside the service (`token`, `poll-once`), which store was written is not
            // obvious: say it.
            database = %db.shown(),
            "token {}",
            event.as_str()
        );
        Ok(access)
    }

    /// Step 3, after a temporary failure: backs off, records the event, and hands out the
    /// old access token while it lasts.
    async fn report_temporary_failure(
        &self,
        attempt: Attempt<'_>,
        grant: GrantKind,
        e: TokenError,
    ) -> Result<Access, AccessError> {
        let slot = attempt.slot;
        let name = slot.account.name.as_str();
        self.inner
            .metrics
            .refresh(name, RefreshOutcome::TemporaryFailure);
        let delay = slot
            .backoff
            .lock()
            .fail(e.retry_after, slot.backoff_cap, attempt.clock);
        let detail = format!("{grant}: {e}; next try in {}s", delay.as_secs());
        tracing::warn!(account = name, grant = grant.as_str(), error = %e, retry_in_s = delay.as_secs(), "token request failed (temporary)");
        self.record_event(name, TokenEvent::RefreshFailed, detail)
            .await;
        self.while_backing_off(&slot.account, attempt.force, delay)
            .await
    }

    /// Step 3, after a permanent failure: the account needs a human. Stored (unless the row
    /// was replaced meanwhile), logged, and told to `on_event`.
    async fn record_needs_reauth(
        &self,
        attempt: Attempt<'_>,
        grant: GrantKind,
        e: TokenError,
    ) -> Result<Access, AccessError> {
        let account = &attempt.slot.account;
        let name = account.name.as_str();
        self.inner
            .metrics
            .refresh(name, RefreshOutcome::PermanentFailure);
        let fix = fix_command(account);
        let detail = format!("{grant}: {e}; the account needs re-authorization: run {fix}");
        let mut r = attempt
            .row
            .unwrap_or_else(|| TokenRow::new(name, "seed", attempt.started));
        r.state = TokenState::NeedsReauth;
        r.state_detail = Some(detail.clone());
        let committed = self
            .commit_attempt(
                name,
                attempt.generation,
                r,
                TokenEvent::NeedsReauth,
                detail.clone(),
                Journal::Keep,
            )
            .await?;
        if let Committed::Superseded { current } = committed {
            return self.superseded(account, current);
        }
        tracing::error!(account = name, grant = grant.as_str(), error = %e, "token request failed permanently; the account needs re-authorization: run {fix}");
        self.hook(name, EventKind::RefreshFailed, &e.to_string());
        self.hook(name, EventKind::NeedsReauth, &detail);
        Err(AccessError::NeedsReauth(detail))
    }

    /// On a blocking thread, under the database's write lock: stores the attempt's outcome
    /// `row` with its event, unless the stored row has moved on from `from_generation`.
    async fn commit_attempt(
        &self,
        name: &str,
        from_generation: i64,
        row: TokenRow,
        event: TokenEvent,
        detail: String,
        journal: Journal,
    ) -> Result<Committed, Error> {
        let (db, name, generation) = (self.inner.db.clone(), name.to_string(), from_generation);
        off_thread(move || {
            let committed = commit_if_unchanged(&db, &name, generation, |lock| {
                lock.commit_token(&row, event.as_str(), &detail)
            });
            // Removed only once its content is committed (or superseded): a failed commit
            // leaves it for the next attempt.
            if journal == Journal::Clear && committed.is_ok() {
                db.journal_remove(&name);
            }
            committed
        })
        .await
    }

    /// The stored token was replaced while the provider was asked: use the new one.
    fn superseded(
        &self,
        account: &Account,
        current: Option<TokenRow>,
    ) -> Result<Access, AccessError> {
        tracing::warn!(account = %account.name,
            "the stored token was replaced (seed or authorize) while the token endpoint was asked: the replacement stays, the answer is dropped");
        match current {
            Some(r) if r.state == TokenState::NeedsReauth => Err(needs_reauth_error(account, &r)),
            Some(r) => Ok(access_of(account, &r)),
            None => Err(AccessError::Unavailable(
                "the stored token was removed while it was refreshed".into(),
            )),
        }
    }

    /// While the token endpoint is backing off: the old access token while it lasts.
    async fn while_backing_off(
        &self,
        account: &Account,
        force: bool,
        wait: Duration,
    ) -> Result<Access, AccessError> {
        if !force {
            if let Some(access) = self.stored_access_while_valid(account).await? {
                return Ok(access);
            }
        }
        Err(AccessError::Unavailable(format!(
            "no valid access token: the token endpoint is failing, next try in {}s",
            wait.as_secs().max(1)
        )))
    }

    /// While another process's token request for the account may still be answered: the
    /// old access token while it lasts.
    async fn while_in_flight_elsewhere(
        &self,
        account: &Account,
        requester: &str,
    ) -> Result<Access, AccessError> {
        if let Some(access) = self.stored_access_while_valid(account).await? {
            return Ok(access);
        }
        Err(AccessError::Unavailable(format!(
            "no valid access token: waiting for the answer to the token request of {requester}"
        )))
    }

    /// The stored access token, if it has not expired and the account is in good standing.
    async fn stored_access_while_valid(
        &self,
        account: &Account,
    ) -> Result<Option<Access>, AccessError> {
        let row = self.read_off_thread(&account.name).await?;
        Ok(row
            .filter(|row| {
                let not_expired = row.access_expires_at.is_some_and(|t| now() < t);
                row.access_token.is_some() && not_expired && row.state == TokenState::Ok
            })
            .map(|row| access_of(account, &row)))
    }

    /// Warns (once a day) when the refresh token expires within `refresh_warning`.
    pub fn check_refresh_expiry(&self, name: &str) {
        let Ok(slot) = self.slot(name) else { return };
        let Ok(Some(row)) = self.read(name) else {
            return;
        };
        let (Some(expires), t) = (row.refresh_expires_at, now()) else {
            return;
        };
        let warn_within = slot.account.refresh_warning.as_secs() as i64;
        if expires.saturating_sub(t) > warn_within
            || row.refresh_warned_at.is_some_and(|w| t - w < 86400)
        {
            return;
        }
        let left = crate::units::human(expires.saturating_sub(t));
        tracing::warn!(
            account = name,
            expires_in_s = expires.saturating_sub(t),
            "the refresh token expires in {left}: re-authorize before then ({})",
            fix_command(&slot.account)
        );
        self.hook(
            name,
            EventKind::RefreshTokenExpiring,
            &format!("the refresh token expires in {left}"),
        );
        let _ = self.with_store(|s| s.mark_refresh_warned(name, t));
    }

    fn hook(&self, account: &str, kind: EventKind, detail: &str) {
        self.inner.hooks.event(crate::hooks::Event {
            kind,
            account,
            endpoint: None,
            detail,
            failures: None,
        });
    }
}

/// Is the stored access token good to use now?
pub fn usable(account: &Account, row: &TokenRow, now: i64) -> bool {
    if row.access_token.is_none() || row.state != TokenState::Ok {
        return false;
    }
    fresh_until(account, row.access_expires_at, row.obtained_at, now)
}

/// Is a token obtained at `obtained_at` and expiring at `expires_at` still short of its
/// refresh time? The margin is at most half the lifetime: a margin as long as the lifetime
/// would refresh on every poll. Saturating: stored times may come from anywhere.
fn fresh_until(account: &Account, expires_at: Option<i64>, obtained_at: i64, now: i64) -> bool {
    match expires_at {
        None => true,
        Some(exp) => {
            let lifetime = exp.saturating_sub(obtained_at);
            let margin = account.margin_for(Some(lifetime)).min(lifetime / 2).max(0);
            now.saturating_add(margin) < exp
        }
    }
}

fn moved_on(account: &Account, row: &TokenRow, seen: Option<i64>) -> bool {
    seen.is_some_and(|g| row.generation != g) && usable(account, row, now())
}

fn no_refresh_token(row: Option<&TokenRow>) -> TokenError {
    match row {
        None => TokenError::permanent("no_token", "no token is stored for this account"),
        Some(_) => TokenError::permanent(
            "no_refresh_token",
            "the access token was rejected or has expired, and there is no refresh token",
        ),
    }
}

fn access_of(account: &Account, row: &TokenRow) -> Access {
    let token = row
        .access_token
        .as_ref()
        .map(|t| t.expose_secret())
        .unwrap_or("");
    Access {
        authorization: SecretString::from(account.authorization(token)),
        generation: row.generation,
    }
}

fn needs_reauth_error(account: &Account, row: &TokenRow) -> AccessError {
    AccessError::NeedsReauth(row.state_detail.clone().unwrap_or_else(|| {
        format!(
            "the account needs re-authorization: run {}",
            fix_command(account)
        )
    }))
}

/// The command an operator runs to bring the account back.
pub fn fix_command(account: &Account) -> String {
    let name = &account.name;
    match account
        .oauth2
        .as_ref()
        .and_then(|o| o.authorize_url.as_ref())
    {
        Some(_) => format!("`oauth-poller authorize {name}` or `oauth-poller seed {name} FILE`"),
        None => format!("`oauth-poller seed {name} FILE`"),
    }
}

/// What `seed` did.
#[derive(Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    Stored {
        generation: i64,
    },
    /// The store holds a newer token; nothing changed.
    StoreIsNewer,
}

/// Stores a seed token (in one durable transaction under the write lock). Refuses to
/// replace a stored token obtained after the seed was issued unless `force`.
pub fn store_seed(
    db: &Handle,
    account: &str,
    seed: SeedToken,
    force: bool,
) -> Result<SeedOutcome, Error> {
    let lock = db.lock(account)?;
    if let Some(old) = lock.token(account)? {
        if !force && old.obtained_at > seed.issued_at && old.state == TokenState::Ok {
            lock.release();
            return Ok(SeedOutcome::StoreIsNewer);
        }
    }
    let mut row = TokenRow::new(account, "seed", seed.issued_at);
    row.access_token = seed.access_token;
    row.refresh_token = seed.refresh_token;
    row.token_type = seed.token_type;
    row.scope = seed.scope;
    row.access_expires_at = seed.access_expires_at;
    row.refresh_expires_at = seed.refresh_expires_at;
    let detail = format!(
        "access token {}, refresh token {}{}",
        if row.access_token.is_some() {
            "present"
        } else {
            "absent"
        },
        if row.refresh_token.is_some() {
            "present"
        } else {
            "absent"
        },
        seed.user.map(|u| format!(", user {u}")).unwrap_or_default(),
    );
    let stored = lock.commit_token(&row, TokenEvent::Seeded.as_str(), &detail)?;
    Ok(SeedOutcome::Stored {
        generation: stored.generation,
    })
}

/// Reads and stores a seed file for `account`; bad files are input errors (exit 2).
pub fn seed_from_file(
    db: &Handle,
    account: &Account,
    file: &Path,
    force: bool,
) -> Result<SeedOutcome, Error> {
    let seed = crate::seed::parse_seed_file(file, now())?;
    if account.auth == AuthKind::ApiKey {
        return Err(InputError::new(
            file.display().to_string(),
            format!(
                "account `{}` uses an API key: it takes no seed",
                account.name
            ),
        )
        .into());
    }
    // Only a file that parsed creates (or migrates) the store: a rejected seed leaves no
    // empty database behind.
    db.open()?;
    store_seed(db, &account.name, seed, force)
}
