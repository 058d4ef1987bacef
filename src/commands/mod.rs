//! One file per command: each builds what it needs (the configuration, the store, hooks,
//! metrics) and returns its exit code; the command line (`cli.rs`) parses and maps errors
//! to exit codes.

pub mod authorize;
pub mod check;
pub mod inspect;
pub mod migrate_store;
pub mod poll_once;
pub mod rekey;
pub mod run;
pub mod seed;
pub mod token;

use crate::config::{self, Config};
use crate::error::{Error, InputError};
use std::path::PathBuf;

/// The global options that say where the configuration and the store are.
pub struct Paths {
    /// `--config`: else `$OAUTH_POLLER_CONFIG`, else the default path.
    pub config: Option<PathBuf>,
    /// `--database`, overriding `[daemon] database`.
    pub database: Option<PathBuf>,
}

impl Paths {
    pub fn config_path(&self) -> PathBuf {
        config::config_path(self.config.as_deref())
    }

    /// The configuration, its secrets read.
    pub fn load(&self) -> Result<Config, Error> {
        Ok(config::load(&self.config_path(), self.database.as_deref())?)
    }
}

/// One thread runs every poll: a poll is a few microseconds of work between waits, and
/// handing tasks between worker threads would cost more (futex wake-ups) than it saves.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(format!("cannot start the async runtime: {e}")))
}

/// The configured account named `name`, or an input error naming the file and key.
fn account<'a>(config: &'a Config, name: &str) -> Result<&'a config::Account, Error> {
    config
        .accounts
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            InputError::new(
                config.path.display().to_string(),
                format!("no account named `{name}`"),
            )
            .key("account.name")
            .into()
        })
}

/// Exit 0, or 1 when something the command did failed (a poll, an account's state).
fn exit_code(ok: bool) -> std::process::ExitCode {
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
