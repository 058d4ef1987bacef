//! Tokens and authorization codes, in memory.

use super::oauth_error::OAuthError;
use super::util::{random_token, random_uuid, unix_now};
use super::{Profile, SimOptions};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) access: HashMap<String, Access>,
    pub(crate) refresh: HashMap<String, Refresh>,
    codes: HashMap<String, Code>,
    /// Every token ever issued, oldest first.
    pub(crate) issued: Vec<Issued>,
}

pub(crate) struct Access {
    pub(crate) expires: Option<Instant>,
    pub(crate) revoked: bool,
}

pub(crate) struct Refresh {
    pub(crate) expires: Option<Instant>,
    pub(crate) revoked: bool,
    scope: String,
    /// The access token issued with (or last refreshed by) this refresh token.
    access: String,
    /// The authorization code the token family came from.
    code: Option<String>,
}

struct Code {
    redirect_uri: String,
    challenge: Option<(String, String)>,
    expires: Instant,
    used: bool,
    scope: String,
}

pub(crate) struct Issued {
    pub(crate) kind: &'static str,
    pub(crate) token: String,
    pub(crate) grant: &'static str,
    pub(crate) at: i64,
}

/// The result of a successful grant.
pub(crate) struct Grant {
    pub(crate) access: String,
    pub(crate) refresh: Option<String>,
    pub(crate) scope: String,
    pub(crate) created_at: i64,
    /// Remaining refresh-token lifetime.
    pub(crate) refresh_left: Option<Duration>,
    /// The refresh token is the one the client already has (no rotation).
    pub(crate) refresh_unchanged: bool,
}

/// Why an access token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccessError {
    Unknown,
    Expired,
    Revoked,
}

/// Why a refresh failed, besides the OAuth error: the token was already revoked (reuse).
pub(crate) struct RefreshFailure {
    pub(crate) error: OAuthError,
    pub(crate) reuse: bool,
}

fn new_value(profile: Profile) -> String {
    match profile {
        Profile::Citesphere => random_uuid(),
        _ => random_token(),
    }
}

fn after(ttl: Duration) -> Option<Instant> {
    if ttl.is_zero() {
        None
    } else {
        Some(Instant::now() + ttl)
    }
}

impl Store {
    fn new_access(&mut self, o: &SimOptions, grant: &'static str) -> String {
        let token = new_value(o.profile);
        self.access.insert(
            token.clone(),
            Access {
                expires: after(o.access_ttl),
                revoked: false,
            },
        );
        self.issued.push(Issued {
            kind: "access",
            token: token.clone(),
            grant,
            at: unix_now(),
        });
        token
    }

    fn new_refresh(&mut self, o: &SimOptions, grant: &'static str) -> String {
        let token = new_value(o.profile);
        self.issued.push(Issued {
            kind: "refresh",
            token: token.clone(),
            grant,
            at: unix_now(),
        });
        token
    }

    /// Issues an access token (and a refresh token when `with_refresh`).
    pub(crate) fn issue(
        &mut self,
        o: &SimOptions,
        scope: &str,
        with_refresh: bool,
        grant: &'static str,
        code: Option<String>,
    ) -> Grant {
        let access = self.new_access(o, grant);
        let refresh = with_refresh.then(|| {
            let token = self.new_refresh(o, grant);
            self.refresh.insert(
                token.clone(),
                Refresh {
                    expires: o.refresh_ttl.map(|t| Instant::now() + t),
                    revoked: false,
                    scope: scope.to_owned(),
                    access: access.clone(),
                    code,
                },
            );
            token
        });
        Grant {
            access,
            refresh,
            scope: scope.to_owned(),
            created_at: unix_now(),
            refresh_left: o.refresh_ttl.filter(|_| with_refresh),
            refresh_unchanged: false,
        }
    }

    /// The `refresh_token` grant. `scope` is the requested scope, if any.
    pub(crate) fn refresh(
        &mut self,
        o: &SimOptions,
        token: &str,
        scope: Option<&str>,
    ) -> Result<Grant, RefreshFailure> {
        let fail = |error: OAuthError, reuse: bool| RefreshFailure { error, reuse };
        let now = Instant::now();
        let Some(rec) = self.refresh.get(token) else {
            return Err(fail(
                OAuthError::invalid_grant(o.profile, "refresh", token),
                false,
            ));
        };
        if rec.revoked {
            return Err(fail(
                OAuthError::invalid_grant(o.profile, "refresh", token),
                true,
            ));
        }
        if rec.expires.is_some_and(|e| e <= now) {
            return Err(fail(
                OAuthError::invalid_grant(o.profile, "expired", token),
                false,
            ));
        }
        let scope = match scope {
            Some(s) if !s.trim().is_empty() => {
                if !subset(s, &rec.scope) {
                    return Err(fail(OAuthError::invalid_scope(), false));
                }
                s.to_owned()
            }
            _ => rec.scope.clone(),
        };
        let old_access = rec.access.clone();
        let code = rec.code.clone();
        let old_expires = rec.expires;
        if o.revoke_access_on_refresh {
            if let Some(a) = self.access.get_mut(&old_access) {
                a.revoked = true;
            }
        }
        let access = self.new_access(o, "refresh_token");
        let (refresh, expires, unchanged) = if o.rotate {
            if let Some(r) = self.refresh.get_mut(token) {
                r.revoked = true;
            }
            let new = self.new_refresh(o, "refresh_token");
            let expires = o.refresh_ttl.map(|t| now + t);
            self.refresh.insert(
                new.clone(),
                Refresh {
                    expires,
                    revoked: false,
                    scope: scope.clone(),
                    access: access.clone(),
                    code,
                },
            );
            (new, expires, false)
        } else {
            if let Some(r) = self.refresh.get_mut(token) {
                r.access = access.clone();
            }
            (token.to_owned(), old_expires, true)
        };
        Ok(Grant {
            access,
            refresh: Some(refresh),
            scope,
            created_at: unix_now(),
            refresh_left: expires.map(|e| e.saturating_duration_since(now)),
            refresh_unchanged: unchanged,
        })
    }

    /// Checks an access token presented to the API.
    pub(crate) fn check_access(&self, token: &str) -> Result<(), AccessError> {
        match self.access.get(token) {
            None => Err(AccessError::Unknown),
            Some(a) if a.revoked => Err(AccessError::Revoked),
            Some(a) if a.expires.is_some_and(|e| e <= Instant::now()) => Err(AccessError::Expired),
            Some(_) => Ok(()),
        }
    }

    pub(crate) fn new_code(
        &mut self,
        o: &SimOptions,
        redirect_uri: &str,
        challenge: Option<(String, String)>,
        scope: &str,
    ) -> String {
        let code = random_token();
        let now = Instant::now();
        self.codes.retain(|_, c| c.expires > now && !c.used);
        self.codes.insert(
            code.clone(),
            Code {
                redirect_uri: redirect_uri.to_owned(),
                challenge,
                expires: now + o.code_ttl,
                used: false,
                scope: scope.to_owned(),
            },
        );
        code
    }

    /// Redeems an authorization code; returns the scope it was granted for. A code presented
    /// a second time fails, and revokes the tokens issued for it (RFC 6749 4.1.2).
    pub(crate) fn take_code(
        &mut self,
        o: &SimOptions,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<String, OAuthError> {
        let p = o.profile;
        let Some(rec) = self.codes.get_mut(code) else {
            return Err(OAuthError::invalid_grant(p, "code", code));
        };
        if rec.used {
            self.revoke_family(code);
            return Err(OAuthError::invalid_grant(p, "code", code));
        }
        if rec.expires <= Instant::now() {
            return Err(OAuthError::invalid_grant(p, "code", code));
        }
        if redirect_uri != Some(rec.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(p, "redirect_uri", code));
        }
        if let Some((challenge, method)) = &rec.challenge {
            let Some(verifier) = verifier else {
                return Err(OAuthError::invalid_request("Code verifier required."));
            };
            let valid_chars = verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let computed = if method == "S256" {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Sha256::digest(verifier.as_bytes()))
            } else {
                verifier.to_owned()
            };
            if !(43..=128).contains(&verifier.len()) || !valid_chars || &computed != challenge {
                return Err(OAuthError::invalid_grant(p, "pkce", code));
            }
        }
        rec.used = true;
        Ok(rec.scope.clone())
    }

    fn revoke_family(&mut self, code: &str) {
        let mut access = Vec::new();
        for r in self.refresh.values_mut() {
            if r.code.as_deref() == Some(code) {
                r.revoked = true;
                access.push(r.access.clone());
            }
        }
        for a in access {
            if let Some(a) = self.access.get_mut(&a) {
                a.revoked = true;
            }
        }
    }

    /// Makes the current tokens expire now (`/_sim/expire`).
    pub(crate) fn expire(&mut self, access: bool, refresh: bool) -> usize {
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        let mut n = 0;
        if access {
            for a in self.access.values_mut().filter(|a| !a.revoked) {
                a.expires = Some(past);
                n += 1;
            }
        }
        if refresh {
            for r in self.refresh.values_mut().filter(|r| !r.revoked) {
                r.expires = Some(past);
                n += 1;
            }
        }
        n
    }

    /// Revokes every token (`/_sim/revoke`).
    pub(crate) fn revoke_all(&mut self) -> usize {
        let mut n = 0;
        for a in self.access.values_mut().filter(|a| !a.revoked) {
            a.revoked = true;
            n += 1;
        }
        for r in self.refresh.values_mut().filter(|r| !r.revoked) {
            r.revoked = true;
            n += 1;
        }
        n
    }

    pub(crate) fn valid_access(&self) -> Vec<String> {
        let now = Instant::now();
        self.issued
            .iter()
            .filter(|i| i.kind == "access")
            .filter(|i| {
                self.access
                    .get(&i.token)
                    .is_some_and(|a| !a.revoked && a.expires.is_none_or(|e| e > now))
            })
            .map(|i| i.token.clone())
            .collect()
    }

    pub(crate) fn valid_refresh(&self) -> Vec<String> {
        let now = Instant::now();
        self.issued
            .iter()
            .filter(|i| i.kind == "refresh")
            .filter(|i| {
                self.refresh
                    .get(&i.token)
                    .is_some_and(|r| !r.revoked && r.expires.is_none_or(|e| e > now))
            })
            .map(|i| i.token.clone())
            .collect()
    }
}

/// Whether every scope in `requested` is in `allowed` (space separated).
pub(crate) fn subset(requested: &str, allowed: &str) -> bool {
    requested
        .split_whitespace()
        .all(|s| allowed.split_whitespace().any(|a| a == s))
}
