//! Who may touch the store. The database, its sidecars and the refresh journals hold tokens;
//! the directory they live in decides who can replace them or plant a symlink where a
//! journal is about to be written. Before the store is opened: the database must be the
//! running user's and private to it (no group or other permission bits), and its directory
//! must be the running user's (or root's) and writable by nobody else. Root may use any
//! user's store (see [`may_use`]); the permission bits are checked for root too. Anything else is
//! refused as bad input (exit 2) naming the path and the fix, before a token is written.
//!
//! A directory readable by others is accepted: it shows file names, not their contents
//! (the files themselves are 0600), and the default database path is in the working
//! directory, often a home directory of mode 0755.

use crate::error::{Error, InputError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Refuses a database (when it exists) or database directory others could read or replace.
pub fn check(db: &Path) -> Result<(), Error> {
    let me = rustix::process::geteuid().as_raw();
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.mode() & 0o777;
        if !may_use(me, meta.uid()) && meta.uid() != 0 {
            return Err(refuse(
                dir,
                format!(
                    "the database's directory belongs to uid {} (this process runs as uid {me}): whoever owns it can replace the tokens; use a directory of your own (mode 0700)",
                    meta.uid()
                ),
            ));
        }
        if mode & 0o022 != 0 {
            return Err(refuse(
                dir,
                format!(
                    "the database's directory is writable by other users (mode {mode:04o}): they could replace the database or plant a link where tokens are written; chmod 700 {}",
                    dir.display()
                ),
            ));
        }
    }
    if let Ok(meta) = std::fs::metadata(db) {
        let mode = meta.mode() & 0o777;
        if !may_use(me, meta.uid()) {
            return Err(refuse(
                db,
                format!(
                    "the database belongs to uid {} (this process runs as uid {me}): its owner can read the tokens; chown it to the user that runs oauth-poller",
                    meta.uid()
                ),
            ));
        }
        if mode & 0o077 != 0 {
            return Err(refuse(
                db,
                format!(
                    "the database is accessible to other users (mode {mode:04o}): tokens would be written where they can read them; chmod 600 {}",
                    db.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Files of another user are refused, except to root: an operator running `sudo oauth-poller
/// status` (or `seed`) on the service user's store is the normal case, and root could read
/// and replace them anyway.
fn may_use(me: u32, owner: u32) -> bool {
    owner == me || me == 0
}

fn refuse(path: &Path, message: String) -> Error {
    Error::Input(InputError::new(path.display().to_string(), message))
}

/// Gives `file`, one of the store's own files beside `db` (the refresh journal, a refresh
/// lock, the daemon's presence lock), the database's owner, as SQLite does for its -wal and
/// -shm files: root running a command on the service's store must not leave a file the
/// service cannot open. Only root can change an owner; anyone else creates files as the
/// owner already (or the store would not be theirs).
pub fn give_database_owner(db: &Path, file: &std::fs::File) -> std::io::Result<()> {
    let want = std::fs::metadata(db)?;
    let have = file.metadata()?;
    if (have.uid(), have.gid()) != (want.uid(), want.gid()) {
        std::os::unix::fs::fchown(file, Some(want.uid()), Some(want.gid()))?;
    }
    Ok(())
}
