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
//!
//! This file is what the commands do to the session's [`Transaction`] (its data is in
//! `transaction_state.rs`): each returns a value (queued or the error, the job `EXEC` sends)
//! and the session (`local.rs`) replies or sends it.

use bytes::{Bytes, BytesMut};

use super::per_slot;
use super::plan::{CrossSlot, Exec, PerSlotExec, Plan};
use super::scripts::ScriptCache;
use super::split;
use super::split::{Combined, Merge};
use super::target::Target;
use super::transaction_state::Transaction;
use crate::cluster::Slot;
use crate::command::CommandSpec;
use crate::command::policy::{Handling, Local, SplitKind};
use crate::command::table::Flags;
use crate::error::ReplyError;
use crate::protocol::Request;
use crate::protocol::request::encode_multibulk;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// The slot of a request's keys, as `plan::keys_slot` finds it.
pub(super) type KeysSlot = Result<Option<Slot>, CrossSlot>;

/// What `EXEC` does.
#[derive(Debug)]
pub(super) enum ExecStep {
    /// A queuing error doomed the transaction: end it (and any watch), answer `-EXECABORT`.
    Abort,
    /// Nothing queued and nothing watched: `*0`.
    Empty,
    /// Send this job as the plan says.
    Run(Request, Plan),
}

impl Transaction {
    /// Queues a command inside `MULTI` (`Ok`: answer `+QUEUED`), or refuses it, which dooms
    /// the transaction. `handling` is its row's; `per_slot` says the transaction may span
    /// slots; `slot_of` finds the slot of the request's keys (asked only when needed).
    pub(super) fn queue(
        &mut self,
        spec: &CommandSpec,
        handling: Handling,
        request: Request,
        per_slot: bool,
        slot_of: impl FnOnce(&Request) -> KeysSlot,
    ) -> Result<(), ReplyError> {
        let mut slot = None;
        let refuse = match handling {
            // redis refuses these inside MULTI before anything else (its `no-multi` flag).
            _ if spec.flags.contains(Flags::NO_MULTI) => Some(ReplyError::NotAllowedInTransaction),
            Handling::Local(Local::Ping | Local::Echo | Local::Unwatch) | Handling::AnyNode => None,
            // PUBLISH and SPUBLISH run in the transaction on its node, as in a cluster.
            Handling::Split(kind) if per_slot => match slot_of(&request) {
                // Split by slot like outside MULTI; EXEC merges the parts' replies back.
                Err(CrossSlot) => {
                    self.queue_split(spec, kind, request);
                    return Ok(());
                }
                Ok(this) => {
                    slot = this;
                    self.slot = self.slot.or(this);
                    None
                }
            },
            Handling::Single { .. }
            | Handling::Split(_)
            | Handling::Computed(_)
            | Handling::Local(Local::Publish) => match slot_of(&request) {
                Err(CrossSlot) => Some(ReplyError::CrossSlot),
                Ok(Some(this)) if self.slot.is_some_and(|s| s != this) => {
                    if per_slot {
                        slot = Some(this);
                        None
                    } else {
                        Some(ReplyError::CrossSlotTransaction)
                    }
                }
                Ok(Some(this)) => {
                    self.slot = Some(this);
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
                self.dirty = true;
                Err(error)
            }
            None => {
                let body = self.body_mut();
                body.queued.push(request);
                body.slots.push(slot);
                Ok(())
            }
        }
    }

    /// Queues a multi-key command whose keys span slots as one part per slot (per-slot
    /// transactions); `EXEC` merges the parts' replies into the command's one reply.
    fn queue_split(&mut self, spec: &CommandSpec, kind: SplitKind, request: Request) {
        if kind == SplitKind::KeyValues && request.args().len().is_multiple_of(2) {
            // redis queues it and answers this entry at EXEC with the arity error.
            let first = self.queued_len();
            self.body_mut().combined.push(Combined {
                first,
                parts: 0,
                merge: Merge::Failed(ReplyError::WrongArity(spec.name).to_bytes()),
            });
            return;
        }
        let (merge, parts) = split::plan_split(kind, &request);
        let first = self.queued_len();
        self.slot = self.slot.or(parts.first().map(|(slot, _)| *slot));
        let body = self.body_mut();
        body.combined.push(Combined {
            first,
            parts: parts.len(),
            merge,
        });
        for (slot, part) in parts {
            body.queued.push(part);
            body.slots.push(Some(slot));
        }
    }

    /// `MULTI` (`Ok`: answer `+OK`).
    pub(super) fn multi(&mut self) -> Result<(), ReplyError> {
        if self.queuing {
            return Err(ReplyError::NestedMulti);
        }
        self.queuing = true;
        self.slot = self.watch.as_ref().map(|(_, slot)| *slot);
        Ok(())
    }

    /// `WATCH key [key ...]`: the slot it pins the transaction to (its primary's dedicated
    /// connection holds the watch); `slot_of` finds the slot of the keys.
    pub(super) fn watch_slot(
        &self,
        request: &Request,
        slot_of: impl FnOnce(&Request) -> KeysSlot,
    ) -> Result<Slot, ReplyError> {
        if self.queuing {
            return Err(ReplyError::WatchInMulti);
        }
        match slot_of(request) {
            Ok(Some(slot)) if self.watch.as_ref().is_none_or(|(_, s)| *s == slot) => Ok(slot),
            Ok(_) | Err(CrossSlot) => Err(ReplyError::CrossSlot),
        }
    }

    /// `EXEC`: the whole transaction as one job (one per slot when it spans slots), after
    /// which the transaction is over (the watch ends with EXEC on the node; the connection
    /// stays for reuse). `scripts` knows the bodies the queued `EVALSHA`s need.
    pub(super) fn exec(&mut self, scripts: &ScriptCache) -> Result<ExecStep, ReplyError> {
        if !self.queuing {
            return Err(ReplyError::ExecWithoutMulti);
        }
        if self.dirty {
            return Ok(ExecStep::Abort);
        }
        let done = std::mem::take(self);
        let body = done.body.map(|body| *body).unwrap_or_default();
        let (watched, queued) = (done.watch, body.queued);
        if queued.is_empty() && watched.is_none() {
            return Ok(ExecStep::Empty);
        }
        let watched_slot = watched.as_ref().map(|(_, slot)| *slot);
        if let Some(groups) = per_slot::group(&body.slots, watched_slot) {
            let batches = groups
                .iter()
                .map(|group| {
                    let commands: Vec<&Request> =
                        group.positions.iter().map(|&i| &queued[i]).collect();
                    let (batch, replies) = batch(&commands, scripts);
                    (group.slot, batch, replies)
                })
                .collect();
            let exec = PerSlotExec {
                batches,
                positions: groups.into_iter().map(|g| g.positions).collect(),
                total: queued.len(),
                watched,
                combined: body.combined,
            };
            return Ok(ExecStep::Run(
                Request::batch(Bytes::new()),
                Plan::PerSlotExec(exec),
            ));
        }
        let commands: Vec<&Request> = queued.iter().collect();
        let (batch, replies) = batch(&commands, scripts);
        let target = done.slot.map_or(Target::AnyPrimary, Target::Slot);
        let exec = Exec { replies, watched };
        Ok(ExecStep::Run(batch, Plan::Exec(target, exec)))
    }
}

/// One node's job for `commands`: `SCRIPT LOAD` of the scripts its `EVALSHA`s name,
/// `MULTI`, the commands, `EXEC`; and how many replies it produces.
fn batch(commands: &[&Request], scripts: &ScriptCache) -> (Request, usize) {
    let loads = script_loads(commands, scripts);
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
fn script_loads(queued: &[&Request], scripts: &ScriptCache) -> Vec<Bytes> {
    let mut bodies: Vec<Bytes> = Vec::new();
    for request in queued {
        let name = request.name();
        if !(name.eq_ignore_ascii_case(b"evalsha") || name.eq_ignore_ascii_case(b"evalsha_ro")) {
            continue;
        }
        if let Some(body) = request.args().get(1).and_then(|sha| scripts.body(sha))
            && !bodies.contains(&body)
        {
            bodies.push(body);
        }
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::hash_slot;
    use crate::command::keys::key_positions;
    use crate::command::{CommandTable, Resolved};

    fn request(words: &[&str]) -> Request {
        Request::from_args(words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())))
    }

    /// The slot of the request's keys, as its table row finds them.
    fn slot_of(request: &Request) -> KeysSlot {
        let table = CommandTable::builtin();
        let Resolved::Command(spec) = table.resolve(request.args()) else {
            panic!("not a command");
        };
        let mut positions: Vec<usize> = Vec::new();
        key_positions(spec, request.args(), &mut positions).expect("keys");
        let mut slots = positions.iter().map(|&p| hash_slot(&request.args()[p]));
        let first = slots.next();
        match slots.all(|s| Some(s) == first) {
            true => Ok(first),
            false => Err(CrossSlot),
        }
    }

    /// Queues `words` as its table row handles it.
    fn queue(tx: &mut Transaction, per_slot: bool, words: &[&str]) -> Result<(), ReplyError> {
        let table = CommandTable::builtin();
        let request = request(words);
        let Resolved::Command(spec) = table.resolve(request.args()) else {
            panic!("{words:?} is not a command");
        };
        let handling = table.policy(spec).handling;
        tx.queue(spec, handling, request, per_slot, slot_of)
    }

    fn multi() -> Transaction {
        let mut tx = Transaction::default();
        assert_eq!(tx.multi(), Ok(()));
        assert_eq!(tx.multi(), Err(ReplyError::NestedMulti));
        tx
    }

    #[test]
    fn the_first_keyed_command_fixes_the_slot_and_another_slot_dooms_the_transaction() {
        let mut tx = multi();
        assert_eq!(queue(&mut tx, false, &["PING"]), Ok(()));
        assert_eq!(queue(&mut tx, false, &["SET", "{a}1", "v"]), Ok(()));
        assert_eq!(queue(&mut tx, false, &["GET", "{a}2"]), Ok(()));
        assert_eq!(tx.slot, Some(hash_slot(b"a")));
        assert!(!tx.dirty);
        let other = queue(&mut tx, false, &["GET", "b"]);
        assert_eq!(other, Err(ReplyError::CrossSlotTransaction));
        assert!(tx.dirty);
        assert_eq!(tx.queued_len(), 3);
        let scripts = ScriptCache::default();
        assert!(matches!(tx.exec(&scripts), Ok(ExecStep::Abort)));
    }

    #[test]
    fn commands_that_cannot_run_in_a_transaction_are_refused() {
        let mut tx = multi();
        let keys = queue(&mut tx, false, &["KEYS", "*"]);
        assert_eq!(keys, Err(ReplyError::NotInMulti("KEYS".into())));
        let mget = queue(&mut tx, false, &["MGET", "a", "b"]);
        assert_eq!(mget, Err(ReplyError::CrossSlot));
        assert!(tx.dirty);
    }

    #[test]
    fn per_slot_a_multi_key_command_is_queued_as_one_part_per_slot() {
        let mut tx = multi();
        assert_eq!(queue(&mut tx, true, &["GET", "a"]), Ok(()));
        assert_eq!(queue(&mut tx, true, &["GET", "b"]), Ok(()));
        assert_eq!(queue(&mut tx, true, &["MGET", "a", "b", "{a}x"]), Ok(()));
        let combined = |tx: &Transaction| tx.body.as_ref().map(|b| b.combined.len());
        assert_eq!(combined(&tx), Some(1));
        let first = &tx.body.as_ref().expect("queued").combined[0];
        assert_eq!((first.first, first.parts), (2, 2));
        assert_eq!(tx.queued_len(), 4);
        // MSET with a key lacking its value is queued, and fails at EXEC as on redis.
        assert_eq!(queue(&mut tx, true, &["MSET", "a", "1", "b"]), Ok(()));
        assert_eq!(tx.body.as_ref().expect("queued").combined[1].parts, 0);
        assert!(!tx.dirty);
        let Ok(ExecStep::Run(_, Plan::PerSlotExec(exec))) = tx.exec(&ScriptCache::default()) else {
            panic!("not a per-slot EXEC");
        };
        assert_eq!(exec.batches.len(), 2);
        assert_eq!(exec.total, 4);
        assert!(!tx.queuing());
    }

    #[test]
    fn exec_sends_multi_the_commands_and_exec_as_one_job() {
        let scripts = ScriptCache::default();
        let mut idle = Transaction::default();
        assert_eq!(
            idle.exec(&scripts).err(),
            Some(ReplyError::ExecWithoutMulti)
        );
        let mut tx = multi();
        assert!(matches!(tx.exec(&scripts), Ok(ExecStep::Empty)));
        let mut tx = multi();
        assert_eq!(queue(&mut tx, false, &["SET", "k", "v"]), Ok(()));
        assert_eq!(queue(&mut tx, false, &["INCR", "k"]), Ok(()));
        let Ok(ExecStep::Run(batch, Plan::Exec(target, exec))) = tx.exec(&scripts) else {
            panic!("not a one-node EXEC");
        };
        assert!(matches!(target, Target::Slot(slot) if slot == hash_slot(b"k")));
        assert_eq!(exec.replies, 4);
        let mut want = MULTI.to_vec();
        want.extend_from_slice(request(&["SET", "k", "v"]).raw());
        want.extend_from_slice(request(&["INCR", "k"]).raw());
        want.extend_from_slice(EXEC);
        assert_eq!(batch.raw()[..], want[..]);
        assert!(!tx.queuing() && tx.queued_len() == 0 && tx.slot.is_none());
    }

    #[test]
    fn watch_pins_one_slot_and_is_refused_inside_multi() {
        let tx = Transaction::default();
        let slot = tx.watch_slot(&request(&["WATCH", "{a}1", "{a}2"]), slot_of);
        assert_eq!(slot, Ok(hash_slot(b"a")));
        let spanning = tx.watch_slot(&request(&["WATCH", "a", "b"]), slot_of);
        assert_eq!(spanning, Err(ReplyError::CrossSlot));
        let tx = multi();
        let inside = tx.watch_slot(&request(&["WATCH", "a"]), slot_of);
        assert_eq!(inside, Err(ReplyError::WatchInMulti));
    }
}
