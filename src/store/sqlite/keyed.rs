//! The store's encryption state, settled whenever the store is opened.
//!
//! A store is encrypted once it has a `store_key` row: a constant sealed with its key. The
//! first open with a key seals every secret still in plaintext (and converts values of the
//! older `enc:v1:` form, which were not bound to a generation) and writes that row, in one
//! transaction. From then on a plaintext or `enc:v1:` value is refused where it is read (see
//! [`crypto::open`]), a wrong key fails here before anything is read or written, and opening
//! without a key is an error instead of writing plaintext beside ciphertext. [`Store::rekey`]
//! re-seals everything with a new key.

use super::{pending, Store};
use crate::error::Error;
use crate::store::crypto::{self, StoreKey};
use crate::store::key_check::{check_key, seal_check, KeyCheck, SecretColumn, StoredSecret};
use rusqlite::{params, OptionalExtension};
use zeroize::Zeroizing;

/// A secret and its row's `rowid`.
type Stored = StoredSecret<i64>;

/// Settles the store for the key it was opened with (or none): see the module documentation.
pub(crate) fn settle(store: &Store) -> Result<(), Error> {
    settle_with(store, store.key())
}

fn settle_with(store: &Store, key: Option<&StoreKey>) -> Result<(), Error> {
    let check = check_value(store)?;
    match check_key(key, check.as_deref(), &store.path().display()) {
        KeyCheck::Settled => Ok(()),
        KeyCheck::Refused(message) => Err(Error::runtime(message)),
        KeyCheck::SealAll(key) => seal_all(store, key),
    }
}

/// The store's check value, if it is encrypted (a store not yet migrated has no table).
fn check_value(store: &Store) -> Result<Option<String>, Error> {
    let has_table: bool = store
        .conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'store_key'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| store.err(e))?;
    if !has_table {
        return Ok(None);
    }
    store
        .conn
        .query_row("SELECT check_value FROM store_key WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| store.err(e))
}

/// Every secret the store holds, as stored.
fn stored_secrets(store: &Store) -> Result<Vec<Stored>, Error> {
    let mut out = Vec::new();
    for column in SecretColumn::ALL {
        let sql = match column {
            SecretColumn::AccessToken => "SELECT rowid, account, generation, access_token FROM tokens WHERE access_token IS NOT NULL",
            SecretColumn::RefreshToken => "SELECT rowid, account, generation, refresh_token FROM tokens WHERE refresh_token IS NOT NULL",
            SecretColumn::CodeVerifier => "SELECT rowid, account, state, code_verifier FROM authorizations WHERE code_verifier IS NOT NULL",
        };
        let mut stmt = store.conn.prepare(sql).map_err(|e| store.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let instance = match r.get_ref(2)? {
                    rusqlite::types::ValueRef::Integer(g) => g.to_string(),
                    _ => r.get::<_, String>(2)?,
                };
                Ok(Stored {
                    row: r.get(0)?,
                    account: r.get(1)?,
                    column,
                    instance,
                    value: Zeroizing::new(r.get(3)?),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| store.err(e))?;
        out.extend(rows);
    }
    Ok(out)
}

fn update(store: &Store, s: &Stored, value: &str) -> Result<(), Error> {
    let sql = match s.column {
        SecretColumn::AccessToken => "UPDATE tokens SET access_token = ?2 WHERE rowid = ?1",
        SecretColumn::RefreshToken => "UPDATE tokens SET refresh_token = ?2 WHERE rowid = ?1",
        SecretColumn::CodeVerifier => {
            "UPDATE authorizations SET code_verifier = ?2 WHERE rowid = ?1"
        }
    };
    store
        .conn
        .execute(sql, params![s.row, value])
        .map(|_| ())
        .map_err(|e| store.err(e))
}

/// Runs `work` in one `BEGIN IMMEDIATE` transaction (the cross-process write lock).
fn in_transaction(store: &Store, work: impl FnOnce() -> Result<(), Error>) -> Result<(), Error> {
    store
        .conn
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| store.err(e))?;
    let result = work().and_then(|()| store.conn.execute_batch("COMMIT").map_err(|e| store.err(e)));
    if result.is_err() && !store.conn.is_autocommit() {
        let _ = store.conn.execute_batch("ROLLBACK");
    }
    result
}

fn put_check(store: &Store, key: &StoreKey) -> Result<(), Error> {
    store
        .conn
        .execute(
            "INSERT OR REPLACE INTO store_key (id, check_value) VALUES (1, ?1)",
            [seal_check(key)],
        )
        .map(|_| ())
        .map_err(|e| store.err(e))
}

/// The first open with a key: seal every secret, then mark the store encrypted.
fn seal_all(store: &Store, key: &StoreKey) -> Result<(), Error> {
    let mut sealed = 0;
    in_transaction(store, || {
        // Another process may have done it while this one waited for the lock.
        if let Some(check) = check_value(store)? {
            return match check_key(Some(key), Some(&check), &store.path().display()) {
                KeyCheck::Refused(message) => Err(Error::runtime(message)),
                _ => Ok(()),
            };
        }
        for s in stored_secrets(store)? {
            let plain = if s.value.starts_with(crypto::PREFIX_V1) {
                crypto::open_v1(key, &s.account, s.column.as_str(), &s.value).ok_or_else(|| {
                    Error::runtime(format!(
                        "account `{}`: cannot decrypt the stored {}: wrong encryption key",
                        s.account,
                        s.column.as_str()
                    ))
                })?
            } else if s.value.starts_with(crypto::PREFIX) {
                crypto::open_with(key, s.at(), &s.value)
                    .map_err(|e| Error::runtime(e.to_string()))?;
                continue;
            } else {
                s.value.to_string()
            };
            let plain = Zeroizing::new(plain);
            update(store, &s, &crypto::seal_with(key, s.at(), &plain))?;
            sealed += 1;
        }
        put_check(store, key)
    })?;
    tracing::info!(values = sealed, "encrypted the stored tokens at rest");
    Ok(())
}

impl Store {
    /// Re-seals every secret of the store with `new_key` (from the key the store was opened
    /// with, or from plaintext) in one transaction, and records the new key's check value.
    /// Refused while a refresh journal waits to be committed: it is sealed with the current
    /// key.
    pub fn rekey(&self, new_key: &StoreKey) -> Result<usize, Error> {
        let mut count = 0;
        in_transaction(self, || {
            let secrets = stored_secrets(self)?;
            for s in &secrets {
                if pending::path(self.path(), &s.account)
                    .symlink_metadata()
                    .is_ok()
                {
                    return Err(Error::runtime(format!(
                        "account `{}`: a refresh journal is waiting to be committed ({}): run `oauth-poller poll-once` first, then rekey",
                        s.account,
                        pending::path(self.path(), &s.account).display()
                    )));
                }
            }
            for s in &secrets {
                let plain = Zeroizing::new(
                    crypto::open(self.key(), s.at(), s.value.to_string())
                        .map_err(|e| Error::runtime(e.to_string()))?,
                );
                update(self, s, &crypto::seal_with(new_key, s.at(), &plain))?;
                count += 1;
            }
            put_check(self, new_key)
        })?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto::Binding;

    fn raw(store: &Store, sql: &str) -> String {
        store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A store of an earlier version: an `enc:v1:` access token, a plaintext refresh token
    /// and PKCE verifier. The first open with the key seals them all for their rows; then a
    /// wrong key or no key is refused, and the values read back.
    #[test]
    fn the_first_open_with_a_key_converts_old_values_and_marks_the_store() {
        let dir = std::env::temp_dir().join(format!("oauth-poller-keyed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().create(&dir).unwrap();
        let store = Store::open(&dir.join("state.db"), None).unwrap();
        let key = StoreKey::from_bytes([9u8; 32]);
        store
            .conn
            .execute(
                "INSERT INTO tokens (account, access_token, refresh_token, obtained_at, obtained_by, generation) \
                 VALUES ('a', ?1, 'RT-plain', 0, 'seed', 4)",
                [crypto::seal_v1(&key, "a", "access_token", "AT-old")],
            )
            .unwrap();
        store
            .conn
            .execute(
                "INSERT INTO authorizations (account, state, code_verifier, created_at) \
                 VALUES ('a', 'st8', 'verifier-plain', 0)",
                [],
            )
            .unwrap();
        assert!(
            settle_with(&store, Some(&StoreKey::from_bytes([1u8; 32]))).is_err(),
            "a v1 value under another key"
        );
        settle_with(&store, Some(&key)).unwrap();
        let at = |column, instance| Binding {
            account: "a",
            column,
            instance,
        };
        for (sql, binding, want) in [
            (
                "SELECT access_token FROM tokens",
                at("access_token", "4"),
                "AT-old",
            ),
            (
                "SELECT refresh_token FROM tokens",
                at("refresh_token", "4"),
                "RT-plain",
            ),
            (
                "SELECT code_verifier FROM authorizations",
                at("code_verifier", "st8"),
                "verifier-plain",
            ),
        ] {
            let stored = raw(&store, sql);
            assert!(stored.starts_with(crypto::PREFIX), "{stored}");
            assert_eq!(crypto::open_with(&key, binding, &stored).unwrap(), want);
        }
        settle_with(&store, Some(&key)).unwrap();
        let wrong = settle_with(&store, Some(&StoreKey::from_bytes([1u8; 32])))
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("wrong encryption key"), "{wrong}");
        let none = settle_with(&store, None).unwrap_err().to_string();
        assert!(none.contains("encryption_key_file"), "{none}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The key belongs to the opened store: two stores with different keys in one process
    /// each read back what they wrote, and each key opens only its own store.
    #[test]
    fn two_stores_in_one_process_keep_their_own_keys() {
        use crate::store::TokenRow;
        use secrecy::{ExposeSecret, SecretString};
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("one.db"), dir.path().join("two.db"));
        let (k1, k2) = (StoreKey::from_bytes([1; 32]), StoreKey::from_bytes([2; 32]));
        let a = Store::open(&one, Some(&k1)).unwrap();
        let b = Store::open(&two, Some(&k2)).unwrap();
        for (store, value) in [(&a, "AT-one"), (&b, "AT-two")] {
            let mut row = TokenRow::new("acct", "seed", 0);
            row.access_token = Some(SecretString::from(value));
            Store::lock(store.handle())
                .unwrap()
                .commit_token(&row, "seeded", "")
                .unwrap();
        }
        for (store, value) in [(&a, "AT-one"), (&b, "AT-two")] {
            let row = store.token("acct").unwrap().unwrap();
            assert_eq!(row.access_token.unwrap().expose_secret(), value);
        }
        assert!(Store::open(&one, Some(&k2)).is_err());
        assert!(Store::open(&two, Some(&k1)).is_err());
    }
}
