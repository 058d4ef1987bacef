//! The `tokens` and `token_events` tables, the refresh lock and gate, and the refresh
//! journal (`refresh_journal`), in PostgreSQL.

use super::{blocking, Handle, Pooled, Store, LOCK_COMMIT, LOCK_REFRESH};
use crate::error::{Error, StoreError};
use crate::store::crypto::{self, Binding, StoreKey};
use crate::store::rows::{EventRow, JournalEntry, TokenRow, TokenState};
use crate::store::{now, RequestClaim};
use parking_lot::Mutex;
use postgres::{Client, GenericClient, Row};
use secrecy::SecretString;
use zeroize::Zeroizing;

pub(super) const TOKEN_COLUMNS: &str = "account, access_token, token_type, refresh_token, scope, \
     access_expires_at, refresh_expires_at, obtained_at, obtained_by, generation, state, \
     state_detail, last_refresh_at, refresh_warned_at";

/// A stored row, its secrets opened with `key`.
pub(super) fn token_from_row(at: &Handle, r: &Row) -> Result<TokenRow, Error> {
    let account: String = r.get(0);
    let generation: i64 = r.get(9);
    let secret = |i: usize, column: &str| -> Result<Option<SecretString>, Error> {
        crypto::open_token_secret(at.key(), &account, column, generation, r.get(i))
            .map_err(|e| Error::Store(StoreError::new(at.target(), e)))
    };
    let state: String = r.get(10);
    Ok(TokenRow {
        access_token: secret(1, "access_token")?,
        token_type: r.get(2),
        refresh_token: secret(3, "refresh_token")?,
        scope: r.get(4),
        access_expires_at: r.get(5),
        refresh_expires_at: r.get(6),
        obtained_at: r.get(7),
        obtained_by: r.get(8),
        generation,
        state: TokenState::from_stored(&state),
        state_detail: r.get(11),
        last_refresh_at: r.get(12),
        refresh_warned_at: r.get(13),
        account,
    })
}

pub(super) fn read_token(
    c: &mut impl GenericClient,
    account: &str,
) -> Result<Option<Row>, postgres::Error> {
    c.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE account = $1"),
        &[&account],
    )
}

/// Replaces the account's row; `generation` becomes the stored one + 1. Returns the new row.
fn write_token(
    c: &mut impl GenericClient,
    key: Option<&StoreKey>,
    row: &TokenRow,
) -> Result<TokenRow, postgres::Error> {
    let generation: i64 = c
        .query_one(
            "SELECT COALESCE(MAX(generation), 0) + 1 FROM tokens WHERE account = $1",
            &[&row.account],
        )?
        .get(0);
    put_row(c, key, row, generation)
}

/// Writes `row` as the account's token, sealed for `generation`. Returns the row as stored.
pub(super) fn put_row(
    c: &mut impl GenericClient,
    key: Option<&StoreKey>,
    row: &TokenRow,
    generation: i64,
) -> Result<TokenRow, postgres::Error> {
    let (access_token, refresh_token) = crypto::seal_token_secrets(key, row, generation);
    c.execute(
        &format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (account) DO UPDATE SET access_token = EXCLUDED.access_token, \
             token_type = EXCLUDED.token_type, refresh_token = EXCLUDED.refresh_token, \
             scope = EXCLUDED.scope, access_expires_at = EXCLUDED.access_expires_at, \
             refresh_expires_at = EXCLUDED.refresh_expires_at, \
             obtained_at = EXCLUDED.obtained_at, obtained_by = EXCLUDED.obtained_by, \
             generation = EXCLUDED.generation, state = EXCLUDED.state, \
             state_detail = EXCLUDED.state_detail, last_refresh_at = EXCLUDED.last_refresh_at, \
             refresh_warned_at = EXCLUDED.refresh_warned_at"
        ),
        &[
            &row.account,
            &access_token,
            &row.token_type,
            &refresh_token,
            &row.scope,
            &row.access_expires_at,
            &row.refresh_expires_at,
            &row.obtained_at,
            &row.obtained_by,
            &generation,
            &row.state.as_str(),
            &row.state_detail,
            &row.last_refresh_at,
            &row.refresh_warned_at,
        ],
    )?;
    let mut stored = row.clone();
    stored.generation = generation;
    Ok(stored)
}

fn add_event(
    c: &mut impl GenericClient,
    account: &str,
    event: &str,
    detail: &str,
) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO token_events (account, at, event, detail) VALUES ($1, $2, $3, $4)",
        &[&account, &now(), &event, &detail],
    )
    .map(|_| ())
}

impl Store {
    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        let row = self.with(|c| read_token(c, account))?;
        row.map(|r| token_from_row(&self.at, &r)).transpose()
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>, Error> {
        let rows = self.with(|c| {
            c.query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY account"),
                &[],
            )
        })?;
        rows.iter().map(|r| token_from_row(&self.at, r)).collect()
    }

    pub fn event(&self, account: &str, event: &str, detail: &str) -> Result<(), Error> {
        self.with(|c| add_event(c, account, event, detail))
    }

    pub fn mark_refresh_warned(&self, account: &str, at: i64) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "UPDATE tokens SET refresh_warned_at = $2 WHERE account = $1",
                &[&account, &at],
            )
            .map(|_| ())
        })
    }

    pub fn events(&self, account: Option<&str>, limit: usize) -> Result<Vec<EventRow>, Error> {
        let rows = self.with(|c| {
            c.query(
                "SELECT id, account, at, event, detail FROM token_events \
                 WHERE $1::TEXT IS NULL OR account = $1 ORDER BY at DESC, id DESC LIMIT $2",
                &[&account, &(limit as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                id: r.get(0),
                account: r.get(1),
                at: r.get(2),
                event: r.get(3),
                detail: r.get(4),
            })
            .collect())
    }
}

impl Handle {
    /// A transaction holding `account`'s commit lock (a transaction-level advisory lock),
    /// on a connection of its own.
    ///
    /// A daemon instance's lock also holds its lease for the account (`FOR SHARE`, so the
    /// lease cannot change hands before this transaction ends), and is refused when the
    /// lease is no longer this instance's: a paused or cut-off instance commits nothing.
    pub fn lock(&self, account: &str) -> Result<RefreshLock, Error> {
        let fence = match self.fence() {
            None => None,
            Some(f) => match f.generation(account) {
                Some(g) => Some((f.instance.id.clone(), g)),
                None => return Err(self.lease_lost(account)),
            },
        };
        let mut conn = self.connection()?;
        let leased = blocking(|| {
            conn.batch_execute("BEGIN")?;
            conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_COMMIT, &account],
            )?;
            match &fence {
                None => Ok(true),
                Some((owner, generation)) => conn
                    .query_opt(
                        "SELECT 1 FROM leases WHERE account = $1 AND owner = $2 \
                         AND generation = $3 AND expires_at > now() FOR SHARE",
                        &[&account, owner, generation],
                    )
                    .map(|r| r.is_some()),
            }
        })
        .map_err(|e| self.err(e))?;
        if !leased {
            // Dropping the connection's transaction rolls it back.
            drop(RefreshLock {
                at: self.clone(),
                conn: Mutex::new(Some(conn)),
            });
            return Err(self.lease_lost(account));
        }
        Ok(RefreshLock {
            at: self.clone(),
            conn: Mutex::new(Some(conn)),
        })
    }

    fn lease_lost(&self, account: &str) -> Error {
        Error::runtime(format!(
            "account `{account}`: this instance no longer holds its lease in {}: another instance polls and refreshes it",
            self.target()
        ))
    }

    /// `account`'s refresh gate, not yet taken, on a connection of its own.
    pub fn refresh_gate(&self, account: &str) -> Result<Gate, Error> {
        Ok(Gate {
            at: self.clone(),
            conn: Some(self.connection()?),
            account: account.to_string(),
            held: false,
        })
    }

    /// Journals a provider's answer (sealed like the tokens), committed before returning.
    pub fn journal_write(&self, account: &str, entry: &JournalEntry) -> bool {
        let Ok(text) = std::str::from_utf8(&entry.body) else {
            return false;
        };
        let instance = entry.generation.to_string();
        let sealed = Zeroizing::new(crypto::seal(
            self.key(),
            journal_binding(account, &instance),
            text,
        ));
        let written = self.connection().and_then(|mut conn| {
            blocking(|| {
                conn.execute(
                    "INSERT INTO refresh_journal (account, generation, started, grant_kind, body) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account) DO UPDATE SET \
                     generation = EXCLUDED.generation, started = EXCLUDED.started, \
                     grant_kind = EXCLUDED.grant_kind, body = EXCLUDED.body",
                    &[
                        &account,
                        &entry.generation,
                        &entry.started,
                        &entry.grant,
                        &sealed.as_str(),
                    ],
                )
            })
            .map_err(|e| self.err(e))
        });
        if let Err(e) = &written {
            tracing::warn!(account, error = %e, "cannot write the refresh journal");
        }
        written.is_ok()
    }

    /// The account's journaled answer, if any (and if it opens with the store's key).
    pub fn journal_read(&self, account: &str) -> Option<JournalEntry> {
        let mut conn = self.connection().ok()?;
        let row = blocking(|| {
            conn.query_opt(
                "SELECT generation, started, grant_kind, body FROM refresh_journal \
                 WHERE account = $1",
                &[&account],
            )
        })
        .ok()??;
        let generation: i64 = row.get(0);
        let instance = generation.to_string();
        let body =
            crypto::open(self.key(), journal_binding(account, &instance), row.get(3)).ok()?;
        Some(JournalEntry {
            generation,
            started: row.get(1),
            grant: row.get(2),
            body: Zeroizing::new(body.into_bytes()),
        })
    }

    pub fn journal_remove(&self, account: &str) {
        let me = self.requester();
        if let Ok(mut conn) = self.connection() {
            let _ = blocking(|| {
                conn.execute(
                    "WITH answer AS (DELETE FROM refresh_journal WHERE account = $1) \
                     DELETE FROM refresh_requests WHERE account = $1 AND requester = $2",
                    &[&account, &me],
                )
            });
        }
    }

    /// This process's token request for `account` ended without an answer to commit.
    pub fn request_ended(&self, account: &str) {
        let me = self.requester();
        if let Ok(mut conn) = self.connection() {
            let _ = blocking(|| {
                conn.execute(
                    "DELETE FROM refresh_requests WHERE account = $1 AND requester = $2",
                    &[&account, &me],
                )
            });
        }
    }
}

/// Another process's request found by [`RefreshLock::commit_request`].
struct OtherRequest {
    requester: String,
    /// Its instance heartbeats.
    alive: bool,
    /// Seconds since it was sent, or since the server started if that is later.
    waited: f64,
    /// Seconds since the server started.
    up: f64,
}

/// A journal entry is sealed for its account and the generation its refresh started from.
fn journal_binding<'a>(account: &'a str, generation: &'a str) -> Binding<'a> {
    Binding {
        account,
        column: "pending",
        instance: generation,
    }
}

/// A transaction holding one account's commit lock. Dropped uncommitted, it rolls back.
pub struct RefreshLock {
    at: Handle,
    conn: Mutex<Option<Pooled>>,
}

impl RefreshLock {
    /// Runs `work` in the lock's transaction.
    fn run<T: Send>(
        &self,
        work: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, Error> {
        let mut conn = self.conn.lock();
        let client: &mut Client = conn
            .as_mut()
            .ok_or_else(|| Error::runtime("the lock has ended"))?;
        blocking(|| work(client)).map_err(|e| self.at.err(e))
    }

    pub fn token(&self, account: &str) -> Result<Option<TokenRow>, Error> {
        let row = self.run(|c| read_token(c, account))?;
        row.map(|r| token_from_row(&self.at, &r)).transpose()
    }

    /// PostgreSQL needs no reserve: a commit that fails for want of room leaves the
    /// journaled answer for the next attempt.
    pub fn ensure_room(&self) -> Result<(), Error> {
        Ok(())
    }

    pub fn commit_token(
        self,
        row: &TokenRow,
        event: &str,
        detail: &str,
    ) -> Result<TokenRow, Error> {
        let key = self.at.key().cloned();
        let stored = self.run(|c| {
            let stored = write_token(c, key.as_ref(), row)?;
            add_event(c, &row.account, event, detail)?;
            c.batch_execute("COMMIT")?;
            Ok(stored)
        })?;
        self.ended();
        Ok(stored)
    }

    pub fn commit_event(self, account: &str, event: &str, detail: &str) -> Result<(), Error> {
        self.run(|c| {
            add_event(c, account, event, detail)?;
            c.batch_execute("COMMIT")
        })?;
        self.ended();
        Ok(())
    }

    pub fn release(self) {
        if self.run(|c| c.batch_execute("COMMIT")).is_ok() {
            self.ended();
        }
    }

    /// See [`crate::store::RefreshLock::commit_request`]. The refresh gate is a session
    /// lock: a restart or failover of the server releases it while the holder's request may
    /// still be answered, and the holder journals that answer only once it has reconnected.
    /// So another process's request from the same token is waited for while its requester
    /// heartbeats (up to [`super::RequestWaits::answer`]), and taken for dead only once this
    /// process and the server have both been up for [`super::RequestWaits::steady`].
    pub fn commit_request(self, account: &str, generation: i64) -> Result<RequestClaim, Error> {
        let me = self.at.requester();
        let waits = self.at.waits();
        let steady_here = self.at.health().steady_for(waits.steady().as_secs() as i64);
        let (claim, overridden) = self.run(|c| {
            let other = c
                .query_opt(
                    "SELECT r.requester, EXISTS (SELECT 1 FROM instances i \
                         WHERE i.id = r.requester AND i.expires_at > now()), \
                     extract(epoch FROM now() - greatest(r.sent_at, pg_postmaster_start_time()))::FLOAT8, \
                     extract(epoch FROM now() - pg_postmaster_start_time())::FLOAT8 \
                     FROM refresh_requests r \
                     WHERE r.account = $1 AND r.generation = $2 AND r.requester <> $3",
                    &[&account, &generation, &me],
                )?
                .map(|r| OtherRequest {
                    requester: r.get(0),
                    alive: r.get(1),
                    waited: r.get(2),
                    up: r.get(3),
                });
            if let Some(o) = &other {
                let steady = steady_here && o.up >= waits.steady().as_secs_f64();
                let over = !o.alive || o.waited >= waits.answer().as_secs_f64();
                if !(steady && over) {
                    c.batch_execute("COMMIT")?;
                    return Ok((
                        RequestClaim::InFlight {
                            requester: o.requester.clone(),
                            alive: o.alive,
                        },
                        None,
                    ));
                }
            }
            c.execute(
                "INSERT INTO refresh_requests (account, generation, requester, sent_at) \
                 VALUES ($1, $2, $3, now()) ON CONFLICT (account) DO UPDATE SET \
                 generation = EXCLUDED.generation, requester = EXCLUDED.requester, \
                 sent_at = EXCLUDED.sent_at",
                &[&account, &generation, &me],
            )?;
            c.batch_execute("COMMIT")?;
            let claim = match &other {
                None => RequestClaim::Claimed,
                Some(o) => RequestClaim::Replaced {
                    requester: o.requester.clone(),
                },
            };
            Ok((claim, other))
        })?;
        self.ended();
        if let Some(o) = overridden {
            tracing::warn!(account, requester = %o.requester, alive = o.alive,
                waited_s = o.waited as u64,
                "a token request another process sent for this account left no answer: the provider may have spent the refresh token");
        }
        Ok(claim)
    }

    /// The transaction is committed: the connection goes back as it is.
    fn ended(&self) {
        drop(self.conn.lock().take());
    }
}

impl Drop for RefreshLock {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.get_mut().take() {
            // Not committed: roll back before the connection is reused.
            let client: &mut Client = &mut conn;
            if blocking(|| client.batch_execute("ROLLBACK")).is_err() {
                conn.discard();
            }
        }
    }
}

/// One account's refresh gate: a session-level advisory lock on a connection kept for it.
pub struct Gate {
    at: Handle,
    conn: Option<Pooled>,
    account: String,
    held: bool,
}

impl Gate {
    pub fn try_take(&mut self) -> Result<bool, String> {
        let conn: &mut Client = self.conn.as_mut().ok_or("the gate's connection is gone")?;
        let account = &self.account;
        let taken: bool = blocking(|| {
            conn.query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_REFRESH, account],
            )
            .map(|r| r.get(0))
        })
        .map_err(|e| self.at.err(e).to_string())?;
        self.held = taken;
        Ok(taken)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.held {
            let account = &self.account;
            let client: &mut Client = &mut conn;
            let unlocked = blocking(|| {
                client.execute(
                    "SELECT pg_advisory_unlock($1, hashtext($2))",
                    &[&LOCK_REFRESH, account],
                )
            });
            if unlocked.is_err() {
                // Never hand on a session that may still hold the lock.
                conn.discard();
            }
        }
    }
}
