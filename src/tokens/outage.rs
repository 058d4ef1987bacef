//! While the store is unavailable (PostgreSQL down or restarting): polls use the last token
//! read while it is valid, no refresh is asked (its answer could not be committed), and an
//! answer that arrived just before the store went away is kept in memory and committed when
//! it returns, before the new token is used.

use super::{AccountSlot, Committed, Journal, TokenEvent, Tokens};
use crate::error::Error;
use crate::store::{now, TokenRow};
use std::time::Duration;

/// How long a commit waits before trying again while the store is unavailable, doubling up
/// to the cap. Short: once the store is back, the answer must be journaled before another
/// instance that took the account over gives up waiting for it (within two lease TTLs;
/// reconnecting is throttled by the store handle itself).
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(1);

impl AccountSlot {
    /// The last token read or committed, unless it has expired (the refresh margin is not
    /// applied: it is what a refresh would have been for).
    fn last_known(&self) -> Option<super::Access> {
        let last = self.last.lock();
        let c = last.as_ref()?;
        c.access_expires_at
            .is_none_or(|t| now() < t)
            .then(|| super::Access {
                authorization: c.authorization.clone(),
                generation: c.generation,
            })
    }
}

impl Tokens {
    /// While the store is unavailable: the account's last token, if still valid.
    pub(super) fn while_store_down(&self, slot: &AccountSlot) -> Option<super::Access> {
        if !self.inner.db.health().unavailable() {
            return None;
        }
        slot.last_known()
    }

    /// Commits the provider's answer; while the store is unavailable, tries again (with a
    /// growing delay) until it returns. At shutdown it gives up once token requests are
    /// abandoned (see [`Tokens::abandon_requests_after`]), and says so.
    pub(super) async fn commit_answer_when_stored(
        &self,
        name: &str,
        generation: i64,
        row: TokenRow,
        event: TokenEvent,
        detail: String,
    ) -> Result<Committed, Error> {
        let mut delay = RETRY_FIRST;
        let mut said = false;
        loop {
            // First into the journal, if it could not be written when the answer came: should
            // this instance's lease have moved meanwhile, its commit is refused, and the new
            // owner commits the journaled answer instead of spending the rotated refresh token.
            if let Ok(slot) = self.slot(name) {
                let kept = slot.unjournaled.lock().take();
                if let Some(entry) = kept {
                    if !self.inner.db.journal_write(name, &entry) {
                        *slot.unjournaled.lock() = Some(entry);
                    }
                }
            }
            let committed = self
                .commit_attempt(
                    name,
                    generation,
                    row.clone(),
                    event,
                    detail.clone(),
                    Journal::Clear,
                )
                .await;
            match committed {
                Err(e) if self.inner.db.health().unavailable() => {
                    if !said {
                        said = true;
                        tracing::error!(account = name, error = %e,
                            "the token endpoint's answer cannot be committed: the store is unavailable; it is kept in memory and committed when the store returns (the new token is not used before)");
                    }
                    let wait = async {
                        tokio::time::sleep(delay).await;
                        Ok(())
                    };
                    if self.unless_abandoned(wait).await.is_err() {
                        tracing::error!(account = name,
                            "the token endpoint's answer was not committed before shutdown (the store is unavailable): if the provider rotated the refresh token, the account needs re-authorization");
                        return Err(e);
                    }
                    delay = (delay * 2).min(RETRY_CAP);
                }
                other => {
                    if other.is_ok() {
                        if let Ok(slot) = self.slot(name) {
                            slot.unjournaled.lock().take();
                        }
                    }
                    if said && other.is_ok() {
                        tracing::info!(
                            account = name,
                            "the token endpoint's answer kept in memory is committed"
                        );
                    }
                    return other;
                }
            }
        }
    }
}
