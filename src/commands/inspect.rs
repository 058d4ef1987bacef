//! `status` and `history`: read the store (through [`crate::inspect`]).

use super::Paths;
use crate::config::{self, Config};
use crate::error::Error;
use crate::store::Database;
use std::process::ExitCode;

pub fn status(paths: &Paths, json: bool) -> Result<ExitCode, Error> {
    let (db, config) = target(paths)?;
    let how = crate::inspect::Invocation::new(config.as_ref(), paths.database.as_deref());
    let ok = crate::inspect::status(&db, config.as_ref(), &how, json)?;
    Ok(super::exit_code(ok))
}

pub fn history(
    paths: &Paths,
    account: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<ExitCode, Error> {
    let (db, config) = target(paths)?;
    crate::inspect::history(&db, config.as_ref(), account, limit, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `status` and `history` read the store; the configuration, when it loads, adds the
/// endpoints that have not polled yet. `--database` alone is enough; a configuration that
/// was asked for (or exists) and fails to load is then a warning, not a silent omission.
fn target(paths: &Paths) -> Result<(Database, Option<Config>), Error> {
    // Reading the store needs no secret: a root shell without the service's credentials
    // inspects it all the same.
    let path = paths.config_path();
    let loaded = config::load_with(&path, paths.database.as_deref(), config::Secrets::Skip)
        .map_err(Error::from);
    match (loaded, &paths.database) {
        (Ok(c), _) => Ok((c.daemon.database.clone(), Some(c))),
        (Err(e), Some(db)) => {
            let asked = paths.config.is_some()
                || std::env::var_os("OAUTH_POLLER_CONFIG").is_some_and(|v| !v.is_empty());
            if asked || path.exists() {
                eprintln!(
                    "oauth-poller: warning: the configuration was not loaded, showing the store alone: {e}"
                );
            }
            Ok((Database::from_flag(db)?, None))
        }
        (Err(e), None) => Err(e),
    }
}
