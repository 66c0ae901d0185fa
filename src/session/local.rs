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
//! This file is the session's side of those answers: the replies and the state changes are
//! made by types that take what they need and return a value (`introspect.rs`,
//! `tracking_state.rs`, `transaction.rs` on the transaction state, `reply_mode.rs`), and the
//! arms here reply with it, queue it, or send it.

use bytes::{Bytes, BytesMut};

use super::Session;
use super::introspect::{self, OneNodeCluster};
use super::plan::keys_slot;
use super::plan::{Plan, Wait};
use super::queue::Pending;
use super::scan;
use super::scan_batch::ScanBatch;
use super::split::Merge;
use super::target::Target;
use super::transaction::ExecStep;
use super::transaction_state::Transaction;
use crate::cluster::hash_slot;
use crate::command::CommandSpec;
use crate::command::policy::{Handling, Local};
use crate::config::CrossSlotTransactions;
use crate::config::ReadPolicy;
use crate::error::ReplyError;
use crate::protocol::reply::{
    write_array_len, write_bulk, write_integer, write_map_len, write_null, write_simple, write_text,
};
use crate::protocol::{Protocol, Request};

impl Session {
    /// Answers a proxy-local command.
    pub(super) fn local(&mut self, local: Local, request: &Request) {
        let args = request.args();
        match local {
            Local::Ping => match args.len() {
                1 => self.reply_with(|out| write_simple(out, "PONG")),
                2 => self.reply_with(|out| write_bulk(out, &args[1])),
                _ => self.reply_error(ReplyError::WrongArity("ping")),
            },
            Local::Echo => self.reply_with(|out| write_bulk(out, &args[1])),
            Local::Quit => {
                let mut out = BytesMut::new();
                write_simple(&mut out, "OK");
                self.pending.push_back(Pending::Close(out.freeze()));
                self.stop_reading = true;
            }
            Local::Select => match std::str::from_utf8(&args[1])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                None => self.reply_error(ReplyError::NotInteger),
                Some(0) => self.reply_with(|out| write_simple(out, "OK")),
                Some(_) => self.reply_error(ReplyError::SelectInCluster),
            },
            Local::Hello => self.hello(args),
            Local::Auth => self.auth(args),
            Local::Reset => {
                self.end_transaction();
                self.client_tracking().stop();
                // As redis: RESET ends MONITOR mode (the feed closes with the receiver).
                self.monitor = None;
                self.read_policy = self.shared.live.load().read_policy;
                self.read_mode_chosen = false;
                self.protocol = Protocol::Resp2;
                self.name = None;
                self.login.reset(&self.shared.acl);
                let mut reply = BytesMut::new();
                write_simple(&mut reply, "RESET");
                self.pubsub().reset(reply.freeze());
            }
            Local::ClientSetName => {
                if !valid_name(&args[2]) {
                    return self.reply_error(ReplyError::BadClientName);
                }
                self.name = (!args[2].is_empty()).then(|| args[2].clone());
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::ClientGetName => {
                let protocol = self.protocol;
                let name = self.name.clone();
                self.reply_with(|out| match name {
                    Some(name) => write_bulk(out, &name),
                    None => write_null(out, protocol),
                });
            }
            Local::ClientId => {
                let id = self.id as i64;
                self.reply_with(|out| write_integer(out, id));
            }
            Local::ClientSetInfo => {
                let attr = &args[2];
                if !attr.eq_ignore_ascii_case(b"lib-name") && !attr.eq_ignore_ascii_case(b"lib-ver")
                {
                    return self.reply_error(ReplyError::UnrecognizedOption(attr.clone()));
                }
                if !valid_name(&args[3]) {
                    return self.reply_error(ReplyError::BadClientInfo(
                        String::from_utf8_lossy(attr).to_ascii_lowercase(),
                    ));
                }
                let value = (!args[3].is_empty()).then(|| args[3].clone());
                if attr.eq_ignore_ascii_case(b"lib-name") {
                    self.info.lib_name = value;
                } else {
                    self.info.lib_ver = value;
                }
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::ReadMode => {
                // READONLY lets this connection read from replicas, READWRITE sends it back to
                // primaries (an explicit policy other than primary stays as configured).
                let readonly = args[0].eq_ignore_ascii_case(b"readonly");
                let configured = self.shared.live.load().read_policy;
                self.read_mode_chosen = true;
                self.read_policy = match (readonly, configured) {
                    (true, ReadPolicy::Primary) => ReadPolicy::PreferReplica,
                    (true, other) => other,
                    (false, _) => ReadPolicy::Primary,
                };
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::Multi => match self.transaction.multi() {
                Ok(()) => self.reply_with(|out| write_simple(out, "OK")),
                Err(error) => self.reply_error(error),
            },
            Local::Exec => match self.transaction.exec(&self.shared.scripts) {
                Ok(ExecStep::Run(batch, plan)) => self.dispatch(batch, plan),
                Ok(ExecStep::Empty) => self.reply_with(|out| write_array_len(out, 0)),
                Ok(ExecStep::Abort) => {
                    self.end_transaction();
                    self.reply_error(ReplyError::ExecAbort);
                }
                Err(error) => self.reply_error(error),
            },
            Local::Discard if !self.transaction.queuing() => {
                self.reply_error(ReplyError::DiscardWithoutMulti)
            }
            // UNWATCH outside MULTI (inside, it is queued).
            Local::Discard | Local::Unwatch => {
                self.end_transaction();
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::Watch | Local::Subscribe | Local::Publish | Local::PubSubCount => {
                self.reply_error(ReplyError::NotLocal)
            }
            Local::ClusterKeySlot => {
                let slot = i64::from(hash_slot(&args[2]).0);
                self.reply_with(|out| write_integer(out, slot));
            }
            Local::Scan => self.scan(request),
            Local::Wait => self.wait(request),
            Local::ClientTracking => self.client_tracking().command(request),
            Local::Shutdown => self.shutdown(args),
            Local::Role => self.reply_with(|out| {
                write_array_len(out, 3);
                write_bulk(out, b"master");
                write_integer(out, 0);
                write_array_len(out, 0);
            }),
            Local::Asking => self.reply_with(|out| write_simple(out, "OK")),
            // Sent again, it is ignored without a reply, as redis does.
            Local::Monitor if self.monitor.is_some() => {}
            Local::Monitor => {
                self.monitor = Some(self.shared.monitors.watch());
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::ClusterInfo => {
                let text = introspect::cluster_info(&self.shared.topology);
                let protocol = self.protocol;
                self.reply_with(|out| write_text(out, protocol, text.as_bytes()));
            }
            Local::ClusterMyId
            | Local::ClusterMyShardId
            | Local::ClusterSlots
            | Local::ClusterShards
            | Local::ClusterNodes => {
                let shared = self.shared.clone();
                let cluster = OneNodeCluster {
                    addr: self.info.cluster_addr(&shared.config.listen),
                    node_id: shared.run_id.as_str(),
                    protocol: self.protocol,
                };
                self.reply_with(|out| cluster.answer(local, out));
            }
            Local::ClientInfo => self.clients().info(),
            Local::ClientList => self.clients().list(args),
            Local::ClientKill => {
                if self.clients().kill(args) {
                    self.close_after_reply();
                }
            }
            Local::ClientUnblock => self.clients().unblock(args),
            Local::ClientNoEvict => match parse_on_off(&args[2]) {
                Some(on) => {
                    if let Some(seat) = &self.seat {
                        seat.entry().set_no_evict(on);
                    }
                    self.reply_with(|out| write_simple(out, "OK"));
                }
                None => self.reply_error(ReplyError::Syntax),
            },
            Local::ClientTrackingInfo => self.client_tracking().info(),
            Local::ClientGetRedir => self.client_tracking().getredir(),
            Local::ClientCaching => self.client_tracking().caching(args),
            Local::ClientReply => match self.reply_mode.command(&args[2]) {
                Ok(true) => self.reply_with(|out| write_simple(out, "OK")),
                Ok(false) => {}
                Err(error) => self.reply_error(error),
            },
            Local::ClientPause => match self.shared.pause.command(args) {
                Ok(()) => self.reply_with(|out| write_simple(out, "OK")),
                Err(error) => self.reply_error(error),
            },
            Local::ClientUnpause => {
                self.shared.pause.end();
                self.reply_with(|out| write_simple(out, "OK"));
            }
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    fn hello(&mut self, args: &[Bytes]) {
        let mut protocol = self.protocol;
        if let Some(version) = args.get(1) {
            match std::str::from_utf8(version)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(2) => protocol = Protocol::Resp2,
                Some(3) => protocol = Protocol::Resp3,
                Some(_) => return self.reply_error(ReplyError::NoProto),
                None => {
                    return self.reply_error(ReplyError::ProtocolVersionNotInteger);
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
                    return self.reply_error(ReplyError::BadClientName);
                }
                name = Some(args[i + 1].clone());
                i += 2;
            } else {
                return self.reply_error(ReplyError::HelloOption(option.clone()));
            }
        }
        if let Some((user, password)) = auth {
            if !self.authenticate(&user, &password) {
                return self.reply_error(ReplyError::WrongPass);
            }
        } else if !self.login.authenticated {
            return self.reply_error(ReplyError::NoAuthHello);
        }
        self.protocol = protocol;
        if let Some(name) = name {
            self.name = (!name.is_empty()).then_some(name);
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
        self.pubsub().switch_protocol(protocol, reply.freeze());
    }
}

impl Session {
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
                _ => return self.reply_error(ReplyError::Syntax),
            }
        }
        if abort {
            if args.len() > 2 {
                return self.reply_error(ReplyError::Syntax);
            }
            return self.reply_error(ReplyError::NoShutdown);
        }
        tracing::warn!(
            client = self.id,
            "SHUTDOWN from a client: stopping slotproxy"
        );
        self.shared.stop.notify_one();
        self.pending.push_back(Pending::Close(Bytes::new()));
        self.stop_reading = true;
    }

    /// Queues a command inside `MULTI` ([`Transaction::queue`](super::transaction_state::Transaction)),
    /// or refuses it; `handling` is its row's.
    pub(super) fn queue(&mut self, spec: &CommandSpec, handling: Handling, request: Request) {
        let per_slot =
            self.shared.config.session.cross_slot_transactions == CrossSlotTransactions::PerSlot;
        let positions = &mut self.key_positions;
        let slot_of = |request: &Request| keys_slot(positions, spec, request);
        match self
            .transaction
            .queue(spec, handling, request, per_slot, slot_of)
        {
            Ok(()) => self.reply_with(|out| write_simple(out, "QUEUED")),
            Err(error) => self.reply_error(error),
        }
    }

    /// `WATCH key [key ...]`: pins the transaction to the keys' slot and its primary.
    pub(super) fn watch(&mut self, spec: &CommandSpec, request: Request) {
        let positions = &mut self.key_positions;
        let slot_of = |request: &Request| keys_slot(positions, spec, request);
        match self.transaction.watch_slot(&request, slot_of) {
            Ok(slot) => self.dispatch(request, Plan::Watch(slot)),
            Err(error) => self.reply_error(error),
        }
    }

    /// Leaves any transaction and watch; closing the dedicated connection clears the node's
    /// watch state.
    pub(super) fn end_transaction(&mut self) {
        if let Some((node, _)) = self.transaction.watch.take() {
            self.drop_dedicated(&node);
        }
        self.transaction = Transaction::default();
    }

    /// `SCAN` over every primary in turn (see `scan.rs`).
    fn scan(&mut self, request: &Request) {
        let call = scan::call(request.args(), self.shared.topology.slot_map().layout());
        match call {
            Ok(scan::Call::Node(phase, slot, part)) => {
                let batch = Box::new(ScanBatch::new(phase, request.args()));
                self.dispatch(
                    request.clone(),
                    Plan::Parts(Merge::Scan(batch), vec![(Target::Slot(slot), part)]),
                )
            }
            Ok(scan::Call::Finished) => self.reply_with(|out| {
                write_array_len(out, 2);
                write_bulk(out, b"0");
                write_array_len(out, 0);
            }),
            Ok(scan::Call::NoTopology) => {
                self.shared.topology.request_refresh();
                self.reply_error(ReplyError::NoNodeKnown);
            }
            Err(error) => self.reply_error(error),
        }
    }

    /// Starts a WAIT / WAITAOF once everything before it is answered.
    fn wait(&mut self, request: &Request) {
        let plan = match Wait::parse(request) {
            Some(wait) => Plan::Wait(wait),
            // Let a node word the error about the arguments.
            None => Plan::Blocking(Target::AnyPrimary),
        };
        self.dispatch(request.clone(), plan);
    }
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
