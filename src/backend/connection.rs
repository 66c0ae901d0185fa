//! One shared, pipelined connection to one node, owned by one task.
//!
//! Sessions hand the task `Job`s through its [`Lane`](super::Lane), a queue with a bound. The
//! task connects lazily on the first job, writes every queued job as one batch (many clients'
//! requests leave together; `outbox.rs`), and matches replies to jobs in FIFO order, putting
//! each in the job's reply slot (a session's [`Mailbox`](super::Mailbox)). It takes
//! the next batch only once the node has taken the last, and reads replies and watches the
//! request timeout while a batch is still being written. When the socket dies, only the jobs
//! already written fail (`Lost`/`Timeout`); a batch the socket took none of fails as `NotSent`
//! (whatever ended the connection), and jobs still queued go out on the next connection. While a
//! node can't be reached, jobs fail at once with `NotSent` (safe to retry elsewhere) until the
//! reconnect backoff has passed; a connection that failed is also followed by the shortest
//! backoff before the next connect.
//!
//! A dedicated connection (`Use::Dedicated`) serves one session, for commands that block the
//! connection (BLPOP...): it has no request timeout, and it closes as soon as its session drops
//! its lane, which is how redis-server learns that a blocked client went away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use super::ack::{Hold, Replication};
use super::lane::Queue;
use super::mailbox::ReplyTo;
use super::node_health::NodeHealth;
use super::outbox::Outbox;
use super::setup::{self, FailureLog, Handshake};
use super::stats::NodeStats;
use super::stream::NodeStream;
use crate::config::BackendConfig;
use crate::error::BackendError;
use crate::protocol::{Decoded, Protocol, Reply, ReplyDecoder, ReplyKind};

/// What a job's sender receives: the node's reply, or why there is none.
pub type NodeResult = Result<Reply, BackendError>;

/// One request for a node connection: the bytes, and how its replies come back.
#[derive(Debug)]
pub struct Outgoing {
    /// RESP bytes to write (one command, or a transaction's commands).
    pub payload: Bytes,
    /// Send `ASKING` first and drop its `+OK` (after an ASK redirect).
    pub asking: bool,
    /// How many replies the payload produces (a transaction: MULTI, N commands, EXEC); they are
    /// delivered together, concatenated, as one `Reply`.
    pub replies: usize,
    /// The command may change data: with `ack = replicated`, its reply waits for a replica.
    pub write: bool,
}

impl Outgoing {
    /// One command with one reply, read-only, charged to nobody.
    pub fn new(payload: Bytes) -> Self {
        Self {
            payload,
            asking: false,
            replies: 1,
            write: false,
        }
    }
}

/// One request queued for the connection task, with where its reply goes.
#[derive(Debug)]
pub struct Job {
    /// What to send.
    pub request: Outgoing,
    /// Where the reply goes; a receiver that is gone is fine (the client left), and a job whose
    /// receiver is gone before it is written is never sent.
    pub reply: ReplyTo,
}

struct Written {
    /// Where the reply goes; `None` for the `WAIT` the connection adds itself.
    reply: Option<ReplyTo>,
    /// What `ack = replicated` does with the reply.
    hold: Hold,
    /// An `ASKING` reply comes before this job's reply.
    asking: bool,
    /// Replies still to come for this job.
    remaining: usize,
    /// Replies so far, for a job that expects several.
    collected: Option<BytesMut>,
    sent_at: Instant,
}

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// How a node's error reply to bytes it could not parse starts; it closes the connection next.
const PROTOCOL_ERROR: &[u8] = b"ERR Protocol error";

const READ_CHUNK: usize = 16 * 1024;
const MAX_BATCH: usize = 512;

/// Whom a connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Shared by many sessions; requests time out after `request_timeout`.
    Shared,
    /// One session's, for blocking commands; no timeout, closed when the session lets go.
    Dedicated,
}

/// Why `serve` returned.
enum End {
    /// Every sender is gone: the node left the pool.
    Closed,
    /// The socket failed; reconnect for the jobs still queued.
    Failed,
}

/// One node as its connections see it: shared by all of the node's connection tasks.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The node's `host:port`.
    pub(crate) addr: Arc<str>,
    /// Notified whenever a connect or an established connection fails, so the topology can be
    /// refreshed at once.
    pub(crate) failed: Arc<Notify>,
    /// The node's health: its online replicas (for `ack = replicated`), and whether it still
    /// answers health checks (a request overdue on a node that does is slow work, not a stall).
    pub(crate) health: Arc<NodeHealth>,
    /// The node's counters for `/metrics`.
    pub(crate) stats: Arc<NodeStats>,
    /// Rate limit of connect-failure warnings.
    pub(crate) failures: Arc<FailureLog>,
}

/// What kind of connection one task keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) protocol: Protocol,
    pub(crate) usage: Use,
    /// It sent `READONLY` (replica reads).
    pub(crate) replica_read: bool,
}

/// Runs one connection until every `Job` sender is dropped.
pub(crate) async fn run(node: Endpoint, shape: Shape, config: BackendConfig, mut jobs: Queue) {
    let Endpoint {
        addr,
        failed,
        stats,
        failures,
        ..
    } = &node;
    let Shape {
        protocol,
        replica_read,
        ..
    } = shape;
    let mut backoff = config.reconnect_backoff_min();
    let mut down_until: Option<Instant> = None;
    let mut last_error: Option<BackendError> = None;
    loop {
        let Some(first) = jobs.recv().await else {
            debug!(node = %addr, "connection task ends: node left the pool");
            return;
        };
        if down_until.is_some_and(|t| Instant::now() < t) {
            let error = last_error.clone().unwrap_or_else(|| BackendError::NotSent {
                node: addr.to_string(),
                reason: "reconnect backoff after a failed connection".into(),
            });
            fail_queued(first, &mut jobs, &error);
            continue;
        }
        let handshake = Handshake {
            protocol,
            replica_read,
            ping: false,
        };
        match setup::open(addr, &config, handshake).await {
            Ok(stream) => {
                debug!(node = %addr, ?protocol, "connected");
                backoff = config.reconnect_backoff_min();
                last_error = None;
                stats.connection(true);
                let end = serve(stream, first, &mut jobs, (&node, shape), &config).await;
                stats.connection(false);
                match end {
                    End::Closed => return,
                    End::Failed => {
                        stats.failed();
                        failed.notify_one();
                        // Don't reconnect at once: a node being killed still completes
                        // connections in its listen backlog for a few milliseconds, and a
                        // request written there is lost with an unknown outcome. Jobs in the
                        // meantime fail as never sent, which sessions retry.
                        down_until = Some(Instant::now() + config.reconnect_backoff_min());
                    }
                }
            }
            Err(error) => {
                // Every connection of the node fails alike (a rotated password): one line per
                // node per longest backoff is enough for the operator.
                if failures.should_log(config.reconnect_backoff_max()) {
                    warn!(node = %addr, %error, retry_in_ms = backoff.as_millis() as u64, "connect failed");
                } else {
                    debug!(node = %addr, %error, "connect failed");
                }
                stats.failed();
                failed.notify_one();
                fail_queued(first, &mut jobs, &error);
                // Jobs queued during the backoff learn the same reason (an auth failure stays
                // one, so clients see which node refused the credentials).
                last_error = Some(error);
                down_until = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(config.reconnect_backoff_max());
            }
        }
    }
}

/// Fails `first` and every job queued behind it with `error` (never sent).
fn fail_queued(first: Job, jobs: &mut Queue, error: &BackendError) {
    first.reply.send(Err(error.clone()));
    while let Some(job) = jobs.try_recv() {
        job.reply.send(Err(error.clone()));
    }
}

/// Pipelines jobs over one established connection until it fails or the pool drops it.
async fn serve(
    stream: NodeStream,
    first: Job,
    jobs: &mut Queue,
    (node, shape): (&Endpoint, Shape),
    config: &BackendConfig,
) -> End {
    let Endpoint {
        addr,
        health,
        stats,
        ..
    } = node;
    let Shape {
        protocol,
        usage,
        replica_read,
    } = shape;
    let (mut reader, mut writer) = stream.into_split();
    let decoder = ReplyDecoder::new(protocol);
    let timeout = config.request_timeout();
    let mut in_flight: VecDeque<Written> = VecDeque::new();
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut outbox = Outbox::with_capacity(READ_CHUNK);
    // Where the batch being written starts in `in_flight`.
    let mut batch_start = 0;
    let mut batch: VecDeque<Job> = VecDeque::with_capacity(MAX_BATCH);
    let mut senders_gone = false;
    let mut ack = Replication::new(config, usage, replica_read);
    let mut check = tokio::time::interval(timeout.min(Duration::from_millis(250)));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);

    batch.push_back(first);
    let mut reported_in_flight = 0;
    // Bytes the partial reply in `rbuf` still needs at least (from the last scan).
    let mut missing = 0;
    let failure = loop {
        // A new batch is only made once the last one is written (jobs wait in the queue
        // meanwhile: see the `recv_many` branch).
        if !batch.is_empty() && !outbox.is_writing() {
            let now = Instant::now();
            let mut writes = false;
            // A primary without a replica can't confirm anything: its writes are answered
            // NOREPLICAS at once instead of holding the connection in a WAIT that must time out.
            let replicated = health.replicas() > 0;
            batch_start = in_flight.len();
            // Behind a script that keeps the node busy, a request would wait until the script
            // ends; the node's other connections answer `-BUSY` at once, and so does this one.
            let stuck = in_flight
                .front()
                .and_then(|front| health.busy_behind(front.sent_at));
            for job in batch.drain(..) {
                if job.reply.is_closed() {
                    // Its client left (or was disconnected) before we wrote it: never sent.
                    continue;
                }
                if let Some(busy) = &stuck
                    && job.request.replies <= 1
                    && !job.request.asking
                {
                    job.reply.send(Ok(Reply::local(busy.clone())));
                    continue;
                }
                if job.request.asking {
                    outbox.put(ASKING);
                }
                outbox.put_payload(job.request.payload);
                let hold = ack.hold(job.request.write, replicated);
                writes |= hold == Hold::UntilWait;
                in_flight.push_back(Written {
                    reply: Some(job.reply),
                    hold,
                    asking: job.request.asking,
                    remaining: job.request.replies.max(1),
                    collected: None,
                    sent_at: now,
                });
            }
            if let (true, Some(command)) = (writes, ack.wait_command()) {
                // One WAIT per batch, not per write: it covers every write before it.
                outbox.put(command);
                in_flight.push_back(Written {
                    reply: None,
                    hold: Hold::No,
                    asking: false,
                    remaining: 1,
                    collected: None,
                    sent_at: now,
                });
            }
            stats.sent(in_flight.len() - batch_start);
            // Most batches are written whole right here; the rest is written by the select
            // below as the socket takes it.
            if outbox.seal()
                && let Poll::Ready(Err(e)) =
                    std::future::poll_fn(|cx| Poll::Ready(outbox.poll_write(cx, &mut writer))).await
            {
                break Failure::write(&e);
            }
        }
        // A dedicated connection whose session let go closes as soon as nobody waits for its
        // replies (the client left: a blocked command must end on the node now); a session that
        // merely dropped it (UNWATCH right behind a WATCH) still gets the replies in flight.
        let abandoned = usage == Use::Dedicated
            && in_flight
                .iter()
                .all(|f| f.reply.as_ref().is_none_or(|r| r.is_closed()));
        if senders_gone && (in_flight.is_empty() || abandoned) {
            stats.in_flight_moved(reported_in_flight, 0);
            return End::Closed;
        }
        // Once per batch or read, not per request.
        stats.in_flight_moved(reported_in_flight, in_flight.len());
        reported_in_flight = in_flight.len();
        // A large value whose header is in: room for all of it at once, rather than growing
        // (and copying) the buffer a chunk at a time while it arrives.
        if rbuf.capacity() - rbuf.len() < missing.max(READ_CHUNK / 4) {
            rbuf.reserve(missing.max(READ_CHUNK));
        }
        tokio::select! {
            biased;
            written = std::future::poll_fn(|cx| outbox.poll_write(cx, &mut writer)),
                if outbox.is_writing() =>
            {
                if let Err(e) = written {
                    break Failure::write(&e);
                }
            },
            read = reader.read_buf(&mut rbuf) => match read {
                Ok(0) => break Failure::lost("closed by the node".into()),
                Ok(_) => {
                    match deliver(&decoder, &mut rbuf, &mut in_flight, &mut ack, health) {
                        Ok(partial) => missing = partial,
                        Err(failure) => {
                            if let Failure::Unsent(reason) = &failure {
                                error!(node = %addr, %reason, requests_behind = in_flight.len(),
                                    "node refused a request as bad RESP: slotproxy sent a frame \
                                     it must not (a bug); only that request failed, those behind \
                                     it are sent again");
                            }
                            break failure;
                        }
                    }
                }
                Err(e) => break Failure::lost(format!("read: {e}")),
            },
            // Not while a batch is being written: jobs wait in the queue (up to its bound) until
            // the node has taken the last batch.
            n = jobs.recv_many(&mut batch, MAX_BATCH), if !senders_gone && !outbox.is_writing() => {
                if n == 0 {
                    senders_gone = true;
                } else if !in_flight.is_empty() {
                    // Under load (replies still pending), the session that queued this job handed
                    // control straight to us: let the other runnable sessions queue theirs
                    // first, so one write carries many. An idle connection writes at once, which
                    // keeps a lone client's latency low.
                    tokio::task::yield_now().await;
                    jobs.take(&mut batch, MAX_BATCH);
                }
            },
            _ = check.tick(), if !in_flight.is_empty() && (usage == Use::Shared || senders_gone) => {
                // Shared: fail a connection whose oldest request is overdue, unless the node
                // has answered `-BUSY` health checks since it was sent: then it is alive and
                // running a long script or function (which this request may be, or wait
                // behind), and failing the connection would give every request on it an
                // unknown outcome while `SCRIPT KILL` can still end it. A node that answers
                // `PONG` while this request hangs has lost this connection. Dedicated and let
                // go: just wake up to see whether the waiting session has gone since.
                if usage == Use::Shared
                    && in_flight.front().is_some_and(|f| {
                        f.sent_at.elapsed() >= timeout
                            && !(health.is_busy() && health.answered_since(f.sent_at))
                    })
                {
                    break Failure::Timeout;
                }
            },
        }
    };

    stats.in_flight_moved(reported_in_flight, 0);
    // A batch the socket took none of was never seen by the node, whatever ended the connection:
    // its write failed (a connect can succeed into the backlog of a node that is being killed,
    // and the first write then meets the reset), or a node that stopped reading timed out.
    let unsent_from = match &failure {
        Failure::Unsent(_) => Some(0),
        _ if outbox.is_writing() && outbox.taken() == 0 => Some(batch_start),
        _ => None,
    };
    let (error, unsent_reason) = match failure {
        Failure::Unsent(reason) | Failure::Lost(reason) => {
            info!(node = %addr, %reason, in_flight = in_flight.len(), "node connection lost");
            let error = BackendError::Lost {
                node: addr.to_string(),
                reason: reason.clone(),
            };
            (error, reason)
        }
        Failure::Timeout => {
            warn!(node = %addr, in_flight = in_flight.len(), "node did not reply in time; closing its connection");
            let error = BackendError::Timeout {
                node: addr.to_string(),
                timeout_ms: timeout.as_millis() as u64,
            };
            (
                error,
                "the connection timed out before the request was written".into(),
            )
        }
    };
    if let Some(from) = unsent_from {
        let unsent = BackendError::NotSent {
            node: addr.to_string(),
            reason: unsent_reason,
        };
        for reply in in_flight.drain(from..).filter_map(|job| job.reply) {
            reply.send(Err(unsent.clone()));
        }
    }
    for reply in in_flight.drain(..).filter_map(|job| job.reply) {
        reply.send(Err(error.clone()));
    }
    ack.fail(&error);
    if senders_gone {
        End::Closed
    } else {
        End::Failed
    }
}

enum Failure {
    /// The socket failed after requests were written: their outcome is unknown.
    Lost(String),
    /// The node refused a frame as bad RESP and closes the connection: the requests still in
    /// flight behind it were never run.
    Unsent(String),
    Timeout,
}

impl Failure {
    fn lost(reason: String) -> Self {
        Failure::Lost(reason)
    }

    /// A batch's write failed: the node may have taken some of it, so it is lost.
    fn write(e: &std::io::Error) -> Self {
        Failure::Lost(format!("write: {e}"))
    }
}

/// Hands every complete reply in `rbuf` to the oldest job waiting for one; returns how many
/// more bytes the partial reply left in `rbuf` needs at least.
///
/// # Errors
/// The connection can't go on: the node's bytes are not RESP (`Lost`), or the node answered a
/// protocol error (`Unsent` for the jobs still in flight: redis-server closes the
/// connection after that reply and runs nothing it read after the bad frame).
fn deliver(
    decoder: &ReplyDecoder,
    rbuf: &mut BytesMut,
    in_flight: &mut VecDeque<Written>,
    ack: &mut Replication,
    health: &NodeHealth,
) -> Result<usize, Failure> {
    loop {
        let reply = match decoder.next(rbuf) {
            Ok(Decoded::Reply(reply)) => reply,
            Ok(Decoded::Partial { missing }) => return Ok(missing),
            Err(e) => return Err(Failure::lost(e.to_string())),
        };
        if super::probe::has_code(reply.raw(), b"-BUSY") {
            // Learned before the next health check: this connection's neighbours may be stuck
            // behind the script (see `NodeHealth::busy_behind`).
            health.set_answered(Some(reply.raw().clone()));
        }
        if *reply.kind() == ReplyKind::Push {
            continue; // out of band; no job waits for it
        }
        let refused = reply
            .error_text()
            .is_some_and(|text| text.starts_with(PROTOCOL_ERROR));
        let Some(front) = in_flight.front_mut() else {
            return Err(Failure::lost("reply with no request waiting".into()));
        };
        if front.asking {
            // The reply to ASKING itself; the job's own reply is next.
            front.asking = false;
            continue;
        }
        front.remaining -= 1;
        if front.remaining > 0 || front.collected.is_some() {
            front
                .collected
                .get_or_insert_with(BytesMut::new)
                .extend_from_slice(reply.raw());
            if front.remaining > 0 {
                continue;
            }
        }
        let Some(job) = in_flight.pop_front() else {
            continue;
        };
        let reply = match job.collected {
            Some(all) => Reply::local(all.freeze()),
            None => reply,
        };
        match job.reply {
            None => ack.wait_answered(&reply),
            Some(sender) => ack.hand_over(sender, reply, job.hold),
        }
        if refused {
            return Err(Failure::Unsent(
                "the node closed the connection after a protocol error".into(),
            ));
        }
    }
}
