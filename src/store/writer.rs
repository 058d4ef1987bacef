//! The poll writer: poll rows are handed over without waiting and written on a thread of
//! its own, many rows a transaction, into whichever backend's [`Sink`]. While the store
//! cannot take them (PostgreSQL down, a full disk), the rows wait in a bounded
//! [`Backlog`] and are tried again with a growing delay, in order; beyond the bound the
//! oldest are dropped and counted ([`Health`]).

use super::health::Health;
use super::rows::PollRecord;
use crate::error::Error;
use backlog::Backlog;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where a backend writes a batch of poll rows, and prunes old history.
pub(crate) trait Sink: Send + 'static {
    /// Writes the rows in one transaction.
    fn insert(&mut self, batch: &[PollRecord]) -> Result<(), InsertError>;
    /// Deletes polls and token events older than `before`: (polls, events) deleted.
    fn prune(&mut self, before: i64) -> Result<(usize, usize), String>;
}

/// Why a batch was not written (the message names no secret: rows hold none).
pub(crate) enum InsertError {
    /// The store cannot be reached (PostgreSQL down or restarting): kept, tried again.
    Unavailable(String),
    /// The database is full (the disk, or its size limit).
    Full(String),
    Other(String),
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
    health: Health,
}

impl PollWriter {
    /// Starts the writer thread on `sink`; `database` names the store in its messages, and
    /// at most `buffer` bytes of rows wait while the store cannot take them.
    pub(crate) fn start(
        sink: impl Sink,
        database: String,
        keep_history: Duration,
        health: Health,
        buffer: u64,
    ) -> Result<PollWriter, Error> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let writer = Writer {
            database,
            health: health.clone(),
            backlog: Backlog::new(buffer),
            keep: keep_history,
        };
        let thread = std::thread::Builder::new()
            .name("poll-writer".into())
            .spawn(move || writer.run(sink, &theirs))
            .map_err(|e| Error::runtime(format!("cannot start the poll writer: {e}")))?;
        Ok(PollWriter {
            shared,
            thread: Some(thread),
            health,
        })
    }

    /// Whether the store answers, and the rows waiting or dropped.
    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn record(&self, poll: PollRecord) {
        let mut p = self.shared.lock();
        p.rows.push(poll);
        if p.rows.len() == 1 || p.rows.len() == BATCH_ROWS {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every row sent so far is committed (or failed: kept for later while the
    /// store is unavailable).
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

mod backlog;
mod thread;

use thread::{Writer, BATCH_ROWS};
