use std::process::ExitCode;

fn main() -> ExitCode {
    oauth_poller::cli::main()
}
