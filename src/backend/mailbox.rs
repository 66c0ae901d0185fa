//! `Mailbox`: the reply slots of one session's requests in flight, filled by the node
//! connections that carry them.
//!
//! A session reserves a slot for each request it sends ([`Mailbox::reserve`]): the
//! [`ReplySlot`] rides with the job to the connection task, which puts the reply in it; the
//! session keeps the [`Ticket`] and takes the reply out. Slots are reused, so a request costs no
//! allocation. A reply wakes the session only if it is waiting on that slot (the front of its
//! reply queue); replies behind it are picked up when they reach the front.
//!
//! The session's [`ReplyBudget`] counts the bytes of replies in its slots: charged when a reply
//! is put there, taken off when the session takes it out. A reply for a client that is over its
//! budget (being disconnected) is not kept.
//!
//! Either side may let go first. A ticket dropped before its reply (the client left) leaves the
//! slot abandoned: the connection task sees that ([`ReplySlot::is_closed`]) and never writes a
//! request nobody waits for. A slot dropped without a reply (its connection task stopped) tells
//! the ticket so. The slot is free again once both sides are done with it.
//!
//! The session and the connections it uses run on one worker thread (`crate::workers`), so the
//! lock is never contended; it is there because tasks must be `Send`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;

use super::ReplyBudget;
use super::connection::NodeResult;

/// One session's reply slots.
#[derive(Debug, Default)]
pub struct Mailbox {
    slots: Mutex<Slots>,
    /// The reply bytes in the slots, when they count against a client's budget.
    budget: Option<Arc<ReplyBudget>>,
}

#[derive(Debug, Default)]
struct Slots {
    states: Vec<State>,
    /// Indices of `Free` states, reused before `states` grows.
    free: Vec<u32>,
    /// The session's waker, from its last wait on a slot.
    waker: Option<Waker>,
}

#[derive(Debug)]
enum State {
    Free,
    /// Reserved, no reply yet; `watched`: the session waits on this slot, so its reply wakes it.
    Waiting {
        watched: bool,
    },
    Ready(NodeResult),
    /// The connection let go of the slot without a reply (its task stopped).
    Dropped,
    /// The session let go of the ticket before the reply came.
    Abandoned,
}

impl Mailbox {
    /// A new, empty mailbox whose replies count against `budget`.
    pub fn new(budget: Option<Arc<ReplyBudget>>) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::default(),
            budget,
        })
    }

    /// A slot for one request: where the node connection puts its reply, and where the session
    /// takes it from.
    pub fn reserve(self: &Arc<Self>) -> (ReplySlot, Ticket) {
        let mut slots = self.lock();
        let waiting = State::Waiting { watched: false };
        let index = match slots.free.pop() {
            Some(index) => {
                slots.states[index as usize] = waiting;
                index
            }
            None => {
                slots.states.push(waiting);
                u32::try_from(slots.states.len() - 1).expect("fewer than 2^32 requests in flight")
            }
        };
        drop(slots);
        let slot = ReplySlot {
            mailbox: self.clone(),
            index,
            open: true,
        };
        let ticket = Ticket {
            mailbox: self.clone(),
            index,
            open: true,
        };
        (slot, ticket)
    }

    /// Slots reserved and not yet freed (both sides done).
    pub fn in_use(&self) -> usize {
        let slots = self.lock();
        slots.states.len() - slots.free.len()
    }

    /// A reply left its slot: its bytes no longer count as held.
    fn picked_up(&self, result: &NodeResult) {
        if let (Some(budget), Ok(reply)) = (&self.budget, result) {
            budget.take(reply.raw().len());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Nothing panics while holding it; a poisoned lock still holds consistent slots.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slots {
    fn release(&mut self, index: u32) {
        self.states[index as usize] = State::Free;
        self.free.push(index);
    }
}

/// The connection task's end of a slot: [`ReplySlot::send`] puts the reply in it.
#[derive(Debug)]
pub struct ReplySlot {
    mailbox: Arc<Mailbox>,
    index: u32,
    /// Not yet sent into (a slot dropped while open tells the ticket it gets no reply).
    open: bool,
}

impl ReplySlot {
    /// Puts the reply in the slot, and wakes the session if it waits on it. A session that let
    /// go of the ticket never sees it; one whose client is over its budget gets no reply (it is
    /// being disconnected).
    pub fn send(mut self, result: NodeResult) {
        self.settle(Some(result));
    }

    /// The session let go of the ticket: nobody waits for this reply.
    pub fn is_closed(&self) -> bool {
        matches!(
            self.mailbox.lock().states[self.index as usize],
            State::Abandoned
        )
    }

    /// Puts `result` in the slot (`None`: the connection lets go of it without a reply).
    fn settle(&mut self, result: Option<NodeResult>) {
        self.open = false;
        let mailbox = &*self.mailbox;
        let mut guard = mailbox.lock();
        let slots = &mut *guard;
        let index = self.index;
        match slots.states[index as usize] {
            State::Waiting { watched } => {
                let kept = match (&mailbox.budget, &result) {
                    // Only wakes (the session's alarm, an evicted client's), never locks this.
                    (Some(budget), Some(Ok(reply))) => budget.add(reply.raw().len()),
                    _ => true,
                };
                slots.states[index as usize] = match result {
                    Some(result) if kept => State::Ready(result),
                    _ => State::Dropped,
                };
                if watched && let Some(waker) = &slots.waker {
                    // Schedules the session; it runs after this task yields.
                    waker.wake_by_ref();
                }
            }
            State::Abandoned => slots.release(index),
            ref other => debug_assert!(false, "a slot is settled once: {other:?}"),
        }
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        if self.open {
            self.settle(None);
        }
    }
}

/// The session's end of a slot: its reply, once the connection has put it there.
#[derive(Debug)]
pub struct Ticket {
    mailbox: Arc<Mailbox>,
    index: u32,
    /// The reply (or the slot's drop) has not been taken yet.
    open: bool,
}

impl Ticket {
    /// The reply, or `Ready(None)` if the connection let go of the slot without one; `Pending`
    /// (and the session is woken when it comes) until then.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<NodeResult>> {
        self.take(Some(cx))
    }

    /// As [`Ticket::poll`], without waiting: `Pending` means no reply yet.
    pub fn try_take(&mut self) -> Poll<Option<NodeResult>> {
        self.take(None)
    }

    fn take(&mut self, cx: Option<&mut Context<'_>>) -> Poll<Option<NodeResult>> {
        if !self.open {
            // Taken already: the slot may be another request's by now.
            debug_assert!(false, "a reply is taken once");
            return Poll::Ready(None);
        }
        let mut guard = self.mailbox.lock();
        let slots = &mut *guard;
        let index = self.index;
        let taken = match &mut slots.states[index as usize] {
            State::Waiting { watched } => {
                if let Some(cx) = cx {
                    *watched = true;
                    if !slots
                        .waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        slots.waker = Some(cx.waker().clone());
                    }
                }
                return Poll::Pending;
            }
            State::Ready(_) => {
                let State::Ready(result) =
                    std::mem::replace(&mut slots.states[index as usize], State::Free)
                else {
                    unreachable!("matched above")
                };
                self.mailbox.picked_up(&result);
                Some(result)
            }
            State::Dropped => None,
            State::Free | State::Abandoned => {
                debug_assert!(false, "an open ticket's slot is reserved");
                None
            }
        };
        slots.release(index);
        self.open = false;
        Poll::Ready(taken)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let mut slots = self.mailbox.lock();
        match std::mem::replace(&mut slots.states[self.index as usize], State::Abandoned) {
            State::Waiting { .. } => {}
            State::Ready(result) => {
                // Charged and never taken: off the budget all the same.
                self.mailbox.picked_up(&result);
                slots.release(self.index);
            }
            _ => slots.release(self.index),
        }
    }
}

/// Where a job's reply goes: a session's mailbox slot, or a oneshot for one-off requests
/// (health checks, topology queries, pub/sub bookkeeping).
#[derive(Debug)]
pub enum ReplyTo {
    /// A slot of a session's mailbox (every request a session sends).
    Slot(ReplySlot),
    /// A oneshot ([`Lane::send`](super::Lane::send)).
    Once(oneshot::Sender<NodeResult>),
}

impl ReplyTo {
    /// Hands the reply over; a receiver that is gone never sees it.
    pub fn send(self, result: NodeResult) {
        match self {
            ReplyTo::Slot(slot) => slot.send(result),
            ReplyTo::Once(sender) => {
                let _ = sender.send(result);
            }
        }
    }

    /// Nobody waits for the reply any more.
    pub fn is_closed(&self) -> bool {
        match self {
            ReplyTo::Slot(slot) => slot.is_closed(),
            ReplyTo::Once(sender) => sender.is_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use bytes::Bytes;

    use super::*;
    use crate::protocol::Reply;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reply(text: &'static [u8]) -> NodeResult {
        Ok(Reply::local(Bytes::from_static(text)))
    }

    fn ready(poll: Poll<Option<NodeResult>>) -> Reply {
        match poll {
            Poll::Ready(Some(Ok(reply))) => reply,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reply_wakes_the_session_only_if_it_waits_on_that_slot() {
        let mailbox = Mailbox::new(None);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (front_slot, mut front) = mailbox.reserve();
        let (behind_slot, mut behind) = mailbox.reserve();

        assert!(front.poll(&mut cx).is_pending());
        behind_slot.send(reply(b"+behind\r\n"));
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "nobody waits on it yet");
        front_slot.send(reply(b"+front\r\n"));
        assert_eq!(count.0.load(Ordering::Relaxed), 1);

        assert_eq!(ready(front.poll(&mut cx)).raw().as_ref(), b"+front\r\n");
        assert_eq!(ready(behind.try_take()).raw().as_ref(), b"+behind\r\n");
        assert_eq!(mailbox.in_use(), 0);
        drop((front, behind));
        assert_eq!(
            mailbox.in_use(),
            0,
            "a ticket that took its reply frees nothing twice"
        );
    }

    #[test]
    fn slots_are_reused_once_both_sides_let_go() {
        let mailbox = Mailbox::new(None);
        let (slot, ticket) = mailbox.reserve();
        drop(ticket);
        assert!(
            slot.is_closed(),
            "the session let go: the request need not be sent"
        );
        assert_eq!(mailbox.in_use(), 1, "the connection still holds it");
        slot.send(reply(b"+late\r\n"));
        assert_eq!(mailbox.in_use(), 0);

        let (slot, mut ticket) = mailbox.reserve();
        assert!(!slot.is_closed());
        assert!(ticket.try_take().is_pending());
        drop(slot);
        assert!(
            matches!(ticket.try_take(), Poll::Ready(None)),
            "a slot dropped without a reply says so"
        );
        let (_, _) = mailbox.reserve();
        assert_eq!(mailbox.lock().states.len(), 1, "the freed slot was reused");
    }

    #[test]
    fn replies_in_slots_count_against_the_budget_until_taken() {
        let alarm = Arc::new(crate::alarm::Alarm::default());
        let budget = Arc::new(ReplyBudget::new(30, alarm, Default::default()));
        let mailbox = Mailbox::new(Some(budget.clone()));
        let (slot, mut ticket) = mailbox.reserve();
        slot.send(reply(b"+four\r\n"));
        assert_eq!(budget.held(), 7);
        let _ = ready(ticket.try_take());
        assert_eq!(budget.held(), 0, "taken off once the session has it");

        let (slot, ticket) = mailbox.reserve();
        slot.send(reply(b"+left\r\n"));
        drop(ticket);
        assert_eq!(
            budget.held(),
            0,
            "a reply nobody took is off the budget too"
        );

        let (slot, ticket) = mailbox.reserve();
        drop(ticket);
        slot.send(reply(b"+abandoned\r\n"));
        assert_eq!(budget.held(), 0, "a reply for nobody is never charged");

        let (slot, mut ticket) = mailbox.reserve();
        slot.send(reply(b"+more than thirty bytes in all\r\n"));
        assert!(budget.spent(), "the client is over its limit");
        let (slot, mut next) = mailbox.reserve();
        slot.send(reply(b"+x\r\n"));
        assert!(
            matches!(next.try_take(), Poll::Ready(None)),
            "replies after that are not kept"
        );
        let _ = ready(ticket.try_take());
        assert_eq!(mailbox.in_use(), 0);
    }

    #[tokio::test]
    async fn a_oneshot_reply_reaches_its_receiver_and_knows_when_it_is_gone() {
        let (tx, rx) = oneshot::channel();
        let to = ReplyTo::Once(tx);
        assert!(!to.is_closed());
        to.send(reply(b"+OK\r\n"));
        assert_eq!(rx.await.unwrap().unwrap().raw().as_ref(), b"+OK\r\n");

        let (tx, rx) = oneshot::channel::<NodeResult>();
        drop(rx);
        assert!(ReplyTo::Once(tx).is_closed());
    }
}
