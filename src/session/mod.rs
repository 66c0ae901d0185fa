//! One client connection, end to end: read requests, route them, write replies in request order.
//!
//! Every request becomes one `Pending` entry in a FIFO; replies leave strictly from the front, so
//! a client's pipeline is answered in order whatever order nodes answer in. Only the front entry
//! is awaited; entries behind it are collected without waiting once it is done. Redirects and
//! retries are handled when an entry reaches the front, which keeps per-key order: nothing sent
//! later can overtake an earlier request that is being redirected. When the slot map changes
//! while requests sent under the old map are still unanswered, new requests are held back
//! (`Deferred`) until those are settled, so a write can't be reordered around a resharding.

mod dispatch;
mod introspect;
mod local;
mod pick;
mod pubsub;
mod scan;
mod scripts;
mod split;
mod transaction;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use bytes::Buf;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::Instant;
use tracing::debug;

use crate::cluster::Topology;
use crate::command::CommandTable;
use crate::config::Config;
use crate::protocol::{Protocol, Request, RequestDecoder};

pub use dispatch::Target;
pub use scripts::ScriptCache;
pub use split::{fan_out_merge, split_merge};

/// What every session shares: configuration, topology, the command table, counters.
#[derive(Debug)]
pub struct Shared {
    /// The proxy's configuration.
    pub config: Config,
    /// The slot map and node pool.
    pub topology: Arc<Topology>,
    /// The command table (built-in rows plus commands learned from the cluster).
    pub commands: ArcSwap<CommandTable>,
    /// Connected clients.
    pub clients: AtomicUsize,
    /// Source of client ids (`CLIENT ID`).
    pub next_client_id: AtomicU64,
    /// `redis_version` reported by `HELLO`, from the cluster's nodes.
    pub redis_version: ArcSwap<String>,
    /// Script bodies clients sent, to load them again on a node that answers `NOSCRIPT`.
    pub scripts: ScriptCache,
}

/// A request's place in the reply queue.
enum Pending {
    /// The reply is known; write it when it reaches the front.
    Done(Bytes),
    /// Write this reply, then close the connection (`QUIT`, protocol errors).
    Close(Bytes),
    /// Sent to a node; waiting for its reply.
    Waiting(dispatch::InFlight),
    /// Waiting to be retried after a backoff.
    Backoff(dispatch::Retry),
    /// Sent in parts (split by slot or fanned out); merged when all are done.
    Split(Box<dispatch::Split>),
    /// Not sent yet: the slot map changed while older requests were in flight.
    Deferred(Request, dispatch::Plan),
}

/// Per-client state; `run` drives it.
pub struct Session {
    id: u64,
    shared: Arc<Shared>,
    protocol: Protocol,
    name: Option<Bytes>,
    pending: VecDeque<Pending>,
    out: BytesMut,
    decoder: RequestDecoder,
    /// Slot-map generation the last request was dispatched under.
    dispatch_generation: u64,
    /// Scratch space for key positions, reused across requests.
    key_positions: Vec<usize>,
    /// Stop reading: the client closed its side, sent QUIT, or sent bad input.
    stop_reading: bool,
    /// Close once everything before the `Close` entry is written.
    closing: bool,
    /// Where this session's reads go (the configured policy; READONLY/READWRITE change it).
    read_policy: crate::config::ReadPolicy,
    /// The subscriber connection, once the client has sent a subscribe command.
    subscriber: Option<crate::backend::subscriber::Subscriber>,
    /// Subscriptions the node last confirmed (RESP2 clients with any are in subscribed mode).
    subscriptions: i64,
    /// MULTI/WATCH state.
    tx: transaction::Transaction,
    /// The last request went out on a dedicated connection: hold new ones until it settles.
    barrier: bool,
    /// Connections of this session alone, per node and protocol (blocking commands).
    dedicated: RefCell<Vec<(Arc<crate::backend::Node>, Protocol, crate::backend::Lane)>>,
    /// Addresses and library info for `CLIENT INFO`/`LIST` and the cluster replies.
    info: introspect::ClientInfo,
    /// Slots this session wrote recently (only recorded with `session.read_your_writes`).
    written: RefCell<pick::WrittenSlots>,
}

/// Read buffer offered to a new client; it doubles for clients whose reads fill it.
const MIN_READ_CHUNK: usize = 1024;
/// Largest read buffer growth step.
const MAX_READ_CHUNK: usize = 64 * 1024;
/// Buffers above this size are dropped once empty, so one large request doesn't pin memory.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

impl Session {
    /// A session for a newly accepted client.
    pub fn new(shared: Arc<Shared>) -> Self {
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed) + 1;
        let decoder = RequestDecoder::new(shared.config.session.max_bulk_len);
        let read_policy = shared.config.read_policy;
        let written = pick::WrittenSlots::new(shared.config.session.read_your_writes_window());
        Self {
            id,
            shared,
            protocol: Protocol::Resp2,
            name: None,
            pending: VecDeque::new(),
            out: BytesMut::new(),
            decoder,
            dispatch_generation: 0,
            key_positions: Vec::new(),
            stop_reading: false,
            closing: false,
            read_policy,
            subscriber: None,
            subscriptions: 0,
            tx: transaction::Transaction::default(),
            barrier: false,
            dedicated: RefCell::new(Vec::new()),
            info: introspect::ClientInfo::default(),
            written: RefCell::new(written),
        }
    }

    /// The client id (`CLIENT ID`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Serves the client until it disconnects, sends `QUIT`, or sends bad input.
    ///
    /// Requests the client sent before closing its side are still run and answered, as
    /// redis-server does; a client that vanished just stops getting replies.
    pub async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        self.info.connected(&stream);
        let (mut reader, writer) = stream.into_split();
        let mut inbuf = BytesMut::new();
        let mut read_chunk = MIN_READ_CHUNK;
        let max_in_flight = self.shared.config.session.max_in_flight;
        let max_output = self.shared.config.session.max_output_buffer_bytes;
        loop {
            // Parse, then collect settled replies; if that freed room under the in-flight limit
            // while requests are still buffered, parse again: the client may have nothing more
            // to send, so waiting for a read here would hang.
            loop {
                self.parse_requests(&mut inbuf, max_in_flight);
                let before = self.pending.len();
                self.advance_front();
                if self.pending.len() == before || inbuf.is_empty() || self.stop_reading {
                    break;
                }
            }
            // Write what is ready without waiting: a client that sends a long pipeline before
            // reading anything must not deadlock against us (redis-server never blocks on
            // output either), so reading continues while the socket is not writable.
            if let Err(e) = self.flush(&writer) {
                debug!(client = self.id, error = %e, "client write failed; closing");
                return;
            }
            // A client that left while blocked is dropped at once (which closes the dedicated
            // connection, so the node unblocks too); otherwise what it sent is still answered.
            let blocked =
                matches!(self.pending.front(), Some(Pending::Waiting(f)) if f.is_dedicated());
            let finished = self.closing || (self.stop_reading && self.pending.is_empty());
            if (finished && self.out.is_empty()) || (self.stop_reading && blocked) {
                let mut writer = writer;
                let _ = writer.shutdown().await;
                return;
            }
            let can_read = !self.stop_reading
                && self.pending.len() < max_in_flight
                && self.out.len() < max_output;
            let spare = inbuf.capacity() - inbuf.len();
            if can_read && spare < read_chunk / 2 {
                if inbuf.is_empty() && inbuf.capacity() > KEEP_BUFFER_BYTES {
                    inbuf = BytesMut::new();
                }
                inbuf.reserve(read_chunk);
            }
            let offered = inbuf.capacity() - inbuf.len();
            let (front_waiting, backoff_until) = match self.pending.front() {
                Some(Pending::Waiting(_)) => (true, None),
                Some(Pending::Backoff(retry)) => (false, Some(retry.until)),
                Some(Pending::Split(split)) => (split.waiting(), split.next_retry()),
                _ => (false, None),
            };
            let event = tokio::select! {
                biased;
                result = dispatch::front_reply(&mut self.pending), if front_waiting => {
                    Event::Reply(result)
                }
                _ = tokio::time::sleep_until(backoff_until.unwrap_or_else(Instant::now)),
                    if backoff_until.is_some() => Event::Timer,
                frame = next_frame(&mut self.subscriber), if self.subscriber.is_some() => {
                    Event::Subscriber(frame)
                }
                ready = writer.writable(), if !self.out.is_empty() => Event::Writable(ready),
                read = reader.read_buf(&mut inbuf), if can_read => Event::Read(read),
            };
            match event {
                Event::Reply(result) => self.settle_front(result),
                Event::Timer | Event::Writable(Ok(())) => {}
                Event::Subscriber(Some(frame)) => self.subscriber_frame(frame),
                Event::Subscriber(None) => {
                    // Subscriptions lost with their node connection: the client must resubscribe.
                    debug!(
                        client = self.id,
                        "subscriber connection lost; closing the client"
                    );
                    let _ = self.flush(&writer);
                    return;
                }
                Event::Read(Ok(0)) => self.stop_reading = true,
                Event::Read(Ok(n)) => {
                    // A read that filled the buffer: this client sends in bulk, offer more.
                    if n == offered {
                        read_chunk = (read_chunk * 2).min(MAX_READ_CHUNK);
                    }
                }
                Event::Read(Err(e)) | Event::Writable(Err(e)) => {
                    debug!(client = self.id, error = %e, "client socket failed");
                    return;
                }
            }
        }
    }

    /// Writes as much of the output buffer as the socket takes now, without waiting.
    fn flush(&mut self, writer: &OwnedWriteHalf) -> std::io::Result<()> {
        while !self.out.is_empty() {
            match writer.try_write(&self.out) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if self.out.capacity() > KEEP_BUFFER_BYTES {
            self.out = BytesMut::new();
        } else {
            self.out.clear();
        }
        Ok(())
    }

    /// Decodes and dispatches buffered requests while the in-flight limit allows.
    fn parse_requests(&mut self, inbuf: &mut BytesMut, max_in_flight: usize) {
        while !self.stop_reading && self.pending.len() < max_in_flight {
            match self.decoder.decode(inbuf) {
                Ok(Some(request)) => self.handle(request),
                Ok(None) => return,
                Err(e) => {
                    debug!(client = self.id, error = %e, "protocol error; closing");
                    self.pending
                        .push_back(Pending::Close(crate::protocol::reply::error_bytes(
                            &format!("ERR {e}"),
                        )));
                    self.stop_reading = true;
                }
            }
        }
    }

    /// Moves every settled entry at the front of the queue into the output buffer.
    fn advance_front(&mut self) {
        while let Some(front) = self.pending.front_mut() {
            match front {
                Pending::Done(reply) => {
                    self.out.extend_from_slice(reply);
                    self.pending.pop_front();
                }
                Pending::Close(reply) => {
                    self.out.extend_from_slice(reply);
                    self.pending.clear();
                    self.closing = true;
                    return;
                }
                Pending::Waiting(in_flight) => match in_flight.try_reply() {
                    Some(result) => self.settle_front(dispatch::FrontEvent::Single(result)),
                    None => return,
                },
                Pending::Backoff(retry) => {
                    if retry.until > Instant::now() {
                        return;
                    }
                    self.retry_front();
                }
                Pending::Split(_) => {
                    if !self.advance_split() {
                        return;
                    }
                }
                Pending::Deferred(..) => self.send_deferred(),
            }
        }
    }
}

/// The next frame of the subscriber connection (`None` once it has closed).
async fn next_frame(
    subscriber: &mut Option<crate::backend::subscriber::Subscriber>,
) -> Option<crate::protocol::Reply> {
    match subscriber {
        Some(subscriber) => subscriber.frames.recv().await,
        None => std::future::pending().await,
    }
}

enum Event {
    Reply(dispatch::FrontEvent),
    Timer,
    Writable(std::io::Result<()>),
    Subscriber(Option<crate::protocol::Reply>),
    Read(std::io::Result<usize>),
}
