//! The HTTP client for API polls: HTTP/1.1 keep-alive connections from hyper's connection
//! layer, pooled per origin, with nothing else on the path of a poll.
//!
//! A poll is a GET on a connection that is nearly always already open, so what a general
//! client adds around hyper (URL re-parsing, middleware layers, a shared pool behind a lock
//! with its own waiters) costs more than the request itself; this one costs a header map
//! and a pool pop. Token requests, rare and with different rules, use reqwest
//! (`oauth::TokenClient`), and so do API polls when a proxy is configured in the
//! environment, because reqwest implements proxies and this client does not. Both reqwest
//! clients take the proxy from [`with_environment_proxy`], which never proxies loopback.

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, HOST, LOCATION, USER_AGENT};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use url::Url;

/// Keep-alive connections idle longer than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Same-origin redirects followed before the poll fails.
const MAX_REDIRECTS: usize = 5;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: url::Host<String>,
    port: u16,
}

/// Where one endpoint's requests go, prepared once: origin, `Host` header, request target.
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
}

/// An answer, read in full.
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// Why a request got no answer. The text never holds the URL's query or any header.
#[derive(Debug)]
pub enum Error {
    Timeout,
    Connect(String),
    Request(String),
    /// The answer came, but its body is larger than `max_body`.
    TooLarge {
        status: u16,
        max: u64,
    },
    Body {
        status: u16,
        message: String,
    },
}

impl Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::TooLarge { status, .. } | Error::Body { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Timeout => f.write_str("timeout: no complete answer within `timeout`"),
            Error::Connect(m) => write!(f, "cannot connect: {m}"),
            Error::Request(m) => write!(f, "request failed: {m}"),
            Error::TooLarge { max, .. } => {
                write!(
                    f,
                    "response body larger than max_body ({max} bytes): cut off"
                )
            }
            Error::Body { message, .. } => write!(f, "reading the body: request failed: {message}"),
        }
    }
}

struct Idle {
    sender: SendRequest<Empty<Bytes>>,
    since: Instant,
}

pub struct ApiClient {
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
    /// Built at the first `https` connection: loading the system's roots costs time and
    /// memory that a daemon polling only plain-HTTP loopback services never needs.
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: HeaderValue,
}

impl ApiClient {
    pub fn new(timeout: Duration, connect_timeout: Duration) -> ApiClient {
        ApiClient {
            idle: Mutex::new(HashMap::new()),
            tls: OnceLock::new(),
            timeout,
            connect_timeout,
            user_agent: HeaderValue::from_static(concat!(
                "oauth-poller/",
                env!("CARGO_PKG_VERSION")
            )),
        }
    }

    /// GETs `target` with `authorization`, following redirects within its origin, and
    /// reads the whole body (at most `max_body` bytes), all within `timeout`.
    pub async fn get(
        &self,
        target: &Target,
        authorization: &HeaderValue,
        max_body: u64,
    ) -> Result<Response, Error> {
        match tokio::time::timeout(
            self.timeout,
            self.get_following(target, authorization, max_body),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn get_following(
        &self,
        target: &Target,
        authorization: &HeaderValue,
        max_body: u64,
    ) -> Result<Response, Error> {
        let mut redirected: Option<Target> = None;
        for _ in 0..=MAX_REDIRECTS {
            let current = redirected.as_ref().unwrap_or(target);
            let (head, body, sender) = self.send(current, authorization).await?;
            let status = head.status.as_u16();
            if let Some(next) = same_origin_redirect(current, status, &head.headers) {
                // The body of a redirect is not read: the connection is not reused.
                drop((body, sender));
                redirected = Some(next);
                continue;
            }
            let body = read_body(body, status, max_body).await?;
            self.put_back(&current.origin, sender);
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

    /// Sends one GET, on an idle connection if there is one. A kept-alive connection may
    /// have been closed by the server while idle: a GET that fails on one before any
    /// answer is sent again, once, on a new connection.
    async fn send(
        &self,
        target: &Target,
        authorization: &HeaderValue,
    ) -> Result<
        (
            http::response::Parts,
            hyper::body::Incoming,
            SendRequest<Empty<Bytes>>,
        ),
        Error,
    > {
        let mut retried = false;
        loop {
            let (mut sender, reused) = match self.checkout(&target.origin) {
                Some(s) => (s, true),
                None => (Box::pin(self.connect(&target.origin)).await?, false),
            };
            let may_retry = reused && !retried;
            if sender.ready().await.is_err() {
                if may_retry {
                    retried = true;
                    continue;
                }
                return Err(Error::Request("the connection closed".into()));
            }
            let mut request = http::Request::new(Empty::new());
            *request.uri_mut() = target.path.clone();
            let h = request.headers_mut();
            h.insert(HOST, target.host_header.clone());
            h.insert(AUTHORIZATION, authorization.clone());
            h.insert(ACCEPT, HeaderValue::from_static("application/json"));
            h.insert(USER_AGENT, self.user_agent.clone());
            match sender.send_request(request).await {
                Ok(response) => {
                    let (head, body) = response.into_parts();
                    return Ok((head, body, sender));
                }
                Err(e) if may_retry && (e.is_canceled() || e.is_incomplete_message()) => {
                    retried = true;
                }
                Err(e) => return Err(Error::Request(crate::oauth::describe(&e))),
            }
        }
    }

    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(origin)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < IDLE_TIMEOUT && !c.sender.is_closed() {
                return Some(c.sender);
            }
        }
        None
    }

    fn put_back(&self, origin: &Origin, sender: SendRequest<Empty<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
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
            list.retain(|c| now.duration_since(c.since) < IDLE_TIMEOUT && !c.sender.is_closed());
        }
        list.push(Idle { sender, since: now });
    }

    async fn connect(&self, origin: &Origin) -> Result<SendRequest<Empty<Bytes>>, Error> {
        let tcp = tokio::time::timeout(self.connect_timeout, async {
            match &origin.host {
                url::Host::Domain(d) => {
                    tokio::net::TcpStream::connect((d.as_str(), origin.port)).await
                }
                url::Host::Ipv4(a) => tokio::net::TcpStream::connect((*a, origin.port)).await,
                url::Host::Ipv6(a) => tokio::net::TcpStream::connect((*a, origin.port)).await,
            }
        })
        .await
        .map_err(|_| Error::Connect("connect timed out".into()))?
        .map_err(|e| Error::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if origin.https {
            let tls = self
                .tls
                .get_or_init(tls_connector)
                .as_ref()
                .map_err(|e| Error::Connect(e.clone()))?;
            let name = rustls_pki_types::ServerName::try_from(origin.host.to_string())
                .map_err(|e| Error::Connect(format!("invalid server name: {e}")))?;
            let stream = tokio::time::timeout(self.connect_timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| Error::Connect("TLS handshake timed out".into()))?
                .map_err(|e| Error::Connect(crate::oauth::describe(&e)))?;
            handshake(TokioIo::new(stream)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Empty<Bytes>>, Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Error::Connect(crate::oauth::describe(&e)))?;
    // The connection's own task reads and writes; it ends when either side closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_platform_verifier()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A redirect to follow: a 3xx with a `Location` on the same origin. Credentials never
/// go to another host; a redirect elsewhere is returned as the answer (and fails the poll).
fn same_origin_redirect(
    current: &Target,
    status: u16,
    headers: &http::HeaderMap,
) -> Option<Target> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = headers.get(LOCATION)?.to_str().ok()?;
    let next = current.url.join(location).ok()?;
    (next.origin() == current.url.origin())
        .then(|| Target::new(&next).ok())
        .flatten()
}

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
            message: crate::oauth::describe(&e),
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

/// The proxy variables, lower case first as curl reads them: (scheme, names).
const PROXY_VARS: [(&str, [&str; 2]); 3] = [
    ("http", ["http_proxy", "HTTP_PROXY"]),
    ("https", ["https_proxy", "HTTPS_PROXY"]),
    ("all", ["all_proxy", "ALL_PROXY"]),
];

/// Whether the environment names a proxy (then API polls go through reqwest).
pub fn proxy_in_environment() -> bool {
    PROXY_VARS
        .iter()
        .flat_map(|(_, names)| names)
        .any(|v| env_value(v).is_some())
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A reqwest client builder that uses the environment's proxy (`HTTP_PROXY`,
/// `HTTPS_PROXY`, `ALL_PROXY`, lower case too, with `NO_PROXY`), but never for a loopback
/// host: a local "proxy" must not see refresh tokens and bearer tokens that were meant for
/// a service on this machine, in cleartext. (reqwest's own environment proxy would take
/// loopback too.)
pub fn with_environment_proxy(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let proxy_for = |scheme: &str| {
        PROXY_VARS
            .iter()
            .filter(|(s, _)| *s == scheme || *s == "all")
            .flat_map(|(_, names)| names)
            .find_map(|v| env_value(v))
    };
    let (http, https) = (proxy_for("http"), proxy_for("https"));
    if http.is_none() && https.is_none() {
        return builder.no_proxy();
    }
    let proxy = reqwest::Proxy::custom(move |url| {
        if crate::config::is_loopback(url) {
            return None;
        }
        match url.scheme() {
            "https" => https.clone(),
            _ => http.clone(),
        }
    })
    .no_proxy(reqwest::NoProxy::from_env());
    builder.proxy(proxy)
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
