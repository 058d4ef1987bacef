//! Token validity, single-flight refresh and the cross-process lock.
//!
//! One refresh at a time per account: in this process a per-account async mutex, across
//! processes SQLite's write lock (`BEGIN IMMEDIATE`). Under both, the stored row is read
//! again and the refresh happens only if it is still the one that needed refreshing (same
//! `generation`). The new tokens are committed (fsync) before anyone uses them.

use crate::config::{Account, AuthKind, FallbackGrant};
use crate::error::{Error, InputError};
use crate::oauth::{Grant, TokenClient, TokenError, TokenResponse};
use crate::seed::SeedToken;
use crate::store::{now, pending, Store, TokenRow, TokenState};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Capped exponential backoff with jitter for a failing token endpoint.
#[derive(Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The longest a retry waits (without `Retry-After`): 300 s, or less than the account's
/// shortest poll interval, so that the account recovers within one interval of the token
/// endpoint recovering. A failing endpoint still sees at most one request per interval.
pub fn backoff_cap(account: &Account) -> Duration {
    account
        .endpoints
        .iter()
        .map(|e| e.interval.mul_f64(0.9))
        .min()
        .unwrap_or(BACKOFF_CAP)
        .clamp(Duration::from_millis(500), BACKOFF_CAP)
}

impl Backoff {
    /// Records a failure of the attempt that started at `started`; returns how long from
    /// now until the next attempt may start.
    fn fail(&mut self, retry_after: Option<Duration>, cap: Duration, started: Instant) -> Duration {
        let exp = BACKOFF_BASE
            .saturating_mul(1u32 << self.failures.min(16))
            .min(cap);
        self.failures = self.failures.saturating_add(1);
        // Jitter in [exp/2, exp]: processes that failed together do not retry together.
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        let delay = retry_after
            .map_or(jittered, |r| r.max(jittered))
            .min(Duration::from_secs(3600));
        let not_before = started + delay;
        self.not_before = Some(not_before);
        not_before.saturating_duration_since(Instant::now())
    }

    fn reset(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }

    fn waiting(&self) -> Option<Duration> {
        self.not_before
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

struct AccountSlot {
    account: Arc<Account>,
    flight: Arc<tokio::sync::Mutex<()>>,
    backoff: Mutex<Backoff>,
    cache: Mutex<Option<Cached>>,
    backoff_cap: Duration,
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
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let c = cache.as_ref().filter(|c| c.read_at.elapsed() < CACHE_FOR)?;
        let fresh = match c.access_expires_at {
            None => true,
            Some(exp) => now() + self.account.margin_for(Some(exp - c.obtained_at)) < exp,
        };
        fresh.then(|| Access {
            authorization: c.authorization.clone(),
            generation: c.generation,
        })
    }

    fn remember(&self, row: &TokenRow, access: &Access) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
            read_at: Instant::now(),
            generation: row.generation,
            access_expires_at: row.access_expires_at,
            obtained_at: row.obtained_at,
            authorization: access.authorization.clone(),
        });
    }

    fn forget(&self) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Hands out valid tokens for every configured account, refreshing as needed.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    db: PathBuf,
    store: Mutex<Store>,
    client: TokenClient,
    accounts: HashMap<String, AccountSlot>,
}

impl Tokens {
    pub fn new(db: &Path, accounts: &[Arc<Account>], timeout: Duration) -> Result<Tokens, Error> {
        let store = Store::open(db)?;
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
                        backoff_cap: backoff_cap(a),
                    },
                )
            })
            .collect();
        Ok(Tokens {
            inner: Arc::new(Inner {
                db: db.to_path_buf(),
                store: Mutex::new(store),
                client: TokenClient::new(timeout)?,
                accounts: slots,
            }),
        })
    }

    pub fn client(&self) -> &TokenClient {
        &self.inner.client
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
        self.inner
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token(name)
    }

    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.inner.store.lock().unwrap_or_else(|e| e.into_inner()))
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
        let row = self.read(name)?;
        match &row {
            Some(r) if r.state == TokenState::NeedsReauth => Err(needs_reauth_error(account, r)),
            Some(r) if usable(account, r, now()) => {
                let access = access_of(account, r);
                slot.remember(r, &access);
                Ok(access)
            }
            // Boxed: the refresh's state is large, and every endpoint task would otherwise
            // carry room for it while it sleeps (10,000 tasks, tens of MiB).
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
        self.refresh(name, Some(generation), true).await
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
        tokio::spawn(async move {
            let _flight = flight;
            this.refresh_locked(&name, seen, force).await
        })
        .await
        .unwrap_or_else(|e| {
            Err(AccessError::Store(Error::runtime(format!(
                "refresh task failed: {e}"
            ))))
        })
    }

    /// Waits for every refresh in flight to finish (at shutdown).
    pub async fn wait_idle(&self) {
        for slot in self.inner.accounts.values() {
            let _ = slot.flight.lock().await;
        }
    }

    async fn refresh_locked(
        &self,
        name: &str,
        seen: Option<i64>,
        force: bool,
    ) -> Result<Access, AccessError> {
        let slot = self.slot(name)?;
        let account = slot.account.clone();

        // Someone in this process may have refreshed while we waited for the flight.
        if let Some(row) = self.read(name)? {
            if moved_on(&account, &row, seen) {
                return Ok(access_of(&account, &row));
            }
        }
        let waiting = slot
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting();
        if let Some(wait) = waiting {
            return self.while_backing_off(&account, force, wait);
        }

        let db = self.inner.db.clone();
        let lock = tokio::task::spawn_blocking(move || Store::lock(&db))
            .await
            .map_err(|e| Error::runtime(format!("refresh lock task failed: {e}")))??;
        let row = lock.token(name)?;
        // A refresh answered but not committed before the process died: commit it now.
        let db = self.inner.db.clone();
        if let Some(p) = pending::read(&db, name) {
            pending::remove(&db, name);
            let current = row.as_ref().map_or(0, |r| r.generation);
            if p.generation == current {
                if let Ok(response) = crate::oauth::response::parse(200, &p.body, None, &[]) {
                    let grant: &'static str = match p.grant.as_str() {
                        "password" => "password",
                        "client_credentials" => "client_credentials",
                        "authorization_code" => "authorization_code",
                        _ => "refresh_token",
                    };
                    let new_row =
                        row_from_response(&account, row.as_ref(), response, grant, p.started);
                    let (event, detail) = describe_new_token(&new_row, row.as_ref(), grant);
                    let detail = format!("{detail}; recovered from the refresh journal");
                    let stored = lock.commit_token(&new_row, event, &detail)?;
                    tracing::warn!(account = name, generation = stored.generation,
                        "a refresh answered before the last crash was committed from the refresh journal");
                    return Ok(access_of(&account, &stored));
                }
            }
        }
        if let Some(r) = &row {
            if r.state == TokenState::NeedsReauth {
                lock.release();
                return Err(needs_reauth_error(&account, r));
            }
            // Another process refreshed (or an operator seeded) while we waited for the lock.
            if moved_on(&account, r, seen) || (!force && usable(&account, r, now())) {
                lock.release();
                return Ok(access_of(&account, r));
            }
        }

        let oauth = account
            .oauth2
            .as_ref()
            .ok_or_else(|| Error::runtime("oauth2 account without [account.oauth2]"))?;
        // Room for the answer before asking: a full database postpones the refresh rather
        // than losing a rotated refresh token at the commit.
        let mut lock = lock;
        if let Err(e) = lock.reserve(name) {
            tracing::error!(account = name, error = %e,
                "cannot reserve room for a new token in the database: refresh postponed (the old token stays in use while valid)");
            return self.while_backing_off(&account, force, Duration::from_secs(1));
        }
        let started = now();
        let refresh_token = row.as_ref().and_then(|r| {
            r.refresh_token
                .as_ref()
                .filter(|_| !refresh_expired(r, started))
        });
        let attempt_started = Instant::now();
        let generation = row.as_ref().map_or(0, |r| r.generation);
        let journal = |grant: &'static str| {
            let db = db.clone();
            let name = name.to_string();
            move |status: u16, body: &[u8]| {
                if (200..300).contains(&status) {
                    pending::write(&db, &name, generation, started, grant, body);
                }
            }
        };
        let mut attempt = match refresh_token {
            Some(rt) => {
                tracing::debug!(account = name, "token request sent");
                let result = self
                    .inner
                    .client
                    .request_with(
                        oauth,
                        &Grant::RefreshToken(rt),
                        &mut journal("refresh_token"),
                    )
                    .await;
                tracing::debug!(
                    account = name,
                    ok = result.is_ok(),
                    "token response received"
                );
                (Grant::RefreshToken(rt).name(), result)
            }
            None => (
                "refresh_token",
                Err(no_refresh_token(row.as_ref(), started)),
            ),
        };
        // A permanent refresh failure falls back to the account's own grant, if any.
        if let Err(e) = &attempt.1 {
            if e.is_permanent() {
                let fallback = match oauth.grant {
                    FallbackGrant::Password => Some(Grant::Password),
                    FallbackGrant::ClientCredentials => Some(Grant::ClientCredentials),
                    FallbackGrant::RefreshToken => None,
                };
                if let Some(grant) = fallback {
                    if refresh_token.is_some() {
                        tracing::warn!(account = name, error = %e, grant = grant.name(),
                            "refresh failed permanently; obtaining a new token with the fallback grant");
                    }
                    let result = self
                        .inner
                        .client
                        .request_with(oauth, &grant, &mut journal(grant.name()))
                        .await;
                    attempt = (grant.name(), result);
                }
            }
        }

        match attempt {
            (grant, Ok(response)) => {
                // From here to the commit is the window in which a crash loses a rotated
                // refresh token: no I/O but the commit's own.
                let received = Instant::now();
                let new_row = row_from_response(&account, row.as_ref(), response, grant, started);
                let (event, detail) = describe_new_token(&new_row, row.as_ref(), grant);
                let stored = lock.commit_token(&new_row, event, &detail)?;
                crate::metrics::get().refresh(name, "ok");
                // Answer-to-commit time, the window in which a crash loses a rotated grant:
                // for the crash test and for debugging, not for the operator's log.
                tracing::debug!(
                    account = name,
                    commit_us = received.elapsed().as_micros() as u64,
                    "token committed"
                );
                pending::remove(&db, name);
                slot.backoff
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reset();
                tracing::info!(
                    account = name,
                    grant,
                    generation = stored.generation,
                    expires_in_s = stored.access_expires_at.map(|t| t - started),
                    "token {}",
                    if event == "refreshed" {
                        "refreshed"
                    } else {
                        "obtained"
                    }
                );
                Ok(access_of(&account, &stored))
            }
            (grant, Err(e)) if !e.is_permanent() => {
                crate::metrics::get().refresh(name, "temporary_failure");
                pending::remove(&db, name);
                let delay = slot.backoff.lock().unwrap_or_else(|e| e.into_inner()).fail(
                    e.retry_after,
                    slot.backoff_cap,
                    attempt_started,
                );
                let detail = format!("{grant}: {e}; next try in {}s", delay.as_secs());
                tracing::warn!(account = name, grant, error = %e, retry_in_s = delay.as_secs(), "token request failed (temporary)");
                lock.commit_event(name, "refresh_failed", &detail)?;
                self.while_backing_off(&account, force, delay)
            }
            (grant, Err(e)) => {
                crate::metrics::get().refresh(name, "permanent_failure");
                pending::remove(&db, name);
                let fix = fix_command(&account);
                hook(name, "refresh_failed", &e.to_string());
                let detail = format!("{grant}: {e}; the account needs re-authorization: run {fix}");
                tracing::error!(account = name, grant, error = %e, "token request failed permanently; the account needs re-authorization: run {fix}");
                let mut r = row.unwrap_or_else(|| TokenRow::new(name, "seed", started));
                r.state = TokenState::NeedsReauth;
                r.state_detail = Some(detail.clone());
                lock.commit_token(&r, "needs_reauth", &detail)?;
                hook(name, "needs_reauth", &detail);
                Err(AccessError::NeedsReauth(detail))
            }
        }
    }

    /// While the token endpoint is backing off: the old access token while it lasts.
    fn while_backing_off(
        &self,
        account: &Account,
        force: bool,
        wait: Duration,
    ) -> Result<Access, AccessError> {
        if !force {
            if let Some(row) = self.read(&account.name)? {
                let not_expired = row.access_expires_at.is_some_and(|t| now() < t);
                if row.access_token.is_some() && not_expired && row.state == TokenState::Ok {
                    return Ok(access_of(account, &row));
                }
            }
        }
        Err(AccessError::Unavailable(format!(
            "no valid access token: the token endpoint is failing, next try in {}s",
            wait.as_secs().max(1)
        )))
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
        if expires - t > warn_within || row.refresh_warned_at.is_some_and(|w| t - w < 86400) {
            return;
        }
        let left = crate::units::human(expires - t);
        tracing::warn!(
            account = name,
            expires_in_s = expires - t,
            "the refresh token expires in {left}: re-authorize before then ({})",
            fix_command(&slot.account)
        );
        hook(
            name,
            "refresh_token_expiring",
            &format!("the refresh token expires in {left}"),
        );
        let _ = self.with_store(|s| s.mark_refresh_warned(name, t));
    }
}

fn hook(account: &str, kind: &str, detail: &str) {
    crate::hooks::event(crate::hooks::Event {
        kind,
        account,
        endpoint: None,
        detail,
        failures: None,
    });
}

/// Is the stored access token good to use now?
pub fn usable(account: &Account, row: &TokenRow, now: i64) -> bool {
    if row.access_token.is_none() || row.state != TokenState::Ok {
        return false;
    }
    match row.access_expires_at {
        None => true,
        Some(exp) => {
            let lifetime = exp - row.obtained_at;
            now + account.margin_for(Some(lifetime)) < exp
        }
    }
}

fn moved_on(account: &Account, row: &TokenRow, seen: Option<i64>) -> bool {
    seen.is_some_and(|g| row.generation != g) && usable(account, row, now())
}

fn refresh_expired(row: &TokenRow, now: i64) -> bool {
    row.refresh_expires_at.is_some_and(|t| t <= now)
}

fn no_refresh_token(row: Option<&TokenRow>, now: i64) -> TokenError {
    match row {
        None => TokenError::permanent("no_token", "no token is stored for this account"),
        Some(r) if r.refresh_token.is_some() && refresh_expired(r, now) => {
            TokenError::permanent("refresh_token_expired", "the refresh token has expired")
        }
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

fn row_from_response(
    account: &Account,
    old: Option<&TokenRow>,
    r: TokenResponse,
    grant: &str,
    started: i64,
) -> TokenRow {
    let mut row = TokenRow::new(&account.name, grant, started);
    let rotated = r.refresh_token.is_some();
    row.access_token = Some(r.access_token);
    row.token_type = r.token_type.or_else(|| Some("Bearer".into()));
    row.scope = r.scope.or_else(|| old.and_then(|o| o.scope.clone()));
    // Counted from when the request was sent: never later than the server's clock says.
    row.access_expires_at = r.expires_in.map(|e| started + e);
    match r.refresh_token {
        Some(rt) => {
            row.refresh_token = Some(rt);
            row.refresh_expires_at = r.refresh_expires_in.map(|e| started + e);
        }
        // No new refresh token: the old one stays good (RFC 6749 6).
        None if grant == "refresh_token" => {
            row.refresh_token = old.and_then(|o| o.refresh_token.clone());
            row.refresh_expires_at = old.and_then(|o| o.refresh_expires_at);
        }
        None => {}
    }
    row.last_refresh_at = Some(started);
    row.refresh_warned_at = if rotated {
        None
    } else {
        old.and_then(|o| o.refresh_warned_at)
    };
    row
}

fn describe_new_token(
    new: &TokenRow,
    old: Option<&TokenRow>,
    grant: &str,
) -> (&'static str, String) {
    let expiry = match new.access_expires_at {
        Some(t) => format!("access token valid for {}s", t - new.obtained_at),
        None => "access token without a stated expiry".to_string(),
    };
    let rotation = match (
        &new.refresh_token,
        old.and_then(|o| o.refresh_token.as_ref()),
    ) {
        (Some(n), Some(o)) if n.expose_secret() == o.expose_secret() => "refresh token kept",
        (Some(_), _) => "new refresh token",
        (None, _) => "no refresh token",
    };
    let event = if grant == "refresh_token" {
        "refreshed"
    } else {
        "obtained"
    };
    (event, format!("{grant}: {expiry}; {rotation}"))
}

/// What `seed` did.
#[derive(Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    Stored(i64),
    /// The store holds a newer token; nothing changed.
    StoreIsNewer,
}

/// Stores a seed token (in one durable transaction under the write lock). Refuses to
/// replace a stored token obtained after the seed was issued unless `force`.
pub fn store_seed(
    db: &Path,
    account: &str,
    seed: SeedToken,
    force: bool,
) -> Result<SeedOutcome, Error> {
    let lock = Store::lock(db)?;
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
    let stored = lock.commit_token(&row, "seeded", &detail)?;
    Ok(SeedOutcome::Stored(stored.generation))
}

/// Reads and stores a seed file for `account`; bad files are input errors (exit 2).
pub fn seed_from_file(
    db: &Path,
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
    Store::open(db)?;
    store_seed(db, &account.name, seed, force)
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    /// The schedule: the n-th delay lies in [2^n/2, 2^n] seconds, capped, and never shorter
    /// than Retry-After.
    #[test]
    fn capped_exponential_with_jitter_and_retry_after() {
        let cap = Duration::from_secs(20);
        let mut b = Backoff::default();
        for n in 0..10u32 {
            let start = Instant::now();
            let d = b.fail(None, cap, start);
            let exp = Duration::from_secs(1 << n).min(cap);
            assert!(
                d <= exp && d + Duration::from_millis(5) >= exp / 2,
                "failure {n}: {d:?} for {exp:?}"
            );
            assert!(b.waiting().is_some());
        }
        let d = b.fail(Some(Duration::from_secs(90)), cap, Instant::now());
        assert!(
            d > Duration::from_secs(89),
            "Retry-After beyond the cap: {d:?}"
        );
        b.reset();
        assert!(b.waiting().is_none());
        let d = b.fail(None, cap, Instant::now());
        assert!(d <= Duration::from_secs(1), "reset starts over: {d:?}");
    }
}
