//! Provider simulator: a fake OAuth2 provider and JSON API on loopback.
//!
//! Used by oauth-poller's `demo`, the `oauth-poller-sim` binary, oauth-poller's integration
//! tests (fault injection, crash tests) and its benchmark. It does not depend on oauth-poller:
//! it speaks HTTP, and [`example_config`] writes the configuration as text. Each [`Profile`] imitates one of the vendor systems the product serves, and is
//! as strict as the real one: it rejects what the real provider would reject.
//!
//! Layout: `state` (tokens, codes), `token` (token endpoint), `authorize` (authorization
//! endpoint), `api` (resource endpoints), `fault` (fault injection), `conn` (the listener
//! that lets a fault reset or trickle a connection), `admin` (`/_sim/`), `oauth_error` (the
//! error response that `token` answers and `state`'s grants fail with), `cli` (the
//! `oauth-poller-sim` binary's arguments and command).

mod admin;
mod api;
mod authorize;
mod cli;
mod conn;
mod fault;
mod oauth_error;
mod profile;
mod state;
mod stats;
mod token;
mod util;

#[cfg(test)]
mod tests;

pub use cli::{example_config, simulate_command, SimulateArgs};
pub use conn::ConnInfo;
pub use fault::{FaultKind, FaultSpec, FaultTarget};
pub use profile::Profile;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the simulator behaves. [`SimOptions::new`] gives the profile's defaults.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub profile: Profile,
    /// Access-token lifetime. `Duration::ZERO`: the token never expires and the token
    /// response carries no `expires_in` (the bare-token default).
    pub access_ttl: Duration,
    /// Refresh-token lifetime, `None` = no expiry.
    pub refresh_ttl: Option<Duration>,
    /// Issue a new refresh token on refresh and revoke the old one at once.
    pub rotate: bool,
    /// On refresh, revoke the access token that belonged to the used refresh token
    /// (DOT, Doorkeeper and Spring all do this). Default true.
    pub revoke_access_on_refresh: bool,
    /// When not rotating: repeat the (unchanged) refresh token in the refresh response.
    /// `false` leaves `refresh_token` out, as some providers do. Default true.
    pub echo_refresh: bool,
    /// Accept `grant_type=client_credentials` (access token only). Default false.
    pub allow_client_credentials: bool,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
    /// Key for `Authorization: Token <key>` (inode only).
    pub api_key: String,
    /// Registered redirect URIs. A loopback `http://127.0.0.1:PORT/path` entry also matches
    /// any other port with the same host and path (RFC 8252 7.3).
    pub redirect_uris: Vec<String>,
    /// Scopes the client may have (space separated); also the default granted scope.
    pub scope: String,
    /// Authorization-code lifetime.
    pub code_ttl: Duration,
    /// How many items each list endpoint returns.
    pub items: usize,
    /// Items per page where a list pages: iNode's DRF lists (unless `no_pagination`),
    /// SciNote's JSON:API lists, and every list with `link_pages`. A request may ask for
    /// another size (`page_size`, `page[size]`, `per_page`).
    pub page_size: usize,
    /// Lists that would answer in one piece (Citesphere's groups, the bare-token site's
    /// listings) page instead with an RFC 8288 `Link` header, `?page=N&per_page=M`.
    pub link_pages: bool,
    /// The list contents change this often (None: static).
    pub change_every: Option<Duration>,
    /// Faults active from the start (the same as posting them to `/_sim/fault`).
    pub faults: Vec<FaultSpec>,
}

impl SimOptions {
    pub fn new(profile: Profile) -> Self {
        profile::defaults(profile)
    }
}

/// The simulator: shared state, cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) opts: SimOptions,
    pub(crate) started: Instant,
    pub(crate) store: Mutex<state::Store>,
    pub(crate) stats: stats::Counters,
    pub(crate) faults: fault::Faults,
    pub(crate) stopping: Arc<AtomicBool>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// When recording (benchmarks, tests): each API request's arrival.
    pub(crate) arrivals: Mutex<Option<Vec<Arrival>>>,
}

/// One API request, as recorded by [`Simulator::record_arrivals`].
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Its query string.
    pub query: String,
    /// When it arrived, since the simulator started ([`Simulator::elapsed`]).
    pub at: Duration,
    /// The client's address (its connection's local end): which process sent it.
    pub peer: Option<std::net::SocketAddr>,
}

/// Largest request body the simulator reads.
const MAX_REQUEST_BODY: usize = 1 << 20;

impl Simulator {
    pub fn new(opts: SimOptions) -> Self {
        let faults = fault::Faults::default();
        for f in &opts.faults {
            faults.add(f.clone());
        }
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Simulator {
            inner: Arc::new(Inner {
                opts,
                started: Instant::now(),
                store: Mutex::new(state::Store::default()),
                stats: stats::Counters::default(),
                faults,
                stopping: Arc::new(AtomicBool::new(false)),
                shutdown,
                arrivals: Mutex::new(None),
            }),
        }
    }

    /// Starts recording the arrival of every API request (query string, time since the
    /// simulator started, client address): the benchmark measures schedule accuracy from
    /// outside the daemon, and tests tell which process asked.
    pub fn record_arrivals(&self) {
        *self
            .inner
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// The arrivals recorded so far (and keeps recording).
    pub fn take_arrivals(&self) -> Vec<Arrival> {
        let mut guard = self
            .inner
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        guard.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Time since the simulator started: the clock of [`Arrival::at`].
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub fn options(&self) -> &SimOptions {
        &self.inner.opts
    }

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, state::Store> {
        self.inner.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole simulator as one router (all paths go through one dispatcher).
    ///
    /// `reset` and `trickle` faults need the connection control that [`Simulator::serve`]
    /// installs; under a plain `axum::serve` they answer 500 instead.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(dispatch)
            .with_state(self.clone())
    }

    /// Serves until `shutdown` completes (tests drive it without signals). Hanging and
    /// trickling responses are cut off at shutdown.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.inner.stopping.store(false, Ordering::SeqCst);
        self.inner.shutdown.send_replace(false);
        let stopping = self.inner.stopping.clone();
        let tx = self.inner.shutdown.clone();
        let listener = conn::SimListener::new(listener, stopping.clone());
        let app = self
            .router()
            .into_make_service_with_connect_info::<ConnInfo>();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stopping.store(true, Ordering::SeqCst);
                tx.send_replace(true);
            })
            .await
    }

    /// Issues a token pair directly (as if an authorization had happened), for seeding:
    /// returns the token response JSON text, shaped as this profile's token endpoint answers.
    pub fn issue_seed(&self) -> String {
        let o = &self.inner.opts;
        let with_refresh = o.profile.has_token_endpoint();
        let grant = self.store().issue(o, &o.scope, with_refresh, "seed", None);
        token::response_body(o, &grant).to_string()
    }

    /// The counters and token lists, the same as `GET /_sim/stats`.
    pub fn stats(&self) -> serde_json::Value {
        stats::snapshot(self)
    }

    /// Adds a fault (as `POST /_sim/fault` does); returns its id.
    pub fn add_fault(&self, spec: FaultSpec) -> u64 {
        self.inner.faults.add(spec)
    }

    /// Removes every fault.
    pub fn clear_faults(&self) -> usize {
        self.inner.faults.clear()
    }

    /// Resolves when the simulator is shutting down.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// What kind of endpoint a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Token,
    Authorize,
    Api,
}

async fn dispatch(State(sim): State<Simulator>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if let Some(rest) = path.strip_prefix("/_sim/") {
        let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
            Ok(b) => b,
            Err(_) => return util::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
        };
        return admin::handle(&sim, rest, &parts, &body);
    }
    let profile = sim.inner.opts.profile;
    let route = profile.route(&parts.method, &path);
    let conn = parts
        .extensions
        .get::<ConnectInfo<ConnInfo>>()
        .map(|c| c.0.clone());
    if route == Route::Api {
        sim.inner.stats.api_request();
        if let Some(log) = sim
            .inner
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            log.push(Arrival {
                query: parts.uri.query().unwrap_or("").to_string(),
                at: sim.inner.started.elapsed(),
                peer: conn.as_ref().map(|c| c.remote),
            });
        }
    }
    let mut fault = sim.inner.faults.take(route, &path);
    // A trickled response closes its connection (the trickle mode is per connection).
    let mut close = false;
    if let Some(f) = &fault {
        let early = if matches!(f.kind, FaultKind::Delay | FaultKind::Trickle) {
            fault::before(&sim, f, conn.as_ref()).await
        } else if !f.process {
            Some(fault::respond(&sim, f, route, conn.as_ref()).await)
        } else {
            None
        };
        if let Some(resp) = early {
            if route == Route::Token {
                sim.inner.stats.token_fault();
            } else if route == Route::Api {
                sim.inner.stats.api_status(resp.status().as_u16());
            }
            return resp;
        }
        if matches!(f.kind, FaultKind::Delay | FaultKind::Trickle) {
            close = f.kind == FaultKind::Trickle;
            fault = None;
        }
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(_) => return util::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
    };
    let resp = match route {
        Route::Token => token::handle(&sim, &parts, &body),
        Route::Authorize => authorize::handle(&sim, &parts),
        Route::Api => api::handle(&sim, &parts),
    };
    let mut resp = match &fault {
        Some(f) => fault::respond(&sim, f, route, conn.as_ref()).await,
        None => resp,
    };
    if close {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    if route == Route::Api {
        sim.inner.stats.api_status(resp.status().as_u16());
        if resp.status() == StatusCode::UNAUTHORIZED {
            sim.inner.stats.unauthorized();
        }
    }
    resp
}

/// A response for a method the endpoint does not allow.
pub(crate) fn method_not_allowed(allow: &Method) -> Response {
    Response::builder()
        .status(StatusCode::METHOD_NOT_ALLOWED)
        .header("allow", allow.as_str())
        .header("content-type", "application/json")
        .body(Body::from("{\"detail\":\"Method not allowed.\"}"))
        .unwrap_or_default()
}
