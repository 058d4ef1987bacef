//! The command line, and the one place each command is dispatched.

use crate::config::{self, Config};
use crate::daemon;
use crate::error::{Error, InputError};
use crate::tokens::{SeedOutcome, Tokens};
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "oauth-poller",
    version,
    about = "Keeps OAuth2 tokens alive unattended and polls API endpoints on a schedule"
)]
pub struct Cli {
    /// Configuration file [default: $OAUTH_POLLER_CONFIG, else /etc/oauth-poller/config.toml]
    #[arg(long, global = true, value_name = "PATH", allow_hyphen_values = true)]
    pub config: Option<PathBuf>,
    /// SQLite store, overriding [daemon] database
    #[arg(long, global = true, value_name = "PATH", allow_hyphen_values = true)]
    pub database: Option<PathBuf>,
    /// Log lines as text (key=value; `<N>` priorities under journald) or one JSON object each
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// error, warn, info, debug or trace (or a tracing filter)
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL message key=value ...`
    Text,
    /// One JSON object per line, numbers as numbers
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (systemd Type=notify aware)
    Run,
    /// Poll every endpoint once, then exit (1 if any poll failed)
    PollOnce {
        /// Poll only this account's endpoints (default: every account)
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
    },
    /// Validate the configuration, every secret reference and every seed file
    Check,
    /// Import an initial token file (INI, TOML or JSON) into the store
    Seed {
        /// The account (its `name` in the configuration)
        account: String,
        /// The token file: an OAuth token response (JSON), an INI or TOML token file
        #[arg(allow_hyphen_values = true)]
        file: PathBuf,
        /// Replace a stored token even if it is newer than the file
        #[arg(long)]
        force: bool,
    },
    /// Bootstrap with the provider's consent page: print the authorization URL, exchange a
    /// pasted code (--code), or receive the redirect on a loopback listener (--listen)
    Authorize {
        /// The account (its `name` in the configuration)
        account: String,
        /// Exchange the authorization code (or the whole redirect address) from the URL
        /// printed earlier (the out-of-band flow). `-` reads it from stdin, which keeps it
        /// off the command line (visible to every local user) and out of shell history
        // A code is URL-safe base64, so 1 in 64 starts with `-`: it must not be taken for
        // an option.
        #[arg(
            long,
            value_name = "CODE|-",
            conflicts_with = "listen",
            allow_hyphen_values = true
        )]
        code: Option<String>,
        /// Listen on the redirect_uri's loopback port, receive the redirect, store the tokens
        #[arg(long)]
        listen: bool,
        /// How long --listen waits for the redirect
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
    },
    /// Re-encrypt every secret in the store with a new key (stop the daemon first; then
    /// point daemon.encryption_key_file at the new key)
    Rekey {
        /// The new key file: 32 raw bytes, 64 hex digits or base64 of 32 bytes
        #[arg(value_name = "NEW_KEY_FILE")]
        new_key_file: PathBuf,
    },
    /// Print a valid access token (refreshing first if needed)
    Token {
        /// The account (its `name` in the configuration)
        account: String,
        /// Print the whole `Authorization: ...` header line
        #[arg(long)]
        header: bool,
    },
    /// Per account: token state and expiry; per endpoint: the last poll
    Status {
        /// Print one JSON document instead of text
        #[arg(long)]
        json: bool,
    },
    /// Recent polls and token events, newest first
    History {
        /// Only this account's polls and events (default: every account)
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Show at most this many entries
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Print a JSON array instead of text
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon against the built-in provider simulator, with short-lived tokens
    Demo {
        /// Stop by itself after this many seconds (default: until Ctrl-C)
        #[arg(long, value_name = "SECS")]
        seconds: Option<u64>,
        /// Keep the demo's directory (configuration, seed, database) after it stops
        #[arg(long)]
        keep: bool,
    },
    /// Run the provider simulator alone and print a matching configuration
    Simulate(crate::sim::SimulateArgs),
}

/// Runs the command; every error becomes an exit code here and nowhere else.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    crate::logging::init(cli.log_format, &cli.log_level);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oauth-poller: error: {e}");
            e.exit_code()
        }
    }
}

/// One thread runs every poll: a poll is a few microseconds of work between waits, and
/// handing tasks between worker threads would cost more (futex wake-ups) than it saves.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(format!("cannot start the async runtime: {e}")))
}

fn load(cli: &Cli) -> Result<Config, Error> {
    let path = config::config_path(cli.config.as_deref());
    Ok(config::load(&path, cli.database.as_deref())?)
}

fn account<'a>(config: &'a Config, name: &str) -> Result<&'a config::Account, Error> {
    config
        .accounts
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            InputError::new(
                config.path.display().to_string(),
                format!("no account named `{name}`"),
            )
            .key("account.name")
            .into()
        })
}

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    if let Command::Simulate(args) = cli.command {
        runtime()?
            .block_on(crate::sim::simulate_command(args))
            .map_err(|e| Error::runtime(format!("simulator: {e}")))?;
        return Ok(ExitCode::SUCCESS);
    }
    match &cli.command {
        Command::Run => {
            let config = load(&cli)?;
            let source = daemon::Source {
                config_path: config::config_path(cli.config.as_deref()),
                database: cli.database.clone(),
            };
            let control = daemon::signal_control()?;
            runtime()?.block_on(daemon::run(config, source, control))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PollOnce { account } => {
            let config = load(&cli)?;
            let ok = runtime()?.block_on(daemon::poll_once(&config, account.as_deref()))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Check => {
            let config = load(&cli)?;
            let now = crate::store::now();
            for a in &config.accounts {
                match &a.seed_file {
                    // A missing seed is not an error (see daemon::prepare_one).
                    Some(seed) if !seed.exists() => {
                        if let Some(warning) = daemon::missing_seed_warning(&config, a) {
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
        Command::Seed {
            account: name,
            file,
            force,
        } => {
            let config = load(&cli)?;
            let account = account(&config, name)?;
            match crate::tokens::seed_from_file(&config.store(), account, file, *force)? {
                SeedOutcome::Stored(generation) => {
                    println!(
                        "seeded account `{name}` from {} into {} (generation {generation})",
                        file.display(),
                        config.daemon.database.display()
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
        Command::Authorize {
            account: name,
            code,
            listen,
            timeout,
        } => {
            let config = load(&cli)?;
            let account = account(&config, name)?;
            let stdin_code;
            let mode = match (code, listen) {
                (Some(c), _) if c == "-" => {
                    stdin_code = crate::authorize::read_code(std::io::stdin().lock())?;
                    crate::authorize::Mode::Code(stdin_code.expose_secret())
                }
                (Some(c), _) => crate::authorize::Mode::Code(c),
                (None, true) => crate::authorize::Mode::Listen(Duration::from_secs(*timeout)),
                (None, false) => crate::authorize::Mode::Print,
            };
            runtime()?.block_on(crate::authorize::run(&config, account, mode))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rekey { new_key_file } => {
            let config = load(&cli)?;
            let new_key = crate::store::StoreKey::read_file(new_key_file).map_err(|m| {
                InputError::new(new_key_file.display().to_string(), m.to_string())
                    .key("NEW_KEY_FILE")
            })?;
            // A running daemon would go on writing with the old key.
            if crate::running::probe(&config.daemon.database) == crate::running::Daemon::Running {
                return Err(Error::runtime(format!(
                    "a daemon is running on {}: stop it before rekey (systemctl stop oauth-poller)",
                    config.daemon.database.display()
                )));
            }
            let store = config.store().open()?;
            let count = store.rekey(&new_key)?;
            println!(
                "re-encrypted {count} stored secret(s) of {} with {}: set daemon.encryption_key_file to it before the next start",
                config.daemon.database.display(),
                new_key_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            account: name,
            header,
        } => {
            let config = load(&cli)?;
            let account = account(&config, name)?;
            let accounts = vec![Arc::new(crate::daemon::clone_account(account))];
            let rt = runtime()?;
            let access = rt.block_on(async {
                crate::daemon::prepare_one(&config, &accounts[0])?;
                let tokens = Tokens::new(&config.store(), &accounts, config.daemon.timeout)?;
                tokens
                    .access(name)
                    .await
                    .map_err(|e| Error::runtime(format!("account `{name}`: {e}")))
            })?;
            let value = access.authorization.expose_secret();
            if !is_header_value(value) {
                // The value came from the provider: printed raw, a CR/LF would smuggle a
                // header (or a command) into whatever consumes the output. Never print it.
                return Err(Error::runtime(format!(
                    "account `{name}`: the stored access token holds characters an HTTP header cannot carry (control or non-ASCII); not printed: re-seed or re-authorize the account"
                )));
            }
            if *header {
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
        Command::Status { json } => {
            let (db, config) = inspect_target(&cli)?;
            let how = crate::inspect::Invocation::new(config.as_ref(), cli.database.as_deref());
            let ok = crate::inspect::status(&db, config.as_ref(), &how, *json)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::History {
            account,
            limit,
            json,
        } => {
            let (db, config) = inspect_target(&cli)?;
            crate::inspect::history(&db, config.as_ref(), account.as_deref(), *limit, *json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { seconds, keep } => {
            runtime()?.block_on(crate::demo::run(*seconds, *keep))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(_) => unreachable!("handled above"),
    }
}

/// Printable ASCII and spaces only: what an `Authorization` header value may hold without
/// escaping (no CR, LF or other control characters).
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// `status` and `history` read the store; the configuration, when it loads, adds the
/// endpoints that have not polled yet. `--database` alone is enough; a configuration that
/// was asked for (or exists) and fails to load is then a warning, not a silent omission.
fn inspect_target(cli: &Cli) -> Result<(PathBuf, Option<Config>), Error> {
    // Reading the store needs no secret: a root shell without the service's credentials
    // inspects it all the same.
    let path = config::config_path(cli.config.as_deref());
    let loaded = config::load_with(&path, cli.database.as_deref(), config::Secrets::Skip)
        .map_err(Error::from);
    match (loaded, &cli.database) {
        (Ok(c), _) => Ok((c.daemon.database.clone(), Some(c))),
        (Err(e), Some(db)) => {
            let path = config::config_path(cli.config.as_deref());
            let asked = cli.config.is_some()
                || std::env::var_os("OAUTH_POLLER_CONFIG").is_some_and(|v| !v.is_empty());
            if asked || path.exists() {
                eprintln!(
                    "oauth-poller: warning: the configuration was not loaded, showing the store alone: {e}"
                );
            }
            Ok((db.clone(), None))
        }
        (Err(e), None) => Err(e),
    }
}
