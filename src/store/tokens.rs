//! The `tokens` and `token_events` tables, and the cross-process refresh lock.

use super::{connect, now, store_err, Store};
use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension, Row};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Ok,
    NeedsReauth,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Ok => "ok",
            TokenState::NeedsReauth => "needs_reauth",
        }
    }
}

/// One account's stored token. Secrets stay wrapped; `Debug` redacts them.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub account: String,
    pub access_token: Option<SecretString>,
    pub token_type: Option<String>,
    pub refresh_token: Option<SecretString>,
    pub scope: Option<String>,
    pub access_expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub obtained_at: i64,
    pub obtained_by: String,
    pub generation: i64,
    pub state: TokenState,
    pub state_detail: Option<String>,
    pub last_refresh_at: Option<i64>,
    pub refresh_warned_at: Option<i64>,
}

impl TokenRow {
    /// A new row for `account` (generation is set on write).
    pub fn new(account: &str, obtained_by: &str, obtained_at: i64) -> TokenRow {
        TokenRow {
            account: account.to_string(),
            access_token: None,
            token_type: None,
            refresh_token: None,
            scope: None,
            access_expires_at: None,
            refresh_expires_at: None,
            obtained_at,
            obtained_by: obtained_by.to_string(),
            generation: 0,
            state: TokenState::Ok,
            state_detail: None,
            last_refresh_at: None,
            refresh_warned_at: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub account: String,
    pub at: i64,
    pub event: String,
    pub detail: Option<String>,
}

const TOKEN_COLUMNS: &str = "account, access_token, token_type, refresh_token, scope, \
     access_expires_at, refresh_expires_at, obtained_at, obtained_by, generation, state, \
     state_detail, last_refresh_at, refresh_warned_at";

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    let secret = |i: usize| -> rusqlite::Result<Option<SecretString>> {
        Ok(r.get::<_, Option<String>>(i)?.map(SecretString::from))
    };
    let state: String = r.get(10)?;
    Ok(TokenRow {
        account: r.get(0)?,
        access_token: secret(1)?,
        token_type: r.get(2)?,
        refresh_token: secret(3)?,
        scope: r.get(4)?,
        access_expires_at: r.get(5)?,
        refresh_expires_at: r.get(6)?,
        obtained_at: r.get(7)?,
        obtained_by: r.get(8)?,
        generation: r.get(9)?,
        state: if state == "needs_reauth" {
            TokenState::NeedsReauth
        } else {
            TokenState::Ok
        },
        state_detail: r.get(11)?,
        last_refresh_at: r.get(12)?,
        refresh_warned_at: r.get(13)?,
    })
}

fn read_token(conn: &Connection, account: &str) -> rusqlite::Result<Option<TokenRow>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE account = ?1"
    ))?
    .query_row([account], token_from_row)
    .optional()
}

/// Replaces the account's row; `generation` becomes the stored one + 1. Returns the new row.
fn write_token(conn: &Connection, row: &TokenRow) -> rusqlite::Result<TokenRow> {
    let expose = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_string());
    let generation: i64 = conn.query_row(
        "SELECT COALESCE(MAX(generation), 0) + 1 FROM tokens WHERE account = ?1",
        [&row.account],
        |r| r.get(0),
    )?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO tokens ({TOKEN_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        row.account,
        expose(&row.access_token),
        row.token_type,
        expose(&row.refresh_token),
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
pub fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Records an event unless the database is full: the event is history, the token it
/// accompanies is the grant, and a full disk must not cost the grant.
fn add_event_unless_full(
    conn: &Connection,
    account: &str,
    event: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.execute_batch("SAVEPOINT token_event")?;
    match add_event(conn, account, event, detail) {
        Ok(()) => conn.execute_batch("RELEASE token_event"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO token_event; RELEASE token_event");
            if is_full(&e) {
                tracing::warn!(
                    account,
                    event,
                    "the database is full: token event not recorded (the token itself is stored)"
                );
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

impl Store {
    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        read_token(&self.conn, account).map_err(|e| self.err(e))
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY account"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], token_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Writes a token and an event in one durable transaction.
    pub fn put_token(
        &mut self,
        row: &TokenRow,
        event: &str,
        detail: &str,
    ) -> Result<TokenRow, Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| store_err(&path, e))?;
        let stored = write_token(&tx, row).map_err(|e| store_err(&path, e))?;
        add_event_unless_full(&tx, &row.account, event, detail).map_err(|e| store_err(&path, e))?;
        tx.commit().map_err(|e| store_err(&path, e))?;
        Ok(stored)
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
            .prepare(
                "SELECT id, account, at, event, detail FROM token_events \
                 WHERE ?1 IS NULL OR account = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![account, limit as i64], |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    at: r.get(2)?,
                    event: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Takes the database write lock for a refresh (blocking up to the busy timeout).
    pub fn lock(path: &Path) -> Result<RefreshLock, Error> {
        let conn = connect(path, true)?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| store_err(path, e))?;
        Ok(RefreshLock {
            path: path.to_path_buf(),
            conn,
            open: true,
        })
    }
}

/// The database write lock, held while one refresh is decided, requested and committed.
/// Other processes' refreshes wait on it; readers (WAL) do not. Dropped uncommitted, it
/// rolls back.
pub struct RefreshLock {
    path: PathBuf,
    conn: Connection,
    open: bool,
}

impl RefreshLock {
    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        read_token(&self.conn, account).map_err(|e| store_err(&self.path, e))
    }

    /// Writes the token and its event, and commits (fsync) before returning.
    pub fn commit_token(
        mut self,
        row: &TokenRow,
        event: &str,
        detail: &str,
    ) -> Result<TokenRow, Error> {
        let stored = write_token(&self.conn, row).map_err(|e| store_err(&self.path, e))?;
        add_event_unless_full(&self.conn, &row.account, event, detail)
            .map_err(|e| store_err(&self.path, e))?;
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| store_err(&self.path, e))?;
        self.open = false;
        Ok(stored)
    }

    /// Records an event only and releases the lock.
    pub fn commit_event(mut self, account: &str, event: &str, detail: &str) -> Result<(), Error> {
        add_event_unless_full(&self.conn, account, event, detail)
            .map_err(|e| store_err(&self.path, e))?;
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| store_err(&self.path, e))?;
        self.open = false;
        Ok(())
    }

    pub fn release(mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        self.open = false;
    }
}

impl Drop for RefreshLock {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
