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
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// SQLite store, overriding [daemon] database
    #[arg(long, global = true, value_name = "PATH")]
    pub database: Option<PathBuf>,
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
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (systemd Type=notify aware)
    Run,
    /// Poll every endpoint once, then exit (1 if any poll failed)
    PollOnce {
        #[arg(long)]
        account: Option<String>,
    },
    /// Validate the configuration, every secret reference and every seed file
    Check,
    /// Import an initial token file (INI, TOML or JSON) into the store
    Seed {
        account: String,
        file: PathBuf,
        /// Replace a stored token even if it is newer than the file
        #[arg(long)]
        force: bool,
    },
    /// Bootstrap with the provider's consent page: print the authorization URL, exchange a
    /// pasted code (--code), or receive the redirect on a loopback listener (--listen)
    Authorize {
        account: String,
        /// Exchange this authorization code (or the whole redirect address) from the URL
        /// printed earlier (the out-of-band flow)
        #[arg(long, value_name = "CODE", conflicts_with = "listen")]
        code: Option<String>,
        /// Listen on the redirect_uri's loopback port, receive the redirect, store the tokens
        #[arg(long)]
        listen: bool,
        /// How long --listen waits for the redirect
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
    },
    /// Print a valid access token (refreshing first if needed)
    Token {
        account: String,
        /// Print the whole `Authorization: ...` header line
        #[arg(long)]
        header: bool,
    },
    /// Per account: token state and expiry; per endpoint: the last poll
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Recent polls and token events, newest first
    History {
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon against the built-in provider simulator, with short-lived tokens
    Demo {
        /// Stop by itself after this many seconds (default: until Ctrl-C)
        #[arg(long, value_name = "SECS")]
        seconds: Option<u64>,
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
            crate::store::Store::open(&config.daemon.database)?;
            match crate::tokens::seed_from_file(&config.daemon.database, account, file, *force)? {
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
            let mode = match (code, listen) {
                (Some(c), _) => crate::authorize::Mode::Code(c),
                (None, true) => crate::authorize::Mode::Listen(Duration::from_secs(*timeout)),
                (None, false) => crate::authorize::Mode::Print,
            };
            runtime()?.block_on(crate::authorize::run(&config, account, mode))?;
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
                let tokens =
                    Tokens::new(&config.daemon.database, &accounts, config.daemon.timeout)?;
                tokens
                    .access(name)
                    .await
                    .map_err(|e| Error::runtime(format!("account `{name}`: {e}")))
            })?;
            let value = access.authorization.expose_secret();
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
            let ok = crate::inspect::status(&db, config.as_ref(), *json)?;
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
            let (db, _) = inspect_target(&cli)?;
            crate::inspect::history(&db, account.as_deref(), *limit, *json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { seconds } => {
            runtime()?.block_on(crate::demo::run(*seconds))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(_) => unreachable!("handled above"),
    }
}

/// `status` and `history` read the store; the configuration, when it loads, adds the
/// endpoints that have not polled yet. `--database` alone is enough.
fn inspect_target(cli: &Cli) -> Result<(PathBuf, Option<Config>), Error> {
    // Reading the store needs no secret: a root shell without the service's credentials
    // inspects it all the same.
    let path = config::config_path(cli.config.as_deref());
    let loaded = config::load_with(&path, cli.database.as_deref(), config::Secrets::Skip)
        .map_err(Error::from);
    match (loaded, &cli.database) {
        (Ok(c), _) => Ok((c.daemon.database.clone(), Some(c))),
        (Err(_), Some(db)) => Ok((db.clone(), None)),
        (Err(e), None) => Err(e),
    }
}
