//! The store's side of a refresh, each step under SQLite's write lock for milliseconds and
//! on a blocking thread: deciding whether to ask the provider (committing a journal a
//! crashed process left), and committing what the provider answered.

use super::{moved_on, usable, GrantKind, TokenEvent};
use crate::config::Account;
use crate::error::Error;
use crate::oauth::TokenResponse;
use crate::store::Handle;
use crate::store::{now, RefreshLock, RequestClaim, TokenRow, TokenState};
use secrecy::ExposeSecret;

/// What the store said before asking the provider.
pub(super) enum Decision {
    /// Use this row's token: still usable, refreshed by someone else, or recovered from the
    /// refresh journal.
    Use(TokenRow),
    NeedsReauth(TokenRow),
    /// Too little room in the database to commit an answer.
    NoRoom(Error),
    /// Another process's request from the same token may still be answered: wait for it.
    InFlight {
        requester: String,
        alive: bool,
    },
    /// Ask the token endpoint.
    Request {
        /// The row the request starts from (None: no token is stored).
        from: Option<TokenRow>,
        /// Another process's request from the same row left no answer: the refresh token
        /// may be spent (see [`RequestClaim::Replaced`]).
        unanswered: Option<String>,
    },
}

/// What committing an outcome found.
pub(super) enum Committed {
    Stored(TokenRow),
    /// The row was replaced while the provider was asked (`seed --force`, `authorize`): the
    /// operator's token stays, and this outcome is dropped.
    Superseded {
        current: Option<TokenRow>,
    },
}

/// Runs synchronous store work on a blocking thread.
pub(super) async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::runtime(format!("store task failed: {e}")))?
}

/// Under the database's write lock (for milliseconds): commits an answer a crashed process
/// left in the refresh journal, or says whether to ask the provider at all.
pub(super) fn decide(
    db: &Handle,
    account: &Account,
    seen: Option<i64>,
    force: bool,
) -> Result<Decision, Error> {
    let name = &account.name;
    let lock = db.lock(name)?;
    let row = lock.token(name)?;
    // A refresh answered but not committed before the process died: commit it now.
    if let Some(p) = db.journal_read(name) {
        let current = row.as_ref().map_or(0, |r| r.generation);
        let response = (p.generation == current)
            .then(|| crate::oauth::response::parse(200, &p.body, None, &[]).ok())
            .flatten();
        let Some(response) = response else {
            // Committed already, or superseded by a seed: nothing in it is needed.
            db.journal_remove(name);
            return decide_on(lock, account, row, seen, force);
        };
        let grant = GrantKind::from_journal(&p.grant);
        let new_row = row_from_response(account, row.as_ref(), response, grant, p.started);
        let (event, detail) = describe_new_token(&new_row, row.as_ref(), grant);
        let detail = format!("{detail}; recovered from the refresh journal");
        // The journal goes only once what it holds is committed: a failed commit (a full
        // disk) leaves it for the next attempt.
        let stored = lock.commit_token(&new_row, event.as_str(), &detail)?;
        db.journal_remove(name);
        tracing::warn!(account = %name, generation = stored.generation,
            "a refresh answered before the last crash was committed from the refresh journal");
        return Ok(Decision::Use(stored));
    }
    decide_on(lock, account, row, seen, force)
}

fn decide_on(
    lock: RefreshLock,
    account: &Account,
    row: Option<TokenRow>,
    seen: Option<i64>,
    force: bool,
) -> Result<Decision, Error> {
    match row {
        Some(r) if r.state == TokenState::NeedsReauth => {
            lock.release();
            return Ok(Decision::NeedsReauth(r));
        }
        // Another process refreshed (or an operator seeded) while we waited for the lock.
        Some(r) if moved_on(account, &r, seen) || (!force && usable(account, &r, now())) => {
            lock.release();
            return Ok(Decision::Use(r));
        }
        _ => {}
    }
    // Room for the answer before asking: a full database postpones the refresh rather
    // than losing a rotated refresh token at the commit.
    if let Err(e) = lock.ensure_room() {
        return Ok(Decision::NoRoom(e));
    }
    let generation = row.as_ref().map_or(0, |r| r.generation);
    match lock.commit_request(&account.name, generation)? {
        RequestClaim::Claimed => Ok(Decision::Request {
            from: row,
            unanswered: None,
        }),
        RequestClaim::Replaced { requester } => Ok(Decision::Request {
            from: row,
            unanswered: Some(requester),
        }),
        RequestClaim::InFlight { requester, alive } => Ok(Decision::InFlight { requester, alive }),
    }
}

/// Under the database's write lock: `write` the outcome of a refresh that started from
/// `generation`, unless the row was replaced meanwhile.
pub(super) fn commit_if_unchanged(
    db: &Handle,
    name: &str,
    generation: i64,
    write: impl FnOnce(RefreshLock) -> Result<TokenRow, Error>,
) -> Result<Committed, Error> {
    let lock = db.lock(name)?;
    let current = lock.token(name)?;
    if current.as_ref().map_or(0, |r| r.generation) != generation {
        lock.release();
        return Ok(Committed::Superseded { current });
    }
    write(lock).map(Committed::Stored)
}

pub(super) fn row_from_response(
    account: &Account,
    old: Option<&TokenRow>,
    r: TokenResponse,
    grant: GrantKind,
    started: i64,
) -> TokenRow {
    let mut row = TokenRow::new(&account.name, grant.as_str(), started);
    let rotated = r.refresh_token.is_some();
    row.access_token = Some(r.access_token);
    row.token_type = r.token_type.or_else(|| Some("Bearer".into()));
    row.scope = r.scope.or_else(|| old.and_then(|o| o.scope.clone()));
    // Counted from when the request was sent: never later than the server's clock says.
    // (Lifetimes are clamped by the parser; saturating all the same.)
    row.access_expires_at = r.expires_in.map(|e| started.saturating_add(e));
    match r.refresh_token {
        Some(rt) => {
            row.refresh_token = Some(rt);
            row.refresh_expires_at = r.refresh_expires_in.map(|e| started.saturating_add(e));
        }
        // No new refresh token: the old one stays good (RFC 6749 6).
        None if grant == GrantKind::RefreshToken => {
            row.refresh_token = old.and_then(|o| o.refresh_token.clone());
            row.refresh_expires_at = old.and_then(|o| o.refresh_expires_at);
        }
        None => {}
    }
    row.last_refresh_at = Some(started);
    row.refresh_warned_at = if rotated {
        None
    } else {
        old.and_then(|o| o.refresh_warned_at)
    };
    row
}

pub(super) fn describe_new_token(
    new: &TokenRow,
    old: Option<&TokenRow>,
    grant: GrantKind,
) -> (TokenEvent, String) {
    let expiry = match new.access_expires_at {
        Some(t) => format!(
            "access token valid for {}s",
            t.saturating_sub(new.obtained_at)
        ),
        None => "access token without a stated expiry".to_string(),
    };
    let rotation = match (
        &new.refresh_token,
        old.and_then(|o| o.refresh_token.as_ref()),
    ) {
        (Some(n), Some(o)) if n.expose_secret() == o.expose_secret() => "refresh token kept",
        (Some(_), _) => "new refresh token",
        (None, _) => "no refresh token",
    };
    let event = if grant == GrantKind::RefreshToken {
        TokenEvent::Refreshed
    } else {
        TokenEvent::Obtained
    };
    (event, format!("{grant}: {expiry}; {rotation}"))
}
