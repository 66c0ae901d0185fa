//! `NodeHealth`: what the active health check last learned about one node, kept in atomics so
//! that every session can read it for each request without a lock.
//!
//! The health check task (`cluster::health`) is the only writer. A node nobody has checked yet
//! counts as up, in sync and of unknown round-trip time, which is how the proxy behaved before
//! it had health checks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
        Self {
            up: AtomicBool::new(true),
            lagging: AtomicBool::new(false),
            rtt_us: AtomicU64::new(0),
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

    /// Folds one PING round-trip time into the moving average (the first sample is taken as is).
    pub fn record_rtt(&self, sample: Duration) {
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
