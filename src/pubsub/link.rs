//! A hub link: one RESP3 connection to one node, on which the hub holds subscriptions shared by
//! many clients, and sends the few commands whose answer must agree with them (PUBLISH, PUBSUB
//! NUMSUB...).
//!
//! One task owns the socket. It hands every push frame (messages, confirmations) to the hub, in
//! order, through a bounded channel: a hub that falls behind slows the reading of this socket
//! rather than growing a queue. Other replies are matched FIFO to the commands that expect them.
//! A subscribe-family command is answered by pushes when it succeeds and by one error when it
//! fails, so the link sends a `PING` after each: an error before the PONG is that command's.
//! An idle link sends a `PING` every second; a reply overdue by `request_timeout` ends the link,
//! like a closed socket does. The task ends when the hub drops the `Link` (after answering what
//! is in flight), or on the first failure, which it reports as `Down`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::debug;

use super::Kind;
use crate::backend::NodeResult;
use crate::backend::setup::{self, Handshake};
use crate::backend::stream::NodeWriter;
use crate::config::BackendConfig;
use crate::error::BackendError;
use crate::protocol::{Protocol, Reply, ReplyDecoder, ReplyKind};

/// Identifies one link for the life of the hub (a reconnect is a new link).
pub type LinkId = u64;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PING_INTERVAL: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 16 * 1024;

/// The channels of one subscribe-family command.
#[derive(Debug)]
pub struct Batch {
    /// Their kind.
    pub kind: Kind,
    /// Subscribe (or unsubscribe).
    pub subscribe: bool,
    /// The channels (or patterns) named.
    pub channels: Vec<Bytes>,
}

/// Where the one reply of a command goes.
#[derive(Debug)]
pub struct ReplyTo {
    /// Whoever waits for it.
    pub tx: oneshot::Sender<NodeResult>,
    /// A `PUBLISH` of this session: its later subscription changes wait for the reply, so they
    /// come after the message it may deliver to the session itself.
    pub session: Option<u64>,
}

/// What a command sent on a link expects back.
#[derive(Debug)]
pub enum Expect {
    /// A subscribe-family command: one push per channel, or one error.
    Subscribe(Batch),
    /// Exactly one reply, for whoever waits on it.
    Reply(ReplyTo),
}

/// What a link tells the hub.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected and set up.
    Up,
    /// A push frame (RESP3).
    Push(Bytes),
    /// The reply to an `Expect::Reply` command, for the hub to hand over after the pushes that
    /// came before it (a client publishing to a channel it is subscribed to gets the message
    /// before the count, as from redis-server).
    Reply(ReplyTo, Reply),
    /// A subscribe-family command failed (MOVED, CLUSTERDOWN...) for all of its channels.
    Refused {
        /// The command.
        batch: Batch,
        /// The node's error.
        error: Reply,
    },
    /// The link is gone (connect failed, socket closed, reply overdue); it sends nothing more.
    Down(String),
}

/// A link's event, tagged with the link.
#[derive(Debug)]
pub struct Event {
    /// Which link.
    pub link: LinkId,
    /// What happened.
    pub what: LinkEvent,
}

/// The hub's handle on a link task; dropping it closes the link once its replies are in.
#[derive(Debug)]
pub struct Link {
    /// The node, `host:port`.
    pub addr: Arc<str>,
    commands: mpsc::UnboundedSender<(Bytes, Expect)>,
}

impl Link {
    /// Starts a link to `addr`; it connects at once and reports to `events`.
    pub fn spawn(
        id: LinkId,
        addr: Arc<str>,
        config: &BackendConfig,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(id, addr.clone(), config.clone(), rx, events));
        Self { addr, commands }
    }

    /// Queues `payload` (one command) and what it expects back.
    pub fn send(&self, payload: Bytes, expect: Expect) {
        // The task is gone; its Down event is on its way. A waiter learns it was not sent.
        if let Err(mpsc::error::SendError((_, Expect::Reply(to)))) =
            self.commands.send((payload, expect))
        {
            let _ = to.tx.send(Err(not_sent(&self.addr, "hub link closed")));
        }
    }
}

fn not_sent(addr: &str, reason: &str) -> BackendError {
    BackendError::NotSent {
        node: addr.to_string(),
        reason: reason.to_string(),
    }
}

/// A command waiting for its reply.
struct Waiting {
    what: Waiter,
    sent_at: Instant,
    /// Where the command starts in the stream of bytes written to the socket.
    offset: u64,
}

enum Waiter {
    Subscribe(Batch),
    Reply(ReplyTo),
    Pong,
}

async fn run(
    id: LinkId,
    addr: Arc<str>,
    config: BackendConfig,
    mut commands: mpsc::UnboundedReceiver<(Bytes, Expect)>,
    events: mpsc::Sender<Event>,
) {
    let event = |what| Event { link: id, what };
    let stream = match setup::open(&addr, &config, Handshake::RESP3).await {
        Ok(stream) => stream,
        Err(error) => {
            debug!(node = %addr, link = id, %error, "hub link connect failed");
            commands.close();
            while let Ok((_, expect)) = commands.try_recv() {
                if let Expect::Reply(to) = expect {
                    let _ = to.tx.send(Err(error.clone()));
                }
            }
            let _ = events.send(event(LinkEvent::Down(error.to_string()))).await;
            return;
        }
    };
    if events.send(event(LinkEvent::Up)).await.is_err() {
        return;
    }
    debug!(node = %addr, link = id, "hub link up");
    let (mut reader, mut writer) = stream.into_split();
    // Bytes TLS may still hold after a write (never on plain TCP).
    let mut unflushed = false;
    let decoder = ReplyDecoder::new(Protocol::Resp3);
    let timeout = config.request_timeout();
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::new();
    // Bytes queued for the socket so far, and bytes actually written.
    let (mut queued, mut written) = (0u64, 0u64);
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut hub_gone = false;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut enqueue =
        |wbuf: &mut BytesMut, waiting: &mut VecDeque<Waiting>, payload: &[u8], what: Waiter| {
            waiting.push_back(Waiting {
                what,
                sent_at: Instant::now(),
                offset: queued,
            });
            wbuf.extend_from_slice(payload);
            queued += payload.len() as u64;
        };
    let failure = loop {
        if hub_gone && waiting.is_empty() && wbuf.is_empty() {
            debug!(node = %addr, link = id, "hub link closed: no longer needed");
            return;
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = reader.read_buf(&mut rbuf) => match read {
                Ok(0) => break "closed by the node".to_string(),
                Ok(_) => loop {
                    let reply = match decoder.decode(&mut rbuf) {
                        Ok(Some(reply)) => reply,
                        Ok(None) => break,
                        Err(e) => return fail(id, &addr, &events, waiting, written, e.to_string()).await,
                    };
                    if *reply.kind() == ReplyKind::Push {
                        if events.send(event(LinkEvent::Push(reply.into_raw()))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    if let Err(reason) = settle(reply, &mut waiting, id, &events).await {
                        return fail(id, &addr, &events, waiting, written, reason).await;
                    }
                },
                Err(e) => break format!("read: {e}"),
            },
            command = commands.recv(), if !hub_gone => match command {
                Some((payload, Expect::Subscribe(batch))) => {
                    enqueue(&mut wbuf, &mut waiting, &payload, Waiter::Subscribe(batch));
                    enqueue(&mut wbuf, &mut waiting, PING, Waiter::Pong);
                }
                Some((payload, Expect::Reply(to))) => {
                    enqueue(&mut wbuf, &mut waiting, &payload, Waiter::Reply(to));
                }
                None => hub_gone = true,
            },
            sent = write_some(&mut writer, &wbuf), if !wbuf.is_empty() || unflushed => match sent {
                // Nothing was left to write: what TLS buffered went out.
                Ok(0) => unflushed = false,
                Ok(n) => {
                    wbuf.advance(n);
                    written += n as u64;
                    unflushed = writer.buffers();
                }
                Err(e) => break format!("write: {e}"),
            },
            _ = ping.tick() => {
                if waiting.front().is_some_and(|w| w.sent_at.elapsed() >= timeout) {
                    break format!("no reply within {} ms", timeout.as_millis());
                }
                if waiting.is_empty() && !hub_gone {
                    enqueue(&mut wbuf, &mut waiting, PING, Waiter::Pong);
                }
            },
        }
    };
    fail(id, &addr, &events, waiting, written, failure).await;
}

/// Writes some of `buf`, or, when it is empty, flushes what the stream buffers; how many bytes
/// of `buf` were taken (0 after a flush). Cancel safe: nothing is taken unless it returns.
async fn write_some(writer: &mut NodeWriter, buf: &[u8]) -> std::io::Result<usize> {
    if buf.is_empty() {
        writer.flush().await?;
        return Ok(0);
    }
    match writer.write(buf).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        n => Ok(n),
    }
}

/// Hands a non-push reply to the command waiting for it.
async fn settle(
    reply: Reply,
    waiting: &mut VecDeque<Waiting>,
    id: LinkId,
    events: &mpsc::Sender<Event>,
) -> Result<(), String> {
    loop {
        let Some(front) = waiting.pop_front() else {
            return Err("reply with no command waiting".into());
        };
        match front.what {
            Waiter::Subscribe(batch) if reply.error_text().is_some() => {
                let what = LinkEvent::Refused {
                    batch,
                    error: reply,
                };
                let _ = events.send(Event { link: id, what }).await;
                return Ok(());
            }
            // It succeeded (its pushes came); this reply is the next command's.
            Waiter::Subscribe(..) => continue,
            Waiter::Reply(to) => {
                let what = LinkEvent::Reply(to, reply);
                let _ = events.send(Event { link: id, what }).await;
                return Ok(());
            }
            Waiter::Pong => return Ok(()),
        }
    }
}

/// Fails what is in flight (not sent, or outcome unknown) and reports the link down.
async fn fail(
    id: LinkId,
    addr: &str,
    events: &mpsc::Sender<Event>,
    waiting: VecDeque<Waiting>,
    written: u64,
    reason: String,
) {
    debug!(node = %addr, link = id, %reason, "hub link down");
    for w in waiting {
        if let Waiter::Reply(ReplyTo { tx, .. }) = w.what {
            let error = if w.offset < written {
                BackendError::Lost {
                    node: addr.to_string(),
                    reason: reason.clone(),
                }
            } else {
                not_sent(addr, &reason)
            };
            let _ = tx.send(Err(error));
        }
    }
    let _ = events
        .send(Event {
            link: id,
            what: LinkEvent::Down(reason),
        })
        .await;
}
