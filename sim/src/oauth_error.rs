//! The RFC 6749 5.2 error response, shared by the token endpoint (which answers with it)
//! and the token store (whose grants fail with it): its own module, so that neither of
//! those two imports the other.

use crate::Profile;
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

/// An RFC 6749 5.2 error response.
#[derive(Clone, Debug)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: Option<String>,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: Option<String>,
    ) -> Self {
        OAuthError {
            status,
            error,
            description,
        }
    }

    pub(crate) fn invalid_request(description: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(description.to_owned()),
        )
    }

    pub(crate) fn invalid_scope() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            Some("The requested scope is invalid, unknown, or malformed.".to_owned()),
        )
    }

    pub(crate) fn invalid_client(profile: Profile) -> Self {
        let description = match profile {
            Profile::Inode => None,
            Profile::Citesphere => Some("Bad client credentials".to_owned()),
            _ => Some("Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.".to_owned()),
        };
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn unsupported_grant_type(profile: Profile, grant: &str) -> Self {
        let description = match profile {
            Profile::Citesphere => Some(format!("Unsupported grant type: {grant}")),
            Profile::Inode => None,
            _ => Some(
                "The authorization grant type is not supported by the authorization server."
                    .to_owned(),
            ),
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// `invalid_grant`, worded as the profile's provider words it. Spring (Citesphere) echoes
    /// the presented refresh token, as the real one does.
    pub(crate) fn invalid_grant(profile: Profile, what: &str, value: &str) -> Self {
        let description = match profile {
            Profile::Inode => None,
            Profile::Citesphere => Some(match what {
                "refresh" => format!("Invalid refresh token: {value}"),
                "expired" => format!("Invalid refresh token (expired): {value}"),
                "redirect_uri" => "Redirect URI mismatch.".to_owned(),
                "pkce" => "Invalid code verifier".to_owned(),
                _ => format!("Invalid authorization code: {value}"),
            }),
            _ => Some("The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.".to_owned()),
        };
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::from(self.error));
        if let Some(d) = self.description {
            body.insert("error_description".into(), Value::from(d));
        }
        no_store(self.status, Value::Object(body).to_string())
    }
}

pub(crate) fn no_store(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache")
        .body(Body::from(body))
        .unwrap_or_default()
}
