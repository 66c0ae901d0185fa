//! A request on its way: how often it was redirected or retried (`Attempt`), the record of one
//! sent to a node (`InFlight`), one waiting out a backoff (`Retry`), where one request or part
//! stands (`Step`), and a request served in parts (`Split`). Data only: the session sends
//! (`send.rs`) and settles (`settler.rs`) them.

use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use tokio::time::Instant;

use super::split::Merge;
use super::target::Target;
use crate::backend::{Node, NodeResult, Ticket};
use crate::error::BackendError;
use crate::protocol::{Reply, Request};

/// Redirects and retries so far for one request.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Attempt {
    /// Sent on the session's own connection to the node (blocking commands), not a shared one.
    pub(super) dedicated: bool,
    /// Must not move to another node (WATCH): redirects are answered, not followed.
    pub(super) pinned: bool,
    /// A read-only command: the read policy may send it to a replica, and it is safe to send
    /// again when its connection died before the reply.
    pub(super) read_only: bool,
    /// May change the data of its slot: with `read_your_writes`, the session's reads of that
    /// slot go to the primary for a while.
    pub(super) writes: bool,
    /// A transaction batch (MULTI ... EXEC): how many replies, and whether it was watched.
    pub(super) exec: Option<ExecShape>,
    pub(super) redirects: u32,
    pub(super) retries: u32,
    /// When the first retry began; the retry deadline counts from here.
    pub(super) retry_started: Option<Instant>,
    /// This send was `SCRIPT LOAD` + the request, after a `NOSCRIPT`: the request's reply is
    /// the last of the job's, and a second `NOSCRIPT` goes to the client.
    pub(super) reloaded: bool,
    /// `SCRIPT KILL`/`FUNCTION KILL`: sent on the session's own connection, never queued behind
    /// the running script on a shared one, and even to a primary failing its health checks
    /// (a node stuck in a script answers nothing until `busy-reply-threshold`).
    pub(super) interrupt: bool,
}

/// The shape of a transaction batch, for settling its reply.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExecShape {
    pub(super) replies: usize,
    pub(super) watched: bool,
}

/// A request sent to a node, waiting for its reply.
pub(super) struct InFlight {
    /// Where the node connection puts the reply.
    pub(super) ticket: Ticket,
    /// What was sent, and where.
    pub(super) sent: Routed,
}

impl InFlight {
    /// True for a request on a dedicated connection (a blocking command).
    pub(super) fn is_dedicated(&self) -> bool {
        self.sent.attempt.dedicated
    }

    /// True for a command blocked on its node (BLPOP, XREAD BLOCK...): sent alone on the
    /// session's dedicated connection, neither a transaction, `WATCH`/`WAIT` nor a script kill.
    pub(super) fn is_blocking(&self) -> bool {
        let a = &self.sent.attempt;
        a.dedicated && !a.pinned && !a.interrupt && a.exec.is_none()
    }

    /// The reply if it has arrived, without waiting.
    pub(super) fn try_reply(&mut self) -> Option<NodeResult> {
        match self.ticket.try_take() {
            Poll::Ready(taken) => Some(self.or_dropped(taken)),
            Poll::Pending => None,
        }
    }
}

/// A request waiting out a backoff before it is sent again.
pub(super) struct Retry {
    pub(super) until: Instant,
    pub(super) request: Request,
    pub(super) target: Target,
    pub(super) attempt: Attempt,
}

/// Where one request (or one part of a split request) stands.
pub(super) enum Step {
    /// Sent; waiting for the node.
    Waiting(InFlight),
    /// Waiting out a backoff before it is sent again.
    Backoff(Retry),
    /// Settled: this reply is final.
    Done(Reply),
    /// Not sent until the split's first part has settled, and only if that part ran: the
    /// unwatched slots of a per-slot transaction wait for the watched slot's `EXEC`.
    Held(Request, Target, Attempt),
}

/// What a node's reply settles into (`settler.rs`), for the session to act on
/// (`Sender::follow` in `send.rs`): settling decides, it never sends.
pub(super) enum Settled {
    /// Final: the client's reply.
    Done(Reply),
    /// Send again once a backoff is over.
    Backoff(Retry),
    /// Send again now, to the node a `MOVED`/`ASK` named.
    Redirect(Routed),
    /// Send `SCRIPT LOAD` of this script body and the request again, as one job on the
    /// connection that answered `NOSCRIPT`.
    Reload(Bytes, Routed),
}

/// A request and where it goes (or went): the node, which of its connections, and its
/// redirects and retries so far.
pub(super) struct Routed {
    pub(super) node: Arc<Node>,
    /// On the node's `READONLY` connections (a replica read).
    pub(super) replica_read: bool,
    /// After `ASKING`.
    pub(super) asking: bool,
    pub(super) request: Request,
    pub(super) target: Target,
    pub(super) attempt: Attempt,
}

/// A request served in several parts.
pub(super) struct Split {
    pub(super) merge: Merge,
    pub(super) parts: Vec<Step>,
}

impl Split {
    /// The earliest backoff deadline among the parts, if any part is backing off.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Step::Backoff(retry) => Some(retry.until),
                _ => None,
            })
            .min()
    }

    /// True while some part is still waiting for a node.
    pub(super) fn waiting(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Step::Waiting(_)))
    }
}

impl InFlight {
    pub(super) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<NodeResult> {
        self.ticket.poll(cx).map(|taken| self.or_dropped(taken))
    }

    /// The reply taken from the ticket (`None`: the connection let go of it without one).
    fn or_dropped(&self, taken: Option<NodeResult>) -> NodeResult {
        taken.unwrap_or_else(|| Err(dropped(&self.sent.node)))
    }
}

fn dropped(node: &Node) -> BackendError {
    BackendError::Lost {
        node: node.addr().to_string(),
        reason: "connection task stopped".into(),
    }
}

/// A stand-in while a part's step is taken out to be settled.
pub(super) fn placeholder() -> Reply {
    Reply::local(Bytes::new())
}
