//! Integration tests: the real binary as a process, against real servers, a real SQLite file
//! and real signals. One binary, a module per area.

mod audit_refresh;
mod bad_input;
mod concurrency;
mod crash;
mod django;
mod encryption;
mod examples;
mod faults;
mod hooks;
mod lifecycle;
mod logs;
mod metrics;
mod polling;
mod props;
mod secrets;
mod systemd;
mod transport;
mod util;
mod vendors;
