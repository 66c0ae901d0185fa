//! Sending requests and moving the session's queue: whether a request waits for older ones
//! (`Deferred`), the map it is sent under, the node (read policy and node health, in
//! `pick.rs`; requests for a primary that fails its health checks wait) and the connection
//! (the session's lane of the node's shared ones, or its dedicated one). Requests become a
//! `Plan` in `plan.rs`; their replies are settled (MOVED/ASK, retries) in `settle.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use arc_swap::Guard;
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::algebra;
use super::order::Admission;
use super::pick;
use super::plan::Plan;
use super::settle::null_reply;
use super::split::{self, Merge};
use super::{Pending, Session};
use crate::backend::{Lane, Node, NodeResult, Outgoing, ReplyBudget};
use crate::cluster::Slot;
use crate::cluster::{Shard, SlotMap};
use crate::config::ReadPolicy;
use crate::error::BackendError;
use crate::error::ReplyError;
use crate::protocol::{Reply, Request};

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
    pub(super) dedicated: bool,
    /// Must not move to another node (WATCH): redirects are answered, not followed.
    pub(super) pinned: bool,
    /// A read-only command: the read policy may send it to a replica, and it is safe to send
    /// again when its connection died before the reply.
    pub(super) read_only: bool,
    /// May change the data of its slot: with `read_your_writes`, the session's reads of that
    /// slot go to the primary for a while.
    pub(super) writes: bool,
    /// A transaction batch (MULTI ... EXEC): how many replies, and whether it was watched.
    pub(super) exec: Option<ExecShape>,
    pub(super) redirects: u32,
    pub(super) retries: u32,
    /// When the first retry began; the retry deadline counts from here.
    pub(super) retry_started: Option<Instant>,
    /// This send was `SCRIPT LOAD` + the request, after a `NOSCRIPT`: the request's reply is
    /// the last of the job's, and a second `NOSCRIPT` goes to the client.
    pub(super) reloaded: bool,
    /// `SCRIPT KILL`/`FUNCTION KILL`: sent on the session's own connection, never queued behind
    /// the running script on a shared one, and even to a primary failing its health checks
    /// (a node stuck in a script answers nothing until `busy-reply-threshold`).
    pub(super) interrupt: bool,
}

/// The shape of a transaction batch, for settling its reply.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExecShape {
    pub(super) replies: usize,
    pub(super) watched: bool,
}

/// A request sent to a node, waiting for its reply.
pub(super) struct InFlight {
    pub(super) rx: oneshot::Receiver<NodeResult>,
    /// The session's reply budget, when the node connection charges the reply to it: picking
    /// the reply up takes it off again.
    pub(super) budget: Option<Arc<ReplyBudget>>,
    pub(super) node: Arc<Node>,
    /// Sent on the node's `READONLY` connections (a replica read).
    pub(super) readonly: bool,
    /// Sent after `ASKING`.
    pub(super) asking: bool,
    pub(super) request: Request,
    pub(super) target: Target,
    pub(super) attempt: Attempt,
}

impl InFlight {
    /// True for a request on a dedicated connection (a blocking command).
    pub(super) fn is_dedicated(&self) -> bool {
        self.attempt.dedicated
    }

    /// The reply if it has arrived, without waiting.
    pub(super) fn try_reply(&mut self) -> Option<NodeResult> {
        match self.rx.try_recv() {
            Ok(result) => Some(self.picked_up(result)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(dropped(&self.node))),
        }
    }
}

/// A request waiting out a backoff before it is sent again.
pub(super) struct Retry {
    pub(super) until: Instant,
    pub(super) request: Request,
    pub(super) target: Target,
    pub(super) attempt: Attempt,
}

/// Where one request (or one part of a split request) stands.
pub(super) enum Step {
    /// Sent; waiting for the node.
    Waiting(InFlight),
    /// Waiting out a backoff before it is sent again.
    Backoff(Retry),
    /// Settled: this reply is final.
    Done(Reply),
    /// Not sent until the split's first part has settled, and only if that part ran: the
    /// unwatched slots of a per-slot transaction wait for the watched slot's `EXEC`.
    Held(Request, Target, Attempt),
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
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(result) => self.picked_up(result),
            Err(_) => Err(dropped(&self.node)),
        })
    }

    /// Takes a reply's bytes off the budget the node connection charged them to.
    fn picked_up(&self, result: NodeResult) -> NodeResult {
        if let (Some(budget), Ok(reply)) = (&self.budget, &result) {
            budget.take(reply.raw().len());
        }
        result
    }
}

impl Session {
    /// Sends a new request, unless it must wait for older ones to settle: the map changed while
    /// they were in flight, or one of them went out on a dedicated connection (its order relative
    /// to the shared connections is only known once it has been answered).
    pub(super) fn dispatch(&mut self, request: Request, plan: Plan) {
        if let Some(reason) = self.shared.topology.stats().down_reason() {
            // No node has answered for longer than the retry deadline: waiting it out again
            // for every request helps nobody.
            return self.reply_error(reason);
        }
        let map = Guard::into_inner(self.shared.topology.slot_map());
        let pending = &self.pending;
        let unsettled = || {
            pending
                .iter()
                .any(|p| !matches!(p, Pending::Done(_) | Pending::Close(_)))
        };
        if self
            .order
            .admit(map.generation(), plan.order_needs(), unsettled)
            == Admission::Defer
        {
            self.pending.push_back(Pending::Deferred(request, plan));
            return;
        }
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
        let writes = plan.writes();
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
                    None => Pending::Done(ReplyError::SlotNotServed(slot.0).to_bytes()),
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
                return into_pending(match &exec.watched {
                    Some(watch) => self.start_watched_exec(request, target, attempt, watch),
                    None => self.send(request, target, attempt),
                });
            }
            Plan::PerSlotExec(tx) => {
                let watched = tx.watched.is_some();
                let mut parts = Vec::with_capacity(tx.batches.len());
                for (i, (slot, batch, replies)) in tx.batches.into_iter().enumerate() {
                    let attempt = Attempt {
                        writes: true,
                        exec: Some(ExecShape {
                            replies,
                            watched: false,
                        }),
                        ..Attempt::default()
                    };
                    let target = Target::Slot(slot);
                    parts.push(match (&tx.watched, i) {
                        (Some(watch), 0) => self.start_watched_exec(batch, target, attempt, watch),
                        (Some(_), _) => Step::Held(batch, target, attempt),
                        (None, _) => self.send(batch, target, attempt),
                    });
                }
                let merge = Merge::Transaction {
                    positions: tx.positions,
                    total: tx.total,
                    watched,
                };
                return Pending::Split(Box::new(Split { merge, parts }));
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
            Plan::Split { kind, .. } => {
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
            Plan::FanOut { merge, .. } => {
                if writes && self.tracks_writes() {
                    self.recent_writes
                        .borrow_mut()
                        .note_everything(Instant::now());
                }
                let slots = split::shard_slots(&self.map());
                if slots.is_empty() {
                    self.shared.topology.request_refresh();
                    return Pending::Done(ReplyError::NoNodeKnown.to_bytes());
                }
                let parts: Vec<(Target, Request)> = slots
                    .into_iter()
                    .map(|slot| (Target::Slot(slot), request.clone()))
                    .collect();
                (merge, parts)
            }
            Plan::AllNodes { merge, .. } => {
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
                    return Pending::Done(ReplyError::NoNodeKnown.to_bytes());
                }
                (merge, parts)
            }
            Plan::Parts(merge, parts) => (merge, parts),
        };
        // Parts of MSET, DEL... write their slots; those of MGET, DBSIZE... don't.
        let interrupt = merge.interrupts();
        let attempt = Attempt {
            writes: writes && self.tracks_writes(),
            dedicated: interrupt,
            interrupt,
            ..Attempt::default()
        };
        let parts = parts
            .into_iter()
            .map(|(target, part)| self.send(part, target, attempt))
            .collect();
        Pending::Split(Box::new(Split { merge, parts }))
    }

    /// Sends a transaction batch on the connection that holds its `WATCH`, if the watched
    /// slot's primary is still that node; otherwise the transaction can't run where `WATCH`
    /// was, and `EXEC` answers nil as for a changed watched key.
    fn start_watched_exec(
        &self,
        batch: Request,
        target: Target,
        attempt: Attempt,
        (node, slot): &(Arc<Node>, Slot),
    ) -> Step {
        let attempt = Attempt {
            dedicated: true,
            pinned: true,
            exec: attempt.exec.map(|shape| ExecShape {
                watched: true,
                ..shape
            }),
            ..attempt
        };
        let owner = self.map().primary(*slot).cloned();
        if owner.is_some_and(|owner| Arc::ptr_eq(&owner, node)) {
            self.send_to(node.clone(), batch, target, attempt, false)
        } else {
            Step::Done(Reply::local(null_reply(self.protocol)))
        }
    }

    /// Sends a split's held parts once its first part has settled and ran (an array reply);
    /// if it did not (nil: a watched key changed; an error), they are never sent.
    fn release_held(&self, split: &mut Split) {
        let first_ran = match split.parts.first() {
            Some(Step::Done(reply)) => Some(super::per_slot::ran(reply)),
            _ => None,
        };
        let Some(ran) = first_ran else { return };
        for part in split.parts.iter_mut().skip(1) {
            if matches!(part, Step::Held(..))
                && let Step::Held(request, target, attempt) =
                    std::mem::replace(part, Step::Done(placeholder()))
                && ran
            {
                *part = self.send(request, target, attempt);
            }
        }
    }

    /// Sends every `Deferred` entry at the front, in order, under the current map.
    pub(super) fn send_deferred(&mut self) {
        let map = Guard::into_inner(self.shared.topology.slot_map());
        self.order.release(map.generation());
        self.pinned_map = Some(map);
        let mut ready = Vec::new();
        while let Some(Pending::Deferred(_, plan)) = self.pending.front()
            && self.order.release_next(ready.len(), plan.order_needs())
        {
            if let Some(Pending::Deferred(request, plan)) = self.pending.pop_front() {
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
        self.release_held(&mut split);
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
            let merged = match split.merge {
                split::Merge::Info => {
                    split::merge_info_with(&replies, self.protocol, &self.proxy_facts())
                }
                _ => split::merge(&split.merge, &replies, self.protocol),
            };
            self.pending.push_front(Pending::Done(merged));
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
                if !readonly && !attempt.interrupt && !node.health().is_up() {
                    let error = ReplyError::PrimaryDown(node.addr().to_string());
                    return self.backoff(request, target, attempt, error.to_bytes());
                }
                if attempt.writes
                    && let Target::Slot(slot) = target
                {
                    self.note_write(slot);
                }
                self.send_via(node, readonly, request, target, attempt, false)
            }
            Some(Err(error)) => Step::Done(Reply::local(error.to_bytes())),
            None => {
                self.shared.topology.request_refresh();
                let error = match target {
                    Target::Slot(slot) => ReplyError::SlotNotServed(slot.0),
                    Target::Replica(slot, _) => ReplyError::ReplicaGone(slot.0),
                    Target::AnyPrimary => ReplyError::NoNodeKnown,
                };
                self.backoff(request, target, attempt, error.to_bytes())
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
    pub(super) fn note_write(&self, slot: Slot) {
        if self.tracks_writes() {
            self.recent_writes.borrow_mut().note(slot, Instant::now());
        }
    }

    pub(super) fn send_to(
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
        let budget = Some(self.budget.clone());
        Step::Waiting(InFlight {
            rx,
            budget,
            node,
            readonly,
            asking,
            request,
            target,
            attempt,
        })
    }

    /// Queues `payload` on the session's connection to `node`: its dedicated one, or its lane
    /// of the shared ones.
    pub(super) fn enqueue(
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
        let request = Outgoing {
            payload,
            asking,
            replies,
            write,
            budget: Some(self.budget.clone()),
        };
        if attempt.dedicated {
            self.dedicated_lane(node).send(request)
        } else {
            node.worker_lane(self.worker, self.protocol, readonly, self.id as usize)
                .send(request)
        }
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
        Pending::Waiting(InFlight {
            rx,
            budget: None,
            node,
            readonly: false,
            asking: false,
            request,
            target: Target::AnyPrimary,
            attempt,
        })
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
        self.dedicated_opened(node, &lane);
        lanes.push((node.clone(), self.protocol, lane.clone()));
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

pub(super) fn into_pending(step: Step) -> Pending {
    match step {
        Step::Waiting(in_flight) => Pending::Waiting(in_flight),
        Step::Backoff(retry) => Pending::Backoff(retry),
        Step::Done(reply) => Pending::Done(reply.into_raw()),
        // Only the parts of a split are ever held.
        Step::Held(..) => Pending::Done(ReplyError::HeldNotSent.to_bytes()),
    }
}

/// A stand-in while a part's step is taken out to be settled.
pub(super) fn placeholder() -> Reply {
    Reply::local(Bytes::new())
}
