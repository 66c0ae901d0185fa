//! `BackendPool`: node address -> `Node`, each with a few shared connections per protocol.
//!
//! Connection tasks are spawned with the `Node` and connect on their first job. A `Node` dropped
//! from the pool (it left the cluster) closes its connections once their in-flight jobs finish.
//! Each `Node` also carries its `NodeHealth`, so whoever holds the node can read it lock-free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tracing::info;

use super::connection::{self, Endpoint, NodeResult, Outgoing, Shape, Use};
use super::lane::{self, Lane};
use super::node_health::NodeHealth;
use super::setup::FailureLog;
use super::stats::{NodeStats, NodeStatsSnapshot};
use crate::config::BackendConfig;
use crate::error::BackendError;
use crate::protocol::Protocol;

/// A connection task on `runtime`, and the lane that feeds it.
fn spawn_lane(node: &Endpoint, shape: Shape, config: &BackendConfig, runtime: &Handle) -> Lane {
    let (lane, queue) = lane::lane(node.addr.clone(), config.max_queued_requests);
    runtime.spawn(connection::run(node.clone(), shape, config.clone(), queue));
    lane
}

/// One node: its address and its shared connections, per protocol version.
#[derive(Debug)]
pub struct Node {
    /// The address, health, counters and failure log every connection of the node shares.
    /// The health is written by the health check and read by every request that picks a node.
    endpoint: Endpoint,
    /// `lanes[worker][replica_read][protocol.index()][i]`: one shared connection, on the runtime
    /// of the worker whose sessions use it (see `crate::workers`). The `replica_read` ones sent
    /// `READONLY`, for reads from a replica; the others never did, so a primary that was demoted
    /// answers MOVED on them instead of serving stale data.
    lanes: Vec<[[Vec<Lane>; 2]; 2]>,
    config: BackendConfig,
}

impl Node {
    fn spawn(
        addr: Arc<str>,
        config: &BackendConfig,
        failed: &Arc<Notify>,
        workers: &[Handle],
    ) -> Self {
        let endpoint = Endpoint {
            addr,
            failed: failed.clone(),
            health: Arc::new(NodeHealth::default()),
            stats: Arc::new(NodeStats::default()),
            failures: Arc::new(FailureLog::default()),
        };
        let current;
        let runtimes = if workers.is_empty() {
            current = [Handle::current()];
            &current[..]
        } else {
            workers
        };
        let lanes = runtimes
            .iter()
            .map(|runtime| {
                [false, true].map(|replica_read| {
                    [Protocol::Resp2, Protocol::Resp3].map(|protocol| {
                        let shape = Shape {
                            protocol,
                            usage: Use::Shared,
                            replica_read,
                        };
                        (0..config.connections_per_node)
                            .map(|_| spawn_lane(&endpoint, shape, config, runtime))
                            .collect()
                    })
                })
            })
            .collect();
        Self {
            endpoint,
            lanes,
            config: config.clone(),
        }
    }

    /// The node's `host:port`.
    pub fn addr(&self) -> &str {
        &self.endpoint.addr
    }

    /// The node's `host:port`, shared.
    pub fn shared_addr(&self) -> &Arc<str> {
        &self.endpoint.addr
    }

    /// What this node's connections did (requests, in flight, connects).
    pub fn stats(&self) -> NodeStatsSnapshot {
        self.endpoint.stats.snapshot()
    }

    /// What the health check last learned about the node.
    pub fn health(&self) -> &NodeHealth {
        &self.endpoint.health
    }

    /// Shared connection `lane % connections`, of the `READONLY` ones (replica reads) or the
    /// others.
    ///
    /// A session always passes the same `lane`, so its requests to one node share one connection
    /// and keep their order.
    pub fn lane(&self, protocol: Protocol, replica_read: bool, lane: usize) -> &Lane {
        self.worker_lane(0, protocol, replica_read, lane)
    }

    /// `lane`, among the connections of worker `worker` (a session's own worker: its
    /// connections run on the session's thread).
    pub fn worker_lane(
        &self,
        worker: usize,
        protocol: Protocol,
        replica_read: bool,
        lane: usize,
    ) -> &Lane {
        let lanes =
            &self.lanes[worker % self.lanes.len()][usize::from(replica_read)][protocol.index()];
        &lanes[lane % lanes.len()]
    }

    /// A new connection for one session alone (blocking commands, WATCH); it connects on first
    /// use and closes when the last clone of the `Lane` is dropped.
    pub fn dedicated(&self, protocol: Protocol) -> Lane {
        let shape = Shape {
            protocol,
            usage: Use::Dedicated,
            replica_read: false,
        };
        spawn_lane(&self.endpoint, shape, &self.config, &Handle::current())
    }

    /// Sends one request and waits for its reply.
    ///
    /// # Errors
    /// The `BackendError` of the connection, or `NotSent` if the task vanished.
    pub async fn request(&self, protocol: Protocol, payload: Bytes) -> NodeResult {
        self.lane(protocol, false, 0)
            .send(Outgoing::new(payload))
            .await
            .unwrap_or_else(|_| {
                Err(BackendError::Lost {
                    node: self.endpoint.addr.to_string(),
                    reason: "connection task stopped".into(),
                })
            })
    }
}

/// Every node the proxy talks to, by address.
#[derive(Debug)]
pub struct BackendPool {
    config: BackendConfig,
    nodes: Mutex<HashMap<Arc<str>, Arc<Node>>>,
    failed: Arc<Notify>,
    /// The workers' runtimes, each with its own shared connections to every node (empty: the
    /// runtime that creates the node).
    workers: Vec<Handle>,
}

impl BackendPool {
    /// An empty pool; `failed` is notified whenever a node connection fails.
    pub fn new(config: BackendConfig, failed: Arc<Notify>) -> Self {
        Self::on_workers(config, failed, Vec::new())
    }

    /// An empty pool whose nodes get shared connections on each of `workers` (see
    /// [`crate::workers`]).
    pub fn on_workers(config: BackendConfig, failed: Arc<Notify>, workers: Vec<Handle>) -> Self {
        Self {
            config,
            nodes: Mutex::new(HashMap::new()),
            failed,
            workers,
        }
    }

    /// The connection settings every node connection uses (credentials included).
    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// The node at `addr`, created (with idle connection tasks) on first use.
    ///
    /// # Panics
    /// Only if the pool's lock was poisoned by a panic elsewhere, which can't happen as no code
    /// panics while holding it.
    pub fn node(&self, addr: &str) -> Arc<Node> {
        let mut nodes = self
            .nodes
            .lock()
            .expect("pool lock is never held across a panic");
        if let Some(node) = nodes.get(addr) {
            return node.clone();
        }
        let addr: Arc<str> = Arc::from(addr);
        let node = Arc::new(Node::spawn(
            addr.clone(),
            &self.config,
            &self.failed,
            &self.workers,
        ));
        nodes.insert(addr, node.clone());
        node
    }

    /// The node at `addr` if the pool has it (nothing is created).
    ///
    /// # Panics
    /// As `node`.
    pub fn find(&self, addr: &str) -> Option<Arc<Node>> {
        self.nodes
            .lock()
            .expect("pool lock is never held across a panic")
            .get(addr)
            .cloned()
    }

    /// Drops every node whose address is not in `keep`; their connections close when idle.
    ///
    /// # Panics
    /// As `node`.
    pub fn retain(&self, keep: &[&str]) {
        let mut nodes = self
            .nodes
            .lock()
            .expect("pool lock is never held across a panic");
        nodes.retain(|addr, _| {
            let kept = keep.contains(&&**addr);
            if !kept {
                info!(node = %addr, "node left the cluster; closing its connections");
            }
            kept
        });
    }
}
