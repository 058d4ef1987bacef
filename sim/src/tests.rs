//! End-to-end tests over real loopback connections (a small HTTP/1.1 client below).

use super::*;
use base64::Engine;
use serde_json::Value;
use sha2::Digest;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

async fn raw(addr: SocketAddr, req: Vec<u8>) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&req).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(addr, req.into_bytes()).await.expect("request failed")
}

async fn get(addr: SocketAddr, target: &str, auth: Option<&str>) -> Resp {
    let h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    send(addr, "GET", target, &h, "").await
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn post_form(addr: SocketAddr, target: &str, body: &str) -> Resp {
    send(addr, "POST", target, &[FORM], body).await
}

struct Running {
    sim: Simulator,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("shutdown timed out")
            .unwrap()
            .unwrap();
    }
}

async fn start(opts: SimOptions) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = Simulator::new(opts);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sim.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    Running {
        sim,
        addr,
        stop: Some(tx),
        task,
    }
}

const INODE_PASSWORD: &str = "grant_type=password&username=owner&password=demo-password&client_id=demo-client&client_secret=demo-client-secret&scope=sync";

#[tokio::test]
async fn inode_password_refresh_rotation_and_reuse() {
    let r = start(SimOptions::new(Profile::Inode)).await;
    let a = r.addr;
    let t = post_form(a, "/api/oauth/token/", INODE_PASSWORD).await;
    assert_eq!(t.status, 200, "{}", t.text());
    let t = t.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "sync");
    assert_eq!(t["expires_in"], 3600);
    let access1 = t["access_token"].as_str().unwrap().to_owned();
    let refresh1 = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(access1.len() >= 32 && refresh1.len() >= 32);
    let bearer1 = format!("Bearer {access1}");
    assert_eq!(
        get(a, "/api/v1/links/?no_pagination", Some(&bearer1))
            .await
            .status,
        200
    );

    let body = format!("grant_type=refresh_token&refresh_token={refresh1}&client_id=demo-client&client_secret=demo-client-secret");
    let t2 = post_form(a, "/api/oauth/token/", &body).await;
    assert_eq!(t2.status, 200, "{}", t2.text());
    let t2 = t2.json();
    let refresh2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    // The old refresh token is revoked at once, and so is the old access token.
    let again = post_form(a, "/api/oauth/token/", &body).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json(), serde_json::json!({"error": "invalid_grant"}));
    assert_eq!(
        get(a, "/api/v1/links/?no_pagination", Some(&bearer1))
            .await
            .status,
        401
    );
    let bearer2 = format!("Bearer {}", t2["access_token"].as_str().unwrap());
    assert_eq!(
        get(a, "/api/v1/links/?no_pagination", Some(&bearer2))
            .await
            .status,
        200
    );

    let s = r.sim.stats();
    assert_eq!(s["refreshes"], 1);
    assert_eq!(s["refresh_token_reuse"], 1);
    assert_eq!(s["valid_refresh_tokens"], serde_json::json!([refresh2]));
    assert_eq!(s["token_requests"]["by_grant"]["password"], 1);
    assert_eq!(s["token_requests"]["by_grant"]["refresh_token"], 2);
    assert_eq!(s["token_requests"]["by_outcome"]["invalid_grant"], 1);
    assert_eq!(s["issued_tokens"].as_array().unwrap().len(), 4);
    assert_eq!(s["api_requests"]["by_status"]["401"], 1);
    // Over HTTP too.
    let s2 = get(a, "/_sim/stats", None).await.json();
    assert_eq!(s2["refreshes"], 1);
    r.stop().await;
}

#[tokio::test]
async fn inode_token_endpoint_rejections() {
    let r = start(SimOptions::new(Profile::Inode)).await;
    let a = r.addr;
    let p = "/api/oauth/token/";
    let bad_client = INODE_PASSWORD.replace("demo-client-secret", "nope");
    let t = post_form(a, p, &bad_client).await;
    assert_eq!(
        (t.status, t.json()["error"].clone()),
        (401, "invalid_client".into())
    );
    let json_body = send(
        a,
        "POST",
        p,
        &[("Content-Type", "application/json")],
        "{\"grant_type\":\"password\"}",
    )
    .await;
    assert_eq!(json_body.status, 400);
    let in_query = send(a, "POST", &format!("{p}?{INODE_PASSWORD}"), &[FORM], "").await;
    assert_eq!(in_query.status, 400);
    let bad_password = INODE_PASSWORD.replace("password=demo-password", "password=wrong");
    let t = post_form(a, p, &bad_password).await;
    assert_eq!(
        (t.status, t.json()["error"].clone()),
        (400, "invalid_grant".into())
    );
    let t = post_form(
        a,
        p,
        &INODE_PASSWORD.replace("grant_type=password", "grant_type=client_credentials"),
    )
    .await;
    assert_eq!(t.json()["error"], "unsupported_grant_type");
    let t = post_form(a, p, &INODE_PASSWORD.replace("scope=sync", "scope=admin")).await;
    assert_eq!(t.json()["error"], "invalid_scope");
    // HTTP Basic client authentication.
    let basic = base64::engine::general_purpose::STANDARD.encode("demo-client:demo-client-secret");
    let auth = format!("Basic {basic}");
    let t = send(
        a,
        "POST",
        p,
        &[FORM, ("Authorization", &auth)],
        "grant_type=password&username=owner&password=demo-password",
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.text());
    assert_eq!(send(a, "GET", p, &[], "").await.status, 405);
    r.stop().await;
}

#[tokio::test]
async fn inode_api_pagination_api_key_and_expiry() {
    let mut o = SimOptions::new(Profile::Inode);
    o.access_ttl = Duration::from_secs(1);
    o.items = 12;
    let r = start(o).await;
    let a = r.addr;
    let t = post_form(a, "/api/oauth/token/", INODE_PASSWORD)
        .await
        .json();
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let list = get(a, "/api/v1/devices/?no_pagination", Some(&bearer))
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 12);
    let page = get(a, "/api/v1/links/", Some(&bearer)).await.json();
    assert_eq!(page["count"], 12);
    assert_eq!(page["results"].as_array().unwrap().len(), 10);
    assert_eq!(page["next"], format!("http://{a}/api/v1/links/?page=2"));
    assert!(page["previous"].is_null());
    let page2 = get(a, "/api/v1/links/?page=2", Some(&bearer)).await.json();
    assert_eq!(page2["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        get(a, "/api/v1/links/?page=3", Some(&bearer)).await.status,
        404
    );
    assert_eq!(get(a, "/api/v1/links", Some(&bearer)).await.status, 301);

    let key = get(
        a,
        "/api/v1/links/?no_pagination",
        Some("Token demo-api-key"),
    )
    .await;
    assert_eq!(key.status, 200);
    let bad = get(a, "/api/v1/links/?no_pagination", Some("Token wrong")).await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["detail"], "Invalid token.");
    let none = get(a, "/api/v1/links/?no_pagination", None).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.json()["detail"],
        "Authentication credentials were not provided."
    );
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"api\"")
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = get(a, "/api/v1/links/?no_pagination", Some(&bearer)).await;
    assert_eq!(expired.status, 401);
    assert_eq!(r.sim.stats()["unauthorized"], 3);
    r.stop().await;
}

#[tokio::test]
async fn admin_expire_and_revoke() {
    let r = start(SimOptions::new(Profile::Inode)).await;
    let a = r.addr;
    let seed: Value = serde_json::from_str(&r.sim.issue_seed()).unwrap();
    let bearer = format!("Bearer {}", seed["access_token"].as_str().unwrap());
    assert_eq!(
        get(a, "/api/v1/links/?no_pagination", Some(&bearer))
            .await
            .status,
        200
    );
    assert_eq!(
        send(a, "POST", "/_sim/expire?what=access", &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        get(a, "/api/v1/links/?no_pagination", Some(&bearer))
            .await
            .status,
        401
    );
    let refresh = seed["refresh_token"].as_str().unwrap();
    send(a, "POST", "/_sim/revoke", &[], "").await;
    let body = format!("grant_type=refresh_token&refresh_token={refresh}&client_id=demo-client&client_secret=demo-client-secret");
    assert_eq!(post_form(a, "/api/oauth/token/", &body).await.status, 400);
    r.stop().await;
}

fn pkce_pair() -> (String, String) {
    let verifier = "a".repeat(20) + &"B-._~".repeat(6);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The `code` (and `state`) of an approved authorization redirect.
async fn authorize(a: SocketAddr, path: &str, extra: &str) -> Resp {
    get(
        a,
        &format!("{path}?response_type=code&client_id=demo-client&state=xyz{extra}"),
        None,
    )
    .await
}

fn location_param(r: &Resp, key: &str) -> Option<String> {
    let loc = r.header("location")?;
    let url = url::Url::parse(&format!("http://x{}", loc.trim_start_matches("http://x")))
        .or_else(|_| url::Url::parse(loc))
        .ok()?;
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn scinote_authorization_code_with_pkce() {
    let r = start(SimOptions::new(Profile::Scinote)).await;
    let a = r.addr;
    let cb = "http://127.0.0.1:40111/callback";
    let (verifier, challenge) = pkce_pair();
    let extra = format!("&redirect_uri={cb}&code_challenge={challenge}&code_challenge_method=S256");
    // Without approval: a consent page.
    let page = authorize(a, "/oauth/authorize", &extra).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("approve=1"));
    let denied = authorize(a, "/oauth/authorize", &format!("{extra}&deny=1")).await;
    assert_eq!(
        location_param(&denied, "error").as_deref(),
        Some("access_denied")
    );
    let ok = authorize(a, "/oauth/authorize", &format!("{extra}&approve=1")).await;
    assert_eq!(ok.status, 302);
    assert!(ok.header("location").unwrap().starts_with(cb));
    assert_eq!(location_param(&ok, "state").as_deref(), Some("xyz"));
    let code = location_param(&ok, "code").unwrap();

    let exchange = |code: &str, verifier: &str, redirect: &str| {
        format!("grant_type=authorization_code&code={code}&redirect_uri={redirect}&code_verifier={verifier}&client_id=demo-client&client_secret=demo-client-secret")
    };
    let bad = post_form(a, "/oauth/token", &exchange(&code, &"z".repeat(43), cb)).await;
    assert_eq!(
        (bad.status, bad.json()["error"].clone()),
        (400, "invalid_grant".into())
    );
    let wrong_uri = post_form(
        a,
        "/oauth/token",
        &exchange(&code, &verifier, "http://127.0.0.1:1/other"),
    )
    .await;
    assert_eq!(wrong_uri.status, 400);
    let t = post_form(a, "/oauth/token", &exchange(&code, &verifier, cb)).await;
    assert_eq!(t.status, 200, "{}", t.text());
    let t = t.json();
    assert_eq!(t["expires_in"], 7200);
    assert!(t["created_at"].as_i64().unwrap() > 1_600_000_000);
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let projects = get(a, "/api/v1/teams/1/projects", Some(&bearer)).await;
    assert_eq!(projects.status, 200);
    assert_eq!(projects.json()["data"][0]["type"], "projects");
    // A code works once; presenting it again revokes what it gave.
    let again = post_form(a, "/oauth/token", &exchange(&code, &verifier, cb)).await;
    assert_eq!(again.status, 400);
    assert_eq!(
        get(a, "/api/v1/teams/1/projects", Some(&bearer))
            .await
            .status,
        401
    );

    // Out of band: Doorkeeper shows the code on /oauth/authorize/native.
    let oob = authorize(
        a,
        "/oauth/authorize",
        "&redirect_uri=urn:ietf:wg:oauth:2.0:oob&approve=1",
    )
    .await;
    assert_eq!(oob.status, 302);
    let native = get(a, oob.header("location").unwrap(), None).await;
    assert!(native.text().contains("authorization_code"));
    // Unregistered redirect URI: no redirect at all.
    let evil = authorize(
        a,
        "/oauth/authorize",
        "&redirect_uri=http://evil.example/cb&approve=1",
    )
    .await;
    assert_eq!(evil.status, 400);
    r.stop().await;
}

#[tokio::test]
async fn citesphere_parameters_in_query_string() {
    let r = start(SimOptions::new(Profile::Citesphere)).await;
    let a = r.addr;
    let cb = "http://127.0.0.1:8765/callback";
    let target = format!("/api/oauth/authorize?response_type=code&client_id=OAUTHCLIENT007&redirect_uri={cb}&approve=1");
    let ok = get(a, &target, None).await;
    let code = location_param(&ok, "code").unwrap();
    let params = format!("grant_type=authorization_code&code={code}&redirect_uri={cb}&client_id=OAUTHCLIENT007&client_secret=demo-client-secret");
    let form = post_form(a, "/api/v1/oauth/token", &params).await;
    assert_eq!(form.status, 400, "a form body is not read");
    let t = send(a, "POST", &format!("/api/v1/oauth/token?{params}"), &[], "").await;
    assert_eq!(t.status, 200, "{}", t.text());
    let t = t.json();
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["expires_in"], 406);
    assert_eq!(t["access_token"].as_str().unwrap().len(), 36);
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let groups = get(a, "/api/v1/groups", Some(&bearer)).await;
    assert_eq!(groups.status, 200);
    assert_eq!(groups.json().as_array().unwrap().len(), 3);
    let refresh = t["refresh_token"].as_str().unwrap();
    let q = format!("grant_type=refresh_token&refresh_token={refresh}&client_id=OAUTHCLIENT007&client_secret=demo-client-secret");
    let t2 = send(a, "POST", &format!("/api/v1/oauth/token?{q}"), &[], "").await;
    assert_eq!(t2.status, 200);
    assert_ne!(t2.json()["refresh_token"], t["refresh_token"]);
    r.stop().await;
}

#[tokio::test]
async fn bare_token_redirect_and_scheme() {
    let r = start(SimOptions::new(Profile::BareToken)).await;
    let a = r.addr;
    let ok = get(
        a,
        "/authorize/?client_id=demo-client&state=s1&approve=1",
        None,
    )
    .await;
    assert_eq!(ok.status, 302);
    assert!(ok
        .header("location")
        .unwrap()
        .starts_with("http://127.0.0.1:8765/callback?"));
    assert_eq!(location_param(&ok, "state").as_deref(), Some("s1"));
    let token = location_param(&ok, "access_token").unwrap();
    let front = get(a, "/?sort=comments", Some(&token)).await;
    assert_eq!(front.status, 200, "{}", front.text());
    let posts = front.json()["data"].as_array().unwrap().clone();
    let counts: Vec<u64> = posts
        .iter()
        .map(|p| p["comment_count"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(get(a, "/unread", Some(&token)).await.status, 200);
    assert_eq!(
        get(a, "/unread", Some(&format!("Bearer {token}")))
            .await
            .status,
        401
    );
    assert_eq!(get(a, "/unread", None).await.status, 401);
    assert_eq!(
        post_form(a, "/oauth/token", "grant_type=refresh_token")
            .await
            .status,
        404
    );
    let seed: Value = serde_json::from_str(&r.sim.issue_seed()).unwrap();
    assert!(seed.get("refresh_token").is_none() && seed.get("expires_in").is_none());
    r.stop().await;
}

#[tokio::test]
async fn highq_code_only_basic_auth_no_rotation() {
    let r = start(SimOptions::new(Profile::Highq)).await;
    let a = r.addr;
    let p = "/highq/api/oauth2/token";
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("demo-client:demo-client-secret")
    );
    let pw = send(
        a,
        "POST",
        p,
        &[FORM, ("Authorization", &basic)],
        "grant_type=password&username=owner%40example.com&password=demo-password",
    )
    .await;
    assert_eq!(pw.json()["error"], "unsupported_grant_type");
    let cb = "http://127.0.0.1:8765/callback";
    let ok = authorize(
        a,
        "/highq/authorize.action",
        &format!("&redirect_uri={cb}&approve=1"),
    )
    .await;
    let code = location_param(&ok, "code").unwrap();
    let t = send(
        a,
        "POST",
        p,
        &[FORM, ("Authorization", &basic)],
        &format!("grant_type=authorization_code&code={code}&redirect_uri={cb}"),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.text());
    let t = t.json();
    assert_eq!(t["refresh_expires_in"], 2_628_000);
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    let t2 = send(
        a,
        "POST",
        p,
        &[FORM, ("Authorization", &basic)],
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await
    .json();
    assert_eq!(t2["refresh_token"], refresh.as_str());
    let bearer = format!("Bearer {}", t2["access_token"].as_str().unwrap());
    let sites = send(
        a,
        "GET",
        "/highq/api/3/sites",
        &[("Authorization", &bearer), ("Accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(sites.json()["site"].as_array().unwrap().len(), 3);
    let xml = get(a, "/highq/api/3/sites", Some(&bearer)).await;
    assert!(xml.text().starts_with("<?xml"));
    r.stop().await;
}

#[tokio::test]
async fn faults_status_count_and_clear() {
    let r = start(SimOptions::new(Profile::Inode)).await;
    let a = r.addr;
    let f = send(
        a,
        "POST",
        "/_sim/fault?target=token&status=503&retry_after=7&count=2",
        &[],
        "",
    )
    .await;
    assert_eq!(f.status, 200, "{}", f.text());
    for _ in 0..2 {
        let t = post_form(a, "/api/oauth/token/", INODE_PASSWORD).await;
        assert_eq!(t.status, 503);
        assert_eq!(t.header("retry-after"), Some("7"));
    }
    assert_eq!(
        post_form(a, "/api/oauth/token/", INODE_PASSWORD)
            .await
            .status,
        200
    );
    let body = r#"{"target":"api","kind":"html"}"#;
    send(
        a,
        "POST",
        "/_sim/fault",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    let h = get(a, "/api/v1/links/", Some("Token demo-api-key")).await;
    assert_eq!(
        (h.status, h.header("content-type")),
        (200, Some("text/html; charset=utf-8"))
    );
    assert_eq!(
        send(a, "DELETE", "/_sim/fault", &[], "").await.json()["cleared"],
        1
    );
    assert_eq!(
        get(a, "/api/v1/links/", Some("Token demo-api-key"))
            .await
            .header("content-type"),
        Some("application/json")
    );
    let s = r.sim.stats();
    assert_eq!(s["faults"]["triggered"], 3);
    assert_eq!(s["token_requests"]["by_outcome"]["fault"], 2);
    let bad = send(a, "POST", "/_sim/fault?kind=explode", &[], "").await;
    assert_eq!(bad.status, 400);
    r.stop().await;
}

#[tokio::test]
async fn faults_body_shapes() {
    let r = start(SimOptions::new(Profile::Inode)).await;
    let a = r.addr;
    r.sim
        .add_fault("token:no_access_token,count=1".parse().unwrap());
    let t = post_form(a, "/api/oauth/token/", INODE_PASSWORD).await;
    assert_eq!(t.status, 200);
    assert!(t.json().get("access_token").is_none());
    r.sim
        .add_fault("token:invalid_json,count=1".parse().unwrap());
    let t = post_form(a, "/api/oauth/token/", INODE_PASSWORD).await;
    assert!(serde_json::from_slice::<Value>(&t.body).is_err());
    r.sim
        .add_fault("api:big,bytes=100000,count=1".parse().unwrap());
    let b = get(a, "/api/v1/links/", Some("Token demo-api-key")).await;
    assert!(b.body.len() > 100_000);
    assert!(serde_json::from_slice::<Value>(&b.body).is_ok());
    r.stop().await;
}

#[tokio::test]
async fn fault_reset_hang_trickle_delay() {
    let r = start(SimOptions::new(Profile::Inode)).await;
    let a = r.addr;
    r.sim.add_fault("api:reset,count=1".parse().unwrap());
    let req = format!("GET /api/v1/links/ HTTP/1.1\r\nHost: {a}\r\nAuthorization: Token demo-api-key\r\nConnection: close\r\n\r\n");
    assert!(
        raw(a, req.clone().into_bytes()).await.is_err(),
        "reset: no response"
    );
    assert_eq!(raw(a, req.clone().into_bytes()).await.unwrap().status, 200);

    r.sim
        .add_fault("api:trickle,trickle_ms=20,count=1".parse().unwrap());
    let t0 = std::time::Instant::now();
    let resp = raw(a, req.clone().into_bytes()).await.unwrap();
    assert_eq!(resp.status, 200);
    let min = Duration::from_millis(20 * (resp.body.len() as u64 / 2));
    assert!(
        t0.elapsed() >= min,
        "trickled {} bytes in {:?}",
        resp.body.len(),
        t0.elapsed()
    );
    serde_json::from_slice::<Value>(&resp.body).unwrap();

    r.sim
        .add_fault("api:delay,delay_ms=300,count=1".parse().unwrap());
    let t0 = std::time::Instant::now();
    assert_eq!(raw(a, req.clone().into_bytes()).await.unwrap().status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    r.sim.add_fault("api:hang".parse().unwrap());
    let hung = tokio::spawn(raw(a, req.into_bytes()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!hung.is_finished());
    r.stop().await;
    let res = tokio::time::timeout(Duration::from_secs(2), hung)
        .await
        .unwrap()
        .unwrap();
    assert!(res.is_err() || res.unwrap().status == 503);
}

#[tokio::test]
async fn fault_after_processing_loses_the_rotated_token() {
    let r = start(SimOptions::new(Profile::Inode)).await;
    let a = r.addr;
    let seed: Value = serde_json::from_str(&r.sim.issue_seed()).unwrap();
    let refresh = seed["refresh_token"].as_str().unwrap();
    r.sim
        .add_fault("token:502,process,count=1".parse().unwrap());
    let body = format!("grant_type=refresh_token&refresh_token={refresh}&client_id=demo-client&client_secret=demo-client-secret");
    assert_eq!(post_form(a, "/api/oauth/token/", &body).await.status, 502);
    let again = post_form(a, "/api/oauth/token/", &body).await;
    assert_eq!(again.json()["error"], "invalid_grant");
    let s = r.sim.stats();
    assert_eq!(s["valid_refresh_tokens"].as_array().unwrap().len(), 1);
    assert_ne!(s["valid_refresh_tokens"][0], refresh);
    r.stop().await;
}

#[tokio::test]
async fn router_works_without_serve() {
    // Under a plain axum::serve, reset answers 500 instead of closing the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    let sim = Simulator::new(SimOptions::new(Profile::Inode));
    let app = sim.router();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    sim.add_fault("api:reset,count=1".parse().unwrap());
    assert_eq!(
        get(a, "/api/v1/links/", Some("Token demo-api-key"))
            .await
            .status,
        500
    );
    assert_eq!(
        get(a, "/api/v1/links/", Some("Token demo-api-key"))
            .await
            .status,
        200
    );
    task.abort();
}

#[test]
fn fault_spec_text() {
    let f: FaultSpec = "token:429,retry_after=3,count=2".parse().unwrap();
    assert_eq!(
        (f.target, f.kind, f.status, f.retry_after, f.count),
        (FaultTarget::Token, FaultKind::Status, 429, Some(3), Some(2))
    );
    let f: FaultSpec = "api:trickle,trickle_ms=5,seconds=1.5".parse().unwrap();
    assert_eq!(
        (f.kind, f.trickle_ms, f.duration),
        (FaultKind::Trickle, 5, Some(Duration::from_millis(1500)))
    );
    assert!("api".parse::<FaultSpec>().is_err());
    assert!("api:nope".parse::<FaultSpec>().is_err());
    assert!("api:999".parse::<FaultSpec>().is_err());
    let j = fault::from_json(&f.to_json()).unwrap();
    assert_eq!(j, f);
}

#[test]
fn simulate_args_and_example_config() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    let cli = Cli::parse_from([
        "x",
        "--profile",
        "bare-token",
        "--listen",
        "127.0.0.1:0",
        "--access-ttl",
        "20",
        "--no-rotate",
        "--fault",
        "api:503,count=1",
        "--fault",
        "token:hang",
    ]);
    let o = cli.args.options();
    assert_eq!(o.profile, Profile::BareToken);
    assert_eq!(o.access_ttl, Duration::from_secs(20));
    assert_eq!(o.faults.len(), 2);
    for p in [
        Profile::Inode,
        Profile::Scinote,
        Profile::BareToken,
        Profile::Citesphere,
        Profile::Highq,
    ] {
        let c = example_config(
            &SimOptions::new(p),
            "http://127.0.0.1:9/",
            "/tmp/x.db",
            "/tmp/seed.json",
        );
        assert!(c.contains("database = \"/tmp/x.db\""), "{c}");
        assert!(c.contains("[[account.endpoint]]"));
        assert_eq!(c.contains("token_url"), p.has_token_endpoint());
    }
    let c = example_config(
        &SimOptions::new(Profile::Inode),
        "http://127.0.0.1:9",
        "d",
        "s",
    );
    assert!(c.contains("base_url = \"http://127.0.0.1:9/api/\""));
    assert!(c.contains("token_url = \"oauth/token/\""));
    assert!(c.contains("query = { no_pagination = \"\" }"));
    let c = example_config(&SimOptions::new(Profile::Citesphere), "http://h", "d", "s");
    assert!(c.contains("token_request = \"query\""));
}

#[tokio::test]
async fn scinote_jsonapi_and_link_header_pages() {
    let mut o = SimOptions::new(Profile::Scinote);
    o.items = 25;
    let r = start(o).await;
    let a = r.addr;
    let seed: Value = serde_json::from_str(&r.sim.issue_seed()).unwrap();
    let bearer = format!("Bearer {}", seed["access_token"].as_str().unwrap());
    let p = "/api/v1/teams/1/projects";
    let first = get(a, p, Some(&bearer)).await.json();
    assert_eq!(first["data"].as_array().unwrap().len(), 10);
    assert_eq!(
        first["links"]["next"],
        format!("http://{a}{p}?page%5Bnumber%5D=2&page%5Bsize%5D=10")
    );
    let last = get(a, &format!("{p}?page%5Bnumber%5D=3"), Some(&bearer))
        .await
        .json();
    assert_eq!(last["data"].as_array().unwrap().len(), 5);
    assert!(last["links"]["next"].is_null());
    let big = get(a, &format!("{p}?page[size]=30"), Some(&bearer))
        .await
        .json();
    assert_eq!(big["data"].as_array().unwrap().len(), 25);
    let past = get(a, &format!("{p}?page[number]=9"), Some(&bearer))
        .await
        .json();
    assert_eq!(past["data"].as_array().unwrap().len(), 0);
    assert_eq!(
        get(a, &format!("{p}?page[number]=0"), Some(&bearer))
            .await
            .status,
        400
    );
    r.stop().await;

    let mut o = SimOptions::new(Profile::Citesphere);
    o.items = 25;
    o.link_pages = true;
    let r = start(o).await;
    let a = r.addr;
    let seed: Value = serde_json::from_str(&r.sim.issue_seed()).unwrap();
    let bearer = format!("Bearer {}", seed["access_token"].as_str().unwrap());
    let page = get(a, "/api/v1/groups?x=1", Some(&bearer)).await;
    assert_eq!(page.json().as_array().unwrap().len(), 10);
    let link = page.header("link").unwrap().to_string();
    assert!(
        link.starts_with(&format!(
            "<http://{a}/api/v1/groups?x=1&page=2>; rel=\"next\""
        )),
        "{link}"
    );
    let last = get(a, "/api/v1/groups?page=3", Some(&bearer)).await;
    assert_eq!(last.json().as_array().unwrap().len(), 5);
    assert!(!last.header("link").unwrap().contains("rel=\"next\""));
    r.stop().await;
}
