//! Whole collections, not first pages: each vendor's pagination followed to the end, joined
//! into one stored document, and the safety rules for next links (another origin, a loop, a
//! failing page, `max_pages`).

use crate::config_builder::{Account, Config, Endpoint};
use crate::util::*;
use oauth_poller_sim::{example_config, Profile, SimOptions};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request a [`Scripted`] server received.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
    peer: SocketAddr,
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, extra headers, JSON body.
type Reply = (u16, Vec<(String, String)>, String);
type Script = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// A loopback HTTP/1.1 server (keep-alive) that answers from a script and records every
/// request with its headers: the script gets the request target and how many requests
/// for it came before.
struct Scripted {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn start(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let (log, script) = (log.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &log, &*script));
            }
        });
        Scripted { addr, seen }
    }

    fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<Seen>>, script: &Script) {
    let peer = conn.peer_addr().unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let target = request.target().to_string();
        let headers: Vec<(String, String)> = request
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let before = {
            let mut l = log.lock().unwrap();
            let n = l.iter().filter(|s| s.target == target).count();
            l.push(Seen {
                target: target.clone(),
                headers,
                peer,
                at: Instant::now(),
            });
            n
        };
        let (status, extra, body) = script(&target, before);
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if out.write_all(head.as_bytes()).is_err() || out.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

const KEY: &str = "SECRET-api-key-pagination";

/// An API-key account on `base` with one endpoint `list` at `path`; `extra` goes into the
/// endpoint table (e.g. `max_pages = 2`).
fn api_key_config(dir: &Path, base: &str, path: &str, extra: &str) -> (PathBuf, PathBuf) {
    let db = dir.join("state.db");
    let config = Config::polling(&db, "1s", "5s")
        .daemon("store_bodies", "all")
        .account(
            Account::new("api", base)
                .api_key(KEY)
                .set("header_scheme", "Token")
                .endpoint(Endpoint::new("list", path).toml(extra)),
        )
        .write(&dir.join("config.toml"));
    (config, db)
}

/// The one row of a `poll-once`: (status, items, pages, partial, error, body).
type Row = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<String>,
    Option<String>,
);

fn rows(db: &Path) -> Vec<Row> {
    let c = db_conn(db);
    let mut st = c
        .prepare("SELECT status, items, pages, partial, error, body FROM polls ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn db_conn(db: &Path) -> rusqlite::Connection {
    crate::util::db(db)
}

/// DRF pages of `n` items, `size` a page, as `/items/?page=N` with absolute next links.
fn drf(base: &str, n: usize, size: usize, target: &str) -> Reply {
    let page: usize = target
        .split("page=")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let pages = n.div_ceil(size);
    let items: Vec<String> = ((page - 1) * size + 1..=(page * size).min(n))
        .map(|i| format!("{{\"id\":{i}}}"))
        .collect();
    let next = if page < pages {
        format!("\"{base}/items/?page={}\"", page + 1)
    } else {
        "null".into()
    };
    (
        200,
        vec![],
        format!(
            "{{\"count\":{n},\"next\":{next},\"previous\":null,\"results\":[{}]}}",
            items.join(",")
        ),
    )
}

/// The simulator of `profile` with `items` items, seeded, and its own example configuration
/// (plus `extra_endpoint` appended): (sim, dir, config, db).
fn sim_setup(
    mut opts: SimOptions,
    items: usize,
    extra_endpoint: &str,
) -> (Sim, tempfile::TempDir, PathBuf, PathBuf) {
    opts.items = items;
    opts.access_ttl = Duration::from_secs(3600);
    let sim = Sim::start(opts.clone());
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let seed = dir.path().join("seed.json");
    write_file(&seed, &sim.sim.issue_seed());
    let mut cfg = example_config(
        &opts,
        &format!("http://{}", sim.addr),
        &db.display().to_string(),
        &seed.display().to_string(),
    );
    cfg.push_str(extra_endpoint);
    let config = dir.path().join("config.toml");
    write_file(&config, &cfg);
    (sim, dir, config, db)
}

fn poll_once(config: &Path) -> String {
    let out = run(Some(config), &["poll-once"]);
    text(&out)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("stored body is not JSON: {e}: {body}"))
}

#[test]
fn drf_pages_make_one_collection_in_one_row_and_one_line() {
    let extra = "\n[[account.endpoint]]\nname = \"paged\"\npath = \"v1/links/\"\n";
    let (_sim, _dir, config, db) = sim_setup(SimOptions::new(Profile::Inode), 25, extra);
    let log = poll_once(&config);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" poll account=inode endpoint=paged"))
        .collect();
    assert_eq!(lines.len(), 1, "one log line for the collection:\n{log}");
    assert!(
        lines[0].contains("items=25") && lines[0].contains("pages=3"),
        "{log}"
    );
    let c = db_conn(&db);
    let (items, pages, partial, body): (i64, i64, bool, String) = c
        .query_row(
            "SELECT items, pages, partial, body FROM polls WHERE endpoint = 'paged'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((items, pages, partial), (25, 3, false));
    let v = json(&body);
    let ids: Vec<i64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=25).collect::<Vec<_>>(), "every page, in order");
    assert!(v["next"].is_null(), "{v}");
    assert_eq!(v["count"], 25);
    // The endpoints polled with `?no_pagination` are one page, as before.
    let unpaged: i64 = c
        .query_row(
            "SELECT pages FROM polls WHERE endpoint = 'links'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unpaged, 1);
}

#[test]
fn scinote_jsonapi_pages_are_followed() {
    let (sim, _dir, config, db) = sim_setup(SimOptions::new(Profile::Scinote), 25, "");
    let log = poll_once(&config);
    assert!(log.contains("items=25") && log.contains("pages=3"), "{log}");
    let r = rows(&db);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].1, r[0].2), (Some(25), Some(3)), "{r:?}");
    let v = json(r[0].5.as_deref().unwrap());
    assert_eq!(v["data"].as_array().unwrap().len(), 25);
    assert_eq!(v["data"][24]["id"], "25");
    assert!(v["links"]["next"].is_null(), "{v}");
    assert_eq!(sim.stats()["api_requests"]["total"], 3, "{}", sim.stats());
}

#[test]
fn link_header_pages_are_followed() {
    let mut opts = SimOptions::new(Profile::Citesphere);
    opts.link_pages = true;
    let (_sim, _dir, config, db) = sim_setup(opts, 25, "");
    let log = poll_once(&config);
    assert!(log.contains("items=25") && log.contains("pages=3"), "{log}");
    let r = rows(&db);
    assert_eq!((r[0].1, r[0].2), (Some(25), Some(3)), "{r:?}");
    let v = json(r[0].5.as_deref().unwrap());
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1001..=1025).collect::<Vec<_>>());
}

#[test]
fn paginate_none_keeps_the_first_page_as_it_is() {
    let extra =
        "\n[[account.endpoint]]\nname = \"paged\"\npath = \"v1/links/\"\npaginate = \"none\"\n";
    let (_sim, _dir, config, db) = sim_setup(SimOptions::new(Profile::Inode), 25, extra);
    poll_once(&config);
    let (items, pages, body): (i64, i64, String) = db_conn(&db)
        .query_row(
            "SELECT items, pages, body FROM polls WHERE endpoint = 'paged'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((items, pages), (10, 1));
    assert!(json(&body)["next"].as_str().unwrap().ends_with("page=2"));
}

#[test]
fn a_next_link_to_another_origin_is_refused_and_gets_no_credentials() {
    // The other origin: same host, another port (the origin is scheme, host and port).
    let other = Scripted::start(|_, _| (200, vec![], "[]".into()));
    let next = other.url("/items/?page=2");
    let api = Scripted::start(move |_, _| {
        (
            200,
            vec![("Link".into(), format!("<{next}>; rel=\"next\""))],
            "[{\"id\":1}]".into(),
        )
    });
    let dir = tempdir();
    let (config, db) = api_key_config(dir.path(), &api.url("/"), "items/", "");
    let out = run(Some(&config), &["poll-once"]);
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    let r = rows(&db);
    let error = r[0].4.as_deref().unwrap_or("");
    assert!(
        error.contains("page 2") && error.contains("another origin"),
        "{r:?}"
    );
    assert!(r[0].5.is_none(), "nothing stored: {r:?}");
    assert_eq!(
        other.seen().len(),
        0,
        "the other origin got no request at all"
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Token {KEY}").as_str())
    );
    assert!(!log.contains(KEY), "{log}");
}

#[test]
fn a_next_link_already_visited_is_a_loop_and_fails_the_poll() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let api = Scripted::start(move |target, _| {
        let base = b.lock().unwrap().clone();
        // Page 2 sends the client back to page 1.
        let next = if target.contains("page=2") {
            format!("{base}/items/")
        } else {
            format!("{base}/items/?page=2")
        };
        (
            200,
            vec![],
            format!("{{\"count\":4,\"next\":\"{next}\",\"previous\":null,\"results\":[1,2]}}"),
        )
    });
    *base.lock().unwrap() = api.url("");
    let dir = tempdir();
    let (config, db) = api_key_config(dir.path(), &api.url("/"), "items/", "");
    let out = run(Some(&config), &["poll-once"]);
    assert!(!out.status.success(), "{}", text(&out));
    let r = rows(&db);
    let error = r[0].4.as_deref().unwrap_or("");
    assert!(error.contains("page 3") && error.contains("loop"), "{r:?}");
    assert!(r[0].5.is_none(), "{r:?}");
    assert_eq!(api.seen().len(), 2, "page 1 and page 2, then stop");
}

#[test]
fn a_failing_middle_page_fails_the_poll_naming_the_page() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let fail = Arc::new(Mutex::new(false));
    let f = fail.clone();
    let api = Scripted::start(move |target, _| {
        if target.contains("page=2") && *f.lock().unwrap() {
            return (500, vec![], "{\"detail\":\"boom\"}".into());
        }
        drf(&b.lock().unwrap(), 25, 10, target)
    });
    *base.lock().unwrap() = api.url("");
    let dir = tempdir();
    let hook_out = dir.path().join("hook.out");
    let hook = format!(
        "on_change = [\"sh\", \"-c\", \"cat >> {}\"]",
        hook_out.display()
    );
    let (config, db) = api_key_config(dir.path(), &api.url("/"), "items/", &hook);
    let mut d = Daemon::start(&config, &[]);
    d.wait_for("items=25", 1, Duration::from_secs(10));
    *fail.lock().unwrap() = true;
    d.wait_for("page 2: HTTP 500", 1, Duration::from_secs(10));
    d.signal(SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    let c = db_conn(&db);
    let failed: (Option<i64>, Option<String>, Option<String>, Option<String>) = c
        .query_row(
            "SELECT status, error, body, body_hash FROM polls WHERE error IS NOT NULL LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(failed.0, Some(500));
    assert_eq!(failed.1.as_deref(), Some("page 2: HTTP 500"));
    assert!(
        failed.2.is_none() && failed.3.is_none(),
        "no partial body: {failed:?}"
    );
    // The last good collection is still the one change detection compares with.
    let hashes: i64 = c
        .query_row(
            "SELECT COUNT(DISTINCT body_hash) FROM polls WHERE body_hash IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hashes, 1);
    std::thread::sleep(Duration::from_millis(300));
    let hook_runs = std::fs::read_to_string(&hook_out).unwrap_or_default();
    assert_eq!(
        json(&hook_runs)["results"].as_array().unwrap().len(),
        25,
        "on_change ran once, with the whole collection"
    );
}

#[test]
fn max_pages_stores_what_was_fetched_as_partial_with_a_warning() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let api = Scripted::start(move |target, _| drf(&b.lock().unwrap(), 25, 10, target));
    *base.lock().unwrap() = api.url("");
    let dir = tempdir();
    let (config, db) = api_key_config(dir.path(), &api.url("/"), "items/", "max_pages = 2");
    let out = run(Some(&config), &["poll-once"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(" poll account=api"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(" WARN ") && line.contains("partial=true") && line.contains("max_pages"),
        "{line}"
    );
    let r = rows(&db);
    assert_eq!((r[0].1, r[0].2, r[0].3), (Some(20), Some(2), Some(true)));
    let v = json(r[0].5.as_deref().unwrap());
    assert_eq!(v["results"].as_array().unwrap().len(), 20);
    assert_eq!(
        v["next"],
        api.url("/items/?page=3"),
        "the stored document says where it stops"
    );
    assert_eq!(api.seen().len(), 2, "page 3 is not requested");
    // `history` says so too, and how many pages it holds.
    let out = run(Some(&config), &["history"]);
    let h = text(&out);
    assert!(
        h.contains("items=20 pages=2 partial (max_pages reached)"),
        "{h}"
    );
    let out = run(Some(&config), &["history", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let poll = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "poll")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        (poll["pages"].as_i64(), poll["partial"].as_bool()),
        (Some(2), Some(true))
    );
}

#[test]
fn retry_after_between_pages_is_honoured_on_the_same_connection() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let api = Scripted::start(move |target, before| {
        if target.contains("page=2") && before == 0 {
            return (
                429,
                vec![("Retry-After".into(), "1".into())],
                "{\"detail\":\"slow down\"}".into(),
            );
        }
        drf(&b.lock().unwrap(), 25, 10, target)
    });
    *base.lock().unwrap() = api.url("");
    let dir = tempdir();
    let (config, db) = api_key_config(dir.path(), &api.url("/"), "items/", "");
    let out = run(Some(&config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let seen = api.seen();
    let page2: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.contains("page=2"))
        .collect();
    assert_eq!(page2.len(), 2, "page 2 asked for again: {seen:?}");
    let r = rows(&db);
    assert_eq!((r[0].1, r[0].2), (Some(25), Some(3)), "{r:?}");
    assert!(
        page2[1].at - page2[0].at >= Duration::from_millis(950),
        "waited for Retry-After"
    );
    assert!(
        seen.iter().all(|s| s.peer == seen[0].peer),
        "one connection for every page: {seen:?}"
    );
    assert!(seen
        .iter()
        .all(|s| s.header("authorization") == Some(&format!("Token {KEY}"))));
}

#[test]
fn pagination_keys_are_checked() {
    let dir = tempdir();
    let good = "paginate = \"drf\"\nmax_pages = 5";
    let (config, db) = api_key_config(dir.path(), "http://127.0.0.1:9/", "items/", good);
    let out = run(Some(&config), &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    for (bad, want) in [
        ("max_pages = 0", "must be between 1 and 10000"),
        ("max_pages = 10001", "must be between 1 and 10000"),
        ("paginate = \"cursor\"", "`auto`, `none`, `jsonapi`, `drf`"),
    ] {
        let (config, _) = api_key_config(dir.path(), "http://127.0.0.1:9/", "items/", bad);
        let out = run(Some(&config), &["check"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {t}");
        let name = config.display().to_string();
        let key = bad.split(' ').next().unwrap();
        let line = std::fs::read_to_string(&config)
            .unwrap()
            .lines()
            .position(|l| l.starts_with(key))
            .unwrap()
            + 1;
        assert!(
            t.contains(&format!("{name}:{line}:")),
            "{bad}: file and line: {t}"
        );
        assert!(
            t.contains("max_pages") || t.contains("paginate"),
            "{bad}: key: {t}"
        );
        assert!(t.contains(want), "{bad}: {t}");
    }
    assert!(!db.exists(), "check touches no store");
}

/// Against the real django-oauth-toolkit + DRF fixture: `v1/measurements/` pages 25 rows by
/// 10 (DRF's PageNumberPagination), polled without `no_pagination`.
#[test]
fn django_rest_framework_pages_over_the_real_server() {
    if !require(Need::Django) {
        return;
    }
    let dj = Django::start(3600);
    let dir = tempdir();
    let db = dir.path().join("state.db");
    let config = dir.path().join("config.toml");
    write_file(
        &config,
        &Config::polling(&db, "1s", "10s")
            .account(
                crate::django::inode_account(&dj, dir.path())
                    .endpoint(Endpoint::new("measurements", "v1/measurements/")),
            )
            .toml(),
    );
    let out = run(Some(&config), &["poll-once"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" poll account="))
        .collect();
    assert_eq!(lines.len(), 1, "one log line:\n{log}");
    assert!(
        lines[0].contains("items=25") && lines[0].contains("pages=3"),
        "{log}"
    );
    let r = rows(&db);
    assert_eq!(r.len(), 1, "one row: {r:?}");
    assert_eq!((r[0].0, r[0].1, r[0].2), (Some(200), Some(25), Some(3)));
    let first = json(r[0].5.as_deref().unwrap());
    assert_eq!(first["results"].as_array().unwrap().len(), 25);
    assert_eq!(first["results"][24]["value"], 124);

    // A new reading on page 3: the next poll sees the collection changed.
    let d = Daemon::start(&config, &[]);
    d.wait_for("changed=false", 1, Duration::from_secs(20));
    let touch = dj
        .get("base_url")
        .replace("/api/", "/_test/measurements/25/touch");
    http_get(&touch);
    d.wait_for("changed=true", 1, Duration::from_secs(20));
    drop(d);
    let body: String = db_conn(&db)
        .query_row(
            "SELECT body FROM polls WHERE changed = 1 ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let changed = json(&body);
    assert_eq!(changed["results"][24]["value"], 125, "{changed}");
    assert_eq!(changed["count"], 25);
    let partial_or_failed: i64 = db_conn(&db)
        .query_row(
            "SELECT COUNT(*) FROM polls WHERE error IS NOT NULL OR pages <> 3 OR items <> 25",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(partial_or_failed, 0);
}

#[test]
fn max_body_bounds_the_whole_collection() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    // Three pages of about 300 bytes each, with max_body 700: page 3 is one too many.
    let api = Scripted::start(move |target, _| drf(&b.lock().unwrap(), 75, 25, target));
    *base.lock().unwrap() = api.url("");
    let dir = tempdir();
    let (config, db) = api_key_config(dir.path(), &api.url("/"), "items/", "");
    let text_ = std::fs::read_to_string(&config).unwrap().replace(
        "store_bodies = \"all\"",
        "store_bodies = \"all\"\nmax_body = 700",
    );
    write_file(&config, &text_);
    let out = run(Some(&config), &["poll-once"]);
    assert!(!out.status.success(), "{}", text(&out));
    let r = rows(&db);
    assert_eq!(
        r[0].4.as_deref(),
        Some("page 3: the pages add up to more than max_body (700 bytes): cut off"),
        "{r:?}"
    );
    assert!(r[0].5.is_none(), "{r:?}");
}

#[test]
fn a_401_in_the_middle_of_a_collection_refreshes_once_and_asks_for_that_page_again() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let api = Scripted::start(move |target, before| {
        if target == "/token" {
            return (
                200,
                vec![],
                r#"{"access_token":"ACCESS-2","token_type":"Bearer","expires_in":3600,"refresh_token":"REFRESH-2"}"#.into(),
            );
        }
        // The first token is revoked between page 1 and page 2.
        if target.contains("page=2") && before == 0 {
            return (401, vec![], "{\"detail\":\"revoked\"}".into());
        }
        drf(&b.lock().unwrap(), 25, 10, target)
    });
    *base.lock().unwrap() = api.url("");
    let dir = tempdir();
    let seed = dir.path().join("seed.json");
    write_file(
        &seed,
        r#"{"access_token":"ACCESS-1","token_type":"Bearer","expires_in":3600,"refresh_token":"REFRESH-1"}"#,
    );
    let db = dir.path().join("state.db");
    let config = dir.path().join("config.toml");
    write_file(
        &config,
        &Config::new(&db)
            .daemon("timeout", "5s")
            .account(
                Account::new("api", &api.url("/"))
                    .seed_file(&seed)
                    .oauth2("token_url", "token")
                    .oauth2("client_id", "id")
                    .oauth2("client_secret", "secret")
                    .oauth2("client_auth", "body")
                    .endpoint(Endpoint::new("list", "items/")),
            )
            .toml(),
    );
    let out = run(Some(&config), &["poll-once"]);
    assert!(out.status.success(), "{}", text(&out));
    let seen = api.seen();
    let auth: Vec<(String, Option<String>)> = seen
        .iter()
        .map(|s| {
            (
                s.target.clone(),
                s.header("authorization").map(String::from),
            )
        })
        .collect();
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    assert_eq!(
        auth,
        vec![
            ("/items/".to_string(), bearer("ACCESS-1")),
            ("/items/?page=2".to_string(), bearer("ACCESS-1")),
            ("/token".to_string(), None),
            ("/items/?page=2".to_string(), bearer("ACCESS-2")),
            ("/items/?page=3".to_string(), bearer("ACCESS-2")),
        ],
        "one refresh, then the same page again and on to the end"
    );
    let r = rows(&db);
    assert_eq!((r[0].1, r[0].2), (Some(25), Some(3)), "{r:?}");
    let t = text(&out);
    assert!(!t.contains("ACCESS-") && !t.contains("REFRESH-"), "{t}");
}
