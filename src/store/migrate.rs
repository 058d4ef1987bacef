//! Schema migrations from `migrations/NNNN_name.sql`, tracked with `PRAGMA user_version`.

use rusqlite::Connection;

/// (version, SQL), in order. Version N is the schema after applying file N.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_authorizations.sql")),
    (3, include_str!("../../migrations/0003_reserve.sql")),
    (5, include_str!("../../migrations/0005_store_key.sql")),
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
