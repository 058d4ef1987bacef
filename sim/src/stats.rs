//! Request counters and the `/_sim/stats` snapshot.

use super::Simulator;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const GRANTS: [&str; 6] = [
    "password",
    "refresh_token",
    "authorization_code",
    "client_credentials",
    "none",
    "other",
];

const OUTCOMES: [&str; 9] = [
    "ok",
    "invalid_grant",
    "invalid_client",
    "invalid_request",
    "unsupported_grant_type",
    "invalid_scope",
    "unauthorized_client",
    "fault",
    "other",
];

pub(crate) fn grant_name(grant: &str) -> &'static str {
    match grant {
        "" => "none",
        g => GRANTS.iter().find(|n| **n == g).copied().unwrap_or("other"),
    }
}

pub(crate) struct Counters {
    token_total: AtomicU64,
    by_grant: [AtomicU64; GRANTS.len()],
    by_outcome: [AtomicU64; OUTCOMES.len()],
    refreshes: AtomicU64,
    refresh_reuse: AtomicU64,
    api_total: AtomicU64,
    api_status: Box<[AtomicU64]>,
    unauthorized: AtomicU64,
    authorize: AtomicU64,
    codes: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            token_total: AtomicU64::new(0),
            by_grant: Default::default(),
            by_outcome: Default::default(),
            refreshes: AtomicU64::new(0),
            refresh_reuse: AtomicU64::new(0),
            api_total: AtomicU64::new(0),
            api_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            unauthorized: AtomicU64::new(0),
            authorize: AtomicU64::new(0),
            codes: AtomicU64::new(0),
        }
    }
}

impl Counters {
    pub(crate) fn token_request(&self, grant: &str) {
        self.token_total.fetch_add(1, Relaxed);
        let i = GRANTS
            .iter()
            .position(|g| *g == grant)
            .unwrap_or(GRANTS.len() - 1);
        self.by_grant[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn token_outcome(&self, outcome: &str) {
        let i = OUTCOMES
            .iter()
            .position(|g| *g == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        self.by_outcome[i].fetch_add(1, Relaxed);
    }

    /// A token request answered by a fault instead of the endpoint.
    pub(crate) fn token_fault(&self) {
        self.token_total.fetch_add(1, Relaxed);
        self.token_outcome("fault");
    }

    pub(crate) fn refresh(&self) {
        self.refreshes.fetch_add(1, Relaxed);
    }

    pub(crate) fn refresh_reuse(&self) {
        self.refresh_reuse.fetch_add(1, Relaxed);
    }

    pub(crate) fn api_request(&self) {
        self.api_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn api_status(&self, status: u16) {
        if let Some(c) = self.api_status.get(status as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Relaxed);
    }

    pub(crate) fn authorize(&self) {
        self.authorize.fetch_add(1, Relaxed);
    }

    pub(crate) fn code_issued(&self) {
        self.codes.fetch_add(1, Relaxed);
    }

    /// Sets every counter back to zero (tokens are kept).
    pub(crate) fn reset(&self) {
        let all = [
            &self.token_total,
            &self.refreshes,
            &self.refresh_reuse,
            &self.api_total,
            &self.unauthorized,
            &self.authorize,
            &self.codes,
        ];
        for c in all
            .into_iter()
            .chain(self.by_grant.iter())
            .chain(self.by_outcome.iter())
            .chain(self.api_status.iter())
        {
            c.store(0, Relaxed);
        }
    }
}

pub(crate) fn snapshot(sim: &Simulator) -> Value {
    let c = &sim.inner.stats;
    let by_grant: Map<String, Value> = GRANTS
        .iter()
        .zip(&c.by_grant)
        .map(|(g, n)| (g.to_string(), json!(n.load(Relaxed))))
        .collect();
    let mut by_outcome: Map<String, Value> = OUTCOMES
        .iter()
        .zip(&c.by_outcome)
        .map(|(g, n)| (g.to_string(), json!(n.load(Relaxed))))
        .collect();
    // "other": every error that is neither invalid_grant nor invalid_client.
    let errors: u64 = OUTCOMES
        .iter()
        .zip(&c.by_outcome)
        .filter(|(g, _)| !matches!(**g, "ok" | "invalid_grant" | "invalid_client"))
        .map(|(_, n)| n.load(Relaxed))
        .sum();
    by_outcome.insert("other_errors".into(), json!(errors));
    let by_status: Map<String, Value> = c
        .api_status
        .iter()
        .enumerate()
        .filter(|(_, n)| n.load(Relaxed) > 0)
        .map(|(s, n)| (s.to_string(), json!(n.load(Relaxed))))
        .collect();
    let store = sim.store();
    let issued: Vec<Value> = store
        .issued
        .iter()
        .map(|i| json!({"kind": i.kind, "token": i.token, "grant": i.grant, "at": i.at}))
        .collect();
    let issued_tokens: Vec<&str> = store.issued.iter().map(|i| i.token.as_str()).collect();
    json!({
        "profile": sim.inner.opts.profile.name(),
        "uptime_ms": sim.inner.started.elapsed().as_millis() as u64,
        "token_requests": {
            "total": c.token_total.load(Relaxed),
            "by_grant": by_grant,
            "by_outcome": by_outcome,
        },
        "refreshes": c.refreshes.load(Relaxed),
        "refresh_token_reuse": c.refresh_reuse.load(Relaxed),
        "api_requests": {
            "total": c.api_total.load(Relaxed),
            "by_status": by_status,
        },
        "unauthorized": c.unauthorized.load(Relaxed),
        "authorize_requests": c.authorize.load(Relaxed),
        "codes_issued": c.codes.load(Relaxed),
        "valid_access_tokens": store.valid_access(),
        "valid_refresh_tokens": store.valid_refresh(),
        "issued_tokens": issued_tokens,
        "issued": issued,
        "faults": sim.inner.faults.snapshot(),
    })
}
