//! `run`: the daemon in the foreground, driven by signals.

use super::Paths;
use crate::daemon;
use crate::error::Error;
use std::process::ExitCode;

pub fn run(paths: &Paths) -> Result<ExitCode, Error> {
    let config = paths.load()?;
    let source = daemon::Source {
        config_path: paths.config_path(),
        database: paths.database.clone(),
    };
    let control = daemon::signal_control()?;
    super::runtime()?.block_on(daemon::run(config, source, control))?;
    Ok(ExitCode::SUCCESS)
}
