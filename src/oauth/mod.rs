//! The token-endpoint client, on the crate's one HTTP client ([`crate::http`]): providers'
//! quirks need control: parameters in the query string (Citesphere), client authentication
//! in the body (iNode) or HTTP Basic, string `expires_in`, missing `token_type`.

pub mod response;

pub use response::{TokenError, TokenResponse};

use crate::config::{ClientAuth, OAuth2, TokenRequestStyle};
use crate::http::{Client, Method, Redirects, Request, Target};
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use zeroize::Zeroizing;

/// A token response is small; anything larger is not one.
const MAX_TOKEN_RESPONSE: u64 = 256 * 1024;

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
    http: std::sync::Arc<Client>,
}

impl TokenClient {
    pub fn new(timeout: Duration) -> Result<TokenClient, crate::error::Error> {
        Ok(TokenClient {
            http: std::sync::Arc::new(Client::new(timeout, timeout.min(Duration::from_secs(10)))),
        })
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
        let form: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(2);
        let (url, body) = match oauth.token_request {
            TokenRequestStyle::Form => {
                headers.push((CONTENT_TYPE, form));
                (token_url.clone(), Bytes::from(encoded.as_bytes().to_vec()))
            }
            TokenRequestStyle::Query => {
                let mut url = token_url.clone();
                let query = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{}", encoded.as_str()),
                    _ => encoded.to_string(),
                };
                url.set_query(Some(&query));
                headers.push((CONTENT_LENGTH, HeaderValue::from_static("0")));
                (url, Bytes::new())
            }
        };
        if let Some(b) = basic {
            let mut value = HeaderValue::from_str(&b).map_err(|_| {
                TokenError::permanent(
                    "invalid_client",
                    "the client credentials are not a valid header",
                )
            })?;
            value.set_sensitive(true);
            headers.push((AUTHORIZATION, value));
        }
        let target = Target::new(&url).map_err(|m| {
            TokenError::permanent("invalid_token_url", format!("token endpoint: {m}"))
        })?;
        let response = self
            .http
            .send(Request {
                method: Method::POST,
                target: &target,
                headers: &headers,
                body,
                redirects: Redirects::None,
                max_body: MAX_TOKEN_RESPONSE,
            })
            .await
            .map_err(network_error)?;
        let status = response.status;
        let retry_after = crate::http::retry_after(&response.headers);
        let body = Zeroizing::new(response.body);
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

/// A network error as a temporary token error (the text never holds the URL: in query mode
/// the URL holds secrets).
fn network_error(e: crate::http::Error) -> TokenError {
    use crate::http::Error;
    let kind = match e {
        Error::TooLarge { max, .. } => {
            return TokenError::temporary(
                "invalid_response",
                format!("token endpoint response is larger than {max} bytes"),
            )
        }
        Error::Timeout => "timeout",
        Error::Connect(_) => "connect",
        Error::Request(_) | Error::Body { .. } => "network",
    };
    TokenError::temporary(kind, format!("token endpoint: {kind} error: {e}"))
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
