//! Polling: one poll of one endpoint, and the schedule that repeats it.

use crate::config::{Account, DaemonConfig, Endpoint, Paginate, StoreBodies};
use crate::pagination::{Collection, Scan};
use crate::store::{now, PollRecord, PollWriter};
use crate::tokens::{AccessError, Tokens};
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LINK};
use secrecy::ExposeSecret;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Everything a poll needs, shared by every endpoint task.
pub struct Poller {
    pub tokens: Tokens,
    pub writer: Arc<PollWriter>,
    pub daemon: DaemonConfig,
    http: crate::http::Client,
    pub skipped_ticks: AtomicU64,
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    /// When each endpoint task promises to be back in its loop (ms since `epoch`): the
    /// watchdog stops petting systemd when one of them is overdue.
    promises: parking_lot::Mutex<Vec<Arc<AtomicU64>>>,
    epoch: Instant,
    pub hooks: crate::hooks::Hooks,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Which accounts this instance polls now.
    pub leases: crate::leases::Leases,
}

/// How one poll ended, for the schedule and for `poll-once`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// Not attempted: the account needs re-authorization.
    Skipped,
}

pub struct PollResult {
    pub outcome: Outcome,
    /// The server asked us to come back later (429/503 with `Retry-After`).
    pub retry_after: Option<Duration>,
}

/// Per-endpoint memory between polls.
#[derive(Default)]
pub struct EndpointState {
    /// The endpoint's request target, prepared at its first poll.
    pub target: Option<crate::http::Target>,
    pub metrics: Option<crate::metrics::EndpointMetrics>,
    pub last_hash: Option<String>,
    pub reauth_logged: bool,
    pub failures: u32,
    /// The schedule's watchdog promise, renewed before each page of a long collection.
    pub promise: Option<Arc<AtomicU64>>,
}

impl Poller {
    pub fn new(
        tokens: Tokens,
        writer: Arc<PollWriter>,
        daemon: DaemonConfig,
        hooks: crate::hooks::Hooks,
        metrics: Arc<crate::metrics::Metrics>,
        leases: crate::leases::Leases,
    ) -> Result<Poller, crate::error::Error> {
        let connect_timeout = daemon.timeout.min(Duration::from_secs(10));
        let http = crate::http::Client::new(daemon.timeout, connect_timeout);
        Ok(Poller {
            tokens,
            writer,
            daemon,
            http,
            skipped_ticks: AtomicU64::new(0),
            polls_ok: AtomicU64::new(0),
            polls_failed: AtomicU64::new(0),
            promises: parking_lot::Mutex::new(Vec::new()),
            epoch: Instant::now(),
            hooks,
            metrics,
            leases,
        })
    }

    /// Polls once: token, request (one retry after a 401 and a refresh), log line, row.
    pub async fn poll(
        &self,
        account: &Account,
        endpoint: &Endpoint,
        state: &mut EndpointState,
    ) -> PollResult {
        let started_at = now();
        let clock = Instant::now();
        let result = self.fetch(account, endpoint, state).await;
        // Microsecond resolution: a loopback poll takes well under a millisecond.
        let duration_ms = clock.elapsed().as_micros() as f64 / 1000.0;
        let mut record = PollRecord::ended(&account.name, &endpoint.name, started_at, duration_ms);
        let (outcome, retry_after) = match result {
            Err(FetchError::NeedsReauth(msg)) => {
                if !state.reauth_logged {
                    tracing::error!(account = %account.name, endpoint = %endpoint.name, "skipping polls: {msg}");
                    state.reauth_logged = true;
                }
                return PollResult {
                    outcome: Outcome::Skipped,
                    retry_after: None,
                };
            }
            Err(FetchError::LeaseMoved) => {
                tracing::info!(account = %account.name, endpoint = %endpoint.name,
                    "the account's lease moved to another instance during the poll: left to it");
                return PollResult {
                    outcome: Outcome::Skipped,
                    retry_after: None,
                };
            }
            Err(FetchError::Failed(status, msg, ra)) => {
                record.status = status;
                record.error = Some(msg);
                (Outcome::Failed, ra)
            }
            Ok(body) => {
                state.reauth_logged = false;
                self.take_body(account, endpoint, state, &mut record, body);
                (Outcome::Ok, None)
            }
        };
        log_poll(&record, endpoint.max_pages);
        self.count(account, endpoint, state, &record, outcome, clock);
        self.writer.record(record);
        PollResult {
            outcome,
            retry_after,
        }
    }

    /// A successful poll's body into its record: compared with the last whole one (which
    /// may run `on_change`) and kept as `store_bodies` says.
    fn take_body(
        &self,
        account: &Account,
        endpoint: &Endpoint,
        state: &mut EndpointState,
        record: &mut PollRecord,
        body: Body,
    ) {
        record.status = Some(body.status);
        record.bytes = Some(body.bytes.len() as i64);
        record.items = body.items;
        record.pages = Some(body.pages);
        record.partial = body.partial;
        if self.daemon.log_bodies {
            tracing::info!(account = %account.name, endpoint = %endpoint.name, body = %String::from_utf8_lossy(&body.bytes), "body");
        }
        if body.partial {
            // Not the whole collection: kept for the operator to see, but not
            // compared with the last whole one nor handed to on_change as if it were.
            if self.daemon.store_bodies != StoreBodies::None {
                record.body = Some(body.bytes);
            }
            return;
        }
        let hash = body_hash(&body.bytes);
        let changed = state.last_hash.as_deref() != Some(hash.as_str());
        record.changed = Some(changed);
        let keep = match self.daemon.store_bodies {
            StoreBodies::All => true,
            StoreBodies::Changes => changed,
            StoreBodies::None => false,
        };
        record.body_hash = Some(hash.clone());
        state.last_hash = Some(hash);
        if changed {
            self.hooks.changed(
                &endpoint.on_change,
                &account.name,
                &endpoint.name,
                body.bytes.clone(),
            );
        }
        if keep {
            record.body = Some(body.bytes);
        }
    }

    /// Counts a finished poll: the endpoint's run of failures (told to `on_event` when it
    /// reaches [`crate::hooks::FAILING_AFTER`]), the daemon's counters and the metrics.
    fn count(
        &self,
        account: &Account,
        endpoint: &Endpoint,
        state: &mut EndpointState,
        record: &PollRecord,
        outcome: Outcome,
        clock: Instant,
    ) {
        if outcome == Outcome::Ok {
            state.failures = 0;
        } else {
            state.failures += 1;
            if state.failures == crate::hooks::FAILING_AFTER {
                self.hooks.event(crate::hooks::Event {
                    kind: crate::hooks::EventKind::EndpointFailing,
                    account: &account.name,
                    endpoint: Some(&endpoint.name),
                    detail: record.error.as_deref().unwrap_or(""),
                    failures: Some(state.failures),
                });
            }
        }
        let counter = if outcome == Outcome::Ok {
            &self.polls_ok
        } else {
            &self.polls_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let seconds = clock.elapsed().as_secs_f64();
        state
            .metrics
            .get_or_insert_with(|| self.metrics.endpoint(&account.name, &endpoint.name))
            .poll(record.status, outcome == Outcome::Ok, seconds);
    }

    /// Fetches the endpoint's whole collection: page after page with the same token (one
    /// refresh and retry after a 401 in the whole poll), each next link checked before it is
    /// followed, `Retry-After` between pages honoured up to `timeout`.
    async fn fetch(
        &self,
        account: &Account,
        endpoint: &Endpoint,
        state: &mut EndpointState,
    ) -> Result<Body, FetchError> {
        let mut access = match self.tokens.access(&account.name).await {
            Ok(access) => access,
            // Refused by the fence, or cut short while this process was paused: the new
            // owner polls, and this is not a poll of this instance's.
            Err(_) if !self.leases.owns(&account.name) => return Err(FetchError::LeaseMoved),
            Err(e) => return Err(FetchError::from(e)),
        };
        let mut refreshed = false;
        // Page 1 is the endpoint's own (prepared) target; later pages are their next links.
        let mut page = 1u32;
        let mut url: Option<url::Url> = None;
        let mut visited: Vec<url::Url> = Vec::new();
        let mut collection: Option<Collection> = None;
        let mut fetched_bytes = 0u64;
        let mut waited = false;
        loop {
            if !self.leases.owns(&account.name) {
                return Err(FetchError::LeaseMoved);
            }
            self.renew_promise(state, Duration::ZERO);
            let budget = self.daemon.max_body.saturating_sub(fetched_bytes);
            let answer = self
                .get(
                    endpoint,
                    state,
                    url.as_ref(),
                    access.authorization.expose_secret(),
                    budget,
                )
                .await
                .map_err(|e| e.on_page(page))?;
            if answer.status == 401 && account.oauth2.is_some() && refreshed {
                // Refused again right after a refresh: the 401 is not the token's fault.
                // The account backs off so that the refresh token is not rotated every poll.
                self.tokens
                    .refused_fresh(&account.name, access.generation)
                    .await;
            } else if answer.status == 401 && account.oauth2.is_some() {
                if let Some(wait) = self.tokens.refusal_backoff(&account.name) {
                    return Err(FetchError::Failed(
                        Some(401),
                        format!(
                            "HTTP 401: the API refuses freshly refreshed tokens; no refresh for {}s",
                            wait.as_secs().max(1)
                        ),
                        None,
                    )
                    .on_page(page));
                }
                // The token was refused before its time (revoked, or the clock is off):
                // refresh once, unless someone already has, and retry once.
                tracing::info!(account = %account.name, endpoint = %endpoint.name, page, "API answered 401: refreshing the token and retrying once");
                access = Box::pin(self.tokens.unauthorized(&account.name, access.generation))
                    .await
                    .map_err(FetchError::from)?;
                refreshed = true;
                continue;
            }
            let Answer {
                status,
                retry_after,
                content_type,
                link,
                body: bytes,
            } = answer;
            if let Some(wait) =
                retry_after.filter(|w| page > 1 && !waited && *w <= self.daemon.timeout)
            {
                // Rate-limited in the middle of a collection: wait as asked, once a poll,
                // rather than throw the pages already fetched away.
                tracing::info!(account = %account.name, endpoint = %endpoint.name, page, wait_s = wait.as_secs(), "page answered {status} with Retry-After: waiting before asking again");
                self.renew_promise(state, wait);
                tokio::time::sleep(wait).await;
                waited = true;
                continue;
            }
            if (200..300).contains(&status) {
                self.tokens.accepted(&account.name);
            } else {
                let mut msg = format!("HTTP {status}");
                if let Some(ra) = retry_after {
                    msg.push_str(&format!(" (Retry-After {}s)", ra.as_secs()));
                }
                return Err(FetchError::Failed(Some(status), msg, retry_after).on_page(page));
            }
            // A 200 that is not JSON is a proxy's or a maintenance page, or a body cut short:
            // not the API's answer. One pass both checks the JSON, counts its items and finds
            // the next link.
            let link = link.as_ref().and_then(|v| v.to_str().ok());
            let scan = match bytes.is_empty() {
                true => Scan::default(),
                false => {
                    crate::pagination::scan(&bytes, link, endpoint.paginate).map_err(|_| {
                        FetchError::Failed(
                            Some(status),
                            format!(
                                "HTTP {status} with a body that is not JSON ({}, {} bytes)",
                                describe_content_type(content_type.as_ref()),
                                bytes.len()
                            ),
                            None,
                        )
                        .on_page(page)
                    })?
                }
            };
            fetched_bytes += bytes.len() as u64;
            let current = url.as_ref().unwrap_or(&endpoint.url);
            let next = match &scan.next {
                None => None,
                Some((style, link)) => Some((
                    *style,
                    current.join(link).map_err(|_| {
                        FetchError::Failed(
                            Some(status),
                            "the next link is not a valid URL".into(),
                            None,
                        )
                        .on_page(page)
                    })?,
                )),
            };
            match (collection.as_mut(), &next) {
                // The common case, a collection of one page: the answer as it came.
                (None, None) => {
                    return Ok(Body {
                        status,
                        bytes,
                        items: scan.items,
                        pages: 1,
                        partial: false,
                    })
                }
                (None, Some((style, _))) => {
                    collection = Some(Collection::first(&bytes, *style).map_err(|e| {
                        FetchError::Failed(Some(status), e.to_string(), None).on_page(page)
                    })?);
                }
                (Some(c), _) => {
                    c.push(&bytes).map_err(|e| {
                        FetchError::Failed(Some(status), e.to_string(), None).on_page(page)
                    })?;
                }
            }
            let Some((_, next)) = next else {
                return Ok(joined_body(status, collection.take(), page, None));
            };
            if next.origin() != endpoint.url.origin() {
                return Err(FetchError::Failed(
                    Some(status),
                    format!(
                        "the next link leads to another origin ({}): not followed, the credentials go only to {}",
                        next.origin().ascii_serialization(),
                        endpoint.url.origin().ascii_serialization()
                    ),
                    None,
                )
                .on_page(page + 1));
            }
            if next == endpoint.url || visited.contains(&next) {
                return Err(FetchError::Failed(
                    Some(status),
                    "the next link points to a page already fetched (a pagination loop)".into(),
                    None,
                )
                .on_page(page + 1));
            }
            if page >= endpoint.max_pages {
                return Ok(joined_body(status, collection.take(), page, Some(&next)));
            }
            visited.push(next.clone());
            url = Some(next);
            page += 1;
        }
    }

    fn collection_too_large(&self) -> String {
        format!(
            "the pages add up to more than max_body ({} bytes): cut off",
            self.daemon.max_body
        )
    }

    /// Tells the watchdog this endpoint's task is busy for another request (plus `wait`).
    fn renew_promise(&self, state: &EndpointState, wait: Duration) {
        if let Some(p) = &state.promise {
            self.promise_by(p, Instant::now() + wait + self.poll_budget());
        }
    }

    /// How long one request of a poll may take: a token request and two API requests, each
    /// up to `timeout`.
    fn poll_budget(&self) -> Duration {
        self.daemon.timeout * 3 + Duration::from_secs(5)
    }

    /// One GET of a page (`url`: a later page; `None`: the endpoint's own URL), redirects
    /// within its origin followed, body read in full up to `max_body` bytes.
    async fn get(
        &self,
        endpoint: &Endpoint,
        state: &mut EndpointState,
        url: Option<&url::Url>,
        authorization: &str,
        max_body: u64,
    ) -> Result<Answer, FetchError> {
        let mut auth = HeaderValue::from_str(authorization).map_err(|_| {
            FetchError::Failed(
                None,
                "the token holds characters not allowed in a header".into(),
                None,
            )
        })?;
        auth.set_sensitive(true);
        let later;
        let target = match url {
            Some(u) => {
                later =
                    crate::http::Target::new(u).map_err(|m| FetchError::Failed(None, m, None))?;
                &later
            }
            None => {
                if state.target.is_none() {
                    let target = crate::http::Target::new(&endpoint.url)
                        .map_err(|m| FetchError::Failed(None, m, None))?;
                    state.target = Some(target);
                }
                state.target.as_ref().expect("set above")
            }
        };
        let request = crate::http::Request {
            method: crate::http::Method::GET,
            target,
            headers: &[(AUTHORIZATION, auth)],
            body: bytes::Bytes::new(),
            redirects: crate::http::Redirects::SameOrigin,
            max_body,
        };
        let crate::http::Response {
            status,
            headers,
            body,
        } = self.http.send(request).await.map_err(|e| match e {
            // A later page ran over what the earlier ones left of max_body.
            crate::http::Error::TooLarge { status, .. } if url.is_some() => {
                FetchError::Failed(Some(status), self.collection_too_large(), None)
            }
            e => FetchError::Failed(e.status(), e.to_string(), None),
        })?;
        let retry_after = if matches!(status, 429 | 503) {
            crate::http::retry_after(&headers)
        } else {
            None
        };
        // Kept as the header (a reference count, no copy): only the rare error message
        // about a body that is not JSON formats it.
        let content_type = headers.get(CONTENT_TYPE).cloned();
        let link = match endpoint.paginate {
            Paginate::Auto | Paginate::Link => headers.get(LINK).cloned(),
            _ => None,
        };
        Ok(Answer {
            status,
            retry_after,
            content_type,
            link,
            body,
        })
    }

    /// Polls an endpoint on its interval until `shutdown` says stop. Never overlaps itself:
    /// a tick that comes while the poll still runs is skipped and counted.
    pub async fn run_endpoint(
        self: Arc<Self>,
        account: Arc<Account>,
        endpoint: Endpoint,
        first: tokio::time::Instant,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut state = EndpointState {
            target: None,
            metrics: None,
            last_hash: self
                .tokens
                .with_store(|s| s.last_body_hash(&account.name, &endpoint.name))
                .unwrap_or(None),
            reauth_logged: false,
            failures: 0,
            promise: None,
        };
        let interval = endpoint.interval;
        let mut next = first;
        let promise = self.promise();
        state.promise = Some(promise.clone());
        // A poll may take a token request and two API requests, each up to `timeout`; a poll
        // of several pages renews this before each page.
        let poll_budget = self.poll_budget();
        // Told when this instance gains the account's lease: one poll then, and the
        // schedule (its phase, spread over the interval) goes on as it was.
        let gained = self.leases.gained_signal(&account.name);
        loop {
            self.promise_by(&promise, next.into_std());
            let gained_now = tokio::select! {
                _ = tokio::time::sleep_until(next) => false,
                _ = notified(gained.as_deref()) => true,
                _ = shutdown.changed() => return,
            };
            if *shutdown.borrow() {
                return;
            }
            let tick = next;
            if !self.leases.owns(&account.name) {
                // Another instance holds the account's lease: its tick passes.
                if !gained_now {
                    next = tick + interval;
                }
                continue;
            }
            self.promise_by(&promise, Instant::now() + poll_budget);
            let result = tokio::select! {
                // Boxed while it runs: a sleeping task then holds a few hundred bytes, not
                // the poll's whole state (10,000 endpoints, 10,000 tasks).
                r = Box::pin(self.poll(&account, &endpoint, &mut state)) => r,
                _ = shutdown.changed() => return,
            };
            let now = tokio::time::Instant::now();
            if gained_now {
                // The extra poll took no tick of the schedule: none is counted as skipped.
                while next <= now {
                    next += interval;
                }
            } else if now >= tick + interval {
                next = tick + interval;
                let late = now - next;
                let missed = (late.as_nanos() / interval.as_nanos()) as u32 + 1;
                self.skipped_ticks
                    .fetch_add(missed as u64, Ordering::Relaxed);
                self.metrics
                    .skipped(&account.name, &endpoint.name, missed as u64);
                tracing::warn!(account = %account.name, endpoint = %endpoint.name, skipped = missed,
                    "poll took longer than the interval: skipped {missed} tick(s)");
                next += interval * missed;
            } else {
                next = tick + interval;
            }
            if let Some(ra) = result.retry_after {
                let earliest = now + ra;
                while next < earliest {
                    next += interval;
                }
            }
        }
    }
}

/// Waits for `signal`, or forever without one.
async fn notified(signal: Option<&tokio::sync::Notify>) {
    match signal {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

impl Poller {
    fn promise(&self) -> Arc<AtomicU64> {
        let p = Arc::new(AtomicU64::new(u64::MAX));
        self.promises.lock().push(p.clone());
        p
    }

    fn promise_by(&self, promise: &AtomicU64, at: Instant) {
        let ms = at.saturating_duration_since(self.epoch).as_millis() as u64;
        promise.store(ms, Ordering::Relaxed);
    }

    /// How late the most overdue endpoint task is, if any is later than `grace`.
    pub fn overdue(&self, grace: Duration) -> Option<Duration> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let promises = self.promises.lock();
        let earliest = promises.iter().map(|p| p.load(Ordering::Relaxed)).min()?;
        let late = Duration::from_millis(now.saturating_sub(earliest));
        (late > grace).then_some(late)
    }
}

struct Body {
    status: u16,
    bytes: Vec<u8>,
    items: Option<i64>,
    pages: u32,
    /// `max_pages` stopped the poll with more pages announced.
    partial: bool,
}

/// The pages joined so far as the poll's body. `unfollowed`: the next link `max_pages` did
/// not follow, kept in the body so that the reader sees where the collection goes on (the
/// poll is partial).
fn joined_body(
    status: u16,
    collection: Option<Collection>,
    pages: u32,
    unfollowed: Option<&url::Url>,
) -> Body {
    let items = collection.as_ref().map_or(0, Collection::item_count) as i64;
    let bytes = collection
        .map(|c| c.finish(unfollowed.map(url::Url::as_str)))
        .unwrap_or_default();
    Body {
        status,
        bytes,
        items: Some(items),
        pages,
        partial: unfollowed.is_some(),
    }
}

/// An API answer of any status, read in full.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    content_type: Option<HeaderValue>,
    /// The `Link` header, when the endpoint may page by it.
    link: Option<HeaderValue>,
    body: Vec<u8>,
}

/// A `Content-Type` for an error message: printable, and short.
fn describe_content_type(value: Option<&HeaderValue>) -> String {
    match value.and_then(|v| v.to_str().ok()) {
        Some(v) => v.chars().filter(|c| !c.is_control()).take(60).collect(),
        None => "no content type".into(),
    }
}

enum FetchError {
    NeedsReauth(String),
    /// The account's lease moved to another instance while the poll waited (for a token,
    /// a `Retry-After`, or because this process was paused): nothing more is asked.
    LeaseMoved,
    /// (HTTP status if there was a response, message, Retry-After)
    Failed(Option<u16>, String, Option<Duration>),
}

impl FetchError {
    /// Names the page of a collection a failure happened on (page 1 is the endpoint itself:
    /// its messages stay as they are).
    fn on_page(self, page: u32) -> FetchError {
        match self {
            FetchError::Failed(status, msg, ra) if page > 1 => {
                FetchError::Failed(status, format!("page {page}: {msg}"), ra)
            }
            other => other,
        }
    }
}

impl From<AccessError> for FetchError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NeedsReauth(m) => FetchError::NeedsReauth(m),
            AccessError::Unavailable(m) => FetchError::Failed(None, m, None),
            AccessError::Store(e) => FetchError::Failed(None, e.to_string(), None),
        }
    }
}

/// Numbers are recorded as numbers (JSON logs keep their type); a poll without an HTTP
/// status or item count leaves the field out rather than writing a placeholder.
fn log_poll(r: &PollRecord, max_pages: u32) {
    match &r.error {
        None if r.partial => tracing::warn!(
            account = %r.account, endpoint = %r.endpoint, status = r.status,
            duration_ms = r.duration_ms, bytes = r.bytes.unwrap_or(0),
            items = r.items, pages = r.pages, partial = true,
            warning = "max_pages reached with more pages announced: stored as partial, not compared and not given to on_change; raise max_pages",
            max_pages, "poll"
        ),
        None => tracing::info!(
            account = %r.account, endpoint = %r.endpoint, status = r.status,
            duration_ms = r.duration_ms, bytes = r.bytes.unwrap_or(0),
            items = r.items, pages = r.pages,
            changed = r.changed.unwrap_or(false), "poll"
        ),
        Some(e) => tracing::warn!(
            account = %r.account, endpoint = %r.endpoint, status = r.status,
            duration_ms = r.duration_ms, error = %e, "poll failed"
        ),
    }
}

/// A fingerprint of a body for change detection: 128-bit xxh3 (not a secret-keeping hash:
/// bodies are API data, and a collision only hides one change).
fn body_hash(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = xxhash_rust::xxh3::xxh3_128(body).to_be_bytes();
    let mut out = String::with_capacity(32);
    for b in h {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Where each endpoint's first poll falls: at once when there are few, else spread evenly
/// across the first interval so a thousand endpoints do not fire in the same millisecond.
/// The spread is in slots of [`SPREAD_SLOT`]: the endpoints of one slot start together and
/// share one wake-up of the runtime thread (at 1,000 endpoints every 3 s, about three per
/// slot), where an even spread would wake it every 3 ms.
pub fn start_offsets(intervals: &[Duration]) -> Vec<Duration> {
    const SPREAD_ABOVE: usize = 10;
    let n = intervals.len();
    if n <= SPREAD_ABOVE {
        return vec![Duration::ZERO; n];
    }
    let slot = SPREAD_SLOT.as_nanos();
    intervals
        .iter()
        .enumerate()
        .map(|(i, iv)| {
            let even = iv.as_nanos() * i as u128 / n as u128;
            Duration::from_nanos((even / slot * slot) as u64)
        })
        .collect()
}

/// The granularity of the start spread; each poll starts at most this much before its
/// evenly spread time.
pub const SPREAD_SLOT: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_in_messages_are_printable_and_short() {
        assert_eq!(describe_content_type(None), "no content type");
        let html = HeaderValue::from_static("text/html; charset=utf-8");
        assert_eq!(
            describe_content_type(Some(&html)),
            "text/html; charset=utf-8"
        );
        let long = HeaderValue::from_str(&"x".repeat(100)).unwrap();
        assert_eq!(describe_content_type(Some(&long)).len(), 60);
        let tab = HeaderValue::from_bytes(b"text/\thtml").unwrap();
        assert_eq!(describe_content_type(Some(&tab)), "text/html");
        let opaque = HeaderValue::from_bytes(b"text/\xffhtml").unwrap();
        assert_eq!(describe_content_type(Some(&opaque)), "no content type");
    }

    #[test]
    fn body_hashes() {
        assert_eq!(body_hash(b"[1]").len(), 32);
        assert_ne!(body_hash(b"[1]"), body_hash(b"[2]"));
    }

    #[test]
    fn offsets_spread_only_many() {
        assert!(start_offsets(&[Duration::from_secs(60); 3])
            .iter()
            .all(|d| d.is_zero()));
        let o = start_offsets(&[Duration::from_secs(60); 100]);
        assert_eq!(o[50], Duration::from_secs(30));
        // 1,000 endpoints every 3 s: even spacing is 3 ms, so slots of 10 ms hold 3 or 4.
        let o = start_offsets(&[Duration::from_secs(3); 1000]);
        assert_eq!(o[3], Duration::ZERO);
        assert_eq!(o[4], Duration::from_millis(10));
        assert_eq!(o[999], Duration::from_millis(2990));
        let mut slots = o.clone();
        slots.dedup();
        assert_eq!(slots.len(), 300);
        assert!(o
            .iter()
            .enumerate()
            .all(|(i, d)| Duration::from_millis(3 * i as u64) - *d < SPREAD_SLOT));
    }
}
