//! Commands the proxy answers itself, with the replies (and errors) redis-server gives.
//!
//! To cluster-aware clients (`redis-cli -c`, redis-py's `RedisCluster`, `redis-benchmark
//! --cluster`) the proxy is a one-node cluster that owns all 16384 slots at the address the client
//! connected to: `CLUSTER SLOTS`, `SHARDS`, `NODES`, `INFO`, `MYID` and `MYSHARDID` say so, and
//! such clients then send everything to the proxy, which routes it. The node id is slotproxy's
//! run id (random per process, also `INFO`'s `run_id`), which lets a refresh recognise a seed
//! that leads back to slotproxy itself (see `cluster/seeds.rs`).
//!
//! `CLIENT INFO`, `CLIENT LIST`, `CLIENT KILL` and `CLIENT UNBLOCK` see every client of slotproxy
//! (see [`crate::clients`] and `clients.rs`); `omem`/`tot-mem` are what slotproxy holds for the
//! client, other counters the proxy doesn't keep (query buffer...) are 0. Tracking, `CLIENT
//! REPLY OFF|SKIP` and `CLIENT NO-TOUCH` are refused
//! (see `command/policy.rs`); what is trivially true of a client without them is answered:
//! `TRACKING OFF` and `REPLY ON` say OK, `NO-EVICT` spares the client from memory evictions,
//! `TRACKINGINFO` and `GETREDIR` report tracking off, `CACHING` gets redis' error for a client
//! without tracking.
//!
//! [`LocalCommands`] borrows the client's own connection state (name, protocol, library, read
//! mode, login, `MULTI`/`WATCH`, `CLIENT REPLY`, `MONITOR`) and the reply order, and answers
//! from it; the replies and state changes are made by types that take what they need and return
//! a value (`introspect.rs`, `tracking_state.rs`, `transaction.rs` on the transaction state,
//! `reply_mode.rs`), and the arms here reply with it or queue it. What only the session can do
//! comes back as a [`Next`]: a request to send (`EXEC`, `WATCH`, `SCAN`, `WAIT`), `HELLO`'s
//! protocol switch and `RESET`'s end of tracking and subscriptions. `CLIENT TRACKING ...` and
//! `CLIENT INFO|LIST|KILL|UNBLOCK` go to their own types (`tracking.rs`, `clients.rs`) before
//! they get here. This file must not know how a request is sent.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::access::AccessControl;
use super::acl::Login;
use super::client_info::ClientInfo;
use super::introspect::{self, OneNodeCluster};
use super::plan::{Plan, Wait, keys_slot};
use super::queue::Pending;
use super::replies::{Forward, Replies};
use super::reply_mode::ReplyMode;
use super::scan;
use super::scan_batch::ScanBatch;
use super::seat::Seat;
use super::shared::Shared;
use super::split::Merge;
use super::target::Target;
use super::transaction::ExecStep;
use super::transaction_state::Transaction;
use crate::backend::{Lane, Node};
use crate::cluster::hash_slot;
use crate::command::CommandSpec;
use crate::command::policy::{Handling, Local};
use crate::config::CrossSlotTransactions;
use crate::config::ReadPolicy;
use crate::error::ReplyError;
use crate::protocol::reply::{
    write_array_len, write_bulk, write_integer, write_map_len, write_null, write_simple, write_text,
};
use crate::protocol::{Protocol, Request, string2ll};

/// What the session does after [`LocalCommands::answer`].
pub(super) enum Next {
    /// Nothing: the command was answered or queued.
    Done,
    /// Send the request on as its plan says.
    Forward(Forward),
    /// `HELLO` answered: its reply goes out as pub/sub messages switch to this protocol.
    Hello(Protocol, Bytes),
    /// `RESET` done here: tracking ends, then every subscription, then this reply goes out.
    Reset(Bytes),
}

/// A client's own connection state, borrowed from the session for one request.
pub(super) struct LocalCommands<'a> {
    /// The client id.
    pub(super) id: u64,
    pub(super) shared: &'a Shared,
    pub(super) protocol: &'a mut Protocol,
    /// `CLIENT SETNAME`.
    pub(super) name: &'a mut Option<Bytes>,
    /// Addresses and library info.
    pub(super) info: &'a mut ClientInfo,
    /// Where the client's reads go, and whether it chose that (READONLY/READWRITE).
    pub(super) read_policy: &'a mut ReadPolicy,
    pub(super) read_mode_chosen: &'a mut bool,
    /// `MONITOR` lines, once the client asked.
    pub(super) monitor: &'a mut Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>,
    /// The client's registry entry (`CLIENT NO-EVICT`, `ACL LOG`).
    pub(super) seat: &'a Option<Seat>,
    pub(super) reply_mode: &'a mut ReplyMode,
    /// The ACL user, and whether it authenticated.
    pub(super) login: &'a mut Login,
    /// MULTI/WATCH state.
    pub(super) transaction: &'a mut Transaction,
    /// The session's own node connections (a `WATCH` holds one).
    pub(super) dedicated: &'a mut Vec<(Arc<Node>, Protocol, Lane)>,
    /// Scratch space for key positions.
    pub(super) key_positions: &'a mut Vec<usize>,
    /// Set to stop reading requests (QUIT, SHUTDOWN).
    pub(super) stop_reading: &'a mut bool,
    pub(super) replies: Replies<'a>,
}

impl LocalCommands<'_> {
    /// Answers a proxy-local command.
    pub(super) fn answer(&mut self, local: Local, request: &Request) -> Next {
        let args = request.args();
        match local {
            Local::Ping => match args.len() {
                1 => self.replies.with(|out| write_simple(out, "PONG")),
                2 => self.replies.with(|out| write_bulk(out, &args[1])),
                _ => self.replies.error(ReplyError::WrongArity("ping")),
            },
            Local::Echo => self.replies.with(|out| write_bulk(out, &args[1])),
            Local::Quit => {
                let mut out = BytesMut::new();
                write_simple(&mut out, "OK");
                self.replies.push(Pending::Close(out.freeze()));
                *self.stop_reading = true;
            }
            Local::Select => match string2ll(&args[1]) {
                None => self.replies.error(ReplyError::NotInteger),
                Some(0) => self.replies.with(|out| write_simple(out, "OK")),
                Some(_) => self.replies.error(ReplyError::SelectInCluster),
            },
            Local::Hello => return self.hello(args),
            Local::Auth => self.access().auth(args),
            Local::Reset => {
                self.end_transaction();
                // As redis: RESET ends MONITOR mode (the feed closes with the receiver).
                *self.monitor = None;
                *self.read_policy = self.shared.live.load().read_policy;
                *self.read_mode_chosen = false;
                *self.protocol = Protocol::Resp2;
                *self.name = None;
                self.login.reset(&self.shared.acl);
                let mut reply = BytesMut::new();
                write_simple(&mut reply, "RESET");
                return Next::Reset(reply.freeze());
            }
            Local::ClientSetName => {
                if valid_name(&args[2]) {
                    *self.name = (!args[2].is_empty()).then(|| args[2].clone());
                    self.replies.with(|out| write_simple(out, "OK"));
                } else {
                    self.replies.error(ReplyError::BadClientName);
                }
            }
            Local::ClientGetName => {
                let protocol = *self.protocol;
                let name = self.name.clone();
                self.replies.with(|out| match name {
                    Some(name) => write_bulk(out, &name),
                    None => write_null(out, protocol),
                });
            }
            Local::ClientId => {
                let id = self.id as i64;
                self.replies.with(|out| write_integer(out, id));
            }
            Local::ClientSetInfo => self.set_info(args),
            Local::ReadMode => {
                // READONLY lets this connection read from replicas, READWRITE sends it back to
                // primaries (an explicit policy other than primary stays as configured).
                let readonly = args[0].eq_ignore_ascii_case(b"readonly");
                let configured = self.shared.live.load().read_policy;
                *self.read_mode_chosen = true;
                *self.read_policy = match (readonly, configured) {
                    (true, ReadPolicy::Primary) => ReadPolicy::PreferReplica,
                    (true, other) => other,
                    (false, _) => ReadPolicy::Primary,
                };
                self.replies.with(|out| write_simple(out, "OK"));
            }
            Local::Multi => match self.transaction.multi() {
                Ok(()) => self.replies.with(|out| write_simple(out, "OK")),
                Err(error) => self.replies.error(error),
            },
            Local::Exec => match self.transaction.exec(&self.shared.scripts) {
                Ok(ExecStep::Run(batch, plan)) => return Next::Forward(Forward(batch, plan)),
                Ok(ExecStep::Empty) => self.replies.with(|out| write_array_len(out, 0)),
                Ok(ExecStep::Abort) => {
                    self.end_transaction();
                    self.replies.error(ReplyError::ExecAbort);
                }
                Err(error) => self.replies.error(error),
            },
            Local::Discard if !self.transaction.queuing() => {
                self.replies.error(ReplyError::DiscardWithoutMulti)
            }
            // UNWATCH outside MULTI (inside, it is queued).
            Local::Discard | Local::Unwatch => {
                self.end_transaction();
                self.replies.with(|out| write_simple(out, "OK"));
            }
            // Each has its own type (`pubsub.rs`, `tracking.rs`, `clients.rs`) or a step of
            // `handle.rs`, which the session calls before it gets here.
            Local::Watch
            | Local::Subscribe
            | Local::Publish
            | Local::PubSubCount
            | Local::ClientTracking
            | Local::ClientTrackingInfo
            | Local::ClientGetRedir
            | Local::ClientCaching
            | Local::ClientInfo
            | Local::ClientList
            | Local::ClientKill
            | Local::ClientUnblock => self.replies.error(ReplyError::NotLocal),
            Local::ClusterKeySlot => {
                let slot = i64::from(hash_slot(&args[2]).0);
                self.replies.with(|out| write_integer(out, slot));
            }
            Local::Scan => return self.scan(request),
            Local::Wait => return Next::Forward(wait(request)),
            Local::Shutdown => self.shutdown(args),
            Local::Role => self.replies.with(|out| {
                write_array_len(out, 3);
                write_bulk(out, b"master");
                write_integer(out, 0);
                write_array_len(out, 0);
            }),
            Local::Asking => self.replies.with(|out| write_simple(out, "OK")),
            // Sent again, it is ignored without a reply, as redis does.
            Local::Monitor if self.monitor.is_some() => {}
            Local::Monitor => {
                *self.monitor = Some(self.shared.monitors.watch());
                self.replies.with(|out| write_simple(out, "OK"));
            }
            Local::ClusterInfo => {
                let text = introspect::cluster_info(&self.shared.topology);
                let protocol = *self.protocol;
                self.replies
                    .with(|out| write_text(out, protocol, text.as_bytes()));
            }
            Local::ClusterMyId
            | Local::ClusterMyShardId
            | Local::ClusterSlots
            | Local::ClusterShards
            | Local::ClusterNodes => {
                let shared = self.shared;
                let cluster = OneNodeCluster {
                    addr: self.info.cluster_addr(&shared.config.listen),
                    node_id: shared.run_id.as_str(),
                    protocol: *self.protocol,
                };
                self.replies.with(|out| cluster.answer(local, out));
            }
            Local::ClientNoEvict => match parse_on_off(&args[2]) {
                Some(on) => {
                    if let Some(seat) = self.seat {
                        seat.entry().set_no_evict(on);
                    }
                    self.replies.with(|out| write_simple(out, "OK"));
                }
                None => self.replies.error(ReplyError::Syntax),
            },
            Local::ClientReply => match self.reply_mode.command(&args[2]) {
                Ok(true) => self.replies.with(|out| write_simple(out, "OK")),
                Ok(false) => {}
                Err(error) => self.replies.error(error),
            },
            Local::ClientPause => match self.shared.pause.command(args) {
                Ok(()) => self.replies.with(|out| write_simple(out, "OK")),
                Err(error) => self.replies.error(error),
            },
            Local::ClientUnpause => {
                self.shared.pause.end();
                self.replies.with(|out| write_simple(out, "OK"));
            }
        }
        Next::Done
    }

    /// The client's login checked and authenticated ([`AccessControl`]).
    fn access(&mut self) -> AccessControl<'_> {
        AccessControl {
            id: self.id,
            shared: self.shared,
            login: self.login,
            info: self.info,
            seat: self.seat,
            transaction: self.transaction,
            replies: Replies {
                pending: self.replies.pending,
                out: self.replies.out,
            },
        }
    }

    /// Queues `error` and says nothing more is to be done.
    fn refuse(&mut self, error: ReplyError) -> Next {
        self.replies.error(error);
        Next::Done
    }

    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    fn set_info(&mut self, args: &[Bytes]) {
        let attr = &args[2];
        if !attr.eq_ignore_ascii_case(b"lib-name") && !attr.eq_ignore_ascii_case(b"lib-ver") {
            return self
                .replies
                .error(ReplyError::UnrecognizedOption(attr.clone()));
        }
        if !valid_name(&args[3]) {
            return self.replies.error(ReplyError::BadClientInfo(
                String::from_utf8_lossy(attr).to_ascii_lowercase(),
            ));
        }
        let value = (!args[3].is_empty()).then(|| args[3].clone());
        if attr.eq_ignore_ascii_case(b"lib-name") {
            self.info.lib_name = value;
        } else {
            self.info.lib_ver = value;
        }
        self.replies.with(|out| write_simple(out, "OK"));
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    fn hello(&mut self, args: &[Bytes]) -> Next {
        let mut protocol = *self.protocol;
        if let Some(version) = args.get(1) {
            match string2ll(version) {
                Some(2) => protocol = Protocol::Resp2,
                Some(3) => protocol = Protocol::Resp3,
                Some(_) => return self.refuse(ReplyError::NoProto),
                None => {
                    return self.refuse(ReplyError::ProtocolVersionNotInteger);
                }
            }
        }
        let mut name = None;
        let mut auth = None;
        let mut i = 2;
        while i < args.len() {
            let option = &args[i];
            let more = args.len() - i - 1;
            if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                if !valid_name(&args[i + 1]) {
                    return self.refuse(ReplyError::BadClientName);
                }
                name = Some(args[i + 1].clone());
                i += 2;
            } else {
                return self.refuse(ReplyError::HelloOption(option.clone()));
            }
        }
        if let Some((user, password)) = auth {
            if !self.access().authenticate(&user, &password) {
                return self.refuse(ReplyError::WrongPass);
            }
        } else if !self.login.authenticated {
            return self.refuse(ReplyError::NoAuthHello);
        }
        *self.protocol = protocol;
        if let Some(name) = name {
            *self.name = (!name.is_empty()).then_some(name);
        }
        let id = self.id as i64;
        let version = self.shared.redis_version.load_full();
        let mut reply = BytesMut::new();
        {
            let out = &mut reply;
            write_map_len(out, protocol, 7);
            write_bulk(out, b"server");
            write_bulk(out, b"redis");
            write_bulk(out, b"version");
            write_bulk(out, version.as_bytes());
            write_bulk(out, b"proto");
            write_integer(out, if protocol == Protocol::Resp3 { 3 } else { 2 });
            write_bulk(out, b"id");
            write_integer(out, id);
            write_bulk(out, b"mode");
            write_bulk(out, b"standalone");
            write_bulk(out, b"role");
            write_bulk(out, b"master");
            write_bulk(out, b"modules");
            write_array_len(out, 0);
        }
        Next::Hello(protocol, reply.freeze())
    }

    /// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`, allowed by the configuration: stops
    /// slotproxy (the server this client sees), never a node. As on redis-server, the
    /// connection closes without a reply; `ABORT` has no shutdown to abort.
    fn shutdown(&mut self, args: &[Bytes]) {
        let mut save = None;
        let mut abort = false;
        for arg in &args[1..] {
            let arg = arg.to_ascii_lowercase();
            match arg.as_slice() {
                b"nosave" | b"save" if save.is_none() => save = Some(arg),
                b"now" | b"force" => {}
                b"abort" => abort = true,
                _ => return self.replies.error(ReplyError::Syntax),
            }
        }
        if abort {
            if args.len() > 2 {
                return self.replies.error(ReplyError::Syntax);
            }
            return self.replies.error(ReplyError::NoShutdown);
        }
        tracing::warn!(
            client = self.id,
            "SHUTDOWN from a client: stopping slotproxy"
        );
        self.shared.stop.notify_one();
        self.replies.push(Pending::Close(Bytes::new()));
        *self.stop_reading = true;
    }

    /// Queues a command inside `MULTI` ([`Transaction::queue`](super::transaction_state::Transaction)),
    /// or refuses it; `handling` is its row's.
    pub(super) fn queue(&mut self, spec: &CommandSpec, handling: Handling, request: Request) {
        let per_slot =
            self.shared.config.session.cross_slot_transactions == CrossSlotTransactions::PerSlot;
        let positions = &mut *self.key_positions;
        let slot_of = |request: &Request| keys_slot(positions, spec, request);
        match self
            .transaction
            .queue(spec, handling, request, per_slot, slot_of)
        {
            Ok(()) => self.replies.with(|out| write_simple(out, "QUEUED")),
            Err(error) => self.replies.error(error),
        }
    }

    /// `WATCH key [key ...]`: pins the transaction to the keys' slot and its primary, on the
    /// session's dedicated connection there (the request handed back).
    pub(super) fn watch(&mut self, spec: &CommandSpec, request: Request) -> Option<Forward> {
        let positions = &mut *self.key_positions;
        let slot_of = |request: &Request| keys_slot(positions, spec, request);
        match self.transaction.watch_slot(&request, slot_of) {
            Ok(slot) => Some(Forward(request, Plan::Watch(slot))),
            Err(error) => {
                self.replies.error(error);
                None
            }
        }
    }

    /// Ends the transaction because its `EXEC` was refused with `error` before it ran.
    pub(super) fn abort_exec(&mut self, error: &ReplyError) {
        self.end_transaction();
        self.replies.error(ReplyError::exec_refused(error));
    }

    /// Leaves any transaction and watch; closing the dedicated connection clears the node's
    /// watch state.
    fn end_transaction(&mut self) {
        if let Some((node, _)) = self.transaction.watch.take() {
            self.dedicated.retain(|(n, _, _)| !Arc::ptr_eq(n, &node));
        }
        *self.transaction = Transaction::default();
    }

    /// `SCAN` over every primary in turn (see `scan.rs`).
    fn scan(&mut self, request: &Request) -> Next {
        let call = scan::call(request.args(), self.shared.topology.slot_map().layout());
        match call {
            Ok(scan::Call::Node(phase, slot, part)) => {
                let batch = Box::new(ScanBatch::new(phase, request.args()));
                return Next::Forward(Forward(
                    request.clone(),
                    Plan::Parts(Merge::Scan(batch), vec![(Target::Slot(slot), part)]),
                ));
            }
            Ok(scan::Call::Finished) => self.replies.with(|out| {
                write_array_len(out, 2);
                write_bulk(out, b"0");
                write_array_len(out, 0);
            }),
            Ok(scan::Call::NoTopology) => {
                self.shared.topology.request_refresh();
                self.replies.error(ReplyError::NoNodeKnown);
            }
            Err(error) => self.replies.error(error),
        }
        Next::Done
    }
}

/// Starts a WAIT / WAITAOF once everything before it is answered.
fn wait(request: &Request) -> Forward {
    let plan = match Wait::parse(request) {
        Some(wait) => Plan::Wait(wait),
        // Let a node word the error about the arguments.
        None => Plan::Blocking(Target::AnyPrimary),
    };
    Forward(request.clone(), plan)
}

/// `ON` or `OFF`, in any case.
fn parse_on_off(arg: &[u8]) -> Option<bool> {
    let on = arg.eq_ignore_ascii_case(b"on");
    (on || arg.eq_ignore_ascii_case(b"off")).then_some(on)
}

/// Client and library names: printable ASCII without spaces, as redis-server requires.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}
