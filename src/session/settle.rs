//! The session's reply queue in motion: a request enters it (`dispatch`: started now, or
//! `Deferred` while `order.rs` says it must wait for older ones), and its front moves forward
//! as replies arrive (`advance_front`: settled entries go to the output, in order; a split
//! moves forward in `split_progress.rs`; a backoff is retried). What a plan sends is
//! `dispatch.rs`'s `Starter`; what a node's answer means is `settler.rs`'s; sending is
//! `send.rs`'s (the session lends both their borrows here: `starter`, `sender`). Also ends a
//! blocked command at the front when another client's `CLIENT UNBLOCK` says so.

use arc_swap::Guard;
use tokio::time::Instant;

use super::Session;
use super::attempt::{Step, placeholder};
use super::dispatch::Starter;
use super::order::Admission;
use super::plan::Plan;
use super::queue::{FrontEvent, Pending, TaskOutcome, into_pending};
use super::send::Sender;
use super::split_progress;
use crate::clients::UnblockMode;
use crate::error::ReplyError;
use crate::protocol::Request;
use crate::protocol::reply::null_array;

/// A [`Sender`] borrowing `$session`'s fields one by one, so another field can be borrowed
/// beside it (a method returning `Sender` would borrow the whole session).
macro_rules! sender_parts {
    ($session:ident) => {
        Sender {
            id: $session.id,
            worker: $session.worker,
            protocol: $session.protocol,
            shared: &$session.shared,
            read_policy: $session.read_policy,
            tracking: $session.tracking.is_some(),
            recent_writes: &mut $session.recent_writes,
            written: &mut $session.written,
            dedicated: &mut $session.dedicated,
            seat: &mut $session.seat,
            budget: &$session.budget,
            mailbox: &mut $session.mailbox,
        }
    };
}

impl Session {
    /// What sending a request needs ([`Sender`]).
    pub(super) fn sender(&mut self) -> Sender<'_> {
        sender_parts!(self)
    }

    /// What starting a request needs ([`Starter`]): the sender's parts and the transaction's
    /// watched keys, borrowed side by side.
    pub(super) fn starter(&mut self) -> Starter<'_> {
        Starter {
            watch: &mut self.transaction.watch,
            sender: sender_parts!(self),
        }
    }

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
        let entry = self.starter().start(&map, request, plan);
        self.pending.push_back(entry);
    }

    /// `start` under the current map.
    pub(super) fn start_now(&mut self, request: Request, plan: Plan) -> Pending {
        let map = Guard::into_inner(self.shared.topology.slot_map());
        self.starter().start(&map, request, plan)
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
                ready.push(self.starter().start(&map, request, plan));
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

    /// Moves the front `Split` forward without waiting ([`split_progress::advance`]):
    /// replaces it with its merged reply once every part is done. Returns false while some
    /// part is still outstanding.
    pub(super) fn advance_split(&mut self) -> bool {
        let Some(Pending::Split(split)) = self.pending.pop_front() else {
            return true;
        };
        let mut sender = sender_parts!(self);
        let (entry, done) = match split_progress::advance(&mut sender, &self.info, split) {
            Ok(merged) => (Pending::Done(merged), true),
            Err(split) => (Pending::Split(split), false),
        };
        self.pending.push_front(entry);
        done
    }

    /// Settles one reply of the front entry (a single request or one part of a split).
    pub(super) fn settle_front(&mut self, event: FrontEvent) {
        match (event, self.pending.pop_front()) {
            (FrontEvent::Single(result), Some(Pending::Waiting(in_flight))) => {
                let step = self.sender().answer(in_flight, result);
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
                    split.parts[index] = self.sender().answer(in_flight, result);
                }
                self.pending.push_front(Pending::Split(split));
            }
            (_, Some(other)) => self.pending.push_front(other),
            (_, None) => {}
        }
    }

    /// Moves every settled entry at the front of the queue into the output buffer.
    pub(super) fn advance_front(&mut self) {
        let max_output = self.budget.limit();
        while let Some(front) = self.pending.front_mut() {
            if self.out.len() + self.budget.held() > max_output {
                // Nodes may answer as fast as this loop runs: stop here, so the output limit
                // is checked before the buffer grows any further.
                return;
            }
            match front {
                Pending::Done(_) => {
                    // Messages already in the inbox came before this reply: a PUBLISH to the
                    // session's own channel, whose message the hub passed on before the node's
                    // count, must not be overtaken by the count. With the output buffer full,
                    // the reply waits until they are written.
                    if self.hub_member && !self.pubsub().drain_pushes() {
                        return;
                    }
                    let index = self.pending.front_index();
                    if let Some(Pending::Done(reply)) = self.pending.pop_front() {
                        self.window.reply(reply.len());
                        let metrics = &self.shared.metrics;
                        self.timings
                            .replied(index, &reply, |row, outcome, seconds| {
                                metrics.record(row, outcome, seconds)
                            });
                        if self.reply_mode.writes_all() || !self.reply_mode.take_muted(index) {
                            self.out.push(reply);
                        }
                    }
                }
                Pending::Close(reply) => {
                    self.out.extend_from_slice(reply);
                    self.pending.clear();
                    self.closing = true;
                    return;
                }
                Pending::Waiting(in_flight) => match in_flight.try_reply() {
                    Some(result) => self.settle_front(FrontEvent::Single(result)),
                    None => return,
                },
                Pending::Backoff(retry) => {
                    if retry.until > Instant::now() {
                        return;
                    }
                    self.retry_front();
                }
                Pending::Split(_) => {
                    if !self.advance_split() {
                        return;
                    }
                }
                Pending::Deferred(..) => self.send_deferred(),
                Pending::Inbox => {
                    if !self.pubsub().take_inbox_reply() {
                        return;
                    }
                }
                Pending::Task(task) => {
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    match task.poll(&mut cx) {
                        std::task::Poll::Ready(outcome) => self.settle_task(outcome),
                        std::task::Poll::Pending => return,
                    }
                }
            }
        }
    }

    /// Replaces the front `Task` with its outcome: the reply, or the request sent after all.
    pub(super) fn settle_task(&mut self, outcome: TaskOutcome) {
        self.pending.pop_front();
        let entry = match outcome {
            TaskOutcome::Reply(reply) => Pending::Done(reply),
            TaskOutcome::Dispatch(request, plan) => self.start_now(request, plan),
            TaskOutcome::Tracking(prefixes, on) => self.client_tracking().turn_on(prefixes, on),
        };
        self.pending.push_front(entry);
    }

    /// Ends the blocked command at the front without the node's help (see
    /// `clients/unblock.rs`), on another client's `CLIENT UNBLOCK`: answers it as the node
    /// would and closes its connection. A reply that already arrived is delivered instead.
    pub(super) fn unblock_here(&mut self, mode: UnblockMode) {
        let node = match self.pending.front_mut() {
            Some(Pending::Waiting(f)) if f.is_blocking() => {
                if let Some(result) = f.try_reply() {
                    self.settle_front(FrontEvent::Single(result));
                    return;
                }
                f.sent.node.clone()
            }
            _ => return,
        };
        self.sender().drop_dedicated(&node);
        let reply = match mode {
            UnblockMode::Timeout => null_array(self.protocol),
            UnblockMode::Error => ReplyError::Unblocked.to_bytes(),
        };
        self.pending.pop_front();
        self.pending.push_front(Pending::Done(reply));
    }
}
