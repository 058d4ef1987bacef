//! The whole store read for `migrate-store`, in one read transaction (a consistent copy
//! while other readers and writers go on), secrets opened with the store's key.

use super::authorizations::verifier;
use super::tokens::{event_from_row, token_from_row, EVENT_COLUMNS, TOKEN_COLUMNS};
use super::{pending, Store};
use crate::error::Error;
use crate::store::crypto;
use crate::store::now;
use crate::store::rows::{Pending, PollRecord, PENDING_TTL};
use crate::store::transfer::Snapshot;
use rusqlite::types::Value;
use secrecy::SecretString;

impl Store {
    /// Refused while a refresh journal waits to be committed: its answer holds the newest
    /// refresh token, which the copy would leave behind.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let key = self.key();
        let tokens = tx
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY account"
            ))
            .and_then(|mut s| {
                s.query_map([], |r| token_from_row(key, r))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(e))?;
        for t in &tokens {
            let journal = pending::path(self.path(), &t.account);
            if journal.symlink_metadata().is_ok() {
                return Err(Error::runtime(format!(
                    "account `{}`: a refresh journal is waiting to be committed ({}): run `oauth-poller poll-once` first, then migrate-store",
                    t.account,
                    journal.display()
                )));
            }
        }
        let events = tx
            .prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM token_events ORDER BY id"
            ))
            .and_then(|mut s| {
                s.query_map([], event_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(e))?;
        let polls = tx
            .prepare(
                "SELECT account, endpoint, started_at, duration_ms, status, bytes, items, \
                 changed, error, body, body_hash, pages, partial FROM polls ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(PollRecord {
                        account: r.get(0)?,
                        endpoint: r.get(1)?,
                        started_at: r.get(2)?,
                        duration_ms: r.get(3)?,
                        status: r
                            .get::<_, Option<i64>>(4)?
                            .and_then(|s| u16::try_from(s).ok()),
                        bytes: r.get(5)?,
                        items: r.get(6)?,
                        changed: r.get(7)?,
                        error: r.get(8)?,
                        // The poll writer stores a UTF-8 body as text, any other as a blob.
                        body: match r.get::<_, Value>(9)? {
                            Value::Text(t) => Some(t.into_bytes()),
                            Value::Blob(b) => Some(b),
                            _ => None,
                        },
                        body_hash: r.get(10)?,
                        pages: r
                            .get::<_, Option<i64>>(11)?
                            .and_then(|p| u32::try_from(p).ok()),
                        partial: r.get::<_, Option<bool>>(12)?.unwrap_or(false),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(e))?;
        let pending = tx
            .prepare(
                "SELECT account, state, code_verifier, redirect_uri, created_at \
                 FROM authorizations WHERE created_at >= ?1 ORDER BY created_at, rowid",
            )
            .and_then(|mut s| {
                s.query_map([now() - PENDING_TTL], |r| {
                    let account: String = r.get(0)?;
                    let state: String = r.get(1)?;
                    let code_verifier = match r.get::<_, Option<String>>(2)? {
                        None => None,
                        Some(stored) => Some(SecretString::from(
                            crypto::open(key, verifier(&account, &state), stored).map_err(|m| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    2,
                                    rusqlite::types::Type::Text,
                                    Box::new(m),
                                )
                            })?,
                        )),
                    };
                    Ok((
                        account,
                        Pending {
                            state,
                            code_verifier,
                            redirect_uri: r.get(3)?,
                            created_at: r.get(4)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(e))?;
        Ok(Snapshot {
            tokens,
            events,
            polls,
            pending,
        })
    }
}
