//! The rows both backends store and return: tokens, token events, polls, pending
//! authorizations and refresh-journal entries. Secrets stay wrapped; `Debug` redacts them.

use secrecy::SecretString;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Ok,
    NeedsReauth,
}

impl TokenState {
    /// The stored form (the `tokens.state` column).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Ok => "ok",
            TokenState::NeedsReauth => "needs_reauth",
        }
    }

    /// The stored form read back; anything but `needs_reauth` is `Ok`, as it always was.
    pub(crate) fn from_stored(stored: &str) -> TokenState {
        match stored {
            "needs_reauth" => TokenState::NeedsReauth,
            _ => TokenState::Ok,
        }
    }
}

/// One account's stored token. Secrets stay wrapped; `Debug` redacts them.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub account: String,
    pub access_token: Option<SecretString>,
    pub token_type: Option<String>,
    pub refresh_token: Option<SecretString>,
    pub scope: Option<String>,
    pub access_expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub obtained_at: i64,
    pub obtained_by: String,
    pub generation: i64,
    pub state: TokenState,
    pub state_detail: Option<String>,
    pub last_refresh_at: Option<i64>,
    pub refresh_warned_at: Option<i64>,
}

impl TokenRow {
    /// A new row for `account` (generation is set on write).
    pub fn new(account: &str, obtained_by: &str, obtained_at: i64) -> TokenRow {
        TokenRow {
            account: account.to_string(),
            access_token: None,
            token_type: None,
            refresh_token: None,
            scope: None,
            access_expires_at: None,
            refresh_expires_at: None,
            obtained_at,
            obtained_by: obtained_by.to_string(),
            generation: 0,
            state: TokenState::Ok,
            state_detail: None,
            last_refresh_at: None,
            refresh_warned_at: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: i64,
    pub account: String,
    pub at: i64,
    pub event: String,
    pub detail: Option<String>,
}

/// One poll's outcome, as stored.
#[derive(Debug, Clone)]
pub struct PollRecord {
    pub account: String,
    pub endpoint: String,
    pub started_at: i64,
    /// Milliseconds, with microseconds as the fraction.
    pub duration_ms: f64,
    pub status: Option<u16>,
    pub bytes: Option<i64>,
    pub items: Option<i64>,
    pub changed: Option<bool>,
    pub error: Option<String>,
    pub body: Option<Vec<u8>>,
    pub body_hash: Option<String>,
    /// Pages fetched in full (None: the poll failed before its first page).
    pub pages: Option<u32>,
    /// The poll stopped at `max_pages`: the body is not the whole collection.
    pub partial: bool,
}

impl PollRecord {
    /// A poll that has ended, before its outcome is filled in.
    pub fn ended(account: &str, endpoint: &str, started_at: i64, duration_ms: f64) -> Self {
        PollRecord {
            account: account.to_string(),
            endpoint: endpoint.to_string(),
            started_at,
            duration_ms,
            status: None,
            bytes: None,
            items: None,
            changed: None,
            error: None,
            body: None,
            body_hash: None,
            pages: None,
            partial: false,
        }
    }
}

/// A stored poll, for `status` and `history`.
#[derive(Debug, Clone)]
pub struct PollRow {
    pub id: i64,
    pub account: String,
    pub endpoint: String,
    pub started_at: i64,
    /// Milliseconds, with microseconds as the fraction.
    pub duration_ms: f64,
    pub status: Option<i64>,
    pub bytes: Option<i64>,
    pub items: Option<i64>,
    pub changed: Option<bool>,
    pub error: Option<String>,
    pub pages: Option<i64>,
    pub partial: Option<bool>,
}

/// How long a printed authorization URL stays redeemable.
pub const PENDING_TTL: i64 = 3600;

/// One pending authorization request.
#[derive(Debug)]
pub struct Pending {
    pub state: String,
    pub code_verifier: Option<SecretString>,
    pub redirect_uri: Option<String>,
    pub created_at: i64,
}

/// A refresh journal entry: the provider's raw answer, kept until it is committed.
#[derive(Clone)]
pub struct JournalEntry {
    /// The stored token generation the refresh started from (0: none).
    pub generation: i64,
    pub started: i64,
    pub grant: String,
    pub body: Zeroizing<Vec<u8>>,
}
