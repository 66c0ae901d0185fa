//! `SUNION`, `SINTER`, `SDIFF` and `SINTERCARD` over the members each key's `SMEMBERS` read
//! returned, following redis 7.0's `t_set.c`.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};

use super::values::{keyword, set_elements, write_set_len};
use crate::command::policy::Algebra;
use crate::error::ReplyError;
use crate::protocol::reply::{write_bulk, write_integer};
use crate::protocol::string2ll;
use crate::protocol::{Protocol, Reply, View};

/// redis' default `set-max-intset-entries`: a result of at most this many integers is an intset,
/// which redis replies in ascending order.
const MAX_INTSET_ENTRIES: usize = 512;

/// Parses `SINTERCARD numkeys key... [LIMIT n]`: the keys and the limit (0: none).
///
/// # Errors
/// redis' error text, checked before any key is looked at.
pub(super) fn parse_intercard(args: &[Bytes]) -> Result<(&[Bytes], u64), ReplyError> {
    let numkeys = args
        .get(1)
        .and_then(|n| string2ll(n))
        .filter(|&n| n >= 1)
        .ok_or(ReplyError::NumkeysNotPositive)?;
    let numkeys = usize::try_from(numkeys).unwrap_or(usize::MAX);
    if numkeys > args.len() - 2 {
        return Err(ReplyError::NumkeysTooLarge);
    }
    let mut limit = 0;
    let mut i = 2 + numkeys;
    while i < args.len() {
        if keyword(&args[i], "LIMIT") && i + 1 < args.len() {
            i += 1;
            limit = string2ll(&args[i])
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(ReplyError::NegativeLimit)?;
        } else {
            return Err(ReplyError::Syntax);
        }
        i += 1;
    }
    Ok((&args[2..2 + numkeys], limit))
}

/// Computes a set command into `out`; `None` when a read's reply is not a set of members.
pub(super) fn compute(
    op: Algebra,
    keys: &[usize],
    replies: &[Reply],
    limit: u64,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Option<()> {
    let reads: Vec<Vec<&[u8]>> = replies
        .iter()
        .map(|reply| members(reply.raw()))
        .collect::<Option<_>>()?;
    let sets: Vec<&[&[u8]]> = keys
        .iter()
        .map(|&read| reads.get(read).map(Vec::as_slice))
        .collect::<Option<_>>()?;
    let result = match op {
        Algebra::SUnion => intset_order(union(&sets)),
        Algebra::SDiff => intset_order(diff(&sets)),
        Algebra::SInter => inter(&sets, 0),
        Algebra::SInterCard => {
            let count = inter(&sets, limit).len();
            write_integer(out, i64::try_from(count).unwrap_or(i64::MAX));
            return Some(());
        }
        _ => return None,
    };
    write_set_len(out, protocol, result.len());
    for member in result {
        write_bulk(out, member);
    }
    Some(())
}

/// The members of an `SMEMBERS` reply, in its order.
fn members(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let elements = set_elements(raw)?;
    let len = elements.len();
    let members: Vec<&[u8]> = elements
        .map(|element| View::of(element)?.bulk())
        .collect::<Option<_>>()?;
    (members.len() == len).then_some(members)
}

/// Every member of any set, in order of first appearance.
fn union<'a>(sets: &[&[&'a [u8]]]) -> Vec<&'a [u8]> {
    let mut seen = HashSet::new();
    sets.iter()
        .flat_map(|set| set.iter().copied())
        .filter(|member| seen.insert(*member))
        .collect()
}

/// The members of the first set that no other set has.
fn diff<'a>(sets: &[&[&'a [u8]]]) -> Vec<&'a [u8]> {
    let Some((first, others)) = sets.split_first() else {
        return Vec::new();
    };
    let others: Vec<HashSet<&[u8]>> = others
        .iter()
        .map(|set| set.iter().copied().collect())
        .collect();
    first
        .iter()
        .copied()
        .filter(|member| !others.iter().any(|set| set.contains(member)))
        .collect()
}

/// The members every set has, at most `limit` of them (0: all), in the order of the smallest
/// set (the first of the smallest), which is the one redis walks.
fn inter<'a>(sets: &[&[&'a [u8]]], limit: u64) -> Vec<&'a [u8]> {
    if sets.iter().any(|set| set.is_empty()) {
        return Vec::new();
    }
    // A stable sort by size, as redis' qsort (glibc's merge sort) is.
    let mut by_size: Vec<&[&[u8]]> = sets.to_vec();
    by_size.sort_by_key(|set| set.len());
    let Some((smallest, others)) = by_size.split_first() else {
        return Vec::new();
    };
    let others: Vec<HashSet<&[u8]>> = others
        .iter()
        .map(|set| set.iter().copied().collect())
        .collect();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for &member in smallest.iter() {
        if others.iter().all(|set| set.contains(member)) {
            out.push(member);
            if out.len() == limit {
                break;
            }
        }
    }
    out
}

/// redis builds `SUNION`'s and `SDIFF`'s result as an intset while every member is an integer
/// (up to `set-max-intset-entries`), and an intset replies in ascending order.
fn intset_order(mut members: Vec<&[u8]>) -> Vec<&[u8]> {
    if members.len() <= MAX_INTSET_ENTRIES {
        let numbers: Option<Vec<i64>> = members.iter().map(|m| string2ll(m)).collect();
        if let Some(numbers) = numbers {
            let mut pairs: Vec<(i64, &[u8])> = numbers.into_iter().zip(members).collect();
            pairs.sort_unstable_by_key(|&(n, _)| n);
            members = pairs.into_iter().map(|(_, m)| m).collect();
        }
    }
    members
}
