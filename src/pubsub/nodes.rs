//! Where the hub's subscriptions are held: the links to nodes, and keeping every entry on one.
//!
//! Channels and patterns share the classic link, to any node of the map (a node after the one
//! that failed, on reconnect). Each shard channel goes on the link to the primary of its slot;
//! it is placed again when that link fails, when its node refuses it (`MOVED` names the new
//! owner, which is used at once), when its node drops it (the `sunsubscribe` push redis sends
//! when the slot leaves), and when the slot map names another owner. Failed attempts back off
//! like reconnects (`reconnect_backoff_*`). Channels and patterns that receive keyspace
//! notifications are also held on one link to each other shard's primary (`keyspace.rs`).
//!
//! An entry is confirmed when the link holding it has answered every (un)subscribe the hub sent
//! for it: a count per link and entry, so that a confirmation from an earlier unsubscribe and
//! subscribe of the same channel is never mistaken for the current one.
//!
//! This file keeps the books (entries, links, the outbox of commands); `placement.rs` reacts to
//! failures and topology changes and runs the timed retries; `keyspace.rs` keeps the keyspace
//! links.

mod keyspace;
mod placement;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info};

use super::frames::Push;
use super::hub::Entry;
use super::link::{Batch, Event, Expect, Link, LinkEvent, LinkId};
use super::{Kind, encode_command};
use crate::backend::{NodeResult, Outgoing};
use crate::cluster::{Topology, hash_slot};
use crate::config::BackendConfig;
use crate::inbox::InboxSender;
use crate::protocol::Protocol;

/// Most channels named in one subscribe command.
const MAX_PER_COMMAND: usize = 512;
/// MOVED replies followed at once for one shard channel before it backs off.
const MAX_MOVED_IN_A_ROW: u32 = 2;

struct LinkState {
    link: Link,
    /// (Un)subscribe commands sent per entry and not answered yet.
    outstanding: HashMap<(Kind, Bytes), u32>,
}

/// One (un)subscribe waiting to be sent, grouped with its neighbours by `flush`.
struct Op {
    link: LinkId,
    kind: Kind,
    subscribe: bool,
    name: Bytes,
}

/// The hub's links and entries.
pub(super) struct Nodes {
    topology: Arc<Topology>,
    config: BackendConfig,
    events: mpsc::Sender<Event>,
    entries: [HashMap<Bytes, Entry>; 3],
    links: HashMap<LinkId, LinkState>,
    next_link: LinkId,
    /// The link holding channels and patterns.
    classic: Option<LinkId>,
    /// Consecutive failures of the classic link, and when to connect again.
    classic_failures: u32,
    classic_retry_at: Instant,
    /// Which node of the map the classic link tries next.
    classic_cursor: usize,
    shard_links: HashMap<Arc<str>, LinkId>,
    /// Shard channels without a link.
    unplaced: HashSet<Bytes>,
    outbox: Vec<Op>,
    /// An entry was confirmed since `take_confirmed` was last called.
    confirmed: bool,
    /// A shard link may have nothing left to hold.
    gc: bool,
    /// Links to the primaries of the shards the classic link's node is not in, holding the
    /// channels and patterns that receive keyspace notifications (`keyspace.rs`).
    keyspace_links: HashMap<Arc<str>, LinkId>,
    /// Every wanted keyspace link exists (or none is wanted).
    keyspace_ready: bool,
    /// Not before this instant is a failed keyspace link opened again.
    keyspace_retry_at: Instant,
    /// Keyspace links lost since one last came up (for the backoff).
    keyspace_failures: u32,
    /// The classic link is on a replica: its keyspace messages are left to the keyspace links.
    keyspace_skip_classic: bool,
}

impl Nodes {
    pub(super) fn new(
        topology: Arc<Topology>,
        config: BackendConfig,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Self {
            topology,
            config,
            events,
            entries: Default::default(),
            links: HashMap::new(),
            next_link: 1,
            classic: None,
            classic_failures: 0,
            classic_retry_at: Instant::now(),
            // Proxies in front of one cluster start on different nodes.
            classic_cursor: std::process::id() as usize,
            shard_links: HashMap::new(),
            unplaced: HashSet::new(),
            outbox: Vec::new(),
            confirmed: false,
            gc: false,
            keyspace_links: HashMap::new(),
            keyspace_ready: true,
            keyspace_retry_at: Instant::now(),
            keyspace_failures: 0,
            keyspace_skip_classic: false,
        }
    }

    pub(super) fn entry(&self, kind: Kind, name: &Bytes) -> Option<&Entry> {
        self.entries[kind.index()].get(name)
    }

    /// How many entries of `kind` there are (held, or about to be).
    pub(super) fn entries_held(&self, kind: Kind) -> usize {
        self.entries[kind.index()].len()
    }

    pub(super) fn entries(&self, kind: Kind) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.entries[kind.index()].iter()
    }

    /// The entry, if `link` holds it (messages from any other link are stale).
    pub(super) fn held_on(&self, kind: Kind, name: &Bytes, link: LinkId) -> Option<&Entry> {
        self.entry(kind, name).filter(|e| e.link == Some(link))
    }

    pub(super) fn classic(&self) -> Option<LinkId> {
        self.classic
    }

    pub(super) fn shard_links(&self) -> Vec<LinkId> {
        self.shard_links.values().copied().collect()
    }

    pub(super) fn addr(&self, link: LinkId) -> Option<Arc<str>> {
        self.links.get(&link).map(|l| l.link.addr.clone())
    }

    /// Sends a command on `link`; false if there is no such link any more.
    pub(super) fn send(&self, link: LinkId, payload: Bytes, expect: Expect) -> bool {
        match self.links.get(&link) {
            Some(state) => {
                state.link.send(payload, expect);
                true
            }
            None => false,
        }
    }

    /// Sends `payload` on a shared connection (the session's lane) to the primary of the
    /// channel's slot (`Kind::Shard`) or to any primary; where its reply will come.
    pub(super) fn send_to_owner(
        &self,
        session: u64,
        kind: Kind,
        channel: &Bytes,
        payload: Bytes,
    ) -> Option<oneshot::Receiver<NodeResult>> {
        let node = {
            let map = self.topology.slot_map();
            match kind {
                Kind::Shard => map.primary(hash_slot(channel)).cloned(),
                Kind::Channel | Kind::Pattern => {
                    let shards = map.shards();
                    (!shards.is_empty())
                        .then(|| shards[session as usize % shards.len()].primary.clone())
                }
            }
        }?;
        let lane = session as usize;
        Some(
            node.lane(Protocol::Resp2, false, lane)
                .send(Outgoing::new(payload)),
        )
    }

    /// True when an entry was confirmed since the last call.
    pub(super) fn take_confirmed(&mut self) -> bool {
        std::mem::take(&mut self.confirmed)
    }

    /// True while something waits for a retry time.
    pub(super) fn has_timed_work(&self) -> bool {
        !self.unplaced.is_empty()
            || (self.classic.is_none() && self.wants_classic())
            || !self.keyspace_ready
    }

    fn wants_classic(&self) -> bool {
        !self.entries[Kind::Channel.index()].is_empty()
            || !self.entries[Kind::Pattern.index()].is_empty()
    }

    /// Whether the node holding the entry has confirmed it.
    pub(super) fn confirmed(&self, kind: Kind, name: &Bytes) -> bool {
        let Some(link) = self.entry(kind, name).and_then(|e| e.link) else {
            return false;
        };
        self.links
            .get(&link)
            .is_some_and(|l| !l.outstanding.contains_key(&(kind, name.clone())))
            && self.keyspace_confirmed(kind, name)
    }

    /// A queued change will subscribe a session to this entry: make sure a node holds it.
    pub(super) fn reserve(&mut self, kind: Kind, name: &Bytes) {
        let map = &mut self.entries[kind.index()];
        let created = !map.contains_key(name);
        let entry = map.entry(name.clone()).or_insert_with(|| {
            debug!(?kind, name = ?name, "new subscription");
            Entry::new()
        });
        entry.reserved += 1;
        if entry.reserved == 1 && entry.subscribers.is_empty() && entry.link.is_none() {
            match (kind, self.classic) {
                (Kind::Shard, _) => {
                    self.unplaced.insert(name.clone());
                }
                (_, Some(link)) => self.hold(link, kind, name),
                // The classic link is being connected; it subscribes every entry when it is.
                (_, None) => {}
            }
        }
        if created {
            self.keyspace_follow(kind, name, true);
        }
    }

    /// A queued change that would have subscribed to this entry was dropped.
    pub(super) fn unreserve(&mut self, kind: Kind, name: &Bytes) {
        if let Some(entry) = self.entries[kind.index()].get_mut(name) {
            entry.reserved = entry.reserved.saturating_sub(1);
        }
        self.release(kind, name);
    }

    /// Turns a reservation into a subscriber.
    pub(super) fn subscribe(
        &mut self,
        kind: Kind,
        name: &Bytes,
        session: u64,
        inbox: &InboxSender,
    ) {
        if let Some(entry) = self.entries[kind.index()].get_mut(name) {
            entry.reserved = entry.reserved.saturating_sub(1);
            entry.subscribers.insert(session, inbox.clone());
        }
    }

    /// Removes a subscriber; the node subscription goes when nobody else holds the entry.
    pub(super) fn unsubscribe(&mut self, kind: Kind, name: &Bytes, session: u64) {
        if let Some(entry) = self.entries[kind.index()].get_mut(name) {
            entry.subscribers.remove(&session);
        }
        self.release(kind, name);
    }

    fn release(&mut self, kind: Kind, name: &Bytes) {
        let map = &mut self.entries[kind.index()];
        if !map
            .get(name)
            .is_some_and(|e| e.subscribers.is_empty() && e.reserved == 0)
        {
            return;
        }
        let Some(entry) = map.remove(name) else {
            return;
        };
        debug!(?kind, name = ?name, "last subscriber left");
        self.unplaced.remove(name);
        if let Some(link) = entry.link {
            self.queue(link, kind, false, name.clone());
            self.gc = true;
        }
        self.keyspace_follow(kind, name, false);
    }

    /// Records that `link` holds the entry and queues its subscribe command.
    fn hold(&mut self, link: LinkId, kind: Kind, name: &Bytes) {
        if !self.links.contains_key(&link) {
            return;
        }
        if let Some(entry) = self.entries[kind.index()].get_mut(name) {
            entry.link = Some(link);
            self.queue(link, kind, true, name.clone());
        }
    }

    fn queue(&mut self, link: LinkId, kind: Kind, subscribe: bool, name: Bytes) {
        if let Some(state) = self.links.get_mut(&link) {
            *state.outstanding.entry((kind, name.clone())).or_insert(0) += 1;
            self.outbox.push(Op {
                link,
                kind,
                subscribe,
                name,
            });
        }
    }

    /// Sends the queued (un)subscribes, runs of the same link and command as one command (shard
    /// channels also by slot), in order.
    pub(super) fn flush(&mut self) {
        let mut ops = std::mem::take(&mut self.outbox).into_iter().peekable();
        while let Some(first) = ops.next() {
            let slot = |op: &Op| (op.kind == Kind::Shard).then(|| hash_slot(&op.name));
            let key = (first.link, first.kind, first.subscribe, slot(&first));
            let mut names = vec![first.name];
            while names.len() < MAX_PER_COMMAND
                && ops
                    .peek()
                    .is_some_and(|op| (op.link, op.kind, op.subscribe, slot(op)) == key)
            {
                if let Some(op) = ops.next() {
                    names.push(op.name);
                }
            }
            let (link, kind, subscribe, _) = key;
            let payload = encode_command(kind.command(subscribe), &names);
            let batch = Batch {
                kind,
                subscribe,
                channels: names,
            };
            self.send(link, payload, Expect::Subscribe(batch));
        }
    }

    /// Handles a push: confirmations and drops here; a message is returned for the fan-out.
    pub(super) fn on_push(&mut self, link: LinkId, raw: &Bytes) -> Option<Push> {
        let state = self.links.get_mut(&link)?;
        let push = Push::parse(raw);
        let Push::Confirmation {
            kind,
            subscribed,
            channel: Some(name),
        } = push
        else {
            return Some(push);
        };
        let key = (kind, name);
        match state.outstanding.get_mut(&key) {
            Some(count) => {
                *count -= 1;
                if *count == 0 {
                    state.outstanding.remove(&key);
                    if subscribed {
                        self.confirmed = true;
                        if let Some(entry) = self.entries[kind.index()].get_mut(&key.1) {
                            entry.failures = 0;
                        }
                    }
                }
            }
            // Unasked: the node dropped a shard channel because its slot left the node.
            None if kind == Kind::Shard && !subscribed => {
                let name = key.1;
                if let Some(entry) = self.entries[kind.index()].get_mut(&name)
                    && entry.link == Some(link)
                {
                    info!(node = %state.link.addr, channel = ?name, "node dropped a shard channel (slot moved); subscribing again");
                    entry.link = None;
                    entry.retry_at = Instant::now();
                    self.unplaced.insert(name);
                    self.gc = true;
                    self.topology.request_refresh();
                }
            }
            None => {}
        }
        None
    }

    /// Handles a link's other events.
    pub(super) fn on_event(&mut self, link: LinkId, event: LinkEvent) {
        if !self.links.contains_key(&link) {
            return;
        }
        match event {
            LinkEvent::Up => {
                if self.classic == Some(link) {
                    self.classic_failures = 0;
                }
                if self.keyspace_links.values().any(|l| *l == link) {
                    self.keyspace_failures = 0;
                }
            }
            LinkEvent::Push(_) | LinkEvent::Reply(..) => {}
            LinkEvent::Refused { batch, error } => self.on_refused(link, batch, &error),
            LinkEvent::Down(reason) => self.on_down(link, &reason),
        }
    }
}
