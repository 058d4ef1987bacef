//! The `polls` table in PostgreSQL: the poll writer's batches, and the queries behind
//! `status` and `history`.

use super::{Handle, Pooled, Store};
use crate::error::Error;
use crate::store::rows::{PollRecord, PollRow};
use crate::store::writer;
use postgres::types::ToSql;
use postgres::Row;

/// The PostgreSQL side of the [`PollWriter`](crate::store::PollWriter): a connection of its
/// own (reconnected when the server went away), one transaction a batch.
pub struct Sink {
    at: Handle,
    conn: Option<Pooled>,
}

impl Handle {
    pub fn poll_sink(&self) -> Result<Sink, Error> {
        Ok(Sink {
            at: self.clone(),
            conn: Some(self.connection()?),
        })
    }
}

impl Sink {
    fn client(&mut self) -> Result<&mut Pooled, Error> {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            self.conn = Some(self.at.connection()?);
        }
        Ok(self.conn.as_mut().expect("connected just above"))
    }
}

impl writer::Sink for Sink {
    fn insert(&mut self, batch: &[PollRecord]) -> Result<(), writer::InsertError> {
        let at = self.at.clone();
        let instance = at.fence().map(|f| f.instance.id.clone());
        // Not connected: the server is down (or the TLS setup failed, which a retry may
        // find fixed as well).
        let conn = self
            .client()
            .map_err(|e| writer::InsertError::Unavailable(e.to_string()))?;
        insert_batch(conn, batch, instance.as_deref())
            .map_err(|e| {
                let down = super::unreachable(&e);
                let full = e.code() == Some(&postgres::error::SqlState::DISK_FULL);
                let message = at.err(e).to_string();
                if down {
                    writer::InsertError::Unavailable(message)
                } else if full {
                    writer::InsertError::Full(message)
                } else {
                    writer::InsertError::Other(message)
                }
            })
            .inspect(|()| at.answered())
    }

    fn prune(&mut self, before: i64) -> Result<(usize, usize), String> {
        let at = self.at.clone();
        let conn = self.client().map_err(|e| e.to_string())?;
        let polls = conn
            .execute("DELETE FROM polls WHERE started_at < $1", &[&before])
            .map_err(|e| at.err(e).to_string())?;
        let events = conn
            .execute("DELETE FROM token_events WHERE at < $1", &[&before])
            .map_err(|e| at.err(e).to_string())?;
        Ok((polls as usize, events as usize))
    }
}

/// `instance`: the daemon instance that polled (none for a command run once).
fn insert_batch(
    conn: &mut Pooled,
    batch: &[PollRecord],
    instance: Option<&str>,
) -> Result<(), postgres::Error> {
    let mut tx = conn.transaction()?;
    let stmt = tx.prepare(&format!(
        "INSERT INTO polls ({WRITTEN_COLUMNS}, instance) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))?;
    for p in batch {
        tx.execute(&stmt, &WrittenValues::of(p).and(&instance))?;
    }
    tx.commit()
}

/// The columns of a poll row that the poll writer and `migrate-store` write, in order.
pub(super) const WRITTEN_COLUMNS: &str = "account, endpoint, started_at, duration_ms, status, \
     bytes, items, changed, error, body, body_hash, pages, partial";

/// A poll row's values for [`WRITTEN_COLUMNS`].
pub(super) struct WrittenValues<'a> {
    row: &'a PollRecord,
    status: Option<i64>,
    pages: Option<i64>,
}

impl<'a> WrittenValues<'a> {
    pub(super) fn of(row: &'a PollRecord) -> Self {
        WrittenValues {
            row,
            status: row.status.map(i64::from),
            pages: row.pages.map(i64::from),
        }
    }

    /// The values, then `last` (the column the caller adds after them).
    pub(super) fn and<'b>(&'b self, last: &'b (dyn ToSql + Sync)) -> [&'b (dyn ToSql + Sync); 14] {
        let r = self.row;
        [
            &r.account,
            &r.endpoint,
            &r.started_at,
            &r.duration_ms,
            &self.status,
            &r.bytes,
            &r.items,
            &r.changed,
            &r.error,
            &r.body,
            &r.body_hash,
            &self.pages,
            &r.partial,
            last,
        ]
    }
}

const POLL_COLUMNS: &str = "id, account, endpoint, started_at, duration_ms, status, bytes, items, \
     changed, error, pages, partial";

fn poll_from_row(r: &Row) -> PollRow {
    PollRow {
        id: r.get(0),
        account: r.get(1),
        endpoint: r.get(2),
        started_at: r.get(3),
        duration_ms: r.get(4),
        status: r.get(5),
        bytes: r.get(6),
        items: r.get(7),
        changed: r.get(8),
        error: r.get(9),
        pages: r.get(10),
        partial: r.get(11),
    }
}

impl Store {
    pub fn polls(&self, account: Option<&str>, limit: usize) -> Result<Vec<PollRow>, Error> {
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "SELECT {POLL_COLUMNS} FROM polls WHERE $1::TEXT IS NULL OR account = $1 \
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&account, &(limit as i64)],
            )
        })?;
        Ok(rows.iter().map(poll_from_row).collect())
    }

    pub fn endpoint_summary(
        &self,
        account: &str,
        endpoint: &str,
    ) -> Result<(Option<PollRow>, i64), Error> {
        self.with(|c| {
            let last = c
                .query_opt(
                    &format!(
                        "SELECT {POLL_COLUMNS} FROM polls WHERE account = $1 AND endpoint = $2 \
                         ORDER BY id DESC LIMIT 1"
                    ),
                    &[&account, &endpoint],
                )?
                .map(|r| poll_from_row(&r));
            let failures: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM polls WHERE account = $1 AND endpoint = $2 AND id > \
                     COALESCE((SELECT MAX(id) FROM polls WHERE account = $1 AND endpoint = $2 \
                     AND error IS NULL), 0)",
                    &[&account, &endpoint],
                )?
                .get(0);
            Ok((last, failures))
        })
    }

    pub fn endpoints_of(&self, account: &str) -> Result<Vec<String>, Error> {
        let rows = self.with(|c| {
            c.query(
                "SELECT DISTINCT endpoint FROM polls WHERE account = $1 ORDER BY endpoint",
                &[&account],
            )
        })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub fn last_body_hash(&self, account: &str, endpoint: &str) -> Result<Option<String>, Error> {
        self.with(|c| {
            c.query_opt(
                "SELECT body_hash FROM polls WHERE account = $1 AND endpoint = $2 \
                 AND body_hash IS NOT NULL ORDER BY id DESC LIMIT 1",
                &[&account, &endpoint],
            )
            .map(|r| r.map(|r| r.get(0)))
        })
    }
}
