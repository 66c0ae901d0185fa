//! Starting a request under a slot map: what its `Plan` sends (one request, a transaction on
//! its watched connection, the parts of a split, fanned-out or computed command, `WAIT` on the
//! connections the session wrote on) and the queue entry it becomes (`Pending`). Requests become
//! a `Plan` in `handle.rs`; whether a request may start now is `order.rs`'s and `settle.rs`'s
//! (`dispatch`); one request is sent in `send.rs`; replies are settled (MOVED/ASK, retries) in
//! `settler.rs`. [`Starter`] borrows only what sending needs and the transaction's `WATCH`; it
//! knows nothing of the reply queue.

use std::sync::Arc;

use tokio::time::Instant;

use super::algebra;
use super::attempt::{Attempt, ExecShape, Split, Step};
use super::plan::Plan;
use super::queue::{Pending, Task, TaskOutcome, into_pending};
use super::send::Sender;
use super::split::{self, Merge};
use super::target::Target;
use super::wait;
use crate::backend::Node;
use crate::cluster::Slot;
use crate::cluster::SlotMap;
use crate::error::ReplyError;
use crate::protocol::reply::null_array;
use crate::protocol::{Reply, Request};

/// What starting a request needs: sending, and the transaction's `WATCH` (set when `WATCH` goes
/// out); borrowed from the session for one request.
pub(super) struct Starter<'a> {
    pub(super) sender: Sender<'a>,
    /// The node and slot the transaction's `WATCH` went to.
    pub(super) watch: &'a mut Option<(Arc<Node>, Slot)>,
}

impl Starter<'_> {
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
                        *self.watch = Some((node.clone(), slot));
                        into_pending(self.sender.send_to(
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
                    None => self.sender.send(map, request, target, attempt),
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
                        (None, _) => self.sender.send(map, batch, target, attempt),
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
                return into_pending(self.sender.send(map, request, target, attempt));
            }
            Plan::Read(target) => {
                let attempt = Attempt {
                    read_only: true,
                    ..Attempt::default()
                };
                return into_pending(self.sender.send(map, request, target, attempt));
            }
            Plan::Blocking(target) => {
                let attempt = Attempt {
                    dedicated: true,
                    writes: true,
                    ..Attempt::default()
                };
                return into_pending(self.sender.send(map, request, target, attempt));
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
                    .map(|(slot, read)| self.sender.send(map, read, Target::Slot(slot), attempt))
                    .collect();
                let merge = Merge::Computed(Box::new(computation));
                return Pending::Split(Box::new(Split { merge, parts }));
            }
            Plan::FanOut { merge, .. } => {
                if writes && self.sender.tracks_writes() {
                    self.sender.recent_writes.note_everything(Instant::now());
                }
                let slots = split::shard_slots(map);
                if slots.is_empty() {
                    self.sender.shared.topology.request_refresh();
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
                    self.sender.shared.topology.request_refresh();
                    return Pending::Done(ReplyError::NoNodeKnown.to_bytes());
                }
                (merge, parts)
            }
            Plan::Parts(merge, parts) => (merge, parts),
        };
        // Parts of MSET, DEL... write their slots; those of MGET, DBSIZE... don't.
        let interrupt = merge.interrupts();
        let attempt = Attempt {
            writes: writes && self.sender.tracks_writes(),
            dedicated: interrupt,
            interrupt,
            ..Attempt::default()
        };
        let parts = parts
            .into_iter()
            .map(|(target, part)| self.sender.send(map, part, target, attempt))
            .collect();
        Pending::Split(Box::new(Split { merge, parts }))
    }

    /// Where `WAIT` waits for this session's writes ([`wait::vias`]); a session that wrote
    /// nothing asks one primary on its dedicated connection.
    fn wait_vias(&mut self) -> Result<Vec<wait::Via>, ReplyError> {
        let written = self.sender.written.nodes().to_vec();
        let lane = wait::SharedLane {
            protocol: self.sender.protocol,
            worker: self.sender.worker,
            lane: self.sender.id as usize,
        };
        let vias = wait::vias(&written, lane, |node| self.sender.dedicated_lane(node));
        if !vias.is_empty() {
            return Ok(vias);
        }
        let map = self.sender.shared.topology.slot_map();
        let shards = map.shards();
        if shards.is_empty() {
            drop(map);
            self.sender.shared.topology.request_refresh();
            return Err(ReplyError::NoNodeKnown);
        }
        let node = shards[self.sender.id as usize % shards.len()]
            .primary
            .clone();
        drop(map);
        Ok(vec![wait::Via::Dedicated(
            self.sender.dedicated_lane(&node),
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
            self.sender
                .send_to(node.clone(), batch, target, attempt, false)
        } else {
            Step::Done(Reply::local(null_array(self.sender.protocol)))
        }
    }
}
