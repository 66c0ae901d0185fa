//! `NodeStats`: counters one node's connection tasks keep for `/metrics`, in atomics that the
//! tasks bump once per batch and the admin listener reads when scraped.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What the connections to one node did, summed over its connections.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Requests written to the node (health checks and topology queries included).
    requests: AtomicU64,
    /// Requests written and not yet answered or failed.
    in_flight: AtomicI64,
    /// Connections established.
    connects: AtomicU64,
    /// Connect attempts that failed, and established connections that broke or timed out.
    failures: AtomicU64,
    /// Connections open now.
    open: AtomicI64,
}

/// A copy of a node's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatsSnapshot {
    /// Requests written to the node.
    pub requests: u64,
    /// Requests awaiting their reply.
    pub in_flight: u64,
    /// Connections established.
    pub connects: u64,
    /// Connections that failed.
    pub failures: u64,
    /// Connections open now.
    pub open: u64,
}

impl NodeStats {
    /// Counts `n` requests written.
    pub(crate) fn sent(&self, n: usize) {
        self.requests.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Moves the in-flight figure from one connection's `old` count to its `new` one.
    pub(crate) fn in_flight_moved(&self, old: usize, new: usize) {
        if old != new {
            self.in_flight
                .fetch_add(new as i64 - old as i64, Ordering::Relaxed);
        }
    }

    /// Counts a connection established (`true`) or closed (`false`).
    pub(crate) fn connection(&self, open: bool) {
        if open {
            self.connects.fetch_add(1, Ordering::Relaxed);
            self.open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts a failed connect or a broken connection.
    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> NodeStatsSnapshot {
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        NodeStatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: non_negative(self.in_flight.load(Ordering::Relaxed)),
            connects: self.connects.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            open: non_negative(self.open.load(Ordering::Relaxed)),
        }
    }
}
