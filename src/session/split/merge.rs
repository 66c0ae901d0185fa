//! Merging the parts' replies of a split or fanned-out command into the one reply the client
//! gets: pure (part replies in, one reply out), so every rule is unit-tested without a cluster.

use bytes::{Bytes, BytesMut};

use super::{Combined, Merge, info};
use crate::error::ReplyError;
use crate::protocol::reply::{write_array_len, write_integer, write_null, write_simple};
use crate::protocol::view::elements;
use crate::protocol::{Protocol, Reply, View};

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
            let merged = crate::session::per_slot::merge(positions, *total, *watched, replies);
            return combine(merged, combined, protocol);
        }
        Merge::Computed(computation) => {
            return crate::session::algebra::merge(computation, replies, protocol);
        }
        _ => {}
    }
    if let Some(error) = replies.iter().find(|r| r.error_text().is_some()) {
        return error.raw().clone();
    }
    let mut out = BytesMut::new();
    match merge {
        Merge::Info => return info::merge_info(replies, protocol),
        Merge::Slowlog(count) => return crate::session::slowlog::merge_get(*count, replies),
        Merge::SlowlogLen => return crate::session::slowlog::merge_len(replies),
        Merge::Scan(phase) => {
            return match replies {
                [reply] => crate::session::scan::merge_reply(phase.phase, reply.raw()),
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
