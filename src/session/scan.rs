//! `SCAN` over the whole cluster: one primary at a time, with a cursor that says which one.
//!
//! Each client `SCAN` goes to one primary (whatever the read policy: the cursor belongs to that
//! node), with the client's `MATCH`/`COUNT`/`TYPE` options as they are and only the cursor
//! replaced by that node's own cursor. When the node's cursor comes back as 0, the next call
//! moves on to the next primary. The proxy keeps no state: everything is in the client's
//! cursor, so a cursor works on any connection and any slotproxy in front of the same cluster.
//! It is a decimal number below 2^63 (clients that parse cursors as signed 64-bit integers
//! work), laid out as
//!
//! ```text
//! bit 63 | 62 ......... 25 | 24 .... 15 | 14   | 13 ..... 0
//!   0    | node cursor (38) | check (10) | walk | anchor slot
//! ```
//!
//! - The *anchor* is a slot: the primary scanned now is the one that owns it. Shards are visited
//!   in the order of their lowest slot, and each one's anchor is its lowest slot.
//! - The *node cursor* is the node's own cursor; 0 means "that node is done, move on".
//! - The *check* is a hash (never 0) of what the anchor meant when the cursor was made: the
//!   anchor's primary, and, in order mode, every shard visited before it with its primary. A
//!   cursor whose check no longer matches the slot map is not trusted: the anchor's current
//!   primary is scanned again from its start, in walk mode.
//! - *Walk mode* (sticky once the topology changed during the iteration) moves from the anchor
//!   to the next slot owned by another primary, instead of to the next shard's lowest slot.
//!
//! Cursor 0 starts at the shard with the lowest slot; the proxy answers cursor 0 after the last
//! shard (with an empty batch, as redis-server may too). A call whose primary finishes with
//! fewer keys than `COUNT` goes on to the next primary in the same call (`scan_batch.rs`),
//! which is the client's next call made by the proxy, so nothing below changes. A cursor the proxy can't have made gets
//! redis' `ERR invalid cursor`. A node cursor wider than 38 bits (a table of 2^38 buckets, far
//! beyond any node's memory on redis 7.0) gets an error rather than being truncated.
//!
//! # Guarantee
//!
//! With a stable topology, a full iteration is exactly redis-server's SCAN on each primary in
//! turn: every key present for the whole iteration is returned, and a key is returned twice only
//! when redis' own SCAN would (a node resizing its table mid-scan).
//!
//! When slots migrate, primaries fail over, or shards come and go during the iteration, a key
//! that *stayed put* (it and its slot stayed on the same node for the whole iteration, and that
//! node was a primary throughout) is still returned at least once, as far as the proxy's slot
//! map is current: the node holding it is scanned from start to end at some point. What
//! changes is the number of duplicates: a primary whose cursor can't be trusted any more is
//! rescanned from its start, and in walk mode a primary that owns several separate slot ranges
//! is scanned once per range after the first change. Keys that move during the iteration may
//! be returned twice or not at all, like keys written or deleted during a redis SCAN. A call
//! that reaches a new primary with the old one's cursor (the map changed while it waited to be
//! sent, or it was retried after a failed connect) is caught by the check on the next call,
//! which rescans that primary. The checks are 10-bit hashes, so a topology change goes
//! unnoticed with probability 1/1022; that, a slot map that lags the cluster, and a slot that
//! moves away and back within one call are the ways a key that stayed put can be missed. The
//! proof sketch is in the comments of [`plan`].

use bytes::{Bytes, BytesMut};

use crate::cluster::{ShardLayout, Slot};
use crate::error::ReplyError;
use crate::protocol::reply::{write_array_len, write_bulk};
use crate::protocol::{Request, View, string2ll};

const SLOT_MASK: u64 = (1 << 14) - 1;
const WALK_BIT: u64 = 1 << 14;
const CHECK_SHIFT: u32 = 15;
const CHECK_BITS: u32 = 10;
const NODE_SHIFT: u32 = CHECK_SHIFT + CHECK_BITS;
/// Bits of the client's cursor that hold the node's cursor.
const NODE_CURSOR_BITS: u32 = 63 - NODE_SHIFT;
/// A check no hash produces: the anchor had no primary when the phase began, so the next call
/// scans its primary from the start.
const UNVERIFIED: u16 = 1;
/// A check that never matches: the anchor no longer means what the cursor says.
const MISMATCH: u16 = 0;

/// One primary's turn in an iteration: which slot's owner, how the next one is chosen, and the
/// hash that says whether the cursor still means what it did. The node's cursor is apart, since
/// a `Phase` is what the merge needs to build the client's cursor from the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    anchor: u16,
    walk: bool,
    check: u16,
}

impl Phase {
    /// The client's cursor for this phase with the node at `node` (0: the node is done).
    ///
    /// # Errors
    /// When `node` does not fit in the cursor's node bits.
    pub(super) fn cursor(self, node: u64) -> Result<u64, ReplyError> {
        if node >> NODE_CURSOR_BITS != 0 {
            return Err(ReplyError::ScanCursorTooWide {
                cursor: node,
                bits: NODE_CURSOR_BITS,
            });
        }
        let walk = if self.walk { WALK_BIT } else { 0 };
        Ok(node << NODE_SHIFT
            | u64::from(self.check) << CHECK_SHIFT
            | walk
            | u64::from(self.anchor))
    }

    /// Splits a client's cursor (not 0) into its phase and node cursor; `None` for a cursor the
    /// proxy can't have made.
    fn decode(cursor: u64) -> Option<(Phase, u64)> {
        if cursor >> 63 != 0 {
            return None;
        }
        let check = ((cursor >> CHECK_SHIFT) & ((1 << CHECK_BITS) - 1)) as u16;
        if check == MISMATCH {
            return None;
        }
        let phase = Phase {
            anchor: (cursor & SLOT_MASK) as u16,
            walk: cursor & WALK_BIT != 0,
            check,
        };
        Some((phase, cursor >> NODE_SHIFT))
    }
}

/// What a `SCAN` call does, decided from the client's cursor and the slot map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Send `SCAN node ...` to the primary of the phase's anchor.
    Scan(Phase, u64),
    /// Every shard is done: answer cursor 0 and no keys.
    Finished,
    /// The slot map has no shard yet.
    NoTopology,
}

/// What one client `SCAN` call does.
pub(super) enum Call {
    /// Send this request (the client's, with the node's own cursor) to the primary of the
    /// anchor slot, and rewrite its reply's cursor with `Phase` (`merge_reply`).
    Node(Phase, Slot, Request),
    /// Every shard is done: answer cursor 0 and no keys.
    Finished,
    /// The slot map has no shard yet.
    NoTopology,
}

/// Decides what `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]` does under `layout`,
/// or the error the client gets for its cursor or options.
pub(super) fn call(args: &[Bytes], layout: &[ShardLayout]) -> Result<Call, ReplyError> {
    let cursor = parse_cursor(&args[1]).ok_or(ReplyError::InvalidCursor)?;
    call_at(args, cursor, layout)
}

/// [`call`] with the client's cursor given as a number (`args[1]` is not read): the next step
/// of a call that continues on the next primary (`scan_batch.rs`).
pub(super) fn call_at(
    args: &[Bytes],
    cursor: u64,
    layout: &[ShardLayout],
) -> Result<Call, ReplyError> {
    let at = match cursor {
        0 => None,
        cursor => Some(Phase::decode(cursor).ok_or(ReplyError::InvalidCursor)?),
    };
    Ok(match plan(layout, at) {
        Next::Scan(phase, node) => {
            let mut node_args = args.to_vec();
            node_args[1] = Bytes::from(node.to_string());
            Call::Node(phase, Slot(phase.anchor), Request::from_args(node_args))
        }
        Next::Finished => {
            check_options(&args[2..])?;
            Call::Finished
        }
        Next::NoTopology => Call::NoTopology,
    })
}

/// Decides the next step of an iteration at `at` (`None`: cursor 0) under `layout`.
///
/// Why no key that stayed put is missed: call a slot *covered* when a node that owned it was
/// scanned from start to end, as one run of verified calls, during the iteration. Invariant at
/// the start of each phase with anchor `s`: every slot below `s` that stayed on one node is
/// covered. It holds for the first phase (no assigned slot is below the lowest one). A phase
/// ends only through a verified call, so the node just finished is the anchor's primary named
/// in the check.
/// - Order mode moves to the next shard's lowest slot `n`. The check matched, so the shards with
///   a lowest slot up to `s` (with their primaries) are those the iteration visited, and no
///   shard has its lowest slot between `s` and `n`: every slot below `n` belongs to a visited
///   shard.
/// - Walk mode moves to the first slot `n` above `s` owned by another primary: the slots between
///   belong to the primary just scanned.
/// - A failed check restarts the anchor's primary from its start, which the invariant allows.
fn plan(layout: &[ShardLayout], at: Option<(Phase, u64)>) -> Next {
    let Some((phase, node)) = at else {
        return match layout.iter().filter_map(lowest_slot).min() {
            Some(anchor) => Next::Scan(order_phase(layout, anchor), 0),
            None => Next::NoTopology,
        };
    };
    let expected = if phase.walk {
        owner_check(layout, phase.anchor)
    } else {
        order_check(layout, phase.anchor)
    };
    if expected != phase.check {
        return Next::Scan(walk_phase(layout, phase.anchor), 0);
    }
    if node != 0 {
        return Next::Scan(phase, node);
    }
    if phase.walk {
        match next_owner(layout, phase.anchor) {
            Some(anchor) => Next::Scan(walk_phase(layout, anchor), 0),
            None => Next::Finished,
        }
    } else {
        let next = layout
            .iter()
            .filter_map(lowest_slot)
            .filter(|&lowest| lowest > phase.anchor)
            .min();
        match next {
            Some(anchor) => Next::Scan(order_phase(layout, anchor), 0),
            None => Next::Finished,
        }
    }
}

fn order_phase(layout: &[ShardLayout], anchor: u16) -> Phase {
    Phase {
        anchor,
        walk: false,
        check: order_check(layout, anchor),
    }
}

fn walk_phase(layout: &[ShardLayout], anchor: u16) -> Phase {
    let check = match owner_check(layout, anchor) {
        MISMATCH => UNVERIFIED,
        check => check,
    };
    Phase {
        anchor,
        walk: true,
        check,
    }
}

fn lowest_slot(shard: &ShardLayout) -> Option<u16> {
    shard.ranges.first().map(|&(start, _)| start)
}

/// The primary (address) that owns `slot`.
fn owner(layout: &[ShardLayout], slot: u16) -> Option<&str> {
    layout
        .iter()
        .find(|shard| shard.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)))
        .map(|shard| shard.primary.as_str())
}

/// The first slot above `slot` owned by a primary other than `slot`'s.
fn next_owner(layout: &[ShardLayout], slot: u16) -> Option<u16> {
    let current = owner(layout, slot);
    layout
        .iter()
        .filter(|shard| Some(shard.primary.as_str()) != current)
        .flat_map(|shard| shard.ranges.iter())
        .filter(|&&(_, end)| end > slot)
        .map(|&(start, _)| start.max(slot + 1))
        .min()
}

/// Walk mode's check: the anchor's primary.
fn owner_check(layout: &[ShardLayout], anchor: u16) -> u16 {
    match owner(layout, anchor) {
        Some(primary) => check_of(Fnv::new().bytes(primary.as_bytes()).0),
        None => MISMATCH,
    }
}

/// Order mode's check: every shard whose lowest slot is at most the anchor, with its primary;
/// `MISMATCH` when the anchor is no shard's lowest slot.
fn order_check(layout: &[ShardLayout], anchor: u16) -> u16 {
    if !layout.iter().any(|s| lowest_slot(s) == Some(anchor)) {
        return MISMATCH;
    }
    let mut hash = Fnv::new();
    for shard in layout {
        if let Some(lowest) = lowest_slot(shard).filter(|&l| l <= anchor) {
            hash = hash
                .bytes(&lowest.to_be_bytes())
                .bytes(shard.primary.as_bytes())
                .bytes(b"\n");
        }
    }
    check_of(hash.0)
}

/// A check value from a hash: never `MISMATCH` or `UNVERIFIED`.
fn check_of(hash: u64) -> u16 {
    let room = (1u64 << CHECK_BITS) - 2;
    (2 + hash % room) as u16
}

/// FNV-1a, 64 bits: stable across processes and versions, so any slotproxy in front of the same
/// cluster reads the cursors of another.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fnv(pub(super) u64);

impl Fnv {
    /// The hash of nothing (FNV's offset basis).
    pub(super) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// The hash extended with `data`.
    pub(super) fn bytes(mut self, data: &[u8]) -> Self {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
}

/// Rewrites a node's `SCAN` reply (`[cursor, [keys...]]`) into the client's: the node's cursor
/// becomes the proxy's, the keys are forwarded as they are (RESP2 and RESP3 alike).
pub(super) fn merge_reply(phase: Phase, raw: &[u8]) -> Bytes {
    let rewritten = split_reply(raw)
        .ok_or(ReplyError::ScanReply)
        .and_then(|(node, keys)| Ok((phase.cursor(node)?, keys)));
    match rewritten {
        Ok((cursor, keys)) => {
            let mut out = BytesMut::with_capacity(raw.len() + 16);
            write_array_len(&mut out, 2);
            write_bulk(&mut out, cursor.to_string().as_bytes());
            out.extend_from_slice(keys);
            out.freeze()
        }
        Err(error) => error.to_bytes(),
    }
}

/// The node cursor and the raw keys array of a `SCAN` reply.
pub(super) fn split_reply(raw: &[u8]) -> Option<(u64, &[u8])> {
    let mut elements = match View::of(raw)? {
        View::Array(elements) if elements.len() == 2 => elements,
        _ => return None,
    };
    let cursor = View::of(elements.next()?)?.bulk()?;
    let keys = elements.next()?;
    if !matches!(View::of(keys)?, View::Array(_)) {
        return None;
    }
    Some((std::str::from_utf8(cursor).ok()?.parse().ok()?, keys))
}

/// Parses a cursor the way redis-server does (`strtoul`): an empty string is 0, a sign is
/// allowed (a negative number wraps), whitespace and anything else after the digits are not.
fn parse_cursor(arg: &[u8]) -> Option<u64> {
    let (negative, digits) = match arg.first() {
        Some(b'-') => (true, &arg[1..]),
        Some(b'+') => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() {
        return (arg.is_empty()).then_some(0);
    }
    let value: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// Checks SCAN's options as redis-server does, for the one reply the proxy gives without a
/// node (the end of the iteration).
fn check_options(options: &[Bytes]) -> Result<(), ReplyError> {
    const SYNTAX: ReplyError = ReplyError::Syntax;
    let mut i = 0;
    while i < options.len() {
        let option = &options[i];
        let Some(value) = options.get(i + 1) else {
            return Err(SYNTAX);
        };
        if option.eq_ignore_ascii_case(b"COUNT") {
            let count = string2ll(value).ok_or(ReplyError::NotInteger)?;
            if count < 1 {
                return Err(SYNTAX);
            }
        } else if !option.eq_ignore_ascii_case(b"MATCH") && !option.eq_ignore_ascii_case(b"TYPE") {
            return Err(SYNTAX);
        }
        i += 2;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests;
