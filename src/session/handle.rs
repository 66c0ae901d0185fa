//! What a request becomes: `handle` resolves its command to a table row, checks its arity and
//! the client's permissions, and picks its `Plan` (`plan.rs`) from the row's [`Handling`]
//! (answered locally, one slot, split by slot, computed, fanned out, pinned to a dedicated
//! connection...), which `dispatch.rs` then sends. What a command is, is decided once per row in
//! `command/policy.rs`; this file only acts on it.

use bytes::{Bytes, BytesMut};

use super::Session;
use super::acl_command;
use super::plan::{CrossSlot, Plan};
use super::queue::Pending;
use super::split::Merge;
use super::target::Target;
use super::transaction_state::runs_in_multi;
use crate::cluster::{Slot, hash_slot};
use crate::command::keys::key_positions;
use crate::command::policy::{
    Access, Allowed, Handling, Local, Policy, Refusal, SplitKind, is_debug_object,
};
use crate::command::{CommandSpec, Resolved};
use crate::error::ReplyError;
use crate::protocol::Request;

impl Session {
    /// Handles one decoded request: answer it locally, queue an error, or send it to nodes.
    /// Returns the metrics row the request counts under (from its policy row, no name lookup).
    pub(super) fn handle(&mut self, request: Request) -> usize {
        let commands = self.shared.commands.load();
        let (spec, policy) = match commands.resolve(request.args()) {
            Resolved::Command(spec) => (spec, *commands.policy(spec)),
            Resolved::UnknownCommand => {
                self.transaction.flag_error();
                self.reply_error(ReplyError::UnknownCommand(request.args().to_vec()));
                return self.command_row(None);
            }
            Resolved::UnknownSubcommand(container) => {
                self.transaction.flag_error();
                self.reply_error(ReplyError::UnknownSubcommand {
                    container: container.name.to_ascii_uppercase(),
                    subcommand: request.args()[1].clone(),
                });
                return self.command_row(Some(commands.policy(container)));
            }
        };
        drop(commands);
        let row = self.command_row(Some(&policy));
        self.serve(spec, policy, request);
        row
    }

    /// Serves a request whose row is `spec`, as its `policy` says.
    fn serve(&mut self, spec: &'static CommandSpec, policy: Policy, request: Request) {
        // What `CLIENT LIST` shows of this client changes only through commands slotproxy
        // answers itself (name, protocol, subscriptions, MULTI...): others leave it as it was.
        if self.transaction.queuing()
            || matches!(
                policy.handling,
                Handling::Local(_) | Handling::Acl | Handling::Admin(_)
            )
        {
            self.profile_stale = true;
        }
        if !spec.arity_ok(request.args().len()) {
            self.transaction.flag_error();
            return self.reply_error(ReplyError::WrongArity(spec.name));
        }
        if !self.acl_allows(spec, &request) {
            return;
        }
        if let Some(refusal) = acl_command::never_forwarded(policy.handling, request.args()) {
            self.transaction.flag_error();
            return self.reply_error(refusal);
        }
        if policy.handling == Handling::Acl {
            if self.transaction.queuing() {
                self.transaction.flag_error();
                return self.reply_error(ReplyError::AclInMulti);
            }
            if self.shared.monitors.active() && !self.monitored(spec, policy.handling, &request) {
                return;
            }
            return self.acl_command(spec, &request);
        }
        if let Some(script) = policy.scripts {
            self.shared.scripts.observe(script, request.args());
        }
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
        let mut handling = policy.handling;
        if let Handling::Admin(allowed) = handling
            && self.shared.live.load().session.allows_admin(spec.name)
        {
            if allowed == Allowed::Debug && is_debug_object(request.args()) {
                let slot = hash_slot(&request.args()[2]);
                return self.dispatch(request, Plan::Single(Target::Slot(slot)));
            }
            handling = allowed.handling();
        }
        if self.subscribed_resp2()
            && !matches!(
                handling,
                Handling::Local(Local::Subscribe | Local::Ping | Local::Quit | Local::Reset)
            )
        {
            return self.refuse_while_subscribed(spec);
        }
        // One relaxed load per request; the rest only while some client monitors.
        if self.shared.monitors.active() && !self.monitored(spec, handling, &request) {
            return;
        }
        if self.transaction.queuing() && !runs_in_multi(handling) {
            // The row's own handling: an admin command is refused inside MULTI, allowed or not.
            return self.queue(spec, policy.handling, request);
        }
        match handling {
            Handling::Local(Local::Watch) => self.watch(spec, request),
            Handling::Local(Local::Subscribe) => self.subscription(spec, &request),
            Handling::Local(Local::Ping) if self.subscribed_resp2() => {
                self.subscribed_ping(&request)
            }
            Handling::Local(Local::Publish) => self.publish(spec, request),
            Handling::Local(Local::PubSubCount) => self.pubsub_count(request),
            Handling::Local(local) => self.local(local, &request),
            Handling::Acl => self.acl_command(spec, &request),
            Handling::AnyNode => self.dispatch(request, Plan::Single(Target::AnyPrimary)),
            Handling::Single { blocking: true, .. } => match self.slot_of_keys(spec, &request) {
                Ok(Some(slot)) => self.dispatch(request, Plan::Blocking(Target::Slot(slot))),
                Ok(None) => self.dispatch(request, Plan::Blocking(Target::AnyPrimary)),
                Err(CrossSlot) => self.reply_error(ReplyError::CrossSlot),
            },
            Handling::Single { read_only, .. } => self.by_keys(spec, policy, read_only, request),
            Handling::Split(_) | Handling::Computed(_) => {
                let read_only = policy.access == Access::ReadOnly;
                self.by_keys(spec, policy, read_only, request)
            }
            Handling::BySlotArgument => {
                let slot = std::str::from_utf8(&request.args()[2])
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|&s| s < crate::cluster::SLOT_COUNT);
                let target = slot.map_or(Target::AnyPrimary, |s| Target::Slot(Slot(s)));
                self.dispatch(request, Plan::Single(target));
            }
            Handling::AllNodes(merge) => {
                let plan = Plan::AllNodes {
                    merge: merge.into(),
                    writes: policy.is_write(),
                };
                self.dispatch(request, plan)
            }
            Handling::FanOut(merge) => {
                let merge = Merge::fan_out(merge, request.args(), &self.shared.scripts);
                let request = merge.node_request().unwrap_or(request);
                let plan = Plan::FanOut {
                    merge,
                    writes: policy.is_write(),
                };
                self.dispatch(request, plan)
            }
            Handling::Admin(_) => self.refuse(spec, Refusal::Admin),
            Handling::Refused(refusal) => self.refuse(spec, refusal),
        }
    }

    /// Sends a command routed by its keys: to their one slot (a read as `read_only` says), else
    /// split or computed as its row's handling says, else `-CROSSSLOT`.
    fn by_keys(&mut self, spec: &CommandSpec, policy: Policy, read_only: bool, request: Request) {
        match self.slot_of_keys(spec, &request) {
            Ok(Some(slot)) if read_only => self.dispatch(request, Plan::Read(Target::Slot(slot))),
            Ok(Some(slot)) => self.dispatch(request, Plan::Single(Target::Slot(slot))),
            Ok(None) => self.dispatch(request, Plan::Single(Target::AnyPrimary)),
            Err(CrossSlot) => match policy.handling {
                // Check the whole before splitting: parts that are each valid must not run
                // when redis-server would refuse the command (MSET with a key lacking a value).
                Handling::Split(SplitKind::KeyValues) if request.args().len().is_multiple_of(2) => {
                    self.reply_error(ReplyError::WrongArity(spec.name))
                }
                Handling::Split(kind) => {
                    let plan = Plan::Split {
                        kind,
                        writes: policy.is_write(),
                    };
                    self.dispatch(request, plan)
                }
                Handling::Computed(op) => self.dispatch(request, Plan::Computed(op)),
                _ => self.reply_error(ReplyError::CrossSlot),
            },
        }
    }

    /// Refuses a command: "ERR '<CMD>' <reason>".
    fn refuse(&mut self, spec: &CommandSpec, refusal: Refusal) {
        self.reply_error(ReplyError::Unsupported {
            command: spec.full_name_upper(),
            reason: refusal.reason(),
        });
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
            build(self.out.buf_mut());
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
