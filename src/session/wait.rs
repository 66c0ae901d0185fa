//! `WAIT numreplicas timeout` and `WAITAOF numlocal numreplicas timeout`: block until this
//! client's earlier writes are on enough replicas (or in enough AOFs), as on redis-server.
//!
//! redis answers WAIT for the writes made *on the connection that sends it*. The session's writes
//! to a node go out on one shared connection (its lane) or, for blocking commands and watched
//! transactions, on its dedicated connection, so the WAIT must go out on those same connections:
//!
//! - For each node the session has written to on its dedicated connection, the WAIT is sent there
//!   with the client's own timeout: exactly redis' semantics, and it blocks nobody else.
//! - For each node the session has written to on its shared lane, the WAIT is sent on that lane
//!   (whose replication offset is at least that of the session's last write there) in slices of
//!   at most `SLICE` of the client's timeout, `PAUSE` apart, until it is satisfied or the client's
//!   timeout is spent. A shared connection is so held up by at most `SLICE` per `PAUSE`, and only
//!   while the replicas lag; when they keep up the first slice returns at once.
//! - A session that has written nothing asks one primary on its dedicated connection: no write
//!   of its is unreplicated, so the node counts its replicas as redis would.
//!
//! The reply is the smallest count over those nodes (WAITAOF: per field), which is what the
//! client's writes as a whole have reached. Writes to a node the session can no longer reach
//! count as reaching 0 replicas. The wait runs in a task the session owns through the reply's
//! receiver: a client that leaves while waiting stops it. The session (`dispatch.rs`) says where
//! its writes went ([`vias`]); this file does the waiting.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::plan::Wait;
use crate::backend::{Lane, Node, Outgoing};
use crate::protocol::reply::{write_array_len, write_integer};
use crate::protocol::{Protocol, Reply, View};

/// Longest time one WAIT may hold a shared connection.
const SLICE: Duration = Duration::from_millis(10);
/// Gap between two slices on a shared connection.
const PAUSE: Duration = Duration::from_millis(40);

/// Where one node's part of the wait is sent.
pub(super) enum Via {
    /// The session's dedicated connection: one WAIT with the client's timeout.
    Dedicated(Lane),
    /// The session's lane of the node's shared connections: WAIT in slices.
    Shared { node: Arc<Node>, lane: SharedLane },
}

/// Which of a node's shared connections carry a session's writes.
#[derive(Debug, Clone, Copy)]
pub(super) struct SharedLane {
    pub(super) protocol: Protocol,
    /// The session's worker: its lanes run there.
    pub(super) worker: usize,
    pub(super) lane: usize,
}

/// Where to wait for the session's writes: for each node it wrote to (`written`: `(node,
/// dedicated)`), its dedicated connection (`dedicated` gives it) or its shared `lane`. Empty
/// when it wrote nothing.
pub(super) fn vias(
    written: &[(Arc<Node>, bool)],
    lane: SharedLane,
    mut dedicated: impl FnMut(&Arc<Node>) -> Lane,
) -> Vec<Via> {
    written
        .iter()
        .map(|(node, on_dedicated)| match on_dedicated {
            true => Via::Dedicated(dedicated(node)),
            false => Via::Shared {
                node: node.clone(),
                lane,
            },
        })
        .collect()
}

/// The wait for `wait` over `vias`: a future the session polls as its queue entry (dropping
/// it, when the client leaves, stops the waits). The client's timeout counts from now.
pub(super) fn start(wait: Wait, vias: Vec<Via>) -> impl Future<Output = Bytes> + Send + 'static {
    let deadline = wait.timeout.map(|t| Instant::now() + t);
    wait_all(Arc::new(wait), vias, deadline)
}

/// Waits on every node at once and combines the counts.
async fn wait_all(wait: Arc<Wait>, vias: Vec<Via>, deadline: Option<Instant>) -> Bytes {
    // Dropping the set (the client left) aborts the waits still running.
    let mut parts = JoinSet::new();
    for via in vias {
        parts.spawn(wait_one(wait.clone(), via, deadline));
    }
    let mut lowest: Option<Vec<i64>> = None;
    while let Some(result) = parts.join_next().await {
        match result {
            Ok(Ok(counts)) => {
                lowest = Some(match lowest {
                    None => counts,
                    Some(low) => low.iter().zip(&counts).map(|(a, b)| *a.min(b)).collect(),
                });
            }
            // An error from a node (e.g. WAITAOF unknown to it) is the client's answer.
            Ok(Err(error)) => return error,
            Err(_) => lowest = Some(vec![0; wait.wanted.len()]),
        }
    }
    let counts = lowest.unwrap_or_else(|| vec![0; wait.wanted.len()]);
    let mut out = BytesMut::new();
    if let [count] = counts[..] {
        write_integer(&mut out, count);
    } else {
        write_array_len(&mut out, counts.len());
        for count in counts {
            write_integer(&mut out, count);
        }
    }
    out.freeze()
}

/// One node's counts once satisfied or out of time; `Err` carries a node's error reply.
async fn wait_one(wait: Arc<Wait>, via: Via, deadline: Option<Instant>) -> Result<Vec<i64>, Bytes> {
    let unreached = || Ok(vec![0; wait.wanted.len()]);
    match via {
        Via::Dedicated(lane) => {
            let timeout = wait.timeout.unwrap_or(Duration::ZERO);
            match lane.send(Outgoing::new(wait.payload(timeout))).await {
                Ok(Ok(reply)) => counts(&reply),
                _ => unreached(),
            }
        }
        Via::Shared { node, lane } => loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // A zero timeout would mean "forever" to the node; the last slice is at least 1 ms.
            let slice = left
                .map_or(SLICE, |left| left.min(SLICE))
                .max(Duration::from_millis(1));
            let rx = node
                .worker_lane(lane.worker, lane.protocol, false, lane.lane)
                .send(Outgoing::new(wait.payload(slice)));
            let found = match rx.await {
                Ok(Ok(reply)) => counts(&reply)?,
                _ => return unreached(),
            };
            if wait.satisfied(&found) {
                return Ok(found);
            }
            // Like redis, answer at the client's timeout, not before: the last pause may be
            // shorter, and a last slice runs at the deadline.
            let pause = match deadline {
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return Ok(found),
                    left => left.min(PAUSE),
                },
                None => PAUSE,
            };
            tokio::time::sleep(pause).await;
        },
    }
}

/// The integers of a WAIT (`:n`) or WAITAOF (`*2 :a :b`) reply; `Err` with the reply itself
/// when it is an error.
fn counts(reply: &Reply) -> Result<Vec<i64>, Bytes> {
    let raw = reply.raw();
    Ok(match View::of(raw) {
        Some(View::Error(_)) => return Err(raw.clone()),
        Some(View::Integer(n)) => vec![n],
        Some(View::Array(elements)) => elements
            .filter_map(|element| View::of(element)?.integer())
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(raw: &'static [u8]) -> Result<Vec<i64>, Bytes> {
        counts(&Reply::local(Bytes::from_static(raw)))
    }

    #[test]
    fn wait_and_waitaof_replies_give_their_counts_and_an_error_is_passed_on() {
        assert_eq!(counts_of(b":2\r\n"), Ok(vec![2]));
        assert_eq!(counts_of(b"*2\r\n:1\r\n:0\r\n"), Ok(vec![1, 0]));
        let error =
            b"-ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.\r\n";
        assert_eq!(counts_of(error), Err(Bytes::from_static(error)));
    }
}
