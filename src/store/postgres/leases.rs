//! Instances and leases: which instance polls and refreshes which account. One transaction a
//! cycle, on the database's clock (so hosts need not agree on the time): heartbeat, renew
//! what is still held, hand over what is above this instance's share, claim free or expired
//! leases up to it (`FOR UPDATE SKIP LOCKED`: two instances claiming at once never wait for
//! each other or take the same account).

use super::{blocking, Handle};
use crate::error::Error;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::time::Duration;

/// What a daemon instance holds, shared with its store handle: a commit for an account is
/// made only under the lease this instance holds for it, checked in the commit's own
/// transaction (see [`Handle::lock`]).
#[derive(Debug)]
pub struct Fence {
    pub instance: Instance,
    held: RwLock<HashMap<String, i64>>,
}

impl Fence {
    pub fn new(instance: Instance) -> Fence {
        Fence {
            instance,
            held: RwLock::default(),
        }
    }

    /// What the last cycle found held.
    pub fn set(&self, held: &[Held]) {
        *self.held.write() = held
            .iter()
            .map(|h| (h.account.clone(), h.generation))
            .collect();
    }

    /// The generation of the lease held for `account`, if one is.
    pub fn generation(&self, account: &str) -> Option<i64> {
        self.held.read().get(account).copied()
    }
}

/// This process, as other instances see it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `HOST:PID:RANDOM`: unique across restarts and hosts.
    pub id: String,
    pub host: String,
    pub pid: i32,
}

/// A lease this instance holds after a cycle: its account and the lease's generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub account: String,
    pub generation: i64,
}

/// What one cycle found.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// The leases this instance holds now.
    pub held: Vec<Held>,
    /// How soon the first other instance's heartbeat expires (with its leases), if it does
    /// not renew meanwhile: a dead instance's accounts are claimed at that moment rather
    /// than at the next renewal.
    pub next_expiry: Option<Duration>,
}

/// An instance's row, for `status` (times in Unix seconds).
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub alive: bool,
}

/// An account's lease, for `status`.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub account: String,
    pub owner: Option<String>,
    pub generation: i64,
    pub expires_at: i64,
    pub valid: bool,
}

/// The lease operations of a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    at: Handle,
}

impl Handle {
    pub fn lease_store(&self) -> LeaseStore {
        LeaseStore { at: self.clone() }
    }
}

impl LeaseStore {
    /// One cycle for `me`, whose configuration names `accounts`: heartbeat, then renew, hand
    /// over and claim, so that each live instance holds its share. Returns what `me` holds.
    pub fn cycle(&self, me: &Instance, accounts: &[String], ttl: Duration) -> Result<Cycle, Error> {
        let ttl_ms = ttl.as_millis() as i64;
        let mut conn = self.at.connection()?;
        blocking(|| -> Result<Cycle, postgres::Error> {
            let mut tx = conn.transaction()?;
            let ttl = "make_interval(secs => $2::BIGINT / 1000.0)";
            tx.execute(
                &format!(
                    "INSERT INTO instances (id, host, pid, started_at, heartbeat_at, expires_at) \
                     VALUES ($1, $3, $4, now(), now(), now() + {ttl}) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), \
                     expires_at = now() + {ttl}"
                ),
                &[&me.id, &ttl_ms, &me.host, &me.pid],
            )?;
            // Rows of instances dead for a while go; a dead instance's leases simply expire.
            tx.execute(
                "DELETE FROM instances \
                 WHERE expires_at < now() - make_interval(secs => $1::BIGINT / 100.0)",
                &[&ttl_ms],
            )?;
            tx.execute(
                "INSERT INTO leases (account, expires_at) SELECT unnest($1::TEXT[]), now() \
                 ON CONFLICT (account) DO NOTHING",
                &[&accounts],
            )?;
            // This instance's share: the live instances in order of id, the first
            // (accounts mod instances) of them one more than the rest.
            let rows = tx.query(
                "SELECT id, extract(epoch FROM expires_at - now())::FLOAT8 FROM instances \
                 WHERE expires_at > now() ORDER BY id",
                &[],
            )?;
            let live: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let next_expiry = rows
                .iter()
                .filter(|r| r.get::<_, &str>(0) != me.id)
                .map(|r| r.get::<_, f64>(1))
                .reduce(f64::min)
                .map(|s| Duration::from_secs_f64(s.max(0.0)));
            let n = live.len().max(1);
            let rank = live.iter().position(|id| id == &me.id).unwrap_or(0);
            let share = (accounts.len() / n + usize::from(rank < accounts.len() % n)) as i64;
            let mut held: Vec<Held> = tx
                .query(
                    &format!(
                        "UPDATE leases SET expires_at = now() + {ttl} \
                         WHERE owner = $1 AND expires_at > now() AND account = ANY($3) \
                         RETURNING account, generation"
                    ),
                    &[&me.id, &ttl_ms, &accounts],
                )?
                .iter()
                .map(|r| Held {
                    account: r.get(0),
                    generation: r.get(1),
                })
                .collect();
            held.sort_by(|a, b| a.account.cmp(&b.account));
            // Hand over only when a live instance holds less than its share (a newcomer):
            // an instance that died still counts as live until its row expires, and
            // releasing for it would leave accounts nobody polls.
            let counts: Vec<(String, i64)> = tx
                .query(
                    "SELECT i.id, count(l.account) FROM instances i LEFT JOIN leases l \
                     ON l.owner = i.id AND l.expires_at > now() AND l.account = ANY($1) \
                     WHERE i.expires_at > now() GROUP BY i.id ORDER BY i.id",
                    &[&accounts],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let wanting = counts.iter().enumerate().any(|(rank, (id, count))| {
                let theirs = (accounts.len() / n + usize::from(rank < accounts.len() % n)) as i64;
                id != &me.id && *count < theirs
            });
            if held.len() as i64 > share && wanting {
                let extra: Vec<String> = held
                    .split_off(share as usize)
                    .into_iter()
                    .map(|h| h.account)
                    .collect();
                tx.execute(
                    "UPDATE leases SET owner = NULL, expires_at = now() \
                     WHERE owner = $1 AND account = ANY($2)",
                    &[&me.id, &extra],
                )?;
            } else if (held.len() as i64) < share {
                let want = share - held.len() as i64;
                let claimed = tx.query(
                    &format!(
                        "UPDATE leases SET owner = $1, generation = generation + 1, \
                         expires_at = now() + {ttl}, taken_at = now() \
                         WHERE account IN (SELECT account FROM leases \
                             WHERE account = ANY($3) AND (owner IS NULL OR expires_at <= now()) \
                             ORDER BY account LIMIT $4 FOR UPDATE SKIP LOCKED) \
                         RETURNING account, generation"
                    ),
                    &[&me.id, &ttl_ms, &accounts, &want],
                )?;
                held.extend(claimed.iter().map(|r| Held {
                    account: r.get(0),
                    generation: r.get(1),
                }));
            }
            tx.commit()?;
            Ok(Cycle { held, next_expiry })
        })
        .map_err(|e| self.at.err(e))
    }

    /// Hands every lease of `me` over at once (a graceful stop), and ends its heartbeat.
    pub fn release_all(&self, me: &Instance) -> Result<(), Error> {
        let mut conn = self.at.connection()?;
        blocking(|| -> Result<(), postgres::Error> {
            let mut tx = conn.transaction()?;
            tx.execute(
                "UPDATE leases SET owner = NULL, expires_at = now() WHERE owner = $1",
                &[&me.id],
            )?;
            tx.execute("DELETE FROM instances WHERE id = $1", &[&me.id])?;
            tx.commit()
        })
        .map_err(|e| self.at.err(e))
    }

    /// Every instance that heartbeat recently, newest first.
    pub fn instances(&self) -> Result<Vec<InstanceRow>, Error> {
        let mut conn = self.at.connection()?;
        let rows = blocking(|| {
            conn.query(
                "SELECT id, host, pid, extract(epoch FROM started_at)::BIGINT, \
                 extract(epoch FROM heartbeat_at)::BIGINT, expires_at > now() \
                 FROM instances ORDER BY heartbeat_at DESC",
                &[],
            )
        })
        .map_err(|e| self.at.err(e))?;
        Ok(rows
            .iter()
            .map(|r| InstanceRow {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                started_at: r.get(3),
                heartbeat_at: r.get(4),
                alive: r.get(5),
            })
            .collect())
    }

    /// Every account's lease.
    pub fn leases(&self) -> Result<Vec<LeaseRow>, Error> {
        let mut conn = self.at.connection()?;
        let rows = blocking(|| {
            conn.query(
                "SELECT account, owner, generation, extract(epoch FROM expires_at)::BIGINT, \
                 owner IS NOT NULL AND expires_at > now() FROM leases ORDER BY account",
                &[],
            )
        })
        .map_err(|e| self.at.err(e))?;
        Ok(rows
            .iter()
            .map(|r| LeaseRow {
                account: r.get(0),
                owner: r.get(1),
                generation: r.get(2),
                expires_at: r.get(3),
                valid: r.get(4),
            })
            .collect())
    }
}
