//! Small helpers: responses, parameter parsing, random values, time.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use rand::Rng;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    json_text(status, value.to_string())
}

pub(crate) fn json_text(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_default()
}

pub(crate) fn html(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_default()
}

pub(crate) fn redirect(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .unwrap_or_default()
}

/// `application/x-www-form-urlencoded` pairs, in order, duplicates kept.
pub(crate) fn pairs(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input).into_owned().collect()
}

pub(crate) fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    pairs(uri.query().unwrap_or("").as_bytes())
}

/// The first value of `key`.
pub(crate) fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn has(pairs: &[(String, String)], key: &str) -> bool {
    pairs.iter().any(|(k, _)| k == key)
}

/// The media type of the request (lower case, parameters dropped).
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

pub(crate) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// `Authorization: Basic base64(id:secret)`, each part form-url-decoded (RFC 6749 2.3.1).
pub(crate) fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = authorization(headers)?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

/// A random, URL-safe token of 43 characters (32 random bytes).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A random version-4 UUID (Spring-style token values).
pub(crate) fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b[..]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `s` with `&`, `<`, `>`, `"` escaped for HTML.
pub(crate) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Form-url-encodes `pairs` into a query string.
pub(crate) fn encode_query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The request's `Host` header, for absolute links.
pub(crate) fn host(headers: &HeaderMap) -> &str {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
}

/// The request's path and query with `key` set to `value` (added, or replaced in place), the
/// other parameters kept: how DRF and Rails build their page links.
pub(crate) fn with_param(uri: &axum::http::Uri, key: &str, value: &str) -> String {
    let mut pairs = query_pairs(uri);
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1 = value.to_owned(),
        None => pairs.push((key.to_owned(), value.to_owned())),
    }
    path_and_query(uri, &pairs)
}

/// The request's path and query without `key`.
pub(crate) fn without_param(uri: &axum::http::Uri, key: &str) -> String {
    let pairs: Vec<_> = query_pairs(uri)
        .into_iter()
        .filter(|(k, _)| k != key)
        .collect();
    path_and_query(uri, &pairs)
}

/// `uri`'s path with `pairs` as its query (none: the path alone).
fn path_and_query(uri: &axum::http::Uri, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return uri.path().to_owned();
    }
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        // `?no_pagination` stays a bare key.
        if v.is_empty() {
            s.append_key_only(k);
        } else {
            s.append_pair(k, v);
        }
    }
    format!("{}?{}", uri.path(), s.finish())
}

/// A positive page number or size from the query; `Err` for one that is not.
pub(crate) fn page_param(
    pairs: &[(String, String)],
    key: &str,
    default: usize,
) -> Result<usize, ()> {
    match get(pairs, key).map(str::parse::<usize>) {
        None => Ok(default),
        Some(Ok(n)) if n >= 1 => Ok(n),
        _ => Err(()),
    }
}
