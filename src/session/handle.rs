//! What a request becomes: `parse_requests` decodes what the client sent (or holds it while
//! `CLIENT PAUSE` says so), `handle` resolves its command to a table row, checks its arity and
//! the client's permissions, and picks its `Plan` (`plan.rs`) from the row's [`Handling`]
//! (answered locally, one slot, split by slot, computed, fanned out, pinned to a dedicated
//! connection...), which `dispatch.rs` then sends. What a command is, is decided once per row in
//! `command/policy.rs`; this file only acts on it.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::Session;
use super::acl::{self, Refusal as AclRefusal};
use super::acl_command;
use super::monitor::{self, Monitored};
use super::plan::{CrossSlot, Plan, keys_slot};
use super::queue::Pending;
use super::replies::{Forward, Replies};
use super::split::Merge;
use super::target::Target;
use super::transaction_state::runs_in_multi;
use crate::auth::log::{Entry, Reason};
use crate::cluster::{Slot, hash_slot};
use crate::command::keys::key_positions;
use crate::command::policy::{
    Access, Allowed, Handling, Local, Policy, Refusal, SplitKind, is_debug_object,
};
use crate::command::{CommandSpec, Resolved};
use crate::error::ReplyError;
use crate::protocol::Request;

impl Session {
    /// Decodes and dispatches buffered requests while the in-flight window allows.
    pub(super) fn parse_requests(&mut self, inbuf: &mut BytesMut) {
        while !self.stop_reading && self.window.allows(self.pending.len()) {
            let next = match self.held.take() {
                Some(request) => Ok(Some(request)),
                None => self.decoder.decode(inbuf),
            };
            match next {
                Ok(Some(request))
                    if self.shared.pause.holds_request(
                        &self.shared.commands,
                        &request,
                        &self.transaction.queued,
                    ) =>
                {
                    self.held = Some(request);
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
            return self.reply_error(ReplyError::Subscribed(spec.name));
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
            Handling::Local(Local::Subscribe) => self.pubsub().subscription(spec, &request),
            Handling::Local(Local::Ping) if self.subs.refuse_commands(self.protocol) => {
                self.pubsub().subscribed_ping(&request)
            }
            Handling::Local(Local::Publish) => {
                if let Some(Forward(request, plan)) = self.pubsub().publish(spec, request) {
                    self.dispatch(request, plan);
                }
            }
            Handling::Local(Local::PubSubCount) => {
                if let Some(Forward(request, plan)) = self.pubsub().count(request) {
                    self.dispatch(request, plan);
                }
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

    /// The one slot all of the request's keys hash to ([`keys_slot`]).
    pub(super) fn slot_of_keys(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
    ) -> Result<Option<Slot>, CrossSlot> {
        keys_slot(&mut self.key_positions, spec, request)
    }

    /// The permission check before a request is planned ([`acl::Login::check`]): on a refusal,
    /// queues redis' reply (`-NOAUTH`, `-NOPERM`, or closes the client of a deleted user),
    /// records it in `ACL LOG` and returns `false`.
    fn acl_allows(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        let refusal = match self.login.check(&self.shared.acl, spec, request.args()) {
            Ok(()) => return true,
            Err(refusal) => refusal,
        };
        if let Some((reason, object)) = refusal.log_entry(spec, request.args()) {
            let username = self.login.user.name.as_bytes().to_vec();
            self.log_refusal(reason, object, username, spec.name);
        }
        match refusal {
            AclRefusal::UserDeleted => {
                info!(client = self.id, "client's user was deleted; closing");
                self.close_after_reply();
            }
            AclRefusal::NoAuth => {
                self.transaction.flag_error();
                self.reply_error(ReplyError::NoAuth);
            }
            AclRefusal::Denied(denied) => {
                self.transaction.flag_error();
                self.reply_error(denied.noperm(spec));
            }
        }
        false
    }

    /// `AUTH [user] password` and `HELLO ... AUTH user password`: on success the client becomes
    /// `user`. A failure is counted, recorded in `ACL LOG`, logged (at most one line a second)
    /// and leaves the client as it was.
    pub(super) fn authenticate(&mut self, user: &[u8], password: &[u8]) -> bool {
        if self.login.authenticate(&self.shared.acl, user, password) {
            return true;
        }
        let failures = self.shared.auth_failures.fetch_add(1, Ordering::Relaxed) + 1;
        self.log_refusal(Reason::Auth, b"AUTH".to_vec(), user.to_vec(), "auth");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self
            .shared
            .acl
            .last_failure_log
            .swap(now, Ordering::Relaxed)
            != now
        {
            warn!(
                client = self.id,
                addr = %self.info.peer_display(),
                user = %String::from_utf8_lossy(user),
                failures,
                "client authentication failed"
            );
        }
        false
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

    /// Adds an `ACL LOG` entry for a refusal of this client.
    fn log_refusal(&self, reason: Reason, object: Vec<u8>, username: Vec<u8>, command: &str) {
        let entry = Entry {
            count: 1,
            reason,
            context: if self.transaction.queuing() {
                "multi"
            } else {
                "toplevel"
            },
            object,
            username,
            at_ms: acl::now_ms(),
            client_info: self
                .seat
                .as_ref()
                .map(|seat| crate::clients::client_line(seat.entry(), command))
                .unwrap_or_default()
                .trim_end()
                .to_owned(),
        };
        self.shared
            .acl
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(entry);
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
            Ok(reply) => self.reply_with(|out| out.extend_from_slice(&reply)),
            Err(error) => self.reply_error(error),
        }
        if !deleted.is_empty() && self.clients().kill_users(&deleted) {
            self.close_after_reply();
        }
    }

    /// `AUTH`.
    pub(super) fn auth(&mut self, args: &[Bytes]) {
        let (user, password) = match args.len() {
            2 => (&b"default"[..], &args[1]),
            3 => (&args[1][..], &args[2]),
            _ => return self.reply_error(ReplyError::Syntax),
        };
        if args.len() == 2 && !self.shared.acl.users.load().default_user().requires_auth() {
            return self.reply_error(ReplyError::AuthWithoutPassword);
        }
        if self.authenticate(user, password) {
            self.reply_with(|out| crate::protocol::reply::write_simple(out, "OK"));
        } else {
            self.reply_error(ReplyError::WrongPass);
        }
    }

    /// Closes the connection once the replies queued so far are written.
    pub(super) fn close_after_reply(&mut self) {
        self.pending.push_back(Pending::Close(Bytes::new()));
        self.stop_reading = true;
    }

    /// The reply order and output buffer, to answer a request locally.
    pub(super) fn replies(&mut self) -> Replies<'_> {
        Replies {
            pending: &mut self.pending,
            out: &mut self.out,
        }
    }

    /// Queues a reply built by `build`, written straight out when nothing is ahead of it.
    pub(super) fn reply_with(&mut self, build: impl FnOnce(&mut BytesMut)) {
        self.replies().with(build);
    }

    /// Queues an error reply slotproxy makes.
    pub(super) fn reply_error(&mut self, error: ReplyError) {
        self.replies().error(error);
    }
}
