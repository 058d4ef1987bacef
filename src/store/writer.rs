//! The poll writer: poll rows are handed over without waiting and written on a thread of
//! its own, many rows a transaction, into whichever backend's [`Sink`].

use super::now;
use super::rows::PollRecord;
use crate::error::Error;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a backend writes a batch of poll rows, and prunes old history.
pub(crate) trait Sink: Send + 'static {
    /// Writes the rows in one transaction.
    fn insert(&mut self, batch: &[PollRecord]) -> Result<(), InsertError>;
    /// Deletes polls and token events older than `before`: (polls, events) deleted.
    fn prune(&mut self, before: i64) -> Result<(usize, usize), String>;
}

/// Why a batch was not written (the message names no secret: rows hold none).
pub(crate) enum InsertError {
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
}

impl PollWriter {
    /// Starts the writer thread on `sink`; `database` names the store in its messages.
    pub(crate) fn start(
        sink: impl Sink,
        database: String,
        keep_history: Duration,
    ) -> Result<PollWriter, Error> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("poll-writer".into())
            .spawn(move || writer_loop(sink, database, &theirs, keep_history))
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

fn writer_loop(mut sink: impl Sink, database: String, shared: &Shared, keep: Duration) {
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
            match sink.insert(&batch) {
                Ok(()) => {}
                Err(InsertError::Full(e)) => {
                    tracing::error!(database = %database, rows = batch.len(), error = %e,
                        "cannot store poll results: the database is full (the disk, or its size limit); the polls themselves went on and tokens are still stored");
                }
                Err(InsertError::Other(e)) => {
                    tracing::error!(database = %database, rows = batch.len(), error = %e,
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
            match sink.prune(now() - keep.as_secs() as i64) {
                Ok((p, e)) if p + e > 0 => tracing::info!(polls = p, events = e, "pruned history"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot prune history"),
            }
        }
    }
}
