//! The `polls` table: the poll writer's batches, and the queries behind `status` and
//! `history`.

use super::{connect, Handle, Store};
use crate::error::Error;
use crate::store::rows::{PollRecord, PollRow};
use crate::store::writer;
use rusqlite::{params, Connection};

/// The SQLite side of the [`PollWriter`]: its own connection, `synchronous=NORMAL`.
pub(crate) struct Sink {
    conn: Connection,
}

impl Sink {
    pub fn open(at: &Handle) -> Result<Sink, Error> {
        Ok(Sink {
            conn: connect(at.path(), false)?,
        })
    }
}

impl writer::Sink for Sink {
    fn insert(&mut self, batch: &[PollRecord]) -> Result<(), writer::InsertError> {
        insert_batch(&self.conn, batch).map_err(|e| {
            if super::tokens::is_full(&e) {
                writer::InsertError::Full(e.to_string())
            } else {
                writer::InsertError::Other(e.to_string())
            }
        })
    }

    fn prune(&mut self, before: i64) -> Result<(usize, usize), String> {
        prune(&self.conn, before).map_err(|e| e.to_string())
    }
}

fn insert_batch(conn: &Connection, batch: &[PollRecord]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO polls (account, endpoint, started_at, duration_ms, status, bytes, items, \
             changed, error, body, body_hash, pages, partial) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for p in batch {
            let body: Option<rusqlite::types::Value> =
                p.body.as_ref().map(|b| match std::str::from_utf8(b) {
                    Ok(s) => rusqlite::types::Value::Text(s.to_string()),
                    Err(_) => rusqlite::types::Value::Blob(b.clone()),
                });
            stmt.execute(params![
                p.account,
                p.endpoint,
                p.started_at,
                p.duration_ms,
                p.status,
                p.bytes,
                p.items,
                p.changed,
                p.error,
                body,
                p.body_hash,
                p.pages,
                p.partial,
            ])?;
        }
    }
    tx.commit()
}

fn prune(conn: &Connection, before: i64) -> rusqlite::Result<(usize, usize)> {
    let p = conn.execute("DELETE FROM polls WHERE started_at < ?1", [before])?;
    let e = conn.execute("DELETE FROM token_events WHERE at < ?1", [before])?;
    Ok((p, e))
}

fn poll_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PollRow> {
    Ok(PollRow {
        id: r.get(0)?,
        account: r.get(1)?,
        endpoint: r.get(2)?,
        started_at: r.get(3)?,
        duration_ms: r.get(4)?,
        status: r.get(5)?,
        bytes: r.get(6)?,
        items: r.get(7)?,
        changed: r.get(8)?,
        error: r.get(9)?,
        pages: r.get(10)?,
        partial: r.get(11)?,
    })
}

const POLL_COLUMNS: &str = "id, account, endpoint, started_at, duration_ms, status, bytes, items, \
     changed, error, pages, partial";

impl Store {
    /// Recent polls, newest first.
    pub fn polls(&self, account: Option<&str>, limit: usize) -> Result<Vec<PollRow>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {POLL_COLUMNS} FROM polls WHERE ?1 IS NULL OR account = ?1 \
                 ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![account, limit as i64], poll_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The last poll of each endpoint of an account, and how many polls in a row failed.
    pub fn endpoint_summary(
        &self,
        account: &str,
        endpoint: &str,
    ) -> Result<(Option<PollRow>, i64), Error> {
        let last = self
            .conn
            .prepare_cached(&format!(
                "SELECT {POLL_COLUMNS} FROM polls WHERE account = ?1 AND endpoint = ?2 \
                 ORDER BY id DESC LIMIT 1"
            ))
            .and_then(|mut s| {
                s.query_map(params![account, endpoint], poll_from_row)?
                    .next()
                    .transpose()
            })
            .map_err(|e| self.err(e))?;
        let failures: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM polls WHERE account = ?1 AND endpoint = ?2 AND id > \
                 COALESCE((SELECT MAX(id) FROM polls WHERE account = ?1 AND endpoint = ?2 \
                 AND error IS NULL), 0)",
                params![account, endpoint],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok((last, failures))
    }

    /// Endpoints an account has polls for.
    pub fn endpoints_of(&self, account: &str) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT endpoint FROM polls WHERE account = ?1 ORDER BY endpoint")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([account], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The body hash of an endpoint's last successful poll (change detection across restarts).
    pub fn last_body_hash(&self, account: &str, endpoint: &str) -> Result<Option<String>, Error> {
        self.conn
            .query_row(
                "SELECT body_hash FROM polls WHERE account = ?1 AND endpoint = ?2 \
                 AND body_hash IS NOT NULL ORDER BY id DESC LIMIT 1",
                params![account, endpoint],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(|e| self.err(e))
    }
}
