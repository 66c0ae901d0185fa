//! Cross-slot transactions under `session.cross_slot_transactions = "per-slot"`: `EXEC` runs
//! each slot's queued commands as one `MULTI`/`EXEC` on that slot's node, and the client gets
//! one `EXEC` reply with every command's reply in the order it queued them.
//!
//! Planning (which commands go together) and merging (the slots' `EXEC` replies into one) are
//! pure, so they are unit-tested here; `transaction.rs` builds the batches and `dispatch.rs`
//! sends them as the parts of one split request, each settled like a one-slot transaction.
//!
//! A part that did not run as a whole never passes for success: a slot whose `EXEC` failed
//! (`-EXECABORT` from its node, or its connection lost with the outcome unknown) puts that
//! error in the place of each of its commands' replies; the other slots' replies are real.

use bytes::{Bytes, BytesMut};

use crate::cluster::Slot;
use crate::error::ReplyError;
use crate::protocol::reply::write_array_len;
use crate::protocol::view::elements;
use crate::protocol::{Reply, View};

/// One slot's share of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    /// The slot whose node runs it.
    pub(super) slot: Slot,
    /// Indices of its commands in the client's queue, in queue order.
    pub(super) positions: Vec<usize>,
}

/// Groups a transaction's commands by slot, slots in order of first appearance (the watched
/// slot first, if any, even with no command of its own: its `EXEC` checks the watch), each
/// slot's commands in queue order. Keyless commands (`PING`, `TIME`...) join the first group.
/// `None` when the transaction does not span slots (it runs as one piece).
pub(super) fn group(slots: &[Option<Slot>], watched: Option<Slot>) -> Option<Vec<Group>> {
    let mut groups: Vec<Group> = watched
        .map(|slot| Group {
            slot,
            positions: Vec::new(),
        })
        .into_iter()
        .collect();
    for (position, slot) in slots.iter().enumerate() {
        let Some(slot) = *slot else { continue };
        match groups.iter_mut().find(|g| g.slot == slot) {
            Some(group) => group.positions.push(position),
            None => groups.push(Group {
                slot,
                positions: vec![position],
            }),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    let keyless = slots
        .iter()
        .enumerate()
        .filter(|(_, slot)| slot.is_none())
        .map(|(position, _)| position);
    groups[0].positions.extend(keyless);
    groups[0].positions.sort_unstable();
    Some(groups)
}

/// Whether a slot's `EXEC` reply says its commands ran: an array, not nil or an error.
pub(super) fn ran(exec_reply: &Reply) -> bool {
    matches!(View::of(exec_reply.raw()), Some(View::Array(_)))
}

/// The client's `EXEC` reply: `replies[i]` is group `i`'s `EXEC` reply, whose elements belong
/// at `positions[i]` of the `total` commands. A `watched` transaction whose first (watched)
/// group did not run ran nowhere: its reply (nil, or the error) is the client's.
pub(super) fn merge(
    positions: &[Vec<usize>],
    total: usize,
    watched: bool,
    replies: &[Reply],
) -> Bytes {
    if watched
        && let Some(first) = replies.first()
        && !ran(first)
    {
        return first.raw().clone();
    }
    let mut entries: Vec<Option<Bytes>> = vec![None; total];
    for (group, reply) in positions.iter().zip(replies) {
        let raw = reply.raw();
        let values = elements(raw);
        let failed = if ran(reply) && values.len() == group.len() {
            None
        } else if reply.error_text().is_some() {
            Some(raw.clone())
        } else {
            // Nil: the node ran none of it (no WATCH goes with a per-slot transaction, so
            // this is not expected), or a reply of the wrong shape.
            Some(ReplyError::SlotPartNotRun.to_bytes())
        };
        for (i, &position) in group.iter().enumerate() {
            entries[position] = Some(match &failed {
                Some(error) => error.clone(),
                None => raw.slice_ref(values[i]),
            });
        }
    }
    let mut out = BytesMut::new();
    write_array_len(&mut out, total);
    for entry in entries {
        match entry {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => ReplyError::TransactionReplyMissing.write(&mut out),
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(raw: &'static [u8]) -> Reply {
        Reply::local(Bytes::from_static(raw))
    }

    #[test]
    fn commands_group_by_slot_in_first_appearance_order_and_keyless_ones_join_the_first() {
        let (a, b) = (Some(Slot(7)), Some(Slot(9000)));
        let groups = group(&[b, a, None, b, a, None], None).unwrap();
        assert_eq!(
            groups,
            vec![
                Group {
                    slot: Slot(9000),
                    positions: vec![0, 2, 3, 5]
                },
                Group {
                    slot: Slot(7),
                    positions: vec![1, 4]
                },
            ]
        );
        assert_eq!(
            group(&[a, None, a], None),
            None,
            "one slot runs as one piece"
        );
        assert_eq!(group(&[None, None], None), None);
        assert_eq!(group(&[a, None], a), None, "watched and queued on one slot");
        let watched = group(&[a, None], b).unwrap();
        assert_eq!(
            watched[0].slot,
            Slot(9000),
            "the watched slot's part comes first"
        );
        assert_eq!(watched[0].positions, vec![1], "keyless commands join it");
        assert_eq!(watched[1].positions, vec![0]);
    }

    #[test]
    fn replies_return_to_the_clients_order() {
        let parts = [reply(b"*2\r\n+OK\r\n:2\r\n"), reply(b"*1\r\n$1\r\nx\r\n")];
        for watched in [false, true] {
            let merged = merge(&[vec![0, 2], vec![1]], 3, watched, &parts);
            assert_eq!(&merged[..], b"*3\r\n+OK\r\n$1\r\nx\r\n:2\r\n");
        }
    }

    #[test]
    fn a_failed_slot_puts_its_error_in_each_of_its_places() {
        let lost: &[u8] = b"-ERR slotproxy: connection to node 127.0.0.1:7000 lost before the reply: read: reset; the command may or may not have been applied\r\n";
        let merged = merge(
            &[vec![0, 2], vec![1]],
            3,
            false,
            &[
                Reply::local(Bytes::from_static(lost)),
                reply(
                    b"*1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                ),
            ],
        );
        let mut want = b"*3\r\n".to_vec();
        want.extend_from_slice(lost);
        want.extend_from_slice(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        );
        want.extend_from_slice(lost);
        assert_eq!(&merged[..], &want[..]);
        let aborted = merge(
            &[vec![0], vec![1]],
            2,
            false,
            &[reply(b"*-1\r\n"), reply(b"*1\r\n+OK\r\n")],
        );
        assert!(aborted.starts_with(b"*2\r\n-EXECABORT slotproxy:"));
        assert!(aborted.ends_with(b"+OK\r\n"));
    }

    #[test]
    fn a_watched_transaction_whose_watch_failed_ran_nowhere() {
        let never_sent = Reply::local(Bytes::new());
        for nil in [&b"*-1\r\n"[..], b"_\r\n"] {
            let merged = merge(
                &[vec![0], vec![1]],
                2,
                true,
                &[
                    Reply::local(Bytes::copy_from_slice(nil)),
                    never_sent.clone(),
                ],
            );
            assert_eq!(&merged[..], nil);
        }
    }
}
