//! A client's access, checked: the permission check every request passes before it is planned
//! ([`Login::check`]), `AUTH` and the authentication `HELLO ... AUTH` does, and the `ACL LOG`
//! entries of their refusals. [`Login`] decides; this file turns its refusals into redis-server
//! 7.0's replies, and counts, records and logs failed authentications.
//!
//! [`AccessControl`] borrows the session's login and what an `ACL LOG` entry shows of the client; it
//! knows nothing of how a request is sent.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{info, warn};

use super::acl::{self, Login, Refusal};
use super::client_info::ClientInfo;
use super::replies::Replies;
use super::seat::Seat;
use super::shared::Shared;
use super::transaction_state::Transaction;
use crate::auth::log::{Entry, Reason};
use crate::command::CommandSpec;
use crate::error::ReplyError;
use crate::protocol::Request;

/// What a refused request means for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Check {
    /// It is refused with this error (the session queues it, see `Session::reject`).
    Refused(ReplyError),
    /// The client's user was deleted: the client closes after the replies queued so far.
    Close,
}

/// A session's login and what refusals record of it, borrowed for one request.
pub(super) struct AccessControl<'a> {
    /// The client id.
    pub(super) id: u64,
    pub(super) shared: &'a Shared,
    /// The ACL user this client runs as, and whether it authenticated.
    pub(super) login: &'a mut Login,
    /// The client's address, for the log of failed authentications.
    pub(super) info: &'a ClientInfo,
    /// The client's registry entry, for `ACL LOG`'s `client-info`.
    pub(super) seat: &'a Option<Seat>,
    /// Inside `MULTI`, `ACL LOG` says `multi`.
    pub(super) transaction: &'a Transaction,
    pub(super) replies: Replies<'a>,
}

impl AccessControl<'_> {
    /// What a refusal of the permission check ([`acl::Login::check`]) means for the client:
    /// redis' error (`-NOAUTH`, `-NOPERM`), or to close the client of a deleted user; records
    /// it in `ACL LOG`. The session runs the check itself and borrows this
    /// only for a refusal, so an allowed request builds nothing.
    pub(super) fn refused(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
        refusal: Refusal,
    ) -> Check {
        if let Some((reason, object)) = refusal.log_entry(spec, request.args()) {
            let username = self.login.user.name.as_bytes().to_vec();
            self.log_refusal(reason, object, username, spec.name);
        }
        match refusal {
            Refusal::UserDeleted => {
                info!(client = self.id, "client's user was deleted; closing");
                Check::Close
            }
            Refusal::NoAuth => Check::Refused(ReplyError::NoAuth),
            Refusal::Denied(denied) => Check::Refused(denied.noperm(spec)),
        }
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

    /// `AUTH`.
    pub(super) fn auth(&mut self, args: &[Bytes]) {
        let (user, password) = match args.len() {
            2 => (&b"default"[..], &args[1]),
            3 => (&args[1][..], &args[2]),
            _ => return self.replies.error(ReplyError::Syntax),
        };
        if args.len() == 2 && !self.shared.acl.users.load().default_user().requires_auth() {
            return self.replies.error(ReplyError::AuthWithoutPassword);
        }
        if self.authenticate(user, password) {
            self.replies
                .with(|out| crate::protocol::reply::write_simple(out, "OK"));
        } else {
            self.replies.error(ReplyError::WrongPass);
        }
    }
}
