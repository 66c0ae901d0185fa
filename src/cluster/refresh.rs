//! `Topology`: the current `SlotMap` behind an `ArcSwap`, and the task that keeps it fresh.
//!
//! One refresher task runs per proxy, so at most one refresh is ever in flight. It refreshes on a
//! timer, when a session reports a MOVED, when a node connection fails and when a primary fails
//! its health check; triggered refreshes are rate-limited by `min_refresh_gap`. While a primary
//! that serves slots keeps failing its health checks, it refreshes again and again with backoff
//! until the cluster has replaced it.
//!
//! A refresh asks three nodes at once (the known nodes that pass their health checks, primaries
//! first, then the seeds, then the failing nodes), each for `CLUSTER SHARDS` (or `CLUSTER SLOTS`
//! on older nodes) and `CLUSTER NODES`, and keeps the answer with the greatest config epoch, so a
//! node that has not heard of a failover yet can't send the proxy back to the old primary (see
//! `epoch.rs`). The new map is published only if the layout changed, so the generation counts
//! real changes. A node whose answer names slotproxy's own run id is slotproxy itself: it is
//! refused and never asked again (see `seeds.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use redis_protocol::resp2::types::OwnedFrame;
use tokio::task::JoinSet;

use super::epoch::owners_epoch;
use super::run_id::RunId;
use super::slot_map::{ShardLayout, SlotMap, TopologyError, parse_shards, parse_slots};
use super::stats::RefreshStats;
use crate::backend::{BackendPool, Node, Outgoing};
use crate::config::ClusterConfig;
use crate::protocol::Protocol;
use crate::protocol::codec::decode_owned;

const CLUSTER_SHARDS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n";
const CLUSTER_SLOTS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
const CLUSTER_NODES: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n";
/// Longest wait for one node's topology reply.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Nodes asked at once in a refresh.
const ASK_AT_ONCE: usize = 3;
/// Once one node of a group has answered, how much longer the others get to answer (a healthy
/// node answers within a millisecond or so; one that takes longer is not worth waiting for).
const EPOCH_GRACE: Duration = Duration::from_millis(200);

/// The cluster's slot map as the proxy currently believes it, and how to refresh it.
#[derive(Debug)]
pub struct Topology {
    map: ArcSwap<SlotMap>,
    pool: Arc<BackendPool>,
    seeds: Vec<String>,
    config: ClusterConfig,
    /// Wakes the refresher; shared with the pool, which notifies it when a connection fails.
    wake: Arc<Notify>,
    /// Set once the first refresh has succeeded.
    ready: AtomicBool,
    ready_notify: Notify,
    /// The generation of the published map, for tasks that follow topology changes.
    changes: watch::Sender<u64>,
    /// Notified each time a changed map is published (the health check follows the map).
    changed: Notify,
    /// Refreshes, failovers seen, map age.
    stats: RefreshStats,
    /// This process's run id: a node answering with it is slotproxy itself.
    run_id: RunId,
    /// Addresses found to be slotproxy itself; never asked again.
    refused: std::sync::Mutex<Vec<String>>,
}

impl Topology {
    /// A topology with an empty map; `wake` must be the `Notify` the pool signals on failures.
    pub fn new(
        pool: Arc<BackendPool>,
        seeds: Vec<String>,
        config: ClusterConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            map: ArcSwap::from_pointee(SlotMap::empty()),
            pool,
            seeds,
            config,
            wake,
            ready: AtomicBool::new(false),
            ready_notify: Notify::new(),
            changes: watch::Sender::new(0),
            changed: Notify::new(),
            stats: RefreshStats::default(),
            run_id: RunId::random(),
            refused: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The same topology, knowing this process's run id (else it has a random one of its own).
    #[must_use]
    pub fn with_run_id(mut self, run_id: RunId) -> Self {
        self.run_id = run_id;
        self
    }

    /// The current map. Load once per command; don't hold it across an `.await`.
    pub fn slot_map(&self) -> Guard<Arc<SlotMap>> {
        self.map.load()
    }

    /// How the map has been followed: refreshes, failovers seen, age.
    pub fn stats(&self) -> &RefreshStats {
        &self.stats
    }

    /// The seed addresses.
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// The node pool the map's nodes come from.
    pub fn pool(&self) -> &Arc<BackendPool> {
        &self.pool
    }

    /// Follows topology changes: the receiver sees the generation of each map published.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Asks the refresher for a refresh soon (coalesced and rate-limited); never blocks.
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Waits until the first refresh has succeeded or `timeout` passes; true if it succeeded.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.ready_notify.notified();
                if self.ready.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Refreshes until `shutdown` resolves. Spawn it once per proxy.
    ///
    /// Besides the timer and the triggers, it keeps refreshing with backoff (capped at the
    /// health check interval) while a primary that serves slots fails its health checks: the
    /// cluster is expected to replace it, and the proxy should follow as soon as it has.
    pub async fn run_refresher(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last = Instant::now() - self.config.min_refresh_gap();
        let mut failures = 0u32;
        let mut unsettled = 0u32;
        loop {
            let refreshed = self.refresh().await;
            self.stats.refreshed(refreshed.is_ok());
            if let Err(e) = refreshed {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(error = %e, failures, "topology refresh failed");
                }
            } else {
                failures = 0;
            }
            let down: Vec<String> = self
                .slot_map()
                .down_primaries()
                .map(|p| p.addr().to_string())
                .collect();
            if down.is_empty() {
                unsettled = 0;
            } else {
                unsettled += 1;
                if unsettled == 1 {
                    info!(primaries = ?down, "a primary fails its health checks; refreshing until the cluster replaces it");
                }
            }
            last = last.max(Instant::now());
            // Retry a failed refresh soon, with backoff; otherwise wait for the timer or a trigger.
            let backoff = |n: u32| self.config.min_refresh_gap() * 2u32.saturating_pow(n.min(6));
            let wait = if failures > 0 {
                backoff(failures).min(self.config.refresh_interval())
            } else if unsettled > 0 {
                backoff(unsettled)
                    .min(self.config.health_check_interval())
                    .min(self.config.refresh_interval())
            } else {
                self.config.refresh_interval()
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {
                    let since = last.elapsed();
                    if since < self.config.min_refresh_gap() {
                        tokio::select! {
                            _ = &mut shutdown => return,
                            _ = tokio::time::sleep(self.config.min_refresh_gap() - since) => {}
                        }
                    }
                }
            }
            last = Instant::now();
        }
    }

    /// Fetches the topology and publishes it if it changed.
    ///
    /// Asks up to `ASK_AT_ONCE` nodes at a time, concurrently: the map's nodes that pass their
    /// health checks (primaries first), then the seeds, then the nodes that fail them. Of the
    /// answers, the one with the greatest config epoch wins (see [`super::epoch`]); on a tie, the
    /// earlier node in that order. The next nodes are asked only if none of a group answered.
    ///
    /// # Errors
    /// `TopologyError` listing why every candidate node failed.
    pub async fn refresh(&self) -> Result<(), TopologyError> {
        let current = self.map.load_full();
        let candidates = self.candidates(&current);
        let mut errors = Vec::new();
        for group in candidates.chunks(ASK_AT_ONCE) {
            if let Some(answer) = self.ask_group(group, &mut errors).await {
                self.publish(&current, answer.layout);
                return Ok(());
            }
        }
        Err(TopologyError(errors.join("; ")))
    }

    /// Whom to ask, best first.
    fn candidates(&self, current: &SlotMap) -> Vec<String> {
        let mut healthy = Vec::new();
        let mut failing = Vec::new();
        for shard in current.shards() {
            let node = &shard.primary;
            if node.health().is_up() {
                &mut healthy
            } else {
                &mut failing
            }
            .push(node.addr());
        }
        for node in current.shards().iter().flat_map(|s| &s.replicas) {
            if node.health().is_up() {
                &mut healthy
            } else {
                &mut failing
            }
            .push(node.addr());
        }
        let mut candidates: Vec<String> = Vec::new();
        let ordered = healthy
            .into_iter()
            .chain(self.seeds.iter().map(String::as_str))
            .chain(failing);
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        for addr in ordered {
            if !candidates.iter().any(|c| c == addr) && !refused.iter().any(|r| r == addr) {
                candidates.push(addr.to_string());
            }
        }
        candidates
    }

    /// Asks every node of `group` at once; the best answer, after the first usable one has
    /// arrived and the others had `EPOCH_GRACE` more to answer.
    async fn ask_group(&self, group: &[String], errors: &mut Vec<String>) -> Option<Answer> {
        let mut asks = JoinSet::new();
        let tls = self.pool.config().tls.enabled;
        for (rank, addr) in group.iter().enumerate() {
            let node = self.pool.node(addr);
            let addr = addr.clone();
            let own = self.run_id.clone();
            asks.spawn(async move {
                let answer = tokio::time::timeout(ASK_TIMEOUT, ask(node, &addr, tls, &own))
                    .await
                    .unwrap_or_else(|_| Err(TopologyError("no reply in time".into())));
                (rank, addr, answer)
            });
        }
        let mut best: Option<(Option<u64>, std::cmp::Reverse<usize>, Answer)> = None;
        let mut grace_until: Option<Instant> = None;
        loop {
            let next = match grace_until {
                Some(until) => match tokio::time::timeout_at(until, asks.join_next()).await {
                    Ok(next) => next,
                    Err(_) => break, // the stragglers are dropped (aborted) with the set
                },
                None => asks.join_next().await,
            };
            let Some(joined) = next else { break };
            let Ok((rank, addr, answer)) = joined else {
                continue;
            };
            match answer {
                Ok(answer) if answer.is_self => {
                    let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                    if !refused.contains(&addr) {
                        super::seeds::refuse_self(&addr);
                        refused.push(addr.clone());
                    }
                    errors.push(format!("{addr}: slotproxy itself"));
                }
                Ok(answer) if answer.layout.is_empty() => {
                    errors.push(format!("{addr}: no shards"));
                }
                Ok(answer) => {
                    debug!(node = %addr, epoch = ?answer.epoch, "topology answer");
                    let key = (answer.epoch, std::cmp::Reverse(rank));
                    if best.as_ref().is_none_or(|(e, r, _)| key > (*e, *r)) {
                        best = Some((key.0, key.1, answer));
                    }
                    grace_until.get_or_insert_with(|| Instant::now() + EPOCH_GRACE);
                }
                Err(e) => errors.push(format!("{addr}: {}", e.0)),
            }
        }
        best.map(|(_, _, answer)| answer)
    }

    fn publish(&self, current: &SlotMap, layout: Vec<ShardLayout>) {
        let next = SlotMap::build(layout, &self.pool, current.generation() + 1);
        if next.layout() != current.layout() {
            info!(
                generation = next.generation(),
                shards = next.shards().len(),
                covered_slots = next.covered_slots(),
                "slot map updated"
            );
            for shard in next.layout() {
                debug!(primary = %shard.primary, replicas = ?shard.replicas, ranges = ?shard.ranges, "shard");
            }
            for shard in next.layout() {
                self.pool
                    .node(&shard.primary)
                    .health()
                    .set_replicas(shard.live_replicas);
            }
            let mut keep = next.node_addrs();
            keep.extend(self.seeds.iter().map(String::as_str));
            self.pool.retain(&keep);
            let generation = next.generation();
            self.stats.published(current, &next);
            self.map.store(Arc::new(next));
            self.changes.send_replace(generation);
            self.changed.notify_waiters();
        }
        if !self.ready.swap(true, Ordering::AcqRel) {
            self.ready_notify.notify_waiters();
        }
    }

    /// Resolves the next time a changed map is published.
    pub async fn map_changed(&self) {
        self.changed.notified().await;
    }
}

/// One node's view of the cluster.
struct Answer {
    layout: Vec<ShardLayout>,
    /// See [`super::epoch::owners_epoch`]; `None` if the node did not say.
    epoch: Option<u64>,
    /// The node named slotproxy's own run id: it is this slotproxy.
    is_self: bool,
}

/// Asks one node for the topology (`CLUSTER SHARDS`, else `CLUSTER SLOTS`) and for its config
/// epochs (`CLUSTER NODES`), both pipelined on one of its connections. With `tls`, nodes are
/// addressed by their TLS ports (which `CLUSTER SLOTS` gives a TLS connection anyway).
async fn ask(node: Arc<Node>, addr: &str, tls: bool, own: &RunId) -> Result<Answer, TopologyError> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let shards = query(&node, CLUSTER_SHARDS);
    let nodes = query(&node, CLUSTER_NODES);
    let layout = match shards.await {
        Ok(frame) => parse_shards(&frame, host, tls)?,
        Err(QueryError::Refused(reason)) => {
            debug!(node = addr, %reason, "CLUSTER SHARDS refused; trying CLUSTER SLOTS");
            match query(&node, CLUSTER_SLOTS).await {
                Ok(frame) => parse_slots(&frame, host)?,
                Err(e) => return Err(TopologyError(e.to_string())),
            }
        }
        Err(e) => return Err(TopologyError(e.to_string())),
    };
    let (epoch, is_self) = match nodes.await {
        Ok(OwnedFrame::BulkString(text)) => {
            let text = String::from_utf8_lossy(&text);
            (owners_epoch(&text), super::seeds::names_self(&text, own))
        }
        _ => (None, false),
    };
    Ok(Answer {
        layout,
        epoch,
        is_self,
    })
}

/// Queues `command` on the node's first shared connection at once, and returns the decoded
/// reply when awaited (so that several queries to one node are pipelined).
fn query(
    node: &Node,
    command: &'static [u8],
) -> impl Future<Output = Result<OwnedFrame, QueryError>> + use<> {
    let rx = node
        .lane(Protocol::Resp2, false, 0)
        .send(Outgoing::new(Bytes::from_static(command)));
    async move {
        let reply = rx
            .await
            .map_err(|_| QueryError::Failed("connection task stopped".into()))?
            .map_err(|e| QueryError::Failed(e.to_string()))?;
        if let Some(text) = reply.error_text() {
            return Err(QueryError::Refused(String::from_utf8_lossy(text).into()));
        }
        decode_owned(reply.raw()).map_err(|e| QueryError::Failed(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
enum QueryError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}
