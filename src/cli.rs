//! The command line, and the one place each command is dispatched (its body is in
//! [`crate::commands`]).

use crate::commands::{self, Paths};
use crate::error::Error;
use crate::logging::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Move the SQLite store (tokens, token events, polls, pending authorizations) into a
    /// PostgreSQL database, in one transaction (stop the daemon first; then point
    /// daemon.database at it)
    MigrateStore {
        /// The PostgreSQL database: postgres://ROLE@HOST/DATABASE[?sslmode=verify-full]
        #[arg(long, value_name = "DATABASE")]
        to: String,
        /// A file holding the target's password (default: the libpq password file,
        /// PGPASSFILE or ~/.pgpass)
        #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
        to_password_file: Option<PathBuf>,
        /// Replace tokens the target holds that are newer than the SQLite store's
        #[arg(long)]
        force: bool,
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
    #[cfg(feature = "demo")]
    Demo {
        /// Stop by itself after this many seconds (default: until Ctrl-C)
        #[arg(long, value_name = "SECS")]
        seconds: Option<u64>,
        /// Keep the demo's directory (configuration, seed, database) after it stops
        #[arg(long)]
        keep: bool,
    },
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

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    let paths = Paths {
        config: cli.config.clone(),
        database: cli.database.clone(),
    };
    match &cli.command {
        Command::Run => commands::run::run(&paths),
        Command::PollOnce { account } => commands::poll_once::run(&paths, account.as_deref()),
        Command::Check => commands::check::run(&paths),
        Command::Seed {
            account,
            file,
            force,
        } => commands::seed::run(&paths, account, file, *force),
        Command::Authorize {
            account,
            code,
            listen,
            timeout,
        } => commands::authorize::run(&paths, account, code.as_deref(), *listen, *timeout),
        Command::Rekey { new_key_file } => commands::rekey::run(&paths, new_key_file),
        Command::MigrateStore {
            to,
            to_password_file,
            force,
        } => commands::migrate_store::run(&paths, to, to_password_file.as_deref(), *force),
        Command::Token { account, header } => commands::token::run(&paths, account, *header),
        Command::Status { json } => commands::inspect::status(&paths, *json),
        Command::History {
            account,
            limit,
            json,
        } => commands::inspect::history(&paths, account.as_deref(), *limit, *json),
        #[cfg(feature = "demo")]
        Command::Demo { seconds, keep } => {
            commands::runtime()?.block_on(crate::demo::run(*seconds, *keep))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
