//! `token`: prints a valid access token, refreshing first if needed.

use super::Paths;
use crate::error::Error;
use crate::tokens::Tokens;
use secrecy::ExposeSecret;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(paths: &Paths, name: &str, header: bool) -> Result<ExitCode, Error> {
    let config = paths.load()?;
    let account = super::account(&config, name)?;
    let accounts = vec![Arc::new(crate::daemon::clone_account(account))];
    let access = super::runtime()?.block_on(async {
        crate::daemon::prepare_one(&config, &accounts[0])?;
        let context = crate::daemon::Context::for_command(&config);
        let hooks = context.hooks.clone();
        let tokens = Tokens::new(
            &config.store(),
            &accounts,
            config.daemon.timeout,
            context.refresh_lock_wait,
            context.hooks,
            context.metrics,
        )?;
        let access = tokens.access(name).await;
        // A failed refresh may have started `on_event`: not killed by the runtime's end.
        hooks.wait().await;
        access.map_err(|e| Error::runtime(format!("account `{name}`: {e}")))
    })?;
    let value = access.authorization.expose_secret();
    if !is_header_value(value) {
        // The value came from the provider: printed raw, a CR/LF would smuggle a header (or
        // a command) into whatever consumes the output. Never print it.
        return Err(Error::runtime(format!(
            "account `{name}`: the stored access token holds characters an HTTP header cannot carry (control or non-ASCII); not printed: re-seed or re-authorize the account"
        )));
    }
    if header {
        println!("Authorization: {value}");
    } else {
        let token = value
            .strip_prefix(&format!("{} ", account.header_scheme))
            .filter(|_| !account.header_scheme.is_empty())
            .unwrap_or(value);
        println!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Printable ASCII and spaces only: what an `Authorization` header value may hold without
/// escaping (no CR, LF or other control characters).
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}
