//! Fault injection: what `/_sim/fault`, `SimOptions::faults` and `oauth-poller-sim --fault`
//! set up.
//!
//! Textual form (`oauth-poller-sim --fault`): `TARGET:KIND[,key=value...]`, e.g.
//! `token:503,count=3`, `api:429,retry_after=5`, `api:hang`, `token:reset,process=true`,
//! `api:trickle,trickle_ms=200`.
//! The same keys work as query parameters or JSON fields of `POST /_sim/fault`.

use super::{ConnInfo, Route, Simulator};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which requests a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    Token,
    Api,
    Authorize,
    Any,
}

/// What the fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with `status` (and `Retry-After: retry_after` if set).
    Status,
    /// Accept the request and never answer (until the simulator shuts down).
    Hang,
    /// Close the connection without a response (TCP reset).
    Reset,
    /// The normal response, its body sent one byte per `trickle_ms`.
    Trickle,
    /// 200 with a JSON body larger than `bytes`.
    Big,
    /// 200 with a truncated JSON body.
    InvalidJson,
    /// 200 with an HTML error page.
    Html,
    /// 200 token response without `access_token`.
    NoAccessToken,
    /// The normal response, after `delay_ms`.
    Delay,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status => "status",
            FaultKind::Hang => "hang",
            FaultKind::Reset => "reset",
            FaultKind::Trickle => "trickle",
            FaultKind::Big => "big",
            FaultKind::InvalidJson => "invalid_json",
            FaultKind::Html => "html",
            FaultKind::NoAccessToken => "no_access_token",
            FaultKind::Delay => "delay",
        }
    }
}

/// One fault. Without `count` and `seconds` it stays until cleared.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    pub target: FaultTarget,
    pub kind: FaultKind,
    /// HTTP status for `Status` (default 503).
    pub status: u16,
    pub retry_after: Option<u64>,
    /// Hit only this many requests.
    pub count: Option<u64>,
    /// Active for this long from when it is added.
    pub duration: Option<Duration>,
    /// Let this many matching requests through first.
    pub skip: u64,
    /// Only requests whose path contains this.
    pub path: Option<String>,
    /// Process the request first (tokens are issued, refresh tokens rotated), then answer
    /// with the fault: "the provider did it but the answer was lost".
    pub process: bool,
    pub trickle_ms: u64,
    pub bytes: usize,
    pub delay_ms: u64,
}

impl FaultSpec {
    pub fn new(target: FaultTarget, kind: FaultKind) -> Self {
        FaultSpec {
            target,
            kind,
            status: 503,
            retry_after: None,
            count: None,
            duration: None,
            skip: 0,
            path: None,
            process: false,
            trickle_ms: 100,
            bytes: 11 << 20,
            delay_ms: 1000,
        }
    }

    /// A fault answering `status`.
    pub fn status(target: FaultTarget, status: u16) -> Self {
        FaultSpec {
            status,
            ..Self::new(target, FaultKind::Status)
        }
    }

    /// Builds a fault from key/value pairs (`target`, `kind`, `status`, `retry_after`,
    /// `count`, `seconds`, `skip`, `path`, `process`, `trickle_ms`, `bytes`, `delay_ms`).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut f = FaultSpec::new(FaultTarget::Any, FaultKind::Status);
        let mut kind_seen = false;
        for (k, v) in pairs {
            let num = |v: &str| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{k}: not a number: {v:?}"))
            };
            match k {
                "target" => {
                    f.target = match v {
                        "token" => FaultTarget::Token,
                        "api" => FaultTarget::Api,
                        "authorize" => FaultTarget::Authorize,
                        "any" | "all" | "" => FaultTarget::Any,
                        _ => {
                            return Err(format!(
                                "target: expected token, api, authorize or any, not {v:?}"
                            ))
                        }
                    }
                }
                "kind" => {
                    kind_seen = true;
                    if let Ok(status) = v.parse::<u16>() {
                        f.kind = FaultKind::Status;
                        f.status = status;
                    } else {
                        f.kind = parse_kind(v)?;
                    }
                }
                "status" => {
                    f.status = v
                        .parse()
                        .map_err(|_| format!("status: not a number: {v:?}"))?;
                    if !kind_seen {
                        f.kind = FaultKind::Status;
                    }
                }
                "retry_after" => f.retry_after = Some(num(v)?),
                "count" | "n" => f.count = Some(num(v)?),
                "seconds" | "for" => {
                    let s: f64 = v
                        .parse()
                        .map_err(|_| format!("seconds: not a number: {v:?}"))?;
                    f.duration = Some(Duration::from_secs_f64(s.max(0.0)));
                }
                "skip" | "after" => f.skip = num(v)?,
                "path" => f.path = Some(v.to_owned()),
                "process" => f.process = matches!(v, "1" | "true" | "yes" | ""),
                "trickle_ms" | "ms" => f.trickle_ms = num(v)?,
                "bytes" => f.bytes = num(v)? as usize,
                "delay_ms" => f.delay_ms = num(v)?,
                _ => return Err(format!("unknown fault option {k:?}")),
            }
        }
        if !(100..=599).contains(&f.status) {
            return Err(format!("status {} is not an HTTP status", f.status));
        }
        Ok(f)
    }

    pub fn to_json(&self) -> Value {
        let target = match self.target {
            FaultTarget::Token => "token",
            FaultTarget::Api => "api",
            FaultTarget::Authorize => "authorize",
            FaultTarget::Any => "any",
        };
        json!({
            "target": target,
            "kind": self.kind.name(),
            "status": self.status,
            "retry_after": self.retry_after,
            "count": self.count,
            "seconds": self.duration.map(|d| d.as_secs_f64()),
            "skip": self.skip,
            "path": self.path,
            "process": self.process,
            "trickle_ms": self.trickle_ms,
            "bytes": self.bytes,
            "delay_ms": self.delay_ms,
        })
    }
}

fn parse_kind(v: &str) -> Result<FaultKind, String> {
    Ok(match v.replace('-', "_").as_str() {
        "status" => FaultKind::Status,
        "hang" => FaultKind::Hang,
        "reset" => FaultKind::Reset,
        "trickle" => FaultKind::Trickle,
        "big" => FaultKind::Big,
        "invalid_json" => FaultKind::InvalidJson,
        "html" => FaultKind::Html,
        "no_access_token" => FaultKind::NoAccessToken,
        "delay" => FaultKind::Delay,
        _ => return Err(format!("unknown fault kind {v:?}")),
    })
}

/// `TARGET:KIND[,key=value...]`; KIND may be an HTTP status.
impl FromStr for FaultSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (target, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected TARGET:KIND[,key=value...]"))?;
        let mut pairs = vec![("target", target)];
        for (i, item) in rest.split(',').filter(|x| !x.is_empty()).enumerate() {
            match item.split_once('=') {
                Some((k, v)) => pairs.push((k, v)),
                None if i == 0 => pairs.push(("kind", item)),
                None => pairs.push((item, "")),
            }
        }
        FaultSpec::from_pairs(pairs)
    }
}

struct Active {
    id: u64,
    spec: FaultSpec,
    until: Option<Instant>,
    remaining: Option<u64>,
    skip_left: u64,
}

#[derive(Default)]
struct List {
    next_id: u64,
    items: Vec<Active>,
    triggered: u64,
    by_kind: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub(crate) struct Faults {
    len: AtomicUsize,
    list: Mutex<List>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, List> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, spec: FaultSpec) -> u64 {
        let mut l = self.lock();
        l.next_id += 1;
        let id = l.next_id;
        l.items.push(Active {
            id,
            until: spec.duration.map(|d| Instant::now() + d),
            remaining: spec.count,
            skip_left: spec.skip,
            spec,
        });
        self.len.store(l.items.len(), Ordering::SeqCst);
        id
    }

    pub(crate) fn clear(&self) -> usize {
        let mut l = self.lock();
        let n = l.items.len();
        l.items.clear();
        self.len.store(0, Ordering::SeqCst);
        n
    }

    /// The fault that hits this request, if any (counted as triggered).
    pub(crate) fn take(&self, route: Route, path: &str) -> Option<FaultSpec> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut l = self.lock();
        let now = Instant::now();
        l.items
            .retain(|a| a.until.is_none_or(|u| u > now) && a.remaining != Some(0));
        let mut hit = None;
        for a in l.items.iter_mut() {
            let target_ok = match a.spec.target {
                FaultTarget::Any => true,
                FaultTarget::Token => route == Route::Token,
                FaultTarget::Api => route == Route::Api,
                FaultTarget::Authorize => route == Route::Authorize,
            };
            if !target_ok || a.spec.path.as_deref().is_some_and(|p| !path.contains(p)) {
                continue;
            }
            if a.skip_left > 0 {
                a.skip_left -= 1;
                continue;
            }
            if let Some(r) = a.remaining.as_mut() {
                *r -= 1;
            }
            hit = Some(a.spec.clone());
            break;
        }
        l.items.retain(|a| a.remaining != Some(0));
        self.len.store(l.items.len(), Ordering::SeqCst);
        if let Some(f) = &hit {
            l.triggered += 1;
            *l.by_kind.entry(f.kind.name()).or_default() += 1;
            tracing::debug!(kind = f.kind.name(), path, "sim: fault triggered");
        }
        hit
    }

    pub(crate) fn snapshot(&self) -> Value {
        let l = self.lock();
        let active: Vec<Value> = l
            .items
            .iter()
            .map(|a| {
                let mut v = a.spec.to_json();
                v["id"] = json!(a.id);
                v["remaining"] = json!(a.remaining);
                v
            })
            .collect();
        json!({"triggered": l.triggered, "by_kind": l.by_kind, "active": active})
    }
}

/// Faults that change how the normal response is delivered (`delay`, `trickle`) act here and
/// return `None`; the others return their response.
pub(crate) async fn before(
    sim: &Simulator,
    f: &FaultSpec,
    conn: Option<&ConnInfo>,
) -> Option<Response> {
    match f.kind {
        FaultKind::Delay => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(f.delay_ms)) => {}
                _ = sim.stopped() => {}
            }
            None
        }
        FaultKind::Trickle => match conn {
            Some(c) => {
                c.trickle(f.trickle_ms);
                None
            }
            None => Some(no_conn()),
        },
        _ => None,
    }
}

fn no_conn() -> Response {
    super::util::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "this fault needs Simulator::serve\n",
    )
}

/// The response of a fault that replaces the endpoint's answer.
pub(crate) async fn respond(
    sim: &Simulator,
    f: &FaultSpec,
    route: Route,
    conn: Option<&ConnInfo>,
) -> Response {
    let ok_json = |body: String| super::util::json_text(StatusCode::OK, body);
    match f.kind {
        FaultKind::Status => {
            let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let (ctype, body) = if matches!(f.status, 502..=504) {
                (
                    "text/html",
                    format!("<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"),
                )
            } else {
                ("application/json", json!({"detail": format!("simulated {status}")}).to_string())
            };
            let mut b = Response::builder().status(status).header(header::CONTENT_TYPE, ctype);
            if let Some(s) = f.retry_after {
                b = b.header(header::RETRY_AFTER, s.to_string());
            }
            b.body(Body::from(body)).unwrap_or_default()
        }
        FaultKind::Hang => {
            sim.stopped().await;
            if let Some(c) = conn {
                c.reset();
            }
            super::util::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
        FaultKind::Reset => match conn {
            Some(c) => {
                c.reset();
                super::util::text(StatusCode::INTERNAL_SERVER_ERROR, "reset\n")
            }
            None => no_conn(),
        },
        FaultKind::Big => {
            let chunk = format!("\"{}\",", "x".repeat(1022));
            let mut body = String::with_capacity(f.bytes + 2048);
            body.push('[');
            while body.len() <= f.bytes {
                body.push_str(&chunk);
            }
            body.push_str("\"end\"]");
            ok_json(body)
        }
        FaultKind::InvalidJson => ok_json(match route {
            Route::Token => "{\"access_token\": \"".to_owned(),
            _ => "{\"count\": 3, \"results\": [{\"id\": 1,".to_owned(),
        }),
        FaultKind::Html => super::util::html(
            StatusCode::OK,
            "<!DOCTYPE html>\n<html><head><title>Service unavailable</title></head>\n<body><h1>We'll be back soon</h1><p>The service is undergoing maintenance.</p></body></html>\n".to_owned(),
        ),
        FaultKind::NoAccessToken => ok_json(match route {
            Route::Token => json!({"token_type": "Bearer", "expires_in": 3600, "scope": sim.inner.opts.scope}).to_string(),
            _ => "{}".to_owned(),
        }),
        // Handled in `before`; not reached.
        FaultKind::Trickle | FaultKind::Delay => super::util::text(StatusCode::OK, ""),
    }
}

/// Parses a `/_sim/fault` JSON body: an object whose values are strings, numbers or booleans.
pub(crate) fn from_json(v: &Value) -> Result<FaultSpec, String> {
    let obj = v.as_object().ok_or("expected a JSON object")?;
    let owned: Vec<(String, String)> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    FaultSpec::from_pairs(owned.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}
