//! Tokens encrypted at rest: XChaCha20-Poly1305 with a 32-byte key from
//! `daemon.encryption_key_file` (e.g. a systemd credential). A stored value is
//! `enc:v2:` + base64(nonce || ciphertext); the associated data binds it to its account,
//! column and row ([`Binding`]), so a value copied to another row or column, or an older
//! generation's value restored, does not decrypt. Tokens, the PKCE verifier of a pending
//! authorization and the refresh journal are sealed.
//!
//! The key belongs to the opened store ([`super::Store`] holds it, and every connection or
//! journal it hands out uses it): two stores open in one process may have different keys,
//! and reading a new configuration changes no key until a store is opened with it.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The current form: bound to account, column and row (see [`Binding`]).
pub const PREFIX: &str = "enc:v2:";
/// The first form, bound to account and column only: converted at the next start.
pub const PREFIX_V1: &str = "enc:v1:";
const NONCE: usize = 24;

/// The store's 32-byte key, wiped from memory when dropped. `Debug` never shows it.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    pub fn from_bytes(bytes: [u8; 32]) -> StoreKey {
        StoreKey(Zeroizing::new(bytes))
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a key file: 32 raw bytes, 64 hex digits, or base64 of 32 bytes (a trailing
    /// newline is ignored). The error never shows the file's contents.
    pub fn read_file(path: &Path) -> Result<StoreKey, KeyFileError> {
        crate::files::warn_if_readable_by_others(path);
        let raw = Zeroizing::new(std::fs::read(path).map_err(KeyFileError::Read)?);
        let mut key = Zeroizing::new([0u8; 32]);
        if raw.len() == 32 {
            key.copy_from_slice(&raw);
            return Ok(StoreKey(key));
        }
        let text = std::str::from_utf8(&raw)
            .map_err(|_| KeyFileError::Malformed)?
            .trim();
        // Hex is decoded byte-wise: slicing the text by byte offsets would panic (and print
        // the key) on a multi-byte character.
        let decoded: Option<Zeroizing<Vec<u8>>> = if text.len() == 64 {
            text.as_bytes()
                .chunks(2)
                .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
                .collect::<Option<Vec<u8>>>()
                .map(Zeroizing::new)
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .map(Zeroizing::new)
        };
        match decoded {
            Some(d) if d.len() == 32 => {
                key.copy_from_slice(&d);
                Ok(StoreKey(key))
            }
            _ => Err(KeyFileError::Malformed),
        }
    }
}

/// Why a key file was refused. Never holds any of its contents.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file: {0}")]
    Read(#[source] std::io::Error),
    #[error("the key file must hold 32 bytes (raw, 64 hex digits or base64)")]
    Malformed,
}

/// Why a stored value could not be read back. Names the account and column, never the value.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("account `{account}`: the stored tokens are encrypted: set daemon.encryption_key_file to the store's key")]
    NoKey { account: String },
    #[error("account `{account}`: the stored {column} is not sealed for this row (plaintext, or the older format) although the store is encrypted: refused; seed or authorize the account again")]
    NotSealed { account: String, column: String },
    #[error("account `{account}`: cannot decrypt the stored {column}: wrong encryption key (or the value was copied from another account, column or generation)")]
    WrongKey { account: String, column: String },
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// What a sealed value is bound to: its account, its column and the row it belongs to (the
/// token generation, or the pending authorization's state). A value copied to another
/// account, column or row, or an older generation's value restored into the row, does not
/// decrypt.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub account: &'a str,
    pub column: &'a str,
    pub instance: &'a str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "oauth-poller:v2:{}:{}:{}",
            self.account, self.column, self.instance
        )
        .into_bytes()
    }
}

/// The stored form of a secret: encrypted under the store's key, or the value itself when
/// the store has none.
pub fn seal(key: Option<&StoreKey>, at: Binding<'_>, plain: &str) -> String {
    match key {
        Some(key) => seal_with(key, at, plain),
        None => plain.to_string(),
    }
}

/// A token row's two secrets as the row of `generation` stores them: each sealed for the
/// account, its column and the generation (both stores write them so).
pub(crate) fn seal_token_secrets(
    key: Option<&StoreKey>,
    row: &super::TokenRow,
    generation: i64,
) -> (Option<String>, Option<String>) {
    use secrecy::ExposeSecret;
    let instance = generation.to_string();
    let sealed = |secret: &Option<secrecy::SecretString>, column: &str| {
        secret.as_ref().map(|s| {
            let at = Binding {
                account: &row.account,
                column,
                instance: &instance,
            };
            seal(key, at, s.expose_secret())
        })
    };
    (
        sealed(&row.access_token, "access_token"),
        sealed(&row.refresh_token, "refresh_token"),
    )
}

/// One of a token row's secrets (`column`) as the row of `generation` stored it, opened.
pub(crate) fn open_token_secret(
    key: Option<&StoreKey>,
    account: &str,
    column: &str,
    generation: i64,
    stored: Option<String>,
) -> Result<Option<secrecy::SecretString>, UnsealError> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let instance = generation.to_string();
    let at = Binding {
        account,
        column,
        instance: &instance,
    };
    open(key, at, stored).map(|v| Some(secrecy::SecretString::from(v)))
}

pub fn seal_with(key: &StoreKey, at: Binding<'_>, plain: &str) -> String {
    format!("{PREFIX}{}", encrypt(key.bytes(), &at.aad(), plain))
}

/// A value of the older `enc:v1:` form, as the stores of earlier versions hold.
#[cfg(test)]
pub(crate) fn seal_v1(key: &StoreKey, account: &str, column: &str, plain: &str) -> String {
    let aad = format!("oauth-poller:v1:{account}:{column}").into_bytes();
    format!("{PREFIX_V1}{}", encrypt(key.bytes(), &aad, plain))
}

/// base64(nonce || ciphertext) under a fresh random nonce.
fn encrypt(key: &[u8; 32], aad: &[u8], plain: &str) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE];
    rand::rng().fill(&mut nonce[..]);
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain.as_bytes(),
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// The secret behind a stored value. Without a key a plaintext value is returned as it is;
/// with one, only a value sealed for exactly this binding is: plaintext and the older
/// `enc:v1:` form (not bound to a generation) are refused, since the store converted them
/// when it was first opened with the key ([`super::keyed`]), and one found later was put
/// there by someone else.
pub fn open(
    key: Option<&StoreKey>,
    at: Binding<'_>,
    stored: String,
) -> Result<String, UnsealError> {
    let Some(key) = key else {
        if stored.starts_with(PREFIX) || stored.starts_with(PREFIX_V1) {
            return Err(UnsealError::NoKey {
                account: at.account.to_string(),
            });
        }
        return Ok(stored);
    };
    if !stored.starts_with(PREFIX) {
        return Err(UnsealError::NotSealed {
            account: at.account.to_string(),
            column: at.column.to_string(),
        });
    }
    open_with(key, at, &stored)
}

pub fn open_with(key: &StoreKey, at: Binding<'_>, stored: &str) -> Result<String, UnsealError> {
    let body = stored.strip_prefix(PREFIX).unwrap_or(stored);
    decrypt(key.bytes(), &at.aad(), body).ok_or_else(|| UnsealError::WrongKey {
        account: at.account.to_string(),
        column: at.column.to_string(),
    })
}

/// A value of the older `enc:v1:` form (bound to account and column only), to convert it.
pub fn open_v1(key: &StoreKey, account: &str, column: &str, stored: &str) -> Option<String> {
    let aad = format!("oauth-poller:v1:{account}:{column}").into_bytes();
    decrypt(key.bytes(), &aad, stored.strip_prefix(PREFIX_V1)?)
}

fn decrypt(key: &[u8; 32], aad: &[u8], body: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    if bytes.len() < NONCE + 16 {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&bytes[..NONCE]),
                Payload {
                    msg: &bytes[NONCE..],
                    aad,
                },
            )
            .ok()?,
    );
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(account: &'a str, column: &'a str, instance: &'a str) -> Binding<'a> {
        Binding {
            account,
            column,
            instance,
        }
    }

    #[test]
    fn sealed_values_are_bound_to_key_account_column_and_generation() {
        let key = StoreKey::from_bytes([7u8; 32]);
        let here = at("inode", "refresh_token", "7");
        let s = seal_with(&key, here, "RT-secret-value");
        assert!(s.starts_with(PREFIX) && !s.contains("RT-secret-value"));
        assert_ne!(s, seal_with(&key, here, "RT-secret-value"), "fresh nonce");
        assert_eq!(open_with(&key, here, &s).unwrap(), "RT-secret-value");
        for other in [
            at("inode", "access_token", "7"),
            at("other", "refresh_token", "7"),
            at("inode", "refresh_token", "6"),
        ] {
            assert!(open_with(&key, other, &s).is_err(), "{other:?}");
        }
        assert!(
            open_with(&StoreKey::from_bytes([8u8; 32]), here, &s).is_err(),
            "key bound"
        );
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push('A');
        assert!(open_with(&key, here, &tampered).is_err());
    }

    #[test]
    fn hex_key_with_a_multibyte_character_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("oauth-poller-key-{}", std::process::id()));
        // 64 bytes; the two-byte character straddles the first pair of hex digits.
        std::fs::write(&dir, format!("aé{}", "a".repeat(61))).unwrap();
        let e = StoreKey::read_file(&dir).unwrap_err().to_string();
        let _ = std::fs::remove_file(&dir);
        assert!(!e.contains("aaaa"), "{e}");
    }
}
