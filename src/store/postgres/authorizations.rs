//! The `authorizations` table in PostgreSQL: pending `authorize` requests (see the SQLite
//! store's twin for why they are kept).

use super::Store;
use crate::error::{Error, StoreError};
use crate::store::crypto::{self, Binding};
use crate::store::now;
use crate::store::rows::{Pending, PENDING_TTL};
use secrecy::{ExposeSecret, SecretString};

/// A PKCE verifier is sealed for its account and its request's `state`.
pub(super) fn verifier<'a>(account: &'a str, state: &'a str) -> Binding<'a> {
    Binding {
        account,
        column: "code_verifier",
        instance: state,
    }
}

impl Store {
    pub fn put_pending(&self, account: &str, p: &Pending) -> Result<(), Error> {
        let sealed = p
            .code_verifier
            .as_ref()
            .map(|v| crypto::seal(self.key(), verifier(account, &p.state), v.expose_secret()));
        self.with(|c| {
            c.execute(
                "DELETE FROM authorizations WHERE created_at < $1",
                &[&(now() - PENDING_TTL)],
            )?;
            c.execute(
                "INSERT INTO authorizations (account, state, code_verifier, redirect_uri, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&account, &p.state, &sealed, &p.redirect_uri, &p.created_at],
            )
            .map(|_| ())
        })
    }

    pub fn pending(&self, account: &str, state: Option<&str>) -> Result<Option<Pending>, Error> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT state, code_verifier, redirect_uri, created_at FROM authorizations \
                 WHERE account = $1 AND ($2::TEXT IS NULL OR state = $2) AND created_at >= $3 \
                 ORDER BY created_at DESC LIMIT 1",
                &[&account, &state, &(now() - PENDING_TTL)],
            )
        })?;
        let Some(r) = row else {
            return Ok(None);
        };
        let state: String = r.get(0);
        let code_verifier = match r.get::<_, Option<String>>(1) {
            None => None,
            Some(stored) => Some(SecretString::from(
                crypto::open(self.key(), verifier(account, &state), stored)
                    .map_err(|e| Error::Store(StoreError::new(self.at.target(), e)))?,
            )),
        };
        Ok(Some(Pending {
            state,
            code_verifier,
            redirect_uri: r.get(2),
            created_at: r.get(3),
        }))
    }

    pub fn clear_pending(&self, account: &str) -> Result<(), Error> {
        self.with(|c| {
            c.execute("DELETE FROM authorizations WHERE account = $1", &[&account])
                .map(|_| ())
        })
    }
}
