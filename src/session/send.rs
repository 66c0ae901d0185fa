//! Sending one request: the node (the read policy and node health, with `pick.rs`; a request
//! for a primary that fails its health checks waits), the connection (the session's lane of the
//! node's shared ones, or its dedicated one), and the record of what was sent (`InFlight`).
//! What a settled reply says to do next (a redirect, a script reload) is sent here too
//! (`follow`).
//!
//! [`Sender`] borrows only what sending needs (the session's dedicated connections, the record
//! of its writes, its read policy, its reply budget); it knows nothing of the reply queue or
//! of the order requests go out in (`settle.rs`'s `dispatch`, with `order.rs`, decides when a
//! request is sent).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::attempt::{Attempt, InFlight, Routed, Settled, Step};
use super::pick;
use super::seat::Seat;
use super::settler::Settler;
use super::shared::Shared;
use super::target::Target;
use super::writes::{Written, WrittenSlots};
use crate::backend::{Lane, Mailbox, Node, NodeResult, Outgoing, ReplyBudget, ReplyTo, Ticket};
use crate::cluster::{Shard, Slot, SlotMap};
use crate::config::ReadPolicy;
use crate::error::ReplyError;
use crate::protocol::request::encode_multibulk;
use crate::protocol::{Protocol, Reply, Request};

/// What sending a request needs of the session, borrowed for one step of its pipeline.
pub(super) struct Sender<'a> {
    /// The client id (its lane among the shared connections, its primary for `AnyPrimary`).
    pub(super) id: u64,
    /// The worker the session runs on: it uses that worker's node connections.
    pub(super) worker: usize,
    pub(super) protocol: Protocol,
    pub(super) shared: &'a Shared,
    /// Where the session's reads go.
    pub(super) read_policy: ReadPolicy,
    /// The client has tracking on: its reads go to primaries.
    pub(super) tracking: bool,
    /// Slots the session wrote recently (read-your-writes).
    pub(super) recent_writes: &'a mut WrittenSlots,
    /// Nodes the session has written to, for `WAIT`.
    pub(super) written: &'a mut Written,
    /// Connections of this session alone, per node and protocol.
    pub(super) dedicated: &'a mut Vec<(Arc<Node>, Protocol, Lane)>,
    /// The client's registry entry: the node client ids of its dedicated connections.
    pub(super) seat: &'a mut Option<Seat>,
    /// Reply bytes node connections hand over for this session.
    pub(super) budget: &'a Arc<ReplyBudget>,
    /// Where node connections put this session's replies (made on the first request).
    pub(super) mailbox: &'a mut Option<Arc<Mailbox>>,
}

impl Sender<'_> {
    /// Sends to the node the current map names for `target` (a replica when the read policy
    /// allows it for this request).
    ///
    /// A primary that fails its health checks is not sent anything: the request waits with
    /// backoff, like one for an unreachable node, until the primary answers again or the map
    /// names its replacement (the refresher is already looking for one), or the retry deadline
    /// passes. Sending it would only leave it hanging on a node that may never answer.
    pub(super) fn send(
        &mut self,
        map: &SlotMap,
        request: Request,
        target: Target,
        attempt: Attempt,
    ) -> Step {
        let choice = match target {
            Target::Slot(slot) => map.shard(slot).map(|shard| self.pick(shard, slot, attempt)),
            Target::Replica(slot, i) => map
                .shard(slot)
                .and_then(|shard| shard.replicas.get(i))
                .map(|replica| Ok((replica.clone(), false))),
            Target::AnyPrimary => {
                let shards = map.shards();
                // The session's own primary, or the next one that passes its health checks.
                let first = self.id as usize;
                (!shards.is_empty()).then(|| {
                    let up = (0..shards.len())
                        .map(|i| &shards[(first + i) % shards.len()].primary)
                        .find(|p| p.health().is_up());
                    let node = up.unwrap_or(&shards[first % shards.len()].primary);
                    Ok((node.clone(), false))
                })
            }
        };
        match choice {
            Some(Ok((node, replica_read))) => {
                if !replica_read && !attempt.interrupt && !node.health().is_up() {
                    let error = ReplyError::PrimaryDown(node.addr().to_string());
                    let settled =
                        self.settler()
                            .backoff(request, target, attempt, error.to_bytes());
                    return self.follow(settled);
                }
                if attempt.writes
                    && let Target::Slot(slot) = target
                {
                    self.note_write(slot);
                }
                self.send_routed(Routed {
                    node,
                    replica_read,
                    asking: false,
                    request,
                    target,
                    attempt,
                })
            }
            Some(Err(error)) => Step::Done(Reply::local(error.to_bytes())),
            None => {
                self.shared.topology.request_refresh();
                let error = match target {
                    Target::Slot(slot) => ReplyError::SlotNotServed(slot.0),
                    Target::Replica(slot, _) => ReplyError::ReplicaGone(slot.0),
                    Target::AnyPrimary => ReplyError::NoNodeKnown,
                };
                let settled = self
                    .settler()
                    .backoff(request, target, attempt, error.to_bytes());
                self.follow(settled)
            }
        }
    }

    /// The node of `shard` that serves this request, and whether it is read as a replica.
    fn pick(
        &self,
        shard: &Shard,
        slot: Slot,
        attempt: Attempt,
    ) -> Result<(Arc<Node>, bool), ReplyError> {
        let primary = || Ok((shard.primary.clone(), false));
        if !attempt.read_only
            || self.read_policy == ReadPolicy::Primary
            // A tracking client is told of changes as primaries apply them, which a replica
            // may not have applied yet.
            || self.tracking
        {
            return primary();
        }
        if self.tracks_writes() && self.recent_writes.recent(slot, Instant::now()) {
            return primary();
        }
        match pick::choose(
            self.read_policy,
            self.id as usize,
            &shard.primary,
            &shard.replicas,
        ) {
            pick::Choice::Primary => primary(),
            pick::Choice::Replica(index) => Ok((shard.replicas[index].clone(), true)),
            pick::Choice::NoReplica => Err(no_replica(shard)),
        }
    }

    /// Whether this session records its writes for read-your-writes: it asked for it, and its
    /// reads may go to replicas.
    pub(super) fn tracks_writes(&self) -> bool {
        self.shared.config.session.read_your_writes && self.read_policy != ReadPolicy::Primary
    }

    /// Records a write to `slot` now, when read-your-writes is on.
    pub(super) fn note_write(&mut self, slot: Slot) {
        if self.tracks_writes() {
            self.recent_writes.note(slot, Instant::now());
        }
    }

    pub(super) fn send_to(
        &mut self,
        node: Arc<Node>,
        request: Request,
        target: Target,
        attempt: Attempt,
        asking: bool,
    ) -> Step {
        self.send_routed(Routed {
            node,
            replica_read: false,
            asking,
            request,
            target,
            attempt,
        })
    }

    /// Sends a request where `routed` says (its raw bytes as the client sent them).
    fn send_routed(&mut self, routed: Routed) -> Step {
        let replies = routed.attempt.exec.map_or(1, |exec| exec.replies);
        let payload = routed.request.raw().clone();
        let asking = routed.asking;
        self.send_payload(payload, replies, asking, routed)
    }

    /// What a node's answer means ([`Settler`]).
    fn settler(&self) -> Settler<'_> {
        Settler {
            id: self.id,
            protocol: self.protocol,
            shared: self.shared,
        }
    }

    /// Settles a node's reply to `in_flight` ([`Settler::settle_reply`]) and acts on it: the
    /// step the request is at now. A write that is done counts as written now, for
    /// read-your-writes, since its reply may come long after it was sent.
    pub(super) fn answer(&mut self, in_flight: InFlight, result: NodeResult) -> Step {
        let (target, writes) = (in_flight.sent.target, in_flight.sent.attempt.writes);
        let settled = self.settler().settle_reply(in_flight, result);
        if writes
            && matches!(settled, Settled::Done(_))
            && let Target::Slot(slot) = target
        {
            self.note_write(slot);
        }
        self.follow(settled)
    }

    /// Acts on a settled reply: the final reply or a backoff as it is, a redirect or a script
    /// reload sent now.
    pub(super) fn follow(&mut self, settled: Settled) -> Step {
        match settled {
            Settled::Done(reply) => Step::Done(reply),
            Settled::Backoff(retry) => Step::Backoff(retry),
            Settled::Redirect(again) => self.send_routed(again),
            Settled::Reload(body, again) => self.send_reload(body, again),
        }
    }

    /// Sends `SCRIPT LOAD body` and then the request again, as one job on the connection that
    /// got `NOSCRIPT`, so the script is on the node when the request runs there.
    ///
    /// Requests the session pipelined to the node after the first try have already run by then:
    /// they saw the keys as before the script, as if the client had sent the script after them
    /// (a client that reloads scripts itself on `NOSCRIPT` reorders the same way).
    fn send_reload(&mut self, body: Bytes, mut again: Routed) -> Step {
        let request = &again.request;
        let mut payload = BytesMut::with_capacity(body.len() + request.raw().len() + 64);
        let load = [
            Bytes::from_static(b"SCRIPT"),
            Bytes::from_static(b"LOAD"),
            body,
        ];
        encode_multibulk(&mut payload, &load);
        // ASKING holds for the next command only: it goes right before the request.
        if again.asking {
            encode_multibulk(&mut payload, &[Bytes::from_static(b"ASKING")]);
        }
        payload.extend_from_slice(request.raw());
        again.attempt.reloaded = true;
        let replies = 2 + usize::from(again.asking);
        self.send_payload(payload.freeze(), replies, false, again)
    }

    /// Writes `payload` (`replies` replies; `asking`: the connection sends ASKING first) to the
    /// session's connection to `sent.node`, and records it as in flight.
    fn send_payload(&mut self, payload: Bytes, replies: usize, asking: bool, sent: Routed) -> Step {
        let ticket = self.enqueue(
            &sent.node,
            sent.replica_read,
            sent.attempt,
            payload,
            asking,
            replies,
        );
        Step::Waiting(InFlight { ticket, sent })
    }

    /// Queues `payload` on the session's connection to `node`: its dedicated one, or its lane
    /// of the shared ones.
    pub(super) fn enqueue(
        &mut self,
        node: &Arc<Node>,
        replica_read: bool,
        attempt: Attempt,
        payload: Bytes,
        asking: bool,
        replies: usize,
    ) -> Ticket {
        // Anything not known to be read-only counts as a write (for `ack = replicated`).
        let write = !attempt.read_only;
        if write && !replica_read {
            self.written.note(node, attempt.dedicated);
        }
        let request = Outgoing {
            payload,
            asking,
            replies,
            write,
        };
        let (slot, ticket) = self
            .mailbox
            .get_or_insert_with(|| Mailbox::new(Some(self.budget.clone())))
            .reserve();
        let to = ReplyTo::Slot(slot);
        if attempt.dedicated {
            self.dedicated_lane(node).post(request, to);
        } else {
            node.worker_lane(self.worker, self.protocol, replica_read, self.id as usize)
                .post(request, to);
        }
        ticket
    }

    /// Closes the session's dedicated connection to `node` (a `WATCH` ends, a blocked command
    /// is unblocked).
    pub(super) fn drop_dedicated(&mut self, node: &Arc<Node>) {
        self.dedicated.retain(|(n, _, _)| !Arc::ptr_eq(n, node));
    }

    /// This session's own connection to `node` in its protocol, opened on first use and kept
    /// for the session's later blocking commands.
    pub(super) fn dedicated_lane(&mut self, node: &Arc<Node>) -> Lane {
        if let Some((_, _, lane)) = self
            .dedicated
            .iter()
            .find(|(n, p, _)| Arc::ptr_eq(n, node) && *p == self.protocol)
        {
            return lane.clone();
        }
        let lane = node.dedicated(self.protocol);
        if let Some(seat) = self.seat.as_mut() {
            seat.dedicated_opened(node, &lane, self.protocol);
        }
        self.dedicated
            .push((node.clone(), self.protocol, lane.clone()));
        lane
    }
}

/// `read_policy = "replica"` found no replica of `shard` to read from: the error says why.
fn no_replica(shard: &Shard) -> ReplyError {
    let why: Vec<String> = shard
        .replicas
        .iter()
        .map(|r| {
            let health = r.health().snapshot();
            let state = if !health.up {
                "fails its health checks"
            } else {
                "is not in sync with its primary"
            };
            format!("{} {state}", r.addr())
        })
        .collect();
    let why = if why.is_empty() {
        "the cluster lists none online".to_string()
    } else {
        why.join(", ")
    };
    ReplyError::NoReplicaToRead {
        primary: shard.primary.addr().to_string(),
        why,
    }
}
