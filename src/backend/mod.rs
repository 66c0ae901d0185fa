//! How the proxy talks to nodes: a pool of shared, pipelined connections per node, each node's
//! measured health, and the small connection health checks use.
//!
//! Knows addresses and bytes, nothing about slots or commands.

pub mod access;
mod ack;
pub mod budget;
pub mod client_memory;
pub mod connection;
pub mod lane;
pub mod mailbox;
pub mod migrate_check;
pub mod node_health;
mod outbox;
pub mod pool;
pub mod probe;
pub mod rtt_histogram;
pub mod setup;
pub mod stats;
pub mod stream;
pub mod tls;

pub use budget::ReplyBudget;
pub use client_memory::ClientMemory;
pub use connection::{Job, NodeResult, Outgoing};
pub use lane::Lane;
pub use mailbox::{Mailbox, ReplyTo, Ticket};
pub use node_health::{HealthSnapshot, NodeHealth};
pub use pool::{BackendPool, Node};
pub use probe::{Probe, ProbeError, ProbeReport};
pub use setup::Handshake;
pub use stats::{NodeStats, NodeStatsSnapshot};
pub use stream::NodeStream;
