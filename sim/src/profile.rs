//! The five provider profiles: their paths and defaults.

use super::{Route, SimOptions};
use axum::http::Method;
use std::time::Duration;

/// Which real provider the simulator imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Profile {
    /// iNode: django-oauth-toolkit + DRF; password grant, `Token` API keys.
    Inode,
    /// SciNote: Doorkeeper; authorization code (out-of-band), 2-hour tokens.
    Scinote,
    /// Ruqqus-style site: token delivered in the redirect, bare `Authorization: <token>`.
    BareToken,
    /// Citesphere: Spring OAuth2; token parameters in the query string of the POST.
    Citesphere,
    /// HighQ Collaborate: authorization code only, long-lived tokens.
    Highq,
}

/// An API endpoint to poll: (name, path relative to base_url, query pairs).
pub type Endpoint = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Inode => "inode",
            Profile::Scinote => "scinote",
            Profile::BareToken => "bare-token",
            Profile::Citesphere => "citesphere",
            Profile::Highq => "highq",
        }
    }

    /// The path of the configuration's `base_url` on the simulator.
    pub fn base_path(self) -> &'static str {
        match self {
            Profile::Inode | Profile::Citesphere => "/api/",
            Profile::Scinote | Profile::BareToken => "/",
            Profile::Highq => "/highq/api/",
        }
    }

    /// The token endpoint's absolute path (`None`: the site has none).
    pub fn token_path(self) -> Option<&'static str> {
        match self {
            Profile::Inode => Some("/api/oauth/token/"),
            Profile::Scinote => Some("/oauth/token"),
            Profile::BareToken => None,
            Profile::Citesphere => Some("/api/v1/oauth/token"),
            Profile::Highq => Some("/highq/api/oauth2/token"),
        }
    }

    /// The authorization endpoint's absolute path.
    pub fn authorize_path(self) -> &'static str {
        match self {
            Profile::Inode => "/api/oauth/authorize/",
            Profile::Scinote => "/oauth/authorize",
            Profile::BareToken => "/authorize/",
            Profile::Citesphere => "/api/oauth/authorize",
            Profile::Highq => "/highq/authorize.action",
        }
    }

    pub fn has_token_endpoint(self) -> bool {
        self.token_path().is_some()
    }

    /// The API endpoints to poll: (name, path relative to base_url, query).
    pub fn endpoints(self) -> &'static [Endpoint] {
        match self {
            Profile::Inode => &[
                ("links", "v1/links/", &[("no_pagination", "")]),
                ("devices", "v1/devices/", &[("no_pagination", "")]),
            ],
            Profile::Scinote => &[("projects", "api/v1/teams/1/projects", &[])],
            Profile::BareToken => &[
                ("frontpage", "", &[("sort", "comments")]),
                ("unread", "unread", &[]),
            ],
            Profile::Citesphere => &[("groups", "v1/groups", &[])],
            Profile::Highq => &[("sites", "3/sites", &[])],
        }
    }

    /// Grant types the token endpoint knows for this client.
    pub(crate) fn grants(self) -> &'static [&'static str] {
        match self {
            Profile::Inode => &["password", "refresh_token", "authorization_code"],
            Profile::Scinote | Profile::Citesphere | Profile::Highq => {
                &["authorization_code", "refresh_token"]
            }
            Profile::BareToken => &[],
        }
    }

    /// `token_type` in token responses.
    pub(crate) fn token_type(self) -> &'static str {
        match self {
            Profile::Citesphere | Profile::Highq => "bearer",
            _ => "Bearer",
        }
    }

    pub(crate) fn route(self, method: &Method, path: &str) -> Route {
        if Some(path) == self.token_path() {
            return Route::Token;
        }
        if path == self.authorize_path()
            || (self == Profile::Scinote && path == "/oauth/authorize/native")
        {
            return Route::Authorize;
        }
        let _ = method;
        Route::Api
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const LOOPBACK_CALLBACK: &str = "http://127.0.0.1:8765/callback";
const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

pub(crate) fn defaults(profile: Profile) -> SimOptions {
    let secs = Duration::from_secs;
    let (access_ttl, refresh_ttl, rotate, scope) = match profile {
        Profile::Inode => (secs(3600), None, true, "sync"),
        Profile::Scinote => (secs(7200), None, true, ""),
        Profile::BareToken => (Duration::ZERO, None, false, ""),
        Profile::Citesphere => (secs(406), Some(secs(30 * 86400)), true, "read"),
        Profile::Highq => (secs(3600), Some(secs(2_628_000)), false, ""),
    };
    let redirect_uris = match profile {
        Profile::Scinote => vec![OOB.to_owned(), LOOPBACK_CALLBACK.to_owned()],
        _ => vec![LOOPBACK_CALLBACK.to_owned(), OOB.to_owned()],
    };
    let client_id = match profile {
        Profile::Citesphere => "OAUTHCLIENT007",
        _ => "demo-client",
    };
    let username = match profile {
        Profile::Highq => "owner@example.com",
        _ => "owner",
    };
    SimOptions {
        profile,
        access_ttl,
        refresh_ttl,
        rotate,
        revoke_access_on_refresh: true,
        echo_refresh: true,
        allow_client_credentials: false,
        client_id: client_id.to_owned(),
        client_secret: "demo-client-secret".to_owned(),
        username: username.to_owned(),
        password: "demo-password".to_owned(),
        api_key: "demo-api-key".to_owned(),
        redirect_uris,
        scope: scope.to_owned(),
        code_ttl: secs(300),
        items: 3,
        page_size: 10,
        link_pages: false,
        change_every: None,
        faults: Vec::new(),
    }
}
