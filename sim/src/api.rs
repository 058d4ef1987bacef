//! The resource endpoints of each profile, with each provider's way of checking credentials.

use super::state::AccessError;
use super::util::{self, get, has, query_pairs};
use super::{Profile, Simulator};
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// The largest page a paginated list serves, whatever the request asks (DRF's `max_page_size`,
/// kaminari's `max_per_page`).
const MAX_PAGE_SIZE: usize = 100;

pub(crate) fn handle(sim: &Simulator, parts: &Parts) -> Response {
    match sim.inner.opts.profile {
        Profile::Inode => inode(sim, parts),
        Profile::Scinote => scinote(sim, parts),
        Profile::BareToken => bare(sim, parts),
        Profile::Citesphere => citesphere(sim, parts),
        Profile::Highq => highq(sim, parts),
    }
}

/// The list generation: the contents change once per `change_every`.
fn epoch(sim: &Simulator) -> u64 {
    match sim.inner.opts.change_every {
        Some(d) if !d.is_zero() => (sim.inner.started.elapsed().as_nanos() / d.as_nanos()) as u64,
        _ => 0,
    }
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// The value after a case-insensitive `scheme ` prefix.
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn with_header(mut r: Response, name: header::HeaderName, value: String) -> Response {
    if let Ok(v) = value.parse() {
        r.headers_mut().insert(name, v);
    }
    r
}

// ---- iNode: django-oauth-toolkit + Django REST framework ----

fn inode(sim: &Simulator, parts: &Parts) -> Response {
    let path = parts.uri.path();
    let kind = match path {
        "/api/v1/links/" => "links",
        "/api/v1/devices/" => "devices",
        "/api/v1/links" | "/api/v1/devices" => {
            // Django's APPEND_SLASH.
            let q = parts
                .uri
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return Response::builder()
                .status(StatusCode::MOVED_PERMANENTLY)
                .header(header::LOCATION, format!("{path}/{q}"))
                .body(Body::empty())
                .unwrap_or_default();
        }
        _ => return django_404(),
    };
    if let Err(detail) = inode_auth(sim, parts) {
        let r = util::json(StatusCode::UNAUTHORIZED, &json!({ "detail": detail }));
        return with_header(r, header::WWW_AUTHENTICATE, "Bearer realm=\"api\"".into());
    }
    if !is_get(&parts.method) {
        let detail = format!("Method \"{}\" not allowed.", parts.method);
        return util::json(StatusCode::METHOD_NOT_ALLOWED, &json!({ "detail": detail }));
    }
    let e = epoch(sim);
    let items: Vec<Value> = (1..=sim.inner.opts.items)
        .map(|i| match kind {
            "links" => json!({
                "id": i, "name": format!("Link {i}"), "type": "radio",
                "status": if (i as u64 + e).is_multiple_of(4) { "down" } else { "up" },
                "revision": e,
            }),
            _ => json!({
                "id": i, "serial": format!("SN-{:06}", 1000 + i), "name": format!("Device {i}"),
                "battery": 100 - ((i as u64 * 7 + e) % 60), "revision": e,
            }),
        })
        .collect();
    let q = query_pairs(&parts.uri);
    if has(&q, "no_pagination") {
        return util::json(StatusCode::OK, &Value::Array(items));
    }
    // DRF's PageNumberPagination with `page_size_query_param = "page_size"`.
    let (Ok(page), Ok(size)) = (
        util::page_param(&q, "page", 1),
        util::page_param(&q, "page_size", sim.inner.opts.page_size),
    ) else {
        return util::json(StatusCode::NOT_FOUND, &json!({"detail": "Invalid page."}));
    };
    let size = size.min(MAX_PAGE_SIZE);
    let pages = items.len().div_ceil(size).max(1);
    if page > pages {
        return util::json(StatusCode::NOT_FOUND, &json!({"detail": "Invalid page."}));
    }
    let host = util::host(&parts.headers);
    // As DRF builds them: the request's absolute URL with `page` replaced (dropped for page 1).
    let link = |p: usize| match p {
        1 => Value::from(format!(
            "http://{host}{}",
            util::without_param(&parts.uri, "page")
        )),
        _ => Value::from(format!(
            "http://{host}{}",
            util::with_param(&parts.uri, "page", &p.to_string())
        )),
    };
    let results: Vec<Value> = items
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    util::json(
        StatusCode::OK,
        &json!({
            "count": items.len(),
            "next": if page < pages { link(page + 1) } else { Value::Null },
            "previous": if page > 1 { link(page - 1) } else { Value::Null },
            "results": results,
        }),
    )
}

/// One page of `items` with an RFC 8288 `Link` header (`?page=N&per_page=M`, GitHub's
/// style): `next`, `prev`, `first`, `last`. `wrap` shapes the page's items into the body.
fn link_page(
    sim: &Simulator,
    parts: &Parts,
    items: Vec<Value>,
    wrap: impl Fn(Vec<Value>) -> Value,
) -> Response {
    let q = query_pairs(&parts.uri);
    let (Ok(page), Ok(size)) = (
        util::page_param(&q, "page", 1),
        util::page_param(&q, "per_page", sim.inner.opts.page_size),
    ) else {
        return util::json(
            StatusCode::BAD_REQUEST,
            &json!({"message": "page and per_page must be positive integers"}),
        );
    };
    let size = size.min(MAX_PAGE_SIZE);
    let pages = items.len().div_ceil(size).max(1);
    let host = util::host(&parts.headers);
    let url = |p: usize| {
        format!(
            "http://{host}{}",
            util::with_param(&parts.uri, "page", &p.to_string())
        )
    };
    let mut links = Vec::new();
    if page < pages {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url((page - 1).min(pages))));
    }
    links.push(format!("<{}>; rel=\"first\"", url(1)));
    links.push(format!("<{}>; rel=\"last\"", url(pages)));
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    with_header(
        util::json(StatusCode::OK, &wrap(body)),
        header::LINK,
        links.join(", "),
    )
}

/// DOT's OAuth2Authentication, then DRF's TokenAuthentication (both case-insensitive).
fn inode_auth(sim: &Simulator, parts: &Parts) -> Result<(), &'static str> {
    const NOT_PROVIDED: &str = "Authentication credentials were not provided.";
    let Some(value) = util::authorization(&parts.headers) else {
        return Err(NOT_PROVIDED);
    };
    let split: Vec<&str> = value.split(' ').collect();
    if split.len() == 2
        && split[0].eq_ignore_ascii_case("bearer")
        && sim.store().check_access(split[1]).is_ok()
    {
        return Ok(());
    }
    let words: Vec<&str> = value.split_whitespace().collect();
    if words
        .first()
        .is_some_and(|w| w.eq_ignore_ascii_case("token"))
    {
        return match words.len() {
            1 => Err("Invalid token header. No credentials provided."),
            2 if words[1] == sim.inner.opts.api_key => Ok(()),
            2 => Err("Invalid token."),
            _ => Err("Invalid token header. Token string should not contain spaces."),
        };
    }
    Err(NOT_PROVIDED)
}

fn django_404() -> Response {
    util::html(
        StatusCode::NOT_FOUND,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n".into(),
    )
}

// ---- SciNote: Doorkeeper, JSON:API ----

fn scinote(sim: &Simulator, parts: &Parts) -> Response {
    let path = parts.uri.path().trim_end_matches('/');
    let jsonapi = |status: StatusCode, v: Value| {
        let mut r = util::json(status, &v);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/vnd.api+json; charset=utf-8"),
        );
        r
    };
    let not_found = || {
        jsonapi(
            StatusCode::NOT_FOUND,
            json!({"errors": [{"id": "404", "status": 404, "title": "Not found", "detail": "Record not found"}]}),
        )
    };
    let what =
        match path {
            "/api/v1/teams" => "teams",
            "/api/v1/teams/1/projects" => "projects",
            p if p.starts_with("/api/v1/") => return not_found(),
            _ => return util::html(
                StatusCode::NOT_FOUND,
                "<html><body><h1>The page you were looking for doesn't exist.</h1></body></html>\n"
                    .into(),
            ),
        };
    let token = util::authorization(&parts.headers).and_then(|v| strip_scheme(v, "bearer"));
    let check = match token {
        None => Err(AccessError::Unknown),
        Some(t) => sim.store().check_access(t.trim()),
    };
    if let Err(e) = check {
        let description = match e {
            AccessError::Unknown => "The access token is invalid",
            AccessError::Expired => "The access token expired",
            AccessError::Revoked => "The access token was revoked",
        };
        let r = Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::empty())
            .unwrap_or_default();
        return with_header(
            r,
            header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"Doorkeeper\", error=\"invalid_token\", error_description=\"{description}\""),
        );
    }
    if !is_get(&parts.method) {
        return not_found();
    }
    let e = epoch(sim);
    let host = util::host(&parts.headers);
    let data: Vec<Value> = (1..=sim.inner.opts.items)
        .map(|i| match what {
            "teams" => json!({"id": i.to_string(), "type": "teams", "attributes": {"name": format!("Team {i}"), "description": null, "space_taken": 1048576 * i}}),
            _ => json!({"id": i.to_string(), "type": "projects", "attributes": {
                "name": format!("Project {i}"), "visibility": "visible",
                "start_date": "2021-03-26T17:13:00.000Z", "archived": (i as u64 + e).is_multiple_of(5), "revision": e,
            }}),
        })
        .collect();
    // SciNote's API (jsonapi-serializer + kaminari): `page[number]`, `page[size]`, and
    // absolute `links`; a page past the last is an empty `data`.
    let q = query_pairs(&parts.uri);
    let (Ok(page), Ok(size)) = (
        util::page_param(&q, "page[number]", 1),
        util::page_param(&q, "page[size]", sim.inner.opts.page_size),
    ) else {
        return jsonapi(
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"id": "400", "status": 400, "title": "Bad request", "detail": "page[number] and page[size] must be positive integers"}]}),
        );
    };
    let size = size.min(MAX_PAGE_SIZE);
    let pages = data.len().div_ceil(size).max(1);
    let url = |p: usize| {
        Value::from(format!(
            "http://{host}{path}?page%5Bnumber%5D={p}&page%5Bsize%5D={size}"
        ))
    };
    let data: Vec<Value> = data
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    jsonapi(
        StatusCode::OK,
        json!({"data": data, "links": {
            "self": url(page),
            "first": url(1),
            "prev": if page > 1 { url((page - 1).min(pages)) } else { Value::Null },
            "next": if page < pages { url(page + 1) } else { Value::Null },
            "last": url(pages),
        }}),
    )
}

// ---- Ruqqus-style: bare `Authorization: <token>` ----

fn bare(sim: &Simulator, parts: &Parts) -> Response {
    let path = parts.uri.path();
    if path != "/" && path != "/unread" {
        return util::html(
            StatusCode::NOT_FOUND,
            "<html><body><h1>404 Not Found</h1></body></html>\n".into(),
        );
    }
    let ok =
        util::authorization(&parts.headers).is_some_and(|v| sim.store().check_access(v).is_ok());
    if !ok {
        return util::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "401 Not Authorized"}),
        );
    }
    if !is_get(&parts.method) {
        return util::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "405 Method Not Allowed"}),
        );
    }
    let e = epoch(sim);
    let n = sim.inner.opts.items;
    let data: Vec<Value> = if path == "/" {
        let mut posts: Vec<(u64, Value)> = (1..=n)
            .map(|i| {
                let comments = (i as u64 * 13 + e * 3) % 50;
                (comments, json!({"id": i, "title": format!("Post {i}"), "author_name": "someone", "comment_count": comments, "upvotes": i * 3 + e as usize}))
            })
            .collect();
        if get(&query_pairs(&parts.uri), "sort") == Some("comments") {
            posts.sort_by_key(|p| std::cmp::Reverse(p.0));
        }
        posts.into_iter().map(|(_, v)| v).collect()
    } else {
        (1..=n)
            .map(|i| json!({"id": i, "body": format!("Reply {i} (generation {e})"), "read": false}))
            .collect()
    };
    if sim.inner.opts.link_pages {
        return link_page(sim, parts, data, |d| json!({ "data": d }));
    }
    util::json(StatusCode::OK, &json!({ "data": data }))
}

// ---- Citesphere: Spring Security OAuth2 resource server ----

fn citesphere(sim: &Simulator, parts: &Parts) -> Response {
    let path = parts.uri.path();
    if !matches!(path, "/api/v1/groups" | "/api/v1/user" | "/api/v1/test") {
        let body = json!({"timestamp": util::unix_now() * 1000, "status": 404, "error": "Not Found", "path": path});
        return util::json(StatusCode::NOT_FOUND, &body);
    }
    let token = util::authorization(&parts.headers).and_then(|v| strip_scheme(v, "bearer"));
    let (error, description) = match token {
        None => (
            "unauthorized",
            "Full authentication is required to access this resource".to_owned(),
        ),
        Some(t) => match sim.store().check_access(t.trim()) {
            Ok(()) => ("", String::new()),
            Err(AccessError::Expired) => ("invalid_token", format!("Access token expired: {t}")),
            Err(_) => ("invalid_token", format!("Invalid access token: {t}")),
        },
    };
    if !error.is_empty() {
        let r = util::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": error, "error_description": description}),
        );
        return with_header(
            r,
            header::WWW_AUTHENTICATE,
            format!("Bearer realm=\"oauth2-resource\", error=\"{error}\", error_description=\"{description}\""),
        );
    }
    if !is_get(&parts.method) {
        return util::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"status": 405, "error": "Method Not Allowed"}),
        );
    }
    let o = &sim.inner.opts;
    let e = epoch(sim);
    if path == "/api/v1/groups" && o.link_pages {
        let groups = (1..=o.items)
            .map(|i| json!({"id": 1000 + i, "name": format!("Group {i}"), "numItems": i as u64 * 10 + e, "version": e, "type": "group"}))
            .collect();
        return link_page(sim, parts, groups, Value::Array);
    }
    let body = match path {
        "/api/v1/groups" => Value::Array(
            (1..=o.items)
                .map(|i| json!({"id": 1000 + i, "name": format!("Group {i}"), "numItems": i as u64 * 10 + e, "version": e, "type": "group"}))
                .collect(),
        ),
        "/api/v1/user" => json!({"username": o.username, "firstName": "Demo", "lastName": "Owner", "email": "owner@example.com"}),
        _ => json!({"user": o.username}),
    };
    util::json(StatusCode::OK, &body)
}

// ---- HighQ Collaborate API v3 ----

fn highq(sim: &Simulator, parts: &Parts) -> Response {
    let path = parts.uri.path().trim_end_matches('/');
    if path != "/highq/api/3/sites" {
        return util::json(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": 404, "message": "Resource not found"}}),
        );
    }
    let token = util::authorization(&parts.headers).and_then(|v| strip_scheme(v, "bearer"));
    if token.is_none_or(|t| sim.store().check_access(t.trim()).is_err()) {
        let r = util::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "error_description": "The access token is invalid or has expired"}),
        );
        return with_header(
            r,
            header::WWW_AUTHENTICATE,
            "Bearer error=\"invalid_token\"".into(),
        );
    }
    if !is_get(&parts.method) {
        return util::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": {"code": 405, "message": "Method not allowed"}}),
        );
    }
    let e = epoch(sim);
    let n = sim.inner.opts.items;
    let wants_json = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !wants_json {
        // The v3 API answers XML unless JSON is asked for.
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sites>");
        for i in 1..=n {
            xml.push_str(&format!(
                "<site><id>{i}</id><sitename>Site {i}</sitename><version>{e}</version></site>"
            ));
        }
        xml.push_str("</sites>\n");
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/xml")
            .body(Body::from(xml))
            .unwrap_or_default();
    }
    let sites: Vec<Value> = (1..=n)
        .map(|i| json!({"id": i, "sitename": format!("Site {i}"), "sitedescription": "", "role": "Admin", "version": e}))
        .collect();
    util::json(StatusCode::OK, &json!({ "site": sites }))
}
