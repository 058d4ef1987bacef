//! Moving a SQLite store into PostgreSQL (`migrate-store`): the SQLite store is read in one
//! read transaction (a [`Snapshot`]), then written into PostgreSQL in one transaction that
//! also migrates the target's schema and settles its encryption state: all or nothing.
//!
//! Tokens are compared account by account: a target token equal to the source's is left as
//! it is; one obtained or refreshed at the same second or later, but different, is newer
//! and refuses the whole move (unless forced), because copying over it would bring back a
//! refresh token the provider has already rotated. History rows (token events, polls) that
//! the target already holds, equal in every column but their id, are not copied again, so a
//! second run adds nothing.

use super::rows::{EventRow, Pending, PollRecord, TokenRow};
use super::{postgres, Handle};
use crate::error::Error;

/// Everything a SQLite store holds that moves: the tokens (opened with the store's key),
/// the token events and polls (oldest first), and the unexpired pending authorizations.
pub struct Snapshot {
    pub tokens: Vec<TokenRow>,
    pub events: Vec<EventRow>,
    pub polls: Vec<PollRecord>,
    /// (account, request)
    pub pending: Vec<(String, Pending)>,
}

/// Whether a target token may be replaced by the source's when it is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse the move when the target holds a newer token for any account.
    OlderOnly,
    /// `--force`: the source's tokens win.
    Newer,
}

/// What a move did.
#[derive(Debug)]
pub enum Moved {
    /// Committed.
    Done(Counts),
    /// Nothing changed: the target holds newer tokens for these accounts.
    Refused { newer: Vec<String> },
}

/// Rows written, and rows the target already held (left as they were).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub tokens: u64,
    pub tokens_present: u64,
    pub events: u64,
    pub events_present: u64,
    pub polls: u64,
    pub polls_present: u64,
    pub pending: u64,
    pub pending_present: u64,
}

impl Handle {
    /// Moves this store (SQLite) into `target` (PostgreSQL), which is opened with the same
    /// key. The source is only read.
    pub fn move_into(&self, target: &Handle, overwrite: Overwrite) -> Result<Moved, Error> {
        let (Handle::Sqlite(source), Handle::Postgres(target)) = (self, target) else {
            return Err(Error::runtime(
                "migrate-store moves a SQLite store into a PostgreSQL database",
            ));
        };
        if !source.path().exists() {
            return Err(Error::runtime(format!(
                "no database at {}: nothing to move",
                source.path().display()
            )));
        }
        let snapshot = source.open()?.snapshot()?;
        postgres::import(target, &snapshot, overwrite)
    }
}
