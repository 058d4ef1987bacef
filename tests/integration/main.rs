//! Integration tests: the real binary as a process, against real servers, a real SQLite file
//! and real signals. One binary, a module per area.

mod audit;
mod audit_refresh;
mod authorize;
mod bad_input;
mod chaos;
mod concurrency;
mod config_builder;
mod crash;
mod django;
mod docs;
mod doorkeeper;
mod encryption;
mod examples;
mod faults;
mod hooks;
mod layout;
mod leases;
mod lifecycle;
mod logs;
mod metrics;
mod migrate_store;
mod operator_defects;
mod pagination;
mod pg;
mod pg_outage;
mod poll_once;
mod polling;
mod postgres;
mod props;
mod secrets;
mod systemd;
mod transport;
mod util;
mod vendors;
