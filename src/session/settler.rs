//! What a node's answer to one request means: a final reply for the client, or the next step:
//! follow `MOVED` (refreshing the map) or `ASK`, back off and retry on `TRYAGAIN`/`CLUSTERDOWN`
//! and on unreachable nodes until the retry deadline, reload a script the node lost
//! (`NOSCRIPT`), and tell a write whose connection died after it was sent from one that is safe
//! to resend. [`Settler`] decides from the request's attempt and the proxy's settings alone; it
//! never sends (`send.rs` acts on what it says) and knows nothing of the reply queue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::debug;

use super::attempt::{Attempt, InFlight, Retry, Routed, Settled};
use super::shared::Shared;
use super::target::Target;
use crate::backend::{Node, NodeResult};
use crate::error::BackendError;
use crate::error::ReplyError;
use crate::protocol::reply::null_array;
use crate::protocol::{Protocol, Redirect, RedirectKind, Reply, ReplyKind, Request};

const FIRST_BACKOFF: Duration = Duration::from_millis(10);

const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// What a node's answer to one request means, from the request's attempt and the proxy's
/// settings alone: a final reply, a redirect to follow, a script to reload, or a retry later.
pub(super) struct Settler<'a> {
    /// The client id, for the logs.
    pub(super) id: u64,
    /// The client's protocol (EXEC's nil).
    pub(super) protocol: Protocol,
    pub(super) shared: &'a Shared,
}

impl Settler<'_> {
    /// Turns a node's answer into a final reply, a redirect, or a retry.
    pub(super) fn settle_reply(&self, in_flight: InFlight, result: NodeResult) -> Settled {
        let Routed {
            node,
            replica_read,
            asking,
            request,
            target,
            mut attempt,
        } = in_flight.sent;
        let max_redirects = self.shared.live.load().session.max_redirects;
        // A reload's job also answered SCRIPT LOAD (and ASKING): the request's reply is last.
        let reloaded = std::mem::take(&mut attempt.reloaded);
        let result = match result {
            Ok(reply) if reloaded => Ok(last_frame(reply)),
            other => other,
        };
        match result {
            Ok(reply) if attempt.exec.is_some() => {
                self.settle_exec(reply, request, target, attempt)
            }
            Ok(reply)
                if attempt.pinned
                    && matches!(reply.kind(), ReplyKind::Moved(_) | ReplyKind::Ask(_)) =>
            {
                self.shared.topology.request_refresh();
                Settled::Done(Reply::local(ReplyError::WatchedSlotMoving.to_bytes()))
            }
            Ok(reply) => match reply.kind() {
                ReplyKind::Moved(redirect) | ReplyKind::Ask(redirect)
                    if attempt.redirects >= max_redirects =>
                {
                    debug!(client = self.id, ?redirect, "too many redirects");
                    let error = ReplyError::TooManyRedirects {
                        max: max_redirects,
                        last: String::from_utf8_lossy(reply.error_text().unwrap_or_default())
                            .into_owned(),
                    };
                    Settled::Done(Reply::local(error.to_bytes()))
                }
                ReplyKind::Moved(redirect) | ReplyKind::Ask(redirect) => {
                    let asking = redirect.kind == RedirectKind::Ask;
                    if asking {
                        // A one-off: the slot is migrating. The map stays as it is.
                        self.shared.metrics.redirects_ask.inc();
                    } else {
                        // The map is stale: refresh it, and serve this request from the named
                        // node now.
                        self.shared.topology.request_refresh();
                        self.shared.metrics.redirects_moved.inc();
                    }
                    attempt.redirects += 1;
                    Settled::Redirect(Routed {
                        node: self.redirect_node(&node, redirect),
                        replica_read: false,
                        asking,
                        request,
                        target,
                        attempt,
                    })
                }
                ReplyKind::TryAgain | ReplyKind::ClusterDown => {
                    self.backoff(request, target, attempt, reply.into_raw())
                }
                // The node lost the script (restart, failover, resharding): load it there and
                // run the request again, once. Unknown scripts get NOSCRIPT, as from redis.
                ReplyKind::NoScript if !reloaded => match self.script_body(&request) {
                    Some(body) => {
                        debug!(
                            client = self.id,
                            node = node.addr(),
                            "NOSCRIPT; loading the script"
                        );
                        let again = Routed {
                            node,
                            replica_read,
                            asking,
                            request,
                            target,
                            attempt,
                        };
                        Settled::Reload(body, again)
                    }
                    None => Settled::Done(reply),
                },
                ReplyKind::Value | ReplyKind::Error | ReplyKind::Push | ReplyKind::NoScript => {
                    Settled::Done(reply)
                }
            },
            // Retrying can't help until the password matches again: say so at once.
            Err(e @ BackendError::Auth { .. }) => {
                Settled::Done(Reply::local(ReplyError::NodeAuth(e).to_bytes()))
            }
            // Not sent: the node is up but behind. The map is fine; try again a little later.
            Err(e @ BackendError::Busy { .. }) => {
                let error = ReplyError::NodeBusy(e).to_bytes();
                self.backoff(request, target, attempt, error)
            }
            Err(e) if e.is_retry_safe() => {
                self.shared.topology.request_refresh();
                let error = ReplyError::NodeUnreachable(e).to_bytes();
                self.backoff(request, target, attempt, error)
            }
            Err(e) if attempt.read_only => {
                // Written but unanswered: a read can simply be asked again.
                self.shared.topology.request_refresh();
                let error = ReplyError::NodeUnreachable(e).to_bytes();
                self.backoff(request, target, attempt, error)
            }
            Err(e) => {
                self.shared.topology.request_refresh();
                Settled::Done(Reply::local(ReplyError::Lost(e).to_bytes()))
            }
        }
    }

    /// Settles a transaction batch: the client gets EXEC's reply. If a queued command was
    /// redirected (the slot moved), the node aborted the transaction without running any of
    /// it: retried under the new map, or, when it was watched, answered nil like a failed WATCH.
    fn settle_exec(
        &self,
        reply: Reply,
        request: Request,
        target: Target,
        attempt: Attempt,
    ) -> Settled {
        let frames: Vec<&[u8]> = crate::protocol::view::frames(reply.raw()).collect();
        let moved = frames.iter().rev().skip(1).any(|frame| {
            matches!(
                Reply::local(Bytes::copy_from_slice(frame)).kind(),
                ReplyKind::Moved(_)
                    | ReplyKind::Ask(_)
                    | ReplyKind::TryAgain
                    | ReplyKind::ClusterDown
            )
        });
        let Some(&last) = frames.last() else {
            return Settled::Done(reply);
        };
        if !moved {
            let reply = abort_reason(&frames).map_or_else(
                || Bytes::copy_from_slice(last),
                |reason| ReplyError::ExecAbortBecause(reason).to_bytes(),
            );
            return Settled::Done(Reply::local(reply));
        }
        let last = Bytes::copy_from_slice(last);
        self.shared.topology.request_refresh();
        if attempt.exec.is_some_and(|e| e.watched) {
            return Settled::Done(Reply::local(null_array(self.protocol)));
        }
        self.backoff(request, target, attempt, last)
    }

    /// Schedules a retry, or gives up with `last_error` once the retry deadline has passed.
    pub(super) fn backoff(
        &self,
        request: Request,
        target: Target,
        mut attempt: Attempt,
        last_error: Bytes,
    ) -> Settled {
        let now = Instant::now();
        let started = *attempt.retry_started.get_or_insert(now);
        if now.duration_since(started) >= self.shared.live.load().session.retry_deadline()
            || self.shared.topology.stats().down_reason().is_some()
        {
            return Settled::Done(Reply::local(last_error));
        }
        self.shared.metrics.retries.inc();
        let delay = (FIRST_BACKOFF * 2u32.saturating_pow(attempt.retries.min(8))).min(MAX_BACKOFF);
        attempt.retries += 1;
        Settled::Backoff(Retry {
            until: now + delay,
            request,
            target,
            attempt,
        })
    }

    /// The node a redirect names; `:port` (a node that doesn't know its IP) takes the host of
    /// the node that sent it.
    fn redirect_node(&self, from: &Node, redirect: &Redirect) -> Arc<Node> {
        let pool = self.shared.topology.pool();
        match redirect.addr.strip_prefix(':') {
            Some(port) => {
                let host = from.addr().rsplit_once(':').map_or(from.addr(), |(h, _)| h);
                pool.node(&format!("{host}:{port}"))
            }
            None => pool.node(&redirect.addr),
        }
    }

    /// The cached body of the script an `EVALSHA`/`EVALSHA_RO` names, to load it on a node
    /// that answered `NOSCRIPT`.
    fn script_body(&self, request: &Request) -> Option<Bytes> {
        let name = request.name();
        if !(name.eq_ignore_ascii_case(b"evalsha") || name.eq_ignore_ascii_case(b"evalsha_ro")) {
            return None;
        }
        self.shared.scripts.body(request.args().get(1)?)
    }
}

/// When a transaction job's `EXEC` answered `-EXECABORT` because the node refused a queued
/// command (`-OOM`, `-MISCONF`, `-READONLY`... at queue time), that refusal's text: the client
/// was told `+QUEUED` by slotproxy, so the reason must come with the abort.
fn abort_reason(frames: &[&[u8]]) -> Option<String> {
    let (last, before) = frames.split_last()?;
    if !last.starts_with(b"-EXECABORT") {
        return None;
    }
    before.iter().find_map(|frame| {
        let reply = Reply::local(Bytes::copy_from_slice(frame));
        let text = reply.error_text()?;
        Some(String::from_utf8_lossy(text).into_owned())
    })
}

/// The last of the replies a multi-reply job delivered together.
fn last_frame(reply: Reply) -> Reply {
    match crate::protocol::view::frames(reply.raw()).last() {
        Some(last) => Reply::local(reply.raw().slice_ref(last)),
        None => reply,
    }
}
