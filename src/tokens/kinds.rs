//! The closed sets a refresh names: how a token was obtained, and what the events table
//! records. Their names are an interface (stored rows, the refresh journal, `history`): they
//! never change.

use crate::oauth::Grant;
use std::fmt;

/// How a token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    RefreshToken,
    Password,
    ClientCredentials,
    AuthorizationCode,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::RefreshToken => "refresh_token",
            GrantKind::Password => "password",
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::AuthorizationCode => "authorization_code",
        }
    }

    pub fn of(grant: &Grant<'_>) -> GrantKind {
        match grant {
            Grant::RefreshToken(_) => GrantKind::RefreshToken,
            Grant::Password => GrantKind::Password,
            Grant::ClientCredentials => GrantKind::ClientCredentials,
            Grant::AuthorizationCode { .. } => GrantKind::AuthorizationCode,
        }
    }

    /// A grant named in the refresh journal; a name this version does not know is taken for
    /// a refresh, as before there were others.
    pub fn from_journal(name: &str) -> GrantKind {
        match name {
            "password" => GrantKind::Password,
            "client_credentials" => GrantKind::ClientCredentials,
            "authorization_code" => GrantKind::AuthorizationCode,
            _ => GrantKind::RefreshToken,
        }
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to an account's token, as the events table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    /// Imported from a seed file.
    Seeded,
    /// Obtained with a grant other than a refresh (a fallback grant, `authorize`).
    Obtained,
    Refreshed,
    /// A token request failed temporarily.
    RefreshFailed,
    NeedsReauth,
    /// The API refuses freshly refreshed tokens.
    Rejected,
}

impl TokenEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEvent::Seeded => "seeded",
            TokenEvent::Obtained => "obtained",
            TokenEvent::Refreshed => "refreshed",
            TokenEvent::RefreshFailed => "refresh_failed",
            TokenEvent::NeedsReauth => "needs_reauth",
            TokenEvent::Rejected => "rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_names_round_trip() {
        for g in [
            GrantKind::RefreshToken,
            GrantKind::Password,
            GrantKind::ClientCredentials,
            GrantKind::AuthorizationCode,
        ] {
            assert_eq!(GrantKind::from_journal(g.as_str()), g);
        }
        assert_eq!(GrantKind::from_journal("x"), GrantKind::RefreshToken);
    }
}
