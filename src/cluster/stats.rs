//! `RefreshStats`: how the slot map has been followed (refreshes, failovers, age), for
//! `/metrics`, `/cluster` and `CLUSTER INFO`. Atomics written by the refresher only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::slot_map::SlotMap;
use crate::error::ReplyError;

/// Counters of the refresher.
#[derive(Debug)]
pub struct RefreshStats {
    /// When the stats began: the base of the millisecond stamps below.
    since: Instant,
    refreshes_ok: AtomicU64,
    refreshes_failed: AtomicU64,
    /// Slot ranges seen changing primary between two published maps.
    failovers: AtomicU64,
    /// Milliseconds after `since` when the current map was published (0: never).
    published_ms: AtomicU64,
    /// Milliseconds after `since` when a node last answered a refresh or health check (0: never).
    answered_ms: AtomicU64,
    /// No node has answered for longer than `down_after_ms`: requests fail at once.
    down: AtomicBool,
    /// See `down`; the session retry deadline.
    down_after_ms: AtomicU64,
}

impl Default for RefreshStats {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            refreshes_ok: AtomicU64::new(0),
            refreshes_failed: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            published_ms: AtomicU64::new(0),
            answered_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            down_after_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl RefreshStats {
    fn now_ms(&self) -> u64 {
        // At least 1, so that 0 keeps meaning "never".
        u64::try_from(self.since.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Sets how long the cluster may stay silent before requests fail at once (the session
    /// retry deadline: waiting longer than that can't help any request).
    pub fn set_down_after(&self, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.down_after_ms.store(ms, Ordering::Relaxed);
    }

    /// Records that a node answered (a refresh or a health check): the cluster is not down.
    pub(crate) fn node_answered(&self) {
        self.answered_ms.store(self.now_ms(), Ordering::Relaxed);
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("a cluster node answers again; requests are sent again");
        }
    }

    /// Re-evaluates whether the cluster counts as down; called on every health check round.
    pub(crate) fn check_down(&self) {
        let silent = self.since_answer().unwrap_or_else(|| self.since.elapsed());
        let after = Duration::from_millis(self.down_after_ms.load(Ordering::Relaxed));
        if silent > after && !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                silent_ms = silent.as_millis() as u64,
                "no cluster node has answered for longer than the retry deadline; requests fail at once with CLUSTERDOWN until one does"
            );
        }
    }

    /// Why requests should fail at once, when no node has answered for longer than the retry
    /// deadline; `None` otherwise (the common case costs one relaxed load).
    pub fn down_reason(&self) -> Option<ReplyError> {
        if !self.down.load(Ordering::Relaxed) {
            return None;
        }
        Some(match self.since_answer() {
            Some(silent) => ReplyError::ClusterSilent(silent.as_secs()),
            None => ReplyError::ClusterSilentSinceStart,
        })
    }

    /// Counts one refresh and whether a node answered it.
    pub(crate) fn refreshed(&self, ok: bool) {
        if ok {
            self.refreshes_ok.fetch_add(1, Ordering::Relaxed);
            self.node_answered();
        } else {
            self.refreshes_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a published map, counting the slot ranges of `next` that `previous` gave to
    /// another primary (a failover or a migration seen by the proxy).
    pub(crate) fn published(&self, previous: &SlotMap, next: &SlotMap) {
        let mut moved = 0;
        for layout in next.layout() {
            for &(start, _) in &layout.ranges {
                let old = previous
                    .primary(super::Slot(start))
                    .map(|node| node.addr().to_string());
                if old.is_some_and(|old| old != layout.primary) {
                    moved += 1;
                }
            }
        }
        self.failovers.fetch_add(moved, Ordering::Relaxed);
        self.published_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Successful and failed refreshes so far.
    pub fn refreshes(&self) -> (u64, u64) {
        (
            self.refreshes_ok.load(Ordering::Relaxed),
            self.refreshes_failed.load(Ordering::Relaxed),
        )
    }

    /// Slot ranges seen changing primary.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Time since the current map was published, if one was.
    pub fn map_age(&self) -> Option<Duration> {
        self.age_of(self.published_ms.load(Ordering::Relaxed))
    }

    /// Time since a node last answered a refresh, if one ever did.
    pub fn since_answer(&self) -> Option<Duration> {
        self.age_of(self.answered_ms.load(Ordering::Relaxed))
    }

    fn age_of(&self, stamp_ms: u64) -> Option<Duration> {
        (stamp_ms > 0).then(|| {
            self.since
                .elapsed()
                .saturating_sub(Duration::from_millis(stamp_ms))
        })
    }
}
