//! The `tokens` and `token_events` tables, and the cross-process refresh lock.

use super::{connect, store_err, Handle, Store};
use crate::error::Error;
use crate::store::crypto::{self, StoreKey};
use crate::store::now;
use crate::store::rows::{EventRow, TokenRow, TokenState};
use rusqlite::{params, Connection, OptionalExtension, Row};
use secrecy::SecretString;
use std::path::Path;

pub(super) const TOKEN_COLUMNS: &str = "account, access_token, token_type, refresh_token, scope, \
     access_expires_at, refresh_expires_at, obtained_at, obtained_by, generation, state, \
     state_detail, last_refresh_at, refresh_warned_at";

pub(super) const EVENT_COLUMNS: &str = "id, account, at, event, detail";

pub(super) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        account: r.get(1)?,
        at: r.get(2)?,
        event: r.get(3)?,
        detail: r.get(4)?,
    })
}

pub(super) fn token_from_row(key: Option<&StoreKey>, r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    let account: String = r.get(0)?;
    let generation: i64 = r.get(9)?;
    let secret = |i: usize, column: &str| -> rusqlite::Result<Option<SecretString>> {
        crypto::open_token_secret(key, &account, column, generation, r.get(i)?).map_err(|m| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(m))
        })
    };
    let state: String = r.get(10)?;
    Ok(TokenRow {
        access_token: secret(1, "access_token")?,
        token_type: r.get(2)?,
        refresh_token: secret(3, "refresh_token")?,
        scope: r.get(4)?,
        access_expires_at: r.get(5)?,
        refresh_expires_at: r.get(6)?,
        obtained_at: r.get(7)?,
        obtained_by: r.get(8)?,
        generation,
        state: TokenState::from_stored(&state),
        state_detail: r.get(11)?,
        last_refresh_at: r.get(12)?,
        refresh_warned_at: r.get(13)?,
        account,
    })
}

fn read_token(
    conn: &Connection,
    key: Option<&StoreKey>,
    account: &str,
) -> rusqlite::Result<Option<TokenRow>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE account = ?1"
    ))?
    .query_row([account], |r| token_from_row(key, r))
    .optional()
}

/// Replaces the account's row; `generation` becomes the stored one + 1. Returns the new row.
fn write_token(
    conn: &Connection,
    key: Option<&StoreKey>,
    row: &TokenRow,
) -> rusqlite::Result<TokenRow> {
    let generation: i64 = conn.query_row(
        "SELECT COALESCE(MAX(generation), 0) + 1 FROM tokens WHERE account = ?1",
        [&row.account],
        |r| r.get(0),
    )?;
    let (access_token, refresh_token) = crypto::seal_token_secrets(key, row, generation);
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO tokens ({TOKEN_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        row.account,
        access_token,
        row.token_type,
        refresh_token,
        row.scope,
        row.access_expires_at,
        row.refresh_expires_at,
        row.obtained_at,
        row.obtained_by,
        generation,
        row.state.as_str(),
        row.state_detail,
        row.last_refresh_at,
        row.refresh_warned_at,
    ])?;
    let mut stored = row.clone();
    stored.generation = generation;
    Ok(stored)
}

fn add_event(conn: &Connection, account: &str, event: &str, detail: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO token_events (account, at, event, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![account, now(), event, detail])?;
    Ok(())
}

/// Is this SQLite's "database or disk is full" (a full disk, or `max_page_count` reached)?
pub(crate) fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Records an event outside any transaction, unless the database is full: the event is
/// history, and a full disk must not fail what it accompanies.
fn add_event_unless_full(conn: &Connection, account: &str, event: &str, detail: &str) {
    if let Err(e) = add_event(conn, account, event, detail) {
        tracing::warn!(account, event, error = %e,
            "token event not recorded (the token itself is stored)");
    }
}

/// The room kept in the `reserve` table: enough for the row, the event and a split or two of
/// the tokens table. A commit of a provider's answer deletes the reserve in its own
/// transaction first: SQLite rolls the whole transaction back on SQLITE_FULL, so the commit
/// must not need a page it does not already hold.
const RESERVE_BYTES: i64 = 64 * 1024;
/// The least room a refresh needs before it asks the provider: a token row with encrypted
/// values and an event, and a split of the tokens table.
const RESERVE_NEEDED: i64 = 32 * 1024;

/// Puts back as much of the reserve as fits, without asking for a page the database cannot
/// get (so it never fails a transaction with SQLITE_FULL).
fn refill_reserve(conn: &Connection) -> rusqlite::Result<()> {
    let held: i64 = conn.query_row(
        "SELECT COALESCE(SUM(length(filler)), 0) FROM reserve",
        [],
        |r| r.get(0),
    )?;
    let want = RESERVE_BYTES - held;
    if want <= 0 {
        return Ok(());
    }
    let pragma = |name: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
    };
    let (page_size, pages, max_pages, free) = (
        pragma("page_size")?,
        pragma("page_count")?,
        pragma("max_page_count")?,
        pragma("freelist_count")?,
    );
    // Every page the database can still get: the free list and the growth allowed. A blob of
    // `spare` overflow pages' worth fits exactly: its first part lives in the table's leaf.
    let spare = (max_pages - pages).max(0) + free;
    let bytes = want.min(spare * (page_size - 4));
    if bytes >= page_size {
        conn.execute(
            "INSERT INTO reserve (filler) VALUES (zeroblob(?1))",
            [bytes],
        )?;
    }
    Ok(())
}

/// At open: fills the reserve (best-effort).
pub(crate) fn top_up_reserve(conn: &Connection) {
    let _ = conn
        .execute_batch("BEGIN IMMEDIATE")
        .and_then(|_| refill_reserve(conn))
        .and_then(|_| conn.execute_batch("COMMIT"));
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

impl Store {
    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        read_token(&self.conn, self.key(), account).map_err(|e| self.err(e))
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY account"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| token_from_row(self.key(), r))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    pub fn event(&self, account: &str, event: &str, detail: &str) -> Result<(), Error> {
        add_event(&self.conn, account, event, detail).map_err(|e| self.err(e))
    }

    /// Records that the refresh-token expiry warning was given now.
    pub fn mark_refresh_warned(&self, account: &str, at: i64) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE tokens SET refresh_warned_at = ?2 WHERE account = ?1",
                params![account, at],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Token events, newest first.
    pub fn events(&self, account: Option<&str>, limit: usize) -> Result<Vec<EventRow>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM token_events \
                 WHERE ?1 IS NULL OR account = ?1 ORDER BY at DESC, id DESC LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![account, limit as i64], event_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Takes the database write lock (blocking up to the busy timeout) to decide or to
    /// commit, on a connection of its own. Held for milliseconds: never across a request to
    /// the provider.
    pub fn lock(at: &Handle) -> Result<RefreshLock, Error> {
        let conn = connect(at.path(), true)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| store_err(at.path(), e))?;
        Ok(RefreshLock {
            at: at.clone(),
            conn,
            open: true,
        })
    }

    /// Opens (creating, mode 0600) the file whose `flock` serializes one account's refreshes
    /// across processes: `{database}-lock-{account}`. The lock, unlike SQLite's, may be held
    /// across the request to the provider: nobody else needs it to read or write the store,
    /// and the kernel releases it when its holder dies.
    pub fn refresh_lock_file(at: &Handle, account: &str) -> Result<std::fs::File, Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let db = at.path();
        let mut p = db.as_os_str().to_owned();
        p.push(format!("-lock-{account}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(0o600)
            .open(&p)
            .map_err(|e| {
                Error::runtime(format!(
                    "cannot open the refresh lock {}: {e}",
                    Path::new(&p).display()
                ))
            })?;
        // Root running `token` must not leave a lock the service cannot open.
        if let Err(e) = super::access::give_database_owner(db, &file) {
            tracing::warn!(error = %e, "cannot give the refresh lock the database's owner");
        }
        Ok(file)
    }
}

/// The database write lock (`BEGIN IMMEDIATE`), held while a refresh is decided or its
/// answer committed. Dropped uncommitted, it rolls back.
pub struct RefreshLock {
    at: Handle,
    conn: Connection,
    open: bool,
}

impl RefreshLock {
    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        read_token(&self.conn, self.at.key(), account).map_err(|e| store_err(self.at.path(), e))
    }

    /// Before a refresh is requested: makes sure the reserve holds room for committing the
    /// answer (refilling it if it can). When the database is full this fails and the
    /// refresh is not attempted: nothing is lost. The refill is kept by [`Self::release`].
    pub fn ensure_room(&self) -> Result<(), Error> {
        refill_reserve(&self.conn).map_err(|e| store_err(self.at.path(), e))?;
        let held: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(length(filler)), 0) FROM reserve",
                [],
                |r| r.get(0),
            )
            .map_err(|e| store_err(self.at.path(), e))?;
        if held < RESERVE_NEEDED {
            return Err(Error::runtime(format!(
                "database {}: too little room left to commit a new token ({held} of {RESERVE_NEEDED} bytes reserved)",
                self.at.path().display()
            )));
        }
        Ok(())
    }

    /// Writes the token and its event, and commits (fsync) before returning. The reserve is
    /// freed first in the same transaction, so a full disk cannot fail the commit.
    pub fn commit_token(
        mut self,
        row: &TokenRow,
        event: &str,
        detail: &str,
    ) -> Result<TokenRow, Error> {
        let err = |e| store_err(self.at.path(), e);
        self.conn.execute("DELETE FROM reserve", []).map_err(err)?;
        let stored = write_token(&self.conn, self.at.key(), row).map_err(err)?;
        add_event(&self.conn, &row.account, event, detail).map_err(err)?;
        self.conn.execute_batch("COMMIT").map_err(err)?;
        self.open = false;
        // Put back after the commit: off the path between the provider's answer and the
        // commit. Should the poll writer take the freed pages first, the next refresh finds
        // too little room and is postponed, never lost.
        top_up_reserve(&self.conn);
        Ok(stored)
    }

    /// Records an event only and releases the lock (the token row is left as it was).
    pub fn commit_event(mut self, account: &str, event: &str, detail: &str) -> Result<(), Error> {
        self.finish();
        add_event_unless_full(&self.conn, account, event, detail);
        Ok(())
    }

    /// Ends the transaction, keeping only what [`Self::ensure_room`] refilled.
    fn finish(&mut self) {
        if self.open {
            if self.conn.execute_batch("COMMIT").is_err() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.open = false;
        }
    }

    pub fn release(mut self) {
        self.finish();
    }
}

impl Drop for RefreshLock {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
