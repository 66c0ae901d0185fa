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

mod access;
mod acl;
mod acl_command;
mod algebra;
mod attempt;
mod client_info;
mod clients;
mod dispatch;
mod events;
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
mod read_buffer;
mod replies;
mod reply_mode;
mod scan;
mod scan_batch;
mod scripts;
mod seat;
mod send;
mod settle;
mod settler;
mod shared;
mod slowlog;
mod split;
mod split_progress;
mod subscriptions;
mod target;
mod timings;
mod tracking;
mod tracking_prefixes;
mod tracking_state;
mod transaction;
mod transaction_state;
mod wait;
mod window;
mod writes;

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::alarm::{Alarm, Bells};
use crate::backend::ReplyBudget;
use crate::clients::Order;
use crate::inbox::Inbox;
use crate::protocol::{Protocol, RequestDecoder};
use crate::server::ClientStream;
use crate::server::client_stream::ClientWriter;
use events::{Event, PauseWait, RetryTimer, next_invalidation, next_monitor_line};
use read_buffer::{MIN_READ_CHUNK, ReadBuffer};

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
    /// How many requests may be in flight now (`session.max_in_flight`, fewer while they are
    /// large).
    window: window::Window,
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
    tracking: Option<Box<tracking_state::Tracking>>,
    /// `MONITOR` lines of every client's commands, once this client asked (and the config
    /// allows it).
    monitor: Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>,
    /// Slots this session wrote recently (only recorded with `session.read_your_writes`).
    recent_writes: writes::WrittenSlots,
    /// Reply bytes node connections handed over that the session has not picked up yet.
    budget: Arc<ReplyBudget>,
    /// Where node connections put this session's replies: made on the first request sent to a
    /// node, given back when idle.
    mailbox: Option<Arc<crate::backend::Mailbox>>,
    /// Rung by other tasks and threads: reply budget crossed, clients' memory over its budget,
    /// an order from another session, the drain.
    alarm: Arc<Alarm>,
    /// A command that may change what `CLIENT LIST` shows of this client ran since it was last
    /// published (see `Clients::publish` in `clients.rs`).
    profile_stale: bool,
    /// Inbox frames wait for the output buffer to drain below `output::DRAIN_BYTES`: once a
    /// flush gets it there, collect again without waiting for another event.
    drain_waits_for_output: bool,
    /// Requests awaiting their reply, for the command metrics.
    timings: timings::Timings,
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
    held: Option<Box<crate::protocol::Request>>,
    /// Sees `CLIENT PAUSE`/`UNPAUSE` from any client, to wake a held request.
    pause: tokio::sync::watch::Receiver<Option<crate::pause::Paused>>,
    /// The wait of the request `held` by a pause, while there is one.
    pause_wait: PauseWait,
    /// The front entry's retry timer, once a request has backed off.
    retry_timer: RetryTimer,
}

impl Session {
    /// A session for a newly accepted client with id `id` (from [`Shared::client_id`]), run on
    /// worker `worker`.
    pub fn new(shared: Arc<Shared>, worker: usize, id: u64) -> Self {
        let live = shared.live.load();
        let decoder = RequestDecoder::new(live.session.max_bulk_len);
        let read_policy = live.read_policy;
        let inbox = Inbox::new(Protocol::Resp2, live.session.pubsub_limits());
        let recent_writes = writes::WrittenSlots::new(live.session.read_your_writes_window());
        let window =
            window::Window::new(live.session.max_in_flight, live.session.max_in_flight_bytes);
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
            window,
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
            mailbox: None,
            alarm,
            profile_stale: true,
            drain_waits_for_output: false,
            timings: timings::Timings::new(command_metrics),
            read_at: Instant::now(),
            drain,
            draining: false,
            read_mode_chosen: false,
            login,
            seat: None,
            reply_mode: reply_mode::ReplyMode::default(),
            held: None,
            pause,
            pause_wait: PauseWait::default(),
            retry_timer: RetryTimer::default(),
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
    ///
    /// Boxed, with the set-up done here and the loop an async block: an `async fn` keeps its
    /// arguments twice in its state (argument and binding), and would keep the stream beside
    /// its halves, in every client's task.
    /// `peer` and `local` are the client's and the proxy's ends of the connection, as the
    /// accept found them.
    pub fn run(
        mut self: Box<Self>,
        stream: ClientStream,
        peer: std::net::SocketAddr,
        local: Option<std::net::SocketAddr>,
    ) -> impl Future<Output = ()> {
        self.info.connected(stream.tcp(), peer, local);
        self.seat = Some(seat::Seat::take(
            &self.shared.registry,
            self.id,
            &self.info,
            &self.budget,
        ));
        self.publish_client();
        let seat_entry = self.seat.as_ref().map(|s| s.entry().clone());
        let alarm = self.alarm.clone();
        // Registered before this look: a drain that began earlier is seen here, a later one
        // rings the alarm (see `Registry::ring_all`).
        if self.drain.has_changed().unwrap_or(false) {
            alarm.ring(Bells::DRAIN);
        }
        let (mut reader, mut writer) = stream.into_split();
        async move {
            let mut input = ReadBuffer::default();
            let max_output = self.budget.limit();
            loop {
                // Parse, then collect settled replies; if that freed room under the in-flight limit
                // while requests are still buffered, parse again: the client may have nothing more
                // to send, so waiting for a read here would hang.
                loop {
                    self.parse_requests(&mut input.buf);
                    let before = self.pending.len();
                    if self.hub_member {
                        // Pushes already here came before the replies about to be written.
                        self.pubsub().drain_pushes();
                    }
                    self.advance_front();
                    if self.pending.len() == before || input.buf.is_empty() || self.stop_reading {
                        break;
                    }
                }
                if self.hub_member {
                    self.pubsub().drain_pushes();
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
                self.budget
                    .set_buffers(self.out.len(), input.buf.capacity());
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
                    // Boxed: its state (312 bytes) would otherwise size every client's task.
                    let _ = Box::pin(writer.shutdown()).await;
                    return;
                }
                // Blocked at the front, the session still reads past its window (parsing waits):
                // a client that leaves while blocked must be seen leaving, as redis-server sees
                // it, or its connection stays open. What it sends meanwhile counts in the clients'
                // memory budget, as redis' query buffer does.
                let can_read = !self.stop_reading
                    && !self.draining
                    && (self.window.allows(self.pending.len()) || blocked)
                    && self.out.len() < max_output;
                if can_read {
                    input.prepare(self.decoder.need());
                }
                let chunk = input.chunk();
                let front = self.pending.front_wait();
                self.publish_client();
                let mut event = tokio::select! {
                    biased;
                    bells = alarm.rung() => Event::Alarm(bells),
                    result = queue::front_reply(&mut self.pending), if front.reply => {
                        Event::Reply(result)
                    }
                    () = poll_fn(|cx| match front.retry_at {
                        Some(at) => self.retry_timer.poll_until(at, cx),
                        None => Poll::Pending,
                    }), if front.retry_at.is_some() => Event::Timer,
                    () = poll_fn(|cx| self.pause_wait.poll_end(&self.pause, cx)),
                        if self.held.is_some() => Event::Timer,
                    _ = self.inbox.changed(), if self.hub_member => Event::Inbox,
                    Some(push) = next_invalidation(&mut self.tracking), if self.tracking.is_some() => {
                        Event::Invalidation(push)
                    }
                    line = next_monitor_line(&mut self.monitor), if self.monitor.is_some() => {
                        Event::Monitor(line)
                    }
                    ready = poll_fn(|cx| writer.poll_writable(cx)),
                        if !self.out.is_empty() || writer.pending() => {
                        Event::Writable(ready)
                    }
                    read = poll_fn(|cx| reader.poll_read_buf(cx, &mut input.buf, chunk)),
                        if can_read => Event::Read(read),
                };
                if let Event::Alarm(bells) = event {
                    // Over budget: the check at the top of the loop closes the session.
                    if bells.contains(Bells::MEMORY) {
                        clients::evict_for_memory(&self.shared);
                    }
                    if bells.contains(Bells::ORDER) && !self.obey() {
                        // As redis-server frees a killed client: at once, unsent replies too.
                        return;
                    }
                    if bells.contains(Bells::TRIM) {
                        // Idle a while: give back the buffers kept for reuse, as redis-server's
                        // cron shrinks idle clients' query buffers. The next read takes a new one.
                        input.trim();
                        self.out.trim();
                        if self.mailbox.as_ref().is_some_and(|m| m.in_use() == 0) {
                            self.mailbox = None;
                        }
                    }
                    if bells.contains(Bells::DRAIN) && !self.draining {
                        event = Event::Drain;
                    }
                }
                match event {
                    Event::Alarm(_) => {}
                    Event::Reply(result) => self.settle_front(result),
                    Event::Timer | Event::Inbox | Event::Writable(Ok(())) => {}
                    Event::Invalidation(push) => self.client_tracking().invalidation(push),
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
                            input.buf.reserve(MIN_READ_CHUNK);
                            match reader.try_read_buf(&mut input.buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => self.shared.metrics.client_bytes_received.inc_by(n as u64),
                            }
                        }
                        self.read_at = Instant::now();
                        // A blocked or subscribed client would wait forever: close it now.
                        if self.pending.front_blocks() || self.subs.any() || self.monitor.is_some()
                        {
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
                        input.read();
                    }
                    Event::Read(Err(e)) | Event::Writable(Err(e)) => {
                        debug!(client = self.id, error = %e, "client socket failed");
                        return;
                    }
                }
            }
        }
    }

    /// Carries out the order another session left, and writes the invalidations redirected
    /// here; false when the session must close now.
    fn obey(&mut self) -> bool {
        let Some(seat) = &self.seat else { return true };
        let order = seat.entry().take_order();
        let redirected = seat.entry().take_redirected();
        if !redirected.is_empty() {
            self.client_tracking().redirected(redirected);
        }
        match order {
            Some(Order::Kill) if self.budget.evicted() => {
                self.log_eviction();
                false
            }
            Some(Order::Kill) => {
                info!(client = self.id, peer = %self.info.peer_display(), "client killed (CLIENT KILL or its user deleted); closing");
                false
            }
            Some(Order::Unblock(mode)) => {
                self.unblock_here(mode);
                true
            }
            None => true,
        }
    }

    /// Logs that this client is closed to bring the clients' memory under its budget.
    fn log_eviction(&self) {
        clients::log_eviction(self.id, &self.info, self.out.len(), self.budget.held());
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
}

impl Drop for Session {
    fn drop(&mut self) {
        // Replies still on their way are dropped, and this client's memory leaves the count.
        self.budget.close();
        if self.hub_member {
            self.shared.hub.leave(self.id);
        }
        self.client_tracking().stop();
    }
}
