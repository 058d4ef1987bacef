//! The two backoffs of an account: a failing token endpoint, and an API that refuses
//! tokens the provider has just issued.

use crate::config::Account;
use rand::Rng;
use std::time::{Duration, Instant};

/// Capped exponential backoff with jitter for a failing token endpoint.
#[derive(Default)]
pub(super) struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The longest a retry waits (without `Retry-After`): 300 s, or less than the account's
/// shortest poll interval, so that the account recovers within one interval of the token
/// endpoint recovering. A failing endpoint still sees at most one request per interval.
pub fn backoff_cap(account: &Account) -> Duration {
    account
        .endpoints
        .iter()
        .map(|e| e.interval.mul_f64(0.9))
        .min()
        .unwrap_or(BACKOFF_CAP)
        .clamp(Duration::from_millis(500), BACKOFF_CAP)
}

impl Backoff {
    /// Records a failure of the attempt that started at `started`; returns how long from
    /// now until the next attempt may start.
    pub(super) fn fail(
        &mut self,
        retry_after: Option<Duration>,
        cap: Duration,
        started: Instant,
    ) -> Duration {
        let exp = BACKOFF_BASE
            .saturating_mul(1u32 << self.failures.min(16))
            .min(cap);
        self.failures = self.failures.saturating_add(1);
        // Jitter in [exp/2, exp]: processes that failed together do not retry together.
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        let delay = retry_after
            .map_or(jittered, |r| r.max(jittered))
            .min(Duration::from_secs(3600));
        let not_before = started + delay;
        self.not_before = Some(not_before);
        not_before.saturating_duration_since(Instant::now())
    }

    pub(super) fn reset(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }

    pub(super) fn waiting(&self) -> Option<Duration> {
        self.not_before
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// The API refusing tokens the provider has just issued: the 401 is not the token's fault
/// (permissions, scope, the API itself), so refreshing again cannot help and would rotate
/// the refresh token on every poll. One refresh per step, the steps growing and capped.
#[derive(Default)]
pub(super) struct Refusals {
    /// Refusals of a freshly refreshed token in a row (0: the API accepts the token).
    pub(super) steps: u32,
    /// No refresh for a 401 before this.
    pub(super) until: Option<Instant>,
    /// The generation refused last: endpoints refused together count as one refusal.
    pub(super) generation: Option<i64>,
}

const REFUSED_BASE: Duration = Duration::from_secs(30);
pub(super) const REFUSED_CAP: Duration = Duration::from_secs(3600);

impl Refusals {
    /// Records that the API refused the freshly refreshed token of `generation`; returns
    /// the refusals in a row and the wait before a 401 may refresh again, or None when this
    /// generation's refusal is counted already (endpoints refused together).
    pub(super) fn refuse(&mut self, generation: i64) -> Option<(u32, Duration)> {
        if self.generation == Some(generation) {
            return None;
        }
        self.generation = Some(generation);
        let wait = REFUSED_BASE
            .saturating_mul(1u32 << self.steps.min(16))
            .min(REFUSED_CAP);
        self.steps = self.steps.saturating_add(1);
        self.until = Some(Instant::now() + wait);
        Some((self.steps, wait))
    }

    pub(super) fn waiting(&self) -> Option<Duration> {
        self.until
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schedule: the n-th delay lies in [2^n/2, 2^n] seconds, capped, and never shorter
    /// than Retry-After.
    #[test]
    fn capped_exponential_with_jitter_and_retry_after() {
        let cap = Duration::from_secs(20);
        let mut b = Backoff::default();
        for n in 0..10u32 {
            let start = Instant::now();
            let d = b.fail(None, cap, start);
            let exp = Duration::from_secs(1 << n).min(cap);
            assert!(
                d <= exp && d + Duration::from_millis(5) >= exp / 2,
                "failure {n}: {d:?} for {exp:?}"
            );
            assert!(b.waiting().is_some());
        }
        let d = b.fail(Some(Duration::from_secs(90)), cap, Instant::now());
        assert!(
            d > Duration::from_secs(89),
            "Retry-After beyond the cap: {d:?}"
        );
        b.reset();
        assert!(b.waiting().is_none());
        let d = b.fail(None, cap, Instant::now());
        assert!(d <= Duration::from_secs(1), "reset starts over: {d:?}");
    }

    /// A refusing API: 30 s, doubling, capped at an hour; one step per refused generation.
    #[test]
    fn refusals_grow_per_generation_and_are_capped() {
        let mut r = Refusals::default();
        assert_eq!(r.refuse(2), Some((1, Duration::from_secs(30))));
        assert_eq!(r.refuse(2), None, "the same generation counts once");
        assert!(r.waiting().is_some());
        assert_eq!(r.refuse(3), Some((2, Duration::from_secs(60))));
        let waits: Vec<u64> = (4..12)
            .filter_map(|g| r.refuse(g))
            .map(|(_, w)| w.as_secs())
            .collect();
        assert_eq!(waits, [120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    }
}
