//! How two replies are compared: byte for byte, or normalised where redis-server's own
//! order or timing makes the bytes differ between two correct servers.

use crate::common;

/// How two replies are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Norm {
    /// Byte for byte.
    Exact,
    /// Top-level elements sorted first: their order is a hash table's iteration order.
    Unordered,
    /// ZSCAN: the member-score pairs sorted first. SORT turns a small sorted set into a skiplist,
    /// whose hash table yields them in its own order.
    UnorderedScan,
    /// A non-negative integer only as "has a deadline": relative deadlines differ by microseconds.
    Deadline,
}

/// The reply in the form it is compared in (see [`Norm`]).
pub(super) fn normalise(reply: &[u8], norm: Norm) -> Vec<u8> {
    match norm {
        Norm::Exact => reply.to_vec(),
        Norm::Deadline => match reply.strip_prefix(b":") {
            Some(rest) if !rest.starts_with(b"-") => b":<has a deadline>\r\n".to_vec(),
            _ => reply.to_vec(),
        },
        Norm::Unordered => match common::split_aggregate(reply) {
            Some((header, mut elements)) => {
                elements.sort_unstable();
                [header, &elements.concat()].concat()
            }
            None => reply.to_vec(),
        },
        Norm::UnorderedScan => {
            // [cursor, [field, value, field, value...]]: sort the pairs.
            let Some((header, outer)) = common::split_aggregate(reply) else {
                return reply.to_vec();
            };
            let Some((inner_header, elements)) =
                outer.get(1).and_then(|e| common::split_aggregate(e))
            else {
                return reply.to_vec();
            };
            let mut pairs: Vec<Vec<u8>> = elements.chunks(2).map(<[&[u8]]>::concat).collect();
            pairs.sort_unstable();
            [header, outer[0], inner_header, &pairs.concat()].concat()
        }
    }
}
