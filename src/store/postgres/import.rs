//! `migrate-store`'s write: a SQLite store's [`Snapshot`] into PostgreSQL in one
//! transaction (the rules are in [`crate::store::transfer`]). The schema is migrated and the
//! encryption state settled inside it too, so a refused or failed move leaves the target
//! exactly as it was.

use super::authorizations::verifier;
use super::keyed::{settle_in, Settled};
use super::polls::{WrittenValues, WRITTEN_COLUMNS};
use super::tokens::{put_row, read_token, token_from_row};
use super::{blocking, latest, migrate, Handle, LOCK_COMMIT};
use crate::error::Error;
use crate::store::crypto;
use crate::store::rows::TokenRow;
use crate::store::transfer::{Counts, Moved, Overwrite, Snapshot};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::Transaction;
use secrecy::ExposeSecret;

/// A PostgreSQL error as the crate's, naming the database.
trait Named<T> {
    fn named(self, at: &Handle) -> Result<T, Error>;
}

impl<T> Named<T> for Result<T, postgres::Error> {
    fn named(self, at: &Handle) -> Result<T, Error> {
        self.map_err(|e| at.err(e))
    }
}

pub fn import(at: &Handle, snapshot: &Snapshot, overwrite: Overwrite) -> Result<Moved, Error> {
    let mut conn = at.connection()?;
    blocking(|| {
        let mut tx = conn.transaction().named(at)?;
        let version = migrate(&mut tx).named(at)?;
        if version > latest() {
            return Err(at.too_new(version).into());
        }
        let shown = at.target().to_string();
        if let Settled::Refused(message) = settle_in(&mut tx, at.key(), &shown).named(at)? {
            return Err(Error::runtime(message));
        }
        let mut counts = Counts::default();
        let mut newer = Vec::new();
        let mut writes = Vec::new();
        for source in &snapshot.tokens {
            // A daemon on the target commits this account's tokens under the same lock.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_COMMIT, &source.account],
            )
            .named(at)?;
            let stored = read_token(&mut tx, &source.account).named(at)?;
            let Some(target) = stored.map(|r| token_from_row(at, &r)).transpose()? else {
                writes.push((source, source.generation.max(1)));
                continue;
            };
            if same(&target, source) {
                counts.tokens_present += 1;
            } else if overwrite == Overwrite::OlderOnly && stamp(&target) >= stamp(source) {
                newer.push(source.account.clone());
            } else {
                // Past the target's generation, so that a refresh in flight there sees the
                // change and a journal sealed for the old generation does not open.
                writes.push((source, source.generation.max(target.generation + 1)));
            }
        }
        if !newer.is_empty() {
            return Ok(Moved::Refused { newer });
        }
        for (row, generation) in writes {
            put_row(&mut tx, at.key(), row, generation).named(at)?;
            counts.tokens += 1;
        }
        (counts.events, counts.events_present) = events(&mut tx, snapshot).named(at)?;
        (counts.polls, counts.polls_present) = polls(&mut tx, snapshot).named(at)?;
        for (account, p) in &snapshot.pending {
            let sealed = p
                .code_verifier
                .as_ref()
                .map(|v| crypto::seal(at.key(), verifier(account, &p.state), v.expose_secret()));
            let added = tx
                .execute(
                    "INSERT INTO authorizations (account, state, code_verifier, redirect_uri, \
                     created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (state) DO NOTHING",
                    &[account, &p.state, &sealed, &p.redirect_uri, &p.created_at],
                )
                .named(at)?;
            counts.pending += added;
            counts.pending_present += 1 - added;
        }
        tx.commit().named(at)?;
        Ok(Moved::Done(counts))
    })
}

/// The same token: equal in everything but the generation (a second run of the move).
fn same(a: &TokenRow, b: &TokenRow) -> bool {
    let secret =
        |s: &Option<secrecy::SecretString>| s.as_ref().map(|s| s.expose_secret().to_string());
    secret(&a.access_token) == secret(&b.access_token)
        && secret(&a.refresh_token) == secret(&b.refresh_token)
        && a.token_type == b.token_type
        && a.scope == b.scope
        && a.access_expires_at == b.access_expires_at
        && a.refresh_expires_at == b.refresh_expires_at
        && a.obtained_at == b.obtained_at
        && a.obtained_by == b.obtained_by
        && a.state == b.state
        && a.state_detail == b.state_detail
        && a.last_refresh_at == b.last_refresh_at
        && a.refresh_warned_at == b.refresh_warned_at
}

/// When the token was last obtained or refreshed.
fn stamp(t: &TokenRow) -> i64 {
    t.obtained_at.max(t.last_refresh_at.unwrap_or(i64::MIN))
}

/// Copies the token events the target lacks; returns (copied, already there). Staged in a
/// temporary table so that one statement compares them all with what the target held
/// before (two equal events in the source are both copied the first time).
fn events(tx: &mut Transaction<'_>, snapshot: &Snapshot) -> Result<(u64, u64), postgres::Error> {
    tx.batch_execute(
        "CREATE TEMP TABLE moved_events (ord BIGINT, account TEXT, at BIGINT, event TEXT, \
         detail TEXT) ON COMMIT DROP",
    )?;
    let sink = tx.copy_in("COPY moved_events FROM STDIN BINARY")?;
    let mut writer = BinaryCopyInWriter::new(
        sink,
        &[Type::INT8, Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT],
    );
    for e in &snapshot.events {
        writer.write(&[&e.id, &e.account, &e.at, &e.event, &e.detail])?;
    }
    writer.finish()?;
    let copied = tx.execute(
        "INSERT INTO token_events (account, at, event, detail) \
         SELECT account, at, event, detail FROM moved_events m WHERE NOT EXISTS ( \
         SELECT 1 FROM token_events e WHERE e.account = m.account AND e.at = m.at \
         AND e.event = m.event AND e.detail IS NOT DISTINCT FROM m.detail) ORDER BY ord",
        &[],
    )?;
    Ok((copied, snapshot.events.len() as u64 - copied))
}

/// Copies the polls the target lacks, as [`events`] does; returns (copied, already there).
fn polls(tx: &mut Transaction<'_>, snapshot: &Snapshot) -> Result<(u64, u64), postgres::Error> {
    const COLUMNS: &str = WRITTEN_COLUMNS;
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE moved_polls ON COMMIT DROP AS \
         SELECT 0::BIGINT AS ord, {COLUMNS} FROM polls WHERE false"
    ))?;
    let sink = tx.copy_in(&format!(
        "COPY moved_polls ({COLUMNS}, ord) FROM STDIN BINARY"
    ))?;
    let mut writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::FLOAT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BOOL,
            Type::TEXT,
            Type::BYTEA,
            Type::TEXT,
            Type::INT8,
            Type::BOOL,
            Type::INT8,
        ],
    );
    for (ord, p) in snapshot.polls.iter().enumerate() {
        writer.write(&WrittenValues::of(p).and(&(ord as i64)))?;
    }
    writer.finish()?;
    let copied = tx.execute(
        &format!(
            "INSERT INTO polls ({COLUMNS}) SELECT {COLUMNS} FROM moved_polls m \
             WHERE NOT EXISTS (SELECT 1 FROM polls p WHERE p.account = m.account \
             AND p.endpoint = m.endpoint AND p.started_at = m.started_at \
             AND p.duration_ms = m.duration_ms AND p.status IS NOT DISTINCT FROM m.status \
             AND p.error IS NOT DISTINCT FROM m.error \
             AND p.body_hash IS NOT DISTINCT FROM m.body_hash) ORDER BY ord"
        ),
        &[],
    )?;
    Ok((copied, snapshot.polls.len() as u64 - copied))
}
