//! The `authorizations` table: pending `authorize` requests (state, PKCE verifier), so that
//! `authorize ACCOUNT --code CODE`, a later process, can finish what `authorize ACCOUNT`
//! started. The verifier is a short-lived secret: deleted when used, expired after an hour,
//! and sealed like the tokens when the store is encrypted.

use super::Store;
use crate::error::Error;
use crate::store::now;
use crate::store::rows::{Pending, PENDING_TTL};
use rusqlite::{params, OptionalExtension};
use secrecy::{ExposeSecret, SecretString};

/// A PKCE verifier is sealed for its account and its request's `state`.
pub(super) fn verifier<'a>(account: &'a str, state: &'a str) -> crate::store::crypto::Binding<'a> {
    crate::store::crypto::Binding {
        account,
        column: "code_verifier",
        instance: state,
    }
}

impl Store {
    /// Records a pending authorization (and forgets expired ones).
    pub fn put_pending(&self, account: &str, p: &Pending) -> Result<(), Error> {
        self.conn
            .execute(
                "DELETE FROM authorizations WHERE created_at < ?1",
                [now() - PENDING_TTL],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT INTO authorizations (account, state, code_verifier, redirect_uri, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    account,
                    p.state,
                    p.code_verifier
                        .as_ref()
                        .map(|v| crate::store::crypto::seal(self.key(), verifier(account, &p.state), v.expose_secret())),
                    p.redirect_uri,
                    p.created_at
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The account's unexpired pending authorization with this `state`, or (no state given)
    /// its newest one.
    pub fn pending(&self, account: &str, state: Option<&str>) -> Result<Option<Pending>, Error> {
        self.conn
            .query_row(
                "SELECT state, code_verifier, redirect_uri, created_at FROM authorizations \
                 WHERE account = ?1 AND (?2 IS NULL OR state = ?2) AND created_at >= ?3 \
                 ORDER BY created_at DESC, rowid DESC LIMIT 1",
                params![account, state, now() - PENDING_TTL],
                |r| {
                    let state: String = r.get(0)?;
                    let code_verifier = match r.get::<_, Option<String>>(1)? {
                        None => None,
                        Some(stored) => Some(SecretString::from(
                            crate::store::crypto::open(
                                self.key(),
                                verifier(account, &state),
                                stored,
                            )
                            .map_err(|m| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    1,
                                    rusqlite::types::Type::Text,
                                    Box::new(m),
                                )
                            })?,
                        )),
                    };
                    Ok(Pending {
                        state,
                        code_verifier,
                        redirect_uri: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Forgets every pending authorization of the account (once one has been redeemed).
    pub fn clear_pending(&self, account: &str) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM authorizations WHERE account = ?1", [account])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}
