//! The store: tokens, token events, polls, pending authorizations and the refresh journal,
//! behind the one interface the rest of the crate uses. No SQL and no backend type leaves
//! this module; the crate sees [`Database`], [`Handle`], [`Store`], [`RefreshLock`],
//! [`RefreshGate`], [`PollWriter`], the row types and
//! [`StoreError`](crate::error::StoreError).
//!
//! Two backends keep the same guarantees: [`sqlite`], the embedded default (a file), and
//! [`postgres`], one database shared by many instances. Each operation is one `match` here,
//! so what one backend offers the other must offer too:
//! - [`Handle::open`] / [`Handle::open_existing`]: migrate (or check) the schema, refuse a
//!   newer one as bad input, settle the encryption state.
//! - Tokens: [`Store::token`], [`Store::tokens`], [`Store::event`], [`Store::events`],
//!   [`Store::mark_refresh_warned`]; [`Store::rekey`].
//! - [`Handle::lock`]: a [`RefreshLock`], the write lock under which a refresh is decided and
//!   its answer committed (durably, before the token is used), held for milliseconds.
//! - [`Handle::refresh_gate`]: what serializes one account's refreshes across processes and
//!   hosts while the provider is asked (a `flock` beside a SQLite file, an advisory lock in
//!   PostgreSQL).
//! - The refresh journal ([`Handle::journal_write`]): the provider's answer kept, before it
//!   is parsed, until it is committed, so a crash between the two spends no refresh token.
//! - Polls: [`PollWriter`] (batched writes off the async runtime, kept in a bounded buffer
//!   while the store is unavailable, see [`Health`]), [`Store::polls`],
//!   [`Store::endpoint_summary`], [`Store::endpoints_of`], [`Store::last_body_hash`].
//! - Pending authorizations: [`Store::put_pending`], [`Store::pending`],
//!   [`Store::clear_pending`].

pub mod crypto;
mod database;
mod health;
mod key_check;
mod postgres;
mod rows;
pub(crate) mod sqlite;
pub(crate) mod transfer;
mod writer;

pub use crypto::StoreKey;
pub use database::{Database, PgTarget};
pub use health::{Health, StoreState};
pub use postgres::{Cycle, Fence, Instance, LeaseStore};
pub use rows::{
    EventRow, JournalEntry, Pending, PollRecord, PollRow, TokenRow, TokenState, PENDING_TTL,
};
pub use transfer::{Counts, Moved, Overwrite};
pub use writer::PollWriter;

use crate::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where a store is and the key it is opened with: cheap to clone, for the parts that open
/// their own connection (refresh locks, the poll writer, the refresh journal).
#[derive(Debug, Clone)]
pub enum Handle {
    Sqlite(sqlite::Handle),
    Postgres(postgres::Handle),
}

/// One expression for each backend's value of the same name.
macro_rules! each {
    ($value:expr, $enum:ident, $inner:ident => $e:expr) => {
        match $value {
            $enum::Sqlite($inner) => $e,
            $enum::Postgres($inner) => $e,
        }
    };
}

impl Handle {
    pub fn new(database: &Database, key: Option<&StoreKey>) -> Handle {
        match database {
            Database::File(path) => Handle::Sqlite(sqlite::Handle::new(path, key)),
            Database::Postgres(target) => {
                Handle::Postgres(postgres::Handle::new(target.clone(), key))
            }
        }
    }

    /// The database, as messages name it (a PostgreSQL URL without its password).
    pub fn shown(&self) -> String {
        match self {
            Handle::Sqlite(h) => h.path().display().to_string(),
            Handle::Postgres(h) => h.target().to_string(),
        }
    }

    /// The lease operations, for a store that instances share (PostgreSQL); none for a
    /// SQLite file, which one host serves.
    pub fn lease_store(&self) -> Option<LeaseStore> {
        match self {
            Handle::Sqlite(_) => None,
            Handle::Postgres(h) => Some(h.lease_store()),
        }
    }

    /// This handle for a daemon instance holding leases: every commit is checked against
    /// them (a SQLite handle is unchanged).
    pub fn fenced(self, fence: Arc<Fence>) -> Handle {
        match self {
            Handle::Sqlite(h) => Handle::Sqlite(h),
            Handle::Postgres(h) => Handle::Postgres(h.fenced(fence)),
        }
    }

    /// This handle with the daemon's `lease_ttl` and `timeout`, which bound how long a token
    /// request another instance sent is waited for (PostgreSQL; a SQLite handle is
    /// unchanged).
    pub fn with_waits(self, lease_ttl: Duration, timeout: Duration) -> Handle {
        match self {
            Handle::Sqlite(h) => Handle::Sqlite(h),
            Handle::Postgres(h) => Handle::Postgres(h.with_waits(lease_ttl, timeout)),
        }
    }

    /// The SQLite file, if the store is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Handle::Sqlite(h) => Some(h.path()),
            Handle::Postgres(_) => None,
        }
    }

    /// Opens (creating if needed) and migrates the store.
    pub fn open(&self) -> Result<Store, Error> {
        Ok(match self {
            Handle::Sqlite(h) => Store::Sqlite(h.open()?),
            Handle::Postgres(h) => Store::Postgres(Box::new(h.open()?)),
        })
    }

    /// Opens an existing store without creating or migrating it (for `status`, `history`).
    pub fn open_existing(&self) -> Result<Store, Error> {
        Ok(match self {
            Handle::Sqlite(h) => Store::Sqlite(h.open_existing()?),
            Handle::Postgres(h) => Store::Postgres(Box::new(h.open_existing()?)),
        })
    }

    /// Takes the write lock for `account` (blocking while another holder commits), to
    /// decide or to commit. Held for milliseconds: never across a request to the provider.
    pub fn lock(&self, account: &str) -> Result<RefreshLock, Error> {
        Ok(match self {
            Handle::Sqlite(h) => RefreshLock::Sqlite(sqlite::Store::lock(h)?),
            Handle::Postgres(h) => RefreshLock::Postgres(Box::new(h.lock(account)?)),
        })
    }

    /// What serializes `account`'s refreshes across processes and hosts; unlike
    /// [`Handle::lock`], it may be held across the request to the provider.
    pub fn refresh_gate(&self, account: &str) -> Result<RefreshGate, Error> {
        Ok(match self {
            Handle::Sqlite(h) => RefreshGate::File(sqlite::Store::refresh_lock_file(h, account)?),
            Handle::Postgres(h) => RefreshGate::Postgres(Box::new(h.refresh_gate(account)?)),
        })
    }

    /// Journals a provider's 2xx answer the moment it arrives (sealed with the store's key
    /// when it has one). Best-effort: a failure is logged and the commit proceeds; returns
    /// whether the entry was written.
    pub fn journal_write(&self, account: &str, entry: &JournalEntry) -> bool {
        each!(self, Handle, h => h.journal_write(account, entry))
    }

    /// The account's journaled answer, if there is a complete one.
    pub fn journal_read(&self, account: &str) -> Option<JournalEntry> {
        each!(self, Handle, h => h.journal_read(account))
    }

    /// Forgets the account's journaled answer (once it is committed), and the record of
    /// this process's request.
    pub fn journal_remove(&self, account: &str) {
        each!(self, Handle, h => h.journal_remove(account))
    }

    /// A token request ended without an answer to commit: forgets its record.
    pub fn request_ended(&self, account: &str) {
        match self {
            Handle::Sqlite(_) => {}
            Handle::Postgres(h) => h.request_ended(account),
        }
    }

    /// Starts the poll writer: rows are written in batches on a thread of its own, and
    /// history older than `keep_history` is pruned. While the store cannot take them, at
    /// most `buffer` bytes of rows wait (the oldest beyond it are dropped, and counted).
    pub fn poll_writer(&self, keep_history: Duration, buffer: u64) -> Result<PollWriter, Error> {
        let (shown, health) = (self.shown(), self.health());
        match self {
            Handle::Sqlite(h) => PollWriter::start(
                sqlite::PollSink::open(h)?,
                shown,
                keep_history,
                health,
                buffer,
            ),
            Handle::Postgres(h) => {
                PollWriter::start(h.poll_sink()?, shown, keep_history, health, buffer)
            }
        }
    }

    /// Whether the store answers: shared by every clone of a PostgreSQL handle (a SQLite
    /// file is always there; its writer keeps a value of its own).
    pub fn health(&self) -> Health {
        match self {
            Handle::Sqlite(_) => Health::default(),
            Handle::Postgres(h) => h.health().clone(),
        }
    }
}

/// An open store.
pub enum Store {
    Sqlite(sqlite::Store),
    Postgres(Box<postgres::Store>),
}

impl Store {
    /// [`Handle::open`] for the SQLite database at `path`, with `key` (none: the store holds
    /// plaintext, and an encrypted store is refused).
    pub fn open(path: &Path, key: Option<&StoreKey>) -> Result<Store, Error> {
        Handle::Sqlite(sqlite::Handle::new(path, key)).open()
    }

    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        each!(self, Store, s => s.token(account))
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>, Error> {
        each!(self, Store, s => s.tokens())
    }

    pub fn event(&self, account: &str, event: &str, detail: &str) -> Result<(), Error> {
        each!(self, Store, s => s.event(account, event, detail))
    }

    /// Records that the refresh-token expiry warning was given at `at`.
    pub fn mark_refresh_warned(&self, account: &str, at: i64) -> Result<(), Error> {
        each!(self, Store, s => s.mark_refresh_warned(account, at))
    }

    /// Token events, newest first.
    pub fn events(&self, account: Option<&str>, limit: usize) -> Result<Vec<EventRow>, Error> {
        each!(self, Store, s => s.events(account, limit))
    }

    /// Re-seals every stored secret with `new_key`; returns how many.
    pub fn rekey(&self, new_key: &StoreKey) -> Result<usize, Error> {
        each!(self, Store, s => s.rekey(new_key))
    }

    /// Recent polls, newest first.
    pub fn polls(&self, account: Option<&str>, limit: usize) -> Result<Vec<PollRow>, Error> {
        each!(self, Store, s => s.polls(account, limit))
    }

    /// The last poll of an endpoint, and how many polls in a row failed.
    pub fn endpoint_summary(
        &self,
        account: &str,
        endpoint: &str,
    ) -> Result<(Option<PollRow>, i64), Error> {
        each!(self, Store, s => s.endpoint_summary(account, endpoint))
    }

    /// Endpoints an account has polls for.
    pub fn endpoints_of(&self, account: &str) -> Result<Vec<String>, Error> {
        each!(self, Store, s => s.endpoints_of(account))
    }

    /// The body hash of an endpoint's last successful poll (change detection across restarts).
    pub fn last_body_hash(&self, account: &str, endpoint: &str) -> Result<Option<String>, Error> {
        each!(self, Store, s => s.last_body_hash(account, endpoint))
    }

    /// Records a pending authorization (and forgets expired ones).
    pub fn put_pending(&self, account: &str, p: &Pending) -> Result<(), Error> {
        each!(self, Store, s => s.put_pending(account, p))
    }

    /// The account's unexpired pending authorization with this `state`, or (no state given)
    /// its newest one.
    pub fn pending(&self, account: &str, state: Option<&str>) -> Result<Option<Pending>, Error> {
        each!(self, Store, s => s.pending(account, state))
    }

    /// Forgets every pending authorization of the account (once one has been redeemed).
    pub fn clear_pending(&self, account: &str) -> Result<(), Error> {
        each!(self, Store, s => s.clear_pending(account))
    }
}

/// The write lock under which a refresh is decided or its answer committed. Dropped
/// uncommitted, it rolls back.
pub enum RefreshLock {
    Sqlite(sqlite::RefreshLock),
    Postgres(Box<postgres::RefreshLock>),
}

impl RefreshLock {
    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        each!(self, RefreshLock, l => l.token(account))
    }

    /// Before a refresh is requested: makes sure the answer will have room to be committed.
    /// When it would not, this fails and the refresh is not attempted: nothing is lost.
    pub fn ensure_room(&self) -> Result<(), Error> {
        each!(self, RefreshLock, l => l.ensure_room())
    }

    /// Writes the token and its event, and commits durably before returning. The stored
    /// generation becomes the previous one + 1; the row as stored is returned.
    pub fn commit_token(
        self,
        row: &TokenRow,
        event: &str,
        detail: &str,
    ) -> Result<TokenRow, Error> {
        each!(self, RefreshLock, l => l.commit_token(row, event, detail))
    }

    /// Records an event only and releases the lock (the token row is left as it was).
    pub fn commit_event(self, account: &str, event: &str, detail: &str) -> Result<(), Error> {
        each!(self, RefreshLock, l => l.commit_event(account, event, detail))
    }

    pub fn release(self) {
        each!(self, RefreshLock, l => l.release())
    }

    /// Before a token request from the token of `generation` is sent: records it, and
    /// commits (ending the lock) before the request goes out. Refused while a request
    /// another process sent from the same token may still be answered.
    ///
    /// SQLite records nothing: its refresh gate is a lock file the kernel releases only
    /// when its holder dies, and an answer its holder received died with it.
    pub fn commit_request(self, account: &str, generation: i64) -> Result<RequestClaim, Error> {
        match self {
            RefreshLock::Sqlite(l) => {
                l.release();
                Ok(RequestClaim::Claimed)
            }
            RefreshLock::Postgres(l) => (*l).commit_request(account, generation),
        }
    }
}

/// What [`RefreshLock::commit_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestClaim {
    /// Recorded as this process's request: send it.
    Claimed,
    /// Recorded as this process's, in place of a request `requester` sent from the same
    /// token that left no answer (its requester died, or gave no sign for too long): the
    /// provider may have spent the refresh token.
    Replaced { requester: String },
    /// A request `requester` sent from the same token may still be answered: its answer is
    /// waited for (it is journaled, and the next attempt commits it) rather than the
    /// refresh token, which the provider may already have spent, presented again.
    InFlight { requester: String, alive: bool },
}

/// One account's cross-process refresh gate, held from the decision to ask the provider to
/// the commit of its answer. Released when dropped, and by the system when its holder dies
/// (the kernel closes the file; PostgreSQL ends the session).
pub enum RefreshGate {
    File(std::fs::File),
    Postgres(Box<postgres::Gate>),
}

impl RefreshGate {
    /// Takes the gate if nobody holds it: `Ok(false)` while another process or host does.
    pub fn try_take(&mut self) -> Result<bool, String> {
        match self {
            RefreshGate::File(file) => match file.try_lock() {
                Ok(()) => Ok(true),
                Err(std::fs::TryLockError::WouldBlock) => Ok(false),
                Err(std::fs::TryLockError::Error(e)) => Err(e.to_string()),
            },
            RefreshGate::Postgres(gate) => gate.try_take(),
        }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
