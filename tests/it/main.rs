//! The integration tests: one test binary, one module per behaviour area.
//!
//! Every module uses the shared harness in `common` (real redis-server clusters, an in-process
//! proxy, raw clients). One binary means `common` compiles once and the suite links once.
//! Add a behaviour area as `tests/it/<area>.rs` and declare it below with `mod <area>;`.
//! Run one area with `cargo nextest run <area>::` (or `cargo test --test it <area>::`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may unwrap too

mod common;

mod ack;
mod acl;
mod admin_commands;
mod admin_http;
mod backend_auth;
mod blocking;
mod busy;
mod chaos;
mod cli;
mod client_pause;
mod client_reply;
mod client_tls;
mod client_tls_bad;
mod commands_doc;
mod deploy_files;
mod differential;
mod failover;
mod faults;
mod frameworks;
mod fuzz;
mod harness;
mod health;
mod hostile;
mod info;
mod introspection;
mod isolation;
mod keyspace_events;
mod memory_budget;
mod monitor;
mod multi_key;
mod node_migrate;
mod ops;
mod ops_clients;
mod ops_process;
mod ops_startup;
mod pipeline;
mod protocol;
mod pubsub;
mod pubsub_sharded;
mod read_policy;
mod redirect;
mod routing;
mod scan;
mod scripts;
mod set_algebra;
mod slots;
mod slowlog;
mod strict_resp;
mod structure;
mod tls;
mod tracking;
mod tracking_redirect;
mod transactions;
mod transactions_per_slot;
mod wait;
