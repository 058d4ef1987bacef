//! `migrate-store`: moves the configured SQLite store into a PostgreSQL database (the
//! rules are in `store::transfer`), then says what to change in the configuration.

use super::Paths;
use crate::error::{Error, InputError};
use crate::store::{Counts, Database, Handle, Moved, Overwrite, PgTarget};
use secrecy::SecretString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(
    paths: &Paths,
    to: &str,
    password_file: Option<&Path>,
    force: bool,
) -> Result<ExitCode, Error> {
    // The URL first: a mistake in it is reported whatever the configuration says.
    let target = target(to, password_file)?;
    let config = paths.load()?;
    let Some(file) = config.daemon.database.file() else {
        let key = if paths.database.is_some() {
            "--database"
        } else {
            "daemon.database"
        };
        return Err(InputError::new(
            paths.config_path().display().to_string(),
            "the store is already a PostgreSQL database: migrate-store moves a SQLite store",
        )
        .key(key)
        .into());
    };
    // A running daemon would go on rotating refresh tokens in SQLite after the copy: the
    // copy would then hold spent ones.
    match crate::running::probe(file) {
        crate::running::Daemon::NotRunning => {}
        crate::running::Daemon::Running => {
            return Err(Error::runtime(format!(
            "a daemon is running on {}: stop it before migrate-store (systemctl stop oauth-poller)",
            file.display()
        )))
        }
        crate::running::Daemon::Unknown(why) => {
            return Err(Error::runtime(format!(
                "cannot tell whether a daemon is running on {}: {why}",
                file.display()
            )))
        }
    }
    let shown = target.to_string();
    let target = Handle::new(
        &Database::Postgres(Arc::new(target)),
        config.store_key.as_ref(),
    );
    let overwrite = if force {
        Overwrite::Newer
    } else {
        Overwrite::OlderOnly
    };
    match config.store().move_into(&target, overwrite)? {
        Moved::Done(counts) => {
            print!("{}", report(&file.display().to_string(), &shown, &counts));
            Ok(ExitCode::SUCCESS)
        }
        Moved::Refused { newer } => {
            let names: Vec<String> = newer.iter().map(|a| format!("`{a}`")).collect();
            Err(InputError::new(
                "--to",
                format!(
                    "{shown} holds a newer token than {} for account(s) {}: nothing was changed (a daemon on {shown} refreshed it since; use --force to replace it with the SQLite store's)",
                    file.display(),
                    names.join(", ")
                ),
            )
            .into())
        }
    }
}

/// The target database with its password: `--to-password-file`, else the libpq password
/// file. Never a password in the URL: it would be shown wherever the database is named.
fn target(to: &str, password_file: Option<&Path>) -> Result<PgTarget, Error> {
    if !Database::is_postgres_url(to) {
        return Err(InputError::new(
            "--to",
            "not a postgres:// URL: migrate-store moves the SQLite store into a PostgreSQL database (postgres://ROLE@HOST/DATABASE)",
        )
        .into());
    }
    let target = PgTarget::parse(to).map_err(|m| InputError::new("--to", m))?;
    let password = password_file.map(read_password).transpose()?;
    Ok(target.with_password(password))
}

/// The file's text without its final line break (as `daemon.database_password_file`).
fn read_password(path: &Path) -> Result<SecretString, Error> {
    let err = |m: String| InputError::new(path.display().to_string(), m).key("--to-password-file");
    let mut text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read the password file: {}", e.kind())))?,
    );
    crate::files::warn_if_readable_by_others(path);
    let len = text.trim_end_matches(['\r', '\n']).len();
    text.truncate(len);
    if text.is_empty() {
        return Err(err("the password file is empty".into()).into());
    }
    Ok(SecretString::from(text.as_str()))
}

fn report(source: &str, target: &str, c: &Counts) -> String {
    format!(
        "moved {source} into {target} (one transaction):\n\
         \x20 tokens: {} copied, {} already there\n\
         \x20 token events: {} copied, {} already there\n\
         \x20 polls: {} copied, {} already there\n\
         \x20 pending authorizations: {} copied, {} already there\n\
         next: set daemon.database = \"{target}\" (its password in daemon.database_password_file, \
         daemon.database_password_env or a PGPASSFILE), keep daemon.encryption_key_file, and \
         restart the daemon\n",
        c.tokens,
        c.tokens_present,
        c.events,
        c.events_present,
        c.polls,
        c.polls_present,
        c.pending,
        c.pending_present
    )
}
