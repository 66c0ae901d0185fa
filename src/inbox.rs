//! A client's inbox: frames other tasks send one client (pub/sub messages; later, tracking
//! invalidations), and the replies that must be written in step with them.
//!
//! Producers (the pub/sub hub) hold an [`InboxSender`] and never wait: a frame is encoded in the
//! client's current protocol and queued, or refused once the client is over its output limit.
//! The session owns the [`Inbox`] and writes what it holds between its replies:
//! - `Item::Push`: out of band, written as soon as the session's output allows.
//! - `Item::Reply`: the reply to one of the client's requests (a subscription confirmation),
//!   produced by the hub at the point where it took effect. The session writes it when that
//!   request reaches the front of its reply queue; pushes queued after it wait behind it, so a
//!   message never overtakes the confirmation of its subscription, nor follows an unsubscribe's.
//!
//! The limit works like redis' `client-output-buffer-limit pubsub`: the client's backlog is what
//! its inbox holds plus what the session has not written to the socket yet (it reports that with
//! [`Inbox::set_unsent`]). Past the hard limit, or past the soft limit for longer than its time,
//! the inbox is marked overflowed, dropped, and refuses everything; the session then closes the
//! connection, as redis-server does. Knows nothing about sockets, nodes or channels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::protocol::Protocol;

/// Output limits for a client that receives pushes; 0 disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Backlog past which the client is dropped at once.
    pub hard_bytes: usize,
    /// Backlog past which the client is dropped if it stays there for `soft_time`.
    pub soft_bytes: usize,
    /// How long the backlog may stay above `soft_bytes`.
    pub soft_time: Duration,
}

/// One queued frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An out-of-band frame (a pub/sub message).
    Push(Bytes),
    /// The reply to the client's oldest request waiting on the inbox.
    Reply(Bytes),
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The client is over its output limit and is being disconnected.
    #[error("client output buffer limit reached")]
    Overflowed,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Item>,
    /// Bytes of the queued `Push` items.
    push_bytes: usize,
    protocol: Protocol,
    overflowed: bool,
    /// Since when the backlog has been above the soft limit.
    soft_since: Option<Instant>,
}

#[derive(Debug)]
struct State {
    queue: Mutex<Queue>,
    /// Output the session has not written to its socket yet.
    unsent: AtomicUsize,
    /// Live `InboxSender`s; when none is left, no reply can come any more.
    senders: AtomicUsize,
    notify: Notify,
    limits: Limits,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is still consistent.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The session's end: takes queued items in order.
#[derive(Debug)]
pub struct Inbox {
    state: Arc<State>,
}

/// A producer's end: queues frames without ever waiting.
#[derive(Debug)]
pub struct InboxSender {
    state: Arc<State>,
}

impl Inbox {
    /// An empty inbox for a client speaking `protocol`.
    pub fn new(protocol: Protocol, limits: Limits) -> Self {
        Self {
            state: Arc::new(State {
                queue: Mutex::new(Queue {
                    items: VecDeque::new(),
                    push_bytes: 0,
                    protocol,
                    overflowed: false,
                    soft_since: None,
                }),
                unsent: AtomicUsize::new(0),
                senders: AtomicUsize::new(0),
                notify: Notify::new(),
                limits,
            }),
        }
    }

    /// A new producer handle.
    pub fn sender(&self) -> InboxSender {
        self.state.senders.fetch_add(1, Ordering::AcqRel);
        InboxSender {
            state: self.state.clone(),
        }
    }

    /// The front item if it is a push, or a reply when `take_reply` says the session is ready
    /// for it; `None` when the inbox is empty or a reply waits for its turn.
    pub fn pop(&self, take_reply: bool) -> Option<Item> {
        let mut queue = self.state.lock();
        match queue.items.front()? {
            Item::Push(_) => {
                let item = queue.items.pop_front();
                if let Some(Item::Push(frame)) = &item {
                    queue.push_bytes -= frame.len();
                }
                item
            }
            Item::Reply(_) if take_reply => queue.items.pop_front(),
            Item::Reply(_) => None,
        }
    }

    /// Sets the protocol producers encode in (for a client that is not waiting on the inbox;
    /// otherwise the change travels with a reply, see `InboxSender::reply`).
    pub fn set_protocol(&self, protocol: Protocol) {
        self.state.lock().protocol = protocol;
    }

    /// Records how much output the session still has to write (part of the backlog).
    pub fn set_unsent(&self, bytes: usize) {
        self.state.unsent.store(bytes, Ordering::Relaxed);
    }

    /// True once the client went over its limit; it must be disconnected.
    pub fn overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// True when no producer is left, so a reply the session waits for will never come.
    pub fn abandoned(&self) -> bool {
        self.state.senders.load(Ordering::Acquire) == 0
    }

    /// Bytes of queued pushes (for tests and logs).
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().push_bytes
    }

    /// Resolves when an item was queued, the inbox overflowed, or the last producer left.
    ///
    /// # Cancel safety
    /// Cancel safe; a wake-up that finds nothing new is harmless.
    pub async fn changed(&self) {
        self.state.notify.notified().await;
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // Producers see a closed inbox as an overflowed one: they stop queueing for it.
        let mut queue = self.state.lock();
        queue.overflowed = true;
        queue.items.clear();
        queue.push_bytes = 0;
    }
}

impl InboxSender {
    /// Queues an out-of-band frame, encoded by `encode` in the client's current protocol.
    ///
    /// # Errors
    /// `Refused::Overflowed` when the client is (now) over its output limit; the frame is dropped
    /// and so is everything queued, and the session is told to disconnect.
    pub fn push(&self, encode: impl FnOnce(Protocol) -> Bytes) -> Result<(), Refused> {
        let limits = self.state.limits;
        let mut queue = self.state.lock();
        if queue.overflowed {
            return Err(Refused::Overflowed);
        }
        let frame = encode(queue.protocol);
        let backlog = queue.push_bytes + frame.len() + self.state.unsent.load(Ordering::Relaxed);
        let over_hard = limits.hard_bytes > 0 && backlog > limits.hard_bytes;
        let over_soft = limits.soft_bytes > 0 && backlog > limits.soft_bytes;
        let now = Instant::now();
        let soft_expired = match (over_soft, queue.soft_since) {
            (false, _) => {
                queue.soft_since = None;
                false
            }
            (true, None) => {
                queue.soft_since = Some(now);
                false
            }
            (true, Some(since)) => now.duration_since(since) > limits.soft_time,
        };
        if over_hard || soft_expired {
            queue.overflowed = true;
            queue.items.clear();
            queue.push_bytes = 0;
            drop(queue);
            self.state.notify.notify_one();
            return Err(Refused::Overflowed);
        }
        queue.push_bytes += frame.len();
        queue.items.push_back(Item::Push(frame));
        drop(queue);
        self.state.notify.notify_one();
        Ok(())
    }

    /// Queues the reply to the client's oldest request waiting on the inbox; with `switch`, the
    /// client speaks that protocol from this reply on (HELLO, RESET), so pushes queued after it
    /// are encoded in it. Replies are not subject to the limit (each answers a request).
    pub fn reply(&self, reply: Bytes, switch: Option<Protocol>) {
        let mut queue = self.state.lock();
        if queue.overflowed {
            return;
        }
        if let Some(protocol) = switch {
            queue.protocol = protocol;
        }
        queue.items.push_back(Item::Reply(reply));
        drop(queue);
        self.state.notify.notify_one();
    }

    /// True once the client is over its limit or gone; pushing to it is pointless.
    pub fn is_closed(&self) -> bool {
        self.state.lock().overflowed
    }
}

impl Clone for InboxSender {
    fn clone(&self) -> Self {
        self.state.senders.fetch_add(1, Ordering::AcqRel);
        Self {
            state: self.state.clone(),
        }
    }
}

impl Drop for InboxSender {
    fn drop(&mut self) {
        if self.state.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(hard: usize, soft: usize, soft_ms: u64) -> Limits {
        Limits {
            hard_bytes: hard,
            soft_bytes: soft,
            soft_time: Duration::from_millis(soft_ms),
        }
    }

    fn frame(p: Protocol) -> Bytes {
        Bytes::from_static(match p {
            Protocol::Resp2 => b"*1\r\n$1\r\nx\r\n",
            Protocol::Resp3 => b">1\r\n$1\r\nx\r\n",
        })
    }

    #[test]
    fn pushes_wait_behind_a_reply_until_the_session_takes_it() {
        let inbox = Inbox::new(Protocol::Resp2, limits(0, 0, 0));
        let tx = inbox.sender();
        tx.push(frame).unwrap();
        tx.reply(Bytes::from_static(b"+OK\r\n"), Some(Protocol::Resp3));
        tx.push(frame).unwrap();
        assert_eq!(inbox.pop(false), Some(Item::Push(frame(Protocol::Resp2))));
        assert_eq!(inbox.pop(false), None, "the reply waits for its turn");
        assert_eq!(
            inbox.pop(true),
            Some(Item::Reply(Bytes::from_static(b"+OK\r\n")))
        );
        // Encoded in the protocol the reply switched to.
        assert_eq!(inbox.pop(false), Some(Item::Push(frame(Protocol::Resp3))));
        assert_eq!(inbox.pop(true), None);
        assert_eq!(inbox.queued_bytes(), 0);
    }

    #[test]
    fn backlog_over_the_hard_limit_overflows_and_frees_the_queue() {
        let inbox = Inbox::new(Protocol::Resp2, limits(25, 0, 0));
        let tx = inbox.sender();
        tx.push(frame).unwrap(); // 11 bytes
        tx.push(frame).unwrap(); // 22
        assert_eq!(tx.push(frame), Err(Refused::Overflowed)); // 33 > 25
        assert!(inbox.overflowed());
        assert_eq!(inbox.queued_bytes(), 0);
        assert_eq!(tx.push(frame), Err(Refused::Overflowed));
    }

    #[test]
    fn unsent_output_counts_toward_the_limit() {
        let inbox = Inbox::new(Protocol::Resp2, limits(25, 0, 0));
        let tx = inbox.sender();
        inbox.set_unsent(20);
        assert_eq!(tx.push(frame), Err(Refused::Overflowed));
    }

    #[test]
    fn soft_limit_overflows_only_after_its_time() {
        let inbox = Inbox::new(Protocol::Resp2, limits(0, 15, 0));
        let tx = inbox.sender();
        tx.push(frame).unwrap(); // 11: under
        tx.push(frame).unwrap(); // 22: over, the clock starts
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(tx.push(frame), Err(Refused::Overflowed));

        let inbox = Inbox::new(Protocol::Resp2, limits(0, 15, 60_000));
        let tx = inbox.sender();
        for _ in 0..10 {
            tx.push(frame).unwrap();
        }
        assert!(!inbox.overflowed());
    }

    #[test]
    fn abandoned_once_every_sender_is_gone() {
        let inbox = Inbox::new(Protocol::Resp2, limits(0, 0, 0));
        assert!(inbox.abandoned());
        let tx = inbox.sender();
        let tx2 = tx.clone();
        drop(tx);
        assert!(!inbox.abandoned());
        drop(tx2);
        assert!(inbox.abandoned());
    }
}
