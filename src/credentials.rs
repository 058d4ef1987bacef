//! Where `${CREDENTIALS_DIRECTORY}` in a configured path points, so that the service and a
//! root shell read the same secrets from one configuration.
//!
//! Under systemd the variable is set and names the directory `LoadCredential=` filled. The
//! shipped unit loads the whole source directory with one line,
//! `LoadCredential=oauth-poller:/etc/oauth-poller/credentials`: systemd names each file in it
//! `oauth-poller_FILE` (a missing file is then simply absent instead of failing the unit,
//! which a `LoadCredential=` line per file would do). A root shell has no such variable: there
//! the same path means the source directory itself (`[daemon] credentials_directory`).
//!
//! So `${CREDENTIALS_DIRECTORY}/inode-password` is, in the service,
//! `$CREDENTIALS_DIRECTORY/inode-password` if a unit loaded it under that name, else
//! `$CREDENTIALS_DIRECTORY/oauth-poller_inode-password`; in a shell,
//! `/etc/oauth-poller/credentials/inode-password`.

use std::path::{Path, PathBuf};

/// The directory the shipped unit loads credentials from.
pub const DEFAULT_DIRECTORY: &str = "/etc/oauth-poller/credentials";

/// The credential ID of the shipped unit's `LoadCredential=ID:DIRECTORY` line: systemd names
/// each file of the directory `ID_FILE`. Keep in step with deploy/oauth-poller.service.
pub const UNIT_CREDENTIAL_ID: &str = "oauth-poller";

const VAR: &str = "CREDENTIALS_DIRECTORY";

/// A `${VAR}` in a configured value that cannot be expanded. `value` is the value as written
/// (a path or a directory, never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated ${{ in `{value}`")]
    Unterminated { value: String },
    #[error("empty ${{}} in `{value}`")]
    Empty { value: String },
    #[error("environment variable {var} is not set (used in `{value}`)")]
    Unset { var: String, value: String },
}

/// Where credentials are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `$CREDENTIALS_DIRECTORY`, set by systemd: what `LoadCredential=` put there.
    Service(PathBuf),
    /// A shell: the directory the unit loads from (`[daemon] credentials_directory`).
    Source(PathBuf),
}

impl Credentials {
    /// `$CREDENTIALS_DIRECTORY` when set, else `configured`, else [`DEFAULT_DIRECTORY`].
    pub fn resolve(configured: Option<PathBuf>) -> Credentials {
        match std::env::var_os(VAR) {
            Some(dir) if !dir.is_empty() => Credentials::Service(PathBuf::from(dir)),
            _ => Credentials::Source(configured.unwrap_or_else(|| DEFAULT_DIRECTORY.into())),
        }
    }

    pub fn directory(&self) -> &Path {
        match self {
            Credentials::Service(d) | Credentials::Source(d) => d,
        }
    }

    /// Expands `${VAR}` in a configured path; `${CREDENTIALS_DIRECTORY}` is [`Self::directory`]
    /// even when the variable is unset, and a path directly under it is a credential name
    /// (see the module comment).
    pub fn expand(&self, value: &str) -> Result<PathBuf, ExpandError> {
        let lookup = |var: &str| {
            if var == VAR {
                Some(self.directory().to_string_lossy().into_owned())
            } else {
                std::env::var(var).ok()
            }
        };
        if let (Credentials::Service(dir), Some(name)) = (
            self,
            value.strip_prefix(concat!("${", "CREDENTIALS_DIRECTORY", "}/")),
        ) {
            let name = expand_with(name, lookup)?;
            let plain = dir.join(&name);
            // A file in a subdirectory of the source becomes `ID_SUB_FILE`.
            let loaded = dir.join(format!("{UNIT_CREDENTIAL_ID}_{}", name.replace('/', "_")));
            // Neither: the plain name, which is what an operator recognizes in a message.
            return Ok(if !plain.exists() && loaded.exists() {
                loaded
            } else {
                plain
            });
        }
        expand_with(value, lookup).map(PathBuf::from)
    }
}

/// Expands `${VAR}` through `lookup`; `$` not followed by `{` is kept as it is.
pub fn expand_with(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after.find('}').ok_or_else(|| ExpandError::Unterminated {
            value: value.into(),
        })?;
        let var = &after[..end];
        if var.is_empty() {
            return Err(ExpandError::Empty {
                value: value.into(),
            });
        }
        let v = lookup(var).ok_or_else(|| ExpandError::Unset {
            var: var.into(),
            value: value.into(),
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_reads_the_source_directory() {
        let c = Credentials::Source("/etc/oauth-poller/credentials".into());
        assert_eq!(
            c.expand("${CREDENTIALS_DIRECTORY}/inode-password").unwrap(),
            Path::new("/etc/oauth-poller/credentials/inode-password")
        );
    }

    #[test]
    fn the_service_reads_what_the_unit_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oauth-poller_inode-password"), "x").unwrap();
        std::fs::write(dir.path().join("store-key"), "x").unwrap();
        let c = Credentials::Service(dir.path().into());
        // Loaded as a directory: prefixed with the unit's credential ID.
        assert_eq!(
            c.expand("${CREDENTIALS_DIRECTORY}/inode-password").unwrap(),
            dir.path().join("oauth-poller_inode-password")
        );
        // Loaded one by one (`LoadCredential=store-key:...`): the plain name.
        assert_eq!(
            c.expand("${CREDENTIALS_DIRECTORY}/store-key").unwrap(),
            dir.path().join("store-key")
        );
        std::fs::create_dir(dir.path().join("oauth-poller_seeds_inode.json")).unwrap();
        assert_eq!(
            c.expand("${CREDENTIALS_DIRECTORY}/seeds/inode.json")
                .unwrap(),
            dir.path().join("oauth-poller_seeds_inode.json")
        );
        // Neither: the plain name, for the message.
        assert_eq!(
            c.expand("${CREDENTIALS_DIRECTORY}/inode-seed").unwrap(),
            dir.path().join("inode-seed")
        );
    }

    #[test]
    fn other_variables_come_from_the_environment() {
        let c = Credentials::Source("/c".into());
        let e = c.expand("${OAUTH_POLLER_SURELY_UNSET_VAR}/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable OAUTH_POLLER_SURELY_UNSET_VAR is not set \
             (used in `${OAUTH_POLLER_SURELY_UNSET_VAR}/x`)"
        );
        assert_eq!(c.expand("/a/$b").unwrap(), Path::new("/a/$b"));
    }

    #[test]
    fn malformed_references_are_named() {
        let none = |_: &str| None;
        assert_eq!(
            expand_with("/a/${X", none).unwrap_err().to_string(),
            "unterminated ${ in `/a/${X`"
        );
        assert_eq!(
            expand_with("/a/${}/b", none).unwrap_err().to_string(),
            "empty ${} in `/a/${}/b`"
        );
    }
}
