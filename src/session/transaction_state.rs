//! A session's MULTI/WATCH state: what `MULTI` queued and for which slots, whether a queuing
//! error doomed it, and where `WATCH` went (`transaction.rs` acts on it).

use std::sync::Arc;

use super::split::Combined;
use crate::backend::Node;
use crate::cluster::Slot;
use crate::command::policy::{Handling, Local};
use crate::protocol::Request;

/// Whether a command with `handling` runs at once inside `MULTI` (the others are queued).
pub(super) fn runs_in_multi(handling: Handling) -> bool {
    matches!(
        handling,
        Handling::Local(
            Local::Exec | Local::Discard | Local::Multi | Local::Watch | Local::Quit | Local::Reset
        )
    )
}

/// A session's transaction state.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    /// After `MULTI`: commands are queued, not sent.
    pub(super) queuing: bool,
    pub(super) queued: Vec<Request>,
    /// The commands queued while some client monitors, as the client sent them (with their
    /// table rows' names): redis shows them when `EXEC` runs them.
    pub(super) shown: Vec<(&'static str, Request)>,
    /// The slot of each queued command (`None`: keyless).
    pub(super) slots: Vec<Option<Slot>>,
    /// The slot of the first keyed command; every keyed command must hash to it unless the
    /// transaction may run per slot.
    pub(super) slot: Option<Slot>,
    /// A queuing error happened: `EXEC` must abort.
    pub(super) dirty: bool,
    /// Where `WATCH` went: that node's dedicated connection holds the watch.
    pub(super) watch: Option<(Arc<Node>, Slot)>,
    /// Multi-key commands split by slot (per-slot transactions): the first of their parts in
    /// `queued`, how many parts, and how the parts' replies merge into the command's reply.
    pub(super) combined: Vec<Combined>,
}

impl Transaction {
    /// True between `MULTI` and `EXEC`/`DISCARD`.
    pub(super) fn queuing(&self) -> bool {
        self.queuing
    }

    /// Commands queued since `MULTI`.
    pub(super) fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// Marks the transaction doomed after a rejected command (inside `MULTI` only).
    pub(super) fn flag_error(&mut self) {
        if self.queuing {
            self.dirty = true;
        }
    }
}
