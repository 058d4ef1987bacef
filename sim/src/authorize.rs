//! The authorization endpoint (common to all profiles).
//!
//! `GET <authorize path>?response_type=code&client_id&redirect_uri&state&scope
//!  &code_challenge&code_challenge_method=S256` shows a consent page; adding `approve=1`
//! approves at once (302 to the redirect URI with `code` and `state`), `deny=1` refuses
//! (`error=access_denied`). The bare-token profile delivers `access_token` in the redirect
//! instead of a code. The out-of-band URI `urn:ietf:wg:oauth:2.0:oob` shows the code on a page
//! (SciNote: via Doorkeeper's `/oauth/authorize/native?code=...`).

use super::state::subset;
use super::util::{self, escape_html, get, query_pairs};
use super::{Profile, Simulator};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;

const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

/// Whether `uri` is registered; a registered loopback URI matches any port (RFC 8252 7.3).
pub(crate) fn redirect_registered(registered: &[String], uri: &str) -> bool {
    registered.iter().any(|r| {
        if r == uri {
            return true;
        }
        let (Ok(a), Ok(b)) = (url::Url::parse(r), url::Url::parse(uri)) else {
            return false;
        };
        let loopback = |u: &url::Url| {
            u.scheme() == "http"
                && matches!(
                    u.host_str(),
                    Some("127.0.0.1") | Some("[::1]") | Some("localhost")
                )
        };
        loopback(&a)
            && loopback(&b)
            && a.host_str() == b.host_str()
            && a.path() == b.path()
            && a.query() == b.query()
    })
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>{t}</title></head>\n<body>\n<h1>{t}</h1>\n{body}\n</body></html>\n",
        t = escape_html(title)
    )
}

/// `uri` with `params` added to its query.
fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", util::encode_query(params))
}

pub(crate) fn handle(sim: &Simulator, parts: &Parts) -> Response {
    sim.inner.stats.authorize();
    let o = &sim.inner.opts;
    if parts.method != Method::GET && parts.method != Method::POST {
        return super::method_not_allowed(&Method::GET);
    }
    let q = query_pairs(&parts.uri);
    if parts.uri.path() == "/oauth/authorize/native" {
        return code_page(get(&q, "code").unwrap_or(""));
    }
    if get(&q, "client_id") != Some(o.client_id.as_str()) {
        return util::html(
            StatusCode::BAD_REQUEST,
            page(
                "An error has occurred",
                "<p>Client authentication failed due to unknown client.</p>",
            ),
        );
    }
    let default_uri = match o.profile {
        // The site redirects to the application's registered URI.
        Profile::BareToken => o.redirect_uris.iter().find(|u| *u != OOB),
        _ => o.redirect_uris.first(),
    };
    let redirect_uri = match get(&q, "redirect_uri") {
        Some(u) => u.to_owned(),
        None => match default_uri {
            Some(u) => u.clone(),
            None => String::new(),
        },
    };
    if redirect_uri.is_empty() || !redirect_registered(&o.redirect_uris, &redirect_uri) {
        return util::html(
            StatusCode::BAD_REQUEST,
            page("An error has occurred", "<p>The requested redirect uri is malformed or doesn't match client redirect URI.</p>"),
        );
    }
    let state = get(&q, "state");
    let error_redirect = |error: &str| {
        let mut p = vec![("error", error)];
        if let Some(s) = state {
            p.push(("state", s));
        }
        util::redirect(&with_params(&redirect_uri, &p))
    };
    if o.profile != Profile::BareToken && get(&q, "response_type") != Some("code") {
        return error_redirect("unsupported_response_type");
    }
    let scope = match get(&q, "scope").filter(|s| !s.trim().is_empty()) {
        Some(s) if !subset(s, &o.scope) => return error_redirect("invalid_scope"),
        Some(s) => s.to_owned(),
        None => o.scope.clone(),
    };
    let challenge = match get(&q, "code_challenge") {
        None => None,
        Some(c) => {
            let method = get(&q, "code_challenge_method").unwrap_or("plain");
            if method != "S256" && method != "plain" {
                return error_redirect("invalid_request");
            }
            Some((c.to_owned(), method.to_owned()))
        }
    };
    if get(&q, "deny").is_some_and(|v| v != "0") {
        return error_redirect("access_denied");
    }
    if get(&q, "approve").is_none_or(|v| v == "0") {
        let mut approve = q.clone();
        approve.push(("approve".into(), "1".into()));
        let mut deny = q.clone();
        deny.push(("deny".into(), "1".into()));
        let link = |p: &[(String, String)]| {
            let pairs: Vec<(&str, &str)> =
                p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            escape_html(&format!(
                "{}?{}",
                parts.uri.path(),
                util::encode_query(&pairs)
            ))
        };
        return util::html(
            StatusCode::OK,
            page(
                "Authorization required",
                &format!(
                    "<p>Authorize <strong>{}</strong> to use your account?</p>\n<p><a id=\"approve\" href=\"{}\">Authorize</a> <a id=\"deny\" href=\"{}\">Deny</a></p>",
                    escape_html(&o.client_id),
                    link(&approve),
                    link(&deny)
                ),
            ),
        );
    }
    if o.profile == Profile::BareToken {
        let grant = sim.store().issue(o, &scope, false, "authorization", None);
        let mut p = vec![("access_token", grant.access.as_str())];
        if let Some(s) = state {
            p.push(("state", s));
        }
        return util::redirect(&with_params(&redirect_uri, &p));
    }
    let code = sim.store().new_code(o, &redirect_uri, challenge, &scope);
    sim.inner.stats.code_issued();
    if redirect_uri == OOB {
        if o.profile == Profile::Scinote {
            return util::redirect(&with_params("/oauth/authorize/native", &[("code", &code)]));
        }
        return code_page(&code);
    }
    let mut p = vec![("code", code.as_str())];
    if let Some(s) = state {
        p.push(("state", s));
    }
    util::redirect(&with_params(&redirect_uri, &p))
}

/// The out-of-band page that shows the user the code to paste.
fn code_page(code: &str) -> Response {
    let body = format!(
        "<code id=\"authorization_code\">{}</code>",
        escape_html(code)
    );
    util::html(StatusCode::OK, page("Authorization code:", &body))
}
