//! Whether the store answers, and what the poll writer keeps while it does not. One value
//! per store handle, shared (cheaply cloned) by the parts that reach the store: the poll
//! writer and the token reads mark it, `/metrics`, `/healthz` and the systemd status line
//! read it. The transitions are logged here, once each, whoever noticed them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Health(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// The Unix time the store stopped answering; 0 while it answers.
    down_since: AtomicI64,
    /// The Unix time the store last answered again after not answering; 0 if it never
    /// stopped.
    returned_at: AtomicI64,
    buffered_rows: AtomicU64,
    buffered_bytes: AtomicU64,
    dropped_rows: AtomicU64,
}

/// What [`Health::state`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreState {
    /// Since when (Unix time) the store has been unavailable; None while it answers.
    pub down_since: Option<i64>,
    /// Poll rows kept in memory, not yet written.
    pub buffered_rows: u64,
    pub buffered_bytes: u64,
    /// Poll rows dropped since the daemon started (the buffer was full, or the store
    /// refused them).
    pub dropped_rows: u64,
}

impl StoreState {
    /// `store unavailable since 2026-...Z; N poll rows buffered` (None while it answers).
    pub fn outage(&self) -> Option<String> {
        let since = self.down_since?;
        Some(format!(
            "store unavailable since {}; {} poll rows buffered, {} dropped",
            crate::time::format_utc(since),
            self.buffered_rows,
            self.dropped_rows
        ))
    }
}

impl Health {
    pub fn state(&self) -> StoreState {
        let since = self.0.down_since.load(Relaxed);
        StoreState {
            down_since: (since != 0).then_some(since),
            buffered_rows: self.0.buffered_rows.load(Relaxed),
            buffered_bytes: self.0.buffered_bytes.load(Relaxed),
            dropped_rows: self.0.dropped_rows.load(Relaxed),
        }
    }

    pub fn unavailable(&self) -> bool {
        self.0.down_since.load(Relaxed) != 0
    }

    /// Whether the store has answered for at least `secs` seconds without a break seen by
    /// this handle.
    pub(crate) fn steady_for(&self, secs: i64) -> bool {
        let returned = self.0.returned_at.load(Relaxed);
        !self.unavailable() && (returned == 0 || super::now().saturating_sub(returned) >= secs)
    }

    /// The store did not answer (`database` and `error` name no secret).
    pub(crate) fn down(&self, database: &str, error: &str) {
        let t = super::now().max(1);
        if self
            .0
            .down_since
            .compare_exchange(0, t, Relaxed, Relaxed)
            .is_ok()
        {
            tracing::error!(database, error,
                "store unavailable: polls go on while the access tokens are valid, their rows are kept in memory (up to `poll_buffer`) and written when it returns; no token is refreshed until then");
        }
    }

    /// The store answered.
    pub(crate) fn up(&self, database: &str) {
        let since = self.0.down_since.swap(0, Relaxed);
        if since != 0 {
            self.0.returned_at.store(super::now(), Relaxed);
            tracing::info!(
                database,
                down_s = super::now().saturating_sub(since),
                buffered_rows = self.0.buffered_rows.load(Relaxed),
                "store available again"
            );
        }
    }

    pub(crate) fn set_buffered(&self, rows: usize, bytes: usize) {
        self.0.buffered_rows.store(rows as u64, Relaxed);
        self.0.buffered_bytes.store(bytes as u64, Relaxed);
    }

    /// Counts `rows` dropped; returns the total so far.
    pub(crate) fn dropped(&self, rows: usize) -> u64 {
        self.0.dropped_rows.fetch_add(rows as u64, Relaxed) + rows as u64
    }
}
