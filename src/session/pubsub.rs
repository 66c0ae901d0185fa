//! A session's pub/sub: its subscription set, the replies redis-server would give for it, and
//! the inbox through which the pub/sub hub delivers its messages.
//!
//! The session keeps its own set of channels, patterns and shard channels, updated as each
//! (P|S)(UN)SUBSCRIBE is read, in order with the client's other requests; the confirmations
//! (and their counts) are built from it, as redis-server builds them for one client. So a RESP2
//! client is in subscribed mode from its SUBSCRIBE on, even for the requests it pipelined behind
//! it: only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING (answered `[pong, message]`), QUIT and RESET
//! are allowed then, and anything else gets redis' error. RESP3 clients may run any command while
//! subscribed; their messages arrive as push frames between replies.
//!
//! A change of the set goes to the hub (`crate::pubsub`) with its confirmations; the hub puts
//! them in the session's inbox where the change took effect among the messages, and the session
//! writes them when the request reaches the front of its reply queue (`Pending::Inbox`). While a
//! session waits on the inbox, HELLO and RESET switch protocol through the hub too, so messages
//! before the reply are in the old protocol and after it in the new one. SSUBSCRIBE names
//! channels of one slot, else `-CROSSSLOT`, as redis-server in cluster mode requires.
//!
//! A client whose backlog passes the pub/sub output limit is disconnected (see `crate::inbox`).
//!
//! [`PubSub`] borrows exactly the session parts this needs (the set, the inbox, the reply
//! order); it does not know how a request is sent to nodes: `PUBLISH` and `PUBSUB` hand the
//! request back ([`Forward`]) when the hub can't answer them.

use bytes::Bytes;

use super::output::DRAIN_BYTES;
use super::plan::{Plan, keys_slot};
use super::queue::{Pending, Task, TaskOutcome};
use super::replies::{Forward, Replies};
use super::shared::Shared;
use super::subscriptions::{Changed, Subscriptions};
use super::target::Target;
use crate::command::CommandSpec;
use crate::error::ReplyError;
use crate::inbox::{Inbox, Item};
use crate::protocol::reply::write_bulk;
use crate::protocol::{Protocol, Request};
use crate::pubsub::inspect::{self, Query};
use crate::pubsub::{Change, Kind, write_push_len};

/// A session's pub/sub parts, borrowed for one request or one pass of its loop.
pub(super) struct PubSub<'a> {
    /// The client id, as the hub knows the session.
    pub(super) id: u64,
    /// The protocol the client speaks now.
    pub(super) protocol: Protocol,
    pub(super) shared: &'a Shared,
    pub(super) subs: &'a mut Subscriptions,
    pub(super) inbox: &'a mut Inbox,
    /// `Pending::Inbox` entries in the queue.
    pub(super) inbox_waits: &'a mut usize,
    /// The hub knows this session.
    pub(super) hub_member: &'a mut bool,
    /// Inbox frames wait for the output buffer to drain (see the session's field).
    pub(super) drain_waits_for_output: &'a mut bool,
    /// Scratch space for key positions (`SPUBLISH`'s slot).
    pub(super) key_positions: &'a mut Vec<usize>,
    pub(super) replies: Replies<'a>,
}

impl PubSub<'_> {
    /// Whether protocol changes must travel through the hub, in order with the messages.
    pub(super) fn uses_hub(&self) -> bool {
        self.subs.any() || *self.inbox_waits > 0
    }

    /// `PING [message]` in RESP2 subscribed mode: `[pong, message]`.
    pub(super) fn subscribed_ping(&mut self, request: &Request) {
        let message = request.args().get(1).cloned().unwrap_or_default();
        self.replies.with(|out| {
            write_push_len(out, Protocol::Resp2, 2);
            write_bulk(out, b"pong");
            write_bulk(out, &message);
        });
    }

    /// (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE: updates the set, builds the confirmations, and has
    /// the hub apply the change.
    pub(super) fn subscription(&mut self, spec: &CommandSpec, request: &Request) {
        let (kind, subscribe) = match spec.name {
            "subscribe" => (Kind::Channel, true),
            "psubscribe" => (Kind::Pattern, true),
            "ssubscribe" => (Kind::Shard, true),
            "unsubscribe" => (Kind::Channel, false),
            "punsubscribe" => (Kind::Pattern, false),
            _ => (Kind::Shard, false),
        };
        let names = &request.args()[1..];
        match self.subs.change(kind, subscribe, names, self.protocol) {
            Ok(Changed {
                subscribe: true,
                names,
                reply,
            }) => self.through_hub(names, Vec::new(), reply, None),
            Ok(Changed { names, reply, .. }) => self.through_hub(Vec::new(), names, reply, None),
            Err(error) => self.replies.error(error),
        }
    }

    /// Queues `reply` behind the change: through the hub when anything changes (or the session
    /// already waits on it, to keep the order), else as a plain reply.
    fn through_hub(
        &mut self,
        subscribe: Vec<(Kind, Bytes)>,
        unsubscribe: Vec<(Kind, Bytes)>,
        reply: Bytes,
        switch: Option<Protocol>,
    ) {
        if subscribe.is_empty()
            && unsubscribe.is_empty()
            && switch.is_none()
            && *self.inbox_waits == 0
        {
            return self.replies.bytes(&reply);
        }
        self.shared.hub.change(Change {
            session: self.id,
            inbox: self.inbox.sender(),
            subscribe,
            unsubscribe,
            reply,
            switch,
        });
        *self.hub_member = true;
        *self.inbox_waits += 1;
        self.replies.push(Pending::Inbox);
    }

    /// RESET's pub/sub part: drops every subscription, back to RESP2, then `+RESET`.
    pub(super) fn reset(&mut self, reply: Bytes) {
        if self.uses_hub() {
            let all = self.subs.take_all();
            self.through_hub(Vec::new(), all, reply, Some(Protocol::Resp2));
        } else {
            self.inbox.set_protocol(Protocol::Resp2);
            self.replies.bytes(&reply);
        }
    }

    /// HELLO's reply, switching the protocol the hub encodes messages in.
    pub(super) fn switch_protocol(&mut self, protocol: Protocol, reply: Bytes) {
        if self.uses_hub() {
            self.through_hub(Vec::new(), Vec::new(), reply, Some(protocol));
        } else {
            self.inbox.set_protocol(protocol);
            self.replies.bytes(&reply);
        }
    }

    /// `PUBLISH`/`SPUBLISH`: through the hub's link for the channel when it has one, else
    /// handed back to be sent like any other command (`SPUBLISH` to its slot's primary).
    pub(super) fn publish(&mut self, spec: &CommandSpec, request: Request) -> Option<Forward> {
        let shard = spec.name == "spublish";
        let (kind, fallback) = if shard {
            let target = match keys_slot(self.key_positions, spec, &request) {
                Ok(Some(slot)) => Target::Slot(slot),
                _ => Target::AnyPrimary,
            };
            (Kind::Shard, Plan::Single(target))
        } else {
            (Kind::Channel, Plan::Single(Target::AnyPrimary))
        };
        if !self.uses_hub() && !self.shared.hub.holds(kind) {
            // No client of this proxy can receive it: the node's count is the answer. (A session
            // with subscriptions goes through the hub, after its own subscribes took effect.)
            return Some(Forward(request, fallback));
        }
        let channel = request.args()[1].clone();
        let routed = self
            .shared
            .hub
            .publish(self.id, kind, channel, request.raw().clone());
        self.replies.push(Pending::Task(Task::new(async move {
            match inspect::publish_reply(routed).await {
                Some(reply) => TaskOutcome::Reply(reply),
                None => TaskOutcome::Dispatch(request, fallback),
            }
        })));
        None
    }

    /// `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB`; handed back to be sent to a
    /// node when the arguments are not the hub's to answer.
    pub(super) fn count(&mut self, request: Request) -> Option<Forward> {
        let Some(query) = Query::of(request.args(), request.raw()) else {
            // A node gives redis' own error for the arguments.
            return Some(Forward(request, Plan::Single(Target::AnyPrimary)));
        };
        let inspection = self.shared.hub.inspect(self.id, query.clone());
        let topology = self.shared.topology.clone();
        let deadline = self.shared.live.load().session.retry_deadline();
        self.replies.push(Pending::Task(Task::new(async move {
            TaskOutcome::Reply(inspect::answer(inspection, query, topology, deadline).await)
        })));
        None
    }

    /// Writes the pushes at the front of the inbox (up to the next reply it holds); false when
    /// the output buffer filled first, so pushes may remain.
    pub(super) fn drain_pushes(&mut self) -> bool {
        while self.replies.out.len() < DRAIN_BYTES {
            match self.inbox.pop(false) {
                Some(Item::Push(frame)) => self.replies.out.extend_from_slice(&frame),
                Some(Item::Reply(_)) | None => return true,
            }
        }
        *self.drain_waits_for_output = true;
        false
    }

    /// The front entry waits on the inbox: writes the pushes before its reply, then the reply.
    /// False while the reply has not come (or the client must read what it has first).
    pub(super) fn take_inbox_reply(&mut self) -> bool {
        let out = &mut *self.replies.out;
        while out.len() < DRAIN_BYTES {
            match self.inbox.pop(true) {
                Some(Item::Push(frame)) => out.extend_from_slice(&frame),
                Some(Item::Reply(reply)) => {
                    out.extend_from_slice(&reply);
                    self.replies.pending.pop_front();
                    *self.inbox_waits -= 1;
                    return true;
                }
                None if self.inbox.abandoned() => {
                    // The hub stopped (the proxy is shutting down): answer rather than hang.
                    let error = ReplyError::PubSubHubStopped.to_bytes();
                    out.extend_from_slice(&error);
                    self.replies.pending.pop_front();
                    *self.inbox_waits -= 1;
                    return true;
                }
                None => return false,
            }
        }
        *self.drain_waits_for_output = true;
        false
    }
}
