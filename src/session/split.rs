//! Commands served by several nodes: cross-slot multi-key commands split by slot, and
//! whole-keyspace commands fanned out to every primary; the parts' replies merged into one.
//!
//! Planning is pure (request in, sub-requests out) and merging is pure (part replies in, one reply
//! out), so both are unit-tested without a cluster; the session sends the parts and settles each
//! one like a single request (MOVED, ASK, retries). `INFO`'s merge, and the choices it makes
//! about which fields are summed, kept or dropped, is in [`info`]. Read-only set, sorted-set and
//! HyperLogLog commands whose keys span slots are planned and computed in [`super::algebra`],
//! and settle here like the others (`Merge::Computed`).

pub(super) mod info;
mod merge;
#[cfg(test)]
mod tests;

pub use merge::merge;
pub(crate) use merge::merge_info_with;

use bytes::Bytes;

use super::scripts::ScriptCache;
use crate::cluster::{Slot, SlotMap, hash_slot};
use crate::command::policy::{FanOutMerge, MergeRule, SplitKind};
use crate::protocol::Request;

/// How part replies combine into the client's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// `MGET`: part `i` holds the values of the keys at `positions[i]` (indices into the
    /// client's key list); the reply is one array in the client's key order.
    Values {
        /// Original key index of each value, per part.
        positions: Vec<Vec<usize>>,
        /// Number of keys in the client's request.
        total: usize,
    },
    /// `MSET`, `FLUSHALL`...: `+OK` once every part said `+OK`.
    AllOk,
    /// `DEL`, `EXISTS`, `DBSIZE`...: the sum of the parts' integers.
    Sum,
    /// `KEYS`: the parts' arrays, one after the other.
    Concat,
    /// `INFO`: the parts' INFO texts merged section by section, plus a `# Proxy` section.
    Info,
    /// `RANDOMKEY`: one of the parts' keys, picked at random among the primaries that have keys
    /// (uniformly, not weighted by their sizes); nil only when every part is nil.
    AnyNonNull,
    /// `SCAN`: one part, whose cursor becomes the proxy's (see [`super::scan`]); the session
    /// may send the call's next step before merging (see [`super::scan_batch`]).
    Scan(Box<super::scan_batch::ScanBatch>),
    /// `SCRIPT LOAD`, `FUNCTION LOAD`: every primary gives the same reply (the SHA-1, the
    /// library name); a primary that disagrees is an error.
    Same,
    /// `SCRIPT EXISTS`: `1` for a script every primary has, or one slotproxy knows (`known`,
    /// per argument: its body is in the `ScriptCache`, so an `EVALSHA` that gets `NOSCRIPT`
    /// from a primary lacking it is loaded there and run again). A script neither is reported
    /// missing: `EVALSHA` may be sent to any primary, and a client told it exists could
    /// still get `NOSCRIPT`.
    AllExist {
        /// Whether slotproxy knows each argument's script (empty: none).
        known: Vec<bool>,
    },
    /// `FUNCTION LIST`: the first primary's libraries that every primary has, as `FCALL` can
    /// only rely on those; the output is per library, so libraries stay whole.
    CommonLibraries,
    /// `SCRIPT KILL`, `FUNCTION KILL`: `OK` from the primary that was running a script; when
    /// none was, the first error other than `NOTBUSY` (`UNKILLABLE`), else `NOTBUSY`.
    AnyOk,
    /// A transaction run per slot: part `i` is one slot's `EXEC` reply, whose elements are the
    /// replies of the client's commands at `positions[i]` (see [`super::per_slot`]).
    Transaction {
        /// Queue index of each slot's commands, per part.
        positions: Vec<Vec<usize>>,
        /// Commands the client queued.
        total: usize,
        /// The first part is the watched slot's; the others ran only if it did.
        watched: bool,
        /// Client commands queued as several parts (split by slot), merged back into one.
        combined: Vec<Combined>,
    },
    /// `FUNCTION STATS`: the reply of the primary running a function or script, else the first
    /// primary's (the same libraries are loaded on every primary).
    RunningScript,
    /// `SLOWLOG GET`: this many entries (all for `None`) of every primary's log, newest first
    /// (see [`super::slowlog`]).
    Slowlog(Option<usize>),
    /// `SLOWLOG LEN`: the entries `SLOWLOG GET -1` returns.
    SlowlogLen,
    /// A command of a per-slot transaction that fails at `EXEC`: this error, whatever the
    /// parts (see [`Combined`]).
    Failed(Bytes),
    /// `SUNION`, `ZINTER`, `PFCOUNT`...: one read per key, the reply computed from their values
    /// (see [`super::algebra`]).
    Computed(Box<super::algebra::Computation>),
}

/// A client command queued as several per-slot parts (see `transaction_state.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    /// Index of its first part in the queue.
    pub first: usize,
    /// Its parts, queued one after the other; 0 for a command redis queues and fails at
    /// `EXEC` (`MSET` with a key lacking a value), whose entry is then `merge`'s reply to no
    /// parts: its error.
    pub parts: usize,
    /// How the parts' replies merge.
    pub merge: Merge,
}

impl Merge {
    /// `SCRIPT KILL` and `FUNCTION KILL`: they interrupt a node's running script, so they must
    /// reach it on a connection that is not queued behind that script.
    pub fn interrupts(&self) -> bool {
        matches!(self, Merge::AnyOk)
    }
}

impl Merge {
    /// The merge of a fanned-out request: its row's rule, with what slotproxy itself knows
    /// about the request's arguments (`SCRIPT EXISTS`: the scripts in `scripts`).
    pub(super) fn fan_out(rule: FanOutMerge, args: &[Bytes], scripts: &ScriptCache) -> Merge {
        match rule {
            FanOutMerge::AllExist => Merge::AllExist {
                known: args
                    .get(2..)
                    .unwrap_or_default()
                    .iter()
                    .map(|sha| scripts.knows(sha))
                    .collect(),
            },
            FanOutMerge::Slowlog => match super::slowlog::get_count(args) {
                Some(count) => Merge::Slowlog(count),
                // A count redis refuses: the nodes' error, through the plain merge.
                None => Merge::Concat,
            },
            other => other.into(),
        }
    }

    /// The request every part sends when it is not the client's own (`SLOWLOG`: the whole
    /// log, merged here).
    pub(super) fn node_request(&self) -> Option<Request> {
        match self {
            Merge::Slowlog(_) | Merge::SlowlogLen => Some(super::slowlog::node_request()),
            _ => None,
        }
    }
}

impl From<FanOutMerge> for Merge {
    fn from(rule: FanOutMerge) -> Merge {
        match rule {
            FanOutMerge::AllOk => Merge::AllOk,
            FanOutMerge::Sum => Merge::Sum,
            FanOutMerge::Concat => Merge::Concat,
            FanOutMerge::Info => Merge::Info,
            FanOutMerge::AnyNonNull => Merge::AnyNonNull,
            FanOutMerge::Same => Merge::Same,
            FanOutMerge::AllExist => Merge::AllExist { known: Vec::new() },
            FanOutMerge::CommonLibraries => Merge::CommonLibraries,
            FanOutMerge::AnyOk => Merge::AnyOk,
            FanOutMerge::RunningScript => Merge::RunningScript,
            FanOutMerge::Slowlog => Merge::Slowlog(Some(10)),
            FanOutMerge::SlowlogLen => Merge::SlowlogLen,
        }
    }
}

/// Splits `request` into one sub-request per slot, keys kept in their original order.
pub fn plan_split(kind: SplitKind, request: &Request) -> (Merge, Vec<(Slot, Request)>) {
    let args = request.args();
    let name = args[0].clone();
    let step = match kind {
        SplitKind::Keys(_) => 1,
        SplitKind::KeyValues => 2,
    };
    // (slot, argument list, original key indices), in order of first appearance.
    let mut groups: Vec<(Slot, Vec<Bytes>, Vec<usize>)> = Vec::new();
    for (index, chunk) in args[1..].chunks(step).enumerate() {
        let slot = hash_slot(&chunk[0]);
        let group = match groups.iter_mut().position(|g| g.0 == slot) {
            Some(i) => &mut groups[i],
            None => {
                groups.push((slot, vec![name.clone()], Vec::new()));
                groups.last_mut().expect("just pushed")
            }
        };
        group.1.extend(chunk.iter().cloned());
        group.2.push(index);
    }
    let total = (args.len() - 1) / step;
    let merge = match kind {
        SplitKind::Keys(MergeRule::Values) => Merge::Values {
            positions: groups.iter().map(|g| g.2.clone()).collect(),
            total,
        },
        SplitKind::Keys(MergeRule::Sum) => Merge::Sum,
        SplitKind::KeyValues => Merge::AllOk,
    };
    let parts = groups
        .into_iter()
        .map(|(slot, args, _)| (slot, Request::from_args(args)))
        .collect();
    (merge, parts)
}

/// One slot of each shard in `map`, to address every primary by slot (so retries follow
/// failovers and resharding like any keyed request).
pub fn shard_slots(map: &SlotMap) -> Vec<Slot> {
    map.layout()
        .iter()
        .filter_map(|shard| shard.ranges.first().map(|&(start, _)| Slot(start)))
        .collect()
}
