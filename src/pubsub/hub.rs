//! The hub task: which session receives what, fan-out of messages, and the calls sessions make.
//!
//! State: per kind, an `Entry` for each channel (or pattern) some session holds or is about to
//! hold (`reserved`: a change that subscribes to it is queued); per session, what it holds and
//! its queue of calls. Which link holds an entry, and keeping it held across failures and slot
//! moves, is `nodes.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::frames::{Push, glob_match, push_as_resp2};
use super::inspect::{Inspection, LinkAnswer, Query, Question, Routed};
use super::link::{Event, Expect, LinkEvent, LinkId, ReplyTo};
use super::nodes::Nodes;
use super::{Call, Change, Holding, Hub, Kind};
use crate::cluster::Topology;
use crate::config::Config;
use crate::inbox::InboxSender;
use crate::protocol::Protocol;

/// Link events waiting for the hub; a full queue slows the links' reading, not the hub.
const EVENT_QUEUE: usize = 1024;
/// How often the hub looks at timed work (retries, changes waiting for a node) when it has some.
const TICK: Duration = Duration::from_millis(20);

/// Starts the hub task; it runs until `stop` resolves or every `Hub` handle is dropped.
pub fn start(
    topology: Arc<Topology>,
    config: &Config,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (Hub, JoinHandle<()>) {
    let (calls_tx, calls) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let changes = topology.changes();
    let holding = Arc::new(Holding::default());
    let state = State {
        holding: holding.clone(),
        nodes: Nodes::new(topology, config.backend.clone(), events_tx),
        deadline: config.session.retry_deadline(),
        members: HashMap::new(),
        parked: HashSet::new(),
    };
    let task = tokio::spawn(state.run(calls, events, changes, stop));
    (
        Hub {
            calls: calls_tx,
            holding,
        },
        task,
    )
}

/// One channel, pattern or shard channel the proxy holds.
#[derive(Debug)]
pub(super) struct Entry {
    /// Sessions receiving it, with their inboxes.
    pub(super) subscribers: HashMap<u64, InboxSender>,
    /// Queued changes that will subscribe a session to it.
    pub(super) reserved: u32,
    /// The link holding it (its subscribe command sent or confirmed), if any.
    pub(super) link: Option<LinkId>,
    /// Failed attempts to hold it since it was last confirmed (for the retry backoff).
    pub(super) failures: u32,
    /// Not before this instant is it tried again (shard channels without a link).
    pub(super) retry_at: Instant,
}

impl Entry {
    pub(super) fn new() -> Self {
        Self {
            subscribers: HashMap::new(),
            reserved: 0,
            link: None,
            failures: 0,
            retry_at: Instant::now(),
        }
    }
}

/// One session as the hub knows it.
#[derive(Debug, Default)]
struct Member {
    subs: HashSet<(Kind, Bytes)>,
    /// Calls not handled yet, in order; the front may be a change waiting for its node, or for
    /// the session's publishes.
    queue: VecDeque<(Call, Instant)>,
    /// The session's publishes sent on each link and not answered yet.
    publishing: HashMap<LinkId, u32>,
}

struct State {
    /// Shared with the sessions' handles.
    holding: Arc<Holding>,
    nodes: Nodes,
    /// How long a change may wait for its node before it is confirmed anyway.
    deadline: Duration,
    members: HashMap<u64, Member>,
    /// Sessions whose front call is a change waiting for a node.
    parked: HashSet<u64>,
}

impl State {
    async fn run(
        mut self,
        mut calls: mpsc::UnboundedReceiver<Call>,
        mut events: mpsc::Receiver<Event>,
        mut changes: tokio::sync::watch::Receiver<u64>,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let timed = !self.parked.is_empty() || self.nodes.has_timed_work();
            tokio::select! {
                _ = &mut stop => break,
                call = calls.recv() => match call {
                    Some(call) => self.on_call(call),
                    None => break,
                },
                Some(event) = events.recv() => self.on_event(event),
                changed = changes.changed() => {
                    if changed.is_ok() {
                        self.nodes.on_topology();
                    }
                }
                _ = tokio::time::sleep(TICK), if timed => {}
            }
            self.nodes.tick();
            if self.nodes.take_confirmed() || !self.parked.is_empty() {
                for id in self.parked.clone() {
                    self.run_member(id);
                }
            }
            self.nodes.flush();
            let classic = self.nodes.classic().is_some();
            let shard = self.nodes.entries(Kind::Shard).next().is_some();
            self.holding.classic.store(classic, Ordering::Release);
            self.holding.shard.store(shard, Ordering::Release);
            for kind in Kind::ALL {
                let held = self.nodes.entries_held(kind);
                self.holding.held[kind.index()].store(held, Ordering::Relaxed);
            }
        }
        info!("pub/sub hub stopped");
    }

    fn on_call(&mut self, call: Call) {
        match call {
            Call::Leave(id) => {
                self.leave(id);
                self.count_subscribers();
            }
            Call::Change(change) => {
                let id = change.session;
                for (kind, name) in &change.subscribe {
                    self.nodes.reserve(*kind, name);
                }
                let member = self.members.entry(id).or_default();
                member
                    .queue
                    .push_back((Call::Change(change), Instant::now()));
                self.run_member(id);
                self.count_subscribers();
            }
            other => {
                let id = other.session();
                match self.members.get_mut(&id) {
                    Some(member) if !member.queue.is_empty() => {
                        member.queue.push_back((other, Instant::now()));
                    }
                    _ => self.answer(other),
                }
            }
        }
    }

    /// Publishes the number of sessions subscribed to anything (on subscription changes only:
    /// it walks the members).
    fn count_subscribers(&self) {
        let subscribed = self.members.values().filter(|m| !m.subs.is_empty()).count();
        self.holding
            .subscribers
            .store(subscribed, Ordering::Relaxed);
    }

    fn on_event(&mut self, event: Event) {
        let Event { link, what } = event;
        match what {
            LinkEvent::Push(raw) => {
                if let Some(Push::Message {
                    kind,
                    pattern,
                    channel,
                }) = self.nodes.on_push(link, &raw)
                {
                    let name = pattern.as_ref().unwrap_or(&channel);
                    if let Some(entry) = self.nodes.receiver(kind, name, &channel, link) {
                        fan_out(&entry.subscribers, &raw);
                    }
                }
            }
            LinkEvent::Reply(to, reply) => {
                let _ = to.tx.send(Ok(reply));
                if let Some(id) = to.session {
                    self.published(id, link);
                }
            }
            LinkEvent::Down(reason) => {
                self.nodes.on_event(link, LinkEvent::Down(reason));
                // Its unanswered publishes were failed by the link itself.
                let waiting: Vec<u64> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.publishing.contains_key(&link))
                    .map(|(id, _)| *id)
                    .collect();
                for id in waiting {
                    if let Some(member) = self.members.get_mut(&id) {
                        member.publishing.remove(&link);
                    }
                    self.run_member(id);
                }
            }
            other => self.nodes.on_event(link, other),
        }
    }

    /// Handles the session's queued calls in order, up to a change still waiting for its node.
    fn run_member(&mut self, id: u64) {
        loop {
            let ready = match self.members.get(&id).and_then(|m| m.queue.front()) {
                None => break,
                // A message the session published may be on its way to the session itself:
                // it must arrive before the session's next change (an unsubscribe) applies.
                Some((Call::Change(_), _))
                    if self
                        .members
                        .get(&id)
                        .is_some_and(|m| !m.publishing.is_empty()) =>
                {
                    false
                }
                Some((Call::Change(change), since)) => {
                    let confirmed = change
                        .subscribe
                        .iter()
                        .all(|(kind, name)| self.nodes.confirmed(*kind, name));
                    if !confirmed && since.elapsed() >= self.deadline {
                        warn!(
                            client = id,
                            "subscribing took longer than the retry deadline; confirming \
                             anyway (messages flow once a node takes the subscription)"
                        );
                    }
                    confirmed || since.elapsed() >= self.deadline
                }
                Some(_) => true,
            };
            if !ready {
                self.parked.insert(id);
                return;
            }
            let Some((call, _)) = self.members.get_mut(&id).and_then(|m| m.queue.pop_front())
            else {
                break;
            };
            match call {
                Call::Change(change) => self.apply(change),
                other => self.answer(other),
            }
        }
        self.parked.remove(&id);
        if self
            .members
            .get(&id)
            .is_some_and(|m| m.queue.is_empty() && m.subs.is_empty())
        {
            self.members.remove(&id);
        }
    }

    /// One of the session's publishes on `link` was answered.
    fn published(&mut self, id: u64, link: LinkId) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if let Some(count) = member.publishing.get_mut(&link) {
            *count -= 1;
            if *count == 0 {
                member.publishing.remove(&link);
                self.run_member(id);
            }
        }
    }

    /// Puts a change into effect and queues its reply, in order with the session's messages.
    fn apply(&mut self, change: Change) {
        let Change {
            session,
            inbox,
            subscribe,
            unsubscribe,
            reply,
            switch,
        } = change;
        for (kind, name) in unsubscribe {
            if let Some(member) = self.members.get_mut(&session) {
                member.subs.remove(&(kind, name.clone()));
            }
            self.nodes.unsubscribe(kind, &name, session);
        }
        for (kind, name) in subscribe {
            self.nodes.subscribe(kind, &name, session, &inbox);
            if let Some(member) = self.members.get_mut(&session) {
                member.subs.insert((kind, name));
            }
        }
        inbox.reply(reply, switch);
    }

    /// Forgets a session: everything it held or was about to hold.
    fn leave(&mut self, id: u64) {
        self.parked.remove(&id);
        let Some(member) = self.members.remove(&id) else {
            return;
        };
        debug!(
            client = id,
            subscriptions = member.subs.len(),
            "client left the hub"
        );
        for (kind, name) in member.subs {
            self.nodes.unsubscribe(kind, &name, id);
        }
        for (call, _) in member.queue {
            if let Call::Change(change) = call {
                for (kind, name) in change.subscribe {
                    self.nodes.unreserve(kind, &name);
                }
            }
        }
    }

    fn answer(&mut self, call: Call) {
        match call {
            Call::Publish {
                session,
                kind,
                channel,
                payload,
                reply,
            } => {
                let _ = reply.send(self.publish(session, kind, &channel, payload));
            }
            Call::Inspect { query, reply, .. } => {
                let _ = reply.send(self.inspect(&query));
            }
            Call::Change(_) | Call::Leave(_) => {}
        }
    }

    /// Sends a `PUBLISH`/`SPUBLISH` on the link holding its channel, with the count adjustment;
    /// without one, on a shared connection to a primary (the slot's for `SPUBLISH`), so the
    /// session's later publishes need not wait for this one.
    fn publish(&mut self, session: u64, kind: Kind, channel: &Bytes, payload: Bytes) -> Routed {
        // Subscribe commands waiting in the outbox go first, so the node counts what we count.
        self.nodes.flush();
        let held = |entry: &Entry, link: LinkId| i64::from(entry.link == Some(link));
        let on_link = if kind == Kind::Shard {
            self.nodes
                .entry(Kind::Shard, channel)
                .and_then(|e| e.link.map(|link| (link, e.subscribers.len() as i64 - 1)))
        } else {
            self.nodes.classic().map(|link| {
                let mut adjust = self
                    .nodes
                    .entry(Kind::Channel, channel)
                    .map_or(0, |e| e.subscribers.len() as i64 - held(e, link));
                for (pattern, entry) in self.nodes.entries(Kind::Pattern) {
                    if glob_match(pattern, channel) {
                        adjust += entry.subscribers.len() as i64 - held(entry, link);
                    }
                }
                (link, adjust)
            })
        };
        if let Some((link, adjust)) = on_link {
            let (tx, rx) = oneshot::channel();
            let member = self.members.get_mut(&session);
            let to = ReplyTo {
                tx,
                session: member.is_some().then_some(session),
            };
            if self.nodes.send(link, payload.clone(), Expect::Reply(to)) {
                if let Some(member) = member {
                    *member.publishing.entry(link).or_insert(0) += 1;
                }
                return Routed::Sent { reply: rx, adjust };
            }
        }
        // No link has it: none of the proxy's clients would receive it.
        match self.nodes.send_to_owner(session, kind, channel, payload) {
            Some(reply) => Routed::Sent { reply, adjust: 0 },
            None => Routed::NotRouted,
        }
    }

    /// Sends a `PUBSUB` question on the links it concerns, with what the proxy holds.
    fn inspect(&mut self, query: &Query) -> Inspection {
        self.nodes.flush();
        let question = query.question;
        let kind = match question {
            Question::NumPat => Kind::Pattern,
            Question::ShardChannels | Question::ShardNumSub => Kind::Shard,
            Question::Channels | Question::NumSub => Kind::Channel,
        };
        let count = |entry: Option<&Entry>| entry.map_or(0, |e| e.subscribers.len() as i64);
        let local = match question {
            Question::NumSub | Question::ShardNumSub => query
                .channels
                .iter()
                .map(|c| count(self.nodes.entry(kind, c)))
                .collect(),
            Question::NumPat => {
                let patterns = self.nodes.entries(Kind::Pattern);
                vec![patterns.filter(|(_, e)| !e.subscribers.is_empty()).count() as i64]
            }
            Question::Channels | Question::ShardChannels => Vec::new(),
        };
        let links = if question.is_shard() {
            self.nodes.shard_links()
        } else {
            let keyspace = self.nodes.keyspace_link_ids();
            self.nodes.classic().into_iter().chain(keyspace).collect()
        };
        let mut answers = Vec::with_capacity(links.len());
        for link in links {
            let held = match question {
                Question::NumSub | Question::ShardNumSub => query
                    .channels
                    .iter()
                    .map(|c| i64::from(self.nodes.holds(kind, c, link)))
                    .collect(),
                Question::NumPat => vec![
                    self.nodes
                        .entries(Kind::Pattern)
                        .filter(|(name, _)| self.nodes.holds(Kind::Pattern, name, link))
                        .count() as i64,
                ],
                Question::Channels | Question::ShardChannels => Vec::new(),
            };
            let (tx, rx) = oneshot::channel();
            if let Some(addr) = self.nodes.addr(link)
                && self.nodes.send(
                    link,
                    query.payload.clone(),
                    Expect::Reply(ReplyTo { tx, session: None }),
                )
            {
                answers.push(LinkAnswer {
                    addr,
                    reply: rx,
                    held,
                });
            }
        }
        Inspection { answers, local }
    }
}

/// Copies a message (a node's RESP3 push) into each subscriber's inbox, in its protocol. A
/// subscriber over its output limit refuses it; its session is closing and will leave.
fn fan_out(subscribers: &HashMap<u64, InboxSender>, raw: &Bytes) {
    let mut resp2: Option<Bytes> = None;
    for inbox in subscribers.values() {
        let _ = inbox.push(|protocol| match protocol {
            Protocol::Resp3 => raw.clone(),
            Protocol::Resp2 => resp2.get_or_insert_with(|| push_as_resp2(raw)).clone(),
        });
    }
}
