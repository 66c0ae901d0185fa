//! The reply queue: one `Pending` entry per request in the order the client sent them; replies
//! leave only from the front. Each entry keeps one absolute index from its push to its reply
//! (what the command metrics pair a request's start with its reply by). No I/O: the session
//! decides when entries are sent (`order.rs`) and settles them (`settle.rs`).

use std::collections::VecDeque;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use tokio::time::Instant;

use super::attempt::{InFlight, Retry, Split, Step};
use super::plan::Plan;
use super::tracking_state::{Prefixes, TrackingOn};
use crate::backend::NodeResult;
use crate::error::ReplyError;
use crate::protocol::Request;

/// A request's place in the reply queue.
pub(super) enum Pending {
    /// The reply is known; write it when it reaches the front.
    Done(Bytes),
    /// Write this reply, then close the connection (`QUIT`, protocol errors).
    Close(Bytes),
    /// Sent to a node; waiting for its reply.
    Waiting(InFlight),
    /// Waiting to be retried after a backoff.
    Backoff(Retry),
    /// Sent in parts (split by slot, fanned out, or one read per key of a command the proxy
    /// computes); merged when all are done.
    Split(Box<Split>),
    /// Not sent yet: the slot map changed while older requests were in flight.
    Deferred(Request, Plan),
    /// The reply comes through the session's inbox, in order with its messages (pub/sub).
    Inbox,
    /// The reply is computed by a future the session polls while the entry is at the front
    /// (PUBLISH and PUBSUB through the hub, WAIT, `CLIENT TRACKING ON`'s listeners): dropping
    /// the session drops it, which stops whatever it waits for.
    Task(Task),
}

/// A future that settles a queue entry.
pub(super) struct Task {
    future: Pin<Box<dyn Future<Output = TaskOutcome> + Send>>,
    /// Blocks the client like a blocking command: a client that leaves, or a drain, closes the
    /// session at once rather than waiting for it.
    blocks: bool,
}

impl Task {
    /// A task that ends on its own soon (the hub's answer).
    pub(super) fn new(future: impl Future<Output = TaskOutcome> + Send + 'static) -> Task {
        Task {
            future: Box::pin(future),
            blocks: false,
        }
    }

    /// A task that may wait as long as the client allows (WAIT's timeout).
    pub(super) fn blocking(future: impl Future<Output = TaskOutcome> + Send + 'static) -> Task {
        Task {
            future: Box::pin(future),
            blocks: true,
        }
    }

    /// Polls the future once.
    pub(super) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<TaskOutcome> {
        self.future.as_mut().poll(cx)
    }
}

/// What the session waits for at the front of its queue before it can write the next reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrontWait {
    /// A node's reply or a task's outcome (`front_reply`).
    pub(super) reply: bool,
    /// The end of a backoff, to send the front entry (or a part of it) again.
    pub(super) retry_at: Option<Instant>,
}

/// What a `Pending::Task` ends with.
pub(super) enum TaskOutcome {
    /// The reply.
    Reply(Bytes),
    /// Send the request the usual way after all.
    Dispatch(Request, Plan),
    /// A `CLIENT TRACKING ON`'s prefix set, built off the I/O thread: turn tracking on with it.
    Tracking(Prefixes, TrackingOn),
}

/// What the front entry's wait produced.
pub(super) enum FrontEvent {
    /// The reply of a single request.
    Single(NodeResult),
    /// The reply of part `index` of a split request.
    Part(usize, NodeResult),
    /// The outcome of a `Task`.
    Task(TaskOutcome),
}

/// Waits for the next reply of the front entry (`Waiting`, or a `Split` with waiting parts).
///
/// # Cancel safety
/// Cancel safe: a reply stays in its channel until this future completes.
pub(super) fn front_reply(
    pending: &mut VecDeque<Pending>,
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
        Some(Pending::Task(task)) => task.poll(cx).map(FrontEvent::Task),
        _ => Poll::Pending,
    })
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

/// `VecDeque<Pending>` plus the number of entries popped from its front so far.
///
/// `push_front` only ever puts back (a settled form of) the entry just popped, so it undoes
/// that pop's count.
#[derive(Default)]
pub(super) struct Queue {
    entries: VecDeque<Pending>,
    popped: u64,
}

impl Queue {
    /// Removes the front entry.
    pub(super) fn pop_front(&mut self) -> Option<Pending> {
        let entry = self.entries.pop_front();
        if entry.is_some() {
            self.popped += 1;
        }
        entry
    }

    /// Puts an entry back at the front, in place of the one just popped.
    pub(super) fn push_front(&mut self, entry: Pending) {
        self.popped = self.popped.wrapping_sub(1);
        self.entries.push_front(entry);
    }

    /// Drops every entry.
    pub(super) fn clear(&mut self) {
        self.popped += self.entries.len() as u64;
        self.entries.clear();
    }

    /// What the front entry waits for.
    pub(super) fn front_wait(&self) -> FrontWait {
        let (reply, retry_at) = match self.entries.front() {
            Some(Pending::Waiting(_) | Pending::Task(_)) => (true, None),
            Some(Pending::Backoff(retry)) => (false, Some(retry.until)),
            Some(Pending::Split(split)) => (split.waiting(), split.next_retry()),
            _ => (false, None),
        };
        FrontWait { reply, retry_at }
    }

    /// True when the front entry blocks the client (a blocking command on the session's
    /// dedicated connection, or a blocking task): such a client is closed at once when it
    /// leaves or the proxy drains, since its reply may never come.
    pub(super) fn front_blocks(&self) -> bool {
        match self.entries.front() {
            Some(Pending::Waiting(in_flight)) => in_flight.is_dedicated(),
            Some(Pending::Task(task)) => task.blocks,
            _ => false,
        }
    }

    /// True while an entry is not settled yet (its reply is not known).
    pub(super) fn unsettled(&self) -> bool {
        self.entries
            .iter()
            .any(|p| !matches!(p, Pending::Done(_) | Pending::Close(_)))
    }

    /// The absolute index of the front entry.
    pub(super) fn front_index(&self) -> u64 {
        self.popped
    }

    /// The absolute index the next `push_back` gets.
    pub(super) fn next_index(&self) -> u64 {
        self.popped + self.entries.len() as u64
    }
}

impl Deref for Queue {
    type Target = VecDeque<Pending>;

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl DerefMut for Queue {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.entries
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::session::attempt::Attempt;
    use crate::session::target::Target;

    fn done(text: &'static [u8]) -> Pending {
        Pending::Done(Bytes::from_static(text))
    }

    fn retry(until: Instant) -> Pending {
        Pending::Backoff(Retry {
            until,
            request: Request::from_args(vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]),
            target: Target::AnyPrimary,
            attempt: Attempt::default(),
        })
    }

    fn task(blocking: bool) -> Pending {
        let future = std::future::pending::<TaskOutcome>();
        Pending::Task(match blocking {
            true => Task::blocking(future),
            false => Task::new(future),
        })
    }

    #[test]
    fn the_front_entry_says_what_the_session_waits_for() {
        let mut queue = Queue::default();
        let idle = FrontWait {
            reply: false,
            retry_at: None,
        };
        assert_eq!(queue.front_wait(), idle);
        queue.push_back(done(b"+OK\r\n"));
        assert_eq!(
            queue.front_wait(),
            idle,
            "a settled reply waits for nothing"
        );
        queue.clear();
        let until = Instant::now() + Duration::from_millis(50);
        queue.push_back(retry(until));
        queue.push_back(task(false));
        assert_eq!(
            queue.front_wait(),
            FrontWait {
                reply: false,
                retry_at: Some(until)
            },
            "a backoff waits for its timer, not for what is behind it"
        );
        queue.pop_front();
        assert!(
            queue.front_wait().reply,
            "a task is awaited like a node's reply"
        );
    }

    #[test]
    fn only_a_blocking_front_entry_blocks_the_client() {
        let mut queue = Queue::default();
        queue.push_back(task(false));
        assert!(!queue.front_blocks(), "the hub's answer comes soon");
        queue.push_back(task(true));
        assert!(!queue.front_blocks(), "only the front entry counts");
        queue.pop_front();
        assert!(queue.front_blocks(), "WAIT may take as long as its timeout");
    }

    #[test]
    fn settled_means_every_reply_is_known() {
        let mut queue = Queue::default();
        assert!(!queue.unsettled());
        queue.push_back(done(b"+OK\r\n"));
        queue.push_back(Pending::Close(Bytes::from_static(b"-ERR bye\r\n")));
        assert!(!queue.unsettled());
        queue.push_back(Pending::Inbox);
        assert!(
            queue.unsettled(),
            "a subscription's confirmation is still to come"
        );
    }

    #[test]
    fn an_entry_keeps_its_index_through_pops_and_put_backs() {
        let mut queue = Queue::default();
        assert_eq!(queue.next_index(), 0);
        queue.push_back(done(b"+a\r\n"));
        queue.push_back(done(b"+b\r\n"));
        assert_eq!(queue.next_index(), 2);
        let first = queue.pop_front().unwrap();
        queue.push_front(first);
        assert_eq!(queue.front_index(), 0);
        queue.pop_front();
        assert_eq!(queue.front_index(), 1);
        queue.clear();
        assert_eq!(queue.front_index(), 2);
        assert_eq!(queue.next_index(), 2);
    }
}
