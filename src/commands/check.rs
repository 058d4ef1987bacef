//! `check`: the configuration, every secret reference and every seed file.

use super::Paths;
use crate::error::Error;
use std::process::ExitCode;

pub fn run(paths: &Paths) -> Result<ExitCode, Error> {
    let config = paths.load()?;
    let now = crate::store::now();
    for a in &config.accounts {
        match &a.seed_file {
            // A missing seed is not an error (see daemon::prepare_one).
            Some(seed) if !seed.exists() => {
                if let Some(warning) = crate::daemon::missing_seed_warning(&config, a) {
                    eprintln!("oauth-poller: warning: {warning}");
                }
            }
            Some(seed) => {
                crate::seed::parse_seed_file(seed, now)?;
            }
            None => {}
        }
    }
    println!(
        "{}: OK ({} account(s), {} endpoint(s))",
        config.path.display(),
        config.accounts.len(),
        config
            .accounts
            .iter()
            .map(|a| a.endpoints.len())
            .sum::<usize>()
    );
    Ok(ExitCode::SUCCESS)
}
