//! How the proxy talks to nodes: a pool of shared, pipelined connections per node.
//!
//! Knows addresses and bytes, nothing about slots or commands.

pub mod connection;
pub mod monitor;
pub mod pool;

pub use connection::{Job, NodeResult};
pub use pool::{BackendPool, Lane, Node};
