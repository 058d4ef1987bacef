//! Schema migrations from `migrations/NNNN_name.sql`, tracked with `PRAGMA user_version`.

use crate::error::InputError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// (version, SQL), in order. Version N is the schema after applying file N.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_authorizations.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_reserve.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_poll_pages.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_store_key.sql"),
    ),
];

pub fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Applies every migration newer than the database, each in its own transaction.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > latest() {
        return Err(too_new(current));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        // IMMEDIATE: two processes starting at once must not both migrate.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if done >= *version {
            conn.execute_batch("ROLLBACK")?;
            continue;
        }
        let applied = conn
            .execute_batch(sql)
            .and_then(|_| conn.execute_batch(&format!("PRAGMA user_version = {version}")));
        match applied {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Refuses a database written by a newer oauth-poller before anything touches it: read
/// through a read-only connection, with no pragma set (`journal_mode = WAL` would rewrite
/// the file's header). Bad input rather than a runtime failure: restarting cannot help, and
/// the unit's `RestartPreventExitStatus=2` stops systemd from trying. A file this cannot read
/// (not a database, no permission) is left to the ordinary open to report.
pub fn refuse_newer(path: &Path) -> Result<(), InputError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = Connection::open_with_flags(path, flags) else {
        return Ok(());
    };
    match conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)) {
        Ok(v) if v > latest() => Err(InputError::new(
            path.display().to_string(),
            format!(
                "the database has schema version {v}, newer than this oauth-poller knows ({}): \
                 it was written by a newer oauth-poller; upgrade oauth-poller (the file was not changed)",
                latest()
            ),
        )),
        _ => Ok(()),
    }
}

pub fn check_version(conn: &Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > latest() {
        return Err(too_new(current));
    }
    Ok(())
}

fn too_new(v: i64) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
        Some(format!(
            "the database has schema version {v}, newer than this oauth-poller knows ({}): upgrade oauth-poller",
            latest()
        )),
    )
}
