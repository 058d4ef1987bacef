//! `seed`: imports a token file into the store.

use super::Paths;
use crate::error::{Error, InputError};
use crate::tokens::SeedOutcome;
use std::path::Path;
use std::process::ExitCode;

pub fn run(paths: &Paths, name: &str, file: &Path, force: bool) -> Result<ExitCode, Error> {
    let config = paths.load()?;
    let account = super::account(&config, name)?;
    match crate::tokens::seed_from_file(&config.store(), account, file, force)? {
        SeedOutcome::Stored { generation } => {
            println!(
                "seeded account `{name}` from {} into {} (generation {generation})",
                file.display(),
                config.daemon.database
            );
            Ok(ExitCode::SUCCESS)
        }
        SeedOutcome::StoreIsNewer => Err(InputError::new(
            file.display().to_string(),
            format!("the store holds a token for `{name}` obtained after this file was issued; use --force to replace it"),
        )
        .into()),
    }
}
