//! What both backends decide the same way when a store is opened with a key (or none): the
//! store's check value, what it says of the key, and the secrets a first key seals or a
//! `rekey` re-seals. Each backend reads and writes them in its own transaction.

use super::crypto::{self, Binding, StoreKey};
use zeroize::Zeroizing;

const CHECK_TEXT: &str = "oauth-poller store key";
const CHECK: Binding<'static> = Binding {
    account: "",
    column: "store_key",
    instance: "1",
};

/// The check value a store keeps once it is encrypted: a constant sealed with its key.
pub(super) fn seal_check(key: &StoreKey) -> String {
    crypto::seal_with(key, CHECK, CHECK_TEXT)
}

/// What the store's check value (`None`: the store is not encrypted) says of the key it is
/// opened with.
pub(super) enum KeyCheck<'k> {
    /// Nothing to do: no key and a plaintext store, or the store's own key.
    Settled,
    /// A first key for a plaintext store: seal its secrets, then write the check value.
    SealAll(&'k StoreKey),
    /// A wrong key, or none for an encrypted store: the message names `database`.
    Refused(String),
}

pub(super) fn check_key<'k>(
    key: Option<&'k StoreKey>,
    check: Option<&str>,
    database: &dyn std::fmt::Display,
) -> KeyCheck<'k> {
    match (key, check) {
        (None, None) => KeyCheck::Settled,
        (None, Some(_)) => KeyCheck::Refused(format!(
            "database {database}: the stored tokens are encrypted: set daemon.encryption_key_file to the store's key"
        )),
        (Some(key), Some(check)) => match crypto::open_with(key, CHECK, check) {
            Ok(text) if text == CHECK_TEXT => KeyCheck::Settled,
            _ => KeyCheck::Refused(format!(
                "database {database}: cannot decrypt the store: wrong encryption key (daemon.encryption_key_file is not the key the store was encrypted with)"
            )),
        },
        (Some(key), None) => KeyCheck::SealAll(key),
    }
}

/// The columns that hold secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SecretColumn {
    AccessToken,
    RefreshToken,
    CodeVerifier,
}

impl SecretColumn {
    pub const ALL: [SecretColumn; 3] = [
        SecretColumn::AccessToken,
        SecretColumn::RefreshToken,
        SecretColumn::CodeVerifier,
    ];

    /// The column's name, which is also part of what its values are sealed for.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretColumn::AccessToken => "access_token",
            SecretColumn::RefreshToken => "refresh_token",
            SecretColumn::CodeVerifier => "code_verifier",
        }
    }
}

/// One stored secret, as stored: `row` is its row's key in the backend's table.
pub(super) struct StoredSecret<K> {
    pub row: K,
    pub account: String,
    pub column: SecretColumn,
    /// The token generation, or the pending authorization's state.
    pub instance: String,
    pub value: Zeroizing<String>,
}

impl<K> StoredSecret<K> {
    pub fn at(&self) -> Binding<'_> {
        Binding {
            account: &self.account,
            column: self.column.as_str(),
            instance: &self.instance,
        }
    }
}
