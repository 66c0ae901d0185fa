//! `ClientMemory`: the bytes all clients hold in slotproxy, against one process-wide budget
//! (`session.max_client_memory_bytes`, like redis 7's `maxmemory-clients`).
//!
//! Each client's [`ReplyBudget`](super::ReplyBudget) publishes its usage here, but only when it
//! moved by [`STEP`] since the last time: a client that holds a few small replies never touches
//! the shared counter, so the hot path pays a few relaxed loads, and the counter is off by less
//! than `STEP` per client. A publish that takes the sum over the budget runs the pool's
//! [`Evictor`] right there, on the thread that crossed it (usually a node connection about to
//! hand a reply over), so the victims stop receiving replies before the next one is read; with
//! no evictor set, the caller rings its session's alarm instead. The evictor picks the victims
//! (`clients::Registry`), largest first. This file knows nothing of sessions or the registry.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// A client's usage is published when it moved by at least this much since the last publish.
pub const STEP: usize = 16 * 1024;

/// A share that was taken out (its client left or was evicted): nothing is published any more.
const CLOSED: usize = usize::MAX;

/// Evicts clients until the pool is back under its budget; set once by whoever owns the clients.
pub type Evictor = Box<dyn Fn() + Send + Sync>;

/// The sum of every client's published usage, and the budget it is held to.
#[derive(Default)]
pub struct ClientMemory {
    /// Sum of the shares' published figures. Signed: two publishes of one share may land in
    /// either order, so the sum can dip below zero for a moment.
    used: AtomicI64,
    /// The budget in bytes; 0 turns it off.
    limit: AtomicUsize,
    /// Held while victims are picked, so two passes don't both evict for the same excess.
    pass: Mutex<()>,
    /// Run when a publish takes the sum over the budget.
    evictor: OnceLock<Evictor>,
}

impl std::fmt::Debug for ClientMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMemory")
            .field("used", &self.used)
            .field("limit", &self.limit)
            .field("evictor", &self.evictor.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ClientMemory {
    /// A pool held to `limit` bytes (0: no limit).
    pub fn new(limit: usize) -> Self {
        let memory = Self::default();
        memory.set_limit(limit);
        memory
    }

    /// Sets the budget (a config reload); 0 turns it off.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The budget in bytes (0: off).
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes the clients hold, as last published.
    pub fn used(&self) -> usize {
        usize::try_from(self.used.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Bytes over the budget (0 when under it or when it is off).
    pub fn excess(&self) -> usize {
        match self.limit() {
            0 => 0,
            limit => self.used().saturating_sub(limit),
        }
    }

    /// Sets what runs when a publish takes the pool over its budget (once; later calls are
    /// ignored).
    pub fn set_evictor(&self, evictor: Evictor) {
        let _ = self.evictor.set(evictor);
    }

    /// The pool just went over its budget: runs the evictor now. False when there is none (the
    /// caller rings its session to pick the victims instead).
    pub fn evict_now(&self) -> bool {
        match self.evictor.get() {
            Some(evict) => {
                evict();
                true
            }
            None => false,
        }
    }

    /// Runs `pick` alone among the passes that pick victims.
    pub fn one_pass<T>(&self, pick: impl FnOnce() -> T) -> T {
        let _pass = self.pass.lock().unwrap_or_else(|e| e.into_inner());
        pick()
    }

    /// Moves a share's published figure from `old` to `new`; true when it grew and the sum is
    /// now over the budget.
    fn shift(&self, old: usize, new: usize) -> bool {
        let delta = i64::try_from(new).unwrap_or(i64::MAX) - i64::try_from(old).unwrap_or(i64::MAX);
        let used = self.used.fetch_add(delta, Ordering::Relaxed) + delta;
        let limit = self.limit();
        delta > 0 && limit != 0 && used > i64::try_from(limit).unwrap_or(i64::MAX)
    }
}

/// One client's part of [`ClientMemory`]: what it last published there.
#[derive(Debug, Default)]
pub struct Share {
    published: AtomicUsize,
}

impl Share {
    /// The client now holds `bytes`: publishes them if they moved by [`STEP`]. True when this
    /// took the pool over its budget (the caller has victims picked).
    pub fn update(&self, memory: &ClientMemory, bytes: usize) -> bool {
        let published = self.published.load(Ordering::Relaxed);
        if published == CLOSED || bytes.abs_diff(published) < STEP {
            return false;
        }
        // A concurrent publish or close won: its figure stands, and this one is dropped (the
        // next change publishes again).
        self.published
            .compare_exchange(published, bytes, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && memory.shift(published, bytes)
    }

    /// What this share counts in the pool now.
    pub fn published(&self) -> usize {
        match self.published.load(Ordering::Relaxed) {
            CLOSED => 0,
            bytes => bytes,
        }
    }

    /// Takes the share out of the pool for good; returns what it counted there (0 if it was
    /// already out).
    pub fn close(&self, memory: &ClientMemory) -> usize {
        match self.published.swap(CLOSED, Ordering::Relaxed) {
            CLOSED => 0,
            bytes => {
                memory.shift(bytes, 0);
                bytes
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_changes_are_not_published_and_crossing_the_budget_is_reported_once_per_rise() {
        let memory = ClientMemory::new(100 * 1024);
        let (a, b) = (Share::default(), Share::default());
        assert!(!a.update(&memory, STEP - 1));
        assert_eq!(memory.used(), 0, "under a step: nothing published");
        assert!(!a.update(&memory, 60 * 1024));
        assert_eq!(memory.used(), 60 * 1024);
        assert!(b.update(&memory, 50 * 1024), "the sum passed the budget");
        assert_eq!(memory.excess(), 10 * 1024);
        assert!(
            !b.update(&memory, 50 * 1024 + STEP - 1),
            "no publish, no report"
        );
        assert!(!b.update(&memory, 20 * 1024), "shrinking is never reported");
        assert_eq!(memory.excess(), 0);
        assert_eq!(a.close(&memory), 60 * 1024);
        assert_eq!(a.close(&memory), 0, "closed once");
        assert!(
            !a.update(&memory, 10 * STEP),
            "a closed share publishes nothing"
        );
        assert_eq!(memory.used(), 20 * 1024);
        assert_eq!(b.published(), 20 * 1024);
    }

    #[test]
    fn a_zero_limit_is_off() {
        let memory = ClientMemory::new(0);
        let share = Share::default();
        assert!(!share.update(&memory, 1 << 40));
        assert_eq!(memory.excess(), 0);
        assert_eq!(memory.used(), 1 << 40);
    }
}
