//! SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE: a session's subscriptions live on a
//! subscriber connection of its own to one primary (a PUBLISH anywhere in a cluster reaches every
//! node), and every frame that connection receives is written to the client as it arrives.
//!
//! The first subscribe command waits until everything before it is answered, so confirmations and
//! messages come after earlier replies, as on redis-server. In RESP2, a client with subscriptions
//! may only send (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT and RESET, as on redis-server; its
//! PING is answered by the node, in pub/sub form. RESP3 clients may run any command while
//! subscribed; their messages arrive as push frames between replies. If the subscriber connection
//! fails, the client's connection is closed so it resubscribes rather than silently missing
//! messages.
//!
//! Not yet: sharded pub/sub (SSUBSCRIBE), one shared node subscription per channel for many
//! clients, and an output-buffer limit for slow subscribers.

use bytes::Bytes;

use super::Session;
use super::split::frames;
use crate::backend::subscriber::Subscriber;
use crate::command::CommandSpec;
use crate::protocol::{Protocol, Reply, Request};

impl Session {
    /// Whether this RESP2 client is in subscribed mode, where most commands are refused.
    pub(super) fn subscribed_resp2(&self) -> bool {
        self.subscriptions > 0 && self.protocol == Protocol::Resp2
    }

    /// redis-server's refusal of a command in subscribed mode.
    pub(super) fn refuse_while_subscribed(&mut self, spec: &CommandSpec) {
        self.reply_error(&format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
             are allowed in this context",
            spec.name
        ));
    }

    /// Sends a subscribe-family command (or a subscribed-mode PING) on the session's subscriber
    /// connection, opening it on first use.
    pub(super) fn forward_to_subscriber(&mut self, request: &Request) {
        if self.subscriber.is_none() {
            let map = self.shared.topology.slot_map();
            let shards = map.shards();
            if shards.is_empty() {
                drop(map);
                return self.reply_error("CLUSTERDOWN no cluster node is known yet");
            }
            let node = shards[self.id as usize % shards.len()].primary.clone();
            drop(map);
            let timeout = self.shared.config.backend.connect_timeout();
            self.subscriber = Some(Subscriber::open(node.addr().into(), self.protocol, timeout));
        }
        if let Some(subscriber) = &self.subscriber {
            subscriber.send(request.raw().clone());
        }
    }

    /// Writes one frame from the subscriber connection to the client and tracks how many
    /// subscriptions the node says the client has.
    pub(super) fn subscriber_frame(&mut self, frame: Reply) {
        if let Some(count) = subscription_count(frame.raw(), self.protocol) {
            self.subscriptions = count;
        }
        self.out.extend_from_slice(frame.raw());
        if self.subscriptions == 0 && self.protocol == Protocol::Resp2 {
            // Back to normal mode: nothing more will come on that connection.
            self.subscriber = None;
        }
    }

    /// Forgets all subscriptions (RESET): closing the connection unsubscribes on the node.
    pub(super) fn drop_subscriptions(&mut self) {
        self.subscriber = None;
        self.subscriptions = 0;
    }
}

/// The subscription count in a (un)subscribe confirmation: `[kind, channel, count]`.
fn subscription_count(raw: &Bytes, protocol: Protocol) -> Option<i64> {
    let newline = raw.iter().position(|&b| b == b'\n')?;
    if !matches!(raw.first(), Some(b'*' | b'>')) || raw.get(1..newline)? != b"3\r" {
        return None;
    }
    let elements = frames(&raw[newline + 1..], protocol);
    let [kind, _, count] = elements.as_slice() else {
        return None;
    };
    let kind = kind.split(|&b| b == b'\n').nth(1)?;
    let is_confirmation = [
        &b"subscribe\r"[..],
        b"psubscribe\r",
        b"ssubscribe\r",
        b"unsubscribe\r",
        b"punsubscribe\r",
        b"sunsubscribe\r",
    ]
    .contains(&kind);
    if !is_confirmation {
        return None;
    }
    std::str::from_utf8(count.strip_prefix(b":")?.strip_suffix(b"\r\n")?)
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_carry_the_count_and_messages_do_not() {
        let cases: &[(&[u8], Protocol, Option<i64>)] = &[
            (
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
                Protocol::Resp2,
                Some(1),
            ),
            (
                b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n",
                Protocol::Resp3,
                Some(0),
            ),
            (
                b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
                Protocol::Resp2,
                Some(0),
            ),
            (
                b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n",
                Protocol::Resp2,
                None,
            ),
            (
                b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\na\r\n$1\r\nx\r\n",
                Protocol::Resp2,
                None,
            ),
            (b"+PONG\r\n", Protocol::Resp2, None),
        ];
        for (raw, protocol, want) in cases {
            let raw = Bytes::copy_from_slice(raw);
            assert_eq!(subscription_count(&raw, *protocol), *want, "{raw:?}");
        }
    }
}
