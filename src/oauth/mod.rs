//! The token-endpoint client, written over reqwest because providers' quirks need control:
//! parameters in the query string (Citesphere), client authentication in the body
//! (iNode) or HTTP Basic, string `expires_in`, missing `token_type`.

pub mod response;

pub use response::{TokenError, TokenResponse};

use crate::config::{ClientAuth, OAuth2, TokenRequestStyle};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use zeroize::Zeroizing;

/// A token response is small; anything larger is not one.
const MAX_TOKEN_RESPONSE: usize = 256 * 1024;

/// What to ask the token endpoint for.
pub enum Grant<'a> {
    RefreshToken(&'a SecretString),
    Password,
    ClientCredentials,
    AuthorizationCode {
        code: &'a str,
        redirect_uri: Option<&'a str>,
        code_verifier: Option<&'a str>,
    },
}

impl Grant<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Grant::RefreshToken(_) => "refresh_token",
            Grant::Password => "password",
            Grant::ClientCredentials => "client_credentials",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }
}

#[derive(Clone)]
pub struct TokenClient {
    timeout: Duration,
    /// Built at the first token request: its TLS set-up (the system's roots) costs memory
    /// and start-up time that a daemon with valid tokens does not need for hours.
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl TokenClient {
    pub fn new(timeout: Duration) -> Result<TokenClient, crate::error::Error> {
        Ok(TokenClient {
            timeout,
            http: std::sync::OnceLock::new(),
        })
    }

    fn http(&self) -> Result<&reqwest::Client, TokenError> {
        self.http
            .get_or_init(|| {
                crate::http::with_environment_proxy(reqwest::Client::builder())
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                    // A redirect from the token endpoint would carry credentials elsewhere.
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("oauth-poller/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {}", describe(&e)))
            })
            .as_ref()
            .map_err(|m| TokenError::temporary("client_setup", m.clone()))
    }

    /// One request to the token endpoint. No retries here: the caller's policy decides.
    pub async fn request(
        &self,
        oauth: &OAuth2,
        grant: &Grant<'_>,
    ) -> Result<TokenResponse, TokenError> {
        self.request_with(oauth, grant, &mut |_, _| {}).await
    }

    /// [`TokenClient::request`], handing the raw answer (status, body) to `on_body` before it
    /// is parsed: the refresh journal writes it down first.
    pub async fn request_with(
        &self,
        oauth: &OAuth2,
        grant: &Grant<'_>,
        on_body: &mut (dyn FnMut(u16, &[u8]) + Send),
    ) -> Result<TokenResponse, TokenError> {
        let Some(token_url) = &oauth.token_url else {
            return Err(TokenError::permanent(
                "no_token_endpoint",
                "the site has no token endpoint (token_url): tokens come only from `authorize`",
            ));
        };
        // Zeroizing: the copies of secrets made here are wiped when the request is built.
        let mut params: Vec<(&str, Zeroizing<String>)> =
            vec![("grant_type", grant.name().to_string().into())];
        // Secret values this request carries, to keep the server from echoing them into logs.
        let mut sent: Vec<&str> = Vec::new();
        match grant {
            Grant::RefreshToken(rt) => {
                sent.push(rt.expose_secret());
                params.push(("refresh_token", rt.expose_secret().to_string().into()))
            }
            Grant::Password => {
                params.push((
                    "username",
                    oauth.username.clone().unwrap_or_default().into(),
                ));
                let pw = oauth.password.as_ref().map(|p| p.expose_secret());
                sent.extend(pw);
                params.push(("password", pw.unwrap_or_default().to_string().into()));
            }
            Grant::ClientCredentials => {}
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                sent.push(code);
                params.push(("code", code.to_string().into()));
                if let Some(r) = redirect_uri {
                    params.push(("redirect_uri", r.to_string().into()));
                }
                if let Some(v) = code_verifier {
                    sent.push(v);
                    params.push(("code_verifier", v.to_string().into()));
                }
            }
        }
        if let (Some(scope), Grant::Password | Grant::ClientCredentials) = (&oauth.scope, grant) {
            params.push(("scope", scope.clone().into()));
        }
        let mut basic: Option<String> = None;
        match oauth.client_auth {
            ClientAuth::Basic => {
                let secret = oauth
                    .client_secret
                    .as_ref()
                    .map(|s| s.expose_secret())
                    .unwrap_or("");
                sent.push(secret);
                basic = Some(basic_credentials(&oauth.client_id, secret));
            }
            ClientAuth::Body => {
                params.push(("client_id", oauth.client_id.clone().into()));
                if let Some(s) = &oauth.client_secret {
                    sent.push(s.expose_secret());
                    params.push(("client_secret", s.expose_secret().to_string().into()));
                }
            }
            ClientAuth::None => params.push(("client_id", oauth.client_id.clone().into())),
        }
        let encoded = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
                .finish(),
        );
        let mut request = match oauth.token_request {
            TokenRequestStyle::Form => self
                .http()?
                .post(token_url.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encoded.to_string()),
            TokenRequestStyle::Query => {
                let mut url = token_url.clone();
                let query = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{}", encoded.as_str()),
                    _ => encoded.to_string(),
                };
                url.set_query(Some(&query));
                self.http()?.post(url).header("Content-Length", "0")
            }
        };
        request = request.header("Accept", "application/json");
        if let Some(b) = basic {
            request = request.header("Authorization", b);
        }
        let response = request.send().await.map_err(network_error)?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = Zeroizing::new(read_limited(response, MAX_TOKEN_RESPONSE).await?);
        on_body(status, &body);
        response::parse(status, &body, retry_after, &sent)
    }
}

/// RFC 6749 2.3.1: id and secret are form-urlencoded before Base64.
pub fn basic_credentials(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A network error with the URL removed: in query mode the URL holds secrets.
fn network_error(e: reqwest::Error) -> TokenError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "network"
    };
    TokenError::temporary(
        kind,
        format!(
            "token endpoint: {kind} error: {}",
            describe(&e.without_url())
        ),
    )
}

/// The error and its causes on one line (reqwest's Display alone says little).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
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

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, TokenError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(TokenError::temporary(
                        "invalid_response",
                        format!("token endpoint response is larger than {limit} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(network_error(e)),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(86400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_encodes_per_rfc6749() {
        // "a b" -> "a+b", ":" -> "%3A" before Base64.
        let h = basic_credentials("a b", "x:y");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(h.trim_start_matches("Basic "))
            .unwrap();
        assert_eq!(raw, b"a+b:x%3Ay");
    }
}
