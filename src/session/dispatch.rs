//! Starting requests and moving the session's queue: whether a request waits for older ones
//! (`Deferred`, by `order.rs`), the map it is sent under, its parts (split, fanned out, a
//! transaction per slot), and the front entry moved forward as its replies arrive. Requests
//! become a `Plan` in `handle.rs`; one request is sent in `send.rs`; replies are settled
//! (MOVED/ASK, retries) in `settle.rs`.

use std::sync::Arc;

use arc_swap::Guard;
use tokio::time::Instant;

use super::Session;
use super::algebra;
use super::attempt::{Attempt, ExecShape, Split, Step, placeholder};
use super::introspect;
use super::order::Admission;
use super::plan::Plan;
use super::queue::{FrontEvent, Pending, Task, TaskOutcome, into_pending};
use super::scan_batch;
use super::split::{self, Merge};
use super::target::Target;
use super::wait;
use crate::backend::Node;
use crate::cluster::Slot;
use crate::cluster::SlotMap;
use crate::error::ReplyError;
use crate::protocol::reply::null_array;
use crate::protocol::{Reply, Request};

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
        let unsettled = || pending.unsettled();
        if self
            .order
            .admit(map.generation(), plan.order_needs(), unsettled)
            == Admission::Defer
        {
            self.pending.push_back(Pending::Deferred(request, plan));
            return;
        }
        // Sent under the very map whose generation `order` checked: a map published meanwhile
        // (by the refresher, on another thread) must not send this request to a slot's new
        // owner while the session's earlier requests are still on their way to the old one (a
        // read would overtake the client's own write, which the old owner only redirects later).
        let entry = self.start(&map, request, plan);
        self.pending.push_back(entry);
    }

    /// `start` under the current map.
    pub(super) fn start_now(&mut self, request: Request, plan: Plan) -> Pending {
        let map = Guard::into_inner(self.shared.topology.slot_map());
        self.start(&map, request, plan)
    }

    /// Sends a request (or its parts) under `map`.
    pub(super) fn start(&mut self, map: &SlotMap, request: Request, plan: Plan) -> Pending {
        let writes = plan.writes();
        let (merge, parts) = match plan {
            Plan::Watch(slot) => {
                let attempt = Attempt {
                    dedicated: true,
                    pinned: true,
                    ..Attempt::default()
                };
                let node = map.primary(slot).cloned();
                return match node {
                    Some(node) => {
                        self.transaction.watch = Some((node.clone(), slot));
                        into_pending(self.sender().send_to(
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
                    Some(watch) => self.start_watched_exec(map, request, target, attempt, watch),
                    None => self.sender().send(map, request, target, attempt),
                });
            }
            Plan::PerSlotExec(exec) => {
                let watched = exec.watched.is_some();
                let mut parts = Vec::with_capacity(exec.batches.len());
                for (i, (slot, batch, replies)) in exec.batches.into_iter().enumerate() {
                    let attempt = Attempt {
                        writes: true,
                        exec: Some(ExecShape {
                            replies,
                            watched: false,
                        }),
                        ..Attempt::default()
                    };
                    let target = Target::Slot(slot);
                    parts.push(match (&exec.watched, i) {
                        (Some(watch), 0) => {
                            self.start_watched_exec(map, batch, target, attempt, watch)
                        }
                        (Some(_), _) => Step::Held(batch, target, attempt),
                        (None, _) => self.sender().send(map, batch, target, attempt),
                    });
                }
                let merge = Merge::Transaction {
                    positions: exec.positions,
                    total: exec.total,
                    watched,
                    combined: exec.combined,
                };
                return Pending::Split(Box::new(Split { merge, parts }));
            }
            Plan::Wait(wait) => {
                return match self.wait_vias() {
                    Ok(vias) => {
                        let reply = wait::start(wait, vias);
                        Pending::Task(Task::blocking(
                            async move { TaskOutcome::Reply(reply.await) },
                        ))
                    }
                    Err(error) => Pending::Done(error.to_bytes()),
                };
            }
            Plan::Single(target) => {
                let attempt = Attempt {
                    writes: true,
                    ..Attempt::default()
                };
                return into_pending(self.sender().send(map, request, target, attempt));
            }
            Plan::Read(target) => {
                let attempt = Attempt {
                    read_only: true,
                    ..Attempt::default()
                };
                return into_pending(self.sender().send(map, request, target, attempt));
            }
            Plan::Blocking(target) => {
                let attempt = Attempt {
                    dedicated: true,
                    writes: true,
                    ..Attempt::default()
                };
                return into_pending(self.sender().send(map, request, target, attempt));
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
                    .map(|(slot, read)| self.sender().send(map, read, Target::Slot(slot), attempt))
                    .collect();
                let merge = Merge::Computed(Box::new(computation));
                return Pending::Split(Box::new(Split { merge, parts }));
            }
            Plan::FanOut { merge, .. } => {
                if writes && self.sender().tracks_writes() {
                    self.recent_writes.note_everything(Instant::now());
                }
                let slots = split::shard_slots(map);
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
            writes: writes && self.sender().tracks_writes(),
            dedicated: interrupt,
            interrupt,
            ..Attempt::default()
        };
        let parts = parts
            .into_iter()
            .map(|(target, part)| self.sender().send(map, part, target, attempt))
            .collect();
        Pending::Split(Box::new(Split { merge, parts }))
    }

    /// Where `WAIT` waits for this session's writes ([`wait::vias`]); a session that wrote
    /// nothing asks one primary on its dedicated connection.
    fn wait_vias(&mut self) -> Result<Vec<wait::Via>, ReplyError> {
        let written = self.written.nodes().to_vec();
        let lane = wait::SharedLane {
            protocol: self.protocol,
            worker: self.worker,
            lane: self.id as usize,
        };
        let vias = wait::vias(&written, lane, |node| self.sender().dedicated_lane(node));
        if !vias.is_empty() {
            return Ok(vias);
        }
        let map = self.shared.topology.slot_map();
        let shards = map.shards();
        if shards.is_empty() {
            drop(map);
            self.shared.topology.request_refresh();
            return Err(ReplyError::NoNodeKnown);
        }
        let node = shards[self.id as usize % shards.len()].primary.clone();
        drop(map);
        Ok(vec![wait::Via::Dedicated(
            self.sender().dedicated_lane(&node),
        )])
    }

    /// Sends a transaction batch on the connection that holds its `WATCH`, if the watched
    /// slot's primary is still that node; otherwise the transaction can't run where `WATCH`
    /// was, and `EXEC` answers nil as for a changed watched key.
    fn start_watched_exec(
        &mut self,
        map: &SlotMap,
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
        let owner = map.primary(*slot).cloned();
        if owner.is_some_and(|owner| Arc::ptr_eq(&owner, node)) {
            self.sender()
                .send_to(node.clone(), batch, target, attempt, false)
        } else {
            Step::Done(Reply::local(null_array(self.protocol)))
        }
    }

    /// Sends a split's held parts once its first part has settled and ran (an array reply);
    /// if it did not (nil: a watched key changed; an error), they are never sent.
    fn release_held(&mut self, split: &mut Split) {
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
                let map = self.shared.topology.slot_map();
                *part = self.sender().send(&map, request, target, attempt);
            }
        }
    }

    /// Sends every `Deferred` entry at the front, in order, under the current map.
    pub(super) fn send_deferred(&mut self) {
        let map = Guard::into_inner(self.shared.topology.slot_map());
        self.order.release(map.generation());
        let mut ready = Vec::new();
        while let Some(Pending::Deferred(_, plan)) = self.pending.front()
            && self.order.release_next(ready.len(), plan.order_needs())
        {
            if let Some(Pending::Deferred(request, plan)) = self.pending.pop_front() {
                ready.push(self.start(&map, request, plan));
            }
        }
        for entry in ready.into_iter().rev() {
            self.pending.push_front(entry);
        }
    }

    /// Resends the front `Backoff` entry under the current map.
    pub(super) fn retry_front(&mut self) {
        if let Some(Pending::Backoff(retry)) = self.pending.pop_front() {
            let map = self.shared.topology.slot_map();
            let step = self
                .sender()
                .send(&map, retry.request, retry.target, retry.attempt);
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
                        Some(result) => {
                            let settled = self.sender().settle(in_flight, result);
                            self.sender().follow(settled)
                        }
                        None => {
                            *part = Step::Waiting(in_flight);
                            break;
                        }
                    },
                    Step::Backoff(retry) if retry.until <= now => {
                        let map = self.shared.topology.slot_map();
                        self.sender()
                            .send(&map, retry.request, retry.target, retry.attempt)
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
            let Split { merge, parts } = *split;
            let replies: Vec<Reply> = parts
                .into_iter()
                .filter_map(|p| match p {
                    Step::Done(reply) => Some(reply),
                    _ => None,
                })
                .collect();
            let merged = match merge {
                split::Merge::Info => split::merge_info_with(
                    &replies,
                    self.protocol,
                    &introspect::proxy_facts(
                        &self.shared,
                        self.info.cluster_addr(&self.shared.config.listen),
                    ),
                ),
                Merge::Scan(batch) if replies.len() == 1 && replies[0].error_text().is_none() => {
                    let map = self.shared.topology.slot_map();
                    match batch.next(replies[0].raw(), map.layout()) {
                        scan_batch::Next::Reply(reply) => reply,
                        scan_batch::Next::Step(batch, slot, request) => {
                            // The client's next call, made now (`scan_batch.rs`).
                            let part = self.sender().send(
                                &map,
                                request,
                                Target::Slot(slot),
                                Attempt::default(),
                            );
                            let merge = Merge::Scan(Box::new(batch));
                            let parts = vec![part];
                            self.pending
                                .push_front(Pending::Split(Box::new(Split { merge, parts })));
                            return self.advance_split();
                        }
                    }
                }
                other => split::merge(&other, &replies, self.protocol),
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
                let step = {
                    let settled = self.sender().settle(in_flight, result);
                    self.sender().follow(settled)
                };
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
                    split.parts[index] = {
                        let settled = self.sender().settle(in_flight, result);
                        self.sender().follow(settled)
                    };
                }
                self.pending.push_front(Pending::Split(split));
            }
            (_, Some(other)) => self.pending.push_front(other),
            (_, None) => {}
        }
    }
}
