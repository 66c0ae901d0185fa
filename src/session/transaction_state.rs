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
    /// The slot of the first keyed command; every keyed command must hash to it unless the
    /// transaction may run per slot.
    pub(super) slot: Option<Slot>,
    /// A queuing error happened: `EXEC` must abort.
    pub(super) dirty: bool,
    /// Where `WATCH` went: that node's dedicated connection holds the watch.
    pub(super) watch: Option<(Arc<Node>, Slot)>,
    /// What `MULTI` queued, on the heap from the first command queued: most clients never
    /// send `MULTI`, and the empty lists would take 96 bytes of every session.
    pub(super) body: Option<Box<Queued>>,
}

/// The commands a transaction queued.
#[derive(Debug, Default)]
pub(super) struct Queued {
    pub(super) queued: Vec<Request>,
    /// The commands queued while some client monitors, as the client sent them (with their
    /// table rows' names): redis shows them when `EXEC` runs them.
    pub(super) shown: Vec<(&'static str, Request)>,
    /// The slot of each queued command (`None`: keyless).
    pub(super) slots: Vec<Option<Slot>>,
    /// Multi-key commands split by slot (per-slot transactions): the first of their parts in
    /// `queued`, how many parts, and how the parts' replies merge into the command's reply.
    pub(super) combined: Vec<Combined>,
}

impl Transaction {
    /// True between `MULTI` and `EXEC`/`DISCARD`.
    pub(super) fn queuing(&self) -> bool {
        self.queuing
    }

    /// The commands queued since `MULTI`.
    pub(super) fn queued(&self) -> &[Request] {
        self.body.as_ref().map_or(&[], |body| &body.queued)
    }

    /// Commands queued since `MULTI`.
    pub(super) fn queued_len(&self) -> usize {
        self.queued().len()
    }

    /// Records a command queued while some client monitors, as the client sent it.
    pub(super) fn show(&mut self, name: &'static str, request: Request) {
        self.body_mut().shown.push((name, request));
    }

    /// The commands [`Transaction::show`] recorded, taken out.
    pub(super) fn take_shown(&mut self) -> Vec<(&'static str, Request)> {
        self.body
            .as_mut()
            .map(|body| std::mem::take(&mut body.shown))
            .unwrap_or_default()
    }

    /// The queued commands' lists, made on first use.
    pub(super) fn body_mut(&mut self) -> &mut Queued {
        self.body.get_or_insert_default()
    }

    /// Marks the transaction doomed after a rejected command (inside `MULTI` only).
    pub(super) fn flag_error(&mut self) {
        if self.queuing {
            self.dirty = true;
        }
    }
}
