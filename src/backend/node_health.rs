//! `NodeHealth`: what the active health check last learned about one node, kept in atomics so
//! that every session can read it for each request without a lock.
//!
//! The health check task (`cluster::health_check`) is the only writer. A node nobody has checked yet
//! counts as up, in sync and of unknown round-trip time, which is how the proxy behaved before
//! it had health checks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use super::rtt_histogram::{RttBuckets, RttHistogram};
use tokio::time::Instant;

/// Weight of a new round-trip sample in the moving average, as `1 / RTT_SMOOTHING`.
const RTT_SMOOTHING: u64 = 4;

/// One node's health, as last measured.
#[derive(Debug)]
pub struct NodeHealth {
    /// The last health check was answered in time.
    up: AtomicBool,
    /// A replica whose link to its primary is down or still syncing (`master_link_status`).
    lagging: AtomicBool,
    /// Smoothed PING round-trip time in microseconds; 0 until the first sample.
    rtt_us: AtomicU64,
    /// Since when (`since_epoch` microseconds; 0: not busy) checks are answered `-BUSY`: the
    /// node runs a long script or function.
    busy_since_us: AtomicU64,
    /// That `-BUSY` reply, as the node worded it.
    busy_reply: Mutex<Option<Bytes>>,
    /// When a check was last answered at all (`since_epoch` microseconds; 0: never).
    answered_us: AtomicU64,
    /// Online replicas of this node (0 unless it is a primary), for `ack = replicated`.
    replicas: AtomicUsize,
    /// Every PING round trip, for `/metrics`.
    rtt_histogram: RttHistogram,
}

/// The process-wide origin of `answered_us`, so an `Instant` fits in an atomic; set when the
/// first node is created.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` as microseconds since `epoch()`, at least 1 (0 means "never").
fn since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A copy of a node's health at one instant, for picking a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// Answers its health checks.
    pub up: bool,
    /// A replica that is not in sync with its primary.
    pub lagging: bool,
    /// Smoothed round-trip time in microseconds, if measured.
    pub rtt_us: Option<u64>,
}

impl HealthSnapshot {
    /// Whether the node may serve reads: up, and not a lagging replica.
    pub fn serves_reads(&self) -> bool {
        self.up && !self.lagging
    }
}

impl Default for NodeHealth {
    fn default() -> Self {
        // Fixes the origin before any request to the node is sent, so every request's send
        // time maps to a distinct point after it.
        epoch();
        Self {
            up: AtomicBool::new(true),
            lagging: AtomicBool::new(false),
            rtt_us: AtomicU64::new(0),
            busy_since_us: AtomicU64::new(0),
            busy_reply: Mutex::new(None),
            answered_us: AtomicU64::new(0),
            replicas: AtomicUsize::new(0),
            rtt_histogram: RttHistogram::default(),
        }
    }
}

impl NodeHealth {
    /// Whether the last health check was answered (true until one fails).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The current state, read once.
    pub fn snapshot(&self) -> HealthSnapshot {
        let rtt = self.rtt_us.load(Ordering::Relaxed);
        HealthSnapshot {
            up: self.up.load(Ordering::Relaxed),
            lagging: self.lagging.load(Ordering::Relaxed),
            rtt_us: (rtt > 0).then_some(rtt),
        }
    }

    /// Records whether the node answered; true if that changed its state.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::Relaxed) != up
    }

    /// Records whether the node (a replica) lags its primary; true if that changed its state.
    pub fn set_lagging(&self, lagging: bool) -> bool {
        self.lagging.swap(lagging, Ordering::Relaxed) != lagging
    }

    /// Records that a check was answered now, with the node's `-BUSY` reply if it gave one;
    /// true if that changed whether the node is busy.
    pub fn set_answered(&self, busy: Option<Bytes>) -> bool {
        let now = since_epoch(Instant::now());
        self.answered_us.store(now, Ordering::Relaxed);
        let was_busy = self.busy_since_us.load(Ordering::Relaxed) != 0;
        match busy {
            Some(reply) => {
                if !was_busy {
                    *self
                        .busy_reply
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reply);
                    self.busy_since_us.store(now, Ordering::Relaxed);
                }
                !was_busy
            }
            None => {
                self.busy_since_us.store(0, Ordering::Relaxed);
                was_busy
            }
        }
    }

    /// Whether the node answered a health check (even `-BUSY`) after `at`.
    pub fn answered_since(&self, at: Instant) -> bool {
        let answered = self.answered_us.load(Ordering::Relaxed);
        answered != 0 && answered >= since_epoch(at)
    }

    /// Whether the last check was answered `-BUSY`.
    pub fn is_busy(&self) -> bool {
        self.busy_since_us.load(Ordering::Relaxed) != 0
    }

    /// The node's `-BUSY` reply, if it is busy and a request sent at `sent_at` is still
    /// unanswered: that request went out before the node turned busy, so it is the running
    /// script or queued behind it on the same connection.
    pub fn busy_behind(&self, sent_at: Instant) -> Option<Bytes> {
        let since = self.busy_since_us.load(Ordering::Relaxed);
        if since == 0 || since_epoch(sent_at) >= since {
            return None;
        }
        self.busy_reply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records how many online replicas can confirm this node's writes (`ack = replicated`
    /// answers NOREPLICAS at once for a primary without any).
    pub fn set_replicas(&self, count: usize) {
        self.replicas.store(count, Ordering::Relaxed);
    }

    /// Online replicas, as last recorded.
    pub fn replicas(&self) -> usize {
        self.replicas.load(Ordering::Relaxed)
    }

    /// The PING round trips measured so far.
    pub fn rtt_buckets(&self) -> RttBuckets {
        self.rtt_histogram.buckets()
    }

    /// Folds one PING round-trip time into the moving average (the first sample is taken as is)
    /// and the histogram.
    pub fn record_rtt(&self, sample: Duration) {
        self.rtt_histogram.record(sample);
        // At least 1 µs, so that a measured node is never mistaken for an unmeasured one.
        let sample = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX).max(1);
        // Only the health check task writes, so a load and a store can't lose an update.
        let old = self.rtt_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            // old + (sample - old) / N, in integers and without overflow.
            (old - old / RTT_SMOOTHING + sample / RTT_SMOOTHING).max(1)
        };
        self.rtt_us.store(new, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_counts_as_up_in_sync_and_unmeasured() {
        let health = NodeHealth::default();
        assert_eq!(
            health.snapshot(),
            HealthSnapshot {
                up: true,
                lagging: false,
                rtt_us: None
            }
        );
        assert!(health.snapshot().serves_reads());
    }

    #[test]
    fn state_changes_are_reported_once() {
        let health = NodeHealth::default();
        assert!(!health.set_up(true));
        assert!(health.set_up(false));
        assert!(!health.set_up(false));
        assert!(!health.snapshot().serves_reads());
        assert!(health.set_up(true));
        assert!(health.set_lagging(true));
        assert!(!health.snapshot().serves_reads());
    }

    #[test]
    fn an_answer_counts_for_requests_sent_before_it_only() {
        let health = NodeHealth::default();
        let sent = Instant::now();
        assert!(!health.answered_since(sent), "never answered");
        assert!(!health.set_answered(None));
        assert!(health.answered_since(sent));
        let later = Instant::now() + Duration::from_millis(5);
        assert!(!health.answered_since(later));
    }

    #[test]
    fn a_request_older_than_the_busy_state_is_stuck_behind_the_script() {
        let health = NodeHealth::default();
        let before = Instant::now();
        let busy = Bytes::from_static(b"-BUSY Redis is busy running a script.\r\n");
        std::thread::sleep(Duration::from_millis(2));
        assert!(health.set_answered(Some(busy.clone())));
        assert!(health.is_busy());
        assert!(
            !health.set_answered(Some(busy.clone())),
            "still busy: no change"
        );
        assert_eq!(health.busy_behind(before), Some(busy));
        // Sent after the node turned busy: the node itself answers it `-BUSY`.
        assert_eq!(health.busy_behind(Instant::now()), None);
        assert!(health.set_answered(None));
        assert!(!health.is_busy());
        assert_eq!(health.busy_behind(before), None);
    }

    #[test]
    fn round_trip_time_is_a_moving_average() {
        let health = NodeHealth::default();
        health.record_rtt(Duration::from_micros(400));
        assert_eq!(health.snapshot().rtt_us, Some(400));
        // A quarter of the way to each new sample.
        health.record_rtt(Duration::from_micros(800));
        assert_eq!(health.snapshot().rtt_us, Some(500));
        for _ in 0..40 {
            health.record_rtt(Duration::from_micros(100));
        }
        assert!(health.snapshot().rtt_us.is_some_and(|r| r < 110));
        health.record_rtt(Duration::ZERO);
        assert!(health.snapshot().rtt_us.is_some());
    }
}
