//! `authorize`: bootstrap an account through the provider's consent page.
//!
//! - `authorize ACCOUNT` prints the authorization URL (RFC 6749 4.1: `state`; RFC 7636 PKCE
//!   S256 when `pkce = true`) and keeps `state` and the verifier in the store, so that
//! - `authorize ACCOUNT --code -`, a later process, can exchange the pasted code (the
//!   out-of-band flow: `urn:ietf:wg:oauth:2.0:oob`), read from stdin so that it never sits on
//!   a command line (`/proc/PID/cmdline`, shell history, sudo's log). `--code CODE` still
//!   works. CODE may also be the whole address the browser was sent to
//!   (`...?code=...&state=...`); its `state` is then checked. At a terminal, `authorize
//!   ACCOUNT` asks for it right after printing the URL.
//! - `authorize ACCOUNT --listen` does both in one process with a one-shot loopback listener
//!   on the `redirect_uri` (RFC 8252 7.3). Redirects with another `state` are answered with
//!   an error page and ignored, so that no other local user can end the flow.
//!
//! An account without `token_url` is a site whose redirect delivers the access token itself
//! (Ruqqus-style): it is asked for `response_type=token` and the token is taken from the
//! redirect. Codes, tokens and verifiers are never printed or logged.

use crate::config::{Account, AuthKind, Config, OAuth2};
use crate::error::{Error, InputError};
use crate::oauth::{Grant, TokenClient, TokenResponse};
use crate::store::{now, Pending, TokenRow};
use crate::tokens::{GrantKind, TokenEvent};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

/// More than any code or redirect address; a bound on what `--code -` reads.
const MAX_PASTED: u64 = 64 * 1024;

/// `--code -`: the first non-empty line of stdin (a terminal prompt, a pipe, a file).
pub fn read_code(input: impl BufRead) -> Result<SecretString, Error> {
    read_pasted(input, true)?.ok_or_else(|| {
        InputError::new(
            "<stdin>",
            "`--code -` read no code from stdin: paste the code (or the whole redirect address) and a newline",
        )
        .key("--code")
        .into()
    })
}

/// A pasted line, trimmed, after a prompt when stdin is a terminal. None at the end of the
/// input, or on an empty line unless `skip_blank`.
fn read_pasted(input: impl BufRead, skip_blank: bool) -> Result<Option<SecretString>, Error> {
    if std::io::stdin().is_terminal() {
        let enter = if skip_blank {
            "then press Enter"
        } else {
            "then press Enter (just Enter: later)"
        };
        eprint!("Paste the authorization code or the whole redirect address, {enter}: ");
        let _ = std::io::stderr().flush();
    }
    let mut limited = input.take(MAX_PASTED);
    let mut line = String::new();
    loop {
        line.clear();
        let n = limited.read_line(&mut line).map_err(|e| {
            InputError::new("<stdin>", format!("cannot read the code from stdin: {e}"))
                .key("--code")
        })?;
        if n == 0 || !skip_blank || !line.trim().is_empty() {
            break;
        }
    }
    let code = line.trim();
    Ok((!code.is_empty()).then(|| SecretString::from(code.to_string())))
}

/// What `authorize` was asked to do.
pub enum Mode<'a> {
    /// Print the URL (and remember state and verifier).
    Print,
    /// Exchange a pasted code (or redirect address).
    Code(&'a str),
    /// Listen on the loopback redirect URI for up to this long.
    Listen(Duration),
}

/// The account's settings `authorize` needs.
struct Flow<'a> {
    config: &'a Config,
    account: &'a Account,
    oauth: &'a OAuth2,
    authorize_url: &'a Url,
    redirect_uri: &'a str,
}

/// What the provider's redirect carried.
#[derive(Default)]
struct Callback {
    code: Option<String>,
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<i64>,
    scope: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Callback {
    fn from_query(query: &str) -> Callback {
        let mut c = Callback::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "code" => c.code = v,
                "access_token" => c.access_token = v,
                "token_type" => c.token_type = v,
                "expires_in" => c.expires_in = v.and_then(|s| s.trim().parse().ok()),
                "scope" => c.scope = v,
                "state" => c.state = v,
                "error" => c.error = v,
                "error_description" => c.error_description = v,
                _ => {}
            }
        }
        c
    }

    /// A pasted CODE: a bare code, or the whole redirect address (query or fragment).
    fn from_pasted(text: &str) -> Callback {
        let text = text.trim();
        if let Ok(u) = Url::parse(text) {
            if u.scheme() == "http" || u.scheme() == "https" {
                let query = u.query().unwrap_or("");
                let mut c = Callback::from_query(query);
                if c.code.is_none() && c.access_token.is_none() && c.error.is_none() {
                    c = Callback::from_query(u.fragment().unwrap_or(""));
                }
                return c;
            }
        }
        Callback {
            code: Some(text.to_string()),
            ..Callback::default()
        }
    }

    fn is_redirect(&self) -> bool {
        self.code.is_some() || self.access_token.is_some() || self.error.is_some()
    }
}

pub async fn run(config: &Config, account: &Account, mode: Mode<'_>) -> Result<(), Error> {
    let flow = flow(config, account)?;
    match mode {
        Mode::Print => {
            print(&flow)?;
            // At a terminal, take the code right here: nothing to put on a command line.
            if std::io::stdin().is_terminal() {
                match read_pasted(std::io::stdin().lock(), false)? {
                    Some(code) => redeem(&flow, code.expose_secret()).await?,
                    None => eprintln!(
                        "Nothing pasted. Later, run `oauth-poller authorize {} --code -` and paste it.",
                        account.name
                    ),
                }
            }
            Ok(())
        }
        Mode::Code(code) => redeem(&flow, code).await,
        Mode::Listen(timeout) => listen(&flow, timeout).await,
    }
}

fn flow<'a>(config: &'a Config, account: &'a Account) -> Result<Flow<'a>, Error> {
    let file = config.path.display().to_string();
    let key = |k: &str| format!("account[{}].{k}", account.name);
    let oauth = match (&account.auth, &account.oauth2) {
        (AuthKind::Oauth2, Some(o)) => o,
        _ => {
            return Err(InputError::new(
                file,
                format!(
                    "account `{}` uses an API key: there is nothing to authorize",
                    account.name
                ),
            )
            .key(key("auth"))
            .into())
        }
    };
    let authorize_url = oauth.authorize_url.as_ref().ok_or_else(|| {
        InputError::new(
            &file,
            "`authorize` needs the provider's authorization endpoint",
        )
        .key(key("oauth2.authorize_url"))
    })?;
    let redirect_uri = oauth.redirect_uri.as_deref().ok_or_else(|| {
        InputError::new(
            &file,
            format!("`authorize` needs the redirect URI registered with the provider, e.g. \"http://127.0.0.1:8765/callback\" or \"{OOB}\""),
        )
        .key(key("oauth2.redirect_uri"))
    })?;
    Ok(Flow {
        config,
        account,
        oauth,
        authorize_url,
        redirect_uri,
    })
}

fn random_text(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

fn new_pending(flow: &Flow<'_>) -> Pending {
    Pending {
        // 128 bits of state; a 64-character verifier (RFC 7636 4.1: 43 to 128).
        state: random_text(16),
        code_verifier: uses_pkce(flow).then(|| SecretString::from(random_text(48))),
        redirect_uri: Some(flow.redirect_uri.to_string()),
        created_at: now(),
    }
}

/// PKCE protects a code exchange; a site whose redirect carries the token itself has none.
fn uses_pkce(flow: &Flow<'_>) -> bool {
    flow.oauth.pkce && flow.oauth.token_url.is_some()
}

fn authorization_url(flow: &Flow<'_>, p: &Pending) -> Url {
    let mut url = flow.authorize_url.clone();
    {
        let mut q = url.query_pairs_mut();
        let response_type = if flow.oauth.token_url.is_some() {
            "code"
        } else {
            "token"
        };
        q.append_pair("response_type", response_type);
        q.append_pair("client_id", &flow.oauth.client_id);
        q.append_pair("redirect_uri", flow.redirect_uri);
        q.append_pair("state", &p.state);
        if let Some(scope) = flow.oauth.scope.as_deref().filter(|s| !s.trim().is_empty()) {
            q.append_pair("scope", scope);
        }
        if let Some(v) = &p.code_verifier {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(v.expose_secret().as_bytes()));
            q.append_pair("code_challenge", &challenge);
            q.append_pair("code_challenge_method", "S256");
        }
    }
    url
}

/// `authorize ACCOUNT`: the URL on stdout, what to do next on stderr.
fn print(flow: &Flow<'_>) -> Result<(), Error> {
    let store = flow.config.store().open()?;
    let pending = new_pending(flow);
    store.put_pending(&flow.account.name, &pending)?;
    let url = authorization_url(flow, &pending);
    println!("{url}");
    let name = &flow.account.name;
    let next = if flow.redirect_uri == OOB {
        "the page then shows an authorization code".to_string()
    } else {
        format!(
            "the browser is then sent to {}?code=... (nothing may be listening there: copy that whole address)",
            flow.redirect_uri
        )
    };
    let listen = if flow.redirect_uri == OOB {
        String::new()
    } else {
        format!("; `oauth-poller authorize {name} --listen` does it in one step")
    };
    let now_or_later = if std::io::stdin().is_terminal() {
        "Paste it below, or later run"
    } else {
        "Then run"
    };
    eprintln!(
        "Open this URL in a browser, sign in and authorize the application; {next}. {now_or_later}, within {} minutes, \
         and paste it on stdin (not on the command line, where every local user can read it):\n  \
         oauth-poller authorize {name} --code -{listen}",
        crate::store::PENDING_TTL / 60
    );
    Ok(())
}

/// `authorize ACCOUNT --code -` (or `--code CODE`).
async fn redeem(flow: &Flow<'_>, pasted: &str) -> Result<(), Error> {
    let name = &flow.account.name;
    let callback = Callback::from_pasted(pasted);
    let store = flow.config.store().open()?;
    let pending = store.pending(name, callback.state.as_deref())?;
    let pending = match pending {
        Some(p) => p,
        None if callback.state.is_some() => {
            return Err(Error::runtime(format!(
                "account `{name}`: the redirect's state matches no pending authorization (they expire after {} minutes, and each is used once): run `oauth-poller authorize {name}` again",
                crate::store::PENDING_TTL / 60
            )))
        }
        // Without PKCE a code obtained elsewhere (the vendor's own get_auth_code script)
        // can be exchanged as it is.
        None if !uses_pkce(flow) => new_pending_without_pkce(flow),
        None => {
            return Err(Error::runtime(format!(
                "account `{name}`: no pending authorization (pkce = true needs the verifier of the URL printed by `oauth-poller authorize {name}`, valid for {} minutes): run it first",
                crate::store::PENDING_TTL / 60
            )))
        }
    };
    let redirect_uri = pending.redirect_uri.as_deref().unwrap_or(flow.redirect_uri);
    finish(flow, callback, &pending, redirect_uri).await?;
    store.clear_pending(name)?;
    Ok(())
}

fn new_pending_without_pkce(flow: &Flow<'_>) -> Pending {
    Pending {
        state: String::new(),
        code_verifier: None,
        redirect_uri: Some(flow.redirect_uri.to_string()),
        created_at: now(),
    }
}

/// Turns the redirect into stored tokens. Returns a line for the person at the browser.
async fn finish(
    flow: &Flow<'_>,
    cb: Callback,
    pending: &Pending,
    redirect_uri: &str,
) -> Result<String, Error> {
    let name = &flow.account.name;
    if let Some(error) = &cb.error {
        let why = match error.as_str() {
            "access_denied" => {
                "the authorization was denied at the provider (error=access_denied)".to_string()
            }
            other => {
                let detail: String = cb
                    .error_description
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                format!("the provider refused the authorization: error={other} {detail}")
            }
        };
        return Err(Error::runtime(format!(
            "account `{name}`: {}; nothing was stored",
            why.trim_end()
        )));
    }
    let started = now();
    let (row, how) = match (&flow.oauth.token_url, cb.code, cb.access_token) {
        (Some(_), Some(code), _) => {
            let client = TokenClient::new(flow.config.daemon.timeout)?;
            let verifier = pending.code_verifier.as_ref().map(|v| v.expose_secret());
            let grant = Grant::AuthorizationCode {
                code: &code,
                redirect_uri: Some(redirect_uri),
                code_verifier: verifier,
            };
            let response = client.request(flow.oauth, &grant).await.map_err(|e| {
                let next = if e.is_permanent() {
                    format!("a code is valid once and for minutes: run `oauth-poller authorize {name}` again")
                } else {
                    "a temporary failure: the same code may still work, try again".to_string()
                };
                Error::runtime(format!(
                    "account `{name}`: exchanging the authorization code failed: {e}; nothing was stored ({next})"
                ))
            })?;
            (row_from_response(name, response, started), "code exchanged")
        }
        (None, _, Some(token)) => {
            let mut row = TokenRow::new(name, GrantKind::AuthorizationCode.as_str(), started);
            row.access_token = Some(SecretString::from(token));
            row.token_type = cb.token_type.or_else(|| Some("Bearer".into()));
            row.scope = cb.scope.or_else(|| flow.oauth.scope.clone());
            row.access_expires_at = cb.expires_in.filter(|&e| e > 0).map(|e| started + e);
            (row, "access token taken from the redirect")
        }
        (Some(_), None, _) => {
            return Err(Error::runtime(format!(
                "account `{name}`: the redirect carries no authorization code; nothing was stored"
            )))
        }
        (None, _, None) => {
            return Err(Error::runtime(format!(
                "account `{name}`: the redirect carries no access_token (this account has no token_url, so its site must deliver the token in the redirect); nothing was stored"
            )))
        }
    };
    let expiry = match row.access_expires_at {
        Some(t) => format!(
            "access token valid for {}",
            crate::units::human(t - started)
        ),
        None => "access token without a stated expiry".into(),
    };
    let refresh = match (&row.refresh_token, row.refresh_expires_at) {
        (Some(_), Some(t)) => format!(
            "refresh token valid for {}",
            crate::units::human(t - started)
        ),
        (Some(_), None) => "refresh token without a stated expiry".into(),
        (None, _) => "no refresh token".into(),
    };
    let detail = format!("authorization_code: {how}; {expiry}; {refresh}");
    let lock = flow.config.store().lock(name)?;
    let stored = lock.commit_token(&row, TokenEvent::Obtained.as_str(), &detail)?;
    tracing::info!(account = %name, generation = stored.generation, "token obtained by authorization");
    let line = format!(
        "authorized account `{name}`: {expiry}, {refresh} (generation {}, stored in {})",
        stored.generation, flow.config.daemon.database
    );
    println!("{line}");
    Ok(line)
}

fn row_from_response(name: &str, r: TokenResponse, started: i64) -> TokenRow {
    let mut row = TokenRow::new(name, GrantKind::AuthorizationCode.as_str(), started);
    row.access_token = Some(r.access_token);
    row.token_type = r.token_type.or_else(|| Some("Bearer".into()));
    row.scope = r.scope;
    // Counted from when the request was sent, as a refresh counts them.
    row.access_expires_at = r.expires_in.map(|e| started + e);
    row.refresh_expires_at = r
        .refresh_expires_in
        .filter(|_| r.refresh_token.is_some())
        .map(|e| started + e);
    row.refresh_token = r.refresh_token;
    row.last_refresh_at = Some(started);
    row
}

/// Where `--listen` listens: the redirect URI's loopback addresses, and its path.
struct Loopback {
    addrs: Vec<SocketAddr>,
    path: String,
}

/// The redirect URI must be loopback `http://`. `localhost` is what the browser resolves
/// it to: 127.0.0.1 or ::1 (browsers try either first), so both are bound.
fn loopback_addr(flow: &Flow<'_>) -> Result<Loopback, Error> {
    let bad = || -> Error {
        InputError::new(
            flow.config.path.display().to_string(),
            format!(
                "--listen needs a loopback http:// redirect_uri such as \"http://127.0.0.1:8765/callback\" (RFC 8252), not {:?}; for an out-of-band redirect run `oauth-poller authorize {}` and then `--code -`",
                flow.redirect_uri, flow.account.name
            ),
        )
        .key(format!("account[{}].oauth2.redirect_uri", flow.account.name))
        .into()
    };
    let url = Url::parse(flow.redirect_uri).map_err(|_| bad())?;
    if url.scheme() != "http" {
        return Err(bad());
    }
    let port = url.port_or_known_default().ok_or_else(bad)?;
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let addrs = match url.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => vec![SocketAddr::from((ip, port))],
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => vec![v6],
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => vec![v4, v6],
        _ => return Err(bad()),
    };
    Ok(Loopback {
        addrs,
        path: url.path().to_string(),
    })
}

/// Binds every address; for `localhost`, an address family the machine lacks (no IPv6 on
/// loopback) is skipped, but a port in use is an error.
async fn bind_all(name: &str, addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, Error> {
    let mut listeners = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            // 97: EAFNOSUPPORT (a kernel without IPv6).
            Err(e)
                if addrs.len() > 1
                    && (matches!(
                        e.kind(),
                        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::Unsupported
                    ) || e.raw_os_error() == Some(97)) =>
            {
                tracing::debug!(%addr, error = %e, "not listening on this address family");
            }
            Err(e) => {
                return Err(Error::runtime(format!(
                    "account `{name}`: cannot listen on {addr} (the redirect_uri's address): {e}"
                )))
            }
        }
    }
    if listeners.is_empty() {
        return Err(Error::runtime(format!(
            "account `{name}`: cannot listen on any of {addrs:?} (the redirect_uri's addresses)"
        )));
    }
    Ok(listeners)
}

/// `authorize ACCOUNT --listen`.
async fn listen(flow: &Flow<'_>, timeout: Duration) -> Result<(), Error> {
    let loopback = loopback_addr(flow)?;
    let name = &flow.account.name;
    let listeners = bind_all(name, &loopback.addrs).await?;
    // Opens (and migrates) the store before the browser is sent anywhere.
    flow.config.store().open()?;
    let pending = new_pending(flow);
    let url = authorization_url(flow, &pending);
    println!("{url}");
    eprintln!(
        "Open this URL in a browser, sign in and authorize the application.\n\
         Waiting up to {}s for the redirect to {} ...",
        timeout.as_secs(),
        flow.redirect_uri
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(TcpStream, String)>(4);
    let mut acceptors = tokio::task::JoinSet::new();
    for listener in listeners {
        let tx = tx.clone();
        let path = loopback.path.clone();
        acceptors.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    if let Some((stream, query)) = read_request(stream, &path).await {
                        let _ = tx.send((stream, query)).await;
                    }
                });
            }
        });
    }
    drop(tx);
    let mut ignored = 0u32;
    let result = tokio::time::timeout(timeout, async {
        loop {
            let Some((mut stream, query)) = rx.recv().await else {
                return Err(Error::runtime("the listener stopped"));
            };
            let cb = Callback::from_query(&query);
            if !cb.is_redirect() {
                let hint = format!("This address received no authorization code, access token or error. If the site put the token after a '#' in the address bar, copy that whole address, run: oauth-poller authorize {name} --code - and paste it.");
                respond(&mut stream, 400, "Nothing to do here", &hint).await;
                continue;
            }
            // Any local user can connect to a loopback port: a redirect with another state
            // (stale, or forged) must not end the flow the real one is still coming for.
            if cb.state.as_deref() != Some(pending.state.as_str()) {
                ignored += 1;
                respond(&mut stream, 400, "Authorization refused", "The state parameter does not match the request oauth-poller made. Nothing was stored; oauth-poller keeps waiting for the redirect of the URL it printed.").await;
                eprintln!(
                    "account `{name}`: ignored a redirect whose state does not match the authorization request (a stale or forged redirect); still waiting"
                );
                continue;
            }
            let outcome = finish(flow, cb, &pending, flow.redirect_uri).await;
            match &outcome {
                Ok(line) => respond(&mut stream, 200, "oauth-poller is authorized", &format!("{line}. You can close this window.")).await,
                Err(e) => respond(&mut stream, 400, "Authorization failed", &e.to_string()).await,
            }
            return outcome.map(|_| ());
        }
    })
    .await;
    acceptors.abort_all();
    result.unwrap_or_else(|_| {
        let ignored = if ignored > 0 {
            format!(" ({ignored} redirect(s) with another state were ignored)")
        } else {
            String::new()
        };
        Err(Error::runtime(format!(
            "account `{name}`: no redirect reached {} within {}s{ignored}; nothing was stored (--timeout SECS waits longer)",
            flow.redirect_uri,
            timeout.as_secs()
        )))
    })
}

/// Reads one request head. Requests for the redirect path come back with their query;
/// anything else is answered 404 here.
async fn read_request(mut stream: TcpStream, path: &str) -> Option<(TcpStream, String)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return None;
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next()?.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    let (p, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || p != path {
        respond(
            &mut stream,
            404,
            "Not found",
            "This is oauth-poller's one-shot redirect listener.",
        )
        .await;
        return None;
    }
    Some((stream, query.to_string()))
}

async fn respond(stream: &mut TcpStream, status: u16, title: &str, message: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body><h1>{t}</h1>\n<p>{m}</p></body></html>\n",
        t = escape_html(title),
        m = escape_html(message)
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_code_or_address() {
        let c = Callback::from_pasted(" abc123 ");
        assert_eq!(c.code.as_deref(), Some("abc123"));
        assert!(c.state.is_none());
        let c = Callback::from_pasted("http://127.0.0.1:8765/callback?code=x%2By&state=s1");
        assert_eq!(c.code.as_deref(), Some("x+y"));
        assert_eq!(c.state.as_deref(), Some("s1"));
        let c = Callback::from_pasted("https://app.example/cb#access_token=t&state=s");
        assert_eq!(c.access_token.as_deref(), Some("t"));
        let c = Callback::from_pasted("http://127.0.0.1/cb?error=access_denied&state=s");
        assert_eq!(c.error.as_deref(), Some("access_denied"));
    }

    #[test]
    fn random_values_have_the_right_size() {
        assert_eq!(random_text(16).len(), 22);
        let v = random_text(48);
        assert_eq!(v.len(), 64);
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
