//! `PUBLISH`/`SPUBLISH` counts and `PUBSUB` introspection, answered as one redis-server holding
//! all of the cluster's subscribers would answer.
//!
//! Each node counts only its own clients, and counts the proxy's link as one subscriber however
//! many clients share it. So the hub sends these commands on the link that holds the channel
//! (where the node's answer agrees with what the hub knows it holds), and the answer becomes:
//! what the nodes count, minus the hub's own subscriptions, plus the proxy's clients. The
//! keyspace links' nodes count the hub too, so the questions go on those links as well.
//! - `PUBLISH`: the receivers on the classic link's node, adjusted (channel and matching pattern
//!   subscribers). Receivers connected directly to other nodes are not counted: in a cluster a
//!   node only knows its own (the same number a cluster client would get from that node).
//! - `SPUBLISH`: the receivers on the slot's primary, adjusted.
//! - `PUBSUB CHANNELS`, `NUMSUB`, `NUMPAT`: every node of the map is asked (classic subscribers
//!   may be on replicas); channel lists are merged without duplicates, counts summed. `NUMPAT`
//!   counts a pattern once per node it is subscribed on (nodes can't list their patterns).
//! - `PUBSUB SHARDCHANNELS`, `SHARDNUMSUB`: every primary is asked, and merged alike.
//!
//! Without a live link, a `PUBLISH` goes out like any keyless command and its count is the node's
//! (the proxy's clients would not receive it then). Other proxies in front of the same cluster
//! count as one subscriber each.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::OwnedFrame;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::backend::{NodeResult, Outgoing};
use crate::cluster::Topology;
use crate::error::ReplyError;
use crate::protocol::codec::decode_owned;
use crate::protocol::reply::{write_array_len, write_bulk, write_integer};
use crate::protocol::{Protocol, ReplyKind, View};

/// Where the hub sent a `PUBLISH`.
#[derive(Debug)]
pub enum Routed {
    /// On a hub link; the node's count plus `adjust` is the answer.
    Sent {
        /// The node's reply.
        reply: oneshot::Receiver<NodeResult>,
        /// The proxy's receivers minus the hub's own subscriptions the node counted.
        adjust: i64,
    },
    /// No link holds the channel now: send it the usual way and return the node's count.
    NotRouted,
}

/// Which `PUBSUB` subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// `PUBSUB CHANNELS [pattern]`.
    Channels,
    /// `PUBSUB NUMSUB [channel ...]`.
    NumSub,
    /// `PUBSUB NUMPAT`.
    NumPat,
    /// `PUBSUB SHARDCHANNELS [pattern]`.
    ShardChannels,
    /// `PUBSUB SHARDNUMSUB [shardchannel ...]`.
    ShardNumSub,
}

impl Question {
    /// The question a `PUBSUB` request asks, from its subcommand; `None` for others (HELP).
    pub fn of(args: &[Bytes]) -> Option<Question> {
        let sub = args.get(1)?;
        [
            (&b"channels"[..], Question::Channels),
            (b"numsub", Question::NumSub),
            (b"numpat", Question::NumPat),
            (b"shardchannels", Question::ShardChannels),
            (b"shardnumsub", Question::ShardNumSub),
        ]
        .into_iter()
        .find(|(name, _)| sub.eq_ignore_ascii_case(name))
        .map(|(_, question)| question)
    }

    /// True for the shard-channel questions (asked of primaries and shard links).
    pub fn is_shard(self) -> bool {
        matches!(self, Question::ShardChannels | Question::ShardNumSub)
    }

    /// True when the answer counts per channel.
    fn per_channel(self) -> bool {
        matches!(self, Question::NumSub | Question::ShardNumSub)
    }
}

/// A `PUBSUB` request for the hub.
#[derive(Debug, Clone)]
pub struct Query {
    /// What is asked.
    pub question: Question,
    /// The request as the client sent it (forwarded to nodes).
    pub payload: Bytes,
    /// The channels named by NUMSUB/SHARDNUMSUB.
    pub channels: Vec<Bytes>,
}

impl Query {
    /// The query of a `PUBSUB` request (`args`, sent as `payload`) that the proxy answers;
    /// `None` for other subcommands and wrong arities, which a node answers with redis' own
    /// reply.
    pub fn of(args: &[Bytes], payload: &Bytes) -> Option<Query> {
        let question = Question::of(args)?;
        let well_formed = match question {
            Question::Channels | Question::ShardChannels => args.len() <= 3,
            Question::NumPat => args.len() == 2,
            Question::NumSub | Question::ShardNumSub => true,
        };
        if !well_formed {
            return None;
        }
        let channels = match question.per_channel() {
            true => args[2..].to_vec(),
            false => Vec::new(),
        };
        Some(Query {
            question,
            payload: payload.clone(),
            channels,
        })
    }
}

/// The hub's part of a `PUBSUB` answer.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Replies of the nodes the hub has links to.
    pub answers: Vec<LinkAnswer>,
    /// The proxy's clients: per asked channel (NUMSUB), or `[unique patterns]` (NUMPAT).
    pub local: Vec<i64>,
}

/// One link's reply to a `PUBSUB` request.
#[derive(Debug)]
pub struct LinkAnswer {
    /// The node.
    pub addr: Arc<str>,
    /// Its reply.
    pub reply: oneshot::Receiver<NodeResult>,
    /// What the node counted of the hub itself, in the layout of `Inspection::local`.
    pub held: Vec<i64>,
}

/// The client's reply to a `PUBLISH`/`SPUBLISH` the hub routed, or `None` when it must be sent
/// the usual way (no link had the channel, or the link could not send it, or the slot moved).
pub async fn publish_reply(routed: oneshot::Receiver<Routed>) -> Option<Bytes> {
    let Ok(Routed::Sent { reply, adjust }) = routed.await else {
        return None;
    };
    match reply.await {
        Ok(Ok(reply)) => match reply.kind() {
            ReplyKind::Moved(_)
            | ReplyKind::Ask(_)
            | ReplyKind::TryAgain
            | ReplyKind::ClusterDown => None,
            ReplyKind::Value => match decode_owned(reply.raw()) {
                Ok(OwnedFrame::Integer(n)) => {
                    let mut out = BytesMut::new();
                    write_integer(&mut out, (n + adjust).max(0));
                    Some(out.freeze())
                }
                _ => Some(reply.into_raw()),
            },
            _ => Some(reply.into_raw()),
        },
        Ok(Err(e)) if e.is_retry_safe() => None,
        Ok(Err(e)) => Some(ReplyError::PublishLost(e).to_bytes()),
        Err(_) => Some(ReplyError::PublishLinkStopped.to_bytes()),
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// Answers a `PUBSUB` question: the hub's links' replies, the other nodes' (asked on shared
/// connections, retried until `deadline` while one is unreachable), merged and adjusted.
pub async fn answer(
    inspection: oneshot::Receiver<Inspection>,
    query: Query,
    topology: Arc<Topology>,
    deadline: Duration,
) -> Bytes {
    let Ok(inspection) = inspection.await else {
        return ReplyError::PubSubHubStopped.to_bytes();
    };
    let mut parts: Vec<(Bytes, Vec<i64>)> = Vec::new();
    let mut covered: Vec<Arc<str>> = Vec::new();
    for answer in inspection.answers {
        // A link that failed is asked again like any other node below.
        if let Ok(Ok(reply)) = answer.reply.await {
            if reply.error_text().is_some() {
                return reply.into_raw();
            }
            parts.push((reply.into_raw(), answer.held));
            covered.push(answer.addr);
        }
    }
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let others = loop {
        match ask_others(&query, &topology, &covered).await {
            Ok(replies) => break replies,
            Err(error) if started.elapsed() >= deadline => return error,
            Err(_) => {
                topology.request_refresh();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    for reply in others {
        if matches!(View::of(&reply), Some(View::Error(_))) {
            return reply;
        }
        parts.push((reply, Vec::new()));
    }
    merge(query.question, &parts, &inspection.local)
}

/// Asks every node the question concerns (all nodes, or primaries for shard questions) except
/// `covered`, on the shared connections.
async fn ask_others(
    query: &Query,
    topology: &Topology,
    covered: &[Arc<str>],
) -> Result<Vec<Bytes>, Bytes> {
    let nodes: Vec<_> = {
        let map = topology.slot_map();
        if map.shards().is_empty() {
            return Err(ReplyError::NoNodeKnown.to_bytes());
        }
        let addrs: Vec<&str> = if query.question.is_shard() {
            map.shards().iter().map(|s| s.primary.addr()).collect()
        } else {
            map.node_addrs()
        };
        let pool = topology.pool();
        addrs
            .into_iter()
            .filter(|addr| !covered.iter().any(|c| &**c == *addr))
            .map(|addr| pool.node(addr))
            .collect()
    };
    let pending: Vec<_> = nodes
        .iter()
        .map(|node| {
            node.lane(Protocol::Resp2, false, 0)
                .send(Outgoing::new(query.payload.clone()))
        })
        .collect();
    let mut replies = Vec::with_capacity(pending.len());
    for (node, rx) in nodes.iter().zip(pending) {
        match rx.await {
            Ok(Ok(reply)) => replies.push(reply.into_raw()),
            Ok(Err(e)) => return Err(ReplyError::NodeUnreachable(e).to_bytes()),
            Err(_) => {
                return Err(ReplyError::NodeStopped(node.addr().to_string()).to_bytes());
            }
        }
    }
    Ok(replies)
}

/// Merges the nodes' replies (`held`: what a reply counted of the hub itself) with the proxy's
/// own clients (`local`).
fn merge(question: Question, parts: &[(Bytes, Vec<i64>)], local: &[i64]) -> Bytes {
    let frames: Result<Vec<OwnedFrame>, _> =
        parts.iter().map(|(raw, _)| decode_owned(raw)).collect();
    let Ok(frames) = frames else {
        return ReplyError::PubSubReply.to_bytes();
    };
    let mut out = BytesMut::new();
    match question {
        Question::Channels | Question::ShardChannels => {
            let mut names = BTreeSet::new();
            for frame in frames {
                if let OwnedFrame::Array(items) = frame {
                    for item in items {
                        if let OwnedFrame::BulkString(name) = item {
                            names.insert(name);
                        }
                    }
                }
            }
            write_array_len(&mut out, names.len());
            for name in names {
                write_bulk(&mut out, &name);
            }
        }
        Question::NumPat => {
            let mut total = local.first().copied().unwrap_or(0);
            for (frame, (_, held)) in frames.iter().zip(parts) {
                if let OwnedFrame::Integer(n) = frame {
                    total += n - held.first().copied().unwrap_or(0);
                }
            }
            write_integer(&mut out, total.max(0));
        }
        Question::NumSub | Question::ShardNumSub => {
            debug_assert!(question.per_channel());
            let mut names: Vec<Vec<u8>> = Vec::new();
            let mut counts: Vec<i64> = local.to_vec();
            for (frame, (_, held)) in frames.iter().zip(parts) {
                let OwnedFrame::Array(items) = frame else {
                    continue;
                };
                for (i, pair) in items.chunks(2).enumerate() {
                    if let [OwnedFrame::BulkString(name), OwnedFrame::Integer(n)] = pair {
                        if names.len() <= i {
                            names.push(name.clone());
                        }
                        if counts.len() <= i {
                            counts.resize(i + 1, 0);
                        }
                        counts[i] += n - held.get(i).copied().unwrap_or(0);
                    }
                }
            }
            write_array_len(&mut out, names.len() * 2);
            for (name, count) in names.iter().zip(counts) {
                write_bulk(&mut out, name);
                write_integer(&mut out, count.max(0));
            }
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_proxy_answers_well_formed_counting_questions_and_leaves_the_rest_to_a_node() {
        let args = |words: &str| -> Vec<Bytes> {
            words
                .split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        let query = |words: &str| Query::of(&args(words), &Bytes::from_static(b"raw"));
        let numsub = query("PUBSUB numsub a b").expect("NUMSUB");
        assert!(matches!(numsub.question, Question::NumSub));
        assert_eq!(numsub.channels, args("a b"));
        assert_eq!(&numsub.payload[..], b"raw");
        let channels = query("PUBSUB CHANNELS news.*").expect("CHANNELS");
        assert!(channels.channels.is_empty());
        assert!(query("PUBSUB SHARDNUMSUB").is_some());
        assert!(query("PUBSUB CHANNELS a b").is_none());
        assert!(query("PUBSUB NUMPAT x").is_none());
        assert!(query("PUBSUB HELP").is_none());
    }

    use super::*;

    fn part(raw: &'static [u8], held: &[i64]) -> (Bytes, Vec<i64>) {
        (Bytes::from_static(raw), held.to_vec())
    }

    #[test]
    fn channel_lists_are_merged_without_duplicates() {
        let parts = [
            part(b"*2\r\n$1\r\nb\r\n$1\r\na\r\n", &[]),
            part(b"*1\r\n$1\r\na\r\n", &[]),
            part(b"*0\r\n", &[]),
        ];
        assert_eq!(
            &merge(Question::Channels, &parts, &[])[..],
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
    }

    #[test]
    fn numsub_sums_nodes_and_swaps_the_hub_for_its_clients() {
        // The hub's node counts the hub once for `a` (held 1); the proxy has 3 clients on `a`.
        let parts = [
            part(b"*4\r\n$1\r\na\r\n:2\r\n$1\r\nb\r\n:0\r\n", &[1, 0]),
            part(b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:4\r\n", &[]),
        ];
        assert_eq!(
            &merge(Question::NumSub, &parts, &[3, 0])[..],
            b"*4\r\n$1\r\na\r\n:5\r\n$1\r\nb\r\n:4\r\n"
        );
        assert_eq!(
            &merge(Question::NumSub, &[part(b"*0\r\n", &[])], &[])[..],
            b"*0\r\n"
        );
    }

    #[test]
    fn numpat_sums_nodes_and_swaps_the_hub_for_its_clients() {
        let parts = [part(b":3\r\n", &[2]), part(b":1\r\n", &[])];
        assert_eq!(&merge(Question::NumPat, &parts, &[2])[..], b":4\r\n");
    }

    #[test]
    fn questions_come_from_the_subcommand() {
        let args = |sub: &'static str| vec![Bytes::from_static(b"PUBSUB"), Bytes::from(sub)];
        assert_eq!(Question::of(&args("NumSub")), Some(Question::NumSub));
        assert_eq!(
            Question::of(&args("shardchannels")),
            Some(Question::ShardChannels)
        );
        assert_eq!(Question::of(&args("help")), None);
    }
}
