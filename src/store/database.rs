//! Where the store is: a SQLite file (the embedded default) or a PostgreSQL database that many
//! instances share (`[daemon] database = "postgres://ROLE@HOST/DB?sslmode=verify-full"`).
//!
//! A PostgreSQL password is never part of the URL (the URL is shown in messages and
//! `status`): it comes from `daemon.database_password_file`, `daemon.database_password_env`,
//! or the password file libpq reads (`PGPASSFILE`, else `~/.pgpass`).

use secrecy::SecretString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The store's location.
#[derive(Debug, Clone, PartialEq)]
pub enum Database {
    /// A SQLite database file.
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(Arc<PgTarget>),
}

impl Database {
    /// A `postgres://` or `postgresql://` URL is a PostgreSQL database; anything else a file.
    pub fn is_postgres_url(value: &str) -> bool {
        value.starts_with("postgres://") || value.starts_with("postgresql://")
    }

    /// `--database` given without a configuration: a file, or a PostgreSQL URL whose
    /// password (if it needs one) comes from the libpq password file.
    pub fn from_flag(value: &Path) -> Result<Database, crate::error::InputError> {
        let text = value.to_string_lossy();
        if !Database::is_postgres_url(&text) {
            return Ok(Database::File(value.to_path_buf()));
        }
        PgTarget::parse(&text)
            .map(|t| Database::Postgres(Arc::new(t.with_password(None))))
            .map_err(|m| crate::error::InputError::new("--database", m))
    }

    /// The SQLite file, if the store is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Database::File(p) => Some(p),
            Database::Postgres(_) => None,
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::File(p) => write!(f, "{}", p.display()),
            Database::Postgres(t) => write!(f, "{t}"),
        }
    }
}

/// How the connection to PostgreSQL is protected: the only two modes that say what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTls {
    /// `sslmode=disable`: no TLS (a Unix socket, or a link the operator trusts).
    Disable,
    /// `sslmode=verify-full`: TLS, the server's certificate checked against the system's
    /// roots (`SSL_CERT_FILE` honoured) and its name against the host.
    VerifyFull,
}

/// A PostgreSQL database to connect to. The password, when there is one, is held apart from
/// everything that is shown.
pub struct PgTarget {
    config: postgres::Config,
    tls: PgTls,
    shown: String,
    password: Option<SecretString>,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget({})", self.shown)
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Two targets are the same database when they name the same one the same way (a changed
/// password does not make it another database).
impl PartialEq for PgTarget {
    fn eq(&self, other: &Self) -> bool {
        self.shown == other.shown && self.tls == other.tls
    }
}

/// How long connecting may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl PgTarget {
    /// Parses a `postgres://ROLE@HOST[:PORT]/DB[?sslmode=...]` URL. The message of an error
    /// never repeats the URL's password (there must be none).
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        let parsed =
            url::Url::parse(url).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
        if parsed.password().is_some() {
            return Err(
                "the URL holds a password: it would be shown wherever the database is \
                 named; put it in daemon.database_password_file, daemon.database_password_env \
                 or a PGPASSFILE instead"
                    .into(),
            );
        }
        let mut sslmode = None;
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => sslmode = Some(v.into_owned()),
                "password" => {
                    return Err("the URL holds a password (`password=`): put it in \
                         daemon.database_password_file, daemon.database_password_env or a \
                         PGPASSFILE instead"
                        .into())
                }
                _ => {
                    rest.append_pair(&k, &v);
                }
            }
        }
        let mut without = parsed.clone();
        let rest = rest.finish();
        without.set_query((!rest.is_empty()).then_some(rest.as_str()));
        let mut config: postgres::Config = without
            .as_str()
            .parse()
            .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
        let user = config
            .get_user()
            .filter(|u| !u.is_empty())
            .ok_or("the URL names no role: postgres://ROLE@HOST/DATABASE")?
            .to_string();
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => return Err("the URL names no host: postgres://ROLE@HOST/DATABASE".into()),
        };
        if config.get_hosts().len() > 1 {
            return Err(
                "the URL names several hosts; name the one to use (PostgreSQL's own \
                 failover, behind one name, is described in docs/postgres.md)"
                    .into(),
            );
        }
        let dbname = config
            .get_dbname()
            .filter(|d| !d.is_empty())
            .ok_or("the URL names no database: postgres://ROLE@HOST/DATABASE")?
            .to_string();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let local = host.starts_with('/') || is_loopback(&host);
        let tls = match sslmode.as_deref() {
            Some("verify-full") => PgTls::VerifyFull,
            Some("disable") => PgTls::Disable,
            None if local => PgTls::Disable,
            None => PgTls::VerifyFull,
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not supported: use sslmode=verify-full (TLS, the \
                     server's certificate and name verified) or sslmode=disable (a Unix \
                     socket or a link you trust)"
                ))
            }
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("oauth-poller");
        }
        let shown = if host.starts_with('/') {
            format!("postgres://{user}@/{dbname}?host={host}")
        } else if host.contains(':') {
            format!("postgres://{user}@[{host}]:{port}/{dbname}")
        } else {
            format!("postgres://{user}@{host}:{port}/{dbname}")
        };
        Ok(PgTarget {
            config,
            tls,
            shown,
            password: None,
        })
    }

    pub fn tls(&self) -> PgTls {
        self.tls
    }

    /// The target with its password (from a `_file`/`_env` key), or, when none was given,
    /// the one the libpq password file has for it.
    pub fn with_password(mut self, password: Option<SecretString>) -> PgTarget {
        self.password = password.or_else(|| self.password_from_file());
        self
    }

    /// The connection settings, password included: for connecting only.
    pub(super) fn config(&self) -> postgres::Config {
        use secrecy::ExposeSecret;
        let mut config = self.config.clone();
        if let Some(p) = &self.password {
            config.password(p.expose_secret());
        }
        config
    }

    /// The password libpq would use: the first matching line of `PGPASSFILE` (else
    /// `~/.pgpass`), `host:port:database:role:password`, `*` matching anything. Like libpq,
    /// a file others may read is ignored.
    fn password_from_file(&self) -> Option<SecretString> {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::var_os("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || meta.mode() & 0o077 != 0 {
            return None;
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).ok()?);
        let host = match self.config.get_hosts().first()? {
            postgres::config::Host::Tcp(h) => h.clone(),
            // libpq matches a socket connection against `localhost`.
            postgres::config::Host::Unix(_) => "localhost".into(),
        };
        let port = self
            .config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432)
            .to_string();
        let wanted = [
            host.as_str(),
            port.as_str(),
            self.config.get_dbname().unwrap_or_default(),
            self.config.get_user().unwrap_or_default(),
        ];
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find_map(|line| {
                let fields = split_pgpass(line);
                let [h, p, d, u, password] = &fields[..] else {
                    return None;
                };
                let matches = [h, p, d, u]
                    .iter()
                    .zip(wanted)
                    .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
                matches.then(|| SecretString::from(password.clone()))
            })
    }
}

/// A password file line's fields: `:` separates, `\` escapes `:` and `\`.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().unwrap().push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_decides_tls_and_refuses_a_password() {
        let t = PgTarget::parse("postgres://poller@db.example/tokens").unwrap();
        assert_eq!(t.tls(), PgTls::VerifyFull);
        assert_eq!(t.to_string(), "postgres://poller@db.example:5432/tokens");
        let t = PgTarget::parse("postgres://poller@127.0.0.1:6543/tokens").unwrap();
        assert_eq!(t.tls(), PgTls::Disable);
        let t = PgTarget::parse("postgresql://poller@localhost/t?sslmode=verify-full").unwrap();
        assert_eq!(t.tls(), PgTls::VerifyFull);
        let e = PgTarget::parse("postgres://poller:hunter2@db.example/tokens").unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("password"), "{e}");
        let e = PgTarget::parse("postgres://poller@db.example/t?sslmode=require").unwrap_err();
        assert!(e.contains("sslmode=require"), "{e}");
        assert!(PgTarget::parse("postgres://db.example/tokens").is_err());
        assert!(PgTarget::parse("postgres://poller@db.example/").is_err());
    }

    #[test]
    fn password_file_lines_split_on_unescaped_colons() {
        assert_eq!(
            split_pgpass(r"h:5432:*:u:pa\:ss\\w"),
            ["h", "5432", "*", "u", r"pa:ss\w"]
        );
    }
}
