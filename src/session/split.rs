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

use bytes::{Bytes, BytesMut};

use super::scripts::ScriptCache;
use crate::cluster::{Slot, SlotMap, hash_slot};
use crate::command::policy::{FanOutMerge, MergeRule, SplitKind};
use crate::error::ReplyError;
use crate::protocol::reply::{write_array_len, write_integer, write_null, write_simple};
use crate::protocol::view::elements;
use crate::protocol::{Protocol, Reply, Request, View};

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

/// A per-slot transaction's `EXEC` reply with each split command's parts merged back into
/// the command's one reply, as outside `MULTI` (an error part makes the whole entry that error).
fn combine(exec_reply: Bytes, combined: &[Combined], protocol: Protocol) -> Bytes {
    if combined.is_empty() {
        return exec_reply;
    }
    let entries = elements(&exec_reply);
    if entries.is_empty() {
        // Nil or an error: the transaction ran nowhere.
        return exec_reply;
    }
    let parts: usize = combined.iter().map(|c| c.parts).sum();
    let mut out = BytesMut::new();
    write_array_len(&mut out, entries.len() + combined.len() - parts);
    let mut i = 0;
    while i <= entries.len() {
        for failed in combined.iter().filter(|c| c.first == i && c.parts == 0) {
            out.extend_from_slice(&merge(&failed.merge, &[], protocol));
        }
        if i == entries.len() {
            break;
        }
        match combined.iter().find(|c| c.first == i && c.parts > 0) {
            Some(command) => {
                let end = (i + command.parts).min(entries.len());
                let replies: Vec<Reply> = entries[i..end]
                    .iter()
                    .map(|e| Reply::local(exec_reply.slice_ref(e)))
                    .collect();
                out.extend_from_slice(&merge(&command.merge, &replies, protocol));
                i = end;
            }
            None => {
                out.extend_from_slice(entries[i]);
                i += 1;
            }
        }
    }
    out.freeze()
}

/// A random number below `len` (not 0), from the standard library's randomly keyed hasher:
/// each `RandomState` gets new keys, so no random-number crate is needed for a fair pick.
fn random_below(len: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (random % len as u64) as usize
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

/// [`merge`] for `INFO`, with slotproxy's own figures (clients, commands, cluster state).
pub(crate) fn merge_info_with(
    replies: &[Reply],
    protocol: Protocol,
    facts: &info::ProxyFacts,
) -> Bytes {
    if let Some(error) = replies.iter().find(|r| r.error_text().is_some()) {
        return error.raw().clone();
    }
    info::merge_info_with(replies, protocol, Some(facts))
}

/// Combines the parts' replies, in part order. The first error (in part order) wins, as the
/// client can only get one reply.
pub fn merge(merge: &Merge, replies: &[Reply], protocol: Protocol) -> Bytes {
    match merge {
        Merge::Failed(error) => return error.clone(),
        Merge::AnyOk => return any_ok(replies),
        Merge::Transaction {
            positions,
            total,
            watched,
            combined,
        } => {
            let merged = super::per_slot::merge(positions, *total, *watched, replies);
            return combine(merged, combined, protocol);
        }
        Merge::Computed(computation) => {
            return super::algebra::merge(computation, replies, protocol);
        }
        _ => {}
    }
    if let Some(error) = replies.iter().find(|r| r.error_text().is_some()) {
        return error.raw().clone();
    }
    let mut out = BytesMut::new();
    match merge {
        Merge::Info => return info::merge_info(replies, protocol),
        Merge::Slowlog(count) => return super::slowlog::merge_get(*count, replies),
        Merge::SlowlogLen => return super::slowlog::merge_len(replies),
        Merge::Scan(phase) => {
            return match replies {
                [reply] => super::scan::merge_reply(phase.phase, reply.raw()),
                _ => ReplyError::ScanParts.to_bytes(),
            };
        }
        Merge::AnyNonNull => {
            let keys: Vec<&Reply> = replies.iter().filter(|r| !is_null(r.raw())).collect();
            if keys.is_empty() {
                write_null(&mut out, protocol);
            } else {
                // Each primary's key is random within its keyspace; the primary is picked at
                // random too (hashing the keys would always pick the same one of a few keys).
                return keys[random_below(keys.len())].raw().clone();
            }
        }
        Merge::AllOk => write_simple(&mut out, "OK"),
        Merge::RunningScript => {
            let running = |r: &&Reply| {
                elements(r.raw())
                    .get(1)
                    .is_some_and(|script| !is_null(script))
            };
            return match replies.iter().find(running).or(replies.first()) {
                Some(reply) => reply.raw().clone(),
                None => ReplyError::NoPrimaryAnswered.to_bytes(),
            };
        }
        Merge::Same => {
            return match replies {
                [first, rest @ ..] if rest.iter().all(|r| r.raw() == first.raw()) => {
                    first.raw().clone()
                }
                [] => ReplyError::NoPrimaryAnswered.to_bytes(),
                _ => ReplyError::PrimariesDiffer.to_bytes(),
            };
        }
        Merge::AllExist { known } => {
            let parts: Vec<Vec<&[u8]>> = replies.iter().map(|r| elements(r.raw())).collect();
            let len = parts.first().map_or(0, Vec::len);
            if parts.iter().any(|p| p.len() != len) {
                return ReplyError::PrimariesDifferInLength.to_bytes();
            }
            write_array_len(&mut out, len);
            for i in 0..len {
                let everywhere = parts.iter().all(|p| integer(p[i]) == Some(1));
                let exists = everywhere || known.get(i).copied().unwrap_or(false);
                write_integer(&mut out, i64::from(exists));
            }
        }
        Merge::CommonLibraries => {
            let [first, rest @ ..] = replies else {
                return ReplyError::NoPrimaryAnswered.to_bytes();
            };
            let others: Vec<Vec<Option<&[u8]>>> = rest
                .iter()
                .map(|r| {
                    elements(r.raw())
                        .into_iter()
                        .map(|library| library_name(library))
                        .collect()
                })
                .collect();
            let common: Vec<&[u8]> = elements(first.raw())
                .into_iter()
                .filter(|&library| match library_name(library) {
                    Some(name) => others.iter().all(|names| names.contains(&Some(name))),
                    None => true,
                })
                .collect();
            write_array_len(&mut out, common.len());
            for library in common {
                out.extend_from_slice(library);
            }
        }
        // Merged above, before the first error could win.
        Merge::AnyOk | Merge::Computed(_) | Merge::Transaction { .. } | Merge::Failed(_) => {}
        Merge::Sum => {
            let sum = replies.iter().filter_map(|r| integer(r.raw())).sum();
            write_integer(&mut out, sum);
        }
        Merge::Concat => {
            let elements: Vec<Vec<&[u8]>> = replies.iter().map(|r| elements(r.raw())).collect();
            write_array_len(&mut out, elements.iter().map(Vec::len).sum());
            for element in elements.iter().flatten() {
                out.extend_from_slice(element);
            }
        }
        Merge::Values { positions, total } => {
            let mut ordered: Vec<&[u8]> = vec![&[]; *total];
            for (reply, positions) in replies.iter().zip(positions) {
                for (value, &position) in elements(reply.raw()).into_iter().zip(positions) {
                    ordered[position] = value;
                }
            }
            write_array_len(&mut out, *total);
            for value in ordered {
                out.extend_from_slice(value);
            }
        }
    }
    out.freeze()
}

/// `Merge::AnyOk`: the first success, else the first error that isn't `NOTBUSY` (the error code,
/// redis' machine-readable part), else the first error.
fn any_ok(replies: &[Reply]) -> Bytes {
    let not_busy = |r: &&Reply| {
        r.error_text()
            .is_some_and(|text| text.split(|&b| b == b' ').next() == Some(b"NOTBUSY"))
    };
    replies
        .iter()
        .find(|r| r.error_text().is_none())
        .or_else(|| replies.iter().find(|r| !not_busy(r)))
        .or_else(|| replies.first())
        .map_or_else(
            || ReplyError::NoPrimaryAnswered.to_bytes(),
            |r| r.raw().clone(),
        )
}

/// The `library_name` field of one `FUNCTION LIST` entry (a map in RESP3, a flat array of
/// fields and values in RESP2).
fn library_name(library: &[u8]) -> Option<&[u8]> {
    let fields = elements(library);
    fields
        .chunks_exact(2)
        .find(|pair| string(pair[0]) == Some(b"library_name".as_slice()))
        .and_then(|pair| string(pair[1]))
}

/// The payload of a bulk or simple string.
fn string(raw: &[u8]) -> Option<&[u8]> {
    View::of(raw)?.string()
}

/// A null reply: `$-1` or `*-1` in RESP2, `_` in RESP3.
fn is_null(raw: &[u8]) -> bool {
    View::of(raw).is_some_and(|view| view.is_null())
}

fn integer(raw: &[u8]) -> Option<i64> {
    View::of(raw)?.integer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandTable, Handling};

    fn reply(raw: &'static [u8]) -> Reply {
        Reply::local(Bytes::from_static(raw))
    }

    /// The merge of a command its policy row fans out to every primary.
    fn fan_out_merge(name: &str) -> Option<Merge> {
        let table = CommandTable::builtin();
        match table.policy(table.lookup(name)?).handling {
            Handling::FanOut(merge) => Some(merge.into()),
            _ => None,
        }
    }

    #[test]
    fn mget_splits_by_slot_and_merges_in_key_order() {
        let request = Request::from_args(["MGET", "a", "{a}x", "b", "a"]);
        let (merge, parts) = plan_split(SplitKind::Keys(MergeRule::Values), &request);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, hash_slot(b"a"));
        assert_eq!(parts[0].1.args().len(), 4, "a, {{a}}x and a share a slot");
        assert_eq!(&parts[1].1.raw()[..], b"*2\r\n$4\r\nMGET\r\n$1\r\nb\r\n");
        let replies = [
            reply(b"*3\r\n$2\r\nva\r\n$-1\r\n$2\r\nva\r\n"),
            reply(b"*1\r\n$2\r\nvb\r\n"),
        ];
        assert_eq!(
            &merge_bytes(&merge, &replies)[..],
            b"*4\r\n$2\r\nva\r\n$-1\r\n$2\r\nvb\r\n$2\r\nva\r\n"
        );
    }

    fn merge_bytes(m: &Merge, replies: &[Reply]) -> Bytes {
        merge(m, replies, Protocol::Resp2)
    }

    #[test]
    fn mset_keeps_pairs_together() {
        let request = Request::from_args(["MSET", "a", "1", "b", "2", "{a}c", "3"]);
        let (merge, parts) = plan_split(SplitKind::KeyValues, &request);
        assert_eq!(merge, Merge::AllOk);
        let args: Vec<Vec<&[u8]>> = parts
            .iter()
            .map(|(_, r)| r.args().iter().map(|a| &a[..]).collect())
            .collect();
        assert_eq!(args[0], [&b"MSET"[..], b"a", b"1", b"{a}c", b"3"]);
        assert_eq!(args[1], [&b"MSET"[..], b"b", b"2"]);
    }

    #[test]
    fn merges_sum_concat_ok_and_surface_the_first_error() {
        assert_eq!(
            &merge_bytes(&Merge::Sum, &[reply(b":2\r\n"), reply(b":-1\r\n")])[..],
            b":1\r\n"
        );
        assert_eq!(
            &merge_bytes(&Merge::AllOk, &[reply(b"+OK\r\n"), reply(b"+OK\r\n")])[..],
            b"+OK\r\n"
        );
        assert_eq!(
            &merge_bytes(
                &Merge::Concat,
                &[
                    reply(b"*1\r\n$1\r\na\r\n"),
                    reply(b"*0\r\n"),
                    reply(b"*1\r\n$1\r\nb\r\n")
                ]
            )[..],
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            &merge_bytes(
                &Merge::Sum,
                &[
                    reply(b":1\r\n"),
                    reply(b"-ERR one\r\n"),
                    reply(b"-ERR two\r\n")
                ]
            )[..],
            b"-ERR one\r\n"
        );
    }

    #[test]
    fn info_fans_out_and_merges_through_merge() {
        assert_eq!(fan_out_merge("info"), Some(Merge::Info));
        let bulk = |text: &str| {
            let mut out = BytesMut::new();
            crate::protocol::reply::write_bulk(&mut out, text.as_bytes());
            Reply::local(out.freeze())
        };
        let replies = [
            bulk("# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n"),
            bulk("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"),
        ];
        assert_eq!(
            merge(&Merge::Info, &replies, Protocol::Resp2),
            bulk("# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n").into_raw()
        );
        let error = [bulk(""), reply(b"-ERR no\r\n")];
        assert_eq!(
            &merge(&Merge::Info, &error, Protocol::Resp2)[..],
            b"-ERR no\r\n"
        );
    }

    #[test]
    fn randomkey_takes_a_key_from_a_primary_that_has_one() {
        assert_eq!(fan_out_merge("randomkey"), Some(Merge::AnyNonNull));
        let replies = [reply(b"$-1\r\n"), reply(b"$1\r\nk\r\n"), reply(b"$-1\r\n")];
        assert_eq!(
            &merge_bytes(&Merge::AnyNonNull, &replies)[..],
            b"$1\r\nk\r\n"
        );
        let both = [reply(b"$1\r\na\r\n"), reply(b"$1\r\nb\r\n")];
        let picked = merge_bytes(&Merge::AnyNonNull, &both);
        assert!(&picked[..] == b"$1\r\na\r\n" || &picked[..] == b"$1\r\nb\r\n");
        let empty = [reply(b"_\r\n"), reply(b"_\r\n")];
        assert_eq!(
            &merge(&Merge::AnyNonNull, &empty, Protocol::Resp3)[..],
            b"_\r\n"
        );
        assert_eq!(
            &merge_bytes(&Merge::AnyNonNull, &[reply(b"$-1\r\n")])[..],
            b"$-1\r\n"
        );
    }

    #[test]
    fn script_and_function_commands_fan_out_with_their_merges() {
        let sha = b"$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n";
        assert_eq!(fan_out_merge("script|load"), Some(Merge::Same));
        assert_eq!(
            &merge_bytes(&Merge::Same, &[reply(sha), reply(sha)])[..],
            sha
        );
        assert_eq!(
            &merge_bytes(&Merge::Same, &[reply(sha), reply(b"$1\r\nx\r\n")])[..],
            b"-ERR slotproxy: the primaries' replies differ\r\n"
        );
        let no_known = Merge::AllExist { known: Vec::new() };
        assert_eq!(fan_out_merge("script|exists"), Some(no_known.clone()));
        let parts = [
            reply(b"*3\r\n:1\r\n:1\r\n:0\r\n"),
            reply(b"*3\r\n:1\r\n:0\r\n:0\r\n"),
        ];
        assert_eq!(
            &merge_bytes(&no_known, &parts)[..],
            b"*3\r\n:1\r\n:0\r\n:0\r\n"
        );
        let known = Merge::AllExist {
            known: vec![false, true, false],
        };
        assert_eq!(
            &merge_bytes(&known, &parts)[..],
            b"*3\r\n:1\r\n:1\r\n:0\r\n",
            "a script slotproxy would load where it is missing exists"
        );
        for name in ["function|delete", "function|flush", "function|restore"] {
            assert_eq!(fan_out_merge(name), Some(Merge::AllOk), "{name}");
        }
        assert_eq!(fan_out_merge("function|load"), Some(Merge::Same));
    }

    #[test]
    fn script_kill_reports_the_primary_that_was_busy() {
        let notbusy = b"-NOTBUSY No scripts in execution right now.\r\n";
        let unkillable = b"-UNKILLABLE Sorry the script already executed write commands\r\n";
        assert_eq!(
            &merge_bytes(&Merge::AnyOk, &[reply(notbusy), reply(b"+OK\r\n")])[..],
            b"+OK\r\n"
        );
        assert_eq!(
            &merge_bytes(&Merge::AnyOk, &[reply(notbusy), reply(unkillable)])[..],
            unkillable
        );
        assert_eq!(
            &merge_bytes(&Merge::AnyOk, &[reply(notbusy), reply(notbusy)])[..],
            notbusy
        );
    }

    #[test]
    fn function_stats_reports_the_primary_running_a_script() {
        let idle: &[u8] = b"*4\r\n$14\r\nrunning_script\r\n$-1\r\n$7\r\nengines\r\n*0\r\n";
        let busy: &[u8] = b"*4\r\n$14\r\nrunning_script\r\n*2\r\n$4\r\nname\r\n$1\r\nf\r\n\
                            $7\r\nengines\r\n*0\r\n";
        assert_eq!(
            &merge_bytes(&Merge::RunningScript, &[reply(idle), reply(busy)])[..],
            busy
        );
        assert_eq!(
            &merge_bytes(&Merge::RunningScript, &[reply(idle), reply(idle)])[..],
            idle
        );
    }

    #[test]
    fn function_list_keeps_the_libraries_every_primary_has() {
        let lib = |name: &str| {
            format!(
                "*6\r\n$12\r\nlibrary_name\r\n${}\r\n{name}\r\n$6\r\nengine\r\n$3\r\nLUA\r\n\
                 $9\r\nfunctions\r\n*0\r\n",
                name.len()
            )
        };
        let list = |names: &[&str]| {
            let mut raw = format!("*{}\r\n", names.len());
            for name in names {
                raw.push_str(&lib(name));
            }
            Reply::local(Bytes::from(raw))
        };
        let merged = merge_bytes(
            &Merge::CommonLibraries,
            &[
                list(&["a", "b", "c"]),
                list(&["c", "a"]),
                list(&["a", "c", "d"]),
            ],
        );
        assert_eq!(merged, list(&["a", "c"]).into_raw());
        // RESP3: each library is a map.
        let map = "%3\r\n$12\r\nlibrary_name\r\n$1\r\na\r\n$6\r\nengine\r\n$3\r\nLUA\r\n\
                   $9\r\nfunctions\r\n*0\r\n";
        let one = Reply::local(Bytes::from(format!("*1\r\n{map}")));
        let none = reply(b"*0\r\n");
        assert_eq!(
            merge(
                &Merge::CommonLibraries,
                &[one.clone(), one.clone()],
                Protocol::Resp3
            ),
            one.clone().into_raw()
        );
        assert_eq!(
            &merge(&Merge::CommonLibraries, &[one, none], Protocol::Resp3)[..],
            b"*0\r\n"
        );
    }

    #[test]
    fn resp3_values_merge_with_resp3_nulls() {
        let request = Request::from_args(["MGET", "a", "b"]);
        let (rule, _) = plan_split(SplitKind::Keys(MergeRule::Values), &request);
        let replies = [reply(b"*1\r\n_\r\n"), reply(b"*1\r\n$1\r\nx\r\n")];
        assert_eq!(
            &merge(&rule, &replies, Protocol::Resp3)[..],
            b"*2\r\n_\r\n$1\r\nx\r\n"
        );
    }
}
