//! MULTI/EXEC/DISCARD/WATCH/UNWATCH: a transaction runs on one node, in one piece.
//!
//! Commands after `MULTI` are checked and queued in the proxy (`+QUEUED`); the first keyed command
//! (or `WATCH`) fixes the transaction's slot, and a command for another slot gets `-CROSSSLOT` and
//! dooms the transaction, so `EXEC` answers `-EXECABORT` as redis-server does for queuing errors.
//! `EXEC` sends `MULTI`, the queued commands and `EXEC` as one job, so no other client's command
//! can land inside it even on a shared connection; the client gets `EXEC`'s reply. The job starts
//! with `SCRIPT LOAD` of the scripts its `EVALSHA`s name, so a node that lost one runs it anyway.
//!
//! With `session.cross_slot_transactions = "per-slot"`, a transaction may span slots: `EXEC`
//! then sends one such job per slot, in parallel, and merges their `EXEC` replies in the
//! client's command order (`per_slot.rs`). Each slot's part is atomic; the whole is not. A
//! multi-key command whose keys span slots (`MGET`, `MSET`, `DEL`...) is queued as one part per
//! slot, as `split.rs` splits it outside `MULTI`, and its parts' entries are merged back into
//! its one entry of the `EXEC` reply. A
//! watched transaction runs the watched slot's part first, on the watching connection, and the
//! other parts only once that part ran: if a watched key changed, nothing runs anywhere.
//!
//! `WATCH` needs the connection that will run `EXEC`: it goes out on the session's dedicated
//! connection to the slot's primary, and `EXEC` follows it there. If the slot has another owner by
//! then, `EXEC` answers nil (the transaction did not run, as when a watched key changed), so an
//! optimistic-locking client retries instead of running against the wrong node. Dropping the
//! dedicated connection is how `UNWATCH`/`DISCARD` clear the node's watch state.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::Session;
use super::per_slot;
use super::plan::{CrossSlot, Exec, PerSlotExec, Plan};
use super::split;
use super::split::{Combined, Merge};
use super::target::Target;
use super::transaction_state::Transaction;
use crate::backend::Node;
use crate::cluster::Slot;
use crate::command::CommandSpec;
use crate::command::policy::{Handling, Local, SplitKind};
use crate::command::table::Flags;
use crate::config::CrossSlotTransactions;
use crate::error::ReplyError;
use crate::protocol::Request;
use crate::protocol::reply::{write_array_len, write_simple};
use crate::protocol::request::encode_multibulk;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

impl Session {
    /// Queues a command inside `MULTI`, or refuses it (which dooms the transaction); `handling`
    /// is its row's.
    pub(super) fn queue(&mut self, spec: &CommandSpec, handling: Handling, request: Request) {
        let per_slot =
            self.shared.config.session.cross_slot_transactions == CrossSlotTransactions::PerSlot;
        let mut slot = None;
        let refuse = match handling {
            // redis refuses these inside MULTI before anything else (its `no-multi` flag).
            _ if spec.flags.contains(Flags::NO_MULTI) => Some(ReplyError::NotAllowedInTransaction),
            Handling::Local(Local::Ping | Local::Echo | Local::Unwatch) | Handling::AnyNode => None,
            // PUBLISH and SPUBLISH run in the transaction on its node, as in a cluster.
            Handling::Split(kind) if per_slot => match self.slot_of_keys(spec, &request) {
                // Split by slot like outside MULTI; EXEC merges the parts' replies back.
                Err(CrossSlot) => return self.queue_split(spec, kind, request),
                Ok(this) => {
                    slot = this;
                    self.transaction.slot = self.transaction.slot.or(this);
                    None
                }
            },
            Handling::Single { .. }
            | Handling::Split(_)
            | Handling::Computed(_)
            | Handling::Local(Local::Publish) => match self.slot_of_keys(spec, &request) {
                Err(CrossSlot) => Some(ReplyError::CrossSlot),
                Ok(Some(this)) if self.transaction.slot.is_some_and(|s| s != this) => {
                    if per_slot {
                        slot = Some(this);
                        None
                    } else {
                        Some(ReplyError::CrossSlotTransaction)
                    }
                }
                Ok(Some(this)) => {
                    self.transaction.slot = Some(this);
                    slot = Some(this);
                    None
                }
                Ok(None) => None,
            },
            Handling::Local(_)
            | Handling::Acl
            | Handling::FanOut(_)
            | Handling::AllNodes(_)
            | Handling::BySlotArgument
            | Handling::Admin(_)
            | Handling::Refused(_) => Some(ReplyError::NotInMulti(spec.full_name_upper())),
        };
        match refuse {
            Some(error) => {
                self.transaction.dirty = true;
                self.reply_error(error);
            }
            None => {
                self.transaction.queued.push(request);
                self.transaction.slots.push(slot);
                self.reply_with(|out| write_simple(out, "QUEUED"));
            }
        }
    }

    /// Queues a multi-key command whose keys span slots as one part per slot (per-slot
    /// transactions); `EXEC` merges the parts' replies into the command's one reply.
    fn queue_split(&mut self, spec: &CommandSpec, kind: SplitKind, request: Request) {
        if kind == SplitKind::KeyValues && request.args().len().is_multiple_of(2) {
            // redis queues it and answers this entry at EXEC with the arity error.
            self.transaction.combined.push(Combined {
                first: self.transaction.queued.len(),
                parts: 0,
                merge: Merge::Failed(ReplyError::WrongArity(spec.name).to_bytes()),
            });
            return self.reply_with(|out| write_simple(out, "QUEUED"));
        }
        let (merge, parts) = split::plan_split(kind, &request);
        let first = self.transaction.queued.len();
        self.transaction.combined.push(Combined {
            first,
            parts: parts.len(),
            merge,
        });
        for (slot, part) in parts {
            self.transaction.slot = self.transaction.slot.or(Some(slot));
            self.transaction.queued.push(part);
            self.transaction.slots.push(Some(slot));
        }
        self.reply_with(|out| write_simple(out, "QUEUED"));
    }

    /// `MULTI`.
    pub(super) fn multi(&mut self) {
        if self.transaction.queuing {
            return self.reply_error(ReplyError::NestedMulti);
        }
        self.transaction.queuing = true;
        self.transaction.slot = self.transaction.watch.as_ref().map(|(_, slot)| *slot);
        self.reply_with(|out| write_simple(out, "OK"));
    }

    /// `DISCARD`.
    pub(super) fn discard(&mut self) {
        if !self.transaction.queuing {
            return self.reply_error(ReplyError::DiscardWithoutMulti);
        }
        self.end_transaction();
        self.reply_with(|out| write_simple(out, "OK"));
    }

    /// `UNWATCH` outside `MULTI`.
    pub(super) fn unwatch(&mut self) {
        self.end_transaction();
        self.reply_with(|out| write_simple(out, "OK"));
    }

    /// `WATCH key [key ...]`: pins the transaction to the keys' slot and its primary.
    pub(super) fn watch(&mut self, spec: &CommandSpec, request: Request) {
        if self.transaction.queuing {
            return self.reply_error(ReplyError::WatchInMulti);
        }
        let slot = match self.slot_of_keys(spec, &request) {
            Ok(Some(slot))
                if self
                    .transaction
                    .watch
                    .as_ref()
                    .is_none_or(|(_, s)| *s == slot) =>
            {
                slot
            }
            Ok(_) | Err(CrossSlot) => return self.reply_error(ReplyError::CrossSlot),
        };
        self.dispatch(request, Plan::Watch(slot));
    }

    /// Records where a `WATCH` is being sent (called when it is actually sent).
    pub(super) fn watching(&mut self, node: Arc<Node>, slot: Slot) {
        self.transaction.watch = Some((node, slot));
    }

    /// `EXEC`: sends the whole transaction as one job, or answers an abort.
    pub(super) fn exec(&mut self) {
        if !self.transaction.queuing {
            return self.reply_error(ReplyError::ExecWithoutMulti);
        }
        if self.transaction.dirty {
            self.end_transaction();
            return self.reply_error(ReplyError::ExecAbort);
        }
        let watched = self.transaction.watch.clone();
        let queued = std::mem::take(&mut self.transaction.queued);
        let slots = std::mem::take(&mut self.transaction.slots);
        let slot = self.transaction.slot;
        let combined = std::mem::take(&mut self.transaction.combined);
        // The watch (if any) ends with EXEC on the node; keep the connection for reuse.
        self.transaction = Transaction::default();
        if queued.is_empty() && watched.is_none() {
            return self.reply_with(|out| write_array_len(out, 0));
        }
        let watched_slot = watched.as_ref().map(|(_, slot)| *slot);
        if let Some(groups) = per_slot::group(&slots, watched_slot) {
            let batches = groups
                .iter()
                .map(|group| {
                    let commands: Vec<&Request> =
                        group.positions.iter().map(|&i| &queued[i]).collect();
                    let (batch, replies) = self.transaction_batch(&commands);
                    (group.slot, batch, replies)
                })
                .collect();
            let exec = PerSlotExec {
                batches,
                positions: groups.into_iter().map(|g| g.positions).collect(),
                total: queued.len(),
                watched,
                combined,
            };
            return self.dispatch(Request::batch(Bytes::new()), Plan::PerSlotExec(exec));
        }
        let commands: Vec<&Request> = queued.iter().collect();
        let (batch, replies) = self.transaction_batch(&commands);
        let target = slot.map_or(Target::AnyPrimary, Target::Slot);
        let exec = Exec { replies, watched };
        self.dispatch(batch, Plan::Exec(target, exec));
    }

    /// One node's job for `commands`: `SCRIPT LOAD` of the scripts its `EVALSHA`s name,
    /// `MULTI`, the commands, `EXEC`; and how many replies it produces.
    fn transaction_batch(&self, commands: &[&Request]) -> (Request, usize) {
        let loads = self.script_loads(commands);
        let mut payload = BytesMut::with_capacity(
            MULTI.len() + EXEC.len() + commands.iter().map(|r| r.raw().len()).sum::<usize>(),
        );
        for body in &loads {
            encode_multibulk(
                &mut payload,
                &[
                    Bytes::from_static(b"SCRIPT"),
                    Bytes::from_static(b"LOAD"),
                    body.clone(),
                ],
            );
        }
        payload.extend_from_slice(MULTI);
        for request in commands {
            payload.extend_from_slice(request.raw());
        }
        payload.extend_from_slice(EXEC);
        (
            Request::batch(payload.freeze()),
            loads.len() + commands.len() + 2,
        )
    }

    /// The bodies of the scripts the queued `EVALSHA`s run, as far as the proxy knows them
    /// (each once). A node answers `NOSCRIPT` for an unknown script inside `EXEC` only after
    /// the commands before it ran, too late to load it and retry, so the transaction's job
    /// loads them first: a node that lost them (restart, promotion, new slot owner) has them
    /// again, and one that has them does no more than hash the body.
    fn script_loads(&self, queued: &[&Request]) -> Vec<Bytes> {
        let mut bodies: Vec<Bytes> = Vec::new();
        for request in queued {
            let name = request.name();
            if !(name.eq_ignore_ascii_case(b"evalsha") || name.eq_ignore_ascii_case(b"evalsha_ro"))
            {
                continue;
            }
            if let Some(body) = request
                .args()
                .get(1)
                .and_then(|sha| self.shared.scripts.body(sha))
                && !bodies.contains(&body)
            {
                bodies.push(body);
            }
        }
        bodies
    }

    /// Leaves any transaction and watch; closing the dedicated connection clears the node's
    /// watch state.
    pub(super) fn end_transaction(&mut self) {
        if let Some((node, _)) = self.transaction.watch.take() {
            self.drop_dedicated(&node);
        }
        self.transaction = Transaction::default();
    }
}
