//! What a command family (pub/sub, tracking, the client registry, local answers) hands back to
//! the session: replies it makes itself, placed in the client's reply order ([`Replies`]), or
//! the request to send on to nodes ([`Forward`]), which only the session's pipeline can do.
//!
//! Owns no state: it borrows the session's reply queue and output buffer. It must not know how a
//! request is sent, retried or settled.

use bytes::{Bytes, BytesMut};

use super::output::Output;
use super::plan::Plan;
use super::queue::{Pending, Queue};
use crate::error::ReplyError;
use crate::protocol::Request;

/// The session's reply order and output buffer, borrowed to answer a request locally.
pub(super) struct Replies<'a> {
    pub(super) pending: &'a mut Queue,
    pub(super) out: &'a mut Output,
}

impl Replies<'_> {
    /// Queues a reply built by `build`, written straight out when nothing is ahead of it.
    pub(super) fn with(&mut self, build: impl FnOnce(&mut BytesMut)) {
        if self.pending.is_empty() {
            build(self.out.buf_mut());
        } else {
            let mut buf = BytesMut::new();
            build(&mut buf);
            self.pending.push_back(Pending::Done(buf.freeze()));
        }
    }

    /// Queues a reply already encoded.
    pub(super) fn bytes(&mut self, reply: &[u8]) {
        self.with(|out| out.extend_from_slice(reply));
    }

    /// Queues an error reply slotproxy makes.
    pub(super) fn error(&mut self, error: ReplyError) {
        self.with(|out| error.write(out));
    }

    /// Queues an entry in the reply order (a task, a wait on the inbox, a close).
    pub(super) fn push(&mut self, entry: Pending) {
        self.pending.push_back(entry);
    }

    /// Writes `frame` after every reply still owed (an out-of-band push, not a reply).
    pub(super) fn after_replies(&mut self, frame: Bytes) {
        if self.pending.is_empty() {
            self.out.extend_from_slice(&frame);
        } else {
            self.pending.push_back(Pending::Done(frame));
        }
    }
}

/// A request a command family did not answer itself: the session sends it as `plan` says.
pub(super) struct Forward(pub(super) Request, pub(super) Plan);
