//! The session's side of [`crate::clients`]: it publishes what `CLIENT LIST` shows of it, and
//! answers `CLIENT LIST`, `INFO`, `KILL` and `UNBLOCK` from the registry. (The orders other
//! sessions leave, kill and unblock, are carried out by the session itself: they close it or
//! settle its front request.)
//!
//! Publishing costs a few comparisons per pass of the session's loop (not per request): the
//! profile behind the entry's lock is written only when something in it changed.
//!
//! [`Clients`] borrows the session's registry seat, what the profile shows ([`Shown`]) and the
//! reply order; it knows nothing of how requests are sent or settled.

use std::sync::Arc;

use crate::backend::Node;

use bytes::{Bytes, BytesMut};
use tracing::info;

use super::acl::Login;
use super::client_info::ClientInfo;
use super::queue::{Pending, Queue, Task, TaskOutcome};
use super::replies::Replies;
use super::seat::Seat;
use super::shared::Shared;
use super::subscriptions::Subscriptions;
use super::tracking_state::{self, Tracking};
use super::transaction_state::Transaction;
use crate::clients::{
    Blocked, ClientEntry, ClientType, Flags, KillFilter, ListFilter, NodeClientId, Order, Profile,
    UnblockMode, client_line, unblock,
};
use crate::error::ReplyError;
use crate::protocol::Protocol;
use crate::protocol::reply::{write_integer, write_simple, write_text};
use crate::pubsub::Kind;

/// What `CLIENT LIST` shows of this client, borrowed from the session as it is now.
pub(super) struct Shown<'a> {
    pub(super) protocol: Protocol,
    pub(super) name: &'a Option<Bytes>,
    pub(super) login: &'a Login,
    pub(super) info: &'a ClientInfo,
    pub(super) subs: &'a Subscriptions,
    pub(super) transaction: &'a Transaction,
    pub(super) tracking: Option<&'a Tracking>,
    /// The client is in `MONITOR` mode.
    pub(super) monitoring: bool,
    /// The client chose READONLY and reads may go to replicas.
    pub(super) read_only: bool,
}

/// This client as the registry of clients sees it, and the `CLIENT` commands answered from
/// that registry; borrowed from the session for one request or one pass of its loop.
pub(super) struct Clients<'a> {
    /// The client id.
    pub(super) id: u64,
    pub(super) shared: &'a Shared,
    /// The session's entry in the registry, once its session runs.
    pub(super) seat: &'a mut Option<Seat>,
    pub(super) shown: Shown<'a>,
    /// A command that may change what `CLIENT LIST` shows ran since the last publish.
    pub(super) profile_stale: &'a mut bool,
    pub(super) replies: Replies<'a>,
}

/// The node the client is blocked on (a blocking command at the front of its queue), if any.
fn blocked_on(pending: &Queue) -> Option<&Arc<Node>> {
    match pending.front() {
        Some(Pending::Waiting(f)) if f.is_blocking() => Some(&f.sent.node),
        _ => None,
    }
}

/// Whether [`Clients::publish`] has anything to publish: the client has a registry entry, and
/// its profile is stale or it blocked, unblocked or moved to another node since the last call.
/// The session asks this before it borrows its parts for `publish` (once per loop pass).
pub(super) fn needs_publish(seat: Option<&Seat>, pending: &Queue, profile_stale: bool) -> bool {
    let Some(seat) = seat else { return false };
    profile_stale || blocked_moved(seat.blocked_on.as_ref(), blocked_on(pending))
}

/// Whether the client blocked, unblocked or blocks on another node than `before` says.
fn blocked_moved(before: Option<&Arc<Node>>, now: Option<&Arc<Node>>) -> bool {
    match (before, now) {
        (None, None) => false,
        (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
        _ => true,
    }
}

impl Clients<'_> {
    /// Publishes what changed since the last call: the profile, and where the client is
    /// blocked.
    pub(super) fn publish(&mut self) {
        let Some(seat) = &*self.seat else { return };
        let blocked = blocked_on(self.replies.pending);
        let blocked_changed = blocked_moved(seat.blocked_on.as_ref(), blocked);
        if !*self.profile_stale && !blocked_changed {
            return;
        }
        *self.profile_stale = false;
        let blocked = blocked.cloned();
        let shown = &self.shown;
        let flags = Flags::default()
            .with(Flags::MONITOR, shown.monitoring)
            .with(Flags::PUBSUB, shown.subs.any())
            .with(Flags::MULTI, shown.transaction.queuing())
            .with(Flags::BLOCKED, blocked.is_some())
            .with(Flags::TRACKING, shown.tracking.is_some())
            .with(
                Flags::BROKEN_REDIRECT,
                shown.tracking.is_some_and(|t| t.broken),
            )
            .with(Flags::BCAST, shown.tracking.is_some_and(|t| t.mode.bcast))
            .with(Flags::READONLY, shown.read_only);
        let subscriptions = [
            shown.subs.len(Kind::Channel),
            shown.subs.len(Kind::Pattern),
            shown.subs.len(Kind::Shard),
        ];
        let multi = if shown.transaction.queuing() {
            shown.transaction.queued_len() as i64
        } else {
            -1
        };
        let resp = match shown.protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        let redir = tracking_state::redirect_shown(shown.tracking);
        // Compared with what the registry shows (its lock is only ever taken briefly: here,
        // and by CLIENT LIST and the like), rather than with a copy of it in every session.
        let changed = {
            let old = seat.entry().profile();
            old.flags != flags
                || old.redir != redir
                || old.subscriptions != subscriptions
                || old.multi != multi
                || old.resp != resp
                || old.name != *shown.name
                || old.user != shown.login.user.name
                || old.lib_name != shown.info.lib_name
                || old.lib_ver != shown.info.lib_ver
        };
        if !changed && !blocked_changed {
            return;
        }
        let node_client = blocked.as_ref().and_then(|node| {
            let ids = &seat.node_ids;
            ids.iter()
                .rev()
                .find(|(n, p, _)| Arc::ptr_eq(n, node) && *p == shown.protocol)
                .or_else(|| ids.iter().rev().find(|(n, _, _)| Arc::ptr_eq(n, node)))
                .map(|(_, _, id)| id.clone())
        });
        let profile = Profile {
            name: shown.name.clone(),
            user: shown.login.user.name.clone(),
            lib_name: shown.info.lib_name.clone(),
            lib_ver: shown.info.lib_ver.clone(),
            flags,
            subscriptions,
            multi,
            resp,
            redir,
        };
        let Some(seat) = &mut *self.seat else { return };
        if blocked_changed {
            seat.entry().set_blocked(match (&blocked, node_client) {
                (Some(node), Some(node_client)) => Some(Blocked {
                    node: node.clone(),
                    node_client,
                }),
                (Some(node), None) => Some(Blocked {
                    node: node.clone(),
                    node_client: Arc::new(NodeClientId::unknown()),
                }),
                _ => None,
            });
            seat.blocked_on = blocked;
        }
        if changed {
            seat.entry().set_profile(profile);
        }
    }

    /// The metrics name of a client's last command, as `cmd=` shows it.
    fn command_name(&self, entry: &ClientEntry) -> &'static str {
        entry
            .last_command()
            .and_then(|row| self.shared.metrics.command_name(row))
            .unwrap_or("NULL")
    }

    /// `CLIENT INFO`.
    pub(super) fn info(&mut self) {
        self.publish();
        let line = match &*self.seat {
            Some(seat) => client_line(seat.entry(), "client|info"),
            None => String::new(),
        };
        let protocol = self.shown.protocol;
        self.replies
            .with(|out| write_text(out, protocol, line.as_bytes()));
    }

    /// `CLIENT LIST [TYPE type] [ID id ...]`: every client of slotproxy the filter matches.
    pub(super) fn list(&mut self, args: &[Bytes]) {
        let filter = match ListFilter::parse(&args[2..]) {
            Ok(filter) => filter,
            Err(e) => return self.replies.error(e),
        };
        self.publish();
        let registry = &self.shared.registry;
        let entries: Vec<Arc<ClientEntry>> = match filter {
            ListFilter::All => registry.entries(),
            ListFilter::Type(kind) => registry
                .entries()
                .into_iter()
                .filter(|e| ClientType::of(e) == kind)
                .collect(),
            ListFilter::Ids(ids) => ids
                .into_iter()
                .filter_map(|id| u64::try_from(id).ok().and_then(|id| registry.get(id)))
                .collect(),
        };
        let mut text = String::new();
        for entry in &entries {
            let command = if entry.id == self.id {
                "client|list"
            } else {
                self.command_name(entry)
            };
            text.push_str(&client_line(entry, command));
        }
        let protocol = self.shown.protocol;
        self.replies
            .with(|out| write_text(out, protocol, text.as_bytes()));
    }

    /// `CLIENT KILL ip:port` (`+OK` or `-ERR No such client`) or `CLIENT KILL <filter>
    /// <value> ...` (how many were killed). True when the client killed itself: it closes
    /// once it has the reply.
    #[must_use]
    pub(super) fn kill(&mut self, args: &[Bytes]) -> bool {
        let old_form = args.len() == 3;
        let filter = if old_form {
            KillFilter::old(args[2].clone())
        } else {
            let users = self.shared.acl.users.load();
            match KillFilter::parse(&args[2..], |name| users.get(name).is_some()) {
                Ok(filter) => filter,
                Err(e) => {
                    self.replies.error(e);
                    return false;
                }
            }
        };
        self.publish();
        let (killed, me) = self.shared.registry.kill(&filter, self.id);
        if killed > 0 {
            info!(client = self.id, killed, "CLIENT KILL");
        }
        if old_form {
            if killed == 0 {
                self.replies.error(ReplyError::NoSuchClient);
            } else {
                self.replies.with(|out| write_simple(out, "OK"));
            }
        } else {
            self.replies.with(|out| write_integer(out, killed as i64));
        }
        me
    }

    /// Closes every other client of the users `names` (`ACL DELUSER`); true when this
    /// client's user is among them (it closes after its reply, as in redis).
    #[must_use]
    pub(super) fn kill_users(&self, names: &[Bytes]) -> bool {
        for name in names {
            let filter = KillFilter {
                user: Some(name.clone()),
                ..KillFilter::default()
            };
            let (killed, _) = self.shared.registry.kill(&filter, self.id);
            if killed > 0 {
                info!(
                    client = self.id,
                    killed, "closed the clients of a deleted user"
                );
            }
        }
        names
            .iter()
            .any(|n| n[..] == *self.shown.login.user.name.as_bytes())
    }

    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: `1` when client `id` was blocked and is not any
    /// more, else `0` (see `clients/unblock.rs`).
    pub(super) fn unblock(&mut self, args: &[Bytes]) {
        if args.len() > 4 {
            return self
                .replies
                .error(ReplyError::ClientSubcommandArity(args[1].clone()));
        }
        let (id, mode) = match UnblockMode::parse(&args[2..]) {
            Ok(parsed) => parsed,
            Err(e) => return self.replies.error(e),
        };
        let target = u64::try_from(id)
            .ok()
            .and_then(|id| self.shared.registry.get(id))
            .and_then(|entry| entry.blocked_on().map(|blocked| (entry, blocked)));
        let Some((entry, blocked)) = target else {
            return self.replies.with(|out| write_integer(out, 0));
        };
        let task = async move {
            match unblock::on_node(&entry, &blocked, mode).await {
                Some(answer) => TaskOutcome::Reply(answer),
                // The node can't or won't do it (an ACL without `+client|id` or
                // `+client|unblock`): the session ends the command itself.
                None => {
                    entry.order(Order::Unblock(mode));
                    let mut one = BytesMut::new();
                    write_integer(&mut one, 1);
                    TaskOutcome::Reply(one.freeze())
                }
            }
        };
        self.replies.push(Pending::Task(Task::new(task)));
    }
}

/// The clients' memory passed `session.max_client_memory_bytes` through this client and
/// nothing evicted yet: evicts the clients holding the most (this one, maybe) until it is
/// back under.
pub(super) fn evict_for_memory(shared: &Shared) {
    let registry = &shared.registry;
    if registry.memory().evict_now() {
        return;
    }
    let evicted = registry.evict_for_memory();
    if !evicted.is_empty() {
        crate::clients::report_evictions(&shared.metrics, registry.memory(), &evicted);
    }
}

/// Logs that client `id` is closed to bring the clients' memory under its budget, with the
/// bytes it held: `unsent` in its output buffer, `in_flight` in replies on their way.
pub(super) fn log_eviction(id: u64, info: &ClientInfo, unsent: usize, in_flight: usize) {
    info!(
        client = id,
        peer = %info.peer_display(),
        unsent_bytes = unsent,
        in_flight_bytes = in_flight,
        "client evicted: the clients' memory passed max_client_memory_bytes and it held the most; closing it"
    );
}
