//! What the session does with a request once `handle.rs` has read its policy row: a `Plan`
//! names the target(s) and the connection kind, and says whether the request must wait for
//! earlier ones (`order.rs`). Data only; `dispatch.rs` sends it.

use std::sync::Arc;

use super::algebra::Algebra;
use super::split::Merge;
use super::target::Target;
use super::wait::Wait;
use crate::backend::Node;
use crate::cluster::Slot;
use crate::command::policy::SplitKind;
use crate::protocol::Request;

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
            Plan::PerSlotExec(tx) => tx.watched.is_some(),
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
}
