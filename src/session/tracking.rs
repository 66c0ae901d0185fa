//! The session's side of `CLIENT TRACKING`: the options redis-server accepts (with its errors),
//! `CLIENT CACHING`, `CLIENT TRACKINGINFO`/`GETREDIR`, remembering the keys of read-only commands,
//! and writing invalidations (RESP3 pushes) in the right place among the replies.
//!
//! The table of who read what, and the node listeners, are in [`crate::tracking`]. With
//! `REDIRECT id`, a client's invalidations go to client `id` instead, on whatever worker thread
//! it runs: through its registry entry ([`crate::clients::ClientEntry::redirect`]), whose alarm
//! wakes it. The target writes them as redis does: a RESP3 push, or for a RESP2 client with any
//! subscription a message on `__redis__:invalidate` (the subscription itself is an ordinary
//! one, held by the pub/sub hub: a `PUBLISH` to that channel reaches it as on redis), else
//! nothing. RESP2 clients without `REDIRECT` get no invalidations, as on redis-server.
//!
//! [`ClientTracking`] borrows exactly the session parts this needs (its tracking state, the
//! reply order, the order of later requests); it knows nothing of how requests are sent.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::order::Order;
use super::queue::{Pending, Task, TaskOutcome};
use super::replies::Replies;
use super::shared::Shared;
use super::subscriptions::Subscriptions;
use super::tracking_prefixes::{OFFLOAD_PREFIXES, merge_prefixes};
use super::tracking_state::{self, KeysUse, Prefixes, Tracking, TrackingCommand, TrackingOn};
use crate::command::CommandSpec;
use crate::error::ReplyError;
use crate::protocol::reply::write_integer;
use crate::protocol::{Protocol, Request};
use crate::tracking::{Invalidation, Redirected, frames};

/// A session's tracking parts, borrowed for one request or one event.
pub(super) struct ClientTracking<'a> {
    /// The client id, as the tracker knows the session.
    pub(super) id: u64,
    /// The protocol the client speaks now.
    pub(super) protocol: Protocol,
    pub(super) shared: &'a Shared,
    /// `CLIENT TRACKING` options and the invalidations coming for this client.
    pub(super) tracking: &'a mut Option<Box<Tracking>>,
    /// Whether a RESP2 client gets redirected invalidations (it has a subscription).
    pub(super) subs: &'a Subscriptions,
    /// Holds later requests while `ON` waits for the listeners.
    pub(super) order: &'a mut Order,
    /// Set when what `CLIENT LIST` shows of the client changed (a broken redirect).
    pub(super) profile_stale: &'a mut bool,
    pub(super) replies: Replies<'a>,
}

impl ClientTracking<'_> {
    /// `CLIENT TRACKING ON|OFF ...` ([`tracking_state::parse`]).
    pub(super) fn command(&mut self, request: &Request) {
        let registry = &self.shared.registry;
        let max_prefixes = self.shared.config.session.tracking_max_prefixes;
        let parsed = tracking_state::parse(
            request.args(),
            self.tracking.as_deref(),
            |id| registry.get(id).is_some(),
            max_prefixes,
        );
        let (on, new_prefixes) = match parsed {
            Ok(TrackingCommand::On(on, new_prefixes)) => (on, new_prefixes),
            Ok(TrackingCommand::Off) => {
                self.stop();
                return self.reply_ok();
            }
            Err(error) => return self.replies.error(error),
        };
        // The set moves out while it is built; `turn_on` puts it back either way.
        let existing = match self.tracking.as_mut() {
            Some(current) => std::mem::take(&mut current.mode.prefixes),
            None => Arc::default(),
        };
        let bcast = on.mode.bcast;
        if existing.len() + new_prefixes.len() < OFFLOAD_PREFIXES {
            let prefixes = merge_prefixes(existing, &new_prefixes, bcast);
            return match self.turn_on(prefixes, on) {
                Pending::Done(reply) => self.replies.bytes(&reply),
                wait => {
                    self.order.hold_next();
                    self.replies.push(wait);
                }
            };
        }
        // Thousands of prefixes take milliseconds to check and merge (seconds in a debug
        // build): the offload thread does it, at low priority, so the other clients don't
        // wait. Later requests wait behind it, as behind the listeners.
        let merged = self
            .shared
            .offload
            .run(move || merge_prefixes(existing, &new_prefixes, bcast));
        let task = Task::new(async move {
            match merged.await {
                Ok(prefixes) => TaskOutcome::Tracking(prefixes, on),
                // Only if the offload thread could not start.
                Err(_) => TaskOutcome::Reply(ReplyError::PrefixCheckStopped.to_bytes()),
            }
        });
        self.order.hold_next();
        self.replies.push(Pending::Task(task));
    }

    /// Turns tracking on with `prefixes` (the client's set with the new ones merged, or the
    /// overlap error) and `on`'s options. Returns the reply's queue entry: `+OK` or the error
    /// at once, or a wait for the listeners.
    pub(super) fn turn_on(&mut self, prefixes: Prefixes, on: TrackingOn) -> Pending {
        let TrackingOn {
            mut mode,
            optin,
            optout,
            redirect,
        } = on;
        mode.prefixes = match prefixes {
            Ok(prefixes) => prefixes,
            Err((error, existing)) => {
                if let Some(current) = self.tracking.as_mut() {
                    current.mode.prefixes = existing;
                }
                return Pending::Done(error.to_bytes());
            }
        };
        let (sender, pushes) = match self.tracking.take() {
            Some(current) => (current.sender, current.pushes),
            None => mpsc::unbounded_channel(),
        };
        let wait = self
            .shared
            .tracker
            .enable(self.id, mode.clone(), sender.clone());
        *self.tracking = Some(Box::new(Tracking {
            mode,
            // Like redis, each `ON` replaces the options (prefixes add up).
            optin,
            optout,
            caching: None,
            // As redis: each `ON` sets the target anew (none without `REDIRECT`).
            redirect,
            broken: false,
            pushes,
            sender,
        }));
        match wait {
            None => Pending::Done(Bytes::from_static(b"+OK\r\n")),
            Some(ready) => self.wait_for_listeners(ready),
        }
    }

    /// Answers `ON` once every primary's listener is ready; later requests wait behind it, so
    /// nothing the client reads can change unseen. After the retry deadline it gets an error
    /// (tracking stays on, and lost listeners will flush its cache).
    fn wait_for_listeners(&mut self, ready: oneshot::Receiver<()>) -> Pending {
        if self.shared.topology.slot_map().shards().is_empty() {
            self.shared.tracker.confirm(self.id);
            return Pending::Done(ReplyError::NoNodeKnown.to_bytes());
        }
        let deadline = Instant::now() + self.shared.live.load().session.retry_deadline();
        let tracker = self.shared.tracker.clone();
        let id = self.id;
        Pending::Task(Task::blocking(async move {
            TaskOutcome::Reply(match tokio::time::timeout_at(deadline, ready).await {
                Ok(Ok(())) => Bytes::from_static(b"+OK\r\n"),
                _ => {
                    tracker.confirm(id);
                    ReplyError::InvalidationsLate.to_bytes()
                }
            })
        }))
    }

    /// `CLIENT CACHING yes|no`.
    pub(super) fn caching(&mut self, args: &[Bytes]) {
        match tracking_state::caching(self.tracking.as_deref_mut(), &args[2]) {
            Ok(()) => self.reply_ok(),
            Err(error) => self.replies.error(error),
        }
    }

    /// `CLIENT GETREDIR`: -1 without tracking, else the `REDIRECT` target (0: none).
    pub(super) fn getredir(&mut self) {
        let redirect = tracking_state::redirect_shown(self.tracking.as_deref());
        self.replies.with(|out| write_integer(out, redirect));
    }

    /// `CLIENT TRACKINGINFO`.
    pub(super) fn info(&mut self) {
        let (tracking, protocol) = (self.tracking.as_deref(), self.protocol);
        let mut reply = BytesMut::new();
        tracking_state::write_info(tracking, protocol, &mut reply);
        self.replies.bytes(&reply);
    }

    /// Before a command runs: remember the keys it reads, or note its writes (NOLOOP), as
    /// [`Tracking::keys_use`] says; `queuing` while the client is inside `MULTI`.
    pub(super) fn track_command(&mut self, spec: &CommandSpec, keys: &[Bytes], queuing: bool) {
        let Some(tracking) = self.tracking.as_mut() else {
            return;
        };
        let used = tracking.keys_use(spec, queuing);
        if keys.is_empty() {
            return;
        }
        let keys = keys.iter().map(|k| &k[..]);
        match used {
            KeysUse::Remember => self.shared.tracker.remember(self.id, keys),
            KeysUse::Wrote => self.shared.tracker.wrote(self.id, keys),
            KeysUse::Nothing => {}
        }
    }

    /// An invalidation from the tracker: written here (RESP3 only: redis sends RESP2 clients
    /// none on their own connection), or handed to the `REDIRECT` target, in both cases after
    /// the replies still owed to this client. When the target is gone, the client is told so
    /// (RESP3) instead, at each invalidation, as redis does.
    pub(super) fn invalidation(&mut self, invalidation: Invalidation) {
        let Some(tracking) = self.tracking.as_mut() else {
            return;
        };
        if tracking.redirect == 0 {
            if self.protocol == Protocol::Resp3 {
                self.after_replies(frames::push(&invalidation, Protocol::Resp3));
            }
            return;
        }
        let redirect = tracking.redirect;
        match self.shared.registry.get(redirect) {
            Some(target) => {
                let redirected = Redirected {
                    invalidation,
                    null: self.protocol,
                };
                if self.replies.pending.is_empty() {
                    return target.redirect(redirected);
                }
                // Handed over once the replies still owed here are written (a task runs only
                // at the front of the queue): the application must not hear of a change on
                // the target's connection before it has read, here, a value from before it.
                let task = Task::new(async move {
                    target.redirect(redirected);
                    TaskOutcome::Reply(Bytes::new())
                });
                self.replies.push(Pending::Task(task));
            }
            None => {
                if !tracking.broken {
                    tracking.broken = true;
                    *self.profile_stale = true;
                }
                if self.protocol == Protocol::Resp3 {
                    self.after_replies(frames::redirect_broken(redirect));
                }
            }
        }
    }

    /// Invalidations other clients redirect here: a push for a RESP3 client, a message on
    /// `__redis__:invalidate` for a RESP2 client with any subscription (redis' test is its
    /// pub/sub mode, not that channel), else dropped.
    pub(super) fn redirected(&mut self, redirected: Vec<Redirected>) {
        for Redirected { invalidation, null } in redirected {
            let frame = match self.protocol {
                Protocol::Resp3 => frames::push(&invalidation, null),
                Protocol::Resp2 if self.subs.any() => frames::message(&invalidation, null),
                Protocol::Resp2 => continue,
            };
            self.after_replies(frame);
        }
    }

    /// Writes `frame` after every reply still owed, so a client never caches a value it read
    /// before a change after hearing of the change.
    fn after_replies(&mut self, push: Bytes) {
        self.replies.after_replies(push);
    }

    /// Tracking off (RESET, end of the session).
    pub(super) fn stop(&mut self) {
        if let Some(tracking) = self.tracking.take() {
            self.shared.tracker.disable(self.id);
            let prefixes = tracking.mode.prefixes.clone();
            drop(tracking);
            if prefixes.len() >= OFFLOAD_PREFIXES {
                // The last reference now: freeing thousands of prefixes is the offload
                // thread's work too.
                drop(self.shared.offload.run(move || drop(prefixes)));
            }
        }
    }

    fn reply_ok(&mut self) {
        self.replies.bytes(b"+OK\r\n");
    }
}
