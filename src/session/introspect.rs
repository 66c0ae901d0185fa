//! Introspection answered by the proxy: `CLUSTER INFO/MYID/MYSHARDID/SLOTS/SHARDS/NODES` as a
//! one-node cluster that owns every slot at the address the client connected to (so
//! cluster-aware clients work through the proxy too), and the `CLIENT` subcommands (those about
//! other clients are in `clients.rs`).

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;

use super::Session;
use super::scan::Fnv;
use crate::cluster::SLOT_COUNT;
use crate::command::policy::Local;
use crate::error::ReplyError;
use crate::protocol::reply::{
    write_array_len, write_bulk, write_integer, write_map_len, write_simple, write_text,
};

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
            Local::ClientInfo => self.client_info(),
            Local::ClientList => self.client_list(args),
            Local::ClientKill => self.client_kill(args),
            Local::ClientUnblock => self.client_unblock(args),
            Local::ClientNoEvict => {
                let on = args[2].eq_ignore_ascii_case(b"on");
                if on || args[2].eq_ignore_ascii_case(b"off") {
                    if let Some(seat) = &self.seat {
                        seat.entry().set_no_evict(on);
                    }
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
            .addresses()
            .1
            .or_else(|| self.shared.config.listen.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6379)))
    }

    /// The proxy's node id: its run id (see [`crate::cluster::RunId`]).
    fn node_id(&self) -> String {
        self.shared.run_id.as_str().to_owned()
    }

    /// This client's `CLIENT LIST` line (with its newline) as last published, showing
    /// `command` as the current one.
    pub(super) fn client_line(&self, command: &str) -> String {
        self.seat
            .as_ref()
            .map(|seat| crate::clients::client_line(seat.entry(), command))
            .unwrap_or_default()
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
            connected_clients: self.shared.registry.len() as u64,
            blocked_clients: self.shared.registry.blocked() as u64,
            run_id: self.shared.run_id.as_str().to_owned(),
            total_commands_processed: total,
            evicted_clients: metrics.clients_evicted.get(),
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
