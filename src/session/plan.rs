//! What a request becomes: `handle` looks up its command, checks its arity, and picks its
//! `Plan` from the command's route (answered locally, one slot, split by slot, computed,
//! fanned out, pinned to a dedicated connection...), which `dispatch.rs` then sends.

use bytes::{Bytes, BytesMut};

use super::acl_command;
use super::algebra::{self, Algebra};
use super::dispatch::Target;
use super::split::{self, Merge};
use super::transaction::{Exec, PerSlotExec};
use super::{Pending, Session};
use crate::cluster::{Slot, hash_slot};
use crate::command::keys::key_positions;
use crate::command::route::{Local, Route, admin_route, is_debug_object, route_of};
use crate::command::{CommandSpec, Flags, Resolved};
use crate::error::ReplyError;
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
    Split(split::SplitKind),
    /// A cross-slot read-only command computed by the proxy from its keys' values.
    Computed(Algebra),
    /// A whole-keyspace command, sent to every primary.
    FanOut(Merge),
    /// An allowed admin command, sent to every node (primaries and replicas).
    AllNodes(Merge),
    /// Requests built by a command's own module (e.g. SCAN), sent as given and merged.
    Parts(Merge, Vec<(Target, Request)>),
    /// `WATCH` on the session's dedicated connection to the slot's primary.
    Watch(Slot),
    /// A transaction batch (MULTI ... EXEC).
    Exec(Target, Exec),
    /// A transaction that spans slots, run per slot.
    PerSlotExec(PerSlotExec),
    /// `WAIT` / `WAITAOF`, on the connections the session's writes went out on.
    Wait(super::wait::Wait),
}

impl Plan {
    /// Whether the request must wait until everything sent before it is answered: it goes out
    /// on another connection (see `dedicated`), or it reads the whole keyspace (DBSIZE, KEYS,
    /// SCAN...) and an earlier write may still be on its way to its node after a redirect.
    pub(super) fn waits_for_earlier(&self) -> bool {
        self.dedicated() || matches!(self, Plan::FanOut(_) | Plan::AllNodes(_) | Plan::Parts(..))
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
            | Plan::Split(_)
            | Plan::Computed(_)
            | Plan::FanOut(_)
            | Plan::AllNodes(_)
            | Plan::Parts(..) => false,
        }
    }
}

impl Session {
    /// Handles one decoded request: answer it locally, queue an error, or send it to nodes.
    pub(super) fn handle(&mut self, request: Request) {
        let commands = self.shared.commands.load();
        let spec = match commands.resolve(request.args()) {
            Resolved::Command(spec) => spec,
            Resolved::UnknownCommand => {
                self.tx.flag_error();
                return self.reply_error(ReplyError::UnknownCommand(request.args().to_vec()));
            }
            Resolved::UnknownSubcommand(container) => {
                self.tx.flag_error();
                return self.reply_error(ReplyError::UnknownSubcommand {
                    container: container.name.to_ascii_uppercase(),
                    subcommand: request.args()[1].clone(),
                });
            }
        };
        if !spec.arity_ok(request.args().len()) {
            self.tx.flag_error();
            return self.reply_error(ReplyError::WrongArity(spec.name));
        }
        if !self.acl_allows(spec, &request) {
            return;
        }
        if let Some(refusal) = acl_command::never_forwarded(spec, request.args()) {
            self.tx.flag_error();
            return self.reply_error(refusal);
        }
        if spec.name.starts_with("acl|") && !matches!(spec.name, "acl|help" | "acl|genpass") {
            if self.tx.queuing() {
                self.tx.flag_error();
                return self.reply_error(ReplyError::AclInMulti);
            }
            return self.acl_command(spec, &request);
        }
        self.shared.scripts.observe(spec.name, request.args());
        if self.tracking_on() {
            self.key_positions.clear();
            let _ = key_positions(spec, request.args(), &mut self.key_positions);
            let keys: Vec<Bytes> = self
                .key_positions
                .iter()
                .map(|&p| request.args()[p].clone())
                .collect();
            self.track_command(spec, &keys);
        }
        let route = match route_of(spec) {
            Route::Unsupported(reason) => match admin_route(spec) {
                Some(route) if self.shared.live.load().session.allows_admin(spec.name) => {
                    if is_debug_object(spec, request.args()) {
                        let slot = hash_slot(&request.args()[2]);
                        return self.dispatch(request, Plan::Single(Target::Slot(slot)));
                    }
                    route
                }
                _ => Route::Unsupported(reason),
            },
            route => route,
        };
        if self.subscribed_resp2()
            && !matches!(
                route,
                Route::Local(Local::Subscribe | Local::Ping | Local::Quit | Local::Reset)
            )
        {
            return self.refuse_while_subscribed(spec);
        }
        if self.tx.queuing()
            && !matches!(
                route,
                Route::Local(
                    Local::Exec
                        | Local::Discard
                        | Local::Multi
                        | Local::Watch
                        | Local::Quit
                        | Local::Reset
                )
            )
        {
            return self.queue(spec, request);
        }
        match route {
            Route::Local(Local::Watch) => self.watch(spec, request),
            Route::Local(Local::Subscribe) => self.subscription(spec, &request),
            Route::Local(Local::Ping) if self.subscribed_resp2() => self.subscribed_ping(&request),
            Route::Local(Local::Publish) => self.publish(spec, request),
            Route::Local(Local::PubSubCount) => self.pubsub_count(request),
            Route::Local(local) => self.local(local, &request),
            Route::AnyNode => self.dispatch(request, Plan::Single(Target::AnyPrimary)),
            Route::ByKeys if spec.flags.contains(Flags::BLOCKING) => {
                match self.slot_of_keys(spec, &request) {
                    Ok(Some(slot)) => self.dispatch(request, Plan::Blocking(Target::Slot(slot))),
                    Ok(None) => self.dispatch(request, Plan::Blocking(Target::AnyPrimary)),
                    Err(CrossSlot) => self.reply_error(ReplyError::CrossSlot),
                }
            }
            Route::ByKeys => match self.slot_of_keys(spec, &request) {
                Ok(Some(slot)) if spec.flags.contains(Flags::READONLY) => {
                    self.dispatch(request, Plan::Read(Target::Slot(slot)))
                }
                Ok(Some(slot)) => self.dispatch(request, Plan::Single(Target::Slot(slot))),
                Ok(None) => self.dispatch(request, Plan::Single(Target::AnyPrimary)),
                Err(CrossSlot) => match split::split_merge(spec.name) {
                    // Check the whole before splitting: parts that are each valid must not run
                    // when redis-server would refuse the command (MSET with a key lacking a value).
                    Some(split::SplitKind::KeyValues) if request.args().len().is_multiple_of(2) => {
                        self.reply_error(ReplyError::WrongArity(spec.name))
                    }
                    Some(kind) => self.dispatch(request, Plan::Split(kind)),
                    None => match algebra::computed(spec.name) {
                        Some(op) => self.dispatch(request, Plan::Computed(op)),
                        None => self.reply_error(ReplyError::CrossSlot),
                    },
                },
            },
            Route::BySlotArgument => {
                let slot = std::str::from_utf8(&request.args()[2])
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|&s| s < crate::cluster::SLOT_COUNT);
                let target = slot.map_or(Target::AnyPrimary, |s| Target::Slot(Slot(s)));
                self.dispatch(request, Plan::Single(target));
            }
            Route::AllNodes => match split::fan_out_merge(spec.name) {
                Some(merge) => self.dispatch(request, Plan::AllNodes(merge)),
                None => self.reply_error(ReplyError::NotSupportedYet(spec.full_name_upper())),
            },
            Route::AllPrimaries => match split::fan_out_merge(spec.name) {
                Some(merge) => self.dispatch(request, Plan::FanOut(merge)),
                None => self.reply_error(ReplyError::NotSupportedYet(spec.full_name_upper())),
            },
            Route::Unsupported(reason) => self.reply_error(ReplyError::Unsupported {
                command: spec.full_name_upper(),
                reason,
            }),
        }
    }

    /// The one slot all of the request's keys hash to; `None` when it has no keys (or key
    /// extraction failed, in which case a node produces redis' own error for the arguments).
    pub(super) fn slot_of_keys(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
    ) -> Result<Option<Slot>, CrossSlot> {
        self.key_positions.clear();
        if key_positions(spec, request.args(), &mut self.key_positions).is_err() {
            return Ok(None);
        }
        let mut slot = None;
        for &position in &self.key_positions {
            let this = hash_slot(&request.args()[position]);
            match slot {
                None => slot = Some(this),
                Some(s) if s != this => return Err(CrossSlot),
                Some(_) => {}
            }
        }
        Ok(slot)
    }

    /// Queues a reply built by `build`, written straight out when nothing is ahead of it.
    pub(super) fn reply_with(&mut self, build: impl FnOnce(&mut BytesMut)) {
        if self.pending.is_empty() {
            build(&mut self.out);
        } else {
            let mut buf = BytesMut::new();
            build(&mut buf);
            self.pending.push_back(Pending::Done(buf.freeze()));
        }
    }

    /// Queues an error reply slotproxy makes.
    pub(super) fn reply_error(&mut self, error: ReplyError) {
        self.reply_with(|out| error.write(out));
    }
}

/// Keys of one request in more than one slot.
pub(super) struct CrossSlot;
