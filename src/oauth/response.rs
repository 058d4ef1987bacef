//! Token-endpoint responses, parsed leniently: providers send `expires_in` as a string,
//! omit `token_type`, omit a new refresh token, add `created_at` (Doorkeeper) or
//! `refresh_expires_in`.

use crate::error::Persistence;
use crate::seed::lenient_i64;
use secrecy::SecretString;
use std::time::Duration;

/// The longest lifetime a token response is believed (ten years), in seconds.
pub const MAX_LIFETIME: i64 = 10 * 365 * 86400;

#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: SecretString,
    pub token_type: Option<String>,
    pub refresh_token: Option<SecretString>,
    pub scope: Option<String>,
    pub expires_in: Option<i64>,
    pub created_at: Option<i64>,
    pub refresh_expires_in: Option<i64>,
}

/// Why a token request failed. `message` is safe to log: it never holds a secret.
#[derive(Debug, Clone)]
pub struct TokenError {
    pub persistence: Persistence,
    /// The OAuth error code (`invalid_grant`, ...) or a short class (`http_503`, `network`).
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl TokenError {
    pub fn temporary(code: &str, message: impl Into<String>) -> TokenError {
        TokenError {
            persistence: Persistence::Temporary,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(code: &str, message: impl Into<String>) -> TokenError {
        TokenError {
            persistence: Persistence::Permanent,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.persistence == Persistence::Permanent
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// Classifies a token-endpoint answer. `sent`: the secret values the request carried
/// (refresh token, password, client secret, code): server text that repeats one of them
/// is dropped, as Spring's `Invalid refresh token: <token>` would be.
pub fn parse(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    sent: &[&str],
) -> Result<TokenResponse, TokenError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        let Some(obj) = json.as_ref().and_then(|j| j.as_object()) else {
            // An HTML page with 200 is a proxy or maintenance page: the server may recover.
            return Err(TokenError::temporary(
                "invalid_response",
                format!("token endpoint answered {status} with a body that is not a JSON object ({} bytes)", body.len()),
            ));
        };
        let access_token = match obj.get("access_token").and_then(|v| v.as_str()) {
            Some(t) if !t.trim().is_empty() => SecretString::from(t.trim().to_string()),
            _ => {
                return Err(TokenError::temporary(
                    "invalid_response",
                    format!("token endpoint answered {status} without an access_token"),
                ))
            }
        };
        let text = |k: &str| {
            obj.get(k)
                .and_then(|v| v.as_str())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let number = |k: &str| obj.get(k).and_then(lenient_i64);
        return Ok(TokenResponse {
            access_token,
            token_type: text("token_type"),
            refresh_token: text("refresh_token").map(SecretString::from),
            scope: text("scope"),
            // 0 is "no stated lifetime" (taken literally it would refresh on every poll): the
            // token is used until the API refuses it. Longer than MAX_LIFETIME is clamped, so
            // adding it to a time cannot overflow.
            expires_in: number("expires_in")
                .filter(|&n| n > 0)
                .map(|n| n.min(MAX_LIFETIME)),
            created_at: number("created_at").filter(|&n| n > 0),
            refresh_expires_in: number("refresh_expires_in")
                .or_else(|| number("refresh_token_expires_in"))
                .filter(|&n| n > 0)
                .map(|n| n.min(MAX_LIFETIME)),
        });
    }
    let code = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(|v| v.as_str())
        .filter(|c| !repeats_secret(c, sent))
        .map(safe_text);
    let description = json
        .as_ref()
        .and_then(|j| j.get("error_description"))
        .and_then(|v| v.as_str())
        .map(|d| {
            if repeats_secret(d, sent) {
                "description withheld: it repeats a credential the request sent".to_string()
            } else {
                safe_text(d)
            }
        });
    let mut message = format!("token endpoint answered {status}");
    if let Some(c) = &code {
        message.push_str(&format!(": {c}"));
    }
    if let Some(d) = &description {
        message.push_str(&format!(" ({d})"));
    }
    // Only an RFC 6749 5.2 error body is the authorization server's final word, whatever
    // the status. Anything else (a 3xx, a WAF's HTML 403, a login page, a gateway's 401) is
    // something in front of the endpoint that may go away: giving up on the grant for it
    // would need a human for a refresh token the provider never refused.
    let oauth_final = code.as_deref().is_some_and(is_final_oauth_error);
    let mut err = if oauth_final {
        TokenError::permanent(code.as_deref().unwrap_or_default(), message)
    } else {
        TokenError::temporary(&format!("http_{status}"), message)
    };
    err.retry_after = retry_after;
    Err(err)
}

/// The error codes of RFC 6749 5.2: the request itself, the client or the grant is refused,
/// and sending it again cannot succeed.
fn is_final_oauth_error(code: &str) -> bool {
    matches!(
        code,
        "invalid_request"
            | "invalid_grant"
            | "invalid_client"
            | "unauthorized_client"
            | "unsupported_grant_type"
            | "invalid_scope"
    )
}

/// Does server text contain a secret the request sent?
fn repeats_secret(text: &str, sent: &[&str]) -> bool {
    sent.iter()
        .any(|s| s.len() >= 4 && (text.contains(s) || text.contains(&*url_encoded(s))))
}

fn url_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Server text shown in logs: printable, short, and with anything that looks like a token
/// (see [`looks_like_token`]) replaced by
/// `[redacted]`: a provider may echo a token we did not send (another client's, a new one).
pub fn safe_text(s: &str) -> String {
    let printable: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    let mut out = String::with_capacity(printable.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_like_token(word) {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in printable.chars() {
        if c.is_ascii_alphanumeric() || "-._~+/=".contains(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A token by its shape, whatever its alphabet: a run of 16 or more token characters, unless
/// it reads as lower-case words joined by punctuation (`unsupported_grant_type`, a URL's
/// host and path). A digit, a capital letter or an unbroken run of 16 letters makes it a
/// token: random strings have them, letters-only ones included.
fn looks_like_token(word: &str) -> bool {
    word.len() >= 16
        && (word
            .bytes()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            || word
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|part| part.len() >= 16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn lenient_success() {
        let r = parse(
            200,
            br#"{"access_token":"a","expires_in":"406","token_type":"bearer"}"#,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(r.access_token.expose_secret(), "a");
        assert_eq!(r.expires_in, Some(406));
        assert!(r.refresh_token.is_none());
        let r = parse(
            200,
            br#"{"access_token":"a","created_at":1616778780,"expires_in":7200}"#,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(r.created_at, Some(1616778780));
        assert!(r.token_type.is_none());
        let r = parse(
            200,
            br#"{"access_token":"a","expires_in":9223372036854775807}"#,
            None,
            &[],
        )
        .unwrap();
        assert_eq!(r.expires_in, Some(MAX_LIFETIME));
        let r = parse(200, br#"{"access_token":"a","expires_in":0}"#, None, &[]).unwrap();
        assert_eq!(r.expires_in, None);
    }

    #[test]
    fn classification() {
        let e = parse(400, br#"{"error":"invalid_grant"}"#, None, &[]).unwrap_err();
        assert!(e.is_permanent());
        assert_eq!(e.code, "invalid_grant");
        let e = parse(503, b"<html>busy</html>", Some(Duration::from_secs(5)), &[]).unwrap_err();
        assert!(!e.is_permanent());
        assert_eq!(e.retry_after, Some(Duration::from_secs(5)));
        let e = parse(200, b"<html>maintenance</html>", None, &[]).unwrap_err();
        assert!(!e.is_permanent());
        let e = parse(200, br#"{"token_type":"bearer"}"#, None, &[]).unwrap_err();
        assert!(!e.is_permanent());
        let e = parse(401, br#"{"error":"invalid_client"}"#, None, &[]).unwrap_err();
        assert!(e.is_permanent());
        let e = parse(429, b"", None, &[]).unwrap_err();
        assert!(!e.is_permanent());
        // Not the authorization server's word: a redirect, a WAF's page, a bare 4xx.
        for (status, body) in [
            (302, &b""[..]),
            (403, b"<html>Request blocked</html>"),
            (401, b""),
            (400, br#"{"error":"Unauthorized","status":400}"#),
        ] {
            let e = parse(status, body, None, &[]).unwrap_err();
            assert!(!e.is_permanent(), "{status}: {e}");
        }
        let e = parse(503, br#"{"error":"invalid_grant"}"#, None, &[]).unwrap_err();
        assert!(e.is_permanent());
    }

    #[test]
    fn echoed_credentials_never_reach_the_message() {
        // Citesphere (Spring) echoes the refresh token it refused.
        let rt = "6e5bf6c5-aee3-4109-9773-27f295935966";
        let body = format!(
            r#"{{"error":"invalid_grant","error_description":"Invalid refresh token: {rt}"}}"#
        );
        let e = parse(400, body.as_bytes(), None, &[rt]).unwrap_err();
        assert!(e.is_permanent());
        assert!(!e.message.contains(rt), "{}", e.message);
        assert!(e.message.contains("invalid_grant"), "{}", e.message);
        // A token we did not send (another client's, a new one) is redacted by its look.
        let e = parse(400, body.as_bytes(), None, &[]).unwrap_err();
        assert!(!e.message.contains(rt), "{}", e.message);
        assert!(e.message.contains("[redacted]"), "{}", e.message);
        // Ordinary descriptions pass.
        let e = parse(
            400,
            br#"{"error":"invalid_grant","error_description":"The provided authorization grant is invalid"}"#,
            None,
            &["some-secret"],
        )
        .unwrap_err();
        assert!(e.message.contains("grant is invalid"), "{}", e.message);
    }

    #[test]
    fn tokens_are_redacted_by_shape_letters_only_too() {
        for token in [
            "qwertzuiopasdfghjklyxcvbnmqwertz",
            "QwErTzUiOpAsDfGhJkLyXcVb",
            "Zm9vYmFyYmF6cXV4cXV1eA==",
            "6e5bf6c5-aee3-4109-9773-27f295935966",
        ] {
            let text = safe_text(&format!("Invalid access token: {token}."));
            assert!(!text.contains(token), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
        for plain in [
            "unsupported_grant_type",
            "see https://example.com/docs/oauth-errors for details",
            "The provided authorization grant is invalid",
        ] {
            assert_eq!(safe_text(plain), plain);
        }
    }

    #[test]
    fn debug_redacts_tokens() {
        let r = parse(
            200,
            br#"{"access_token":"AT-secret-123","refresh_token":"RT-secret-456"}"#,
            None,
            &[],
        )
        .unwrap();
        let d = format!("{r:?}");
        assert!(
            !d.contains("AT-secret-123") && !d.contains("RT-secret-456"),
            "{d}"
        );
    }
}
