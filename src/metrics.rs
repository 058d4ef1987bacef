//! Opt-in Prometheus metrics and a health check (`[daemon] metrics_listen`).
//!
//! Counters live in one [`Metrics`] value that the daemon owns and hands to whoever counts
//! (a poll, a refresh); token expiries are read from the store when scraped (through the
//! daemon's [`Readings`]), so they are never stale.

use crate::store::{now, Health, StoreState, TokenRow, TokenState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub account: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    pub account: String,
    pub endpoint: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`, or `error` when there was no response.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    pub account: String,
    /// `ok`, `temporary_failure` or `permanent_failure`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub account: String,
}

pub struct Metrics {
    polls: Family<PollLabels, Counter>,
    poll_duration: Family<EndpointLabels, Histogram>,
    skipped_ticks: Family<EndpointLabels, Counter>,
    last_success: Family<EndpointLabels, Gauge<i64, AtomicI64>>,
    refreshes: Family<RefreshLabels, Counter>,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// How a token request ended, for the `refreshes` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    Ok,
    TemporaryFailure,
    PermanentFailure,
}

impl RefreshOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RefreshOutcome::Ok => "ok",
            RefreshOutcome::TemporaryFailure => "temporary_failure",
            RefreshOutcome::PermanentFailure => "permanent_failure",
        }
    }
}

/// One account as a scrape sees it, read when scraped.
pub struct AccountReading {
    pub account: String,
    /// Whether the account keeps an OAuth2 token in the store (API-key accounts do not).
    pub needs_token: bool,
    /// Whether the API refuses the account's freshly refreshed tokens.
    pub refusing: bool,
    /// The stored token; None when there is none or it could not be read.
    pub token: Option<TokenRow>,
    /// On a store several instances share: whether this instance holds the account's
    /// lease (polls and refreshes it). None on a store one daemon serves.
    pub leased: Option<bool>,
}

/// Reads every account for a scrape (on a blocking thread: it reads the store). Given by the
/// daemon, which knows the accounts and their tokens; this module knows neither.
pub type Readings = Arc<dyn Fn() -> Vec<AccountReading> + Send + Sync>;

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// See [`Metrics::endpoint`].
pub struct EndpointMetrics {
    /// The set the poll counters are created in.
    metrics: Arc<Metrics>,
    labels: EndpointLabels,
    /// The poll counters for `1xx` to `5xx`, created at their first use.
    by_class: [OnceLock<Counter>; 5],
    duration: Histogram,
    last_success: Gauge<i64, AtomicI64>,
}

impl EndpointMetrics {
    pub fn poll(&self, status: Option<u16>, ok: bool, seconds: f64) {
        match status.map(|s| s / 100) {
            Some(c @ 1..=5) => self.by_class[usize::from(c - 1)]
                .get_or_init(|| {
                    self.metrics
                        .polls
                        .get_or_create(&PollLabels {
                            account: self.labels.account.clone(),
                            endpoint: self.labels.endpoint.clone(),
                            class: format!("{c}xx"),
                        })
                        .clone()
                })
                .inc(),
            _ => self.metrics.poll_class(&self.labels, status),
        };
        self.duration.observe(seconds);
        if ok {
            self.last_success.set(now());
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            polls: Family::default(),
            poll_duration: Family::new_with_constructor(duration_histogram),
            skipped_ticks: Family::default(),
            last_success: Family::default(),
            refreshes: Family::default(),
        }
    }

    fn poll_class(&self, labels: &EndpointLabels, status: Option<u16>) -> u64 {
        let class = match status {
            Some(s) => format!("{}xx", s / 100),
            None => "error".into(),
        };
        self.polls
            .get_or_create(&PollLabels {
                account: labels.account.clone(),
                endpoint: labels.endpoint.clone(),
                class,
            })
            .inc()
    }

    /// One endpoint's poll metrics, looked up once: a poll then costs a few atomic adds
    /// instead of label strings built and hashed.
    pub fn endpoint(self: &Arc<Self>, account: &str, endpoint: &str) -> EndpointMetrics {
        let labels = EndpointLabels {
            account: account.into(),
            endpoint: endpoint.into(),
        };
        EndpointMetrics {
            duration: self.poll_duration.get_or_create(&labels).clone(),
            last_success: self.last_success.get_or_create(&labels).clone(),
            labels,
            metrics: self.clone(),
            by_class: Default::default(),
        }
    }

    pub fn skipped(&self, account: &str, endpoint: &str, ticks: u64) {
        let labels = EndpointLabels {
            account: account.into(),
            endpoint: endpoint.into(),
        };
        self.skipped_ticks.get_or_create(&labels).inc_by(ticks);
    }

    pub fn refresh(&self, account: &str, outcome: RefreshOutcome) {
        self.refreshes
            .get_or_create(&RefreshLabels {
                account: account.into(),
                outcome: outcome.as_str().into(),
            })
            .inc();
    }

    /// The text exposition, with token expiries read from the store now.
    pub fn render(&self, accounts: &[AccountReading], store: &StoreState) -> String {
        let mut registry = Registry::with_prefix("oauth_poller");
        let access: Family<AccountLabels, Gauge<i64, AtomicI64>> = Family::default();
        let refresh: Family<AccountLabels, Gauge<i64, AtomicI64>> = Family::default();
        let needs_reauth: Family<AccountLabels, Gauge<i64, AtomicI64>> = Family::default();
        let refusing: Family<AccountLabels, Gauge<i64, AtomicI64>> = Family::default();
        let leased: Family<AccountLabels, Gauge<i64, AtomicI64>> = Family::default();
        let t = now();
        for reading in accounts {
            let labels = AccountLabels {
                account: reading.account.clone(),
            };
            if let Some(held) = reading.leased {
                leased.get_or_create(&labels).set(i64::from(held));
            }
            refusing
                .get_or_create(&labels)
                .set(i64::from(reading.refusing));
            if let Some(row) = &reading.token {
                if let Some(e) = row.access_expires_at {
                    access.get_or_create(&labels).set(e.saturating_sub(t));
                }
                if let Some(e) = row.refresh_expires_at {
                    refresh.get_or_create(&labels).set(e.saturating_sub(t));
                }
                let flag = i64::from(row.state == TokenState::NeedsReauth);
                needs_reauth.get_or_create(&labels).set(flag);
            }
        }
        registry.register(
            "access_token_expires_in_seconds",
            "Seconds until the access token expires",
            access,
        );
        registry.register(
            "refresh_token_expires_in_seconds",
            "Seconds until the refresh token expires (when known)",
            refresh,
        );
        registry.register(
            "needs_reauth",
            "1 when the account needs a human to re-authorize",
            needs_reauth,
        );
        registry.register(
            "api_refuses_fresh_tokens",
            "1 while the API answers 401 to freshly refreshed tokens (a 401 then refreshes at most once per backoff step)",
            refusing,
        );
        registry.register(
            "lease_held",
            "1 while this instance holds the account's lease (a store several instances share)",
            leased,
        );
        registry.register(
            "refreshes",
            "Token requests by outcome",
            self.refreshes.clone(),
        );
        registry.register(
            "polls",
            "Polls by endpoint and HTTP status class",
            self.polls.clone(),
        );
        registry.register(
            "poll_duration_seconds",
            "Poll duration",
            self.poll_duration.clone(),
        );
        registry.register(
            "skipped_ticks",
            "Ticks skipped because the previous poll still ran",
            self.skipped_ticks.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the endpoint's last successful poll",
            self.last_success.clone(),
        );
        register_store(&mut registry, store);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Whether the store answers, and the poll rows waiting for it or dropped.
fn register_store(registry: &mut Registry, store: &StoreState) {
    let available: Gauge<i64, AtomicI64> = Gauge::default();
    available.set(i64::from(store.down_since.is_none()));
    registry.register(
        "store_available",
        "1 while the store answers, 0 while it is unavailable (polls go on, their rows wait)",
        available,
    );
    let buffered: Gauge<i64, AtomicI64> = Gauge::default();
    buffered.set(i64::try_from(store.buffered_rows).unwrap_or(i64::MAX));
    registry.register(
        "poll_rows_buffered",
        "Poll rows kept in memory because the store could not take them yet",
        buffered,
    );
    registry.register(
        "poll_rows_dropped",
        "Poll rows dropped: the buffer (poll_buffer) was full, or the store refused them",
        ConstCounter::new(store.dropped_rows),
    );
}

/// What `/healthz` answers: 503 while the store is unavailable (the daemon goes on polling,
/// but its results wait in memory) or while an account has no usable token.
fn health_answer(store: &StoreState, read: &Readings) -> Result<(), String> {
    if let Some(outage) = store.outage() {
        return Err(format!("{outage} (polls go on)"));
    }
    let bad: Vec<String> = read()
        .into_iter()
        .filter(|a| !matches!(&a.token, Some(r) if r.state == TokenState::Ok) && a.needs_token)
        .map(|a| a.account)
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join(", "))
    }
}

/// Serves `/metrics` and `/healthz` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    read: Readings,
    store: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::http::{header, StatusCode};
    use axum::routing::get as route;
    let health_read = read.clone();
    let health_store = store.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            route(move || {
                let (metrics, read, store) = (metrics.clone(), read.clone(), store.clone());
                async move {
                    // The store is read on a blocking thread, not the runtime's.
                    let body = tokio::task::spawn_blocking(move || {
                        metrics.render(&read(), &store.state())
                    })
                    .await
                    .unwrap_or_default();
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            route(move || {
                let (read, store) = (health_read.clone(), health_store.clone());
                async move {
                    let answer =
                        tokio::task::spawn_blocking(move || health_answer(&store.state(), &read))
                            .await
                            .unwrap_or_else(|_| Err("(the store could not be read)".into()));
                    match answer {
                        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ok: {why}\n")),
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics listener failed");
    }
}
