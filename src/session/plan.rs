//! What the session does with a request once `handle.rs` has read its policy row: a `Plan`
//! names the target(s) and the connection kind, and says whether the request must wait for
//! earlier ones (`order.rs`); `keys_slot` is the check most plans start from (the one slot of a
//! request's keys). Data only; `dispatch.rs` sends it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::algebra::Algebra;
use super::split::Merge;
use super::target::Target;
use crate::backend::Node;
use crate::cluster::{Slot, hash_slot};
use crate::command::CommandSpec;
use crate::command::keys::key_positions;
use crate::command::policy::SplitKind;
use crate::protocol::request::encode_multibulk;
use crate::protocol::{Request, string2ll};

/// How a request is sent: to one node, or in parts merged into one reply.
#[derive(Debug, Clone)]
pub(super) enum Plan {
    /// One request to one target.
    Single(Target),
    /// A read-only request: the session's read policy may send it to a replica, and it is
    /// retried when its connection dies before the reply.
    Read(Target),
    /// A blocking command, sent on the session's dedicated connection to the target's node.
    Blocking(Target),
    /// A cross-slot multi-key command, split by slot.
    Split {
        /// How its arguments split.
        kind: SplitKind,
        /// Whether the command writes (its parts note their slots for read-your-writes).
        writes: bool,
    },
    /// A cross-slot read-only command computed by the proxy from its keys' values.
    Computed(Algebra),
    /// A whole-keyspace command, sent to every primary.
    FanOut {
        /// How the primaries' replies merge.
        merge: Merge,
        /// Whether the command writes (it notes every slot for read-your-writes).
        writes: bool,
    },
    /// An allowed admin command, sent to every node (primaries and replicas).
    AllNodes {
        /// How the nodes' replies merge.
        merge: Merge,
        /// Whether the command writes.
        writes: bool,
    },
    /// Requests built by a command's own module (e.g. SCAN), sent as given and merged.
    Parts(Merge, Vec<(Target, Request)>),
    /// `WATCH` on the session's dedicated connection to the slot's primary.
    Watch(Slot),
    /// A transaction batch (MULTI ... EXEC).
    Exec(Target, Exec),
    /// A transaction that spans slots, run per slot.
    PerSlotExec(PerSlotExec),
    /// `WAIT` / `WAITAOF`, on the connections the session's writes went out on.
    Wait(Wait),
}

impl Plan {
    /// Whether the request must wait until everything sent before it is answered: it goes out
    /// on another connection (see `dedicated`), or it reads the whole keyspace (DBSIZE, KEYS,
    /// SCAN...) and an earlier write may still be on its way to its node after a redirect.
    pub(super) fn order_needs(&self) -> super::order::Needs {
        super::order::Needs {
            waits_for_earlier: self.waits_for_earlier(),
            dedicated: self.dedicated(),
        }
    }

    /// Whether the request must not overtake anything sent before it (see `order.rs`).
    pub(super) fn waits_for_earlier(&self) -> bool {
        self.dedicated()
            || matches!(
                self,
                Plan::FanOut { .. } | Plan::AllNodes { .. } | Plan::Parts(..)
            )
    }

    /// Whether the request goes out on a connection other than the shared ones, so it waits for
    /// earlier requests to settle, and later ones wait for it, to keep their order on the node.
    pub(super) fn dedicated(&self) -> bool {
        match self {
            Plan::Blocking(_) | Plan::Watch(_) | Plan::Wait(_) => true,
            Plan::Exec(_, exec) => exec.watched.is_some(),
            Plan::PerSlotExec(exec) => exec.watched.is_some(),
            Plan::Single(_)
            | Plan::Read(_)
            | Plan::Split { .. }
            | Plan::Computed(_)
            | Plan::FanOut { .. }
            | Plan::AllNodes { .. }
            | Plan::Parts(..) => false,
        }
    }

    /// Whether the parts of a split or fanned-out command write (from the command's policy row).
    pub(super) fn writes(&self) -> bool {
        match self {
            Plan::Split { writes, .. }
            | Plan::FanOut { writes, .. }
            | Plan::AllNodes { writes, .. } => *writes,
            _ => false,
        }
    }
}

/// Keys of one request in more than one slot.
pub(super) struct CrossSlot;

/// The one slot all of the request's keys hash to; `None` when it has no keys (or key
/// extraction failed, in which case a node produces redis' own error for the arguments).
/// `positions` is scratch space for the keys' positions.
pub(super) fn keys_slot(
    positions: &mut Vec<usize>,
    spec: &CommandSpec,
    request: &Request,
) -> Result<Option<Slot>, CrossSlot> {
    positions.clear();
    if key_positions(spec, request.args(), positions).is_err() {
        return Ok(None);
    }
    let mut slot = None;
    for &position in positions.iter() {
        let this = hash_slot(&request.args()[position]);
        match slot {
            None => slot = Some(this),
            Some(s) if s != this => return Err(CrossSlot),
            Some(_) => {}
        }
    }
    Ok(slot)
}

/// What `EXEC` needs to send and settle the transaction.
#[derive(Debug, Clone)]
pub(super) struct Exec {
    /// Replies the job produces: MULTI, each command, EXEC.
    pub(super) replies: usize,
    /// The node `WATCH` went to, if any: EXEC must run there.
    pub(super) watched: Option<(Arc<Node>, Slot)>,
}

/// What `EXEC` of a transaction that spans slots sends: one batch per slot.
#[derive(Debug, Clone)]
pub(super) struct PerSlotExec {
    /// Each slot's batch and how many replies it produces; the watched slot's first.
    pub(super) batches: Vec<(Slot, Request, usize)>,
    /// Queue positions of each batch's commands.
    pub(super) positions: Vec<Vec<usize>>,
    /// Commands the client queued.
    pub(super) total: usize,
    /// The node `WATCH` went to: the first batch runs there, and the others only if it ran.
    pub(super) watched: Option<(Arc<Node>, Slot)>,
    /// Client commands queued as several parts, whose replies merge into one.
    pub(super) combined: Vec<super::split::Combined>,
}

/// What one WAIT or WAITAOF asks for.
#[derive(Debug, Clone)]
pub(super) struct Wait {
    /// The minimum of each reply field: `[numreplicas]` (WAIT) or `[numlocal, numreplicas]`.
    pub(super) wanted: Vec<i64>,
    /// The client's timeout; `None` waits forever (`0`).
    pub(super) timeout: Option<Duration>,
    /// The command's name and arguments but the timeout, to rebuild it with a slice's timeout.
    head: Vec<Bytes>,
}

impl Wait {
    /// Parses WAIT / WAITAOF; `None` when an argument is not what redis accepts, in which case
    /// the request goes to a node as it is, for redis' own error.
    pub(super) fn parse(request: &Request) -> Option<Self> {
        let args = request.args();
        let (timeout, counts) = args[1..].split_last()?;
        let wanted = counts
            .iter()
            .map(|a| string2ll(a).filter(|n| *n >= 0))
            .collect::<Option<Vec<_>>>()?;
        let timeout_ms = u64::try_from(string2ll(timeout)?).ok()?;
        Some(Self {
            wanted,
            timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
            head: args[..args.len() - 1].to_vec(),
        })
    }

    /// The command with `timeout` in place of the client's.
    pub(super) fn payload(&self, timeout: Duration) -> Bytes {
        let mut args = self.head.clone();
        args.push(Bytes::from(timeout.as_millis().to_string()));
        let mut out = BytesMut::new();
        encode_multibulk(&mut out, &args);
        out.freeze()
    }

    pub(super) fn satisfied(&self, counts: &[i64]) -> bool {
        counts.len() == self.wanted.len() && counts.iter().zip(&self.wanted).all(|(c, w)| c >= w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(args: &[&'static str]) -> Option<Wait> {
        Wait::parse(&Request::from_args(args.iter().copied()))
    }

    #[test]
    fn wait_arguments_follow_redis_integer_rules_or_go_to_a_node_as_sent() {
        let parsed = wait(&["WAITAOF", "1", "2", "100"]).expect("valid WAITAOF");
        assert_eq!(parsed.wanted, vec![1, 2]);
        assert_eq!(parsed.timeout, Some(Duration::from_millis(100)));
        assert_eq!(wait(&["WAIT", "1", "0"]).expect("valid WAIT").timeout, None);
        // What redis' string2ll refuses (a sign, a leading zero, spaces) and negative counts
        // or timeouts are left to the node, which answers with its own error.
        for bad in [
            ["WAIT", "+1", "0"],
            ["WAIT", "01", "0"],
            ["WAIT", " 1", "0"],
            ["WAIT", "-1", "0"],
            ["WAIT", "1", "-5"],
            ["WAIT", "1", "x"],
        ] {
            assert!(wait(&bad).is_none(), "{bad:?} must go to a node as sent");
        }
    }
}
