//! `ReplyBudget`: the reply bytes one client's requests hold between the node connections and
//! the client's session, so a client that never reads can be stopped before they pile up.
//!
//! A node connection adds each reply it hands to the client's session; the session takes them
//! off as it picks the replies up (from then on they are in its output buffer, which it counts
//! itself). Crossing the limit wakes the session, which disconnects the client; replies that
//! arrive after that are dropped rather than held, so the bytes held stay near the limit however
//! fast the nodes answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::alarm::{Alarm, Bells};

/// Reply bytes delivered to one session and not yet picked up, against a limit.
#[derive(Debug)]
pub struct ReplyBudget {
    held: AtomicUsize,
    /// The session's output buffer as of its last check, counted against the same limit.
    buffered: AtomicUsize,
    limit: usize,
    /// The limit was crossed once: the client is being disconnected.
    spent: AtomicBool,
    /// The session's alarm, rung once when the limit is crossed.
    alarm: Arc<Alarm>,
}

impl ReplyBudget {
    /// A budget that rings `alarm` once more than `limit` bytes are held.
    pub fn new(limit: usize, alarm: Arc<Alarm>) -> Self {
        Self {
            held: AtomicUsize::new(0),
            buffered: AtomicUsize::new(0),
            limit,
            spent: AtomicBool::new(false),
            alarm,
        }
    }

    /// A node connection has a reply of `bytes` for the session: whether to hand it over.
    ///
    /// `false` once the limit has been crossed: the session is disconnecting its client, and
    /// the reply must be dropped instead of held.
    pub fn add(&self, bytes: usize) -> bool {
        if self.spent.load(Ordering::Relaxed) {
            return false;
        }
        let held = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if held + self.buffered.load(Ordering::Relaxed) > self.limit {
            self.spent.store(true, Ordering::Relaxed);
            self.alarm.ring(Bells::BUDGET);
        }
        true
    }

    /// Whether the limit was crossed (for good: the client must go).
    pub fn spent(&self) -> bool {
        self.spent.load(Ordering::Relaxed)
    }

    /// The session picked up a reply of `bytes`.
    pub fn take(&self, bytes: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }

    /// The session's output buffer now holds `bytes` (replies picked up, not yet written).
    pub fn set_buffered(&self, bytes: usize) {
        self.buffered.store(bytes, Ordering::Relaxed);
    }

    /// Bytes delivered and not yet picked up.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_the_limit_is_signalled_and_taking_never_underflows() {
        let alarm = Arc::new(Alarm::default());
        let budget = ReplyBudget::new(10, alarm.clone());
        assert!(budget.add(6));
        assert!(budget.add(4));
        assert_eq!(budget.held(), 10);
        let mut crossed = std::pin::pin!(alarm.rung());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(crossed.as_mut().poll(&mut cx).is_pending());
        assert!(budget.add(1));
        assert!(crossed.as_mut().poll(&mut cx).is_ready());
        assert!(budget.spent());
        assert!(!budget.add(1), "replies after the crossing are dropped");
        budget.take(100);
        assert_eq!(budget.held(), 0);
        assert!(budget.spent());
    }
}
