//! The store's encryption state in PostgreSQL, settled whenever the store is opened: the
//! same rules as the SQLite store's (see its `keyed` module), in one transaction under
//! the migration lock, so that instances opening together settle it once.

use super::{Store, LOCK_MIGRATE};
use crate::error::Error;
use crate::store::crypto::{self, StoreKey};
use crate::store::key_check::{check_key, seal_check, KeyCheck, SecretColumn, StoredSecret};
use postgres::Transaction;
use zeroize::Zeroizing;

/// A secret and its row's key (the account, or the authorization's state).
type Stored = StoredSecret<String>;

/// What a transaction found and did: a message for the operator when the key is wrong.
pub(super) enum Settled {
    Done(usize),
    Refused(String),
}

pub(super) fn settle(store: &Store) -> Result<(), Error> {
    let key = store.key().cloned();
    let shown = store.at.target().to_string();
    let outcome = store.with(|c| {
        let mut tx = c.transaction()?;
        let outcome = settle_in(&mut tx, key.as_ref(), &shown)?;
        tx.commit()?;
        Ok(outcome)
    })?;
    match outcome {
        Settled::Done(0) => Ok(()),
        Settled::Done(n) => {
            tracing::info!(values = n, "encrypted the stored tokens at rest");
            Ok(())
        }
        Settled::Refused(message) => Err(Error::runtime(message)),
    }
}

/// The encryption state settled within `tx` (the caller commits): a store without a key's
/// check value gets the key's, its plaintext secrets sealed; a wrong key, or none for an
/// encrypted store, is refused. `shown`: the database as messages name it.
pub(super) fn settle_in(
    tx: &mut Transaction<'_>,
    key: Option<&StoreKey>,
    shown: &str,
) -> Result<Settled, postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1, 1)", &[&LOCK_MIGRATE])?;
    let check: Option<String> = tx
        .query_opt("SELECT check_value FROM store_key WHERE id = 1", &[])?
        .map(|r| r.get(0));
    Ok(match check_key(key, check.as_deref(), &shown) {
        KeyCheck::Settled => Settled::Done(0),
        KeyCheck::Refused(message) => Settled::Refused(message),
        KeyCheck::SealAll(key) => {
            let mut sealed = 0;
            for s in stored_secrets(tx)? {
                if s.value.starts_with(crypto::PREFIX) {
                    continue;
                }
                let plain = Zeroizing::new(s.value.to_string());
                update(tx, &s, &crypto::seal_with(key, s.at(), &plain))?;
                sealed += 1;
            }
            put_check(tx, key)?;
            Settled::Done(sealed)
        }
    })
}

/// Every secret the store holds, as stored.
fn stored_secrets(tx: &mut Transaction<'_>) -> Result<Vec<Stored>, postgres::Error> {
    let mut out = Vec::new();
    for column in SecretColumn::ALL {
        let sql = match column {
            SecretColumn::AccessToken => "SELECT account, account, generation::TEXT, access_token FROM tokens WHERE access_token IS NOT NULL",
            SecretColumn::RefreshToken => "SELECT account, account, generation::TEXT, refresh_token FROM tokens WHERE refresh_token IS NOT NULL",
            SecretColumn::CodeVerifier => "SELECT state, account, state, code_verifier FROM authorizations WHERE code_verifier IS NOT NULL",
        };
        for r in tx.query(sql, &[])? {
            out.push(Stored {
                row: r.get(0),
                account: r.get(1),
                column,
                instance: r.get(2),
                value: Zeroizing::new(r.get(3)),
            });
        }
    }
    Ok(out)
}

fn update(tx: &mut Transaction<'_>, s: &Stored, value: &str) -> Result<(), postgres::Error> {
    let sql = match s.column {
        SecretColumn::AccessToken => "UPDATE tokens SET access_token = $2 WHERE account = $1",
        SecretColumn::RefreshToken => "UPDATE tokens SET refresh_token = $2 WHERE account = $1",
        SecretColumn::CodeVerifier => {
            "UPDATE authorizations SET code_verifier = $2 WHERE state = $1"
        }
    };
    tx.execute(sql, &[&s.row, &value]).map(|_| ())
}

fn put_check(tx: &mut Transaction<'_>, key: &StoreKey) -> Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO store_key (id, check_value) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET check_value = EXCLUDED.check_value",
        &[&seal_check(key)],
    )
    .map(|_| ())
}

impl Store {
    /// Re-seals every secret with `new_key` in one transaction, and records its check value.
    /// Refused while a refresh journal waits to be committed: it is sealed with the old key.
    pub fn rekey(&self, new_key: &StoreKey) -> Result<usize, Error> {
        let old = self.key().cloned();
        let outcome = self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1, 1)", &[&LOCK_MIGRATE])?;
            if let Some(r) = tx.query_opt("SELECT account FROM refresh_journal LIMIT 1", &[])? {
                let account: String = r.get(0);
                return Ok(Settled::Refused(format!(
                    "account `{account}`: a refresh journal is waiting to be committed: run `oauth-poller poll-once` first, then rekey"
                )));
            }
            let mut count = 0;
            for s in stored_secrets(&mut tx)? {
                let plain = match crypto::open(old.as_ref(), s.at(), s.value.to_string()) {
                    Ok(p) => Zeroizing::new(p),
                    Err(e) => return Ok(Settled::Refused(e.to_string())),
                };
                update(&mut tx, &s, &crypto::seal_with(new_key, s.at(), &plain))?;
                count += 1;
            }
            put_check(&mut tx, new_key)?;
            tx.commit()?;
            Ok(Settled::Done(count))
        })?;
        match outcome {
            Settled::Done(n) => Ok(n),
            Settled::Refused(message) => Err(Error::runtime(message)),
        }
    }
}
