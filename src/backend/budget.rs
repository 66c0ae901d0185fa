//! `ReplyBudget`: the reply bytes one client's requests hold between the node connections and
//! the client's session, so a client that never reads can be stopped before they pile up.
//!
//! A node connection adds each reply it hands to the client's session; the session takes them
//! off as it picks the replies up (from then on they are in its output buffer, which it counts
//! itself). Crossing the limit wakes the session, which disconnects the client; replies that
//! arrive after that are dropped rather than held, so the bytes held stay near the limit however
//! fast the nodes answer.
//!
//! The same figures, plus the session's input buffer, are the client's share of the
//! process-wide [`ClientMemory`]: every change publishes them there once they moved by a step,
//! and a change that takes the pool over its budget evicts clients at once (the pool's
//! evictor), or rings [`Bells::MEMORY`] when the pool has none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::client_memory::{ClientMemory, Share};
use crate::alarm::{Alarm, Bells};

/// Reply bytes delivered to one session and not yet picked up, against a limit.
#[derive(Debug)]
pub struct ReplyBudget {
    held: AtomicUsize,
    /// The session's output buffer as of its last check, counted against the same limit.
    buffered: AtomicUsize,
    /// The session's input buffer as of its last check (counted in the client's share of
    /// `memory`, not against `limit`).
    input: AtomicUsize,
    limit: usize,
    /// The limit was crossed once, or the client was evicted: it is being disconnected.
    spent: AtomicBool,
    /// The client was picked to free memory for the process-wide budget.
    evicted: AtomicBool,
    /// The session's alarm, rung once when the limit is crossed.
    alarm: Arc<Alarm>,
    /// Every client's memory, and this client's share of it.
    memory: Arc<ClientMemory>,
    share: Share,
}

impl ReplyBudget {
    /// A budget that rings `alarm` once more than `limit` bytes are held, and whose client
    /// counts in `memory`.
    pub fn new(limit: usize, alarm: Arc<Alarm>, memory: Arc<ClientMemory>) -> Self {
        Self {
            held: AtomicUsize::new(0),
            buffered: AtomicUsize::new(0),
            input: AtomicUsize::new(0),
            limit,
            spent: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            alarm,
            memory,
            share: Share::default(),
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
        self.publish();
        if self.evicted() {
            // Publishing it took the pool over its budget, and this client was picked: the
            // reply is dropped like those after it.
            self.take_back(bytes);
            return false;
        }
        true
    }

    fn take_back(&self, bytes: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }

    /// Rings the session's alarm.
    pub fn ring(&self, bell: Bells) {
        self.alarm.ring(bell);
    }

    /// The client's output limit (`session.max_output_buffer_bytes` as it was when the client
    /// connected).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the limit was crossed (for good: the client must go).
    pub fn spent(&self) -> bool {
        self.spent.load(Ordering::Relaxed)
    }

    /// The session picked up a reply of `bytes`: it counts as buffered until the session's
    /// next [`set_buffers`](Self::set_buffers), so it is never out of the count in between.
    pub fn take(&self, bytes: usize) {
        self.take_back(bytes);
        self.buffered.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The session's output buffer now holds `output` bytes (replies picked up, not yet
    /// written) and its input buffer `input`.
    pub fn set_buffers(&self, output: usize, input: usize) {
        self.buffered.store(output, Ordering::Relaxed);
        self.input.store(input, Ordering::Relaxed);
        self.publish();
    }

    /// Bytes the client holds: replies on their way, its output and input buffers.
    pub fn usage(&self) -> usize {
        self.held() + self.output_buffered() + self.input.load(Ordering::Relaxed)
    }

    /// Reply bytes the client holds: delivered and not yet picked up, or not yet written.
    pub fn output(&self) -> usize {
        self.held() + self.output_buffered()
    }

    fn output_buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Publishes the client's usage to the pool (when it moved by a step); over the pool's
    /// budget, evicts at once (or, with no evictor, rings the session to pick victims).
    fn publish(&self) {
        if self.share.update(&self.memory, self.usage()) && !self.memory.evict_now() {
            self.alarm.ring(Bells::MEMORY);
        }
    }

    /// The client was picked to free memory: its replies are dropped from now on and its share
    /// leaves the pool at once (its session frees the bytes when it ends). Returns the bytes
    /// the pool counted for it.
    pub fn evict(&self) -> usize {
        self.evicted.store(true, Ordering::Relaxed);
        self.spent.store(true, Ordering::Relaxed);
        self.share.close(&self.memory)
    }

    /// Whether the client was evicted for the process-wide budget.
    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The client left: its replies still on their way are dropped and its share leaves the
    /// pool.
    pub fn close(&self) {
        self.spent.store(true, Ordering::Relaxed);
        self.share.close(&self.memory);
    }

    /// The bytes the pool counts for this client now.
    pub fn published(&self) -> usize {
        self.share.published()
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
        let budget = ReplyBudget::new(10, alarm.clone(), Default::default());
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

    #[test]
    fn usage_is_published_to_the_pool_and_leaves_it_with_the_client() {
        let memory = Arc::new(ClientMemory::new(1 << 20));
        let alarm = Arc::new(Alarm::default());
        let budget = ReplyBudget::new(usize::MAX, alarm.clone(), memory.clone());
        budget.set_buffers(100, 1024);
        assert_eq!(memory.used(), 0, "below a step");
        assert!(budget.add(512 * 1024));
        budget.set_buffers(256 * 1024, 256 * 1024);
        assert_eq!(budget.usage(), 1 << 20);
        assert_eq!(memory.used(), 1 << 20);
        let mut rung = std::pin::pin!(alarm.rung());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            rung.as_mut().poll(&mut cx).is_pending(),
            "at the budget, not over"
        );
        assert!(budget.add(64 * 1024));
        assert_eq!(
            rung.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Bells::MEMORY)
        );
        assert_eq!(budget.evict(), (1 << 20) + 64 * 1024);
        assert_eq!(memory.used(), 0);
        assert!(budget.evicted() && budget.spent());
        assert!(!budget.add(1), "an evicted client's replies are dropped");
        budget.close();
        assert_eq!(memory.used(), 0);
    }
}
