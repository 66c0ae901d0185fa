//! The session's side of [`crate::clients`]: it publishes what `CLIENT LIST` shows of it,
//! obeys the orders other sessions leave (kill, unblock), and answers `CLIENT LIST`, `INFO`,
//! `KILL` and `UNBLOCK` from the registry.
//!
//! Publishing costs a few comparisons per pass of the session's loop (not per request): the
//! profile behind the entry's lock is written only when something in it changed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::info;

use super::Session;
use super::queue::{FrontEvent, Pending, Task, TaskOutcome};
use super::seat::Seat;
use crate::backend::{Lane, Node, Outgoing};
use crate::clients::{
    Blocked, ClientEntry, ClientType, Flags, KillFilter, ListFilter, NodeClientId, Order, Profile,
    UnblockMode, client_line, node_unblock_command,
};
use crate::config::ReadPolicy;
use crate::error::ReplyError;
use crate::protocol::reply::{null_array, write_integer, write_simple, write_text};
use crate::protocol::{Protocol, View};
use crate::pubsub::Kind;

const CLIENT_ID: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";

impl Session {
    /// Adds this session to the registry (once its socket's addresses are known).
    pub(super) fn take_seat(&mut self) {
        let (peer, local, fd) = self.info.addresses();
        let entry = Arc::new(ClientEntry::new(
            self.id,
            peer,
            local,
            fd,
            self.budget.clone(),
        ));
        let registration = self.shared.registry.register(entry);
        self.seat = Some(Seat {
            registration,
            published: Profile {
                multi: -1,
                resp: 2,
                redir: -1,
                ..Profile::default()
            },
            blocked_on: None,
            node_ids: Vec::new(),
        });
        self.publish_client();
    }

    /// Publishes what changed since the last call: the profile, and where the client is
    /// blocked.
    pub(super) fn publish_client(&mut self) {
        let Some(seat) = &self.seat else { return };
        let blocked = match self.pending.front() {
            Some(Pending::Waiting(f)) if f.is_blocking() => Some(&f.sent.node),
            _ => None,
        };
        let blocked_changed = match (&seat.blocked_on, blocked) {
            (None, None) => false,
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            _ => true,
        };
        if !self.profile_stale && !blocked_changed {
            return;
        }
        self.profile_stale = false;
        let blocked = blocked.cloned();
        let flags = Flags::default()
            .with(Flags::MONITOR, self.monitor.is_some())
            .with(Flags::PUBSUB, self.subs.any())
            .with(Flags::MULTI, self.transaction.queuing())
            .with(Flags::BLOCKED, blocked.is_some())
            .with(Flags::TRACKING, self.tracking.is_some())
            .with(
                Flags::BROKEN_REDIRECT,
                self.tracking.as_ref().is_some_and(|t| t.broken),
            )
            .with(
                Flags::BCAST,
                self.tracking.as_ref().is_some_and(|t| t.mode.bcast),
            )
            .with(
                Flags::READONLY,
                self.read_mode_chosen && self.read_policy != ReadPolicy::Primary,
            );
        let subscriptions = [
            self.subs.len(Kind::Channel),
            self.subs.len(Kind::Pattern),
            self.subs.len(Kind::Shard),
        ];
        let multi = if self.transaction.queuing() {
            self.transaction.queued_len() as i64
        } else {
            -1
        };
        let resp = match self.protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        let redir = super::tracking_state::redirect_shown(self.tracking.as_ref());
        let old = &seat.published;
        let changed = old.flags != flags
            || old.redir != redir
            || old.subscriptions != subscriptions
            || old.multi != multi
            || old.resp != resp
            || old.name != self.name
            || old.user != self.login.user.name
            || old.lib_name != self.info.lib_name
            || old.lib_ver != self.info.lib_ver;
        if !changed && !blocked_changed {
            return;
        }
        let node_client = blocked.as_ref().and_then(|node| {
            let ids = &seat.node_ids;
            ids.iter()
                .rev()
                .find(|(n, p, _)| Arc::ptr_eq(n, node) && *p == self.protocol)
                .or_else(|| ids.iter().rev().find(|(n, _, _)| Arc::ptr_eq(n, node)))
                .map(|(_, _, id)| id.clone())
        });
        let profile = Profile {
            name: self.name.clone(),
            user: self.login.user.name.clone(),
            lib_name: self.info.lib_name.clone(),
            lib_ver: self.info.lib_ver.clone(),
            flags,
            subscriptions,
            multi,
            resp,
            redir,
        };
        let Some(seat) = &mut self.seat else { return };
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
            seat.entry().set_profile(profile.clone());
            seat.published = profile;
        }
    }

    /// A dedicated connection was just opened: ask the node for its client id on it, ahead of
    /// its first command (for `CLIENT UNBLOCK`).
    pub(super) fn dedicated_opened(&mut self, node: &Arc<Node>, lane: &Lane) {
        let protocol = self.protocol;
        let Some(seat) = &mut self.seat else { return };
        let id = NodeClientId::asked(lane.send(Outgoing::new(Bytes::from_static(CLIENT_ID))));
        let ids = &mut seat.node_ids;
        ids.retain(|(n, p, _)| !(Arc::ptr_eq(n, node) && *p == protocol));
        ids.push((node.clone(), protocol, Arc::new(id)));
    }

    /// Records the command just read (its metrics row), for `cmd=` and `tot-cmds=`.
    pub(super) fn note_command(&self, row: usize) {
        if let Some(seat) = &self.seat {
            seat.entry().command(row);
        }
    }

    /// Carries out the order another session left, and writes the invalidations redirected
    /// here; false when the session must close now.
    pub(super) fn obey(&mut self) -> bool {
        let Some(seat) = &self.seat else { return true };
        let order = seat.entry().take_order();
        let redirected = seat.entry().take_redirected();
        if !redirected.is_empty() {
            self.client_tracking().redirected(redirected);
        }
        match order {
            Some(Order::Kill) if self.budget.evicted() => {
                self.log_eviction();
                false
            }
            Some(Order::Kill) => {
                info!(client = self.id, peer = %self.info.peer_display(), "client killed (CLIENT KILL or its user deleted); closing");
                false
            }
            Some(Order::Unblock(mode)) => {
                self.unblock_here(mode);
                true
            }
            None => true,
        }
    }

    /// The clients' memory passed `session.max_client_memory_bytes` through this client and
    /// nothing evicted yet: evicts the clients holding the most (this one, maybe) until it is
    /// back under.
    pub(super) fn evict_for_memory(&self) {
        let registry = &self.shared.registry;
        if registry.memory().evict_now() {
            return;
        }
        let evicted = registry.evict_for_memory();
        if !evicted.is_empty() {
            crate::clients::report_evictions(&self.shared.metrics, registry.memory(), &evicted);
        }
    }

    /// Logs that this client is closed to bring the clients' memory under its budget.
    pub(super) fn log_eviction(&self) {
        info!(
            client = self.id,
            peer = %self.info.peer_display(),
            unsent_bytes = self.out.len(),
            in_flight_bytes = self.budget.held(),
            "client evicted: the clients' memory passed max_client_memory_bytes and it held the most; closing it"
        );
    }

    /// Ends the blocked command at the front without the node's help (see
    /// `clients/unblock.rs`): answers it as the node would and closes its connection. A reply
    /// that already arrived is delivered instead.
    fn unblock_here(&mut self, mode: UnblockMode) {
        let node = match self.pending.front_mut() {
            Some(Pending::Waiting(f)) if f.is_blocking() => {
                if let Some(result) = f.try_reply() {
                    self.settle_front(FrontEvent::Single(result));
                    return;
                }
                f.sent.node.clone()
            }
            _ => return,
        };
        self.drop_dedicated(&node);
        let reply = match mode {
            UnblockMode::Timeout => null_array(self.protocol),
            UnblockMode::Error => ReplyError::Unblocked.to_bytes(),
        };
        self.pending.pop_front();
        self.pending.push_front(Pending::Done(reply));
    }

    /// The metrics name of a client's last command, as `cmd=` shows it.
    fn command_name(&self, entry: &ClientEntry) -> &'static str {
        entry
            .last_command()
            .and_then(|row| self.shared.metrics.command_name(row))
            .unwrap_or("NULL")
    }

    /// `CLIENT INFO`.
    pub(super) fn client_info(&mut self) {
        self.publish_client();
        let line = match &self.seat {
            Some(seat) => client_line(seat.entry(), "client|info"),
            None => String::new(),
        };
        let protocol = self.protocol;
        self.reply_with(|out| write_text(out, protocol, line.as_bytes()));
    }

    /// `CLIENT LIST [TYPE type] [ID id ...]`: every client of slotproxy the filter matches.
    pub(super) fn client_list(&mut self, args: &[Bytes]) {
        let filter = match ListFilter::parse(&args[2..]) {
            Ok(filter) => filter,
            Err(e) => return self.reply_error(e),
        };
        self.publish_client();
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
        let protocol = self.protocol;
        self.reply_with(|out| write_text(out, protocol, text.as_bytes()));
    }

    /// `CLIENT KILL ip:port` (`+OK` or `-ERR No such client`) or `CLIENT KILL <filter>
    /// <value> ...` (how many were killed). A client that kills itself gets the reply first.
    pub(super) fn client_kill(&mut self, args: &[Bytes]) {
        let old_form = args.len() == 3;
        let filter = if old_form {
            KillFilter::old(args[2].clone())
        } else {
            let users = self.shared.acl.users.load();
            match KillFilter::parse(&args[2..], |name| users.get(name).is_some()) {
                Ok(filter) => filter,
                Err(e) => return self.reply_error(e),
            }
        };
        self.publish_client();
        let (killed, me) = self.shared.registry.kill(&filter, self.id);
        if killed > 0 {
            info!(client = self.id, killed, "CLIENT KILL");
        }
        if old_form {
            if killed == 0 {
                self.reply_error(ReplyError::NoSuchClient);
            } else {
                self.reply_with(|out| write_simple(out, "OK"));
            }
        } else {
            self.reply_with(|out| write_integer(out, killed as i64));
        }
        if me {
            self.close_after_reply();
        }
    }

    /// Closes the connection once the replies queued so far are written.
    pub(super) fn close_after_reply(&mut self) {
        self.pending.push_back(Pending::Close(Bytes::new()));
        self.stop_reading = true;
    }

    /// Closes every other client of the users `names` (`ACL DELUSER`); true when this
    /// client's user is among them (it closes after its reply, as in redis).
    pub(super) fn kill_users(&mut self, names: &[Bytes]) -> bool {
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
            .any(|n| n[..] == *self.login.user.name.as_bytes())
    }

    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: `1` when client `id` was blocked and is not any
    /// more, else `0` (see `clients/unblock.rs`).
    pub(super) fn client_unblock(&mut self, args: &[Bytes]) {
        if args.len() > 4 {
            return self.reply_error(ReplyError::ClientSubcommandArity(args[1].clone()));
        }
        let (id, mode) = match UnblockMode::parse(&args[2..]) {
            Ok(parsed) => parsed,
            Err(e) => return self.reply_error(e),
        };
        let target = u64::try_from(id)
            .ok()
            .and_then(|id| self.shared.registry.get(id))
            .and_then(|entry| entry.blocked_on().map(|blocked| (entry, blocked)));
        let Some((entry, blocked)) = target else {
            return self.reply_with(|out| write_integer(out, 0));
        };
        let Some(node_client) = blocked.node_client.get() else {
            entry.order(Order::Unblock(mode));
            return self.reply_with(|out| write_integer(out, 1));
        };
        let command = node_unblock_command(node_client, mode);
        let task = async move {
            let answer = blocked.node.request(Protocol::Resp2, command).await;
            match answer {
                Ok(reply) if View::of(reply.raw()).and_then(|v| v.integer()).is_some() => {
                    TaskOutcome::Reply(reply.into_raw())
                }
                // The node would not do it (an ACL without `+client|unblock`): the session
                // ends the command itself.
                _ => {
                    entry.order(Order::Unblock(mode));
                    let mut one = BytesMut::new();
                    write_integer(&mut one, 1);
                    TaskOutcome::Reply(one.freeze())
                }
            }
        };
        self.pending.push_back(Pending::Task(Task::new(task)));
    }
}
