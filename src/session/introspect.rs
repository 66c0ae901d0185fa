//! Introspection answered by the proxy: `CLUSTER INFO/MYID/MYSHARDID/SLOTS/SHARDS/NODES` as a
//! one-node cluster that owns every slot at the address the client connected to (so
//! cluster-aware clients work through the proxy too), and what `INFO` reports from slotproxy
//! itself. No session state: [`OneNodeCluster`] is what a client sees, built from its address,
//! the proxy's run id and the client's protocol (the `CLIENT` subcommands are in `clients.rs`).

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::scan::Fnv;
use super::shared::Shared;
use super::split::info::ProxyFacts;
use crate::cluster::SLOT_COUNT;
use crate::command::policy::Local;
use crate::error::ReplyError;
use crate::protocol::Protocol;
use crate::protocol::reply::{
    write_array_len, write_bulk, write_integer, write_map_len, write_text,
};

/// slotproxy as a one-node cluster owning every slot, as a client connected to `addr` sees it.
pub(super) struct OneNodeCluster<'a> {
    /// The address cluster replies name (see [`super::client_info::ClientInfo::cluster_addr`]).
    pub(super) addr: SocketAddr,
    /// The proxy's node id: its run id (see [`crate::cluster::RunId`]).
    pub(super) node_id: &'a str,
    pub(super) protocol: Protocol,
}

impl OneNodeCluster<'_> {
    /// Writes the reply to the `CLUSTER` introspection command `local` (`CLUSTER INFO` is
    /// [`cluster_info`]); other commands get an error.
    pub(super) fn answer(&self, local: Local, out: &mut BytesMut) {
        let (addr, id, protocol) = (self.addr, self.node_id, self.protocol);
        match local {
            Local::ClusterMyId => write_bulk(out, id.as_bytes()),
            Local::ClusterMyShardId => write_bulk(out, hex_id(b"shard", addr).as_bytes()),
            Local::ClusterSlots => {
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
            }
            Local::ClusterShards => {
                let ip = ip_text(addr);
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
            }
            Local::ClusterNodes => {
                let line = format!(
                    "{id} {}:{}@{} myself,master - 0 0 0 connected 0-{}\n",
                    ip_text(addr),
                    addr.port(),
                    addr.port(),
                    SLOT_COUNT - 1
                );
                write_text(out, protocol, line.as_bytes());
            }
            _ => ReplyError::NotIntrospection.write(out),
        }
    }
}

/// What `INFO` reports from slotproxy itself rather than from the nodes, for a client
/// connected to `addr`.
pub(super) fn proxy_facts(shared: &Shared, addr: SocketAddr) -> ProxyFacts {
    let topology = &shared.topology;
    let ok = crate::cluster::state::check(&topology.slot_map()).is_ok()
        && topology.stats().down_reason().is_none();
    let metrics = &shared.metrics;
    let total = metrics.commands_answered();
    ProxyFacts {
        cluster_state: if ok { "ok" } else { "fail" },
        connected_clients: shared.registry.len() as u64,
        blocked_clients: shared.registry.blocked() as u64,
        run_id: shared.run_id.as_str().to_owned(),
        total_commands_processed: total,
        evicted_clients: metrics.clients_evicted.get(),
        instantaneous_ops_per_sec: metrics.ops_per_sec(total),
        master_replid: hex_id(b"replid", addr),
    }
}

/// `CLUSTER INFO` of a one-node cluster owning every slot: `fail` when the proxy's slot map
/// leaves slots uncovered, a primary fails its health check with no replica promoted yet, or no
/// node has answered for longer than the retry deadline (the same truth as `/readyz`).
pub(super) fn cluster_info(topology: &crate::cluster::Topology) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::View;

    fn answer(local: Local, addr: &str, protocol: Protocol) -> BytesMut {
        let cluster = OneNodeCluster {
            addr: addr.parse().expect("address"),
            node_id: "0123456789abcdef0123456789abcdef01234567",
            protocol,
        };
        let mut out = BytesMut::new();
        cluster.answer(local, &mut out);
        out
    }

    #[test]
    fn cluster_slots_names_the_address_the_client_connected_to_as_owning_every_slot() {
        let out = answer(
            Local::ClusterSlots,
            "[::ffff:10.0.0.7]:7001",
            Protocol::Resp2,
        );
        let mut shards = View::of(&out).and_then(View::elements).expect("array");
        assert_eq!(shards.len(), 1);
        let mut range = shards.next_view().and_then(View::elements).expect("range");
        assert_eq!(range.next_view().and_then(|v| v.integer()), Some(0));
        assert_eq!(range.next_view().and_then(|v| v.integer()), Some(16383));
        let mut node = range.next_view().and_then(View::elements).expect("node");
        // An IPv4-mapped address is shown as plain IPv4, as redis does.
        assert_eq!(
            node.next_view().and_then(|v| v.bulk()),
            Some(&b"10.0.0.7"[..])
        );
        assert_eq!(node.next_view().and_then(|v| v.integer()), Some(7001));
        let id = node.next_view().and_then(|v| v.bulk());
        assert_eq!(id, Some(&b"0123456789abcdef0123456789abcdef01234567"[..]));
    }

    #[test]
    fn cluster_nodes_is_one_line_owning_every_slot_as_myself_and_master() {
        let out = answer(Local::ClusterNodes, "127.0.0.1:7000", Protocol::Resp2);
        let text = View::of(&out).and_then(|v| v.bulk()).expect("bulk");
        assert_eq!(
            text,
            b"0123456789abcdef0123456789abcdef01234567 127.0.0.1:7000@7000 \
              myself,master - 0 0 0 connected 0-16383\n"
        );
    }

    #[test]
    fn shard_and_replication_ids_are_stable_per_address_and_differ_by_kind() {
        let here: SocketAddr = "127.0.0.1:7000".parse().expect("address");
        let there: SocketAddr = "127.0.0.1:7001".parse().expect("address");
        let shard = hex_id(b"shard", here);
        assert_eq!(shard.len(), 40);
        assert!(shard.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(shard, hex_id(b"shard", here));
        assert_ne!(shard, hex_id(b"shard", there));
        assert_ne!(shard, hex_id(b"replid", here));
        let out = answer(Local::ClusterMyShardId, "127.0.0.1:7000", Protocol::Resp3);
        assert_eq!(
            View::of(&out).and_then(|v| v.bulk()),
            Some(shard.as_bytes())
        );
    }

    #[test]
    fn other_commands_get_an_error() {
        let out = answer(Local::Ping, "127.0.0.1:7000", Protocol::Resp2);
        assert!(matches!(View::of(&out), Some(View::Error(_))));
    }
}
