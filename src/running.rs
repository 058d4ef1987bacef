//! Whether a daemon is running on a database, for `status`.
//!
//! `run` holds a shared `flock` on `DATABASE-daemon` for as long as it runs; the kernel
//! drops the lock when the process ends, however it ends, so a crash or SIGKILL never
//! leaves a stale "running". `status` asks for an exclusive lock without waiting: refused
//! means a daemon holds it. Shared, so that two daemons on one store (allowed) both count.

use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The lock file beside the database.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push("-daemon");
    PathBuf::from(p)
}

/// Held by a running daemon; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct Presence {
    _file: File,
}

impl Presence {
    /// Takes the shared lock, creating the file (mode 0600, never through a symlink).
    pub fn hold(database: &Path) -> std::io::Result<Presence> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(lock_path(database))?;
        // Root running the daemon by hand must not leave a file the service cannot open.
        if let Err(e) = crate::store::sqlite::access::give_database_owner(database, &file) {
            tracing::warn!(error = %e, "cannot give the presence lock the database's owner");
        }
        // Blocking: a `status` holds the exclusive lock only for an instant.
        flock(&file, FlockOperation::LockShared)?;
        Ok(Presence { _file: file })
    }
}

/// What `status` can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    Running,
    NotRunning,
    /// The lock file exists but cannot be read (permissions): the message says why.
    Unknown(String),
}

impl Daemon {
    pub fn as_str(&self) -> &'static str {
        match self {
            Daemon::Running => "running",
            Daemon::NotRunning => "not_running",
            Daemon::Unknown(_) => "unknown",
        }
    }
}

/// Probes without creating anything: no lock file means no daemon ever ran here (or one
/// from before this check existed, which `status` cannot see either way).
pub fn probe(database: &Path) -> Daemon {
    let path = lock_path(database);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Daemon::NotRunning,
        Err(e) => return Daemon::Unknown(format!("cannot open {}: {e}", path.display())),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Daemon::NotRunning,
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Daemon::Running,
        Err(e) => Daemon::Unknown(format!("cannot lock {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_reads_as_running_and_a_dropped_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        assert_eq!(probe(&db), Daemon::NotRunning);
        let held = Presence::hold(&db).unwrap();
        // flock locks belong to the open file description: a second open conflicts even
        // within one process, as a second process's would.
        assert_eq!(probe(&db), Daemon::Running);
        let other = Presence::hold(&db).unwrap();
        drop(held);
        assert_eq!(
            probe(&db),
            Daemon::Running,
            "a second daemon still holds it"
        );
        drop(other);
        assert_eq!(probe(&db), Daemon::NotRunning);
    }
}
