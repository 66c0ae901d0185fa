//! `Topology`: the current `SlotMap` behind an `ArcSwap`, and the task that keeps it fresh.
//!
//! One refresher task runs per proxy, so at most one refresh is ever in flight. It refreshes on a
//! timer, when a session reports a MOVED, and when a node connection fails; triggered refreshes
//! are rate-limited by `min_refresh_gap`. A refresh asks the known nodes (primaries first), then
//! the seeds, until one answers `CLUSTER SHARDS` (or `CLUSTER SLOTS` on older nodes); the new map
//! is published only if the layout changed, so the generation counts real changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::slot_map::{ShardLayout, SlotMap, TopologyError, parse_shards, parse_slots};
use crate::backend::BackendPool;
use crate::config::ClusterConfig;
use crate::protocol::Protocol;
use crate::protocol::codec::decode_owned;

const CLUSTER_SHARDS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n";
const CLUSTER_SLOTS: &[u8] = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
/// Longest wait for one node's topology reply before trying the next.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

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
        }
    }

    /// The current map. Load once per command; don't hold it across an `.await`.
    pub fn slot_map(&self) -> Guard<Arc<SlotMap>> {
        self.map.load()
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
    pub async fn run_refresher(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last = Instant::now() - self.config.min_refresh_gap();
        let mut failures = 0u32;
        loop {
            if let Err(e) = self.refresh().await {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(error = %e, failures, "topology refresh failed");
                }
            } else {
                failures = 0;
            }
            last = last.max(Instant::now());
            // Retry a failed refresh soon, with backoff; otherwise wait for the timer or a trigger.
            let wait = if failures > 0 {
                (self.config.min_refresh_gap() * 2u32.saturating_pow(failures.min(6)))
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

    /// Fetches the topology once and publishes it if it changed.
    ///
    /// # Errors
    /// `TopologyError` listing why every candidate node failed.
    pub async fn refresh(&self) -> Result<(), TopologyError> {
        let current = self.map.load_full();
        let mut candidates: Vec<String> =
            current.node_addrs().into_iter().map(String::from).collect();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut errors = Vec::new();
        for addr in &candidates {
            match self.ask(addr).await {
                Ok(layout) if layout.is_empty() => errors.push(format!("{addr}: no shards")),
                Ok(layout) => {
                    self.publish(&current, layout);
                    return Ok(());
                }
                Err(e) => errors.push(format!("{addr}: {}", e.0)),
            }
        }
        Err(TopologyError(errors.join("; ")))
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
                    .set_replicas(shard.live_replicas);
            }
            let mut keep = next.node_addrs();
            keep.extend(self.seeds.iter().map(String::as_str));
            self.pool.retain(&keep);
            let generation = next.generation();
            self.map.store(Arc::new(next));
            self.changes.send_replace(generation);
        }
        if !self.ready.swap(true, Ordering::AcqRel) {
            self.ready_notify.notify_waiters();
        }
    }

    /// Asks one node for the topology: `CLUSTER SHARDS`, else `CLUSTER SLOTS`.
    async fn ask(&self, addr: &str) -> Result<Vec<ShardLayout>, TopologyError> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match self.query(addr, CLUSTER_SHARDS).await {
            Ok(frame) => parse_shards(&frame, host),
            Err(QueryError::Refused(reason)) => {
                debug!(node = addr, %reason, "CLUSTER SHARDS refused; trying CLUSTER SLOTS");
                match self.query(addr, CLUSTER_SLOTS).await {
                    Ok(frame) => parse_slots(&frame, host),
                    Err(e) => Err(TopologyError(e.to_string())),
                }
            }
            Err(e) => Err(TopologyError(e.to_string())),
        }
    }

    async fn query(
        &self,
        addr: &str,
        command: &'static [u8],
    ) -> Result<redis_protocol::resp2::types::OwnedFrame, QueryError> {
        let node = self.pool.node(addr);
        let reply = tokio::time::timeout(
            ASK_TIMEOUT,
            node.request(Protocol::Resp2, Bytes::from_static(command)),
        )
        .await
        .map_err(|_| QueryError::Failed("no reply in time".into()))?
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
