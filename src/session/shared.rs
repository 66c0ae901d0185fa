//! What every session shares: configuration, topology, the command table, the users,
//! counters, and the registries other sessions are reached through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use arc_swap::ArcSwap;

use super::scripts::ScriptCache;
use crate::cluster::Topology;
use crate::command::CommandTable;
use crate::config::Config;
use crate::pubsub::Hub;

/// What every session shares: configuration, topology, the command table, counters.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the proxy started with (keys a reload changes are in `live`).
    pub config: Config,
    /// The slot map and node pool.
    pub topology: Arc<Topology>,
    /// The command table (built-in rows plus commands learned from the cluster).
    pub commands: ArcSwap<CommandTable>,
    /// Connected clients.
    pub clients: AtomicUsize,
    /// Source of client ids (`CLIENT ID`).
    pub next_client_id: AtomicU64,
    /// `redis_version` reported by `HELLO`, from the cluster's nodes.
    pub redis_version: ArcSwap<String>,
    /// Script bodies clients sent, to load them again on a node that answers `NOSCRIPT`.
    pub scripts: ScriptCache,
    /// Who tracks which keys (`CLIENT TRACKING`), and the primaries' invalidations.
    pub tracker: Arc<crate::tracking::Tracker>,
    /// The low-priority thread for CPU-heavy work a client asked for.
    pub offload: crate::offload::Offload,
    /// Notified when a client's (allowed) `SHUTDOWN` asks slotproxy to stop.
    pub stop: tokio::sync::Notify,
    /// The pub/sub hub: every session's subscriptions, held once on nodes.
    pub hub: Hub,
    /// The configuration as last (re)loaded: the keys a reload may change are read from here
    /// for each new request or client (see [`crate::reload`]); `config` keeps the rest.
    pub live: ArcSwap<Config>,
    /// Prometheus figures.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Becomes true when shutdown begins: readiness fails, sessions answer what they were sent
    /// and close.
    pub draining: tokio::sync::watch::Sender<bool>,
    /// Users of slotproxy itself (`[auth]`, `ACL SETUSER`).
    pub acl: crate::auth::Acl,
    /// The worker runtimes sessions run on, each with its own node connections.
    pub workers: Arc<crate::workers::Workers>,
    /// Failed `AUTH` / `HELLO AUTH` attempts since start.
    pub auth_failures: AtomicU64,
    /// Every connected client, for `CLIENT LIST`, `CLIENT KILL`, `CLIENT UNBLOCK`.
    pub registry: Arc<crate::clients::Registry>,
    /// This process's `run_id` (`INFO server`), random per start.
    pub run_id: crate::cluster::RunId,
    /// `CLIENT PAUSE`, held by slotproxy for every client.
    pub pause: crate::pause::Pause,
    /// Clients in `MONITOR` mode, and the lines of the commands every session shows them.
    pub monitors: crate::monitor::Monitors,
}

impl Shared {
    /// A new client's id (`CLIENT ID`): 1, 2, 3, ... in order of admission.
    pub fn client_id(&self) -> u64 {
        self.next_client_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Whether a client from `peer` must be refused under protected mode: it is enabled, the
    /// proxy listens beyond loopback (`local`), no password or user is configured, and the
    /// client is not on loopback.
    pub fn protected_mode_refuses(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        self.config.auth.protected_mode
            && !local.ip().is_loopback()
            && !peer.ip().is_loopback()
            && self.acl.users.load().open()
    }
}
