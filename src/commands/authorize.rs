//! `authorize`: the provider's consent page, by printed URL, pasted code or loopback
//! listener.

use super::Paths;
use crate::authorize::Mode;
use crate::error::Error;
use secrecy::ExposeSecret;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(
    paths: &Paths,
    name: &str,
    code: Option<&str>,
    listen: bool,
    timeout: u64,
) -> Result<ExitCode, Error> {
    let config = paths.load()?;
    let account = super::account(&config, name)?;
    let stdin_code;
    let mode = match (code, listen) {
        (Some("-"), _) => {
            stdin_code = crate::authorize::read_code(std::io::stdin().lock())?;
            Mode::Code(stdin_code.expose_secret())
        }
        (Some(c), _) => Mode::Code(c),
        (None, true) => Mode::Listen(Duration::from_secs(timeout)),
        (None, false) => Mode::Print,
    };
    super::runtime()?.block_on(crate::authorize::run(&config, account, mode))?;
    Ok(ExitCode::SUCCESS)
}
