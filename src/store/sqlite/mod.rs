//! The SQLite backend, the embedded default: one file (mode 0600) in a directory only its
//! owner can write. Each purpose gets its own connection: token reads and writes
//! (`synchronous=FULL`, so a rotated refresh token is on disk before it is used), refresh
//! locks (a fresh connection holding `BEGIN IMMEDIATE`, the cross-process write lock), and
//! the poll writer (batched, `synchronous=NORMAL`: a lost poll row costs nothing, a lost
//! token costs a grant). One account's refreshes are serialized across processes by a
//! `flock` on `{database}-lock-{account}`, and the refresh journal is a file beside the
//! database ([`pending`]).

pub(crate) mod access;
mod authorizations;
pub mod keyed;
mod migrate;
pub mod pending;
mod polls;
mod snapshot;
mod tokens;

pub(crate) use polls::Sink as PollSink;
pub use tokens::RefreshLock;

use crate::error::{Error, StoreError};
use crate::store::crypto::StoreKey;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connection waits for another's write lock before giving up. An operator may
/// hold a transaction open in `sqlite3`; the daemon waits rather than fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable: the most pages the database may grow to (`PRAGMA max_page_count`).
pub const MAX_PAGES_ENV: &str = "OAUTH_POLLER_MAX_DB_PAGES";

/// Where a store is and the key it is opened with: cheap to clone, for the parts that open
/// their own connection or file (refresh locks, the poll writer, the refresh journal).
#[derive(Debug, Clone)]
pub struct Handle {
    path: PathBuf,
    key: Option<StoreKey>,
}

impl Handle {
    pub fn new(path: &Path, key: Option<&StoreKey>) -> Handle {
        Handle {
            path: path.to_path_buf(),
            key: key.cloned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn key(&self) -> Option<&StoreKey> {
        self.key.as_ref()
    }

    pub fn journal_write(&self, account: &str, entry: &crate::store::JournalEntry) -> bool {
        pending::write(self, account, entry)
    }

    pub fn journal_read(&self, account: &str) -> Option<crate::store::JournalEntry> {
        pending::read(self, account)
    }

    pub fn journal_remove(&self, account: &str) {
        pending::remove(self, account)
    }

    /// Opens (creating with mode 0600 if needed) and migrates the database.
    pub fn open(&self) -> Result<Store, Error> {
        let path = self.path();
        access::check(path)?;
        if path.exists() {
            migrate::refuse_newer(path)?;
        }
        create_private(path)?;
        let conn = connect(path, true)?;
        let store = Store {
            at: self.clone(),
            conn,
        };
        migrate::migrate(&store.conn).map_err(|e| store.err(e))?;
        tokens::top_up_reserve(&store.conn);
        store.restrict_sidecars();
        keyed::settle(&store)?;
        Ok(store)
    }

    /// Opens an existing database without creating or migrating it (for `status`, `history`).
    pub fn open_existing(&self) -> Result<Store, Error> {
        let path = self.path();
        if !path.exists() {
            return Err(Error::runtime(format!(
                "no database at {}: start the daemon or seed an account first",
                path.display()
            )));
        }
        access::check(path)?;
        migrate::refuse_newer(path)?;
        let conn = connect(path, true)?;
        let store = Store {
            at: self.clone(),
            conn,
        };
        migrate::check_version(&store.conn).map_err(|e| store.err(e))?;
        keyed::settle(&store)?;
        Ok(store)
    }
}

/// An open store: its connection for token reads and writes, and its key.
pub struct Store {
    at: Handle,
    conn: Connection,
}

impl Store {
    /// [`Handle::open`] for the database at `path`, with `key` (none: the store holds
    /// plaintext, and an encrypted store is refused).
    pub fn open(path: &Path, key: Option<&StoreKey>) -> Result<Store, Error> {
        Handle::new(path, key).open()
    }

    /// [`Handle::open_existing`] for the database at `path`, with `key`.
    pub fn open_existing(path: &Path, key: Option<&StoreKey>) -> Result<Store, Error> {
        Handle::new(path, key).open_existing()
    }

    pub fn handle(&self) -> &Handle {
        &self.at
    }

    pub fn path(&self) -> &Path {
        self.at.path()
    }

    pub(crate) fn key(&self) -> Option<&StoreKey> {
        self.at.key()
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> Error {
        store_err(self.path(), source)
    }

    /// The `-wal` and `-shm` files hold token values too: same mode as the database.
    fn restrict_sidecars(&self) {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["-wal", "-shm"] {
            let mut p = self.path().as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}

pub(crate) fn store_err(path: &Path, source: rusqlite::Error) -> Error {
    Error::Store(StoreError::new(path.display(), source))
}

/// A connection with the store's settings. `durable`: fsync every commit.
pub(crate) fn connect(path: &Path, durable: bool) -> Result<Connection, Error> {
    let conn = Connection::open(path).map_err(|e| store_err(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| store_err(path, e))?;
    let sync = if durable { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(|e| store_err(path, e))?;
    // A size limit in pages (SQLite's `max_page_count`, per connection): for a small disk,
    // and for the tests that show what a full disk does.
    if let Some(pages) = std::env::var(MAX_PAGES_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        conn.execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .map_err(|e| store_err(path, e))?;
    }
    Ok(conn)
}

/// Creates the database file with mode 0600 before SQLite does (SQLite would use 0644), and
/// its missing directories with mode 0700 (whatever the umask).
fn create_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::runtime(format!("cannot create directory {}: {e}", dir.display()))
            })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::runtime(format!("cannot create database {}: {e}", path.display())))?;
    Ok(())
}
