//! `poll-once`: every endpoint (of one account, or all) once.

use super::Paths;
use crate::error::Error;
use std::process::ExitCode;

pub fn run(paths: &Paths, account: Option<&str>) -> Result<ExitCode, Error> {
    let config = paths.load()?;
    let ok = super::runtime()?.block_on(crate::daemon::poll_once(&config, account))?;
    Ok(super::exit_code(ok))
}
