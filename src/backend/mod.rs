//! How the proxy talks to nodes: a pool of shared, pipelined connections per node, each node's
//! measured health, and the small connection health checks use.
//!
//! Knows addresses and bytes, nothing about slots or commands.

pub mod connection;
pub mod health;
pub mod monitor;
pub mod pool;
pub mod probe;
pub mod stats;

pub use connection::{Job, NodeResult};
pub use health::{HealthSnapshot, NodeHealth};
pub use pool::{BackendPool, Lane, Node};
pub use probe::{Probe, ProbeError, ProbeReport};
pub use stats::{NodeStats, NodeStatsSnapshot};
