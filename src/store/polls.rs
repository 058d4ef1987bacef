//! The `polls` table: a writer thread that batches inserts, and the queries behind
//! `status` and `history`.

use super::{connect, now, Handle, Store};
use crate::error::Error;
use parking_lot::{Condvar, Mutex, MutexGuard};
use rusqlite::{params, Connection};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One poll's outcome, as stored.
#[derive(Debug, Clone)]
pub struct PollRecord {
    pub account: String,
    pub endpoint: String,
    pub started_at: i64,
    /// Milliseconds, with microseconds as the fraction.
    pub duration_ms: f64,
    pub status: Option<u16>,
    pub bytes: Option<i64>,
    pub items: Option<i64>,
    pub changed: Option<bool>,
    pub error: Option<String>,
    pub body: Option<Vec<u8>>,
    pub body_hash: Option<String>,
    /// Pages fetched in full (None: the poll failed before its first page).
    pub pages: Option<u32>,
    /// The poll stopped at `max_pages`: the body is not the whole collection.
    pub partial: bool,
}

/// A stored poll, for `status` and `history`.
#[derive(Debug, Clone)]
pub struct PollRow {
    pub id: i64,
    pub account: String,
    pub endpoint: String,
    pub started_at: i64,
    /// Milliseconds, with microseconds as the fraction.
    pub duration_ms: f64,
    pub status: Option<i64>,
    pub bytes: Option<i64>,
    pub items: Option<i64>,
    pub changed: Option<bool>,
    pub error: Option<String>,
    pub pages: Option<i64>,
    pub partial: Option<bool>,
}

/// Rows waiting for the writer, and who waits for them to be committed.
#[derive(Default)]
struct Pending {
    rows: Vec<PollRecord>,
    flushed: Vec<mpsc::Sender<()>>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock()
    }
}

/// Writes poll rows on its own thread and connection, many rows a transaction, so a busy
/// schedule costs one fsync-free commit per batch and never blocks the async runtime.
/// A row only wakes the writer when it starts a batch: the rows after it within the
/// window cost a push under an uncontended lock, not a thread wake-up each.
pub struct PollWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl PollWriter {
    pub fn start(at: &Handle, keep_history: Duration) -> Result<PollWriter, Error> {
        let path = at.path();
        let conn = connect(path, false)?;
        let shared = Arc::new(Shared::default());
        let path = path.to_path_buf();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("poll-writer".into())
            .spawn(move || writer_loop(conn, path, &theirs, keep_history))
            .map_err(|e| Error::runtime(format!("cannot start the poll writer: {e}")))?;
        Ok(PollWriter {
            shared,
            thread: Some(thread),
        })
    }

    pub fn record(&self, poll: PollRecord) {
        let mut p = self.shared.lock();
        p.rows.push(poll);
        if p.rows.len() == 1 || p.rows.len() == BATCH_ROWS {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every row sent so far is committed (or failed).
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        {
            let mut p = self.shared.lock();
            if p.closed {
                return;
            }
            p.flushed.push(done_tx);
        }
        self.shared.wake.notify_one();
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
    }
}

impl Drop for PollWriter {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long the writer gathers rows before one commit, and at most how many.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
const BATCH_ROWS: usize = 1000;

fn writer_loop(conn: Connection, path: PathBuf, shared: &Shared, keep: Duration) {
    let mut last_prune: Option<Instant> = None;
    loop {
        let (batch, flushed, closed) = {
            let mut p = shared.lock();
            while p.rows.is_empty() && p.flushed.is_empty() && !p.closed {
                shared.wake.wait(&mut p);
            }
            // Gather what arrives within a short window: one commit (and its WAL
            // checksums) for many rows. A flush or shutdown commits at once.
            let window_end = Instant::now() + BATCH_WINDOW;
            while p.flushed.is_empty() && !p.closed && p.rows.len() < BATCH_ROWS {
                let left = window_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                shared.wake.wait_for(&mut p, left);
            }
            (
                std::mem::take(&mut p.rows),
                std::mem::take(&mut p.flushed),
                p.closed,
            )
        };
        if !batch.is_empty() {
            match insert_batch(&conn, &batch) {
                Ok(()) => {}
                Err(e) if super::tokens::is_full(&e) => {
                    tracing::error!(database = %path.display(), rows = batch.len(), error = %e,
                        "cannot store poll results: the database is full (the disk, or its size limit); the polls themselves went on and tokens are still stored");
                }
                Err(e) => {
                    tracing::error!(database = %path.display(), rows = batch.len(), error = %e,
                        "cannot store poll results (the polls themselves went on)");
                }
            }
        }
        for w in flushed {
            let _ = w.send(());
        }
        if closed {
            return;
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            match prune(&conn, now() - keep.as_secs() as i64) {
                Ok((p, e)) if p + e > 0 => tracing::info!(polls = p, events = e, "pruned history"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot prune history"),
            }
        }
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
