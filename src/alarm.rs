//! `Alarm`: how other tasks and threads tell one session that something rare happened: its
//! client is over its reply budget (a node connection saw it), another client ordered it killed
//! or unblocked (`CLIENT KILL`, `CLIENT UNBLOCK`, `ACL DELUSER`), the clients' memory passed its
//! process-wide budget, or the proxy began to drain.
//!
//! The session's loop waits for these beside its socket and its replies, so it checks them on
//! every pass. A tokio `Notify` (or a `watch`) locks a mutex each time a waiting future is
//! polled again; three of them cost about 600 instructions per pass, 6% of a request. Here a
//! pass costs one atomic load and an `AtomicWaker` registration.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// What rang, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bells(u8);

impl Bells {
    /// The replies held for the client passed its limit.
    pub const BUDGET: Bells = Bells(1);
    /// Another client left an order (`clients::Order`), or an invalidation its tracking
    /// redirects here, in the session's registry entry.
    pub const ORDER: Bells = Bells(2);
    /// The proxy began to drain.
    pub const DRAIN: Bells = Bells(4);
    /// The clients' memory passed `session.max_client_memory_bytes`, through this session's
    /// client: pick clients to evict.
    pub const MEMORY: Bells = Bells(8);
    /// The client has been idle for [`crate::clients::IDLE_TRIM`]: free the buffers kept for
    /// reuse (rung once per idle spell by [`crate::clients::trim_idle`]).
    pub const TRIM: Bells = Bells(16);

    /// Whether `bell` is among these.
    pub fn contains(self, bell: Bells) -> bool {
        self.0 & bell.0 != 0
    }
}

/// One session's alarm; shared (`Arc`) with whatever may ring it.
#[derive(Debug, Default)]
pub struct Alarm {
    rung: AtomicU8,
    waker: AtomicWaker,
}

impl Alarm {
    /// Rings `bell` and wakes the session (a no-op wake when it is running).
    pub fn ring(&self, bell: Bells) {
        self.rung.fetch_or(bell.0, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Ready with every bell rung since the last time it was ready (and forgets them).
    ///
    /// # Cancel safety
    /// Cancel safe: bells rung while nobody waits are kept for the next call.
    pub fn rung(&self) -> impl Future<Output = Bells> + '_ {
        std::future::poll_fn(|cx| self.poll_rung(cx))
    }

    fn poll_rung(&self, cx: &mut Context<'_>) -> Poll<Bells> {
        if self.rung.load(Ordering::Acquire) == 0 {
            self.waker.register(cx.waker());
            // A ring between the load and the registration woke nobody: look again.
            if self.rung.load(Ordering::Acquire) == 0 {
                return Poll::Pending;
            }
        }
        Poll::Ready(Bells(self.rung.swap(0, Ordering::AcqRel)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bells_rung_before_or_while_waiting_are_all_reported_once() {
        let alarm = Alarm::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut rung = std::pin::pin!(alarm.rung());
        assert!(rung.as_mut().poll(&mut cx).is_pending());
        alarm.ring(Bells::ORDER);
        alarm.ring(Bells::DRAIN);
        let Poll::Ready(bells) = rung.as_mut().poll(&mut cx) else {
            panic!("rung");
        };
        assert!(bells.contains(Bells::ORDER) && bells.contains(Bells::DRAIN));
        assert!(!bells.contains(Bells::BUDGET));
        let mut again = std::pin::pin!(alarm.rung());
        assert!(
            again.as_mut().poll(&mut cx).is_pending(),
            "each ring is reported once"
        );
        alarm.ring(Bells::BUDGET);
        assert_eq!(again.as_mut().poll(&mut cx), Poll::Ready(Bells::BUDGET));
    }
}
