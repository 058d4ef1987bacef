//! oauth-poller: keeps OAuth2 tokens alive unattended and polls API endpoints on a schedule.
//!
//! The binary is thin: [`cli::main`] parses the command line and maps errors to exit codes.
//!
//! # Layout
//!
//! From the command line down; a module uses only those listed after it, so there is no
//! import cycle (`tests/integration/layout.rs` holds the code to this list).
//!
//! - `cli`: the command line (clap), and the dispatch to `commands`.
//! - `commands`: one file per command; each builds what it needs (the configuration, the
//!   store with its key, a `Hooks`, a `Metrics`) and passes it down explicitly. There is no
//!   process-wide mutable state.
//! - `demo` (cargo feature `demo`): the daemon against the simulator crate, `oauth-poller-sim`.
//! - `authorize`: obtains a first token (the authorization URL, PKCE, `--code`, the loopback
//!   listener).
//! - `daemon`: the running service: the `Context` (hooks and metrics), signals, reload,
//!   sd_notify and the watchdog.
//! - `poller`: one poll of one endpoint and the schedule; `pagination` follows collections.
//! - `tokens`: when a token is usable, the single-flight refresh in steps (decide, ask the
//!   provider, commit, report), backoff, `needs_reauth`.
//! - `oauth`: token-endpoint requests and lenient parsing of providers' answers.
//! - `http`: the one HTTP client, for polls and token requests (pool, redirects, body limit,
//!   proxies, TLS).
//! - `metrics` (`/metrics`, `/healthz`) and `hooks` (`on_event`, `on_change`): values the
//!   daemon owns.
//! - `inspect`: `status` and `history`, read from the store; `running`: whether a daemon
//!   holds the store.
//! - `leases`: which accounts this instance polls and refreshes, on a store that several
//!   instances share.
//! - `config`, `seed`, `credentials`: what the operator hands over: the configuration (which
//!   names the store and reads its key), seed files, secrets.
//! - `store`: everything persistent behind one interface (`Store`, `Handle`), opened with its
//!   encryption key; SQLite is its one backend, and no SQL lives outside it.
//! - `logging`: the log formats.
//! - `tls`: the one TLS client configuration (HTTPS and PostgreSQL).
//! - `files`, `units`, `time`: checks on handed-over files, durations and sizes, dates.
//! - `error`: the two error families and the exit codes.
//!
//! Everything is `pub(crate)`: the library's public surface is the command line and the few
//! parsers and helpers the integration tests and the benchmark drive directly (below).

pub mod cli;

pub(crate) mod authorize;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod daemon;
#[cfg(feature = "demo")]
pub(crate) mod demo;
pub(crate) mod error;
pub(crate) mod files;
pub(crate) mod hooks;
pub(crate) mod http;
pub(crate) mod inspect;
pub(crate) mod leases;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod oauth;
pub(crate) mod pagination;
pub(crate) mod poller;
pub(crate) mod running;
pub(crate) mod seed;
pub(crate) mod store;
pub(crate) mod time;
pub(crate) mod tls;
pub(crate) mod tokens;
pub(crate) mod units;

// Driven directly by the property tests (parsers fed arbitrary input), the crash and audit
// tests (the store's clock, a store created as the daemon creates it) and the benchmark.
pub use config::parse as parse_config;
pub use oauth::response::parse as parse_token_response;
pub use poller::start_offsets;
pub use seed::parse_seed_bytes;
pub use store::{now, Store};
pub use time::format_utc;
