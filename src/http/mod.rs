//! The one HTTP client, for API polls and token requests: HTTP/1.1 keep-alive connections
//! from hyper's connection layer, pooled per origin, with nothing else on the path of a
//! request. Each caller's rules are parameters of the request: which redirects to follow
//! ([`Redirects`]) and how large a body may be. Proxies come from the environment and never
//! see loopback; TLS has one configuration ([`connect`]).
//!
//! A poll is a GET on a connection that is nearly always already open, so what a general
//! client adds around hyper (URL re-parsing, middleware layers, a shared pool behind a lock
//! with its own waiters) costs more than the request itself (docs/benchmark-method.md);
//! this one costs a header map and a pool pop.

mod connect;

use bytes::Bytes;
use connect::{Connection, Connector};
use http::header::{
    HeaderName, HeaderValue, ACCEPT, HOST, LOCATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use url::Url;

pub use http::{HeaderMap, Method};

/// Keep-alive connections idle longer than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Same-origin redirects followed before the request fails.
const MAX_REDIRECTS: usize = 5;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: url::Host<String>,
    port: u16,
}

/// Where one URL's requests go, prepared once: origin, `Host` header, request target.
#[derive(Clone, Debug)]
pub struct Target {
    url: Url,
    origin: Origin,
    host_header: HeaderValue,
    path: http::Uri,
}

impl Target {
    pub fn new(url: &Url) -> Result<Target, String> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("unsupported scheme `{other}`")),
        };
        let host = url.host().ok_or("the URL has no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target {
            url: url.clone(),
            origin: Origin { https, host, port },
            host_header: HeaderValue::from_str(&authority)
                .map_err(|_| "the host is not a valid header value")?,
            path: path
                .parse()
                .map_err(|_| "the path is not a valid request target")?,
        })
    }

    /// The whole URL as a request target, as an HTTP proxy wants it.
    fn absolute(&self) -> Result<http::Uri, Error> {
        self.url
            .as_str()
            .parse()
            .map_err(|_| Error::Request("the URL is not a valid request target".into()))
    }
}

/// Which redirects a request follows: a closed set, one per kind of caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirects {
    /// None: a 3xx is the answer. Token requests: a redirect would carry client
    /// credentials and grants elsewhere.
    None,
    /// Within the request's origin, at most five; credentials never go to another host, so
    /// a redirect elsewhere is returned as the answer (and fails the poll).
    SameOrigin,
}

/// One request: the caller's headers besides `Host`, `Accept: application/json` and
/// `User-Agent`, which every request carries.
pub struct Request<'a> {
    pub method: Method,
    pub target: &'a Target,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Bytes,
    pub redirects: Redirects,
    /// The answer's body is read in full up to this many bytes; a larger one is an error.
    pub max_body: u64,
}

/// An answer, read in full.
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why a request got no answer. The text never holds the URL (a token request's query may
/// hold secrets) or any header.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("timeout: no complete answer within `timeout`")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    /// The answer came, but its body is larger than the request's `max_body`.
    #[error("response body larger than max_body ({max} bytes): cut off")]
    TooLarge { status: u16, max: u64 },
    #[error("reading the body: request failed: {message}")]
    Body { status: u16, message: String },
}

impl Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::TooLarge { status, .. } | Error::Body { status, .. } => Some(*status),
            _ => None,
        }
    }
}

struct Idle {
    connection: Connection,
    since: Instant,
}

pub struct Client {
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
    connector: Connector,
    timeout: Duration,
    user_agent: HeaderValue,
}

impl Client {
    /// A client whose requests end within `timeout` (connecting within `connect_timeout`),
    /// with the proxies the environment names now.
    pub fn new(timeout: Duration, connect_timeout: Duration) -> Client {
        Client {
            idle: Mutex::new(HashMap::new()),
            connector: Connector::new(connect_timeout),
            timeout,
            user_agent: HeaderValue::from_static(concat!(
                "oauth-poller/",
                env!("CARGO_PKG_VERSION")
            )),
        }
    }

    /// Sends `request`, follows redirects as it says, and reads the whole body, all within
    /// `timeout`.
    pub async fn send(&self, request: Request<'_>) -> Result<Response, Error> {
        match tokio::time::timeout(self.timeout, self.send_following(&request)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn send_following(&self, request: &Request<'_>) -> Result<Response, Error> {
        let mut redirected: Option<Target> = None;
        for _ in 0..=MAX_REDIRECTS {
            let current = redirected.as_ref().unwrap_or(request.target);
            let (head, body, connection) = self.send_once(request, current).await?;
            let status = head.status.as_u16();
            let next = match request.redirects {
                Redirects::SameOrigin => same_origin_redirect(current, status, &head.headers),
                Redirects::None => None,
            };
            if let Some(next) = next {
                // The body of a redirect is not read: the connection is not reused.
                drop((body, connection));
                redirected = Some(next);
                continue;
            }
            let body = read_body(body, status, request.max_body).await?;
            self.put_back(&current.origin, connection);
            return Ok(Response {
                status,
                headers: head.headers,
                body,
            });
        }
        Err(Error::Request(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Sends the request once, on an idle connection if there is one. A kept-alive
    /// connection may have been closed by the server while idle: a request that fails on
    /// one before it was sent is sent again, once, on a new connection (a GET also when the
    /// answer was cut short; a POST not, as the server may have acted on it).
    async fn send_once(
        &self,
        request: &Request<'_>,
        target: &Target,
    ) -> Result<(http::response::Parts, hyper::body::Incoming, Connection), Error> {
        let mut retried = false;
        loop {
            let (mut connection, reused) = match self.checkout(&target.origin) {
                Some(c) => (c, true),
                None => (
                    Box::pin(self.connector.connect(&target.origin, &target.url)).await?,
                    false,
                ),
            };
            let may_retry = reused && !retried;
            if connection.sender.ready().await.is_err() {
                if may_retry {
                    retried = true;
                    continue;
                }
                return Err(Error::Request("the connection closed".into()));
            }
            let mut http_request = http::Request::new(Full::new(request.body.clone()));
            *http_request.method_mut() = request.method.clone();
            *http_request.uri_mut() = match &connection.forward {
                Some(_) => target.absolute()?,
                None => target.path.clone(),
            };
            let h = http_request.headers_mut();
            h.insert(HOST, target.host_header.clone());
            h.insert(ACCEPT, HeaderValue::from_static("application/json"));
            h.insert(USER_AGENT, self.user_agent.clone());
            for (name, value) in request.headers {
                h.insert(name.clone(), value.clone());
            }
            if let Some(auth) = connection
                .forward
                .as_ref()
                .and_then(|f| f.proxy_authorization.clone())
            {
                h.insert(PROXY_AUTHORIZATION, auth);
            }
            match connection.sender.send_request(http_request).await {
                Ok(response) => {
                    let (head, body) = response.into_parts();
                    return Ok((head, body, connection));
                }
                Err(e)
                    if may_retry
                        && (e.is_canceled()
                            || (request.method == Method::GET && e.is_incomplete_message())) =>
                {
                    retried = true;
                }
                Err(e) => return Err(Error::Request(describe(&e))),
            }
        }
    }

    fn checkout(&self, origin: &Origin) -> Option<Connection> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(origin)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < IDLE_TIMEOUT && !c.connection.sender.is_closed() {
                return Some(c.connection);
            }
        }
        None
    }

    fn put_back(&self, origin: &Origin, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock();
        if !idle.contains_key(origin) {
            idle.insert(origin.clone(), Vec::new());
        }
        let Some(list) = idle.get_mut(origin) else {
            return;
        };
        // The stack is used from the top: connections at the bottom may lie idle until the
        // server closes them. Sweep them out when the bottom one is past its time.
        if list
            .first()
            .is_some_and(|c| now.duration_since(c.since) >= IDLE_TIMEOUT)
        {
            list.retain(|c| {
                now.duration_since(c.since) < IDLE_TIMEOUT && !c.connection.sender.is_closed()
            });
        }
        list.push(Idle {
            connection,
            since: now,
        });
    }
}

/// A redirect to follow: a 3xx with a `Location` on the same origin.
fn same_origin_redirect(current: &Target, status: u16, headers: &HeaderMap) -> Option<Target> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = headers.get(LOCATION)?.to_str().ok()?;
    let next = current.url.join(location).ok()?;
    (next.origin() == current.url.origin())
        .then(|| Target::new(&next).ok())
        .flatten()
}

/// The one body limit: the body is read in full, and refused as soon as it passes `max`.
async fn read_body(
    mut body: hyper::body::Incoming,
    status: u16,
    max: u64,
) -> Result<Vec<u8>, Error> {
    use hyper::body::Body as _;
    let hint = body.size_hint().exact().unwrap_or(0).min(max) as usize;
    let mut out = Vec::with_capacity(hint);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Body {
            status,
            message: describe(&e),
        })?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > max {
                return Err(Error::TooLarge { status, max });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(86400)))
}

/// The error and its causes on one line (hyper's and rustls's Display alone say little).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_query_and_port() {
        let t = Target::new(&Url::parse("http://127.0.0.1:8080/api/v1/?a=1&b").unwrap()).unwrap();
        assert_eq!(t.path.to_string(), "/api/v1/?a=1&b");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        let t = Target::new(&Url::parse("https://[::1]/x").unwrap()).unwrap();
        assert_eq!(t.host_header, "[::1]");
        assert_eq!(t.origin.port, 443);
    }

    #[test]
    fn redirects_only_within_the_origin() {
        let t = Target::new(&Url::parse("http://h:1/a/b").unwrap()).unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(LOCATION, HeaderValue::from_static("../c?x=1"));
        assert_eq!(
            same_origin_redirect(&t, 302, &h).unwrap().path.to_string(),
            "/c?x=1"
        );
        assert!(same_origin_redirect(&t, 200, &h).is_none());
        h.insert(LOCATION, HeaderValue::from_static("http://other:1/c"));
        assert!(same_origin_redirect(&t, 301, &h).is_none());
        h.insert(LOCATION, HeaderValue::from_static("https://h:1/c"));
        assert!(same_origin_redirect(&t, 301, &h).is_none());
    }
}
