//! `MONITOR` on the session's side: starting it, which commands are shown to the monitoring
//! clients (redis-server 7.0's rules), and what a monitoring client may still send.
//!
//! A command is shown when slotproxy takes it to run, after the checks redis makes before
//! running one (unknown command, arity, authentication, ACL, a subscribed client's refusals):
//! those it fails are not shown, as on redis. Commands flagged `admin` are never shown (redis
//! deems them too dangerous), nor are those slotproxy refuses. Commands queued in `MULTI` are
//! shown when `EXEC` runs them, just before `EXEC` itself; a doomed transaction shows `EXEC`
//! alone. Scripts show as their `EVAL`/`FCALL`: the commands a script runs on its node are not
//! seen by slotproxy (redis adds them as `[0 lua]` lines).

use super::Session;
use super::transaction_state::runs_in_multi;
use crate::command::policy::{Handling, Local};
use crate::command::{CommandSpec, Flags};
use crate::error::ReplyError;
use crate::protocol::Request;
use crate::protocol::reply::write_simple;

impl Session {
    /// `MONITOR` (when the configuration allows it): the client gets the line of every command
    /// shown from now on. Sent again, it is ignored without a reply, as redis does.
    pub(super) fn start_monitor(&mut self) {
        if self.monitor.is_some() {
            return;
        }
        self.monitor = Some(self.shared.monitors.watch());
        self.reply_with(|out| write_simple(out, "OK"));
    }

    /// Called, while some client monitors, for a request about to run as `handling` says:
    /// shows it (or keeps it for `EXEC`). False when the request was answered here instead: a
    /// monitoring client may not read or write keys (redis treats it as a replica).
    pub(super) fn monitored(
        &mut self,
        spec: &CommandSpec,
        handling: Handling,
        request: &Request,
    ) -> bool {
        let keyspace = [Flags::WRITE, Flags::READONLY, Flags::MAY_REPLICATE];
        if self.monitor.is_some() && keyspace.iter().any(|&f| spec.flags.contains(f)) {
            self.reply_error(ReplyError::ReplicaKeyspace);
            return false;
        }
        if spec.flags.contains(Flags::ADMIN)
            || matches!(handling, Handling::Admin(_) | Handling::Refused(_))
        {
            return true;
        }
        if self.transaction.queuing() && !runs_in_multi(handling) {
            self.transaction.shown.push((spec.name, request.clone()));
            return true;
        }
        let queued = if handling == Handling::Local(Local::Exec) && self.transaction.queuing() {
            let shown = std::mem::take(&mut self.transaction.shown);
            if self.transaction.dirty {
                Vec::new()
            } else {
                shown
            }
        } else {
            Vec::new()
        };
        let peer = self.info.peer_display();
        let commands = queued
            .iter()
            .map(|(name, request)| (*name, request.args()))
            .chain(std::iter::once((spec.name, request.args())));
        self.shared.monitors.show(&peer, commands);
        true
    }
}
