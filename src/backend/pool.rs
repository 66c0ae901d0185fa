//! `BackendPool`: node address -> `Node`, each with a few shared connections per protocol.
//!
//! Connection tasks are spawned with the `Node` and connect on their first job. A `Node` dropped
//! from the pool (it left the cluster) closes its connections once their in-flight jobs finish.
//! Each `Node` also carries its `NodeHealth`, so whoever holds the node can read it lock-free.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::info;

use super::connection::{self, Job, NodeResult, Use};
use super::health::NodeHealth;
use super::stats::{NodeStats, NodeStatsSnapshot};
use crate::config::BackendConfig;
use crate::error::BackendError;
use crate::protocol::Protocol;

/// The job queue of one connection task.
#[derive(Debug, Clone)]
pub struct Lane {
    addr: Arc<str>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl Lane {
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        addr: &Arc<str>,
        protocol: Protocol,
        usage: Use,
        readonly: bool,
        config: &BackendConfig,
        failed: &Arc<Notify>,
        replicas: &Arc<AtomicUsize>,
        stats: &Arc<NodeStats>,
    ) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(connection::run(
            addr.clone(),
            protocol,
            usage,
            readonly,
            config.clone(),
            rx,
            failed.clone(),
            replicas.clone(),
            stats.clone(),
        ));
        Self {
            addr: addr.clone(),
            jobs,
        }
    }

    /// Queues `payload` and returns where its reply will come; with `asking`, `ASKING` is sent
    /// first on the same connection. `replies` is how many replies the payload produces
    /// (usually 1); they come back concatenated as one `Reply`.
    /// `write` marks a command that may change data (see `Job::write`).
    pub fn send(
        &self,
        payload: Bytes,
        asking: bool,
        replies: usize,
        write: bool,
    ) -> oneshot::Receiver<NodeResult> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            payload,
            asking,
            replies,
            write,
            reply: tx,
        };
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job) {
            // The connection task is gone (runtime shutting down): answer rather than hang.
            let _ = job.reply.send(Err(BackendError::NotSent {
                node: self.addr.to_string(),
                reason: "connection task stopped".into(),
            }));
        }
        rx
    }
}

/// One node: its address and its shared connections, per protocol version.
#[derive(Debug)]
pub struct Node {
    addr: Arc<str>,
    /// `lanes[readonly][protocol.index()][i]`: one shared connection. The `readonly` ones sent
    /// `READONLY`, for reads from a replica; the others never did, so a primary that was demoted
    /// answers MOVED on them instead of serving stale data.
    lanes: [[Vec<Lane>; 2]; 2],
    config: BackendConfig,
    failed: Arc<Notify>,
    /// Online replicas of this node, per the current slot map (0 unless it is a primary).
    replicas: Arc<AtomicUsize>,
    /// Written by the health check, read by every request that picks a node.
    health: NodeHealth,
    /// Requests, in-flight and connection counts of this node's connections (`/metrics`).
    stats: Arc<NodeStats>,
}

impl Node {
    fn spawn(addr: Arc<str>, config: &BackendConfig, failed: &Arc<Notify>) -> Self {
        let replicas = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(NodeStats::default());
        let lanes = [false, true].map(|readonly| {
            [Protocol::Resp2, Protocol::Resp3].map(|protocol| {
                (0..config.connections_per_node)
                    .map(|_| {
                        Lane::spawn(
                            &addr,
                            protocol,
                            Use::Shared,
                            readonly,
                            config,
                            failed,
                            &replicas,
                            &stats,
                        )
                    })
                    .collect()
            })
        });
        Self {
            addr,
            lanes,
            config: config.clone(),
            failed: failed.clone(),
            replicas,
            health: NodeHealth::default(),
            stats,
        }
    }

    /// Records how many online replicas the slot map gives this node (`ack = replicated`
    /// answers NOREPLICAS at once for a primary without any).
    pub fn set_replicas(&self, count: usize) {
        self.replicas.store(count, Ordering::Relaxed);
    }

    /// The node's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The node's `host:port`, shared.
    pub fn shared_addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// What this node's connections did (requests, in flight, connects).
    pub fn stats(&self) -> NodeStatsSnapshot {
        self.stats.snapshot()
    }

    /// What the health check last learned about the node.
    pub fn health(&self) -> &NodeHealth {
        &self.health
    }

    /// Queues `payload` on shared connection `lane % connections`; see `Lane::send`.
    ///
    /// A session always passes the same `lane`, so its requests to one node share one connection
    /// and keep their order. `readonly` picks the connections that sent `READONLY` (replica reads).
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &self,
        protocol: Protocol,
        readonly: bool,
        lane: usize,
        payload: Bytes,
        asking: bool,
        replies: usize,
        write: bool,
    ) -> oneshot::Receiver<NodeResult> {
        let lanes = &self.lanes[usize::from(readonly)][protocol.index()];
        lanes[lane % lanes.len()].send(payload, asking, replies, write)
    }

    /// A new connection for one session alone (blocking commands, WATCH); it connects on first
    /// use and closes when the last clone of the `Lane` is dropped.
    pub fn dedicated(&self, protocol: Protocol) -> Lane {
        Lane::spawn(
            &self.addr,
            protocol,
            Use::Dedicated,
            false,
            &self.config,
            &self.failed,
            &self.replicas,
            &self.stats,
        )
    }

    /// Sends one request and waits for its reply.
    ///
    /// # Errors
    /// The `BackendError` of the connection, or `NotSent` if the task vanished.
    pub async fn request(&self, protocol: Protocol, payload: Bytes) -> NodeResult {
        self.send(protocol, false, 0, payload, false, 1, false)
            .await
            .unwrap_or_else(|_| {
                Err(BackendError::Lost {
                    node: self.addr.to_string(),
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
}

impl BackendPool {
    /// An empty pool; `failed` is notified whenever a node connection fails.
    pub fn new(config: BackendConfig, failed: Arc<Notify>) -> Self {
        Self {
            config,
            nodes: Mutex::new(HashMap::new()),
            failed,
        }
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
        let node = Arc::new(Node::spawn(addr.clone(), &self.config, &self.failed));
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
