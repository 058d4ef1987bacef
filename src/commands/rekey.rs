//! `rekey`: re-encrypts every stored secret with a new key (the daemon stopped).

use super::Paths;
use crate::error::{Error, InputError};
use std::path::Path;
use std::process::ExitCode;

pub fn run(paths: &Paths, new_key_file: &Path) -> Result<ExitCode, Error> {
    let config = paths.load()?;
    let new_key = crate::store::StoreKey::read_file(new_key_file).map_err(|m| {
        InputError::new(new_key_file.display().to_string(), m.to_string()).key("NEW_KEY_FILE")
    })?;
    // A running daemon would go on writing with the old key.
    let running = config.daemon.database.file().map(crate::running::probe);
    if running == Some(crate::running::Daemon::Running) {
        return Err(Error::runtime(format!(
            "a daemon is running on {}: stop it before rekey (systemctl stop oauth-poller)",
            config.daemon.database
        )));
    }
    let store = config.store().open()?;
    let count = store.rekey(&new_key)?;
    println!(
        "re-encrypted {count} stored secret(s) of {} with {}: set daemon.encryption_key_file to it before the next start",
        config.daemon.database,
        new_key_file.display()
    );
    Ok(ExitCode::SUCCESS)
}
