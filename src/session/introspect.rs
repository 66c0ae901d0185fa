//! Introspection answered by the proxy: `CLUSTER INFO/MYID/MYSHARDID/SLOTS/SHARDS/NODES` as a
//! one-node cluster that owns every slot at the address the client connected to (so
//! cluster-aware clients work through the proxy too), and the `CLIENT` subcommands that describe
//! or configure the calling connection.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Session;
use super::scan::Fnv;
use crate::cluster::SLOT_COUNT;
use crate::command::policy::Local;
use crate::error::ReplyError;
use crate::protocol::Protocol;
use crate::protocol::reply::{
    write_array_len, write_bulk, write_integer, write_map_len, write_simple, write_text,
};
use crate::pubsub::Kind;

/// What `CLIENT INFO`/`CLIENT LIST` report about a client beyond its id and name.
#[derive(Debug, Default)]
pub(super) struct ClientInfo {
    /// The client's address.
    peer: Option<SocketAddr>,
    /// The proxy address the client connected to; also the address cluster replies give.
    local: Option<SocketAddr>,
    /// The socket's file descriptor, -1 where there is none to show.
    fd: i64,
    connected: Option<Instant>,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    pub(super) lib_name: Option<Bytes>,
    pub(super) lib_ver: Option<Bytes>,
}

impl ClientInfo {
    /// The client's address for logs (`?` when unknown).
    pub(super) fn peer_display(&self) -> String {
        self.peer.map_or_else(|| "?".to_owned(), |p| p.to_string())
    }

    /// Records the client's socket when its session starts.
    pub(super) fn connected(&mut self, stream: &TcpStream) {
        self.peer = stream.peer_addr().ok();
        self.local = stream.local_addr().ok();
        self.connected = Some(Instant::now());
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            self.fd = i64::from(stream.as_raw_fd());
        }
        #[cfg(not(unix))]
        {
            self.fd = -1;
        }
    }
}

impl Session {
    /// Answers a `CLUSTER` or `CLIENT` introspection command.
    pub(super) fn introspect(&mut self, local: Local, args: &[Bytes]) {
        match local {
            Local::ClusterInfo => {
                let text = cluster_info(&self.shared.topology);
                let protocol = self.protocol;
                self.reply_with(|out| write_text(out, protocol, text.as_bytes()));
            }
            Local::ClusterMyId => {
                let id = self.node_id();
                self.reply_with(|out| write_bulk(out, id.as_bytes()));
            }
            Local::ClusterMyShardId => {
                let id = hex_id(b"shard", self.cluster_addr());
                self.reply_with(|out| write_bulk(out, id.as_bytes()));
            }
            Local::ClusterSlots => {
                let (addr, id, protocol) = (self.cluster_addr(), self.node_id(), self.protocol);
                self.reply_with(|out| {
                    write_array_len(out, 1);
                    write_array_len(out, 3);
                    write_integer(out, 0);
                    write_integer(out, i64::from(SLOT_COUNT - 1));
                    write_array_len(out, 4);
                    write_bulk(out, ip_text(addr).as_bytes());
                    write_integer(out, i64::from(addr.port()));
                    write_bulk(out, id.as_bytes());
                    // Redis 7's per-node metadata (hostname...): none.
                    write_map_len(out, protocol, 0);
                });
            }
            Local::ClusterShards => {
                let (addr, id, protocol) = (self.cluster_addr(), self.node_id(), self.protocol);
                let ip = ip_text(addr);
                self.reply_with(|out| {
                    write_array_len(out, 1);
                    write_map_len(out, protocol, 2);
                    write_bulk(out, b"slots");
                    write_array_len(out, 2);
                    write_integer(out, 0);
                    write_integer(out, i64::from(SLOT_COUNT - 1));
                    write_bulk(out, b"nodes");
                    write_array_len(out, 1);
                    write_map_len(out, protocol, 7);
                    write_bulk(out, b"id");
                    write_bulk(out, id.as_bytes());
                    write_bulk(out, b"port");
                    write_integer(out, i64::from(addr.port()));
                    write_bulk(out, b"ip");
                    write_bulk(out, ip.as_bytes());
                    write_bulk(out, b"endpoint");
                    write_bulk(out, ip.as_bytes());
                    write_bulk(out, b"role");
                    write_bulk(out, b"master");
                    write_bulk(out, b"replication-offset");
                    write_integer(out, 0);
                    write_bulk(out, b"health");
                    write_bulk(out, b"online");
                });
            }
            Local::ClusterNodes => {
                let addr = self.cluster_addr();
                let line = format!(
                    "{} {}:{}@{} myself,master - 0 0 0 connected 0-{}\n",
                    self.node_id(),
                    ip_text(addr),
                    addr.port(),
                    addr.port(),
                    SLOT_COUNT - 1
                );
                let protocol = self.protocol;
                self.reply_with(|out| write_text(out, protocol, line.as_bytes()));
            }
            Local::ClientInfo => {
                let line = self.client_line("client|info");
                let protocol = self.protocol;
                self.reply_with(|out| write_text(out, protocol, line.as_bytes()));
            }
            Local::ClientList => self.client_list(args),
            Local::ClientNoEvict => {
                if args[2].eq_ignore_ascii_case(b"on") || args[2].eq_ignore_ascii_case(b"off") {
                    self.reply_with(|out| write_simple(out, "OK"));
                } else {
                    self.reply_error(ReplyError::Syntax);
                }
            }
            Local::ClientTrackingInfo => self.client_trackinginfo(),
            Local::ClientGetRedir => self.client_getredir(),
            Local::ClientCaching => self.client_caching(args),
            // OFF and SKIP answer nothing at all (see `reply_mode.rs`).
            Local::ClientReply => {
                if args[2].eq_ignore_ascii_case(b"on") {
                    self.reply_mode.on();
                    self.reply_with(|out| write_simple(out, "OK"));
                } else if args[2].eq_ignore_ascii_case(b"off") {
                    self.reply_mode.off();
                } else if args[2].eq_ignore_ascii_case(b"skip") {
                    self.reply_mode.skip();
                } else {
                    self.reply_error(ReplyError::Syntax);
                }
            }
            _ => self.reply_error(ReplyError::NotIntrospection),
        }
    }

    /// The address cluster replies name: the one the client connected to (else the configured
    /// listen address).
    fn cluster_addr(&self) -> SocketAddr {
        self.info
            .local
            .or_else(|| self.shared.config.listen.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6379)))
    }

    /// The proxy's node id at the address the client connected to.
    fn node_id(&self) -> String {
        hex_id(b"node", self.cluster_addr())
    }

    /// `CLIENT LIST [TYPE type] [ID id [id ...]]`: the caller's line when it matches.
    fn client_list(&mut self, args: &[Bytes]) {
        let listed = if args.len() == 4 && args[2].eq_ignore_ascii_case(b"type") {
            let kind = String::from_utf8_lossy(&args[3]).to_ascii_lowercase();
            match kind.as_str() {
                "normal" => !self.subs.any(),
                "pubsub" => self.subs.any(),
                "master" | "replica" | "slave" => false,
                _ => {
                    return self.reply_error(ReplyError::UnknownClientType(args[3].clone()));
                }
            }
        } else if args.len() > 3 && args[2].eq_ignore_ascii_case(b"id") {
            let mut listed = false;
            for id in &args[3..] {
                match std::str::from_utf8(id)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                {
                    Some(id) => listed |= id == self.id as i64,
                    None => return self.reply_error(ReplyError::InvalidClientId),
                }
            }
            listed
        } else if args.len() == 2 {
            true
        } else {
            return self.reply_error(ReplyError::Syntax);
        };
        let text = if listed {
            self.client_line("client|list")
        } else {
            String::new()
        };
        let protocol = self.protocol;
        self.reply_with(|out| write_text(out, protocol, text.as_bytes()));
    }

    /// The caller's `CLIENT LIST` line (with its newline), in redis' field order.
    pub(super) fn client_line(&self, command: &str) -> String {
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let age = self.info.connected.map_or(0, |at| at.elapsed().as_secs());
        format!(
            "id={} addr={} laddr={} fd={} name={} age={age} idle=0 flags={} db=0 sub={} psub={} \
             ssub={} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 \
             omem=0 tot-mem=0 events=r cmd={command} user={} redir=-1 resp={} lib-name={} \
             lib-ver={}\n",
            self.id,
            addr(self.info.peer),
            addr(self.info.local),
            self.info.fd,
            text(&self.name),
            if self.subs.any() { "P" } else { "N" },
            self.subs.len(Kind::Channel),
            self.subs.len(Kind::Pattern),
            self.subs.len(Kind::Shard),
            self.user.name,
            match self.protocol {
                Protocol::Resp2 => 2,
                Protocol::Resp3 => 3,
            },
            text(&self.info.lib_name),
            text(&self.info.lib_ver),
        )
    }
}

impl Session {
    /// What `INFO` reports from slotproxy itself rather than from the nodes.
    pub(super) fn proxy_facts(&self) -> super::split::info::ProxyFacts {
        let topology = &self.shared.topology;
        let ok = crate::cluster::state::check(&topology.slot_map()).is_ok()
            && topology.stats().down_reason().is_none();
        let metrics = &self.shared.metrics;
        let total = metrics.commands_answered();
        super::split::info::ProxyFacts {
            cluster_state: if ok { "ok" } else { "fail" },
            connected_clients: self
                .shared
                .clients
                .load(std::sync::atomic::Ordering::Relaxed) as u64,
            total_commands_processed: total,
            instantaneous_ops_per_sec: metrics.ops_per_sec(total),
            master_replid: hex_id(b"replid", self.cluster_addr()),
        }
    }
}

/// `CLUSTER INFO` of a one-node cluster owning every slot: `fail` when the proxy's slot map
/// leaves slots uncovered, a primary fails its health check with no replica promoted yet, or no
/// node has answered for longer than the retry deadline (the same truth as `/readyz`).
fn cluster_info(topology: &crate::cluster::Topology) -> String {
    let map = topology.slot_map();
    let all = usize::from(SLOT_COUNT);
    let covered = map.covered_slots();
    let failing: usize = map
        .shards()
        .iter()
        .zip(map.layout())
        .filter(|(shard, _)| !shard.primary.health().is_up())
        .flat_map(|(_, layout)| &layout.ranges)
        .map(|&(start, end)| usize::from(end.saturating_sub(start)) + 1)
        .sum();
    let ok = covered.saturating_sub(failing);
    let healthy =
        crate::cluster::state::check(&map).is_ok() && topology.stats().down_reason().is_none();
    let state = if healthy { "ok" } else { "fail" };
    let mut text = String::new();
    for (key, value) in [
        ("cluster_state", state.to_string()),
        ("cluster_slots_assigned", all.to_string()),
        ("cluster_slots_ok", ok.to_string()),
        ("cluster_slots_pfail", failing.to_string()),
        ("cluster_slots_fail", (all - covered).to_string()),
        ("cluster_known_nodes", "1".to_string()),
        ("cluster_size", "1".to_string()),
        ("cluster_current_epoch", "0".to_string()),
        ("cluster_my_epoch", "0".to_string()),
        ("cluster_stats_messages_sent", "0".to_string()),
        ("cluster_stats_messages_received", "0".to_string()),
        ("total_cluster_links_buffer_limit_exceeded", "0".to_string()),
    ] {
        let _ = write!(text, "{key}:{value}\r\n");
    }
    text
}

/// A 40-hex-digit id (like a node's) for `kind` at `addr`: a hash of both, stable across runs.
fn hex_id(kind: &[u8], addr: SocketAddr) -> String {
    let addr = addr.to_string();
    let mut id = String::with_capacity(48);
    for part in [&b"a"[..], b"b", b"c"] {
        let hash = Fnv::new()
            .bytes(b"slotproxy ")
            .bytes(kind)
            .bytes(part)
            .bytes(addr.as_bytes());
        let _ = write!(id, "{:016x}", hash.0);
    }
    id.truncate(40);
    id
}

/// The IP as redis prints it (an IPv4-mapped IPv6 address as plain IPv4).
fn ip_text(addr: SocketAddr) -> String {
    addr.ip().to_canonical().to_string()
}
