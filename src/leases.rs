//! Which accounts this instance polls and refreshes.
//!
//! On a SQLite store one daemon serves every account ([`Leases::Solo`]). On a PostgreSQL
//! store several instances share them ([`Leases::Shared`]): each account is leased to one
//! live instance at a time, and a keeper renews the leases every third of `lease_ttl`,
//! hands over what is above this instance's share (when one joins) and claims what is free
//! (when one leaves or dies: its leases expire within `lease_ttl`).
//!
//! An account is this instance's while its last renewal is younger than four fifths of the
//! TTL, measured on this host's monotonic clock: an instance that was paused past its lease
//! stops on its own, before it can learn from the database that the lease moved. A commit
//! is also checked against the lease in the database ([`crate::store::Fence`]), so a
//! refresh token is never committed under a lease that changed hands.
//!
//! When the database cannot be reached at all, nobody can take a lease over: the instance
//! keeps polling the accounts it held (it cannot tell an outage from being cut off alone;
//! at worst two instances poll one account, and neither refreshes without a commit).

use crate::error::Error;
use crate::store::{Cycle, Fence, Instance, LeaseStore};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Which accounts this instance may poll and refresh now.
#[derive(Clone)]
pub enum Leases {
    /// Every account: the store serves one daemon.
    Solo,
    Shared(Arc<Shared>),
}

pub struct Shared {
    store: LeaseStore,
    fence: Arc<Fence>,
    accounts: Vec<String>,
    /// Per account: notified when this instance gains its lease.
    gained: HashMap<String, Arc<Notify>>,
    ttl: Duration,
    local: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    held: BTreeSet<String>,
    /// Until when the last successful renewal covers `held`.
    valid_until: Option<Instant>,
    /// The last cycle could not reach the database.
    unreachable: bool,
}

impl Leases {
    /// Leases for `accounts` in `store`, for this process.
    pub fn shared(store: LeaseStore, accounts: Vec<String>, ttl: Duration) -> Leases {
        Leases::Shared(Arc::new(Shared {
            store,
            fence: Arc::new(Fence::new(this_instance())),
            gained: accounts
                .iter()
                .map(|a| (a.clone(), Arc::new(Notify::new())))
                .collect(),
            accounts,
            ttl,
            local: Mutex::default(),
        }))
    }

    /// The fence the store handle checks commits against (none for [`Leases::Solo`]).
    pub fn fence(&self) -> Option<Arc<Fence>> {
        match self {
            Leases::Solo => None,
            Leases::Shared(s) => Some(s.fence.clone()),
        }
    }

    /// Whether this instance may poll and refresh `account` now.
    pub fn owns(&self, account: &str) -> bool {
        match self {
            Leases::Solo => true,
            Leases::Shared(s) => {
                let local = s.local.lock();
                local.held.contains(account)
                    && (local.unreachable || local.valid_until.is_some_and(|t| t > Instant::now()))
            }
        }
    }

    /// What the endpoints of `account` wait on to poll at once when this instance gains
    /// its lease (none when solo: every account is always this instance's).
    pub fn gained_signal(&self, account: &str) -> Option<Arc<Notify>> {
        match self {
            Leases::Solo => None,
            Leases::Shared(s) => s.gained.get(account).cloned(),
        }
    }

    /// How many accounts this instance holds (every one when solo).
    pub fn held(&self) -> Option<usize> {
        match self {
            Leases::Solo => None,
            Leases::Shared(s) => Some(s.local.lock().held.len()),
        }
    }

    /// Keeps the leases (the first cycle at once) until `shutdown`, then hands them over.
    pub async fn keep(self, mut shutdown: watch::Receiver<bool>) {
        let Leases::Shared(s) = self else {
            return;
        };
        let every = s.ttl / 3;
        loop {
            // Renew every third of the TTL; sooner when another instance's leases expire
            // sooner (it stopped renewing: it died), to claim them the moment they do.
            let next_expiry = s.cycle().await;
            let wait = next_expiry.map_or(every, |t| every.min(t + CLAIM_AFTER_EXPIRY));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        s.release_all().await;
    }
}

/// How long after another instance's expiry its leases are claimed: enough for the
/// database's clock to have passed it too.
const CLAIM_AFTER_EXPIRY: Duration = Duration::from_millis(50);

impl Shared {
    /// One cycle; returns how soon another instance's leases expire, if known.
    async fn cycle(self: &Arc<Self>) -> Option<Duration> {
        let started = Instant::now();
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            this.store
                .cycle(&this.fence.instance, &this.accounts, this.ttl)
        })
        .await
        .map_err(|e| Error::runtime(format!("lease task failed: {e}")))
        .and_then(|r| r);
        let mut local = self.local.lock();
        match result {
            Ok(Cycle { held, next_expiry }) => {
                self.fence.set(&held);
                let now: BTreeSet<String> = held.into_iter().map(|h| h.account).collect();
                let gained: Vec<&String> = now.difference(&local.held).collect();
                let lost: Vec<&String> = local.held.difference(&now).collect();
                if !gained.is_empty() || !lost.is_empty() {
                    tracing::info!(instance = %self.fence.instance.id, held = now.len(),
                        gained = ?gained, lost = ?lost, "leases changed");
                }
                if local.unreachable {
                    tracing::info!("the store is reachable again: leases renewed");
                }
                // At start every endpoint keeps its own first tick (spread over the
                // interval); an account taken over later is polled at once.
                let gained: Vec<String> = match local.valid_until {
                    None => Vec::new(),
                    Some(_) => gained.into_iter().cloned().collect(),
                };
                local.held = now;
                local.valid_until = Some(started + self.ttl * 4 / 5);
                local.unreachable = false;
                drop(local);
                for account in &gained {
                    if let Some(n) = self.gained.get(account) {
                        n.notify_waiters();
                    }
                }
                next_expiry
            }
            Err(e) => {
                if !local.unreachable {
                    tracing::warn!(error = %e, held = local.held.len(),
                        "cannot renew the leases: polling the accounts held until the store answers");
                }
                local.unreachable = true;
                None
            }
        }
    }

    async fn release_all(self: &Arc<Self>) {
        self.local.lock().held.clear();
        self.fence.set(&[]);
        let this = self.clone();
        let released =
            tokio::task::spawn_blocking(move || this.store.release_all(&this.fence.instance)).await;
        match released {
            Ok(Ok(())) => tracing::info!("leases handed over"),
            Ok(Err(e)) => tracing::warn!(error = %e,
                "cannot hand the leases over: they expire by themselves"),
            Err(_) => {}
        }
    }
}

/// `HOST:PID:RANDOM`.
fn this_instance() -> Instance {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let pid = std::process::id();
    let tag: u32 = rand::random();
    Instance {
        id: format!("{host}:{pid}:{tag:08x}"),
        host,
        pid: pid as i32,
    }
}
