//! Pub/sub for every client of the proxy: one node subscription per channel, fanned out here.
//!
//! One hub task owns all of the proxy's subscriptions. Sessions tell it what their clients
//! subscribe to ([`Hub::change`]); it holds each channel or pattern once, on a link (`link.rs`: a RESP3
//! connection of its own to a node), and copies each message a node sends into the inbox of every
//! session subscribed to it, encoded in that client's protocol ([`crate::inbox`]).
//!
//! - Channels and patterns (`SUBSCRIBE`, `PSUBSCRIBE`) live on one link to any node: a `PUBLISH`
//!   anywhere in a cluster reaches every node. If that node fails, the hub connects to the next
//!   node of the slot map and subscribes everything again.
//! - Shard channels (`SSUBSCRIBE`) live on a link to the primary owning the channel's slot. When
//!   the slot moves (the node pushes `sunsubscribe`, or answers `MOVED`), its node fails, or the
//!   slot map names another owner, the hub subscribes them again where the slot now is.
//! - Messages published while a channel is being subscribed again (after a failure or a slot
//!   move) are lost, as they are for any Redis subscriber whose connection drops; clients keep
//!   their subscriptions and receive what is published afterwards.
//!
//! The session builds each confirmation itself from its own subscription set (so counts are the
//! client's, as on redis-server) and hands it to the hub with the change. The hub puts it in the
//! session's inbox once the change has taken effect: at once for an unsubscribe; for a subscribe
//! once the node has confirmed every new channel (or after `retry_deadline`, if it can't), so a
//! message published after the client saw its confirmation is never missed. The hub handles one
//! session's calls in order; a change waiting for a node holds back that session's later calls,
//! and a change also waits for the session's own publishes to be answered (the node sends a
//! message for a channel the publisher is subscribed to before the count, as redis-server does
//! for a client publishing to itself).
//!
//! `PUBLISH`, `SPUBLISH` and the `PUBSUB` counts also go through the hub, on the link holding the
//! channel, so their answers can count the proxy's clients rather than the proxy's one link (see
//! [`inspect`]). Must not know about client sockets or the session's reply queue.

mod frames;
mod hub;
pub mod inspect;
mod link;
mod nodes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use frames::{glob_match, write_confirmation, write_push_len};
pub use hub::start;
pub use inspect::{Inspection, Query, Routed};

use crate::inbox::InboxSender;
use crate::protocol::Protocol;

/// The three families of subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `SUBSCRIBE channel`.
    Channel,
    /// `PSUBSCRIBE pattern`.
    Pattern,
    /// `SSUBSCRIBE shardchannel`.
    Shard,
}

impl Kind {
    /// All kinds, in index order.
    pub const ALL: [Kind; 3] = [Kind::Channel, Kind::Pattern, Kind::Shard];

    /// Index for per-kind arrays.
    pub const fn index(self) -> usize {
        match self {
            Kind::Channel => 0,
            Kind::Pattern => 1,
            Kind::Shard => 2,
        }
    }

    /// The confirmation's first element for a subscribe (`subscribe`, `psubscribe`...).
    pub const fn subscribe_name(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }

    /// The confirmation's first element for an unsubscribe.
    pub const fn unsubscribe_name(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }

    /// The command that subscribes (`subscribe`) or unsubscribes on a node.
    const fn command(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (Kind::Channel, true) => b"SUBSCRIBE",
            (Kind::Channel, false) => b"UNSUBSCRIBE",
            (Kind::Pattern, true) => b"PSUBSCRIBE",
            (Kind::Pattern, false) => b"PUNSUBSCRIBE",
            (Kind::Shard, true) => b"SSUBSCRIBE",
            (Kind::Shard, false) => b"SUNSUBSCRIBE",
        }
    }
}

/// A change to one session's subscriptions, with the reply that confirms it.
#[derive(Debug)]
pub struct Change {
    /// The session (client id).
    pub session: u64,
    /// Where the session's messages and this reply go.
    pub inbox: InboxSender,
    /// Channels, patterns and shard channels the session starts receiving.
    pub subscribe: Vec<(Kind, Bytes)>,
    /// Those it stops receiving.
    pub unsubscribe: Vec<(Kind, Bytes)>,
    /// The client's reply (confirmations, or `+RESET`), written when the change is in effect.
    pub reply: Bytes,
    /// The client speaks this protocol from the reply on (`HELLO`, `RESET`).
    pub switch: Option<Protocol>,
}

/// What a session asks the hub.
#[derive(Debug)]
enum Call {
    Change(Change),
    Leave(u64),
    Publish {
        session: u64,
        kind: Kind,
        channel: Bytes,
        payload: Bytes,
        reply: oneshot::Sender<Routed>,
    },
    Inspect {
        session: u64,
        query: Query,
        reply: oneshot::Sender<Inspection>,
    },
}

impl Call {
    fn session(&self) -> u64 {
        match self {
            Call::Change(change) => change.session,
            Call::Leave(session)
            | Call::Publish { session, .. }
            | Call::Inspect { session, .. } => *session,
        }
    }
}

/// The sessions' handle on the hub task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    calls: mpsc::UnboundedSender<Call>,
    holding: Arc<Holding>,
}

/// What the hub holds right now, for sessions to skip it when it has nothing to add.
#[derive(Debug, Default)]
struct Holding {
    /// A link for channels and patterns is up or being connected.
    classic: AtomicBool,
    /// Some shard channel is held.
    shard: AtomicBool,
    /// Channels, patterns and shard channels held (by `Kind::index`), for the metrics.
    held: [AtomicUsize; 3],
    /// Sessions subscribed to anything, for the metrics.
    subscribers: AtomicUsize,
}

/// What the hub holds, as the metrics report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Channels, patterns and shard channels some client is subscribed to.
    pub channels: usize,
    pub patterns: usize,
    pub shard_channels: usize,
    /// Clients subscribed to anything.
    pub subscribers: usize,
}

impl Hub {
    /// Whether the hub holds anything a `PUBLISH` (`Kind::Channel`) or `SPUBLISH`
    /// (`Kind::Shard`) could reach; when not, it may be sent like any other command.
    pub fn holds(&self, kind: Kind) -> bool {
        match kind {
            Kind::Shard => self.holding.shard.load(Ordering::Acquire),
            Kind::Channel | Kind::Pattern => self.holding.classic.load(Ordering::Acquire),
        }
    }

    /// What the hub holds now (updated by the hub after each call it handles).
    pub fn counts(&self) -> Counts {
        let held = |kind: Kind| self.holding.held[kind.index()].load(Ordering::Relaxed);
        Counts {
            channels: held(Kind::Channel),
            patterns: held(Kind::Pattern),
            shard_channels: held(Kind::Shard),
            subscribers: self.holding.subscribers.load(Ordering::Relaxed),
        }
    }

    /// Applies a change to a session's subscriptions; its reply arrives in the session's inbox.
    pub fn change(&self, change: Change) {
        // A stopped hub drops the call, and with it the inbox sender: the session sees that.
        let _ = self.calls.send(Call::Change(change));
    }

    /// Drops everything a session holds (its client is gone).
    pub fn leave(&self, session: u64) {
        let _ = self.calls.send(Call::Leave(session));
    }

    /// `PUBLISH` (`Kind::Channel`) or `SPUBLISH` (`Kind::Shard`) through the link holding the
    /// channel, if there is one.
    pub fn publish(
        &self,
        session: u64,
        kind: Kind,
        channel: Bytes,
        payload: Bytes,
    ) -> oneshot::Receiver<Routed> {
        let (reply, rx) = oneshot::channel();
        let _ = self.calls.send(Call::Publish {
            session,
            kind,
            channel,
            payload,
            reply,
        });
        rx
    }

    /// A `PUBSUB` count or list: sent on the hub's links, with what the proxy itself holds.
    pub fn inspect(&self, session: u64, query: Query) -> oneshot::Receiver<Inspection> {
        let (reply, rx) = oneshot::channel();
        let _ = self.calls.send(Call::Inspect {
            session,
            query,
            reply,
        });
        rx
    }
}

/// Encodes `command channel...` as a RESP array.
fn encode_command(command: &[u8], channels: &[Bytes]) -> Bytes {
    let mut args = Vec::with_capacity(channels.len() + 1);
    args.push(Bytes::copy_from_slice(command));
    args.extend(channels.iter().cloned());
    let mut out = bytes::BytesMut::new();
    crate::protocol::request::encode_multibulk(&mut out, &args);
    out.freeze()
}
