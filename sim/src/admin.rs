//! `/_sim/`: the loopback test controls (no authentication).
//!
//! | request | effect |
//! |---|---|
//! | `GET /_sim/stats` | counters and token lists ([`super::Simulator::stats`]) |
//! | `DELETE /_sim/stats` | counters back to zero (tokens kept) |
//! | `POST /_sim/fault` | add a fault (JSON object or query parameters); answers `{"id":N,"fault":{...}}` |
//! | `GET /_sim/fault` | the active faults |
//! | `DELETE /_sim/fault` | remove every fault |
//! | `POST /_sim/seed` | issue a token pair, answer the token response ([`super::Simulator::issue_seed`]) |
//! | `POST /_sim/expire?what=access\|refresh\|all` | the current tokens expire now |
//! | `POST /_sim/revoke` | every token is revoked |

use super::util::{self, get, query_pairs};
use super::{fault, FaultSpec, Simulator};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

pub(crate) fn handle(sim: &Simulator, path: &str, parts: &Parts, body: &[u8]) -> Response {
    let m = &parts.method;
    match (path, m) {
        ("stats", &Method::GET) => util::json(StatusCode::OK, &sim.stats()),
        ("stats", &Method::DELETE) => {
            sim.inner.stats.reset();
            util::json(StatusCode::OK, &json!({"reset": true}))
        }
        ("fault", &Method::POST) => match parse_fault(parts, body) {
            Ok(spec) => {
                let v = spec.to_json();
                let id = sim.add_fault(spec);
                tracing::debug!(id, "sim: fault added");
                util::json(StatusCode::OK, &json!({"id": id, "fault": v}))
            }
            Err(e) => util::json(StatusCode::BAD_REQUEST, &json!({"error": e})),
        },
        ("fault", &Method::GET) => util::json(StatusCode::OK, &sim.inner.faults.snapshot()),
        ("fault", &Method::DELETE) => {
            let n = sim.clear_faults();
            util::json(StatusCode::OK, &json!({"cleared": n}))
        }
        ("seed", &Method::POST) => util::json_text(StatusCode::OK, sim.issue_seed()),
        ("expire", &Method::POST) => {
            let q = query_pairs(&parts.uri);
            let (a, r) = match get(&q, "what").unwrap_or("access") {
                "access" => (true, false),
                "refresh" => (false, true),
                "all" => (true, true),
                other => {
                    let e = format!("what: expected access, refresh or all, not {other:?}");
                    return util::json(StatusCode::BAD_REQUEST, &json!({ "error": e }));
                }
            };
            let n = sim.store().expire(a, r);
            util::json(StatusCode::OK, &json!({"expired": n}))
        }
        ("revoke", &Method::POST) => {
            let n = sim.store().revoke_all();
            util::json(StatusCode::OK, &json!({"revoked": n}))
        }
        ("stats" | "fault" | "seed" | "expire" | "revoke", _) => util::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        ),
        _ => util::json(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown /_sim/ path"}),
        ),
    }
}

/// A fault from a JSON body, or else from the query string.
fn parse_fault(parts: &Parts, body: &[u8]) -> Result<FaultSpec, String> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("body: not JSON: {e}"))?;
        return fault::from_json(&v);
    }
    let q = query_pairs(&parts.uri);
    FaultSpec::from_pairs(q.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}
