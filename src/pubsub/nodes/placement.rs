//! Keeping the hub's entries held: failures, refusals, slot moves, and timed retries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{LinkState, MAX_MOVED_IN_A_ROW, Nodes};
use crate::cluster::hash_slot;
use crate::protocol::{Reply, ReplyKind};
use crate::pubsub::Kind;
use crate::pubsub::link::{Batch, Link, LinkId};

impl Nodes {
    /// A subscribe-family command failed: subscribe its channels elsewhere or later. (A failed
    /// unsubscribe needs nothing more: the node no longer serves the slot, or the link goes.)
    pub(super) fn on_refused(&mut self, link: LinkId, batch: Batch, error: &Reply) {
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        let Batch {
            kind,
            subscribe,
            channels,
        } = batch;
        let from = state.link.addr.clone();
        for name in &channels {
            let key = (kind, name.clone());
            if let Some(count) = state.outstanding.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    state.outstanding.remove(&key);
                }
            }
        }
        if !subscribe {
            return;
        }
        let text = String::from_utf8_lossy(error.error_text().unwrap_or_default()).into_owned();
        // MOVED names the owner: go there at once. Anything else (ASK, CLUSTERDOWN, TRYAGAIN
        // during a slot's move or a failover) is retried after a backoff, from the slot map.
        let moved_to = match error.kind() {
            ReplyKind::Moved(redirect) if kind == Kind::Shard => {
                Some(resolve(&from, &redirect.addr))
            }
            _ => None,
        };
        if moved_to.is_none() {
            info!(node = %from, ?kind, error = %text, "node refused a subscription; retrying");
        }
        self.topology.request_refresh();
        let backoff = self.config.reconnect_backoff_min();
        let max = self.config.reconnect_backoff_max();
        for name in channels {
            let Some(entry) = self.entries[kind.index()].get_mut(&name) else {
                continue;
            };
            if entry.link != Some(link) {
                continue;
            }
            entry.link = None;
            entry.failures += 1;
            self.gc = true;
            // Nodes that disagree could bounce a channel between them: follow MOVED only twice
            // in a row without a confirmation, then back off and ask the slot map.
            match moved_to
                .as_ref()
                .filter(|_| entry.failures <= MAX_MOVED_IN_A_ROW)
            {
                Some(addr) => {
                    debug!(channel = ?name, to = %addr, "shard channel moved");
                    let to = self.shard_link(addr);
                    self.hold(to, kind, &name);
                }
                None => {
                    entry.retry_at = Instant::now() + backoff_after(entry.failures, backoff, max);
                    if kind == Kind::Shard {
                        self.unplaced.insert(name);
                    }
                }
            }
        }
    }

    pub(super) fn on_down(&mut self, link: LinkId, reason: &str) {
        let Some(state) = self.links.remove(&link) else {
            return;
        };
        let addr = state.link.addr.clone();
        self.shard_links.retain(|_, l| *l != link);
        self.outbox.retain(|op| op.link != link);
        self.topology.request_refresh();
        if self.keyspace_link_down(link) {
            if self.keyspace_failures == 1 {
                info!(node = %addr, %reason, "keyspace pub/sub link lost; opening it again");
            } else {
                debug!(node = %addr, %reason, "keyspace pub/sub link failed again");
            }
        } else if self.classic == Some(link) {
            self.classic = None;
            self.classic_failures += 1;
            self.classic_cursor = self.classic_cursor.wrapping_add(1);
            self.classic_retry_at = Instant::now()
                + backoff_after(
                    self.classic_failures,
                    self.config.reconnect_backoff_min(),
                    self.config.reconnect_backoff_max(),
                );
            warn!(node = %addr, %reason, "pub/sub link lost; subscribing again on another node");
        } else {
            info!(node = %addr, %reason, "shard pub/sub link lost; subscribing again");
        }
        let (min, max) = (
            self.config.reconnect_backoff_min(),
            self.config.reconnect_backoff_max(),
        );
        for kind in Kind::ALL {
            for (name, entry) in self.entries[kind.index()].iter_mut() {
                if entry.link == Some(link) {
                    entry.link = None;
                    if kind == Kind::Shard {
                        entry.failures += 1;
                        entry.retry_at = Instant::now() + backoff_after(entry.failures, min, max);
                        self.unplaced.insert(name.clone());
                    }
                }
            }
        }
    }

    /// The slot map changed: follow shard channels to their slots' new owners, and leave a
    /// classic node that is no longer in the cluster.
    pub(in crate::pubsub) fn on_topology(&mut self) {
        let map = self.topology.slot_map();
        if let Some(link) = self.classic
            && let Some(addr) = self.addr(link)
            && !map.node_addrs().contains(&&*addr)
        {
            info!(node = %addr, "pub/sub node left the cluster; subscribing on another node");
            self.links.remove(&link);
            self.classic = None;
            self.classic_retry_at = Instant::now();
            for kind in [Kind::Channel, Kind::Pattern] {
                for entry in self.entries[kind.index()].values_mut() {
                    entry.link = None;
                }
            }
        }
        let mut moves = Vec::new();
        for (name, entry) in &mut self.entries[Kind::Shard.index()] {
            let owner = map.primary(hash_slot(name)).map(|n| n.addr());
            match entry.link {
                Some(link) => {
                    let addr = self.links.get(&link).map(|l| &*l.link.addr);
                    if owner.is_some() && owner != addr {
                        moves.push((name.clone(), link));
                    }
                }
                None => entry.retry_at = Instant::now(),
            }
        }
        drop(map);
        for (name, link) in moves {
            debug!(channel = ?name, "shard channel's slot has a new owner");
            if let Some(entry) = self.entries[Kind::Shard.index()].get_mut(&name) {
                entry.link = None;
                entry.retry_at = Instant::now();
            }
            self.queue(link, Kind::Shard, false, name.clone());
            self.unplaced.insert(name);
            self.gc = true;
        }
        // A promoted primary, or the classic link's node in another shard now.
        self.reconcile_keyspace();
    }

    /// Timed work: connect the classic link, place shard channels that are due, close links
    /// that hold nothing.
    pub(in crate::pubsub) fn tick(&mut self) {
        if self.classic.is_none() && self.wants_classic() && Instant::now() >= self.classic_retry_at
        {
            self.connect_classic();
        }
        if !self.unplaced.is_empty() {
            self.place_due();
        }
        if !self.keyspace_ready {
            self.reconcile_keyspace();
        }
        if std::mem::take(&mut self.gc) {
            let used: HashSet<LinkId> = self.entries[Kind::Shard.index()]
                .values()
                .filter_map(|e| e.link)
                .collect();
            let idle: Vec<(Arc<str>, LinkId)> = self
                .shard_links
                .iter()
                .filter(|(_, link)| !used.contains(link))
                .map(|(addr, link)| (addr.clone(), *link))
                .collect();
            for (addr, link) in idle {
                // Queued unsubscribes go first; the link closes once they are answered.
                self.flush();
                debug!(node = %addr, "shard pub/sub link holds nothing; closing it");
                self.shard_links.remove(&addr);
                self.links.remove(&link);
            }
        }
    }

    pub(super) fn connect_classic(&mut self) {
        let addrs: Vec<String> = {
            let map = self.topology.slot_map();
            map.node_addrs().into_iter().map(str::to_string).collect()
        };
        if addrs.is_empty() {
            self.classic_retry_at = Instant::now() + self.config.reconnect_backoff_min();
            return;
        }
        let addr = &addrs[self.classic_cursor % addrs.len()];
        let link = self.spawn_link(addr);
        info!(node = %addr, "pub/sub link for channels and patterns");
        self.classic = Some(link);
        for kind in [Kind::Channel, Kind::Pattern] {
            let names: Vec<Bytes> = self.entries[kind.index()].keys().cloned().collect();
            for name in names {
                self.hold(link, kind, &name);
            }
        }
        // The keyspace links cover the shards this node is not in.
        self.reconcile_keyspace();
    }

    pub(super) fn place_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Bytes> = self
            .unplaced
            .iter()
            .filter(|name| {
                self.entries[Kind::Shard.index()]
                    .get(*name)
                    .is_none_or(|e| e.retry_at <= now)
            })
            .cloned()
            .collect();
        for name in due {
            self.unplaced.remove(&name);
            let Some(entry) = self.entries[Kind::Shard.index()].get_mut(&name) else {
                continue;
            };
            if entry.link.is_some() {
                continue;
            }
            let owner = {
                let map = self.topology.slot_map();
                map.primary(hash_slot(&name)).map(|n| n.addr().to_string())
            };
            match owner {
                Some(addr) => {
                    let link = self.shard_link(&addr);
                    self.hold(link, Kind::Shard, &name);
                }
                None => {
                    entry.failures += 1;
                    entry.retry_at = now
                        + backoff_after(
                            entry.failures,
                            self.config.reconnect_backoff_min(),
                            self.config.reconnect_backoff_max(),
                        );
                    self.unplaced.insert(name);
                    self.topology.request_refresh();
                }
            }
        }
    }

    /// The shard link to `addr`, started if there is none.
    pub(super) fn shard_link(&mut self, addr: &str) -> LinkId {
        if let Some(link) = self.shard_links.get(addr) {
            return *link;
        }
        let link = self.spawn_link(addr);
        self.shard_links.insert(Arc::from(addr), link);
        link
    }

    pub(super) fn spawn_link(&mut self, addr: &str) -> LinkId {
        let id = self.next_link;
        self.next_link += 1;
        let link = Link::spawn(id, Arc::from(addr), &self.config, self.events.clone());
        self.links.insert(
            id,
            LinkState {
                link,
                outstanding: HashMap::new(),
            },
        );
        id
    }
}

/// The delay before attempt `failures + 1`: none after the first failure (try the next node at
/// once), then doubling from `min` up to `max`.
pub(super) fn backoff_after(failures: u32, min: Duration, max: Duration) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => (min * 2u32.saturating_pow((n - 2).min(16))).min(max),
    }
}

/// A redirect's address; `:port` (a node that doesn't know its IP) takes `from`'s host.
fn resolve(from: &str, to: &str) -> String {
    match to.strip_prefix(':') {
        Some(port) => {
            let host = from.rsplit_once(':').map_or(from, |(h, _)| h);
            format!("{host}:{port}")
        }
        None => to.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_once_then_doubles_to_the_cap() {
        let (min, max) = (Duration::from_millis(50), Duration::from_millis(300));
        let got: Vec<u64> = (1..=6)
            .map(|n| backoff_after(n, min, max).as_millis() as u64)
            .collect();
        assert_eq!(got, [0, 50, 100, 200, 300, 300]);
    }

    #[test]
    fn redirects_without_a_host_take_the_sender_host() {
        assert_eq!(resolve("10.0.0.1:7000", ":7001"), "10.0.0.1:7001");
        assert_eq!(resolve("10.0.0.1:7000", "10.0.0.2:7001"), "10.0.0.2:7001");
    }
}
