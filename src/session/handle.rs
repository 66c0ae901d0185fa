//! What a request becomes: `parse_requests` decodes what the client sent (or holds it while
//! `CLIENT PAUSE` says so), `handle` resolves its command to a table row, checks its arity and
//! the client's permissions, and picks its `Plan` (`plan.rs`) from the row's [`Handling`]
//! (answered locally, one slot, split by slot, computed, fanned out, pinned to a dedicated
//! connection...), which `dispatch.rs` then sends. What a command is, is decided once per row in
//! `command/policy.rs`; this file only acts on it.
//!
//! The command families answered in the proxy are types of their own, each borrowing only the
//! session parts it needs; the constructors here lend them out for one request
//! ([`AccessControl`], [`LocalCommands`], [`PubSub`], [`ClientTracking`], [`Clients`]), and what
//! a family hands back ([`Forward`], [`Next`]) is carried out here.

use bytes::{Bytes, BytesMut};
use tracing::debug;

use super::Session;
use super::access::{AccessControl, Check};
use super::acl_command;
use super::clients::{self, Clients, Shown};
use super::local::{LocalCommands, Next};
use super::monitor::{self, Monitored};
use super::plan::{CrossSlot, Plan, keys_slot};
use super::pubsub::PubSub;
use super::queue::Pending;
use super::replies::{Forward, Replies};
use super::split::Merge;
use super::target::Target;
use super::tracking::ClientTracking;
use super::transaction_state::runs_in_multi;
use crate::cluster::{Slot, hash_slot};
use crate::command::keys::key_positions;
use crate::command::policy::{
    Access, Allowed, Handling, Local, Policy, Refusal, SplitKind, is_debug_object,
};
use crate::command::{CommandSpec, Resolved};
use crate::error::ReplyError;
use crate::protocol::{Request, string2ll};

impl Session {
    /// Decodes and dispatches buffered requests while the in-flight window allows.
    pub(super) fn parse_requests(&mut self, inbuf: &mut BytesMut) {
        while !self.stop_reading && self.window.allows(self.pending.len()) {
            let next = match self.held.take() {
                Some(request) => Ok(Some(*request)),
                None => self.decoder.decode(inbuf),
            };
            match next {
                Ok(Some(request))
                    if self.shared.pause.holds_request(
                        &self.shared.commands,
                        &request,
                        self.transaction.queued(),
                    ) =>
                {
                    self.held = Some(Box::new(request));
                    return;
                }
                Ok(Some(request)) => {
                    self.window.request(request.raw().len());
                    let index = self.pending.next_index();
                    let written = self.out.len();
                    self.reply_mode.begin();
                    let command = self.handle(request);
                    // For `cmd=` and `tot-cmds=` in `CLIENT LIST`.
                    if let Some(seat) = &self.seat {
                        seat.entry().command(command);
                    }
                    // The request got queue entry `index`, or answered straight into the output.
                    let queued = (self.pending.next_index() > index).then_some(index);
                    if self.reply_mode.mutes_this() {
                        // `CLIENT REPLY OFF|SKIP`.
                        match queued {
                            Some(index) => self.reply_mode.mute(index),
                            None => self.out.truncate(written),
                        }
                    }
                    let answered = match self.out.len() > written {
                        true => self.out.since(written),
                        false => &[],
                    };
                    let metrics = &self.shared.metrics;
                    self.timings.handled(
                        command,
                        self.read_at,
                        queued,
                        answered,
                        |row, outcome, s| metrics.record(row, outcome, s),
                    );
                }
                Ok(None) => return,
                Err(e) => {
                    debug!(client = self.id, error = %e, "protocol error; closing");
                    self.pending.push_back(Pending::Close(
                        crate::error::ReplyError::Protocol(e).to_bytes(),
                    ));
                    self.stop_reading = true;
                }
            }
        }
    }

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

    /// The metrics row of a request whose table row has `policy` (`None`: an unknown command).
    fn command_row(&self, policy: Option<&Policy>) -> usize {
        self.shared.metrics.command_row(policy.map(|p| p.metric))
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
            return self.reject(&policy, ReplyError::WrongArity(spec.name));
        }
        if let Err(refusal) = self.login.check(&self.shared.acl, spec, request.args()) {
            match self.access().refused(spec, &request, refusal) {
                Check::Refused(error) => return self.reject(&policy, error),
                Check::Close => return self.close_after_reply(),
            }
        }
        if let Some(refusal) = acl_command::never_forwarded(policy.handling, request.args()) {
            return self.reject(&policy, refusal);
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
        if self.tracking.is_some() {
            self.key_positions.clear();
            let _ = key_positions(spec, request.args(), &mut self.key_positions);
            let keys: Vec<Bytes> = self
                .key_positions
                .iter()
                .map(|&p| request.args()[p].clone())
                .collect();
            let queuing = self.transaction.queuing();
            self.client_tracking().track_command(spec, &keys, queuing);
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
        if self.subs.refuse_commands(self.protocol)
            && !matches!(
                handling,
                Handling::Local(Local::Subscribe | Local::Ping | Local::Quit | Local::Reset)
            )
        {
            // redis-server's refusal of a command in subscribed mode.
            return self.reject(&policy, ReplyError::Subscribed(spec.name));
        }
        // One relaxed load per request; the rest only while some client monitors.
        if self.shared.monitors.active() && !self.monitored(spec, handling, &request) {
            return;
        }
        if self.transaction.queuing() && !runs_in_multi(handling) {
            // The row's own handling: an admin command is refused inside MULTI, allowed or not.
            return self.local_commands().queue(spec, policy.handling, request);
        }
        match handling {
            Handling::Local(Local::Watch) => {
                let forward = self.local_commands().watch(spec, request);
                self.forward(forward);
            }
            Handling::Local(Local::Subscribe) => self.pubsub().subscription(spec, &request),
            Handling::Local(Local::Ping) if self.subs.refuse_commands(self.protocol) => {
                self.pubsub().subscribed_ping(&request)
            }
            Handling::Local(Local::Publish) => {
                let forward = self.pubsub().publish(spec, request);
                self.forward(forward);
            }
            Handling::Local(Local::PubSubCount) => {
                let forward = self.pubsub().count(request);
                self.forward(forward);
            }
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
                let slot = string2ll(&request.args()[2])
                    .and_then(|s| u16::try_from(s).ok())
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

    /// Answers a proxy-local command: from the client's own state ([`LocalCommands`]), or in
    /// the type of its family (tracking, the registry of clients).
    fn local(&mut self, local: Local, request: &Request) {
        let args = request.args();
        let next = match local {
            Local::ClientTracking => return self.client_tracking().command(request),
            Local::ClientTrackingInfo => return self.client_tracking().info(),
            Local::ClientGetRedir => return self.client_tracking().getredir(),
            Local::ClientCaching => return self.client_tracking().caching(args),
            Local::ClientInfo => return self.clients().info(),
            Local::ClientList => return self.clients().list(args),
            Local::ClientUnblock => return self.clients().unblock(args),
            Local::ClientKill => {
                if self.clients().kill(args) {
                    self.close_after_reply();
                }
                return;
            }
            _ => self.local_commands().answer(local, request),
        };
        match next {
            Next::Done => {}
            Next::Forward(forward) => self.forward(Some(forward)),
            Next::Hello(protocol, reply) => self.pubsub().switch_protocol(protocol, reply),
            Next::Reset(reply) => {
                self.client_tracking().stop();
                self.pubsub().reset(reply);
            }
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

    /// Sends on what a command family handed back ([`Forward`]), if anything.
    fn forward(&mut self, forward: Option<Forward>) {
        if let Some(Forward(request, plan)) = forward {
            self.dispatch(request, plan);
        }
    }

    /// Refuses a request before it runs, as redis' `rejectCommand` does: a transaction being
    /// queued is flagged (its `EXEC` aborts), and a refused `EXEC` ends the transaction with
    /// `-EXECABORT` and the reason, in `MULTI` or not.
    fn reject(&mut self, policy: &Policy, error: ReplyError) {
        self.transaction.flag_error();
        if policy.handling == Handling::Local(Local::Exec) {
            self.local_commands().abort_exec(&error);
        } else {
            self.reply_error(error);
        }
    }

    /// Refuses a command: "ERR '<CMD>' <reason>".
    fn refuse(&mut self, spec: &CommandSpec, refusal: Refusal) {
        self.reply_error(ReplyError::Unsupported {
            command: spec.full_name_upper(),
            reason: refusal.reason(),
        });
    }

    /// The one slot all of the request's keys hash to ([`keys_slot`]).
    pub(super) fn slot_of_keys(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
    ) -> Result<Option<Slot>, CrossSlot> {
        keys_slot(&mut self.key_positions, spec, request)
    }

    /// Called, while some client monitors, for a request about to run as `handling` says
    /// ([`monitor::step`]): shows it to the monitors. False when the request was refused.
    fn monitored(&mut self, spec: &CommandSpec, handling: Handling, request: &Request) -> bool {
        let monitoring = self.monitor.is_some();
        match monitor::step(monitoring, spec, handling, request, &mut self.transaction) {
            Monitored::Refused => {
                self.reply_error(ReplyError::ReplicaKeyspace);
                false
            }
            Monitored::Unseen => true,
            Monitored::Shown(queued) => {
                let commands = queued
                    .iter()
                    .map(|(name, request)| (*name, request.args()))
                    .chain(std::iter::once((spec.name, request.args())));
                let peer = self.info.peer_display();
                self.shared.monitors.show(&peer, commands);
                true
            }
        }
    }

    /// `ACL <subcommand>`, answered from slotproxy's own users ([`acl_command`]). As
    /// redis-server does, the clients of users it deleted are closed at once, this one after its
    /// reply.
    fn acl_command(&mut self, spec: &CommandSpec, request: &Request) {
        let mut command = acl_command::AclCommand {
            shared: &self.shared,
            login: &mut self.login,
            protocol: self.protocol,
            client: self.id,
            deleted: Vec::new(),
        };
        let answer = command.run(spec, request);
        let deleted = command.deleted;
        match answer {
            Ok(reply) => self.replies().bytes(&reply),
            Err(error) => self.reply_error(error),
        }
        if !deleted.is_empty() && self.clients().kill_users(&deleted) {
            self.close_after_reply();
        }
    }

    /// Closes the connection once the replies queued so far are written.
    pub(super) fn close_after_reply(&mut self) {
        self.pending.push_back(Pending::Close(Bytes::new()));
        self.stop_reading = true;
    }

    /// The client's access ([`Access`]).
    fn access(&mut self) -> AccessControl<'_> {
        AccessControl {
            id: self.id,
            shared: &self.shared,
            login: &mut self.login,
            info: &self.info,
            seat: &self.seat,
            transaction: &self.transaction,
            replies: Replies {
                pending: &mut self.pending,
                out: &mut self.out,
            },
        }
    }

    /// The session's pub/sub parts ([`PubSub`]).
    pub(super) fn pubsub(&mut self) -> PubSub<'_> {
        PubSub {
            id: self.id,
            protocol: self.protocol,
            shared: &self.shared,
            subs: &mut self.subs,
            inbox: &mut self.inbox,
            inbox_waits: &mut self.inbox_waits,
            hub_member: &mut self.hub_member,
            drain_waits_for_output: &mut self.drain_waits_for_output,
            key_positions: &mut self.key_positions,
            replies: Replies {
                pending: &mut self.pending,
                out: &mut self.out,
            },
        }
    }

    /// The session's tracking parts ([`ClientTracking`]).
    pub(super) fn client_tracking(&mut self) -> ClientTracking<'_> {
        ClientTracking {
            id: self.id,
            protocol: self.protocol,
            shared: &self.shared,
            tracking: &mut self.tracking,
            subs: &self.subs,
            order: &mut self.order,
            profile_stale: &mut self.profile_stale,
            replies: Replies {
                pending: &mut self.pending,
                out: &mut self.out,
            },
        }
    }

    /// Publishes what `CLIENT LIST` shows of this client, if it changed ([`Clients::publish`]);
    /// runs once per loop pass, so the parts are borrowed only when there is something to
    /// publish.
    pub(super) fn publish_client(&mut self) {
        if clients::needs_publish(self.seat.as_ref(), &self.pending, self.profile_stale) {
            self.clients().publish();
        }
    }

    /// This client as the registry of clients sees it ([`Clients`]).
    pub(super) fn clients(&mut self) -> Clients<'_> {
        Clients {
            id: self.id,
            shared: &self.shared,
            seat: &mut self.seat,
            shown: Shown {
                protocol: self.protocol,
                name: &self.name,
                login: &self.login,
                info: &self.info,
                subs: &self.subs,
                transaction: &self.transaction,
                tracking: self.tracking.as_deref(),
                monitoring: self.monitor.is_some(),
                read_only: self.read_mode_chosen
                    && self.read_policy != crate::config::ReadPolicy::Primary,
            },
            profile_stale: &mut self.profile_stale,
            replies: Replies {
                pending: &mut self.pending,
                out: &mut self.out,
            },
        }
    }

    /// The client's own connection state ([`LocalCommands`]).
    pub(super) fn local_commands(&mut self) -> LocalCommands<'_> {
        LocalCommands {
            id: self.id,
            shared: &self.shared,
            protocol: &mut self.protocol,
            name: &mut self.name,
            info: &mut self.info,
            read_policy: &mut self.read_policy,
            read_mode_chosen: &mut self.read_mode_chosen,
            monitor: &mut self.monitor,
            seat: &self.seat,
            reply_mode: &mut self.reply_mode,
            login: &mut self.login,
            transaction: &mut self.transaction,
            dedicated: &mut self.dedicated,
            key_positions: &mut self.key_positions,
            stop_reading: &mut self.stop_reading,
            replies: Replies {
                pending: &mut self.pending,
                out: &mut self.out,
            },
        }
    }

    /// The reply order and output buffer, to answer a request locally.
    pub(super) fn replies(&mut self) -> Replies<'_> {
        Replies {
            pending: &mut self.pending,
            out: &mut self.out,
        }
    }

    /// Queues an error reply slotproxy makes.
    pub(super) fn reply_error(&mut self, error: ReplyError) {
        self.replies().error(error);
    }
}
