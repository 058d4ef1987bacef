//! The PostgreSQL backend: one database that many instances share. The same tables as the
//! SQLite store (`migrations/postgres/`), the same guarantees by PostgreSQL's means:
//! - a commit is durable when it returns (`synchronous_commit` is left at `on`);
//! - [`RefreshLock`]: a transaction holding the account's transaction-level advisory lock,
//!   for milliseconds, to decide and to commit;
//! - [`Gate`]: the account's session-level advisory lock, held across the request to the
//!   provider on a connection of its own; PostgreSQL releases it when the session ends, so a
//!   dead holder frees it;
//! - the refresh journal is the `refresh_journal` table, written the moment the answer
//!   arrives.
//!
//! Every failure to reach the server (refused, closed, shutting down) marks the handle's
//! [`Health`] unavailable and every success marks it available again: the poll writer keeps
//! its rows meanwhile, and the token reads use the last token while it is valid.
//!
//! The `postgres` client runs its own small runtime, which must not be entered from a
//! thread that runs async tasks: [`blocking`] moves every call made from such a thread
//! onto a short-lived thread of its own.

mod authorizations;
mod import;
mod keyed;
mod leases;
mod polls;
mod tokens;

pub use import::import;
pub use leases::{Cycle, Fence, Instance, LeaseStore};
pub use tokens::{Gate, RefreshLock};

use super::crypto::StoreKey;
use super::database::{PgTarget, PgTls};
use super::health::Health;
use crate::error::{Error, InputError, StoreError};
use parking_lot::Mutex;
use postgres::{Client, GenericClient};
use std::sync::Arc;

/// (version, SQL), in order. Version N is the schema after applying file N.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_leases.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_refresh_requests.sql"),
    ),
];

fn latest() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Advisory-lock namespaces (the first key of PostgreSQL's two-key form), so that this
/// daemon's locks never meet another application's in the same database.
const LOCK_MIGRATE: i32 = 0x6f61_7001;
const LOCK_COMMIT: i32 = 0x6f61_7002;
const LOCK_REFRESH: i32 = 0x6f61_7003;

/// Where the database is, and the key its secrets are sealed with; connections are kept for
/// reuse.
#[derive(Clone)]
pub struct Handle {
    target: Arc<PgTarget>,
    key: Option<StoreKey>,
    idle: Arc<Mutex<Vec<Conn>>>,
    /// A daemon instance's leases: commits are checked against them (none for a command
    /// run once, which an operator runs on purpose).
    fence: Option<Arc<Fence>>,
    /// Whether the server answers: marked by every failure to reach it and every success.
    health: Health,
    reconnect: Arc<Mutex<Reconnect>>,
    waits: RequestWaits,
}

/// How long a token request another process sent may still be answered (see
/// [`RefreshLock::commit_request`]), from the daemon's `lease_ttl` and `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct RequestWaits {
    lease_ttl: std::time::Duration,
    timeout: std::time::Duration,
}

impl RequestWaits {
    /// How long the store must have answered before a requester that has not heartbeat is
    /// taken for dead: one that is alive reconnects and heartbeats well within two TTLs.
    pub(crate) fn steady(&self) -> std::time::Duration {
        self.lease_ttl * 2
    }

    /// How long the server lets a transaction wait for its client: a third of the TTL,
    /// so that a stopped client's lock on a lease is gone before the lease expires.
    pub(crate) fn idle_in_transaction(&self) -> std::time::Duration {
        self.lease_ttl / 3
    }

    /// How long an alive requester's answer is waited for: its request's timeout, then
    /// the time to reconnect and journal it.
    pub(crate) fn answer(&self) -> std::time::Duration {
        self.timeout + self.lease_ttl * 2
    }
}

impl Default for RequestWaits {
    fn default() -> Self {
        RequestWaits {
            lease_ttl: std::time::Duration::from_secs(15),
            timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// While the server is unavailable, one connection attempt at a time, at most one a
/// [`RECONNECT_EVERY`]: an attempt may take the whole connect timeout (a partition drops
/// packets), and callers queued behind it would hold up the schedule.
#[derive(Default)]
struct Reconnect {
    busy: bool,
    failed_at: Option<std::time::Instant>,
}

const RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres::Handle({})", self.target)
    }
}

/// Idle connections kept for reuse: enough for a refresh's lock, gate and journal at once.
const IDLE_KEPT: usize = 4;

impl Handle {
    pub fn new(target: Arc<PgTarget>, key: Option<&StoreKey>) -> Handle {
        Handle {
            target,
            key: key.cloned(),
            idle: Arc::default(),
            fence: None,
            health: Health::default(),
            reconnect: Arc::default(),
            waits: RequestWaits::default(),
        }
    }

    /// This handle with the daemon's `lease_ttl` and `timeout` (see [`RequestWaits`]).
    pub fn with_waits(
        mut self,
        lease_ttl: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Handle {
        self.waits = RequestWaits { lease_ttl, timeout };
        self
    }

    pub(crate) fn waits(&self) -> RequestWaits {
        self.waits
    }

    /// Who sends this handle's token requests, as `refresh_requests` names them: the
    /// instance, or `command:PID` for a command run once (it has no heartbeat).
    pub(crate) fn requester(&self) -> String {
        match &self.fence {
            Some(f) => f.instance.id.clone(),
            None => format!("command:{}", std::process::id()),
        }
    }

    /// The handle of a daemon instance holding leases.
    pub fn fenced(mut self, fence: Arc<Fence>) -> Handle {
        self.fence = Some(fence);
        self
    }

    pub(crate) fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    pub(crate) fn key(&self) -> Option<&StoreKey> {
        self.key.as_ref()
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// The error, as the crate sees it; a failure to reach the server marks the store
    /// unavailable.
    pub(crate) fn err(&self, source: postgres::Error) -> Error {
        let down = unreachable(&source);
        let e = Error::Store(StoreError::new(&self.target, source));
        if down {
            self.health.down(&self.target.to_string(), &e.to_string());
        }
        e
    }

    /// The server answered.
    pub(crate) fn answered(&self) {
        self.health.up(&self.target.to_string());
    }

    /// A connection: an idle one still open, else a new one.
    pub(crate) fn connection(&self) -> Result<Pooled, Error> {
        loop {
            let idle = self.idle.lock().pop();
            match idle {
                Some(c) if !c.client().is_closed() => {
                    return Ok(Pooled {
                        conn: Some(c),
                        home: self.idle.clone(),
                    })
                }
                Some(_) => continue,
                None => break,
            }
        }
        let claimed = self.health.unavailable();
        if claimed {
            let mut r = self.reconnect.lock();
            if r.busy || r.failed_at.is_some_and(|t| t.elapsed() < RECONNECT_EVERY) {
                return Err(Error::Store(StoreError::new(
                    &self.target,
                    "unavailable (reconnecting)",
                )));
            }
            r.busy = true;
        }
        let connected = blocking(|| connect(&self.target, self.waits));
        if claimed {
            let mut r = self.reconnect.lock();
            r.busy = false;
            r.failed_at = connected.is_err().then(std::time::Instant::now);
        }
        let client = connected.map_err(|e| match e {
            Connect::Tls(e) => Error::runtime(format!("database {}: {e}", self.target)),
            Connect::Postgres(e) => self.err(e),
        })?;
        self.answered();
        Ok(Pooled {
            conn: Some(Conn(Some(client))),
            home: self.idle.clone(),
        })
    }

    /// Connects, and creates or migrates the schema.
    pub fn open(&self) -> Result<Store, Error> {
        let mut conn = self.connection()?;
        let version = blocking(|| migrate(&mut *conn)).map_err(|e| self.err(e))?;
        if version > latest() {
            return Err(self.too_new(version).into());
        }
        let store = Store {
            at: self.clone(),
            conn: Mutex::new(conn),
        };
        keyed::settle(&store)?;
        Ok(store)
    }

    /// Connects to a store that exists, without migrating it (for `status`, `history`).
    pub fn open_existing(&self) -> Result<Store, Error> {
        let mut conn = self.connection()?;
        let version = blocking(|| schema_version(&mut conn)).map_err(|e| self.err(e))?;
        match version {
            None => {
                return Err(Error::runtime(format!(
                    "no oauth-poller store in {}: start the daemon or seed an account first",
                    self.target
                )))
            }
            Some(v) if v > latest() => return Err(self.too_new(v).into()),
            Some(v) if v < latest() => {
                return Err(Error::runtime(format!(
                    "the store in {} has schema version {v}, older than this oauth-poller's \
                     {}: start the daemon (or `oauth-poller seed`) once to migrate it",
                    self.target,
                    latest()
                )))
            }
            Some(_) => {}
        }
        let store = Store {
            at: self.clone(),
            conn: Mutex::new(conn),
        };
        keyed::settle(&store)?;
        Ok(store)
    }

    fn too_new(&self, version: i32) -> InputError {
        InputError::new(
            self.target.to_string(),
            format!(
                "the store has schema version {version}, newer than this oauth-poller's {}: \
                 it was written by a newer version; run that version (nothing was changed)",
                latest()
            ),
        )
    }
}

/// A client, dropped where dropping it is allowed: the `postgres` client closes its session
/// and its runtime on drop, which must not happen on a thread that runs async tasks.
pub(crate) struct Conn(Option<Client>);

impl Conn {
    fn client(&self) -> &Client {
        self.0
            .as_ref()
            .expect("a connection holds its client until dropped")
    }

    fn client_mut(&mut self) -> &mut Client {
        self.0
            .as_mut()
            .expect("a connection holds its client until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            blocking(move || drop(client));
        }
    }
}

/// A connection that goes back to its handle's idle list when dropped (unless it broke).
pub struct Pooled {
    conn: Option<Conn>,
    home: Arc<Mutex<Vec<Conn>>>,
}

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
            .client()
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until dropped")
            .client_mut()
    }
}

impl Pooled {
    /// Closes the connection instead of keeping it (its session state is unknown).
    pub(crate) fn discard(mut self) {
        self.conn = None;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if c.client().is_closed() {
                return;
            }
            let mut idle = self.home.lock();
            if idle.len() < IDLE_KEPT {
                idle.push(c);
            }
        }
    }
}

/// An open store: a connection for reads and plain writes, and its handle.
pub struct Store {
    at: Handle,
    conn: Mutex<Pooled>,
}

impl Store {
    pub fn handle(&self) -> &Handle {
        &self.at
    }

    pub(crate) fn key(&self) -> Option<&StoreKey> {
        self.at.key()
    }

    /// Runs `work` on the store's connection (reconnecting first if the server went away).
    pub(crate) fn with<T: Send>(
        &self,
        work: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, Error> {
        let mut conn = self.conn.lock();
        if conn.is_closed() {
            *conn = self.at.connection()?;
        }
        let client: &mut Client = &mut conn;
        let done = blocking(|| work(client)).map_err(|e| self.at.err(e))?;
        self.at.answered();
        Ok(done)
    }
}

/// Whether `e` says the server could not be reached (down, restarting, the connection
/// lost), rather than that it refused a statement: no SQLSTATE (I/O, a closed connection),
/// a connection exception (08) or an operator's intervention (57: shutdown, starting up).
pub(crate) fn unreachable(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code()
            .is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57"))
}

/// Why a connection could not be made.
enum Connect {
    /// The TLS configuration could not be built (the system's roots).
    Tls(String),
    Postgres(postgres::Error),
}

fn connect(target: &PgTarget, waits: RequestWaits) -> Result<Client, Connect> {
    let mut config = target.config();
    // A transaction left open by a client that stopped (paused, cut off) holds its
    // account's lease row (`FOR SHARE`): the server ends it, so that the lease can move on
    // (that client's commit then fails).
    let idle = format!(
        "-c idle_in_transaction_session_timeout={}",
        waits.idle_in_transaction().as_millis()
    );
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {idle}"),
        _ => idle,
    };
    config.options(&options);
    // The server's notices ("already exists, skipping", "terminating connection") are for
    // debugging, not the operator's log.
    config.notice_callback(|notice| {
        tracing::debug!(
            severity = notice.severity(),
            message = notice.message(),
            "database notice"
        )
    });
    match target.tls() {
        PgTls::Disable => config.connect(postgres::NoTls),
        PgTls::VerifyFull => {
            let tls = crate::tls::client_config(&[]).map_err(Connect::Tls)?;
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
    }
    .map_err(Connect::Postgres)
}

/// The schema version, if the store's tables exist.
fn schema_version(client: &mut Client) -> Result<Option<i32>, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('oauth_poller_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt("SELECT version FROM oauth_poller_schema", &[])?
        .map(|r| r.get(0)))
}

/// Applies every migration the database lacks (within the caller's transaction, when given
/// one, as a savepoint), under a lock, so that instances starting
/// together do not both migrate. Returns the version found (newer than known: untouched).
fn migrate(client: &mut impl GenericClient) -> Result<i32, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_MIGRATE])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS oauth_poller_schema (version INTEGER NOT NULL)")?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM oauth_poller_schema", &[])?
        .map(|r| r.get(0));
    let current = found.unwrap_or(0);
    if current > latest() {
        return Ok(current);
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql)?;
        tx.execute("DELETE FROM oauth_poller_schema", &[])?;
        tx.execute(
            "INSERT INTO oauth_poller_schema (version) VALUES ($1)",
            &[version],
        )?;
    }
    tx.commit()?;
    Ok(current)
}

/// Runs `work` where the `postgres` client may block: here, unless this thread runs async
/// tasks (then on a thread of its own, which costs a thread start per call).
pub(crate) fn blocking<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    std::thread::scope(|s| match s.spawn(work).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
