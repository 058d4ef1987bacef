//! The refresh journal: the token endpoint's raw answer, written to `{database}-pending-{account}`
//! (mode 0600, a new file: see [`write_new`]) the moment it arrives and before it is parsed
//! and committed. A process killed
//! between the provider rotating the refresh token and the SQLite commit leaves the answer
//! here, and the next refresh under the lock commits it instead of spending a refresh token
//! the provider has already revoked. The window that remains is the answer's way from the
//! provider to this file: no parsing, no SQL, one `write`.
//!
//! No fsync: this guards against a killed process (the page cache survives), the SQLite
//! commit that follows guards against power loss.

use super::Handle;
use crate::store::rows::JournalEntry;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const MAGIC: &str = "oauth-poller-pending v1";

pub fn path(db: &Path, account: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(format!("-pending-{account}"));
    PathBuf::from(p)
}

/// Writes the answer (sealed with the store's key when it has one). Best-effort: a failure
/// is logged and the commit proceeds as before.
pub fn write(at: &Handle, account: &str, entry: &JournalEntry) -> bool {
    let db = at.path();
    let Ok(text) = std::str::from_utf8(&entry.body) else {
        return false;
    };
    let (generation, started, grant) = (entry.generation, entry.started, &entry.grant);
    let instance = generation.to_string();
    let sealed = Zeroizing::new(crate::store::crypto::seal(
        at.key(),
        binding(account, &instance),
        text,
    ));
    let mut record = Zeroizing::new(
        format!("{MAGIC} {generation} {started} {grant} {}\n", sealed.len()).into_bytes(),
    );
    record.extend_from_slice(sealed.as_bytes());
    let result = write_new(db, &path(db, account), &record);
    if let Err(e) = &result {
        tracing::warn!(account, error = %e, "cannot write the refresh journal");
    }
    result.is_ok()
}

/// Writes `record` as a new file at `target` (mode 0600), replacing an old journal. The file
/// is created with `O_CREAT|O_EXCL|O_NOFOLLOW`: a symlink or file planted under that name is
/// never written through (the open fails, and the refresh commits without a journal). The
/// directory itself is checked at open ([`super::access`]): nobody else can plant one there.
fn write_new(db: &Path, target: &Path, record: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // A journal already committed, or a leftover (unlinking never follows a link).
    let _ = std::fs::remove_file(target);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600)
        .open(target)
        .and_then(|mut f| {
            // Root running `token` on the service's store must not leave a journal the
            // service cannot read or remove.
            if let Err(e) = super::access::give_database_owner(db, &f) {
                tracing::warn!(error = %e, "cannot give the refresh journal the database's owner");
            }
            f.write_all(record)
        })
}

/// The journal of `account`, if there is a complete one (sealed with the store's key).
pub fn read(at: &Handle, account: &str) -> Option<JournalEntry> {
    let raw = Zeroizing::new(std::fs::read(path(at.path(), account)).ok()?);
    let newline = raw.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&raw[..newline]).ok()?;
    let rest = head
        .strip_prefix(MAGIC)?
        .split_whitespace()
        .collect::<Vec<_>>();
    let [generation, started, grant, len] = rest[..] else {
        return None;
    };
    let sealed = &raw[newline + 1..];
    if sealed.len() != len.parse::<usize>().ok()? {
        return None;
    }
    let generation: i64 = generation.parse().ok()?;
    let instance = generation.to_string();
    let body = crate::store::crypto::open(
        at.key(),
        binding(account, &instance),
        String::from_utf8(sealed.to_vec()).ok()?,
    )
    .ok()?;
    Some(JournalEntry {
        generation,
        started: started.parse().ok()?,
        grant: grant.to_string(),
        body: Zeroizing::new(body.into_bytes()),
    })
}

/// A journal is sealed for its account and the generation its refresh started from: the
/// generation in its (plaintext) head cannot be changed without breaking the seal.
fn binding<'a>(account: &'a str, generation: &'a str) -> crate::store::crypto::Binding<'a> {
    crate::store::crypto::Binding {
        account,
        column: "pending",
        instance: generation,
    }
}

pub fn remove(at: &Handle, account: &str) {
    let _ = std::fs::remove_file(path(at.path(), account));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn entry(body: &[u8]) -> JournalEntry {
        JournalEntry {
            generation: 1,
            started: 2,
            grant: "refresh_token".into(),
            body: zeroize::Zeroizing::new(body.to_vec()),
        }
    }

    /// Root writing the journal of a store that belongs to the service's user (a root shell
    /// running `token`) leaves it to that user, who must read and remove it.
    #[test]
    fn the_journal_belongs_to_the_database_owner() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        std::fs::write(&db, "").unwrap();
        let at = Handle::new(&db, None);
        let me = std::fs::metadata(&db).unwrap();
        if me.uid() != 0 {
            // Only root can give a file away; anyone else creates it as the owner already.
            write(&at, "a", &entry(b"{}"));
            assert_eq!(std::fs::metadata(path(&db, "a")).unwrap().uid(), me.uid());
            eprintln!("skipped: the ownership change needs root");
            return;
        }
        std::os::unix::fs::chown(&db, Some(4321), Some(4322)).unwrap();
        write(&at, "a", &entry(b"{\"access_token\":\"x\"}"));
        let journal = std::fs::metadata(path(&db, "a")).unwrap();
        assert_eq!((journal.uid(), journal.gid()), (4321, 4322));
        assert_eq!(journal.mode() & 0o777, 0o600);
        assert_eq!(read(&at, "a").unwrap().generation, 1);
    }
}
