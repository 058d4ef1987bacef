//! Checks on files an operator hands the daemon (secrets, seeds, the store's key). Kept apart
//! from `config` and `store` so that both can use it without importing each other.

use std::path::Path;

/// Secrets and seeds should be readable by the daemon alone; say so when they are not.
pub fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(file = %path.display(), "file holding a secret is readable by other users: chmod o-r");
        }
    }
}
