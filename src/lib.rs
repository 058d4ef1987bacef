//! oauth-poller: keeps OAuth2 tokens alive unattended and polls API endpoints on a schedule.
//!
//! The binary is thin: [`cli::main`] parses the command line and maps errors to exit codes.

pub mod authorize;
pub mod cli;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod files;
pub mod hooks;
pub mod http;
pub mod inspect;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod pagination;
pub mod poller;
pub mod running;
pub mod seed;
pub mod store;
pub mod time;
pub mod tokens;
pub mod units;
