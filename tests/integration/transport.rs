//! Files and transport: file modes, secret files readable by others, http:// to
//! non-loopback hosts, TLS verification, redirects and credentials.

use crate::config_builder::{path, Account, Config, Endpoint};
use crate::util::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A one-purpose HTTP server on loopback: answers every request with `respond(request)`
/// and keeps every request's head.
struct Mini {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Mini {
    fn start(respond: impl Fn(&str) -> String + Send + 'static) -> Mini {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Some(request) = read_request(&mut reader) else {
                    continue;
                };
                let head = request.text();
                let answer = respond(&head);
                log.lock().unwrap().push(head);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Mini { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn api_key_config(dir: &Path, base_url: &str, extra_account: &str) -> std::path::PathBuf {
    Config::new(&dir.join("state.db"))
        .daemon("timeout", "3s")
        .account(
            Account::new("api", base_url)
                .api_key("SECRET-api-key-0123456789")
                .set("header_scheme", "Token")
                .toml(extra_account)
                .endpoint(Endpoint::new("things", "things")),
        )
        .write(&dir.join("config.toml"))
}

/// An OAuth2 account `a` with its API at `base_url` and its token endpoint at `token_url`,
/// seeded with a refresh token: `token a` asks the endpoint once.
fn oauth_config(dir: &Path, base_url: &str, token_url: &str) -> std::path::PathBuf {
    let seed = dir.join("seed.json");
    write_file(&seed, r#"{"refresh_token":"SECRET-refresh-0123456789"}"#);
    let config = dir.join("config.toml");
    write_file(
        &config,
        &Config::new(&dir.join("state.db"))
            .daemon("timeout", "3s")
            .account(
                Account::new("a", base_url)
                    .set("allow_http", true)
                    .seed_file(&seed)
                    .oauth2("token_url", token_url)
                    .oauth2("client_id", "id")
                    .oauth2("client_secret", "SECRET-client-0123456789")
                    .endpoint(Endpoint::new("e", "x")),
            )
            .toml(),
    );
    config
}

const TOKEN_ANSWER: &str =
    r#"{"access_token":"access-0123456789abcdef","token_type":"Bearer","expires_in":3600}"#;

/// The daemon with `config` and `args`, the proxy variables of the test's own environment
/// replaced by `proxies` (and any other variable given there).
fn with_proxies(config: &Path, args: &[&str], proxies: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(config).args(args);
    for name in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
        cmd.env_remove(name).env_remove(name.to_ascii_uppercase());
    }
    cmd.envs(proxies.iter().map(|(k, v)| (k, v)));
    cmd.output().unwrap()
}

#[test]
fn the_database_and_its_wal_and_shm_are_0600_whatever_the_umask() {
    let s = crate::lifecycle::setup(600, "1s", "refresh_token", "");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "umask 000; exec '{}' --config '{}' run",
            bin().display(),
            s.config.display()
        ))
        .stdout(Stdio::null());
    let mut d = Daemon::spawn(cmd);
    d.wait_for("status=200", 2, Duration::from_secs(10));
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", s.db.display());
        let mode = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{p} has mode {mode:o}");
    }
    d.signal(SIGTERM);
    d.wait_exit(Duration::from_secs(10));
}

#[test]
fn secret_and_seed_files_readable_by_others_are_warned_about() {
    let dir = tempdir();
    let secret = dir.path().join("client-secret");
    let seed = dir.path().join("seed.json");
    let config = dir.path().join("config.toml");
    write_file(&secret, "SECRET-client-0123456789\n");
    write_file(
        &seed,
        r#"{"access_token":"SECRET-access-0123456789","refresh_token":"SECRET-refresh-0123456789","expires_in":3600}"#,
    );
    write_file(
        &config,
        &Config::new(&dir.path().join("state.db"))
            .account(
                Account::new("inode", "https://inode.example.com/api/")
                    .seed_file(&seed)
                    .oauth2("token_url", "oauth/token/")
                    .oauth2("client_id", "id")
                    .oauth2("client_secret_file", path(&secret))
                    .endpoint(Endpoint::new("links", "v1/links/")),
            )
            .toml(),
    );
    let out = run(Some(&config), &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("readable by other users"),
        "{}",
        text(&out)
    );
    for f in [&secret, &seed] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = run(Some(&config), &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for f in [&secret, &seed] {
        assert!(
            t.lines()
                .any(|l| l.contains("readable by other users")
                    && l.contains(&f.display().to_string())),
            "{} not warned about:\n{t}",
            f.display()
        );
    }
    assert!(!t.contains("SECRET-"), "{t}");
}

#[test]
fn http_is_refused_for_a_non_loopback_host_unless_allow_http() {
    let dir = tempdir();
    for (base, token_url, key) in [
        (
            "http://api.example.com/",
            "https://auth.example.com/token",
            "base_url",
        ),
        (
            "https://api.example.com/",
            "http://auth.example.com/token",
            "token_url",
        ),
    ] {
        let config = dir.path().join("config.toml");
        let body = |allow_http: bool| {
            let mut account = Account::new("a", base)
                .oauth2("token_url", token_url)
                .oauth2("client_id", "id")
                .oauth2("client_auth", "none")
                .endpoint(Endpoint::new("e", "x"));
            if allow_http {
                account = account.set("allow_http", true);
            }
            Config::new(&dir.path().join("state.db"))
                .account(account)
                .write(&config)
        };
        body(false);
        let out = run(Some(&config), &["check"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let t = text(&out);
        assert!(
            t.contains("http:// is refused")
                && t.contains(&config.display().to_string())
                && t.contains(key),
            "{t}"
        );
        let prefix = format!("{}:", config.display());
        let line_follows = t
            .match_indices(&prefix)
            .any(|(i, _)| t[i + prefix.len()..].starts_with(|c: char| c.is_ascii_digit()));
        assert!(line_follows, "names the file and the line: {t}");
        body(true);
        let out = run(Some(&config), &["check"]);
        assert!(out.status.success(), "allow_http = true: {}", text(&out));
    }
    assert!(
        !dir.path().join("state.db").exists(),
        "check touches nothing"
    );
}

/// An HTTPS server on loopback answering `[1, 2]`, its certificate for 127.0.0.1 and
/// `api.invalid` signed by a private CA unknown to the system: (server, port, the CA's PEM).
fn tls_server(dir: &Path) -> (std::process::Child, u16, std::path::PathBuf) {
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    // A private CA and a server certificate it signed: unknown to the system's roots.
    let script = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=oauth-poller-test-ca -keyout ca.key -out ca.pem
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr
printf 'subjectAltName=IP:127.0.0.1,DNS:api.invalid\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile leaf.ext -out cert.pem
"#;
    let status = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let server = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'[1, 2]'
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        sys.stderr.write('request\n')
s = http.server.HTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", server])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    (child, port.trim().parse().unwrap(), ca)
}

#[test]
fn tls_certificates_are_verified() {
    let dir = tempdir();
    let (mut child, port, ca) = tls_server(dir.path());
    let base = format!("https://127.0.0.1:{port}/");
    let config = api_key_config(dir.path(), &base, "");

    // A certificate from a CA the system does not trust: refused.
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("poll-once")
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.to_lowercase().contains("certificate"), "{t}");
    // The same server, its certificate trusted: the poll works (the refusal was the
    // certificate, not the server).
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("poll-once")
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "trusted: {}", text(&out));
}

#[test]
fn token_endpoint_redirects_are_not_followed() {
    let elsewhere = Mini::start(|_| {
        answer(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"{"access_token":"stolen-0123456789abcdef","expires_in":3600}"#,
        )
    });
    let target = format!("http://localhost:{}/token", elsewhere.port);
    let token = Mini::start(move |_| {
        answer(
            "307 Temporary Redirect",
            &format!("Location: {target}\r\n"),
            "",
        )
    });
    let dir = tempdir();
    let base = format!("http://127.0.0.1:{}/", token.port);
    let config = oauth_config(dir.path(), &base, &format!("{base}token"));
    let out = run(Some(&config), &["token", "a"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("307"), "{t}");
    assert_eq!(token.requests().len(), 1, "{:?}", token.requests());
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.requests()
    );
    assert!(!t.contains("SECRET-"), "{t}");
}

#[test]
fn api_redirects_stay_on_the_origin_and_carry_no_credential_elsewhere() {
    let elsewhere = Mini::start(|_| answer("200 OK", "Content-Type: application/json\r\n", "[]"));
    let other = elsewhere.port;
    let api = Mini::start(move |req| {
        let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
        match path.as_str() {
            "/things" => answer(
                "302 Found",
                &format!("Location: http://localhost:{other}/things\r\n"),
                "",
            ),
            "/moved" => answer("301 Moved Permanently", "Location: /final\r\n", ""),
            _ => answer("200 OK", "Content-Type: application/json\r\n", "[1]"),
        }
    });
    let dir = tempdir();
    let config = api_key_config(dir.path(), &format!("http://127.0.0.1:{}/", api.port), "");
    let out = run(Some(&config), &["poll-once"]);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a redirect to another host fails: {t}"
    );
    assert!(t.contains("status=302"), "{t}");
    assert!(
        elsewhere.requests().is_empty(),
        "a request went to another host: {:?}",
        elsewhere.requests()
    );
    // Within one origin a redirect is followed, with the credential.
    edit_config(&config, "path = \"things\"", "path = \"moved\"");
    let out = run(Some(&config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let final_requests: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /final"))
        .collect();
    assert_eq!(final_requests.len(), 1, "{:?}", api.requests());
    assert!(
        final_requests[0]
            .to_ascii_lowercase()
            .contains("authorization: token secret-api-key-0123456789"),
        "{}",
        final_requests[0]
    );
}

#[test]
fn api_polls_go_through_the_proxy_the_environment_names() {
    // The proxy is the only way to `api.invalid`: the poll succeeds only through it.
    let proxy = Mini::start(|_| answer("200 OK", "Content-Type: application/json\r\n", "[1,2]"));
    let dir = tempdir();
    let config = api_key_config(dir.path(), "http://api.invalid:9/", "allow_http = true");
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("poll-once")
        .env("HTTP_PROXY", format!("http://127.0.0.1:{}", proxy.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET http://api.invalid:9/things ")),
        "{requests:?}"
    );
}

#[test]
fn token_requests_go_through_the_proxy_the_environment_names() {
    // A regression guard: token requests went through the environment's proxy before the
    // HTTP stacks were one (over reqwest), and must still.
    let proxy =
        Mini::start(|_| answer("200 OK", "Content-Type: application/json\r\n", TOKEN_ANSWER));
    let dir = tempdir();
    let config = oauth_config(
        dir.path(),
        "http://api.invalid:9/",
        "http://auth.invalid:9/token",
    );
    let url = format!(
        "http://proxyuser:SECRET-proxy-0123@127.0.0.1:{}",
        proxy.port
    );
    let out = with_proxies(&config, &["token", "a"], &[("HTTP_PROXY", url)]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert!(
        request.starts_with("POST http://auth.invalid:9/token "),
        "{request}"
    );
    assert!(request.contains("grant_type=refresh_token"), "{request}");
    // The proxy's credentials from its URL, as Basic (proxyuser:SECRET-proxy-0123).
    assert!(
        request
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic chjvehl1c2vyolnfq1jfvc1wcm94es0wmtiz"),
        "{request}"
    );
    assert!(!t.contains("SECRET-"), "{t}");
}

#[test]
fn loopback_is_never_proxied_neither_polls_nor_token_requests() {
    // A regression guard: the old reqwest clients were given the same rule by hand.
    let proxy = Mini::start(|_| answer("502 Bad Gateway", "", ""));
    let api = Mini::start(|req| match req.starts_with("POST /token ") {
        true => answer("200 OK", "Content-Type: application/json\r\n", TOKEN_ANSWER),
        false => answer("200 OK", "Content-Type: application/json\r\n", "[1]"),
    });
    let dir = tempdir();
    let config = oauth_config(
        dir.path(),
        &format!("http://127.0.0.1:{}/", api.port),
        &format!("http://localhost:{}/token", api.port),
    );
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let proxies = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"].map(|k| (k, url.clone()));
    let out = with_proxies(&config, &["poll-once"], &proxies);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        proxy.requests().is_empty(),
        "loopback went through the proxy: {:?}",
        proxy.requests()
    );
    let seen: Vec<String> = api
        .requests()
        .iter()
        .map(|r| r.lines().next().unwrap_or("").to_string())
        .collect();
    assert!(
        seen.iter().any(|l| l.starts_with("POST /token ")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l.starts_with("GET /x ")), "{seen:?}");
}

#[test]
fn a_redirect_loop_ends_the_same_way_through_a_proxy_as_directly() {
    // One redirect rule for every route: five same-origin redirects followed, then the poll
    // fails saying so. (Before, the proxied route returned the sixth 302 as the answer.)
    let looping = || Mini::start(|_| answer("302 Found", "Location: /again\r\n", ""));
    let direct = looping();
    let dir = tempdir();
    let config = api_key_config(
        dir.path(),
        &format!("http://127.0.0.1:{}/", direct.port),
        "",
    );
    let out = with_proxies(&config, &["poll-once"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("more than 5 redirects"), "directly: {t}");
    assert_eq!(direct.requests().len(), 6, "{:?}", direct.requests());

    let proxy = looping();
    let dir = tempdir();
    let config = api_key_config(dir.path(), "http://api.invalid:9/", "allow_http = true");
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let out = with_proxies(&config, &["poll-once"], &[("HTTP_PROXY", url)]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("more than 5 redirects"),
        "through the proxy: {t}"
    );
    let requests = proxy.requests();
    assert_eq!(requests.len(), 6, "{requests:?}");
    assert!(
        requests[5].starts_with("GET http://api.invalid:9/again "),
        "{requests:?}"
    );
}

#[test]
fn https_polls_tunnel_through_the_proxy_the_environment_names() {
    // A regression guard for the CONNECT tunnel (reqwest made it before the HTTP stacks were
    // one): the only way to `api.invalid` is the tunnel, and TLS is verified end to end.
    let dir = tempdir();
    let (mut server, server_port, ca) = tls_server(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let connects = Arc::new(Mutex::new(Vec::new()));
    let seen = connects.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut client) = stream else { continue };
            let mut reader = BufReader::new(client.try_clone().unwrap());
            let Some(request) = read_request(&mut reader) else {
                continue;
            };
            seen.lock().unwrap().push(request.head.clone());
            let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                continue;
            };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut reader, &mut up_write);
            });
            let _ = std::io::copy(&mut up_read, &mut client);
        }
    });
    let config = api_key_config(dir.path(), "https://api.invalid:8443/", "");
    let env = [
        ("HTTPS_PROXY", format!("http://127.0.0.1:{proxy_port}")),
        ("SSL_CERT_FILE", ca.display().to_string()),
    ];
    let out = with_proxies(&config, &["poll-once"], &env);
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}", text(&out));
    let connects = connects.lock().unwrap().clone();
    assert!(
        connects
            .iter()
            .any(|h| h.starts_with("CONNECT api.invalid:8443 HTTP/1.1")),
        "{connects:?}"
    );
}
