//! Keyspace notifications from the whole cluster.
//!
//! A node publishes `__keyspace@<db>__:<key>` and `__keyevent@<db>__:<event>` for its own keys
//! only (redis does not spread them over the cluster bus, unlike `PUBLISH`), so the classic link
//! alone would deliver one shard's events. Every channel or pattern that can receive them is
//! therefore also held on a "keyspace link" to the primary of each other shard: with the
//! classic link's node, one primary per shard. When the classic link is on a replica, every
//! primary gets a keyspace link and the classic link's keyspace messages are ignored: a replica
//! publishes what it replays (`del` for a key its primary reports `expired`). From a keyspace link only messages on keyspace
//! channels are passed on; anything else it receives (a `PUBLISH` matching `*`, which every node
//! gets) already came through the classic link.
//!
//! The links follow the map and the classic link: when either changes, the set of wanted nodes
//! is computed again, links to nodes no longer wanted close, and a new link subscribes every
//! such entry. A subscription is confirmed to its client once every keyspace link has
//! confirmed it too (links that keep failing aside), so events caused right after the reply are
//! delivered. Events on a shard
//! whose link is being replaced (failover, lost connection) are lost, like messages on a moving
//! classic link.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info};

use super::Nodes;
use super::placement::backoff_after;
use crate::pubsub::Kind;
use crate::pubsub::hub::Entry;
use crate::pubsub::link::LinkId;

/// Channel prefixes of keyspace notifications.
const PREFIXES: [&[u8]; 2] = [b"__keyspace@", b"__keyevent@"];

/// Whether `name` (a channel, or a pattern) can receive keyspace notifications. For a pattern,
/// its literal start (up to the first `*`, `?`, `[` or `\`) must be compatible with one of the
/// prefixes: `*`, `__key*` and `__keyspace@0__:*` can, `news.*` can't.
fn is_keyspace(kind: Kind, name: &[u8]) -> bool {
    match kind {
        Kind::Channel => is_keyspace_channel(name),
        Kind::Pattern => {
            let literal = name
                .iter()
                .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
                .map_or(name, |end| &name[..end]);
            PREFIXES
                .iter()
                .any(|p| p.starts_with(literal) || literal.starts_with(p))
        }
        Kind::Shard => false,
    }
}

fn is_keyspace_channel(channel: &[u8]) -> bool {
    PREFIXES.iter().any(|p| channel.starts_with(p))
}

impl Nodes {
    /// The entry a message from `link` is for: held there, or, from a keyspace link, any
    /// keyspace entry, for a message on a keyspace channel.
    pub(in crate::pubsub) fn receiver(
        &self,
        kind: Kind,
        name: &Bytes,
        channel: &[u8],
        link: LinkId,
    ) -> Option<&Entry> {
        if self.is_keyspace_link(link) {
            return self
                .entry(kind, name)
                .filter(|_| is_keyspace_channel(channel));
        }
        if self.keyspace_skip_classic && is_keyspace_channel(channel) {
            // The classic link is on a replica; its primary's keyspace link delivers these.
            return None;
        }
        self.held_on(kind, name, link)
    }

    /// Whether `link` holds the entry on its node: its own link, or a keyspace link.
    pub(in crate::pubsub) fn holds(&self, kind: Kind, name: &Bytes, link: LinkId) -> bool {
        self.entry(kind, name).is_some_and(|e| {
            e.link == Some(link) || (self.is_keyspace_link(link) && is_keyspace(kind, name))
        })
    }

    /// The keyspace links (their nodes count the hub's subscriptions too).
    pub(in crate::pubsub) fn keyspace_link_ids(&self) -> Vec<LinkId> {
        self.keyspace_links.values().copied().collect()
    }

    fn is_keyspace_link(&self, link: LinkId) -> bool {
        self.keyspace_links.values().any(|l| *l == link)
    }

    /// Whether every keyspace link a keyspace entry needs has confirmed it. A shard whose link
    /// keeps failing (its primary is down) is not waited for: its events can't come anyway,
    /// and the client's subscription should not stall on it.
    pub(super) fn keyspace_confirmed(&self, kind: Kind, name: &Bytes) -> bool {
        if !is_keyspace(kind, name) {
            return true;
        }
        (self.keyspace_ready || self.keyspace_failures > 0)
            && self.keyspace_links.values().all(|link| {
                self.links
                    .get(link)
                    .is_some_and(|l| !l.outstanding.contains_key(&(kind, name.clone())))
            })
    }

    /// Subscribes (or unsubscribes) a keyspace entry on every keyspace link.
    pub(super) fn keyspace_follow(&mut self, kind: Kind, name: &Bytes, subscribe: bool) {
        if !is_keyspace(kind, name) {
            return;
        }
        let links: Vec<LinkId> = self.keyspace_links.values().copied().collect();
        for link in links {
            self.queue(link, kind, subscribe, name.clone());
        }
        // Opens the links a first keyspace entry needs, closes them after the last one.
        self.reconcile_keyspace();
    }

    fn keyspace_entries(&self) -> Vec<(Kind, Bytes)> {
        [Kind::Channel, Kind::Pattern]
            .into_iter()
            .flat_map(|kind| {
                self.entries[kind.index()]
                    .keys()
                    .filter(move |name| is_keyspace(kind, name))
                    .map(move |name| (kind, name.clone()))
            })
            .collect()
    }

    /// The primaries whose keyspace events the classic link's node does not publish itself:
    /// every primary that owns slots but that node (when it is a replica, all of them: a
    /// replica publishes `del` where its primary publishes `expired`, so its events are not
    /// the ones a single server gives); and whether the classic link's keyspace messages are to
    /// be ignored for that reason. `None` while that can't be known (no classic link, or its
    /// node not in the map).
    ///
    /// A primary without slots holds no keys. Right after a failover a node's `CLUSTER SHARDS`
    /// can still list the demoted primary as one, in a shard of its own with no slots: as a
    /// replica it replays its new primary's writes and publishes their events a second time.
    fn wanted_keyspace_nodes(&self) -> Option<(Vec<String>, bool)> {
        let classic = self.addr(self.classic?)?;
        let map = self.topology.slot_map();
        let layout = map.layout();
        let known = layout
            .iter()
            .any(|s| *s.primary == *classic || s.replicas.iter().any(|r| **r == *classic));
        if !known {
            return None;
        }
        let owners = layout.iter().filter(|s| !s.ranges.is_empty());
        let wanted: Vec<String> = owners
            .clone()
            .filter(|s| *s.primary != *classic)
            .map(|s| s.primary.clone())
            .collect();
        let on_replica = wanted.len() == owners.count();
        Some((wanted, on_replica))
    }

    /// Opens and closes keyspace links so that one node per shard holds the keyspace entries.
    pub(super) fn reconcile_keyspace(&mut self) {
        let entries = self.keyspace_entries();
        let wanted = if entries.is_empty() {
            Some((Vec::new(), false))
        } else {
            self.wanted_keyspace_nodes()
        };
        let Some((wanted, skip_classic)) = wanted else {
            // Decided once the classic link is placed again.
            self.keyspace_ready = false;
            return;
        };
        self.keyspace_skip_classic = skip_classic;
        let gone: Vec<(Arc<str>, LinkId)> = self
            .keyspace_links
            .iter()
            .filter(|(addr, _)| !wanted.iter().any(|w| **w == ***addr))
            .map(|(addr, link)| (addr.clone(), *link))
            .collect();
        for (addr, link) in gone {
            debug!(node = %addr, "keyspace link no longer needed; closing it");
            self.keyspace_links.remove(&addr);
            self.outbox.retain(|op| op.link != link);
            self.links.remove(&link);
        }
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|w| !self.keyspace_links.contains_key(w.as_str()))
            .collect();
        if !missing.is_empty() && Instant::now() < self.keyspace_retry_at {
            self.keyspace_ready = false;
            return;
        }
        for addr in missing {
            let link = self.spawn_link(&addr);
            if self.keyspace_failures <= 1 {
                info!(node = %addr, "pub/sub link for keyspace notifications");
            } else {
                debug!(node = %addr, "pub/sub link for keyspace notifications, again");
            }
            self.keyspace_links.insert(Arc::from(addr.as_str()), link);
            for (kind, name) in &entries {
                self.queue(link, *kind, true, name.clone());
            }
        }
        self.keyspace_ready = true;
    }

    /// A keyspace link failed: try again after a backoff.
    pub(super) fn keyspace_link_down(&mut self, link: LinkId) -> bool {
        let before = self.keyspace_links.len();
        self.keyspace_links.retain(|_, l| *l != link);
        if self.keyspace_links.len() == before {
            return false;
        }
        self.keyspace_ready = false;
        self.keyspace_failures += 1;
        self.keyspace_retry_at = Instant::now()
            + backoff_after(
                self.keyspace_failures,
                self.config.reconnect_backoff_min(),
                self.config.reconnect_backoff_max(),
            );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_channels_and_the_patterns_that_can_match_them() {
        assert!(is_keyspace(Kind::Channel, b"__keyspace@0__:user:1"));
        assert!(is_keyspace(Kind::Channel, b"__keyevent@0__:expired"));
        assert!(!is_keyspace(Kind::Channel, b"news"));
        assert!(!is_keyspace(Kind::Channel, b"__keys"));
        for pattern in [
            &b"*"[..],
            b"__key*",
            b"__keyspace@0__:*",
            b"_?_key*",
            b"__keyevent@*",
        ] {
            assert!(is_keyspace(Kind::Pattern, pattern), "{pattern:?}");
        }
        for pattern in [&b"news.*"[..], b"__other*", b"__keyspaces*"] {
            assert!(!is_keyspace(Kind::Pattern, pattern), "{pattern:?}");
        }
        assert!(!is_keyspace(Kind::Shard, b"__keyspace@0__:x"));
    }
}
