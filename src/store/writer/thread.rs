//! The writer thread: gathers rows into batches, writes them in order, keeps them while the
//! store cannot take them and tries again with a growing delay, prunes old history.

use super::{Backlog, Health, InsertError, Shared, Sink};
use crate::store::now;
use std::time::{Duration, Instant};

const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long the writer gathers rows before one commit, and at most how many.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
pub(super) const BATCH_ROWS: usize = 1000;
/// The delay before a failed write is tried again, doubling up to the cap: the store is
/// found again within seconds of its return, and a long outage costs a try every few
/// seconds.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(5);
/// Rows dropped are said at most this often (with the total so far).
const DROPS_SAID_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Writer {
    pub database: String,
    pub health: Health,
    pub backlog: Backlog,
    pub keep: Duration,
}

/// While writes fail: when to try again, and the delay after that.
struct Retry {
    at: Instant,
    delay: Duration,
    /// The store was unreachable: another part of the daemon reaching it makes the retry
    /// due at once.
    unreachable: bool,
}

impl Writer {
    pub fn run(mut self, mut sink: impl Sink, shared: &Shared) {
        let mut last_prune: Option<Instant> = None;
        let mut retry: Option<Retry> = None;
        let mut drops_said: Option<Instant> = None;
        loop {
            let (incoming, flushed, closed) = {
                let mut p = shared.lock();
                loop {
                    if !p.rows.is_empty() || !p.flushed.is_empty() || p.closed {
                        break;
                    }
                    match &retry {
                        None => shared.wake.wait(&mut p),
                        Some(r) => {
                            let left = r.at.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            shared.wake.wait_for(&mut p, left);
                        }
                    }
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
            let dropped = self.backlog.extend(incoming);
            if dropped > 0 {
                let total = self.health.dropped(dropped);
                if drops_said.is_none_or(|t| t.elapsed() >= DROPS_SAID_EVERY) {
                    drops_said = Some(Instant::now());
                    tracing::warn!(database = %self.database, dropped_total = total,
                        kept = self.backlog.len(),
                        "poll rows dropped: the store cannot take them and the buffer (`poll_buffer`) is full; the oldest go first");
                }
            }
            let due = retry.as_ref().is_none_or(|r| {
                r.at <= Instant::now() || (r.unreachable && !self.health.unavailable())
            });
            if due || closed || !flushed.is_empty() {
                retry = self.write(&mut sink, retry.map(|r| r.delay));
            }
            self.health
                .set_buffered(self.backlog.len(), self.backlog.bytes());
            for w in flushed {
                let _ = w.send(());
            }
            if closed {
                if !self.backlog.is_empty() {
                    let total = self.health.dropped(self.backlog.len());
                    tracing::error!(database = %self.database, rows = self.backlog.len(),
                        dropped_total = total,
                        "poll rows not written at shutdown: the store is unavailable");
                }
                return;
            }
            if retry.is_none() && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                match sink.prune(now() - self.keep.as_secs() as i64) {
                    Ok((p, e)) if p + e > 0 => {
                        tracing::info!(polls = p, events = e, "pruned history")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot prune history"),
                }
            }
        }
    }

    /// Writes the backlog, oldest first, a batch a transaction. Returns when to try again
    /// if the store could not take a batch (`failing`: the delay of the try that just came
    /// due, if the previous one failed).
    fn write(&mut self, sink: &mut impl Sink, failing: Option<Duration>) -> Option<Retry> {
        while !self.backlog.is_empty() {
            let batch = self.backlog.front(BATCH_ROWS);
            let n = batch.len();
            let (kept, message, error) = match sink.insert(batch) {
                Ok(()) => {
                    self.backlog.pop(n);
                    self.health.up(&self.database);
                    continue;
                }
                Err(InsertError::Unavailable(e)) => {
                    self.health.down(&self.database, &e);
                    return Some(retry_after(failing, true));
                }
                Err(InsertError::Full(e)) => (
                    true,
                    "cannot store poll results: the database is full (the disk, or its size limit); the rows are kept (up to `poll_buffer`) and tried again, the polls themselves went on and tokens are still stored",
                    e,
                ),
                Err(InsertError::Other(e)) => (
                    false,
                    "cannot store poll results (the polls themselves went on); the rows are dropped",
                    e,
                ),
            };
            // Said once per streak of failures, not at every try.
            if failing.is_none() {
                tracing::error!(database = %self.database, rows = n, error = %error, "{message}");
            }
            if kept {
                return Some(retry_after(failing, false));
            }
            self.backlog.pop(n);
            self.health.dropped(n);
        }
        None
    }
}

fn retry_after(failing: Option<Duration>, unreachable: bool) -> Retry {
    let delay = failing.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_CAP));
    Retry {
        at: Instant::now() + delay,
        delay,
        unreachable,
    }
}
