//! The configuration file (TOML): parsed strictly, resolved once, then immutable.
//!
//! Unknown keys are errors (a typo must not silently disable something). Every error
//! names the file, the line where one is known, and the key. Values of secret keys are
//! never echoed, not even in a type error.

use crate::credentials::Credentials;
use crate::error::InputError;
use crate::store::{self, Database, PgTarget, StoreKey};
use crate::units::{bounded_secs, parse_duration, parse_size};
use secrecy::SecretString;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

pub const DEFAULT_CONFIG: &str = "/etc/oauth-poller/config.toml";

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub accounts: Vec<Account>,
    /// The store's key, read from `daemon.encryption_key_file` by [`load`] (none when the key
    /// is not configured, or the text was only parsed). Nothing uses it until a store is
    /// opened with it.
    pub store_key: Option<StoreKey>,
}

impl Config {
    /// The configured store and its key, to open it with.
    pub fn store(&self) -> store::Handle {
        store::Handle::new(&self.daemon.database, self.store_key.as_ref())
            .with_waits(self.daemon.lease_ttl, self.daemon.timeout)
    }
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The store: a SQLite file, or a PostgreSQL database (with its password, if any).
    pub database: Database,
    /// Where `${CREDENTIALS_DIRECTORY}` points (see `crate::credentials`).
    pub credentials: Credentials,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_body: u64,
    pub keep_history: Duration,
    /// How long an account's lease lasts without renewal (a store several instances share).
    pub lease_ttl: Duration,
    /// At most this many bytes of poll rows wait in memory while the store cannot take them.
    pub poll_buffer: u64,
    pub store_bodies: StoreBodies,
    pub log_bodies: bool,
    pub encryption_key_file: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    pub on_event: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBodies {
    None,
    Changes,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Oauth2,
    ApiKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Basic,
    Body,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRequestStyle {
    Form,
    Query,
}

/// How to obtain tokens when there is no usable refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackGrant {
    RefreshToken,
    Password,
    ClientCredentials,
}

#[derive(Debug)]
pub struct Account {
    pub name: String,
    pub base_url: Url,
    pub auth: AuthKind,
    pub header_scheme: String,
    pub seed_file: Option<PathBuf>,
    /// The line of `seed_file`, for the message when it is missing and needed.
    pub seed_file_line: Option<usize>,
    pub refresh_margin: Option<Duration>,
    pub refresh_warning: Duration,
    pub allow_http: bool,
    pub oauth2: Option<OAuth2>,
    pub api_key: Option<SecretString>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug)]
pub struct OAuth2 {
    /// `None`: the site has no token endpoint; its authorization redirect carries the
    /// access token itself (a Ruqqus-style bare-token site), and nothing ever refreshes.
    pub token_url: Option<Url>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub client_auth: ClientAuth,
    pub token_request: TokenRequestStyle,
    pub scope: Option<String>,
    pub grant: FallbackGrant,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub authorize_url: Option<Url>,
    pub redirect_uri: Option<String>,
    pub pkce: bool,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: Url,
    pub interval: Duration,
    pub on_change: Vec<String>,
    /// How the endpoint's collection pages (docs/pagination.md).
    pub paginate: Paginate,
    /// The most pages one poll fetches; the rest of a longer collection is left for later
    /// and the poll is stored as partial.
    pub max_pages: u32,
}

/// Where an endpoint's next page is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Paginate {
    /// Follow whichever of the styles below the first page shows, else one page.
    Auto,
    /// One request, one page: the answer as it is.
    None,
    /// JSON:API (SciNote): `links.next`, items in `data`.
    Jsonapi,
    /// Django REST framework (iNode): `next`, items in `results`.
    Drf,
    /// RFC 8288: a `Link: <...>; rel="next"` response header.
    Link,
}

/// `max_pages` when the endpoint does not say.
pub const DEFAULT_MAX_PAGES: u32 = 100;
/// The largest `max_pages` accepted: a poll must end in reasonable time.
pub const MAX_MAX_PAGES: u32 = 10_000;

impl Account {
    /// The `Authorization` header value for a token.
    pub fn authorization(&self, token: &str) -> String {
        if self.header_scheme.is_empty() {
            token.to_string()
        } else {
            format!("{} {}", self.header_scheme, token)
        }
    }

    /// The margin before expiry at which a token is refreshed: the configured one, else
    /// 5 minutes or a tenth of the token's lifetime, whichever is smaller.
    pub fn margin_for(&self, lifetime: Option<i64>) -> i64 {
        if let Some(m) = self.refresh_margin {
            return m.as_secs() as i64;
        }
        match lifetime {
            Some(l) if l > 0 => (l / 10).min(300),
            _ => 300,
        }
    }
}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    account: Vec<toml::Spanned<RawAccount>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    database: Option<String>,
    database_password_file: Option<String>,
    database_password_env: Option<String>,
    credentials_directory: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_size")]
    max_body: Option<u64>,
    #[serde(default, deserialize_with = "de_duration")]
    keep_history: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    lease_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "de_size")]
    poll_buffer: Option<u64>,
    store_bodies: Option<StoreBodies>,
    log_bodies: Option<bool>,
    encryption_key_file: Option<String>,
    metrics_listen: Option<String>,
    on_event: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    base_url: String,
    auth: Option<AuthKind>,
    header_scheme: Option<String>,
    seed_file: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    refresh_margin: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    refresh_warning: Option<Duration>,
    allow_http: Option<bool>,
    oauth2: Option<RawOAuth2>,
    api_key: Option<RawApiKey>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    client_secret_env: Option<String>,
    client_auth: Option<ClientAuth>,
    token_request: Option<TokenRequestStyle>,
    scope: Option<String>,
    grant: Option<FallbackGrant>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    authorize_url: Option<String>,
    redirect_uri: Option<String>,
    pkce: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    key: Option<String>,
    key_file: Option<String>,
    key_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    /// Spanned: errors about the name point at this endpoint's own line.
    name: toml::Spanned<String>,
    path: String,
    #[serde(default)]
    query: BTreeMap<String, QueryValue>,
    #[serde(default, deserialize_with = "de_duration")]
    interval: Option<Duration>,
    on_change: Option<Vec<String>>,
    paginate: Option<Paginate>,
    max_pages: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QueryValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl QueryValue {
    fn as_string(&self) -> String {
        match self {
            QueryValue::Str(s) => s.clone(),
            QueryValue::Int(i) => i.to_string(),
            QueryValue::Bool(b) => b.to_string(),
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(u64),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Seconds(s)) => bounded_secs(s).map(Some).map_err(de::Error::custom),
        Some(Raw::Text(t)) => parse_duration(&t).map(Some).map_err(de::Error::custom),
    }
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Bytes(u64),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Bytes(b)) => Ok(Some(b)),
        Some(Raw::Text(t)) => parse_size(&t).map(Some).map_err(de::Error::custom),
    }
}

// ---- loading ---------------------------------------------------------------------------

/// Where the configuration comes from: `--config`, else `$OAUTH_POLLER_CONFIG`, else the default.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("OAUTH_POLLER_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG),
    }
}

/// Whether loading a configuration reads the secrets it refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Read,
    /// For commands that only read the store (`status`, `history`): an account's secret that
    /// is given is not read, and holds an empty placeholder. The store's own encryption key
    /// is still read: reading an encrypted store needs it.
    Skip,
}

/// Reads, parses and resolves the configuration (secrets read, paths expanded).
/// `database` overrides `[daemon] database`.
pub fn load(path: &Path, database: Option<&Path>) -> Result<Config, InputError> {
    load_with(path, database, Secrets::Read)
}

/// [`load`], reading the secrets or not.
pub fn load_with(
    path: &Path,
    database: Option<&Path>,
    secrets: Secrets,
) -> Result<Config, InputError> {
    let file = path.display().to_string();
    let text = std::fs::read(path)
        .map_err(|e| InputError::new(&file, format!("cannot read the configuration: {e}")))?;
    let text = String::from_utf8(text)
        .map_err(|_| InputError::new(&file, "the configuration is not valid UTF-8"))?;
    let mut config = parse_with(&file, &text, database, secrets)?;
    // The store's encryption key, for every command that opens the store.
    config.store_key = match &config.daemon.encryption_key_file {
        Some(key_file) => Some(StoreKey::read_file(key_file).map_err(|m| {
            let mut e = InputError::new(&file, format!("{}: {m}", key_file.display()))
                .key("daemon.encryption_key_file");
            e.line = text
                .lines()
                .position(|l| l.trim_start().starts_with("encryption_key_file"))
                .map(|i| i + 1);
            e
        })?),
        None => None,
    };
    Ok(config)
}

/// Parses configuration text; `file` is the name used in errors.
pub fn parse(file: &str, text: &str, database: Option<&Path>) -> Result<Config, InputError> {
    parse_with(file, text, database, Secrets::Read)
}

fn parse_with(
    file: &str,
    text: &str,
    database: Option<&Path>,
    secrets: Secrets,
) -> Result<Config, InputError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let mut ctx = Ctx {
        file,
        text,
        inline_secret: std::cell::Cell::new(false),
        credentials: Credentials::resolve(None),
        secrets,
    };
    // Resolved first: every other path may name it.
    if let Some(dir) = &raw.daemon.credentials_directory {
        let dir = expand_vars(dir)
            .map_err(|e| ctx.err(None, "daemon.credentials_directory", e.to_string()))?;
        ctx.credentials = Credentials::resolve(Some(PathBuf::from(dir)));
    }
    let daemon = ctx.daemon(raw.daemon, database)?;
    let mut accounts: Vec<Account> = Vec::new();
    for spanned in raw.account {
        let line = line_of(text, spanned.span().start);
        let account = ctx.account(spanned.into_inner(), line, &daemon)?;
        if accounts.iter().any(|a| a.name == account.name) {
            return Err(InputError::new(
                file,
                format!("account `{}` is defined twice", account.name),
            )
            .line(line)
            .key("account.name"));
        }
        accounts.push(account);
    }
    if accounts.is_empty() {
        return Err(InputError::new(file, "no [[account]] is configured").key("account"));
    }
    if ctx.inline_secret.get() {
        // The file itself is then a secret file.
        crate::files::warn_if_readable_by_others(Path::new(file));
    }
    Ok(Config {
        path: PathBuf::from(file),
        daemon,
        accounts,
        store_key: None,
    })
}

const SECRET_KEYS: &[&str] = &["client_secret", "password", "key"];

/// A TOML error as file:line: key: message, with secret values withheld.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> InputError {
    let mut err = InputError::new(file, e.message().trim().to_string());
    if let Some(span) = e.span() {
        let line = line_of(text, span.start);
        err = err.line(line);
        let line_text = text.lines().nth(line - 1).unwrap_or("");
        if let Some((key, _)) = line_text.split_once('=') {
            let key = key.trim().trim_matches('"');
            if !key.is_empty() && !key.starts_with('[') {
                err = err.key(key);
            }
        }
        if let Some(secret) = secret_key_in(line_text) {
            err.message = "invalid value (not shown: it is a secret)".into();
            err = err.key(secret);
        }
    }
    err
}

/// The secret key assigned on this line, wherever it sits: `client_secret = ...`, a dotted
/// key (`oauth2.client_secret = ...`) or an inline table (`oauth2 = { client_secret = ... }`).
/// A line that assigns one may hold its value, so the error must not quote the line's value.
fn secret_key_in(line: &str) -> Option<&'static str> {
    let bytes = line.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    SECRET_KEYS.iter().copied().find(|key| {
        line.match_indices(key).any(|(at, _)| {
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(is_ident) {
                return false;
            }
            let rest = line[at + key.len()..].trim_start_matches(['"', '\'']);
            rest.trim_start().starts_with('=')
        })
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    /// Set when a secret is written in the file itself.
    inline_secret: std::cell::Cell<bool>,
    credentials: Credentials,
    secrets: Secrets,
}

impl Ctx<'_> {
    fn err(&self, line: Option<usize>, key: &str, message: impl Into<String>) -> InputError {
        let mut e = InputError::new(self.file, message).key(key);
        if let Some(l) = line.or_else(|| self.find_line(key)) {
            e = e.line(l);
        }
        e
    }

    /// The line of the first `key =` at or after line `from` (the account's own key).
    fn key_line_after(&self, from: usize, key: &str) -> Option<usize> {
        self.text
            .lines()
            .enumerate()
            .skip(from.saturating_sub(1))
            .find(|(_, l)| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
            .map(|(i, _)| i + 1)
    }

    /// The line of the first `key =` whose last path component matches: good enough to point
    /// an operator at the right place for errors found after parsing.
    fn find_line(&self, key: &str) -> Option<usize> {
        let last = key.rsplit('.').next()?;
        let header = format!(".{last}]");
        self.text
            .lines()
            .position(|l| {
                let l = l.trim();
                (l.starts_with('[') && l.ends_with(&header))
                    || l.split_once('=').is_some_and(|(k, _)| k.trim() == last)
            })
            .map(|i| i + 1)
    }

    fn daemon(&self, raw: RawDaemon, database: Option<&Path>) -> Result<DaemonConfig, InputError> {
        let database = self.database(database, &raw)?;
        let lease_ttl = raw.lease_ttl.unwrap_or(Duration::from_secs(15));
        if lease_ttl < Duration::from_secs(3) {
            return Err(self.err(
                None,
                "daemon.lease_ttl",
                "must be at least 3s (leases are renewed every third of it)",
            ));
        }
        let interval = raw.interval.unwrap_or(Duration::from_secs(60));
        if interval.is_zero() {
            return Err(self.err(None, "daemon.interval", "must be greater than zero"));
        }
        let timeout = raw.timeout.unwrap_or(Duration::from_secs(30));
        if timeout.is_zero() {
            return Err(self.err(None, "daemon.timeout", "must be greater than zero"));
        }
        let encryption_key_file = raw
            .encryption_key_file
            .map(|p| self.path("daemon.encryption_key_file", &p))
            .transpose()?;
        if let Some(listen) = &raw.metrics_listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(self.err(
                    None,
                    "daemon.metrics_listen",
                    "expected ADDRESS:PORT, e.g. 127.0.0.1:9464",
                ));
            }
        }
        let on_event = raw.on_event.unwrap_or_default();
        Ok(DaemonConfig {
            database,
            credentials: self.credentials.clone(),
            interval,
            timeout,
            max_body: raw.max_body.unwrap_or(10 * 1024 * 1024),
            keep_history: raw.keep_history.unwrap_or(Duration::from_secs(7 * 86400)),
            lease_ttl,
            poll_buffer: raw.poll_buffer.unwrap_or(64 * 1024 * 1024),
            store_bodies: raw.store_bodies.unwrap_or(StoreBodies::Changes),
            log_bodies: raw.log_bodies.unwrap_or(false),
            encryption_key_file,
            metrics_listen: raw.metrics_listen,
            on_event,
        })
    }

    /// The store: `--database`, else `daemon.database`, else `state.db` in systemd's
    /// `STATE_DIRECTORY`, else `oauth-poller.db` here. A `postgres://` URL is a PostgreSQL
    /// database, whose password comes from `daemon.database_password_file` or `_env` (or
    /// the libpq password file).
    fn database(&self, flag: Option<&Path>, raw: &RawDaemon) -> Result<Database, InputError> {
        let (key, value) = match (flag, &raw.database) {
            (Some(flag), _) => ("--database", flag.to_string_lossy().into_owned()),
            (None, Some(v)) => ("daemon.database", v.clone()),
            (None, None) => {
                return Ok(Database::File(match std::env::var_os("STATE_DIRECTORY") {
                    // systemd may pass several directories separated by ':'; the first is ours.
                    Some(dir) if !dir.is_empty() => {
                        let dir = dir
                            .to_string_lossy()
                            .split(':')
                            .next()
                            .unwrap_or("")
                            .to_string();
                        PathBuf::from(dir).join("state.db")
                    }
                    _ => PathBuf::from("oauth-poller.db"),
                }));
            }
        };
        let password_given =
            raw.database_password_file.is_some() || raw.database_password_env.is_some();
        if !Database::is_postgres_url(&value) {
            if password_given {
                return Err(self.err(
                    None,
                    if raw.database_password_file.is_some() {
                        "daemon.database_password_file"
                    } else {
                        "daemon.database_password_env"
                    },
                    "a database password goes with a postgres:// database",
                ));
            }
            return match flag {
                Some(flag) => Ok(Database::File(flag.to_path_buf())),
                None => Ok(Database::File(self.path(key, &value)?)),
            };
        }
        let target = PgTarget::parse(&value).map_err(|m| self.err(None, key, m))?;
        let password = self.secret_with(
            "daemon.database_password",
            None,
            raw.database_password_file.clone(),
            raw.database_password_env.clone(),
            // `status` and `history` skip the accounts' secrets, not the database's.
            Secrets::Read,
        )?;
        Ok(Database::Postgres(Arc::new(target.with_password(password))))
    }

    fn account(
        &self,
        mut raw: RawAccount,
        line: usize,
        daemon: &DaemonConfig,
    ) -> Result<Account, InputError> {
        let at = |key: &str| format!("account[{}].{key}", raw.name);
        self.check_account_name(&raw.name, line)?;
        let allow_http = raw.allow_http.unwrap_or(false);
        let mut base = raw.base_url.clone();
        if !base.ends_with('/') {
            // Without the slash, joining "v1/links/" would drop the last path segment.
            base.push('/');
        }
        let base_url = self.url(&at("base_url"), &base, None, allow_http)?;
        let auth = raw.auth.unwrap_or(AuthKind::Oauth2);
        let header_scheme = raw.header_scheme.take().unwrap_or_else(|| "Bearer".into());
        if !header_scheme.bytes().all(is_tchar) {
            return Err(self.err(
                None,
                &at("header_scheme"),
                "must be an HTTP token such as Bearer or Token (letters, digits, !#$%&'*+-.^_`|~; no spaces or control characters), or empty",
            ));
        }
        let seed_file = raw
            .seed_file
            .take()
            .map(|p| self.path(&at("seed_file"), &p))
            .transpose()?;
        let (oauth2, api_key) = self.credentials(&mut raw, auth, line, &base_url, allow_http)?;
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for e in raw.endpoint {
            let endpoint = self.endpoint(
                &raw.name,
                e,
                &base_url,
                allow_http,
                daemon.interval,
                &endpoints,
            )?;
            endpoints.push(endpoint);
        }
        Ok(Account {
            name: raw.name,
            base_url,
            auth,
            header_scheme,
            seed_file_line: seed_file
                .as_ref()
                .and_then(|_| self.key_line_after(line, "seed_file")),
            seed_file,
            refresh_margin: raw.refresh_margin,
            refresh_warning: raw
                .refresh_warning
                .unwrap_or(Duration::from_secs(14 * 86400)),
            allow_http,
            oauth2,
            api_key,
            endpoints,
        })
    }

    fn check_account_name(&self, name: &str, line: usize) -> Result<(), InputError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            return Ok(());
        }
        Err(self.err(
            Some(line),
            "account.name",
            format!("`{name}` is not a valid account name: use [a-z0-9_-]+"),
        ))
    }

    /// The account's credentials, taken out of the one section of `raw` its `auth` asks for
    /// (the other section is an error, not ignored).
    fn credentials(
        &self,
        raw: &mut RawAccount,
        auth: AuthKind,
        line: usize,
        base_url: &Url,
        allow_http: bool,
    ) -> Result<(Option<OAuth2>, Option<SecretString>), InputError> {
        let at = |key: &str| format!("account[{}].{key}", raw.name);
        match auth {
            AuthKind::Oauth2 => {
                if raw.api_key.is_some() {
                    return Err(self.err(
                        None,
                        &at("api_key"),
                        "[account.api_key] goes with auth = \"api_key\"",
                    ));
                }
                let o = raw.oauth2.take().ok_or_else(|| {
                    self.err(
                        Some(line),
                        &at("oauth2"),
                        "auth = \"oauth2\" needs an [account.oauth2] section",
                    )
                })?;
                Ok((Some(self.oauth2(&raw.name, o, base_url, allow_http)?), None))
            }
            AuthKind::ApiKey => {
                if raw.oauth2.is_some() {
                    return Err(self.err(
                        None,
                        &at("oauth2"),
                        "[account.oauth2] goes with auth = \"oauth2\"",
                    ));
                }
                let k = raw.api_key.take().ok_or_else(|| {
                    self.err(
                        Some(line),
                        &at("api_key"),
                        "auth = \"api_key\" needs an [account.api_key] section",
                    )
                })?;
                let key = self.secret(&at("api_key.key"), k.key, k.key_file, k.key_env)?;
                let key = key.ok_or_else(|| {
                    self.err(
                        Some(line),
                        &at("api_key.key"),
                        "an API key is required: key, key_file or key_env",
                    )
                })?;
                Ok((None, Some(key)))
            }
        }
    }

    /// One `[[account.endpoint]]`; `defined`: the account's endpoints before it.
    fn endpoint(
        &self,
        account: &str,
        e: RawEndpoint,
        base_url: &Url,
        allow_http: bool,
        default_interval: Duration,
        defined: &[Endpoint],
    ) -> Result<Endpoint, InputError> {
        let name_line = line_of(self.text, e.name.span().start);
        let name = e.name.into_inner();
        let key = format!("account[{account}].endpoint[{name}]");
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(
                Some(name_line),
                &format!("{key}.name"),
                "an endpoint name must be non-empty and have no spaces",
            ));
        }
        if defined.iter().any(|x| x.name == name) {
            return Err(self.err(
                Some(name_line),
                &format!("{key}.name"),
                format!("endpoint `{name}` is defined twice"),
            ));
        }
        let mut url = self.url(&format!("{key}.path"), &e.path, Some(base_url), allow_http)?;
        if url.origin() != base_url.origin() {
            // Credentials go only to the account's own host.
            return Err(self.err(
                None,
                &format!("{key}.path"),
                "must stay on the host of base_url",
            ));
        }
        append_query(&mut url, &e.query);
        let interval = e.interval.unwrap_or(default_interval);
        if interval.is_zero() {
            return Err(self.err(
                None,
                &format!("{key}.interval"),
                "must be greater than zero",
            ));
        }
        let max_pages = e.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
        if !(1..=MAX_MAX_PAGES).contains(&max_pages) {
            return Err(self.err(
                None,
                &format!("{key}.max_pages"),
                format!("must be between 1 and {MAX_MAX_PAGES}"),
            ));
        }
        Ok(Endpoint {
            name,
            url,
            interval,
            on_change: e.on_change.unwrap_or_default(),
            paginate: e.paginate.unwrap_or(Paginate::Auto),
            max_pages,
        })
    }

    fn oauth2(
        &self,
        account: &str,
        o: RawOAuth2,
        base: &Url,
        allow_http: bool,
    ) -> Result<OAuth2, InputError> {
        let at = |key: &str| format!("account[{account}].oauth2.{key}");
        // Without a token endpoint the only way in is the authorization redirect.
        let token_url = match (o.token_url, &o.authorize_url) {
            (Some(t), _) => Some(self.url(&at("token_url"), &t, Some(base), allow_http)?),
            (None, Some(_)) => None,
            (None, None) => {
                return Err(self.err(
                    None,
                    &at("token_url"),
                    "token_url is required (or authorize_url alone, for a site whose authorization redirect delivers the access token)",
                ))
            }
        };
        let client_id = o
            .client_id
            .ok_or_else(|| self.err(None, &at("client_id"), "client_id is required"))?;
        let client_secret = self.secret(
            &at("client_secret"),
            o.client_secret,
            o.client_secret_file,
            o.client_secret_env,
        )?;
        let password = self.secret(&at("password"), o.password, o.password_file, o.password_env)?;
        let client_auth = o.client_auth.unwrap_or(ClientAuth::Basic);
        if client_auth != ClientAuth::None && client_secret.is_none() && token_url.is_some() {
            return Err(self.err(None, &at("client_secret"), "client_auth needs a client secret (client_secret, client_secret_file or client_secret_env), or set client_auth = \"none\""));
        }
        let grant = o.grant.unwrap_or(FallbackGrant::RefreshToken);
        if token_url.is_none() && grant != FallbackGrant::RefreshToken {
            return Err(self.err(None, &at("grant"), "this grant needs a token_url"));
        }
        if grant == FallbackGrant::Password && (o.username.is_none() || password.is_none()) {
            return Err(self.err(None, &at("grant"), "grant = \"password\" needs username and password (or password_file / password_env)"));
        }
        let authorize_url = o
            .authorize_url
            .map(|u| self.url(&at("authorize_url"), &u, Some(base), allow_http))
            .transpose()?;
        Ok(OAuth2 {
            token_url,
            client_id,
            client_secret,
            client_auth,
            token_request: o.token_request.unwrap_or(TokenRequestStyle::Form),
            scope: o.scope,
            grant,
            username: o.username,
            password,
            authorize_url,
            redirect_uri: o.redirect_uri,
            // RFC 9700 2.1.1: PKCE for every client. A server without PKCE ignores the extra
            // parameters (RFC 6749 3.1), so this is safe where it does not help.
            pkce: o.pkce.unwrap_or(true),
        })
    }

    /// A secret given inline, as `NAME_file` or as `NAME_env`: at most one of them.
    fn secret(
        &self,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
        env: Option<String>,
    ) -> Result<Option<SecretString>, InputError> {
        self.secret_with(key, inline, file, env, self.secrets)
    }

    fn secret_with(
        &self,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
        env: Option<String>,
        secrets: Secrets,
    ) -> Result<Option<SecretString>, InputError> {
        let given = [inline.is_some(), file.is_some(), env.is_some()]
            .iter()
            .filter(|&&b| b)
            .count();
        if given > 1 {
            return Err(self.err(
                None,
                key,
                "give the secret only once: inline, as _file or as _env",
            ));
        }
        if let Some(v) = inline {
            self.inline_secret.set(true);
            return Ok(Some(SecretString::from(v)));
        }
        if secrets == Secrets::Skip && given == 1 {
            return Ok(Some(SecretString::from(String::new())));
        }
        if let Some(f) = file {
            let key = format!("{key}_file");
            let path = self.path(&key, &f)?;
            let mut value = std::fs::read_to_string(&path).map_err(|e| {
                self.err(
                    None,
                    &key,
                    format!(
                        "cannot read the secret file {}: {}",
                        path.display(),
                        e.kind()
                    ),
                )
            })?;
            crate::files::warn_if_readable_by_others(&path);
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                return Err(self.err(
                    None,
                    &key,
                    format!("the secret file {} is empty", path.display()),
                ));
            }
            return Ok(Some(SecretString::from(value)));
        }
        if let Some(var) = env {
            let key = format!("{key}_env");
            let value = std::env::var(&var).map_err(|_| {
                self.err(None, &key, format!("environment variable {var} is not set"))
            })?;
            if value.is_empty() {
                return Err(self.err(None, &key, format!("environment variable {var} is empty")));
            }
            return Ok(Some(SecretString::from(value)));
        }
        Ok(None)
    }

    /// Expands `${VAR}` in a path; an unset variable is an error, except
    /// `${CREDENTIALS_DIRECTORY}` (see `crate::credentials`).
    fn path(&self, key: &str, value: &str) -> Result<PathBuf, InputError> {
        self.credentials
            .expand(value)
            .map_err(|e| self.err(None, key, e.to_string()))
    }

    /// An absolute URL, or one relative to `base`; `http://` only to loopback or when allowed.
    fn url(
        &self,
        key: &str,
        value: &str,
        base: Option<&Url>,
        allow_http: bool,
    ) -> Result<Url, InputError> {
        let parsed = match base {
            Some(b) => Url::parse(value).or_else(|_| b.join(value)),
            None => Url::parse(value),
        };
        let url = parsed
            .map_err(|e| self.err(None, key, format!("`{value}` is not a valid URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http || is_loopback(&url) => {}
            "http" => {
                return Err(self.err(None, key, "http:// is refused for a non-loopback host: use https://, or set allow_http = true on the account"))
            }
            other => return Err(self.err(None, key, format!("unsupported URL scheme `{other}`"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.err(
                None,
                key,
                "credentials in URLs are refused: use the secret keys",
            ));
        }
        Ok(url)
    }
}

/// A byte of an HTTP token (RFC 9110 `tchar`): what an authentication scheme is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `?key` for an empty value (as iNode's `?no_pagination`), `?key=value` otherwise.
fn append_query(url: &mut Url, query: &BTreeMap<String, QueryValue>) {
    if query.is_empty() {
        return;
    }
    let mut parts: Vec<String> = url.query().map(|q| vec![q.to_string()]).unwrap_or_default();
    for (k, v) in query {
        let v = v.as_string();
        let k = url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>();
        if v.is_empty() {
            parts.push(k);
        } else {
            let v = url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            parts.push(format!("{k}={v}"));
        }
    }
    url.set_query(Some(&parts.join("&")));
}

/// Expands `${VAR}` from the environment; `$` not followed by `{` is kept as it is.
pub fn expand_vars(value: &str) -> Result<String, crate::credentials::ExpandError> {
    crate::credentials::expand_with(value, |var| std::env::var(var).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
interval = "30s"
max_body = "1MiB"

[[account]]
name = "inode"
base_url = "http://127.0.0.1:9/api"

[account.oauth2]
token_url = "oauth/token/"
client_id = "id"
client_secret = "s3cret"
client_auth = "body"
grant = "password"
username = "owner"
password = "pw"

[[account.endpoint]]
name = "links"
path = "v1/links/"
query = { no_pagination = "" }
"#;

    #[test]
    fn parses_a_full_account() {
        let c = parse("c.toml", GOOD, Some(Path::new("x.db"))).unwrap();
        let a = &c.accounts[0];
        assert_eq!(
            a.endpoints[0].url.as_str(),
            "http://127.0.0.1:9/api/v1/links/?no_pagination"
        );
        assert_eq!(
            a.oauth2
                .as_ref()
                .unwrap()
                .token_url
                .as_ref()
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/api/oauth/token/"
        );
        assert_eq!(a.endpoints[0].interval, Duration::from_secs(30));
        assert_eq!(c.daemon.max_body, 1024 * 1024);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let bad = GOOD.replace("max_body", "max_bdy");
        let e = parse("c.toml", &bad, None).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().contains("max_bdy"), "{e}");
    }

    #[test]
    fn secret_values_are_not_echoed() {
        let bad = GOOD.replace("client_secret = \"s3cret\"", "client_secret = 123456789");
        let e = parse("c.toml", &bad, None).unwrap_err().to_string();
        assert!(!e.contains("123456789"), "{e}");
        assert!(e.contains("client_secret"), "{e}");
    }

    #[test]
    fn http_to_remote_host_is_refused() {
        let bad = GOOD.replace("http://127.0.0.1:9/api", "http://example.com/api");
        let e = parse("c.toml", &bad, None).unwrap_err();
        assert!(e.to_string().contains("base_url"), "{e}");
    }

    #[test]
    fn margin_scales_with_lifetime() {
        let c = parse("c.toml", GOOD, None).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.margin_for(Some(406)), 40);
        assert_eq!(a.margin_for(Some(7200)), 300);
        assert_eq!(a.margin_for(None), 300);
    }
}
