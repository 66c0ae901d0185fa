//! Which node of a shard serves a read: the read policy applied to the nodes' measured health,
//! and the slots a session wrote recently (read-your-writes).
//!
//! Both are pure and unit-tested here; `send.rs` feeds them the shard's nodes and acts on the
//! choice (and holds requests for a primary that is down).

use std::sync::Arc;

use crate::backend::{HealthSnapshot, Node};
use crate::config::ReadPolicy;

/// At most this many nodes of one shard (the primary and its first replicas) are considered for
/// a read, so a choice needs no allocation. Shards rarely have more than a few replicas.
const MAX_CANDIDATES: usize = 16;
/// `nearest`: a node whose round-trip time is within `best / 2 + NEAREST_MARGIN_US` of the best
/// one's counts as just as near, and the reads are spread over all such nodes. Round-trip times
/// jitter by tens of microseconds on a quiet network and by more on a busy host: without a
/// margin, reads would swing from node to node with the noise.
const NEAREST_MARGIN_US: u64 = 100;

/// Anything whose health can be read: a node, or (in tests) a bare snapshot.
pub(super) trait Measured {
    /// The node's health now.
    fn measured(&self) -> HealthSnapshot;
}

impl Measured for Arc<Node> {
    fn measured(&self) -> HealthSnapshot {
        self.health().snapshot()
    }
}

impl Measured for HealthSnapshot {
    fn measured(&self) -> HealthSnapshot {
        *self
    }
}

/// Where a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Choice {
    /// The shard's primary.
    Primary,
    /// The replica at this index of the shard's replicas.
    Replica(usize),
    /// `read_policy = "replica"` and no replica can serve reads.
    NoReplica,
}

/// Applies `policy` to a shard's nodes. `spread` (the session id) picks among equally good
/// nodes, so one session keeps reading from one node while the choice stays the same.
///
/// Replicas that are down or lag their primary never get reads. The primary gets them when the
/// policy allows it; a down primary is only chosen when nothing else can serve (the caller then
/// holds the request until the primary is back or replaced).
pub(super) fn choose<N: Measured>(
    policy: ReadPolicy,
    spread: usize,
    primary: &N,
    replicas: &[N],
) -> Choice {
    // (choice, round-trip time) of every node that may serve this read.
    let mut candidates = [(Choice::Primary, None::<u64>); MAX_CANDIDATES];
    let mut count = 0;
    let with_primary = matches!(policy, ReadPolicy::Any | ReadPolicy::Nearest);
    if with_primary {
        let health = primary.measured();
        if health.up {
            candidates[0] = (Choice::Primary, health.rtt_us);
            count = 1;
        }
    }
    if policy != ReadPolicy::Primary {
        for (index, replica) in replicas.iter().enumerate() {
            if count == MAX_CANDIDATES {
                break;
            }
            let health = replica.measured();
            if health.serves_reads() {
                candidates[count] = (Choice::Replica(index), health.rtt_us);
                count += 1;
            }
        }
    }
    let candidates = &mut candidates[..count];
    let candidates = match policy {
        ReadPolicy::Nearest => nearest(candidates),
        _ => candidates,
    };
    match (candidates.len(), policy) {
        (0, ReadPolicy::Replica) => Choice::NoReplica,
        (0, _) => Choice::Primary,
        (n, _) => candidates[spread % n].0,
    }
}

/// The candidates as near as the nearest one (see `NEAREST_MARGIN_US`), moved to the front;
/// nodes not measured yet stay in, so they get measured traffic too.
fn nearest(candidates: &mut [(Choice, Option<u64>)]) -> &mut [(Choice, Option<u64>)] {
    let Some(best) = candidates.iter().filter_map(|c| c.1).min() else {
        return candidates;
    };
    let limit = best + best / 2 + NEAREST_MARGIN_US;
    let mut kept = 0;
    for i in 0..candidates.len() {
        if candidates[i].1.is_none_or(|rtt| rtt <= limit) {
            candidates.swap(kept, i);
            kept += 1;
        }
    }
    &mut candidates[..kept]
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: HealthSnapshot = HealthSnapshot {
        up: true,
        lagging: false,
        rtt_us: None,
    };
    const DOWN: HealthSnapshot = HealthSnapshot { up: false, ..UP };
    const LAGGING: HealthSnapshot = HealthSnapshot {
        lagging: true,
        ..UP
    };

    fn rtt(us: u64) -> HealthSnapshot {
        HealthSnapshot {
            rtt_us: Some(us),
            ..UP
        }
    }

    /// Every distinct choice `policy` makes over many sessions, in order of first appearance.
    fn choices(
        policy: ReadPolicy,
        primary: HealthSnapshot,
        replicas: &[HealthSnapshot],
    ) -> Vec<Choice> {
        let mut seen = Vec::new();
        for spread in 0..64 {
            let choice = choose(policy, spread, &primary, replicas);
            if !seen.contains(&choice) {
                seen.push(choice);
            }
        }
        seen.sort_by_key(|c| format!("{c:?}"));
        seen
    }

    #[test]
    fn each_policy_skips_replicas_that_are_down_or_lagging() {
        use Choice::{NoReplica, Primary, Replica};
        use ReadPolicy::{Any, Nearest, PreferReplica, Replica as Only};
        let cases: &[(ReadPolicy, HealthSnapshot, &[HealthSnapshot], &[Choice])] = &[
            (ReadPolicy::Primary, UP, &[UP, UP], &[Primary]),
            (ReadPolicy::Primary, DOWN, &[UP], &[Primary]),
            (PreferReplica, UP, &[UP, UP], &[Replica(0), Replica(1)]),
            (PreferReplica, UP, &[DOWN, UP], &[Replica(1)]),
            (PreferReplica, UP, &[LAGGING, DOWN], &[Primary]),
            (PreferReplica, UP, &[], &[Primary]),
            (Only, UP, &[UP, LAGGING], &[Replica(0)]),
            (Only, DOWN, &[UP], &[Replica(0)]),
            (Only, UP, &[LAGGING, DOWN], &[NoReplica]),
            (Only, UP, &[], &[NoReplica]),
            (Any, UP, &[UP], &[Primary, Replica(0)]),
            (Any, DOWN, &[UP, LAGGING], &[Replica(0)]),
            (Any, DOWN, &[DOWN], &[Primary]),
            // nearest: the lowest round-trip time wins...
            (Nearest, rtt(5_000), &[rtt(300), rtt(2_000)], &[Replica(0)]),
            (Nearest, rtt(200), &[rtt(3_000)], &[Primary]),
            // ...nodes within the margin share the reads, unmeasured ones are tried too...
            (
                Nearest,
                rtt(300),
                &[rtt(350), rtt(900)],
                &[Primary, Replica(0)],
            ),
            (Nearest, rtt(300), &[UP, rtt(900)], &[Primary, Replica(0)]),
            (Nearest, UP, &[UP], &[Primary, Replica(0)]),
            // ...and down or lagging nodes are skipped however near they are.
            (
                Nearest,
                HealthSnapshot {
                    up: false,
                    ..rtt(10)
                },
                &[
                    rtt(900),
                    HealthSnapshot {
                        lagging: true,
                        ..rtt(10)
                    },
                ],
                &[Replica(0)],
            ),
            (Nearest, DOWN, &[DOWN], &[Primary]),
        ];
        for (policy, primary, replicas, want) in cases {
            assert_eq!(
                choices(*policy, *primary, replicas),
                want.to_vec(),
                "{policy:?} primary {primary:?} replicas {replicas:?}"
            );
        }
    }

    #[test]
    fn one_session_keeps_its_node() {
        for spread in 0..8 {
            let first = choose(ReadPolicy::PreferReplica, spread, &UP, &[UP, UP, UP]);
            for _ in 0..3 {
                assert_eq!(
                    choose(ReadPolicy::PreferReplica, spread, &UP, &[UP, UP, UP]),
                    first
                );
            }
        }
    }
}
