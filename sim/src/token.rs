//! The token endpoint: parameter rules per profile, client authentication, grants.

use super::oauth_error::{no_store, OAuthError};
use super::state::subset;
use super::util::{self, get, pairs, query_pairs};
use super::{Profile, SimOptions, Simulator};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

/// The request's parameters, taken from where the profile's provider takes them.
fn parameters(p: Profile, parts: &Parts, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    if parts.method != Method::POST {
        return Err(OAuthError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            Some(format!("Request method '{}' not supported", parts.method)),
        ));
    }
    let ctype = util::content_type(&parts.headers);
    let form = ctype == "application/x-www-form-urlencoded";
    let params = match p {
        // oauthlib: POST only, no query parameters, a form body.
        Profile::Inode => {
            if parts.uri.query().is_some_and(|q| !q.is_empty()) {
                return Err(OAuthError::invalid_request(
                    "URL query parameters are not allowed",
                ));
            }
            if !form {
                return Err(OAuthError::invalid_request(
                    "Content-Type must be application/x-www-form-urlencoded",
                ));
            }
            pairs(body)
        }
        // Rails merges the query string and a form or JSON body.
        Profile::Scinote => {
            let mut all = query_pairs(&parts.uri);
            if form {
                all.extend(pairs(body));
            } else if ctype == "application/json" {
                let v: Value = serde_json::from_slice(body)
                    .map_err(|_| OAuthError::invalid_request("Malformed JSON body"))?;
                for (k, v) in v.as_object().into_iter().flatten() {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    all.push((k.clone(), v));
                }
            }
            all
        }
        // As its documentation shows: every parameter in the query string.
        Profile::Citesphere => query_pairs(&parts.uri),
        Profile::Highq => {
            if form {
                pairs(body)
            } else {
                Vec::new()
            }
        }
        Profile::BareToken => Vec::new(),
    };
    for (i, (k, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(OAuthError::invalid_request(&format!(
                "Duplicate {k} parameter."
            )));
        }
    }
    Ok(params)
}

fn authenticate(o: &SimOptions, parts: &Parts, params: &[(String, String)]) -> bool {
    if let Some((id, secret)) = util::basic_auth(&parts.headers) {
        if id == o.client_id && secret == o.client_secret {
            return true;
        }
    }
    get(params, "client_id") == Some(o.client_id.as_str())
        && get(params, "client_secret") == Some(o.client_secret.as_str())
}

pub(crate) fn handle(sim: &Simulator, parts: &Parts, body: &[u8]) -> Response {
    let o = &sim.inner.opts;
    let st = &sim.inner.stats;
    let (grant, result) = match parameters(o.profile, parts, body) {
        Err(e) => ("none", Err(e)),
        Ok(params) => {
            let grant = get(&params, "grant_type").unwrap_or("");
            let name = super::stats::grant_name(grant);
            (name, grant_request(sim, parts, &params, grant))
        }
    };
    st.token_request(grant);
    match result {
        Ok(g) => {
            st.token_outcome("ok");
            if grant == "refresh_token" {
                st.refresh();
            }
            no_store(StatusCode::OK, response_body(o, &g).to_string())
        }
        Err(e) => {
            st.token_outcome(e.error);
            if e.status == StatusCode::UNAUTHORIZED {
                st.unauthorized();
            }
            tracing::debug!(error = e.error, grant, "sim: token request refused");
            e.into_response()
        }
    }
}

fn grant_request(
    sim: &Simulator,
    parts: &Parts,
    params: &[(String, String)],
    grant: &str,
) -> Result<super::state::Grant, OAuthError> {
    let o = &sim.inner.opts;
    let p = o.profile;
    if grant.is_empty() {
        return Err(OAuthError::invalid_request("Missing grant type"));
    }
    let known = p.grants().contains(&grant)
        || (grant == "client_credentials" && o.allow_client_credentials);
    if !known {
        return Err(OAuthError::unsupported_grant_type(p, grant));
    }
    if !authenticate(o, parts, params) {
        return Err(OAuthError::invalid_client(p));
    }
    let required = |key: &str| {
        get(params, key).filter(|v| !v.is_empty()).ok_or_else(|| {
            OAuthError::invalid_request(&format!("Request is missing {key} parameter."))
        })
    };
    let requested_scope = get(params, "scope").filter(|s| !s.trim().is_empty());
    let scope_for_new = || -> Result<String, OAuthError> {
        match requested_scope {
            Some(s) if !subset(s, &o.scope) => Err(OAuthError::invalid_scope()),
            Some(s) => Ok(s.to_owned()),
            None => Ok(o.scope.clone()),
        }
    };
    match grant {
        "password" => {
            let user = required("username")?;
            let password = required("password")?;
            let scope = scope_for_new()?;
            if user != o.username || password != o.password {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    Some("Invalid credentials given.".to_owned()),
                ));
            }
            Ok(sim.store().issue(o, &scope, true, "password", None))
        }
        "client_credentials" => {
            let scope = scope_for_new()?;
            Ok(sim
                .store()
                .issue(o, &scope, false, "client_credentials", None))
        }
        "refresh_token" => {
            let token = required("refresh_token")?;
            let result = sim.store().refresh(o, token, requested_scope);
            result.map_err(|f| {
                if f.reuse {
                    sim.inner.stats.refresh_reuse();
                    tracing::debug!("sim: a revoked refresh token was presented again");
                }
                f.error
            })
        }
        "authorization_code" => {
            let code = required("code")?;
            let redirect_uri = get(params, "redirect_uri");
            let verifier = get(params, "code_verifier");
            let mut store = sim.store();
            let scope = store.take_code(o, code, redirect_uri, verifier)?;
            Ok(store.issue(o, &scope, true, "authorization_code", Some(code.to_owned())))
        }
        _ => Err(OAuthError::unsupported_grant_type(p, grant)),
    }
}

/// The token response JSON, shaped per profile.
pub(crate) fn response_body(o: &SimOptions, g: &super::state::Grant) -> Value {
    let p = o.profile;
    let mut m = Map::new();
    m.insert("access_token".into(), json!(g.access));
    m.insert("token_type".into(), json!(p.token_type()));
    if p == Profile::BareToken {
        return Value::Object(m);
    }
    if !o.access_ttl.is_zero() {
        m.insert("expires_in".into(), json!(o.access_ttl.as_secs().max(1)));
    }
    if let Some(r) = &g.refresh {
        if !g.refresh_unchanged || o.echo_refresh {
            m.insert("refresh_token".into(), json!(r));
        }
    }
    match p {
        Profile::Highq => {
            if let Some(left) = g.refresh_left {
                m.insert("refresh_expires_in".into(), json!(left.as_secs()));
            }
            m.insert("user".into(), json!(o.username));
        }
        Profile::Scinote => {
            m.insert("scope".into(), json!(g.scope));
            m.insert("created_at".into(), json!(g.created_at));
        }
        _ => {
            m.insert("scope".into(), json!(g.scope));
        }
    }
    Value::Object(m)
}
