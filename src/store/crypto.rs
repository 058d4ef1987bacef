//! Tokens encrypted at rest: XChaCha20-Poly1305 with a 32-byte key from
//! `daemon.encryption_key_file` (e.g. a systemd credential). A stored value is
//! `enc:v1:` + base64(nonce || ciphertext); the associated data binds it to its account and
//! column, so a value copied to another row or column does not decrypt.
//!
//! The key is process-wide: loading the configuration installs it (or removes it).

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;
use std::path::Path;
use std::sync::RwLock;
use zeroize::Zeroizing;

pub const PREFIX: &str = "enc:v1:";
const NONCE: usize = 24;

static KEY: RwLock<Option<Zeroizing<[u8; 32]>>> = RwLock::new(None);

/// Installs the key (or none) that the store uses from now on.
pub fn install(key: Option<Zeroizing<[u8; 32]>>) {
    *KEY.write().unwrap_or_else(|e| e.into_inner()) = key;
}

pub fn enabled() -> bool {
    KEY.read().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Reads a key file: 32 raw bytes, 64 hex digits, or base64 of 32 bytes (a trailing newline
/// is ignored). The error never shows the file's contents.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, String> {
    crate::config::warn_if_readable_by_others(path);
    let raw =
        Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read the key file: {e}"))?);
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() == 32 {
        key.copy_from_slice(&raw);
        return Ok(key);
    }
    let text = std::str::from_utf8(&raw)
        .map_err(|_| "the key file must hold 32 bytes (raw, 64 hex digits or base64)".to_string())?
        .trim();
    let decoded: Option<Zeroizing<Vec<u8>>> = if text.len() == 64 {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
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
            Ok(key)
        }
        _ => Err("the key file must hold 32 bytes (raw, 64 hex digits or base64)".into()),
    }
}

fn aad(account: &str, column: &str) -> Vec<u8> {
    format!("oauth-poller:v1:{account}:{column}").into_bytes()
}

/// The stored form of a secret: encrypted when a key is installed, else the value itself.
pub fn seal(account: &str, column: &str, plain: &str) -> String {
    let guard = KEY.read().unwrap_or_else(|e| e.into_inner());
    let Some(key) = guard.as_ref() else {
        return plain.to_string();
    };
    seal_with(key, account, column, plain)
}

pub fn seal_with(key: &[u8; 32], account: &str, column: &str, plain: &str) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE];
    rand::rng().fill(&mut nonce[..]);
    let aad = aad(account, column);
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain.as_bytes(),
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    )
}

/// The secret behind a stored value; a plaintext value (a store from before encryption) is
/// returned as it is.
pub fn open(account: &str, column: &str, stored: String) -> Result<String, String> {
    if !stored.starts_with(PREFIX) {
        return Ok(stored);
    }
    let guard = KEY.read().unwrap_or_else(|e| e.into_inner());
    let Some(key) = guard.as_ref() else {
        return Err(format!(
            "account `{account}`: the stored tokens are encrypted: set daemon.encryption_key_file to the store's key"
        ));
    };
    open_with(key, account, column, &stored)
}

pub fn open_with(
    key: &[u8; 32],
    account: &str,
    column: &str,
    stored: &str,
) -> Result<String, String> {
    let fail = || {
        format!(
            "account `{account}`: cannot decrypt the stored {column}: wrong encryption key (or the value was copied from another account or column)"
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&stored[PREFIX.len()..])
        .map_err(|_| fail())?;
    if bytes.len() < NONCE + 16 {
        return Err(fail());
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let aad = aad(account, column);
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&bytes[..NONCE]),
                Payload {
                    msg: &bytes[NONCE..],
                    aad: &aad,
                },
            )
            .map_err(|_| fail())?,
    );
    String::from_utf8(plain.to_vec()).map_err(|_| fail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_are_bound_to_key_account_and_column() {
        let key = [7u8; 32];
        let s = seal_with(&key, "inode", "refresh_token", "RT-secret-value");
        assert!(s.starts_with(PREFIX) && !s.contains("RT-secret-value"));
        assert_ne!(
            s,
            seal_with(&key, "inode", "refresh_token", "RT-secret-value"),
            "fresh nonce"
        );
        assert_eq!(
            open_with(&key, "inode", "refresh_token", &s).unwrap(),
            "RT-secret-value"
        );
        assert!(
            open_with(&key, "inode", "access_token", &s).is_err(),
            "column bound"
        );
        assert!(
            open_with(&key, "other", "refresh_token", &s).is_err(),
            "account bound"
        );
        assert!(
            open_with(&[8u8; 32], "inode", "refresh_token", &s).is_err(),
            "key bound"
        );
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push('A');
        assert!(open_with(&key, "inode", "refresh_token", &tampered).is_err());
    }
}
