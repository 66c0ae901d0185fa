//! One client connection, end to end: read requests, route them, write replies in request order.
//!
//! Every request becomes one `Pending` entry in a FIFO; replies leave strictly from the front, so
//! a client's pipeline is answered in order whatever order nodes answer in. Only the front entry
//! is awaited; entries behind it are collected without waiting once it is done. Redirects and
//! retries are handled when an entry reaches the front, which keeps per-key order: nothing sent
//! later can overtake an earlier request that is being redirected. When the slot map changes
//! while requests sent under the old map are still unanswered, new requests are held back
//! (`Deferred`) until those are settled, so a write can't be reordered around a resharding.
//!
//! Frames the session did not ask a node for (pub/sub messages) come through its inbox and are
//! written between replies as they arrive; a reply produced in step with them (a subscription's
//! confirmation) waits in the inbox until its `Pending::Inbox` entry reaches the front.

mod acl;
mod acl_command;
mod algebra;
mod attempt;
mod client_info;
mod clients;
mod dispatch;
mod handle;
mod introspect;
mod local;
mod monitor;
mod order;
mod output;
mod per_slot;
mod pick;
mod plan;
mod pubsub;
mod queue;
mod reply_mode;
mod scan;
mod scan_batch;
mod scripts;
mod seat;
mod send;
mod settle;
mod shared;
mod slowlog;
mod split;
mod subscriptions;
mod target;
mod tracking;
mod tracking_state;
mod transaction;
mod transaction_state;
mod wait;
mod writes;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::alarm::{Alarm, Bells};
use crate::backend::ReplyBudget;
use crate::inbox::Inbox;
use crate::protocol::{Protocol, RequestDecoder};
use crate::server::ClientStream;
use crate::server::client_stream::ClientWriter;
use queue::{Pending, TaskOutcome};

pub use scripts::ScriptCache;
pub use shared::Shared;
#[doc(hidden)] // only for benches/split_merge.rs: the split and merge of a multi-key command
pub use split::{merge, plan_split};
pub use target::Target;

/// Per-client state; `run` drives it.
pub struct Session {
    id: u64,
    /// The worker (see [`crate::workers`]) this session runs on: it uses that worker's node
    /// connections.
    worker: usize,
    shared: Arc<Shared>,
    protocol: Protocol,
    name: Option<Bytes>,
    pending: queue::Queue,
    out: output::Output,
    decoder: RequestDecoder,
    /// Whether new requests go out now or wait for older ones (map changes, dedicated
    /// connections).
    order: order::Order,
    /// Scratch space for key positions, reused across requests.
    key_positions: Vec<usize>,
    /// Stop reading: the client closed its side, sent QUIT, or sent bad input.
    stop_reading: bool,
    /// Close once everything before the `Close` entry is written.
    closing: bool,
    /// Where this session's reads go (the configured policy; READONLY/READWRITE change it).
    read_policy: crate::config::ReadPolicy,
    /// Channels, patterns and shard channels, as of the last request read.
    subs: subscriptions::Subscriptions,
    /// Messages from the pub/sub hub, and the replies that must be written in step with them.
    inbox: Inbox,
    /// `Pending::Inbox` entries in the queue.
    inbox_waits: usize,
    /// The hub knows this session: tell it when the client leaves.
    hub_member: bool,
    /// MULTI/WATCH state.
    transaction: transaction_state::Transaction,
    /// Connections of this session alone, per node and protocol (blocking commands).
    dedicated: Vec<(Arc<crate::backend::Node>, Protocol, crate::backend::Lane)>,
    /// Addresses and library info for `CLIENT INFO`/`LIST` and the cluster replies.
    info: client_info::ClientInfo,
    /// Nodes this session has written to, for `WAIT`.
    written: writes::Written,
    /// `CLIENT TRACKING` options and the invalidations coming for this client.
    tracking: Option<tracking_state::Tracking>,
    /// `MONITOR` lines of every client's commands, once this client asked (and the config
    /// allows it).
    monitor: Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>,
    /// Slots this session wrote recently (only recorded with `session.read_your_writes`).
    recent_writes: writes::WrittenSlots,
    /// Reply bytes node connections handed over that the session has not picked up yet.
    budget: Arc<ReplyBudget>,
    /// Rung by other tasks and threads: reply budget crossed, clients' memory over its budget,
    /// an order from another session, the drain.
    alarm: Arc<Alarm>,
    /// A command that may change what `CLIENT LIST` shows of this client ran since it was last
    /// published (see `publish_client`).
    profile_stale: bool,
    /// Inbox frames wait for the output buffer to drain below `output::DRAIN_BYTES`: once a
    /// flush gets it there, collect again without waiting for another event.
    drain_waits_for_output: bool,
    /// Requests awaiting their reply, for the command metrics: queue index, command row, when
    /// it was read.
    timings: VecDeque<(u64, usize, Instant)>,
    /// `[admin] command_metrics`: whether `timings` and the command metrics are kept.
    command_metrics: bool,
    /// When the bytes being parsed were read.
    read_at: Instant,
    /// Turns true when the proxy starts draining.
    drain: tokio::sync::watch::Receiver<bool>,
    /// Draining: read nothing more, answer what was received, then close.
    draining: bool,
    /// The client chose its read mode (READONLY/READWRITE); otherwise `read_policy` follows
    /// the configured one, reloads included.
    read_mode_chosen: bool,
    /// The ACL user this client runs as, and whether it authenticated.
    login: acl::Login,
    /// This client's entry in `Shared::registry`, once its session runs.
    seat: Option<seat::Seat>,
    /// `CLIENT REPLY` mode and the replies it mutes.
    reply_mode: reply_mode::ReplyMode,
    /// A request read while `CLIENT PAUSE` holds it: it runs (and then what follows it) once
    /// the pause ends.
    held: Option<crate::protocol::Request>,
    /// Sees `CLIENT PAUSE`/`UNPAUSE` from any client, to wake a held request.
    pause: tokio::sync::watch::Receiver<Option<crate::pause::Paused>>,
}

/// Read buffer offered to a new client; it doubles for clients whose reads fill it.
const MIN_READ_CHUNK: usize = 1024;
/// Largest read buffer growth step.
const MAX_READ_CHUNK: usize = 64 * 1024;
/// Buffers above this size are dropped once empty, so one large request doesn't pin memory.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

impl Session {
    /// A session for a newly accepted client, run on worker `worker`.
    pub fn new(shared: Arc<Shared>, worker: usize) -> Self {
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed) + 1;
        let live = shared.live.load();
        let decoder = RequestDecoder::new(live.session.max_bulk_len);
        let read_policy = live.read_policy;
        let inbox = Inbox::new(Protocol::Resp2, live.session.pubsub_limits());
        let recent_writes = writes::WrittenSlots::new(live.session.read_your_writes_window());
        let alarm = Arc::new(Alarm::default());
        let budget = Arc::new(ReplyBudget::new(
            live.session.max_output_buffer_bytes,
            alarm.clone(),
            shared.registry.memory().clone(),
        ));
        drop(live);
        let drain = shared.draining.subscribe();
        let pause = shared.pause.subscribe();
        let login = acl::Login::new(&shared.acl);
        let command_metrics = shared.config.admin.command_metrics;
        Self {
            id,
            worker,
            shared,
            protocol: Protocol::Resp2,
            name: None,
            pending: queue::Queue::default(),
            out: output::Output::default(),
            decoder,
            order: order::Order::default(),
            key_positions: Vec::new(),
            stop_reading: false,
            closing: false,
            read_policy,
            subs: subscriptions::Subscriptions::default(),
            inbox,
            inbox_waits: 0,
            hub_member: false,
            transaction: transaction_state::Transaction::default(),
            dedicated: Vec::new(),
            info: client_info::ClientInfo::default(),
            written: writes::Written::default(),
            tracking: None,
            monitor: None,
            recent_writes,
            budget,
            alarm,
            profile_stale: true,
            drain_waits_for_output: false,
            timings: VecDeque::new(),
            command_metrics,
            read_at: Instant::now(),
            drain,
            draining: false,
            read_mode_chosen: false,
            login,
            seat: None,
            reply_mode: reply_mode::ReplyMode::default(),
            held: None,
            pause,
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
    pub async fn run(mut self, stream: ClientStream) {
        let _ = stream.tcp().set_nodelay(true);
        self.info.connected(stream.tcp());
        self.take_seat();
        let seat_entry = self.seat.as_ref().map(|s| s.entry().clone());
        let alarm = self.alarm.clone();
        // Registered before this look: a drain that began earlier is seen here, a later one
        // rings the alarm (see `Registry::ring_all`).
        if self.drain.has_changed().unwrap_or(false) {
            alarm.ring(Bells::DRAIN);
        }
        let (mut reader, writer) = stream.into_split();
        let mut inbuf = BytesMut::new();
        let mut read_chunk = MIN_READ_CHUNK;
        let (max_in_flight, max_output) = {
            let live = self.shared.live.load();
            (
                live.session.max_in_flight,
                live.session.max_output_buffer_bytes,
            )
        };
        loop {
            // Parse, then collect settled replies; if that freed room under the in-flight limit
            // while requests are still buffered, parse again: the client may have nothing more
            // to send, so waiting for a read here would hang.
            loop {
                self.parse_requests(&mut inbuf, max_in_flight);
                let before = self.pending.len();
                if self.hub_member {
                    // Pushes already here came before the replies about to be written.
                    self.drain_pushes();
                }
                self.advance_front();
                if self.pending.len() == before || inbuf.is_empty() || self.stop_reading {
                    break;
                }
            }
            if self.hub_member {
                self.drain_pushes();
                if self.inbox.overflowed() {
                    // As redis-server does with a subscriber over `client-output-buffer-limit`.
                    info!(
                        client = self.id,
                        unsent_bytes = self.out.len(),
                        "client over the pub/sub output buffer limit; closing it"
                    );
                    return;
                }
            }
            // Write what is ready without waiting: a client that sends a long pipeline before
            // reading anything must not deadlock against us (redis-server never blocks on
            // output either), so reading continues while the socket is not writable.
            if let Err(e) = self.flush(&writer) {
                debug!(client = self.id, error = %e, "client write failed; closing");
                return;
            }
            if self.drain_waits_for_output && self.out.len() < output::DRAIN_BYTES {
                // What waited in the inbox (a subscription's confirmation behind a large
                // reply) may go now; no event would come for it once the client has sent FIN.
                self.drain_waits_for_output = false;
                continue;
            }
            if self.hub_member {
                self.inbox.set_unsent(self.out.len());
            }
            // As redis' `client-output-buffer-limit` hard limit, counting the replies still on
            // their way too: a client that pipelines large reads and never reads the replies
            // is disconnected, and its requests not yet written are never sent.
            self.budget.set_buffers(self.out.len(), inbuf.capacity());
            if self.budget.evicted() {
                self.log_eviction();
                return;
            }
            let backlog = self.out.len() + self.budget.held();
            if backlog > max_output || self.budget.spent() {
                info!(
                    client = self.id,
                    unsent_bytes = self.out.len(),
                    in_flight_bytes = self.budget.held(),
                    limit = max_output,
                    "client over max_output_buffer_bytes (it does not read its replies); closing it"
                );
                return;
            }
            // A client that left while blocked is dropped at once (which closes the dedicated
            // connection, so the node unblocks too); otherwise what it sent is still answered.
            let blocked = self.pending.front_blocks();
            let finished = self.closing
                || ((self.stop_reading || self.draining)
                    && self.pending.is_empty()
                    && self.held.is_none());
            if (finished && self.out.is_empty()) || (self.stop_reading && blocked) {
                let mut writer = writer;
                let _ = writer.shutdown().await;
                return;
            }
            let can_read = !self.stop_reading
                && !self.draining
                && self.pending.len() < max_in_flight
                && self.out.len() < max_output;
            let need = self.decoder.need();
            if can_read && need > inbuf.capacity() {
                // A large value whose length is known: one buffer of exactly its size, instead
                // of doubling (which holds up to twice the value, plus a copy while growing).
                inbuf.reserve(need - inbuf.len());
            }
            let spare = inbuf.capacity() - inbuf.len();
            if can_read && spare < read_chunk / 2 {
                if inbuf.is_empty() && inbuf.capacity() > KEEP_BUFFER_BYTES {
                    inbuf = BytesMut::new();
                }
                inbuf.reserve(read_chunk);
            }
            let offered = inbuf.capacity() - inbuf.len();
            let front = self.pending.front_wait();
            self.publish_client();
            let mut event = tokio::select! {
                biased;
                bells = alarm.rung() => Event::Alarm(bells),
                result = queue::front_reply(&mut self.pending), if front.reply => {
                    Event::Reply(result)
                }
                _ = tokio::time::sleep_until(front.retry_at.unwrap_or_else(Instant::now)),
                    if front.retry_at.is_some() => Event::Timer,
                () = pause_ends(&mut self.pause), if self.held.is_some() => Event::Timer,
                _ = self.inbox.changed(), if self.hub_member => Event::Inbox,
                Some(push) = next_invalidation(&mut self.tracking), if self.tracking.is_some() => {
                    Event::Invalidation(push)
                }
                line = next_monitor_line(&mut self.monitor), if self.monitor.is_some() => {
                    Event::Monitor(line)
                }
                ready = writer.writable(), if !self.out.is_empty() || writer.pending() => {
                    Event::Writable(ready)
                }
                read = reader.read_buf(&mut inbuf), if can_read => Event::Read(read),
            };
            if let Event::Alarm(bells) = event {
                // Over budget: the check at the top of the loop closes the session.
                if bells.contains(Bells::MEMORY) {
                    self.evict_for_memory();
                }
                if bells.contains(Bells::ORDER) && !self.obey() {
                    // As redis-server frees a killed client: at once, unsent replies too.
                    return;
                }
                if bells.contains(Bells::DRAIN) && !self.draining {
                    event = Event::Drain;
                }
            }
            match event {
                Event::Alarm(_) => {}
                Event::Reply(result) => self.settle_front(result),
                Event::Timer | Event::Inbox | Event::Writable(Ok(())) => {}
                Event::Invalidation(push) => self.invalidation(push),
                Event::Monitor(Some(line)) => {
                    self.out.extend_from_slice(&line);
                    if self.out.len() > max_output {
                        debug!(client = self.id, "MONITOR client not reading; closing");
                        return;
                    }
                }
                // Not while the session holds its feed; kept for a closed channel all the same.
                Event::Monitor(None) => self.monitor = None,
                Event::Read(Ok(0)) => self.stop_reading = true,
                Event::Drain => {
                    self.draining = true;
                    // Take what the client sent before the drain began (it is owed replies);
                    // after this, nothing more is read.
                    loop {
                        inbuf.reserve(MIN_READ_CHUNK);
                        match reader.try_read_buf(&mut inbuf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => self.shared.metrics.client_bytes_received.inc_by(n as u64),
                        }
                    }
                    self.read_at = Instant::now();
                    // A blocked or subscribed client would wait forever: close it now.
                    if self.pending.front_blocks() || self.subs.any() || self.monitor.is_some() {
                        let _ = self.flush(&writer);
                        return;
                    }
                }
                Event::Read(Ok(n)) => {
                    self.shared.metrics.client_bytes_received.inc_by(n as u64);
                    self.read_at = Instant::now();
                    if let Some(entry) = &seat_entry {
                        entry.read(n, self.read_at.into_std());
                    }
                    if !self.read_mode_chosen {
                        // Once per read, not per request: a reload reaches running clients.
                        self.read_policy = self.shared.live.load().read_policy;
                    }
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
    fn flush(&mut self, writer: &ClientWriter) -> std::io::Result<()> {
        let written = self.out.write_to(writer)?;
        // TLS records of what was just accepted (a no-op on plain TCP).
        writer.try_flush()?;
        if written > 0 {
            self.shared.metrics.client_bytes_sent.inc_by(written as u64);
            if let Some(seat) = &self.seat {
                seat.entry().wrote(written, std::time::Instant::now());
            }
        }
        Ok(())
    }

    /// Decodes and dispatches buffered requests while the in-flight limit allows.
    fn parse_requests(&mut self, inbuf: &mut BytesMut, max_in_flight: usize) {
        while !self.stop_reading && self.pending.len() < max_in_flight {
            let next = match self.held.take() {
                Some(request) => Ok(Some(request)),
                None => self.decoder.decode(inbuf),
            };
            match next {
                Ok(Some(request))
                    if self.shared.pause.holds_request(
                        &self.shared.commands,
                        &request,
                        &self.transaction.queued,
                    ) =>
                {
                    self.held = Some(request);
                    return;
                }
                Ok(Some(request)) => {
                    let index = self.pending.next_index();
                    let written = self.out.len();
                    self.reply_mode.begin();
                    let command = self.handle(request);
                    self.note_command(command);
                    if self.reply_mode.mutes_this() {
                        self.mute(index, written);
                    }
                    if !self.command_metrics {
                        // `[admin] command_metrics = false`: nothing to count.
                    } else if self.pending.next_index() > index {
                        self.timings.push_back((index, command, self.read_at));
                    } else if self.out.len() > written {
                        // Answered at once, straight into the output buffer.
                        let outcome = crate::metrics::Outcome::of_reply(self.out.since(written));
                        let seconds = self.read_at.elapsed().as_secs_f64();
                        self.shared.metrics.record(command, outcome, seconds);
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    debug!(client = self.id, error = %e, "protocol error; closing");
                    self.pending.push_back(Pending::Close(
                        crate::error::ReplyError::Protocol(e).to_bytes(),
                    ));
                    self.stop_reading = true;
                }
            }
        }
    }

    /// Moves every settled entry at the front of the queue into the output buffer.
    fn advance_front(&mut self) {
        let max_output = self.shared.config.session.max_output_buffer_bytes;
        while let Some(front) = self.pending.front_mut() {
            if self.out.len() + self.budget.held() > max_output {
                // Nodes may answer as fast as this loop runs: stop here, so the output limit
                // is checked before the buffer grows any further.
                return;
            }
            match front {
                Pending::Done(_) => {
                    // Messages already in the inbox came before this reply: a PUBLISH to the
                    // session's own channel, whose message the hub passed on before the node's
                    // count, must not be overtaken by the count. With the output buffer full,
                    // the reply waits until they are written.
                    if self.hub_member && !self.drain_pushes() {
                        return;
                    }
                    let index = self.pending.front_index();
                    if let Some(Pending::Done(reply)) = self.pending.pop_front() {
                        self.observe(index, &reply);
                        if self.reply_mode.writes_all() || !self.reply_mode.take_muted(index) {
                            self.out.push(reply);
                        }
                    }
                }
                Pending::Close(reply) => {
                    self.out.extend_from_slice(reply);
                    self.pending.clear();
                    self.closing = true;
                    return;
                }
                Pending::Waiting(in_flight) => match in_flight.try_reply() {
                    Some(result) => self.settle_front(queue::FrontEvent::Single(result)),
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
                Pending::Inbox => {
                    if !self.take_inbox_reply() {
                        return;
                    }
                }
                Pending::Task(task) => {
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    match task.poll(&mut cx) {
                        std::task::Poll::Ready(outcome) => self.settle_task(outcome),
                        std::task::Poll::Pending => return,
                    }
                }
            }
        }
    }

    /// Mutes the reply of the request just handled (`CLIENT REPLY OFF|SKIP`): queue entry
    /// `index` if it got one, else what it wrote to the output since `written`.
    fn mute(&mut self, index: u64, written: usize) {
        if self.pending.next_index() > index {
            self.reply_mode.mute(index);
        } else {
            self.out.truncate(written);
        }
    }

    /// The metrics row of a request whose table row has `policy` (`None`: an unknown command).
    fn command_row(&self, policy: Option<&crate::command::Policy>) -> usize {
        self.shared.metrics.command_row(policy.map(|p| p.metric))
    }

    /// Counts the request whose reply (queue entry `index`) is being written, and any before
    /// it that were answered another way (through the inbox, or not at all).
    fn observe(&mut self, index: u64, reply: &[u8]) {
        let metrics = &self.shared.metrics;
        let now = Instant::now();
        while let Some(&(at, command, read_at)) = self.timings.front() {
            if at > index {
                return;
            }
            self.timings.pop_front();
            let outcome = if at == index {
                crate::metrics::Outcome::of_reply(reply)
            } else {
                crate::metrics::Outcome::Ok
            };
            let seconds = now.saturating_duration_since(read_at).as_secs_f64();
            metrics.record(command, outcome, seconds);
        }
    }

    /// Replaces the front `Task` with its outcome: the reply, or the request sent after all.
    fn settle_task(&mut self, outcome: TaskOutcome) {
        self.pending.pop_front();
        let entry = match outcome {
            TaskOutcome::Reply(reply) => Pending::Done(reply),
            TaskOutcome::Dispatch(request, plan) => self.start_now(request, plan),
            TaskOutcome::Tracking(prefixes, on) => self.turn_tracking_on(prefixes, on),
        };
        self.pending.push_front(entry);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Replies still on their way are dropped, and this client's memory leaves the count.
        self.budget.close();
        if self.hub_member {
            self.shared.hub.leave(self.id);
        }
        self.stop_tracking();
    }
}

/// The next invalidation for a tracking client.
async fn next_invalidation(
    tracking: &mut Option<tracking_state::Tracking>,
) -> Option<crate::tracking::Invalidation> {
    match tracking {
        Some(tracking) => tracking.pushes.recv().await,
        None => std::future::pending().await,
    }
}

/// When the pause holding a request ends, or changes (`UNPAUSE`, another `PAUSE`).
async fn pause_ends(pause: &mut tokio::sync::watch::Receiver<Option<crate::pause::Paused>>) {
    let until = pause.borrow_and_update().map(|p| p.until);
    if let Some(until) = until {
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            _ = pause.changed() => {}
        }
    }
}

/// The next `MONITOR` line (`None` once the feed has ended).
async fn next_monitor_line(
    monitor: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>,
) -> Option<Bytes> {
    match monitor {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

enum Event {
    /// The session's alarm rang: an order from another session (kill, unblock), the reply
    /// budget or the clients' memory budget crossed, or the drain began.
    Alarm(Bells),
    Drain,
    Monitor(Option<Bytes>),
    Invalidation(crate::tracking::Invalidation),
    Reply(queue::FrontEvent),
    Timer,
    Writable(std::io::Result<()>),
    Inbox,
    Read(std::io::Result<usize>),
}
