//! Opening a connection for one origin: straight to it, or through the proxy the
//! environment names (an HTTP proxy forwarding plain requests, a `CONNECT` tunnel for
//! TLS), with TLS verified against the system's roots.

use super::{describe, Error, Origin};
use bytes::Bytes;
use http::header::HeaderValue;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower_service::Service;
use url::Url;

/// A connection ready for requests.
pub(super) struct Connection {
    pub sender: SendRequest<Full<Bytes>>,
    /// Through an HTTP proxy (plain `http` only): requests name the whole URL, and carry
    /// the proxy's credentials.
    pub forward: Option<Forward>,
}

#[derive(Clone)]
pub(super) struct Forward {
    pub proxy_authorization: Option<HeaderValue>,
}

/// How connections are opened: the proxy rules read from the environment once, and the
/// TLS configuration.
pub(super) struct Connector {
    proxies: Matcher,
    /// Built at the first `https` connection: loading the system's roots costs time and
    /// memory that a daemon polling only plain-HTTP loopback services never needs.
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
    timeout: Duration,
}

impl Connector {
    pub fn new(connect_timeout: Duration) -> Connector {
        Connector {
            proxies: Matcher::from_env(),
            tls: OnceLock::new(),
            timeout: connect_timeout,
        }
    }

    /// The proxy for `url` from `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` (lower case too)
    /// and `NO_PROXY`, but never for a loopback host: a local "proxy" must not see refresh
    /// tokens and bearer tokens that were meant for a service on this machine.
    fn proxy_for(&self, url: &Url) -> Option<Intercept> {
        if crate::config::is_loopback(url) {
            return None;
        }
        // The rules look at the scheme and the host only.
        let origin: http::Uri = url.origin().ascii_serialization().parse().ok()?;
        self.proxies.intercept(&origin)
    }

    pub async fn connect(&self, origin: &Origin, url: &Url) -> Result<Connection, Error> {
        let Some(proxy) = self.proxy_for(url) else {
            let tcp = self.tcp(&origin.host.to_string(), origin.port).await?;
            return self.finish(origin, tcp, None).await;
        };
        if proxy.uri().scheme_str() != Some("http") {
            return Err(Error::Connect(
                "the environment's proxy is not an http:// URL (the only kind supported)".into(),
            ));
        }
        let auth = proxy.basic_auth().cloned();
        if !origin.https {
            let host = proxy.uri().host().unwrap_or_default().to_string();
            let port = proxy.uri().port_u16().unwrap_or(80);
            let tcp = self.tcp(&host, port).await?;
            let forward = Forward {
                proxy_authorization: auth,
            };
            return self.finish(origin, tcp, Some(forward)).await;
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.timeout));
        connector.set_nodelay(true);
        let mut tunnel = Tunnel::new(proxy.uri().clone(), connector);
        if let Some(auth) = auth {
            tunnel = tunnel.with_auth(auth);
        }
        let destination: http::Uri = format!("https://{}:{}", origin.host, origin.port)
            .parse()
            .map_err(|_| Error::Connect("the host is not a valid URI authority".into()))?;
        let io = tokio::time::timeout(self.timeout, tunnel.call(destination))
            .await
            .map_err(|_| Error::Connect("the proxy's tunnel timed out".into()))?
            .map_err(|e| Error::Connect(format!("through the proxy: {}", describe(&e))))?;
        self.finish(origin, io.into_inner(), None).await
    }

    async fn tcp(&self, host: &str, port: u16) -> Result<tokio::net::TcpStream, Error> {
        // An IPv6 literal comes bracketed from `Host`'s Display; the resolver wants it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| Error::Connect("connect timed out".into()))?
            .map_err(|e| Error::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// TLS (for `https`) and the HTTP/1.1 handshake on an open stream.
    async fn finish(
        &self,
        origin: &Origin,
        tcp: tokio::net::TcpStream,
        forward: Option<Forward>,
    ) -> Result<Connection, Error> {
        let sender = if origin.https {
            let tls = self
                .tls
                .get_or_init(tls_connector)
                .as_ref()
                .map_err(|e| Error::Connect(e.clone()))?;
            let name = rustls_pki_types::ServerName::try_from(origin.host.to_string())
                .map_err(|e| Error::Connect(format!("invalid server name: {e}")))?;
            let stream = tokio::time::timeout(self.timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| Error::Connect("TLS handshake timed out".into()))?
                .map_err(|e| Error::Connect(describe(&e)))?;
            handshake(TokioIo::new(stream)).await?
        } else {
            handshake(TokioIo::new(tcp)).await?
        };
        Ok(Connection { sender, forward })
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>, Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Error::Connect(describe(&e)))?;
    // The connection's own task reads and writes; it ends when either side closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The one TLS configuration (see [`crate::tls`]), HTTP/1.1 only.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let config = crate::tls::client_config(&[b"http/1.1"])?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
