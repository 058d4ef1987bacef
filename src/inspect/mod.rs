//! `status` and `history`: what an operator reads. Never prints a token.

mod history;
mod status;

pub use history::history;
pub use status::status;

use crate::config::Config;
use std::path::Path;

/// What the operator typed to reach this store, repeated in every command a hint suggests,
/// so that a hint works when pasted: `oauth-poller --config /etc/x.toml`.
#[derive(Debug, Clone)]
pub struct Invocation {
    prefix: String,
}

impl Invocation {
    /// `config` is the configuration in use (when it loaded); `database` the `--database`
    /// override, if given.
    pub fn new(config: Option<&Config>, database: Option<&Path>) -> Invocation {
        let mut prefix = String::from("oauth-poller");
        if let Some(c) = config {
            prefix.push_str(" --config ");
            prefix.push_str(&shell_word(&c.path.display().to_string()));
        }
        if let Some(db) = database {
            prefix.push_str(" --database ");
            prefix.push_str(&shell_word(&db.display().to_string()));
        }
        Invocation { prefix }
    }

    /// The full command for `args`, e.g. `oauth-poller --config X seed inode FILE`.
    pub fn command(&self, args: &str) -> String {
        format!("{} {args}", self.prefix)
    }
}

/// A path as one shell word: quoted only when it has to be.
pub(crate) fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,@%=".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Unix seconds as RFC 3339 UTC; the one conversion the whole program uses.
pub use crate::time::format_utc as fmt_time;

#[cfg(test)]
mod tests {
    #[test]
    fn times() {
        assert_eq!(super::fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::fmt_time(1616778780), "2021-03-26T17:13:00Z");
    }

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(
            super::shell_word("/etc/oauth-poller/config.toml"),
            "/etc/oauth-poller/config.toml"
        );
        assert_eq!(
            super::shell_word("/tmp/my dir/c.toml"),
            "'/tmp/my dir/c.toml'"
        );
        assert_eq!(super::shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
