//! The configuration a test writes, built from what the test cares about: `[daemon]`, its
//! `[[account]]`s with their `[account.oauth2]` or `[account.api_key]` and
//! `[[account.endpoint]]`s. Rendered with the `toml` crate, so quoting is never hand-made.
//! Tests about the exact text (the bad-input corpus, the examples, the docs) keep literals.
//! The benchmark (benches/daemon.rs) includes this file too.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// A whole configuration file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    daemon: Table,
    accounts: Vec<Account>,
}

impl Config {
    /// `[daemon] database = DB`.
    pub fn new(db: &Path) -> Config {
        Config::default().daemon("database", path(db))
    }

    /// `[daemon]` with the database, the poll interval and the request timeout.
    pub fn polling(db: &Path, interval: &str, timeout: &str) -> Config {
        Config::new(db)
            .daemon("interval", interval)
            .daemon("timeout", timeout)
    }

    /// A `[daemon]` key.
    pub fn daemon(mut self, key: &str, value: impl Into<Value>) -> Config {
        self.daemon.insert(key.into(), value.into());
        self
    }

    /// `[daemon]` keys given as TOML text (`""` adds nothing): for tests whose variants
    /// differ by a line.
    pub fn daemon_toml(mut self, text: &str) -> Config {
        merge(&mut self.daemon, text);
        self
    }

    pub fn account(mut self, account: Account) -> Config {
        self.accounts.push(account);
        self
    }

    /// The configuration as TOML text.
    pub fn toml(&self) -> String {
        // Two documents, so that `[daemon]` comes first whatever order the table keeps.
        let mut daemon = Table::new();
        daemon.insert("daemon".into(), Value::Table(self.daemon.clone()));
        let mut accounts = Table::new();
        if !self.accounts.is_empty() {
            let list = self.accounts.iter().map(Account::table).collect();
            accounts.insert("account".into(), Value::Array(list));
        }
        let render = |t: &Table| toml::to_string(t).expect("a configuration renders as TOML");
        format!("{}\n{}", render(&daemon), render(&accounts))
    }

    /// Writes it to `path` (mode 0600, as secrets in it require) and returns `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        // Not util::write_file: the benchmark includes this module without the test helpers.
        std::fs::write(path, self.toml()).expect("write the configuration");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the configuration");
        path.to_path_buf()
    }
}

/// One `[[account]]`.
#[derive(Clone, Debug)]
pub struct Account {
    keys: Table,
    oauth2: Option<Table>,
    api_key: Option<Table>,
    endpoints: Vec<Endpoint>,
}

impl Account {
    pub fn new(name: &str, base_url: &str) -> Account {
        let mut keys = Table::new();
        keys.insert("name".into(), name.into());
        keys.insert("base_url".into(), base_url.into());
        Account {
            keys,
            oauth2: None,
            api_key: None,
            endpoints: Vec::new(),
        }
    }

    /// An account key.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Account {
        self.keys.insert(key.into(), value.into());
        self
    }

    /// Account keys given as TOML text (`""` adds nothing).
    pub fn toml(mut self, text: &str) -> Account {
        merge(&mut self.keys, text);
        self
    }

    /// `seed_file = PATH`.
    pub fn seed_file(self, seed: &Path) -> Account {
        self.set("seed_file", path(seed))
    }

    /// A key of `[account.oauth2]`.
    pub fn oauth2(mut self, key: &str, value: impl Into<Value>) -> Account {
        self.oauth2
            .get_or_insert_with(Table::new)
            .insert(key.into(), value.into());
        self
    }

    /// `auth = "api_key"` with `[account.api_key] key = KEY`.
    pub fn api_key(mut self, key: &str) -> Account {
        self.api_key
            .get_or_insert_with(Table::new)
            .insert("key".into(), key.into());
        self.set("auth", "api_key")
    }

    pub fn endpoint(mut self, endpoint: Endpoint) -> Account {
        self.endpoints.push(endpoint);
        self
    }

    fn table(&self) -> Value {
        let mut t = self.keys.clone();
        if let Some(o) = &self.oauth2 {
            t.insert("oauth2".into(), Value::Table(o.clone()));
        }
        if let Some(k) = &self.api_key {
            t.insert("api_key".into(), Value::Table(k.clone()));
        }
        if !self.endpoints.is_empty() {
            let e = self.endpoints.iter().map(|e| Value::Table(e.0.clone()));
            t.insert("endpoint".into(), Value::Array(e.collect()));
        }
        Value::Table(t)
    }

    // ---- the vendors' accounts as the simulator and the real servers know them ----

    /// iNode's OAuth2 client (the simulator's and the demo's credentials), password grant,
    /// refreshed a second before expiry.
    pub fn inode(base_url: &str) -> Account {
        Account::new("inode", base_url)
            .set("refresh_margin", "1s")
            .oauth2("token_url", "oauth/token/")
            .oauth2("client_id", "demo-client")
            .oauth2("client_secret", "demo-client-secret")
            .oauth2("client_auth", "body")
            .oauth2("scope", "sync")
            .oauth2("grant", "password")
            .oauth2("username", "owner")
            .oauth2("password", "demo-password")
    }

    /// HighQ's authorization-code client (`ROOT/highq/...`) polling `3/sites`.
    pub fn highq(root: &str) -> Account {
        Account::new("highq", &format!("{root}/highq/api/"))
            .oauth2("token_url", "oauth2/token")
            .oauth2("authorize_url", format!("{root}/highq/authorize.action"))
            .oauth2("client_id", "demo-client")
            .oauth2("client_secret", "demo-client-secret")
            .endpoint(Endpoint::new("sites", "3/sites"))
    }

    /// iNode's API-key mode (`Authorization: Token <key>`), as account `inode-key`.
    pub fn inode_key(base_url: &str, key: &str) -> Account {
        Account::new("inode-key", base_url)
            .api_key(key)
            .set("header_scheme", "Token")
    }
}

/// One `[[account.endpoint]]`.
#[derive(Clone, Debug)]
pub struct Endpoint(Table);

impl Endpoint {
    pub fn new(name: &str, path: &str) -> Endpoint {
        let mut t = Table::new();
        t.insert("name".into(), name.into());
        t.insert("path".into(), path.into());
        Endpoint(t)
    }

    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Endpoint {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Endpoint keys given as TOML text (`""` adds nothing).
    pub fn toml(mut self, text: &str) -> Endpoint {
        merge(&mut self.0, text);
        self
    }

    /// A parameter of the endpoint's `query` table.
    pub fn query(mut self, key: &str, value: &str) -> Endpoint {
        let query = self
            .0
            .entry("query")
            .or_insert_with(|| Value::Table(Table::new()));
        query
            .as_table_mut()
            .expect("query is a table")
            .insert(key.into(), value.into());
        self
    }

    /// iNode's `v1/links/` in one page.
    pub fn inode_links() -> Endpoint {
        Endpoint::new("links", "v1/links/").query("no_pagination", "")
    }

    /// iNode's `v1/devices/` in one page.
    pub fn inode_devices() -> Endpoint {
        Endpoint::new("devices", "v1/devices/").query("no_pagination", "")
    }
}

/// The `[daemon] database` a configuration file names.
pub fn database(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("read the configuration");
    let t: Table = text.parse().expect("the configuration is TOML");
    PathBuf::from(t["daemon"]["database"].as_str().expect("[daemon] database"))
}

/// A path as a TOML string.
pub fn path(p: &Path) -> String {
    p.display().to_string()
}

fn merge(table: &mut Table, text: &str) {
    let extra: Table = text
        .parse()
        .unwrap_or_else(|e| panic!("test TOML {text:?}: {e}"));
    table.extend(extra);
}

#[test]
fn renders_what_the_daemon_reads() {
    let text = Config::new(Path::new("/tmp/x/state.db"))
        .daemon("interval", "1s")
        .daemon_toml("store_bodies = \"all\"")
        .account(
            Account::inode("http://127.0.0.1:9/api/")
                .endpoint(Endpoint::inode_links())
                .endpoint(Endpoint::new("e", "x").toml("max_pages = 2")),
        )
        .account(Account::inode_key("http://127.0.0.1:9/api/", "k"))
        .toml();
    let v: Table = text.parse().unwrap();
    assert_eq!(v["daemon"]["database"].as_str(), Some("/tmp/x/state.db"));
    assert_eq!(v["daemon"]["store_bodies"].as_str(), Some("all"));
    let a = v["account"].as_array().unwrap();
    assert_eq!(a[0]["oauth2"]["grant"].as_str(), Some("password"));
    assert_eq!(
        a[0]["endpoint"][0]["query"]["no_pagination"].as_str(),
        Some("")
    );
    assert_eq!(a[0]["endpoint"][1]["max_pages"].as_integer(), Some(2));
    assert_eq!(a[1]["api_key"]["key"].as_str(), Some("k"));
    assert_eq!(a[1]["auth"].as_str(), Some("api_key"));
}
