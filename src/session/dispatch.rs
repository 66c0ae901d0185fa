//! Routing one request and settling its reply: slot lookup, the node choice (read policy and
//! node health, in `pick.rs`; requests for a primary that fails its health checks wait), MOVED/ASK,
//! retries with backoff.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arc_swap::Guard;
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::debug;

use super::algebra::{self, Algebra};
use super::pick;
use super::split::{self, Merge};
use super::transaction::Exec;
use super::{Pending, Session};
use crate::backend::{Lane, Node, NodeResult};
use crate::cluster::{Shard, SlotMap};
use crate::cluster::{Slot, hash_slot};
use crate::command::keys::key_positions;
use crate::command::route::{Local, Route, admin_route, is_debug_object, route_of};
use crate::command::{CommandSpec, Flags, Resolved};
use crate::config::ReadPolicy;
use crate::error::BackendError;
use crate::protocol::reply::{error_bytes, write_error, write_error_bytes};
use crate::protocol::request::encode_multibulk;
use crate::protocol::{Redirect, Reply, ReplyKind, Request};

/// Where a request goes, re-resolved against the current map on every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The primary owning this slot.
    Slot(Slot),
    /// Any primary (keyless commands every node answers alike).
    AnyPrimary,
    /// Replica number `.1` of the shard owning this slot (admin commands sent to every node).
    Replica(Slot, usize),
}

/// Redirects and retries so far for one request.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Attempt {
    /// Sent on the session's own connection to the node (blocking commands), not a shared one.
    dedicated: bool,
    /// Must not move to another node (WATCH): redirects are answered, not followed.
    pinned: bool,
    /// A read-only command: the read policy may send it to a replica, and it is safe to send
    /// again when its connection died before the reply.
    read_only: bool,
    /// May change the data of its slot: with `read_your_writes`, the session's reads of that
    /// slot go to the primary for a while.
    writes: bool,
    /// A transaction batch (MULTI ... EXEC): how many replies, and whether it was watched.
    exec: Option<ExecShape>,
    redirects: u32,
    retries: u32,
    /// When the first retry began; the retry deadline counts from here.
    retry_started: Option<Instant>,
    /// This send was `SCRIPT LOAD` + the request, after a `NOSCRIPT`: the request's reply is
    /// the last of the job's, and a second `NOSCRIPT` goes to the client.
    reloaded: bool,
}

/// The shape of a transaction batch, for settling its reply.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExecShape {
    replies: usize,
    watched: bool,
}

/// A request sent to a node, waiting for its reply.
pub(super) struct InFlight {
    rx: oneshot::Receiver<NodeResult>,
    node: Arc<Node>,
    /// Sent on the node's `READONLY` connections (a replica read).
    readonly: bool,
    /// Sent after `ASKING`.
    asking: bool,
    request: Request,
    target: Target,
    attempt: Attempt,
}

impl InFlight {
    /// True for a request on a dedicated connection (a blocking command).
    pub(super) fn is_dedicated(&self) -> bool {
        self.attempt.dedicated
    }

    /// The reply if it has arrived, without waiting.
    pub(super) fn try_reply(&mut self) -> Option<NodeResult> {
        match self.rx.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(dropped(&self.node))),
        }
    }
}

/// A request waiting out a backoff before it is sent again.
pub(super) struct Retry {
    pub(super) until: Instant,
    request: Request,
    target: Target,
    attempt: Attempt,
}

/// How a request is sent: to one node, or in parts merged into one reply.
#[derive(Debug, Clone)]
pub(super) enum Plan {
    /// One request to one target.
    Single(Target),
    /// A read-only request: the session's read policy may send it to a replica, and it is
    /// retried when its connection dies before the reply.
    Read(Target),
    /// A blocking command, sent on the session's dedicated connection to the target's node.
    Blocking(Target),
    /// A cross-slot multi-key command, split by slot.
    Split(split::SplitKind),
    /// A cross-slot read-only command computed by the proxy from its keys' values.
    Computed(Algebra),
    /// A whole-keyspace command, sent to every primary.
    FanOut(Merge),
    /// An allowed admin command, sent to every node (primaries and replicas).
    AllNodes(Merge),
    /// Requests built by a command's own module (e.g. SCAN), sent as given and merged.
    Parts(Merge, Vec<(Target, Request)>),
    /// `WATCH` on the session's dedicated connection to the slot's primary.
    Watch(Slot),
    /// A transaction batch (MULTI ... EXEC).
    Exec(Target, Exec),
    /// `WAIT` / `WAITAOF`, on the connections the session's writes went out on.
    Wait(super::wait::Wait),
}

impl Plan {
    /// Whether the request must wait until everything sent before it is answered: it goes out
    /// on another connection (see `dedicated`), or it reads the whole keyspace (DBSIZE, KEYS,
    /// SCAN...) and an earlier write may still be on its way to its node after a redirect.
    fn waits_for_earlier(&self) -> bool {
        self.dedicated() || matches!(self, Plan::FanOut(_) | Plan::AllNodes(_) | Plan::Parts(..))
    }

    /// Whether the request goes out on a connection other than the shared ones, so it waits for
    /// earlier requests to settle, and later ones wait for it, to keep their order on the node.
    fn dedicated(&self) -> bool {
        match self {
            Plan::Blocking(_) | Plan::Watch(_) | Plan::Wait(_) => true,
            Plan::Exec(_, exec) => exec.watched.is_some(),
            Plan::Single(_)
            | Plan::Read(_)
            | Plan::Split(_)
            | Plan::Computed(_)
            | Plan::FanOut(_)
            | Plan::AllNodes(_)
            | Plan::Parts(..) => false,
        }
    }
}

/// Where one request (or one part of a split request) stands.
pub(super) enum Step {
    /// Sent; waiting for the node.
    Waiting(InFlight),
    /// Waiting out a backoff before it is sent again.
    Backoff(Retry),
    /// Settled: this reply is final.
    Done(Reply),
}

/// A slot map borrowed for one decision: the session's pinned one, or the current one.
pub(super) enum MapView<'a> {
    Pinned(&'a Arc<SlotMap>),
    Current(Guard<Arc<SlotMap>>),
}

impl std::ops::Deref for MapView<'_> {
    type Target = SlotMap;

    fn deref(&self) -> &SlotMap {
        match self {
            MapView::Pinned(map) => map,
            MapView::Current(map) => map,
        }
    }
}

/// A request served in several parts.
pub(super) struct Split {
    merge: Merge,
    parts: Vec<Step>,
}

impl Split {
    /// The earliest backoff deadline among the parts, if any part is backing off.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Step::Backoff(retry) => Some(retry.until),
                _ => None,
            })
            .min()
    }

    /// True while some part is still waiting for a node.
    pub(super) fn waiting(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Step::Waiting(_)))
    }
}

/// What the front entry's wait produced.
pub(super) enum FrontEvent {
    /// The reply of a single request.
    Single(NodeResult),
    /// The reply of part `index` of a split request.
    Part(usize, NodeResult),
    /// The outcome of a `Task`.
    Task(super::TaskOutcome),
}

fn dropped(node: &Node) -> BackendError {
    BackendError::Lost {
        node: node.addr().to_string(),
        reason: "connection task stopped".into(),
    }
}

/// Waits for the next reply of the front entry (`Waiting`, or a `Split` with waiting parts).
///
/// # Cancel safety
/// Cancel safe: a reply stays in its channel until this future completes.
pub(super) fn front_reply(
    pending: &mut std::collections::VecDeque<Pending>,
) -> impl Future<Output = FrontEvent> + '_ {
    std::future::poll_fn(move |cx| match pending.front_mut() {
        Some(Pending::Waiting(in_flight)) => in_flight.poll(cx).map(FrontEvent::Single),
        Some(Pending::Split(split)) => {
            for (index, part) in split.parts.iter_mut().enumerate() {
                if let Step::Waiting(in_flight) = part
                    && let Poll::Ready(result) = in_flight.poll(cx)
                {
                    return Poll::Ready(FrontEvent::Part(index, result));
                }
            }
            Poll::Pending
        }
        Some(Pending::Task(task)) => task.as_mut().poll(cx).map(FrontEvent::Task),
        _ => Poll::Pending,
    })
}

impl InFlight {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<NodeResult> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(dropped(&self.node))))
    }
}

pub(super) const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

impl Session {
    /// Handles one decoded request: answer it locally, queue an error, or send it to nodes.
    pub(super) fn handle(&mut self, request: Request) {
        let commands = self.shared.commands.load();
        let spec = match commands.resolve(request.args()) {
            Resolved::Command(spec) => spec,
            Resolved::UnknownCommand => {
                self.tx.flag_error();
                let message = unknown_command(&request);
                return self.reply_with(|out| write_error_bytes(out, &message));
            }
            Resolved::UnknownSubcommand(container) => {
                self.tx.flag_error();
                let mut message = b"ERR unknown subcommand '".to_vec();
                message.extend_from_slice(c_str(&request.args()[1], 128));
                message.extend_from_slice(b"'. Try ");
                message.extend_from_slice(container.name.to_ascii_uppercase().as_bytes());
                message.extend_from_slice(b" HELP.");
                return self.reply_with(|out| write_error_bytes(out, &message));
            }
        };
        if !spec.arity_ok(request.args().len()) {
            self.tx.flag_error();
            return self.reply_error(&format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            ));
        }
        self.shared.scripts.observe(spec.name, request.args());
        if self.tracking_on() {
            self.key_positions.clear();
            let _ = key_positions(spec, request.args(), &mut self.key_positions);
            let keys: Vec<Bytes> = self
                .key_positions
                .iter()
                .map(|&p| request.args()[p].clone())
                .collect();
            self.track_command(spec, &keys);
        }
        let route = match route_of(spec) {
            Route::Unsupported(_) if is_debug_object(spec, request.args()) => {
                let slot = hash_slot(&request.args()[2]);
                return self.dispatch(request, Plan::Single(Target::Slot(slot)));
            }
            Route::Unsupported(reason) => match admin_route(spec) {
                Some(route) if self.shared.config.session.allows_admin(spec.name) => route,
                _ => Route::Unsupported(reason),
            },
            route => route,
        };
        if self.subscribed_resp2()
            && !matches!(
                route,
                Route::Local(Local::Subscribe | Local::Ping | Local::Quit | Local::Reset)
            )
        {
            return self.refuse_while_subscribed(spec);
        }
        if self.tx.queuing()
            && !matches!(
                route,
                Route::Local(
                    Local::Exec
                        | Local::Discard
                        | Local::Multi
                        | Local::Watch
                        | Local::Quit
                        | Local::Reset
                )
            )
        {
            return self.queue(spec, request);
        }
        match route {
            Route::Local(Local::Watch) => self.watch(spec, request),
            Route::Local(Local::Subscribe) => self.subscription(spec, &request),
            Route::Local(Local::Ping) if self.subscribed_resp2() => self.subscribed_ping(&request),
            Route::Local(Local::Publish) => self.publish(spec, request),
            Route::Local(Local::PubSubCount) => self.pubsub_count(request),
            Route::Local(local) => self.local(local, &request),
            Route::AnyNode => self.dispatch(request, Plan::Single(Target::AnyPrimary)),
            Route::ByKeys if spec.flags.contains(Flags::BLOCKING) => {
                match self.slot_of_keys(spec, &request) {
                    Ok(Some(slot)) => self.dispatch(request, Plan::Blocking(Target::Slot(slot))),
                    Ok(None) => self.dispatch(request, Plan::Blocking(Target::AnyPrimary)),
                    Err(CrossSlot) => self.reply_error(CROSSSLOT),
                }
            }
            Route::ByKeys => match self.slot_of_keys(spec, &request) {
                Ok(Some(slot)) if spec.flags.contains(Flags::READONLY) => {
                    self.dispatch(request, Plan::Read(Target::Slot(slot)))
                }
                Ok(Some(slot)) => self.dispatch(request, Plan::Single(Target::Slot(slot))),
                Ok(None) => self.dispatch(request, Plan::Single(Target::AnyPrimary)),
                Err(CrossSlot) => match split::split_merge(spec.name) {
                    // Check the whole before splitting: parts that are each valid must not run
                    // when redis-server would refuse the command (MSET with a key lacking a value).
                    Some(split::SplitKind::KeyValues) if request.args().len().is_multiple_of(2) => {
                        self.reply_error(&format!(
                            "ERR wrong number of arguments for '{}' command",
                            spec.name
                        ))
                    }
                    Some(kind) => self.dispatch(request, Plan::Split(kind)),
                    None => match algebra::computed(spec.name) {
                        Some(op) => self.dispatch(request, Plan::Computed(op)),
                        None => self.reply_error(CROSSSLOT),
                    },
                },
            },
            Route::BySlotArgument => {
                let slot = std::str::from_utf8(&request.args()[2])
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|&s| s < crate::cluster::SLOT_COUNT);
                let target = slot.map_or(Target::AnyPrimary, |s| Target::Slot(Slot(s)));
                self.dispatch(request, Plan::Single(target));
            }
            Route::AllNodes => match split::fan_out_merge(spec.name) {
                Some(merge) => self.dispatch(request, Plan::AllNodes(merge)),
                None => self.reply_error(&format!(
                    "ERR '{}' is not supported by slotproxy yet",
                    spec.full_name_upper()
                )),
            },
            Route::AllPrimaries => match split::fan_out_merge(spec.name) {
                Some(merge) => self.dispatch(request, Plan::FanOut(merge)),
                None => self.reply_error(&format!(
                    "ERR '{}' is not supported by slotproxy yet",
                    spec.full_name_upper()
                )),
            },
            Route::Unsupported(reason) => {
                self.reply_error(&format!("ERR '{}' {reason}", spec.full_name_upper()))
            }
        }
    }

    /// The one slot all of the request's keys hash to; `None` when it has no keys (or key
    /// extraction failed, in which case a node produces redis' own error for the arguments).
    pub(super) fn slot_of_keys(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
    ) -> Result<Option<Slot>, CrossSlot> {
        self.key_positions.clear();
        if key_positions(spec, request.args(), &mut self.key_positions).is_err() {
            return Ok(None);
        }
        let mut slot = None;
        for &position in &self.key_positions {
            let this = hash_slot(&request.args()[position]);
            match slot {
                None => slot = Some(this),
                Some(s) if s != this => return Err(CrossSlot),
                Some(_) => {}
            }
        }
        Ok(slot)
    }

    /// Queues a reply built by `build`, written straight out when nothing is ahead of it.
    pub(super) fn reply_with(&mut self, build: impl FnOnce(&mut BytesMut)) {
        if self.pending.is_empty() {
            build(&mut self.out);
        } else {
            let mut buf = BytesMut::new();
            build(&mut buf);
            self.pending.push_back(Pending::Done(buf.freeze()));
        }
    }

    /// Queues an error reply (`text` starts with the error code, e.g. `ERR ...`).
    pub(super) fn reply_error(&mut self, text: &str) {
        self.reply_with(|out| write_error(out, text));
    }

    /// Sends a new request, unless it must wait for older ones to settle: the map changed while
    /// they were in flight, or one of them went out on a dedicated connection (its order relative
    /// to the shared connections is only known once it has been answered).
    pub(super) fn dispatch(&mut self, request: Request, plan: Plan) {
        let map = Guard::into_inner(self.shared.topology.slot_map());
        let generation = map.generation();
        // Some requests must not overtake anything sent before them: `RPUSH l x` then `BLPOP l 0`
        // must find `x`, and a `DBSIZE` must count a key whose SET is being redirected.
        let wait_for_all = plan.waits_for_earlier();
        if generation != self.dispatch_generation || self.barrier || wait_for_all {
            let unsettled = self
                .pending
                .iter()
                .any(|p| !matches!(p, Pending::Done(_) | Pending::Close(_)));
            if unsettled {
                self.pending.push_back(Pending::Deferred(request, plan));
                // Whatever comes next queues behind this one.
                self.barrier = true;
                return;
            }
            self.dispatch_generation = generation;
            self.barrier = false;
        }
        self.barrier = plan.dedicated();
        self.pinned_map = Some(map);
        let entry = self.start(request, plan);
        self.pinned_map = None;
        self.pending.push_back(entry);
    }

    /// `start` under the current map, pinned while it sends.
    pub(super) fn start_pinned(&mut self, request: Request, plan: Plan) -> Pending {
        self.pinned_map = Some(Guard::into_inner(self.shared.topology.slot_map()));
        let entry = self.start(request, plan);
        self.pinned_map = None;
        entry
    }

    /// The slot map to send under: while `dispatch` sends a request, the very map whose
    /// generation it checked, so a map published meanwhile (by the refresher, on another
    /// thread) can't send the request to a slot's new owner while the session's earlier
    /// requests are still on their way to the old one (a read would overtake the client's
    /// own write, which the old owner will only redirect later). Otherwise the current map.
    pub(super) fn map(&self) -> MapView<'_> {
        match &self.pinned_map {
            Some(map) => MapView::Pinned(map),
            None => MapView::Current(self.shared.topology.slot_map()),
        }
    }

    /// Sends a request (or its parts) under the current map.
    pub(super) fn start(&mut self, request: Request, plan: Plan) -> Pending {
        let (merge, parts) = match plan {
            Plan::Watch(slot) => {
                let attempt = Attempt {
                    dedicated: true,
                    pinned: true,
                    ..Attempt::default()
                };
                let node = self.map().primary(slot).cloned();
                return match node {
                    Some(node) => {
                        self.watching(node.clone(), slot);
                        into_pending(self.send_to(
                            node,
                            request,
                            Target::Slot(slot),
                            attempt,
                            false,
                        ))
                    }
                    None => Pending::Done(error_bytes(&format!(
                        "CLUSTERDOWN Hash slot {slot} not served"
                    ))),
                };
            }
            Plan::Exec(target, exec) => {
                let attempt = Attempt {
                    dedicated: exec.watched.is_some(),
                    pinned: exec.watched.is_some(),
                    writes: true,
                    exec: Some(ExecShape {
                        replies: exec.replies,
                        watched: exec.watched.is_some(),
                    }),
                    ..Attempt::default()
                };
                return match exec.watched {
                    Some((node, slot)) => {
                        let owner = self.map().primary(slot).cloned();
                        if owner.is_some_and(|owner| Arc::ptr_eq(&owner, &node)) {
                            into_pending(self.send_to(node, request, target, attempt, false))
                        } else {
                            // The watched slot moved: the transaction can't run where WATCH was.
                            Pending::Done(null_reply(self.protocol))
                        }
                    }
                    None => into_pending(self.send(request, target, attempt)),
                };
            }
            Plan::Wait(wait) => return self.start_wait(request, wait),
            Plan::Single(target) => {
                let attempt = Attempt {
                    writes: true,
                    ..Attempt::default()
                };
                return into_pending(self.send(request, target, attempt));
            }
            Plan::Read(target) => {
                let attempt = Attempt {
                    read_only: true,
                    ..Attempt::default()
                };
                return into_pending(self.send(request, target, attempt));
            }
            Plan::Blocking(target) => {
                let attempt = Attempt {
                    dedicated: true,
                    writes: true,
                    ..Attempt::default()
                };
                return into_pending(self.send(request, target, attempt));
            }
            Plan::Split(kind) => {
                let (merge, parts) = split::plan_split(kind, &request);
                let parts = parts
                    .into_iter()
                    .map(|(s, r)| (Target::Slot(s), r))
                    .collect();
                (merge, parts)
            }
            Plan::Computed(op) => {
                let (computation, reads) = match algebra::plan(op, &request) {
                    Ok(planned) => planned,
                    Err(error) => return Pending::Done(error),
                };
                // Reads: the read policy may send them to replicas, and they can be resent.
                let attempt = Attempt {
                    read_only: true,
                    ..Attempt::default()
                };
                let parts = reads
                    .into_iter()
                    .map(|(slot, read)| self.send(read, Target::Slot(slot), attempt))
                    .collect();
                let merge = Merge::Computed(Box::new(computation));
                return Pending::Split(Box::new(Split { merge, parts }));
            }
            Plan::FanOut(merge) => {
                if self.tracks_writes() && self.is_write(&request) {
                    self.recent_writes
                        .borrow_mut()
                        .note_everything(Instant::now());
                }
                let slots = split::shard_slots(&self.map());
                if slots.is_empty() {
                    self.shared.topology.request_refresh();
                    return Pending::Done(error_bytes("CLUSTERDOWN no cluster node is known yet"));
                }
                let parts: Vec<(Target, Request)> = slots
                    .into_iter()
                    .map(|slot| (Target::Slot(slot), request.clone()))
                    .collect();
                (merge, parts)
            }
            Plan::AllNodes(merge) => {
                let map = self.map();
                let parts: Vec<(Target, Request)> = map
                    .layout()
                    .iter()
                    .filter_map(|shard| Some((Slot(shard.ranges.first()?.0), shard.replicas.len())))
                    .flat_map(|(slot, replicas)| {
                        std::iter::once(Target::Slot(slot))
                            .chain((0..replicas).map(move |i| Target::Replica(slot, i)))
                    })
                    .map(|target| (target, request.clone()))
                    .collect();
                drop(map);
                if parts.is_empty() {
                    self.shared.topology.request_refresh();
                    return Pending::Done(error_bytes("CLUSTERDOWN no cluster node is known yet"));
                }
                (merge, parts)
            }
            Plan::Parts(merge, parts) => (merge, parts),
        };
        // Parts of MSET, DEL... write their slots; those of MGET, DBSIZE... don't.
        let attempt = Attempt {
            writes: self.tracks_writes() && self.is_write(&request),
            ..Attempt::default()
        };
        let parts = parts
            .into_iter()
            .map(|(target, part)| self.send(part, target, attempt))
            .collect();
        Pending::Split(Box::new(Split { merge, parts }))
    }

    /// Sends every `Deferred` entry at the front, in order, under the current map.
    pub(super) fn send_deferred(&mut self) {
        let map = Guard::into_inner(self.shared.topology.slot_map());
        self.dispatch_generation = map.generation();
        self.pinned_map = Some(map);
        self.barrier = false;
        let mut ready = Vec::new();
        while !self.barrier
            && let Some(Pending::Deferred(_, plan)) = self.pending.front()
        {
            if !ready.is_empty() && plan.waits_for_earlier() {
                // It must wait for the ones just sent too; the rest stays held behind it.
                self.barrier = true;
                break;
            }
            if let Some(Pending::Deferred(request, plan)) = self.pending.pop_front() {
                self.barrier = plan.dedicated();
                ready.push(self.start(request, plan));
            }
        }
        self.pinned_map = None;
        for entry in ready.into_iter().rev() {
            self.pending.push_front(entry);
        }
    }

    /// Resends the front `Backoff` entry under the current map.
    pub(super) fn retry_front(&mut self) {
        if let Some(Pending::Backoff(retry)) = self.pending.pop_front() {
            let step = self.send(retry.request, retry.target, retry.attempt);
            self.pending.push_front(into_pending(step));
        }
    }

    /// Moves the front `Split` forward without waiting: collects arrived replies, resends parts
    /// whose backoff is over, and replaces it with the merged reply once every part is done.
    /// Returns false while some part is still outstanding.
    pub(super) fn advance_split(&mut self) -> bool {
        let Some(Pending::Split(mut split)) = self.pending.pop_front() else {
            return true;
        };
        let now = Instant::now();
        for part in split.parts.iter_mut() {
            loop {
                let next = match std::mem::replace(part, Step::Done(placeholder())) {
                    Step::Waiting(mut in_flight) => match in_flight.try_reply() {
                        Some(result) => self.settle(in_flight, result),
                        None => {
                            *part = Step::Waiting(in_flight);
                            break;
                        }
                    },
                    Step::Backoff(retry) if retry.until <= now => {
                        self.send(retry.request, retry.target, retry.attempt)
                    }
                    other => {
                        *part = other;
                        break;
                    }
                };
                *part = next;
            }
        }
        let done = split.parts.iter().all(|p| matches!(p, Step::Done(_)));
        if done {
            let replies: Vec<Reply> = split
                .parts
                .into_iter()
                .filter_map(|p| match p {
                    Step::Done(reply) => Some(reply),
                    _ => None,
                })
                .collect();
            self.pending.push_front(Pending::Done(split::merge(
                &split.merge,
                &replies,
                self.protocol,
            )));
        } else {
            self.pending.push_front(Pending::Split(split));
        }
        done
    }

    /// Settles one reply of the front entry (a single request or one part of a split).
    pub(super) fn settle_front(&mut self, event: FrontEvent) {
        match (event, self.pending.pop_front()) {
            (FrontEvent::Single(result), Some(Pending::Waiting(in_flight))) => {
                let step = self.settle(in_flight, result);
                self.pending.push_front(into_pending(step));
            }
            (FrontEvent::Task(outcome), Some(task @ Pending::Task(_))) => {
                self.pending.push_front(task);
                self.settle_task(outcome);
            }
            (FrontEvent::Part(index, result), Some(Pending::Split(mut split))) => {
                if let Step::Waiting(in_flight) =
                    std::mem::replace(&mut split.parts[index], Step::Done(placeholder()))
                {
                    split.parts[index] = self.settle(in_flight, result);
                }
                self.pending.push_front(Pending::Split(split));
            }
            (_, Some(other)) => self.pending.push_front(other),
            (_, None) => {}
        }
    }

    /// Sends to the node the current map names for `target` (a replica when the read policy
    /// allows it for this request).
    ///
    /// A primary that fails its health checks is not sent anything: the request waits with
    /// backoff, like one for an unreachable node, until the primary answers again or the map
    /// names its replacement (the refresher is already looking for one), or the retry deadline
    /// passes. Sending it would only leave it hanging on a node that may never answer.
    fn send(&self, request: Request, target: Target, attempt: Attempt) -> Step {
        let map = self.map();
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
            Some(Ok((node, readonly))) => {
                if !readonly && !node.health().is_up() {
                    let error = format!(
                        "CLUSTERDOWN primary {} fails slotproxy's health checks and no replica has \
                         taken over yet",
                        node.addr()
                    );
                    return self.backoff(request, target, attempt, error_bytes(&error));
                }
                if attempt.writes
                    && let Target::Slot(slot) = target
                {
                    self.note_write(slot);
                }
                self.send_via(node, readonly, request, target, attempt, false)
            }
            Some(Err(error)) => Step::Done(Reply::local(error_bytes(&error))),
            None => {
                self.shared.topology.request_refresh();
                let error = match target {
                    Target::Slot(slot) => format!("CLUSTERDOWN Hash slot {slot} not served"),
                    Target::Replica(slot, _) => {
                        format!("CLUSTERDOWN a replica of the shard of slot {slot} is gone")
                    }
                    Target::AnyPrimary => "CLUSTERDOWN no cluster node is known yet".to_string(),
                };
                self.backoff(request, target, attempt, error_bytes(&error))
            }
        }
    }

    /// The node of `shard` that serves this request, and whether it is read as a replica.
    fn pick(
        &self,
        shard: &Shard,
        slot: Slot,
        attempt: Attempt,
    ) -> Result<(Arc<Node>, bool), String> {
        let primary = || Ok((shard.primary.clone(), false));
        if !attempt.read_only
            || self.read_policy == ReadPolicy::Primary
            || self.tracking_reads_primary()
        {
            return primary();
        }
        if self.tracks_writes() && self.recent_writes.borrow().recent(slot, Instant::now()) {
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
    fn tracks_writes(&self) -> bool {
        self.shared.config.session.read_your_writes && self.read_policy != ReadPolicy::Primary
    }

    /// Records a write to `slot` now, when read-your-writes is on.
    fn note_write(&self, slot: Slot) {
        if self.tracks_writes() {
            self.recent_writes.borrow_mut().note(slot, Instant::now());
        }
    }

    /// Whether the command table flags `request` as a write.
    fn is_write(&self, request: &Request) -> bool {
        match self.shared.commands.load().resolve(request.args()) {
            Resolved::Command(spec) => spec.flags.contains(Flags::WRITE),
            _ => false,
        }
    }

    fn send_to(
        &self,
        node: Arc<Node>,
        request: Request,
        target: Target,
        attempt: Attempt,
        asking: bool,
    ) -> Step {
        self.send_via(node, false, request, target, attempt, asking)
    }

    fn send_via(
        &self,
        node: Arc<Node>,
        readonly: bool,
        request: Request,
        target: Target,
        attempt: Attempt,
        asking: bool,
    ) -> Step {
        let replies = attempt.exec.map_or(1, |exec| exec.replies);
        let payload = request.raw().clone();
        let rx = self.enqueue(&node, readonly, attempt, payload, asking, replies);
        in_flight(rx, node, readonly, asking, request, target, attempt)
    }

    /// Sends `SCRIPT LOAD body` and then the request again, as one job on the connection that
    /// got `NOSCRIPT`, so the script is on the node when the request runs there.
    ///
    /// Requests the session pipelined to the node after the first try have already run by then:
    /// they saw the keys as before the script, as if the client had sent the script after them
    /// (a client that reloads scripts itself on `NOSCRIPT` reorders the same way).
    #[allow(clippy::too_many_arguments)]
    fn send_reload(
        &self,
        node: Arc<Node>,
        readonly: bool,
        asking: bool,
        body: Bytes,
        request: Request,
        target: Target,
        mut attempt: Attempt,
    ) -> Step {
        let mut payload = BytesMut::with_capacity(body.len() + request.raw().len() + 64);
        let load = [
            Bytes::from_static(b"SCRIPT"),
            Bytes::from_static(b"LOAD"),
            body,
        ];
        encode_multibulk(&mut payload, &load);
        // ASKING holds for the next command only: it goes right before the request.
        if asking {
            encode_multibulk(&mut payload, &[Bytes::from_static(b"ASKING")]);
        }
        payload.extend_from_slice(request.raw());
        attempt.reloaded = true;
        let replies = 2 + usize::from(asking);
        let rx = self.enqueue(&node, readonly, attempt, payload.freeze(), false, replies);
        in_flight(rx, node, readonly, asking, request, target, attempt)
    }

    /// Queues `payload` on the session's connection to `node`: its dedicated one, or its lane
    /// of the shared ones.
    fn enqueue(
        &self,
        node: &Arc<Node>,
        readonly: bool,
        attempt: Attempt,
        payload: Bytes,
        asking: bool,
        replies: usize,
    ) -> oneshot::Receiver<NodeResult> {
        // Anything not known to be read-only counts as a write (for `ack = replicated`).
        let write = !attempt.read_only;
        if write && !readonly {
            self.written.borrow_mut().note(node, attempt.dedicated);
        }
        if attempt.dedicated {
            self.dedicated_lane(node)
                .send(payload, asking, replies, write)
        } else {
            node.send(
                self.protocol,
                readonly,
                self.id as usize,
                payload,
                asking,
                replies,
                write,
            )
        }
    }

    /// The cached body of the script an `EVALSHA`/`EVALSHA_RO` names, to load it on a node
    /// that answered `NOSCRIPT`.
    fn script_body(&self, request: &Request) -> Option<Bytes> {
        let name = request.name();
        if !(name.eq_ignore_ascii_case(b"evalsha") || name.eq_ignore_ascii_case(b"evalsha_ro")) {
            return None;
        }
        self.shared.scripts.body(request.args().get(1)?)
    }

    /// Schedules a retry, or gives up with `last_error` once the retry deadline has passed.
    fn backoff(
        &self,
        request: Request,
        target: Target,
        mut attempt: Attempt,
        last_error: Bytes,
    ) -> Step {
        let now = Instant::now();
        let started = *attempt.retry_started.get_or_insert(now);
        if now.duration_since(started) >= self.shared.config.session.retry_deadline() {
            return Step::Done(Reply::local(last_error));
        }
        let delay = (FIRST_BACKOFF * 2u32.saturating_pow(attempt.retries.min(8))).min(MAX_BACKOFF);
        attempt.retries += 1;
        Step::Backoff(Retry {
            until: now + delay,
            request,
            target,
            attempt,
        })
    }

    /// Settles a reply (see `settle_reply`); a write that is done counts as written now, for
    /// read-your-writes, since its reply may come long after it was sent.
    fn settle(&self, in_flight: InFlight, result: NodeResult) -> Step {
        let (target, writes) = (in_flight.target, in_flight.attempt.writes);
        let step = self.settle_reply(in_flight, result);
        if writes
            && matches!(step, Step::Done(_))
            && let Target::Slot(slot) = target
        {
            self.note_write(slot);
        }
        step
    }

    /// Turns a node's answer into a final reply, a redirect, or a retry.
    fn settle_reply(&self, in_flight: InFlight, result: NodeResult) -> Step {
        let InFlight {
            node,
            readonly,
            asking,
            request,
            target,
            mut attempt,
            ..
        } = in_flight;
        let max_redirects = self.shared.config.session.max_redirects;
        // A reload's job also answered SCRIPT LOAD (and ASKING): the request's reply is last.
        let reloaded = std::mem::take(&mut attempt.reloaded);
        let result = match result {
            Ok(reply) if reloaded => Ok(last_frame(reply)),
            other => other,
        };
        match result {
            Ok(reply) if attempt.exec.is_some() => {
                self.settle_exec(reply, request, target, attempt)
            }
            Ok(reply)
                if attempt.pinned
                    && matches!(reply.kind(), ReplyKind::Moved(_) | ReplyKind::Ask(_)) =>
            {
                self.shared.topology.request_refresh();
                Step::Done(Reply::local(error_bytes(
                    "TRYAGAIN the watched slot is moving to another node; retry the transaction",
                )))
            }
            Ok(reply) => match reply.kind() {
                ReplyKind::Moved(redirect) | ReplyKind::Ask(redirect)
                    if attempt.redirects >= max_redirects =>
                {
                    debug!(client = self.id, ?redirect, "too many redirects");
                    Step::Done(Reply::local(error_bytes(&format!(
                        "TRYAGAIN slotproxy gave up after {max_redirects} redirections (last: {})",
                        String::from_utf8_lossy(reply.error_text().unwrap_or_default())
                    ))))
                }
                ReplyKind::Moved(redirect) => {
                    // The map is stale: refresh it, and serve this request from the named node now.
                    self.shared.topology.request_refresh();
                    attempt.redirects += 1;
                    let to = self.redirect_node(&node, redirect);
                    self.send_to(to, request, target, attempt, false)
                }
                ReplyKind::Ask(redirect) => {
                    // A one-off: the slot is migrating. The map stays as it is.
                    attempt.redirects += 1;
                    let to = self.redirect_node(&node, redirect);
                    self.send_to(to, request, target, attempt, true)
                }
                ReplyKind::TryAgain | ReplyKind::ClusterDown => {
                    self.backoff(request, target, attempt, reply.into_raw())
                }
                // The node lost the script (restart, failover, resharding): load it there and
                // run the request again, once. Unknown scripts get NOSCRIPT, as from redis.
                ReplyKind::NoScript if !reloaded => match self.script_body(&request) {
                    Some(body) => {
                        debug!(
                            client = self.id,
                            node = node.addr(),
                            "NOSCRIPT; loading the script"
                        );
                        self.send_reload(node, readonly, asking, body, request, target, attempt)
                    }
                    None => Step::Done(reply),
                },
                ReplyKind::Value | ReplyKind::Error | ReplyKind::Push | ReplyKind::NoScript => {
                    Step::Done(reply)
                }
            },
            Err(e) if e.is_retry_safe() => {
                self.shared.topology.request_refresh();
                let error = error_bytes(&format!("CLUSTERDOWN {e}"));
                self.backoff(request, target, attempt, error)
            }
            Err(e) if attempt.read_only => {
                // Written but unanswered: a read can simply be asked again.
                self.shared.topology.request_refresh();
                let error = error_bytes(&format!("CLUSTERDOWN {e}"));
                self.backoff(request, target, attempt, error)
            }
            Err(e) => {
                self.shared.topology.request_refresh();
                Step::Done(Reply::local(error_bytes(&format!(
                    "ERR slotproxy: {e}; the command may or may not have been applied"
                ))))
            }
        }
    }

    /// Settles a transaction batch: the client gets EXEC's reply. If a queued command was
    /// redirected (the slot moved), the node aborted the transaction without running any of
    /// it: retried under the new map, or, when it was watched, answered nil like a failed WATCH.
    fn settle_exec(
        &self,
        reply: Reply,
        request: Request,
        target: Target,
        attempt: Attempt,
    ) -> Step {
        let frames = split::frames(reply.raw());
        let moved = frames.iter().rev().skip(1).any(|frame| {
            matches!(
                Reply::local(Bytes::copy_from_slice(frame)).kind(),
                ReplyKind::Moved(_)
                    | ReplyKind::Ask(_)
                    | ReplyKind::TryAgain
                    | ReplyKind::ClusterDown
            )
        });
        let Some(&last) = frames.last() else {
            return Step::Done(reply);
        };
        let last = Bytes::copy_from_slice(last);
        if !moved {
            return Step::Done(Reply::local(last));
        }
        self.shared.topology.request_refresh();
        if attempt.exec.is_some_and(|e| e.watched) {
            return Step::Done(Reply::local(null_reply(self.protocol)));
        }
        self.backoff(request, target, attempt, last)
    }

    /// The `Waiting` entry of a reply some task of the session's will send on `rx` (WAIT): it
    /// holds later requests back, like a blocking command, and is dropped with the client.
    pub(super) fn waiting_on(
        &self,
        rx: oneshot::Receiver<NodeResult>,
        node: Arc<Node>,
        request: Request,
    ) -> Pending {
        let attempt = Attempt {
            dedicated: true,
            pinned: true,
            ..Attempt::default()
        };
        into_pending(in_flight(
            rx,
            node,
            false,
            false,
            request,
            Target::AnyPrimary,
            attempt,
        ))
    }

    /// Forgets (and so closes) this session's dedicated connection to `node`.
    pub(super) fn drop_dedicated(&self, node: &Arc<Node>) {
        self.dedicated
            .borrow_mut()
            .retain(|(n, _, _)| !Arc::ptr_eq(n, node));
    }

    /// This session's own connection to `node` in its protocol, opened on first use and kept
    /// for the session's later blocking commands.
    pub(super) fn dedicated_lane(&self, node: &Arc<Node>) -> Lane {
        let mut lanes = self.dedicated.borrow_mut();
        if let Some((_, _, lane)) = lanes
            .iter()
            .find(|(n, p, _)| Arc::ptr_eq(n, node) && *p == self.protocol)
        {
            return lane.clone();
        }
        let lane = node.dedicated(self.protocol);
        lanes.push((node.clone(), self.protocol, lane.clone()));
        lane
    }

    /// The node a redirect names; `:port` (a node that doesn't know its IP) takes the host of
    /// the node that sent it.
    fn redirect_node(&self, from: &Node, redirect: &Redirect) -> Arc<Node> {
        let pool = self.shared.topology.pool();
        match redirect.addr.strip_prefix(':') {
            Some(port) => {
                let host = from.addr().rsplit_once(':').map_or(from.addr(), |(h, _)| h);
                pool.node(&format!("{host}:{port}"))
            }
            None => pool.node(&redirect.addr),
        }
    }
}

/// `read_policy = "replica"` found no replica of `shard` to read from: the error says why.
fn no_replica(shard: &Shard) -> String {
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
    format!(
        "CLUSTERDOWN no replica of {} is up to serve this read (read_policy replica): {why}",
        shard.primary.addr()
    )
}

/// A sent request's `Waiting` step, keeping what a redirect or retry needs.
#[allow(clippy::too_many_arguments)]
fn in_flight(
    rx: oneshot::Receiver<NodeResult>,
    node: Arc<Node>,
    readonly: bool,
    asking: bool,
    request: Request,
    target: Target,
    attempt: Attempt,
) -> Step {
    Step::Waiting(InFlight {
        rx,
        node,
        readonly,
        asking,
        request,
        target,
        attempt,
    })
}

fn into_pending(step: Step) -> Pending {
    match step {
        Step::Waiting(in_flight) => Pending::Waiting(in_flight),
        Step::Backoff(retry) => Pending::Backoff(retry),
        Step::Done(reply) => Pending::Done(reply.into_raw()),
    }
}

/// The last of the replies a multi-reply job delivered together.
fn last_frame(reply: Reply) -> Reply {
    match split::frames(reply.raw()).last() {
        Some(last) => Reply::local(reply.raw().slice_ref(last)),
        None => reply,
    }
}

/// A stand-in while a part's step is taken out to be settled.
fn placeholder() -> Reply {
    Reply::local(Bytes::new())
}

/// Keys of one request in more than one slot.
pub(super) struct CrossSlot;

/// The null reply in `protocol` (`*-1` in RESP2: EXEC's "did not run").
fn null_reply(protocol: crate::protocol::Protocol) -> Bytes {
    Bytes::from_static(match protocol {
        crate::protocol::Protocol::Resp2 => b"*-1\r\n",
        crate::protocol::Protocol::Resp3 => b"_\r\n",
    })
}

/// redis-server's reply to an unknown command: its `%.*s` formatting copies each argument's
/// bytes up to the first NUL, within a 128-byte budget.
fn unknown_command(request: &Request) -> Vec<u8> {
    let mut args = Vec::new();
    for arg in &request.args()[1..] {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        args.push(b'\'');
        args.extend_from_slice(c_str(arg, room));
        args.extend_from_slice(b"' ");
    }
    let mut message = b"ERR unknown command '".to_vec();
    message.extend_from_slice(c_str(request.name(), 128));
    message.extend_from_slice(b"', with args beginning with: ");
    message.extend_from_slice(&args);
    message
}

/// What C's `%.{max}s` prints of `bytes`: up to the first NUL, at most `max` bytes.
fn c_str(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end.min(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_message_matches_redis() {
        let request = Request::from_args(["FOO", "a", "b"]);
        assert_eq!(
            unknown_command(&request),
            b"ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        let request = Request::from_args(["nope"]);
        assert_eq!(
            unknown_command(&request),
            b"ERR unknown command 'nope', with args beginning with: "
        );
        // Bytes are copied as they are, up to a NUL, as C's %s does.
        let request = Request::from_args([&b"x\xff"[..], b"a\x00b", b"\xc3"]);
        assert_eq!(
            unknown_command(&request),
            b"ERR unknown command 'x\xff', with args beginning with: 'a' '\xc3' "
        );
    }
}
