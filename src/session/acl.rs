//! Who this client is and what it may do: authentication (`AUTH`, `HELLO AUTH`), the one
//! permission check every request passes before it is planned, and protected mode.
//!
//! The session holds its user as an `Arc<User>` and the generation of the user set it read it
//! from; the check reloads the user only when `Shared::users_generation` moved (one atomic load
//! per request otherwise). Replies and their order are redis-server 7.0's: unknown command and
//! arity errors first (`plan.rs`), then `-NOAUTH`, then `-NOPERM`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{info, warn};

use super::queue::Pending;
use super::{Session, Shared};
use crate::auth::log::{Entry, Reason};
use crate::auth::{Denied, User, check};
use crate::command::{CommandSpec, Flags};
use crate::error::ReplyError;
use crate::protocol::Request;

impl Shared {
    /// Whether a client from `peer` must be refused under protected mode: it is enabled, the
    /// proxy listens beyond loopback (`local`), no password or user is configured, and the
    /// client is not on loopback.
    pub fn protected_mode_refuses(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        self.config.auth.protected_mode
            && !local.ip().is_loopback()
            && !peer.ip().is_loopback()
            && self.acl.users.load().open()
    }
}

impl Session {
    /// The session's starting identity: the default user, authenticated if it needs no password.
    pub(super) fn initial_user(shared: &Shared) -> (Arc<User>, bool, u64) {
        let generation = shared.acl.generation.load(Ordering::Acquire);
        let users = shared.acl.users.load();
        let default = users.default_user().clone();
        let authenticated = !default.requires_auth();
        (default, authenticated, generation)
    }

    /// The one check before a request is planned: `-NOAUTH` before authentication, `-NOPERM`
    /// for what the user may not run or touch. Returns `false` when it queued the refusal.
    pub(super) fn acl_allows(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        if !self.authenticated && !spec.flags.contains(Flags::NO_AUTH) {
            self.transaction.flag_error();
            self.reply_error(ReplyError::NoAuth);
            return false;
        }
        if self.shared.acl.generation.load(Ordering::Acquire) != self.user_generation
            && !self.refresh_user()
        {
            return false;
        }
        match check(&self.user, spec, request.args(), &mut self.acl_keys) {
            Ok(()) => true,
            Err(denied) => {
                let (reason, object) = match denied {
                    Denied::Command => (Reason::Command, spec.name.as_bytes().to_vec()),
                    Denied::Key(i) => (Reason::Key, request.args()[i].to_vec()),
                    Denied::Channel(i) => (Reason::Channel, request.args()[i].to_vec()),
                };
                let username = self.user.name.as_bytes().to_vec();
                self.log_refusal(reason, object, username, spec.name);
                self.transaction.flag_error();
                self.reply_error(denied.noperm(spec));
                false
            }
        }
    }

    /// Re-reads this session's user after the users changed; a deleted user's client is
    /// closed, as redis-server does. Returns `false` when the session is closing.
    fn refresh_user(&mut self) -> bool {
        self.user_generation = self.shared.acl.generation.load(Ordering::Acquire);
        let users = self.shared.acl.users.load();
        match users.get(self.user.name.as_bytes()) {
            Some(user) => {
                self.user = user.clone();
                true
            }
            None => {
                info!(client = self.id, "client's user was deleted; closing");
                self.pending.push_back(Pending::Close(Bytes::new()));
                self.stop_reading = true;
                false
            }
        }
    }

    /// `AUTH [user] password` and `HELLO ... AUTH user password`: on success the client becomes
    /// `user`. A failure is counted, logged (rate-limited) and leaves the client as it was.
    pub(super) fn authenticate(&mut self, user: &[u8], password: &[u8]) -> bool {
        let generation = self.shared.acl.generation.load(Ordering::Acquire);
        let users = self.shared.acl.users.load();
        match users.get(user) {
            Some(found) if found.authenticates(password) => {
                self.user = found.clone();
                self.user_generation = generation;
                self.authenticated = true;
                true
            }
            _ => {
                let failures = self.shared.auth_failures.fetch_add(1, Ordering::Relaxed) + 1;
                self.log_refusal(Reason::Auth, b"AUTH".to_vec(), user.to_vec(), "auth");
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let last = self
                    .shared
                    .acl
                    .last_failure_log
                    .swap(now, Ordering::Relaxed);
                if last != now {
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
            at_ms: now_ms(),
            client_info: self.client_line(command).trim_end().to_owned(),
        };
        self.shared
            .acl
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(entry);
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

    /// `RESET`: back to the default user, authenticated only if it needs no password.
    pub(super) fn reset_user(&mut self) {
        let (user, authenticated, generation) = Session::initial_user(&self.shared);
        self.user = user;
        self.authenticated = authenticated;
        self.user_generation = generation;
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
