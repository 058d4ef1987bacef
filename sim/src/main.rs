//! `oauth-poller-sim`: the provider simulator alone, printing a matching configuration.

use clap::Parser;
use std::process::ExitCode;

/// Run the provider simulator alone and print a matching oauth-poller configuration
#[derive(Parser, Debug)]
#[command(name = "oauth-poller-sim", version)]
struct Cli {
    #[command(flatten)]
    args: oauth_poller_sim::SimulateArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: the simulator serves a handful of loopback clients.
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|rt| rt.block_on(oauth_poller_sim::simulate_command(cli.args)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oauth-poller-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}
