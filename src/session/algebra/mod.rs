//! Read-only multi-key commands computed by the proxy when their keys span slots: set algebra
//! (`SUNION`, `SINTER`, `SDIFF`, `SINTERCARD`), sorted-set algebra (`ZUNION`, `ZINTER`, `ZDIFF`,
//! `ZINTERCARD`) and `PFCOUNT` of several HyperLogLogs.
//!
//! A cluster node refuses these with `-CROSSSLOT`; redis-server computes them from the keys'
//! values. The proxy reads each distinct key from the node that owns it (one read per key, all
//! sent at once and each settled like any read, so the read policy may send them to replicas),
//! then computes the reply as redis-server 7.0 does: the same errors in the same order, the same
//! scores (down to the order floating-point sums are taken in), the same reply types in RESP2
//! and RESP3. When all keys share a slot none of this runs: the command goes to the node as is.
//!
//! Unlike on one redis-server the keys are not read atomically: another client's write may land
//! between two of the reads. Set replies keep redis' own order where it has one (ascending
//! integers for a result redis would hold as an intset, the smallest input's order for
//! `SINTER`); elsewhere redis' order is its hash table's, which no client can rely on.
//!
//! Planning and merging are pure like the rest of `split`: [`plan`] turns the request into the
//! reads, [`merge`] turns their replies into the client's reply. It must not know about nodes or
//! connections.

mod hll;
mod sets;
mod values;
mod zsets;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::cluster::{Slot, hash_slot};
use crate::error::ReplyError;
use crate::protocol::{Protocol, Reply, Request};

pub use crate::command::policy::Algebra;

impl Algebra {
    /// The read that fetches one key's value.
    fn read(self, key: &Bytes) -> Request {
        match self {
            Algebra::SUnion | Algebra::SInter | Algebra::SDiff | Algebra::SInterCard => {
                Request::from_args([Bytes::from_static(b"SMEMBERS"), key.clone()])
            }
            // Accepts sets too (each member scored 1), as ZUNION/ZINTER/ZDIFF do.
            Algebra::ZUnion | Algebra::ZInter | Algebra::ZDiff | Algebra::ZInterCard => {
                Request::from_args([
                    Bytes::from_static(b"ZUNION"),
                    Bytes::from_static(b"1"),
                    key.clone(),
                    Bytes::from_static(b"WITHSCORES"),
                ])
            }
            Algebra::PfCount => Request::from_args([Bytes::from_static(b"GET"), key.clone()]),
        }
    }
}

/// What a computed command needs once its keys have been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computation {
    op: Algebra,
    /// For each key, in the client's order, the index of the read that fetched it.
    keys: Vec<usize>,
    options: Options,
}

/// The parsed options of a computed command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Options {
    /// `SUNION`, `SINTER`, `SDIFF`, `PFCOUNT`: none.
    None,
    /// `SINTERCARD`'s `LIMIT` (0: no limit).
    Limit(u64),
    /// The sorted-set commands' options, or the error redis gives for them once it has found
    /// every key of a usable type (it checks the keys first).
    ZSet(Result<zsets::Options, ReplyError>),
}

/// Plans the reads of a computed command whose keys span slots: one per distinct key, in order
/// of first appearance, each addressed by its key's slot.
///
/// # Errors
/// The error reply redis-server gives before it looks at any key (`SINTERCARD`'s numkeys and
/// `LIMIT`, the sorted-set commands' numkeys).
pub fn plan(op: Algebra, request: &Request) -> Result<(Computation, Vec<(Slot, Request)>), Bytes> {
    let args = request.args();
    let (keys, options) = match op {
        Algebra::SUnion | Algebra::SInter | Algebra::SDiff | Algebra::PfCount => {
            (&args[1..], Options::None)
        }
        Algebra::SInterCard => {
            let (keys, limit) = sets::parse_intercard(args).map_err(|e| e.to_bytes())?;
            (keys, Options::Limit(limit))
        }
        Algebra::ZUnion | Algebra::ZInter | Algebra::ZDiff | Algebra::ZInterCard => {
            let (keys, options) = zsets::parse(op, args).map_err(|e| e.to_bytes())?;
            (keys, Options::ZSet(options))
        }
    };
    let mut first_read: HashMap<&[u8], usize> = HashMap::with_capacity(keys.len());
    let mut reads = Vec::new();
    let mut positions = Vec::with_capacity(keys.len());
    for key in keys {
        let index = *first_read.entry(&key[..]).or_insert_with(|| {
            reads.push((hash_slot(key), op.read(key)));
            reads.len() - 1
        });
        positions.push(index);
    }
    let computation = Computation {
        op,
        keys: positions,
        options,
    };
    Ok((computation, reads))
}

/// Computes the client's reply from the reads' replies (in read order).
///
/// The first error among the keys, in the client's key order, is the reply: redis-server checks
/// the keys one after the other and stops at the first of the wrong type.
pub fn merge(computation: &Computation, replies: &[Reply], protocol: Protocol) -> Bytes {
    let Computation { op, keys, options } = computation;
    if *op == Algebra::PfCount {
        return hll::pfcount(keys, replies);
    }
    if let Some(error) = keys
        .iter()
        .filter_map(|&read| replies.get(read))
        .find(|reply| reply.error_text().is_some())
    {
        return error.raw().clone();
    }
    let mut out = BytesMut::new();
    let computed = match options {
        Options::None => sets::compute(*op, keys, replies, 0, protocol, &mut out),
        Options::Limit(limit) => sets::compute(*op, keys, replies, *limit, protocol, &mut out),
        Options::ZSet(Err(error)) => return error.to_bytes(),
        Options::ZSet(Ok(zset)) => zsets::compute(*op, keys, replies, zset, protocol, &mut out),
    };
    match computed {
        Some(()) => out.freeze(),
        None => ReplyError::KeyReadReply.to_bytes(),
    }
}

#[cfg(test)]
mod tests;
