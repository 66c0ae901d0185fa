//! `SlotMap`: an immutable snapshot of which shard serves each of the 16384 slots.
//!
//! Built from a node's `CLUSTER SHARDS` (Redis 7+) or `CLUSTER SLOTS` reply. A refresh builds a
//! whole new map and swaps it in; nothing mutates a published map.

use std::sync::Arc;

use redis_protocol::resp2::types::OwnedFrame;

use super::slot::{SLOT_COUNT, Slot};
use crate::backend::{BackendPool, Node};

/// Marks a slot no shard serves.
const UNASSIGNED: u16 = u16::MAX;

/// A reply that does not describe a usable topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable topology reply: {0}")]
pub struct TopologyError(pub String);

/// One shard as a node described it: addresses only, normalised so two layouts compare equal
/// exactly when they describe the same topology.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShardLayout {
    /// Inclusive slot ranges, sorted.
    pub ranges: Vec<(u16, u16)>,
    /// The primary's `host:port`.
    pub primary: String,
    /// The replicas' `host:port`, sorted; only those reported healthy.
    pub replicas: Vec<String>,
    /// Replicas not reported failed (healthy or still loading): those that can confirm a
    /// write for `ack = replicated`.
    pub live_replicas: usize,
}

/// A shard with live node handles.
#[derive(Debug)]
pub struct Shard {
    /// Where writes (and, for now, reads) go.
    pub primary: Arc<Node>,
    /// Read replicas.
    pub replicas: Vec<Arc<Node>>,
}

/// Which shard serves each slot, plus the nodes themselves.
#[derive(Debug)]
pub struct SlotMap {
    /// `owners[slot]` is an index into `shards`, or `UNASSIGNED`.
    owners: Box<[u16]>,
    shards: Vec<Shard>,
    layout: Vec<ShardLayout>,
    generation: u64,
}

impl SlotMap {
    /// A map that serves no slot (before the first discovery).
    pub fn empty() -> Self {
        Self {
            owners: vec![UNASSIGNED; SLOT_COUNT as usize].into_boxed_slice(),
            shards: Vec::new(),
            layout: Vec::new(),
            generation: 0,
        }
    }

    /// Builds a map from a layout, taking node handles from `pool`.
    pub fn build(mut layout: Vec<ShardLayout>, pool: &BackendPool, generation: u64) -> Self {
        normalise(&mut layout);
        let mut owners = vec![UNASSIGNED; SLOT_COUNT as usize].into_boxed_slice();
        let mut shards = Vec::with_capacity(layout.len());
        for (index, shard) in layout.iter().enumerate() {
            for &(start, end) in &shard.ranges {
                for slot in start..=end.min(SLOT_COUNT - 1) {
                    owners[slot as usize] = index as u16;
                }
            }
            shards.push(Shard {
                primary: pool.node(&shard.primary),
                replicas: shard.replicas.iter().map(|r| pool.node(r)).collect(),
            });
        }
        Self {
            owners,
            shards,
            layout,
            generation,
        }
    }

    /// The shard serving `slot`, if any.
    pub fn shard(&self, slot: Slot) -> Option<&Shard> {
        match self.owners[slot.index()] {
            UNASSIGNED => None,
            index => self.shards.get(index as usize),
        }
    }

    /// The primary serving `slot`, if any.
    pub fn primary(&self, slot: Slot) -> Option<&Arc<Node>> {
        self.shard(slot).map(|s| &s.primary)
    }

    /// Every shard, in layout order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The layout this map was built from.
    pub fn layout(&self) -> &[ShardLayout] {
        &self.layout
    }

    /// Counts up by one for each published change of topology.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many slots have an owner.
    pub fn covered_slots(&self) -> usize {
        self.owners.iter().filter(|&&o| o != UNASSIGNED).count()
    }

    /// Primaries that serve slots but failed their last health check.
    pub fn down_primaries(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.serving_shards()
            .map(|shard| &shard.primary)
            .filter(|primary| !primary.health().is_up())
    }

    /// The nodes worth a health check, each with whether it is a primary: the primaries that
    /// serve slots and their replicas. (A failed primary that lost its slots to a replica stays
    /// listed by the cluster as a shard of its own, with no slots; nothing is sent to it.)
    pub fn checked_nodes(&self) -> impl Iterator<Item = (&Arc<Node>, bool)> {
        self.serving_shards().flat_map(|shard| {
            std::iter::once((&shard.primary, true)).chain(shard.replicas.iter().map(|r| (r, false)))
        })
    }

    fn serving_shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards
            .iter()
            .zip(&self.layout)
            .filter(|(_, layout)| !layout.ranges.is_empty())
            .map(|(shard, _)| shard)
    }

    /// Every node address in the map, primaries first.
    pub fn node_addrs(&self) -> Vec<&str> {
        let primaries = self.layout.iter().map(|s| s.primary.as_str());
        let replicas = self
            .layout
            .iter()
            .flat_map(|s| s.replicas.iter().map(String::as_str));
        primaries.chain(replicas).collect()
    }
}

fn normalise(layout: &mut [ShardLayout]) {
    for shard in layout.iter_mut() {
        shard.ranges.sort_unstable();
        shard.replicas.sort_unstable();
    }
    layout.sort_unstable();
}

/// Parses a `CLUSTER SHARDS` reply. `asked_host` stands in for nodes that don't know their IP.
/// With `tls`, nodes are addressed by their `tls-port` (a node lists both its plain and its TLS
/// port, whichever kind of connection asks).
///
/// # Errors
/// `TopologyError` when the reply has the wrong shape.
pub fn parse_shards(
    frame: &OwnedFrame,
    asked_host: &str,
    tls: bool,
) -> Result<Vec<ShardLayout>, TopologyError> {
    let shards = array(frame, "CLUSTER SHARDS reply")?;
    let mut layout = Vec::with_capacity(shards.len());
    for shard in shards {
        let fields = array(shard, "shard")?;
        let slots = array(field(fields, "slots")?, "slots")?;
        let mut ranges = Vec::new();
        for pair in slots.chunks(2) {
            match pair {
                [start, end] => ranges.push((slot_number(start)?, slot_number(end)?)),
                _ => return Err(TopologyError("odd number of slot bounds".into())),
            }
        }
        let mut primary = None;
        let mut replicas = Vec::new();
        let mut live_replicas = 0;
        for node in array(field(fields, "nodes")?, "nodes")? {
            let node = array(node, "node")?;
            let addr = node_addr(node, asked_host, tls)?;
            let health = text(field(node, "health")?);
            match text(field(node, "role")?).as_str() {
                "master" => primary = Some(addr),
                _ => {
                    live_replicas += usize::from(!health.starts_with("fail"));
                    if health == "online" {
                        replicas.push(addr);
                    }
                }
            }
        }
        // A shard whose primary failed and has no promoted replica yet still owns its slots on
        // paper; keep it so requests go there and get a CLUSTERDOWN or MOVED that says so.
        let Some(primary) = primary else { continue };
        layout.push(ShardLayout {
            ranges,
            primary,
            replicas,
            live_replicas,
        });
    }
    Ok(layout)
}

/// Parses a `CLUSTER SLOTS` reply (Redis 3-6 and fallback).
///
/// # Errors
/// `TopologyError` when the reply has the wrong shape.
pub fn parse_slots(
    frame: &OwnedFrame,
    asked_host: &str,
) -> Result<Vec<ShardLayout>, TopologyError> {
    let mut layout: Vec<ShardLayout> = Vec::new();
    for entry in array(frame, "CLUSTER SLOTS reply")? {
        let entry = array(entry, "slot range")?;
        let [start, end, primary, replicas @ ..] = entry.as_slice() else {
            return Err(TopologyError("slot range with no primary".into()));
        };
        let range = (slot_number(start)?, slot_number(end)?);
        let primary = slots_node_addr(primary, asked_host)?;
        let replicas = replicas
            .iter()
            .map(|r| slots_node_addr(r, asked_host))
            .collect::<Result<Vec<_>, _>>()?;
        match layout.iter_mut().find(|s| s.primary == primary) {
            Some(shard) => shard.ranges.push(range),
            None => layout.push(ShardLayout {
                ranges: vec![range],
                primary,
                live_replicas: replicas.len(),
                replicas,
            }),
        }
    }
    Ok(layout)
}

fn array<'a>(frame: &'a OwnedFrame, what: &str) -> Result<&'a Vec<OwnedFrame>, TopologyError> {
    match frame {
        OwnedFrame::Array(items) => Ok(items),
        other => Err(TopologyError(format!(
            "{what}: expected an array, got {other:?}"
        ))),
    }
}

/// Looks `name` up in a flat `[key, value, key, value...]` array.
fn field<'a>(fields: &'a [OwnedFrame], name: &str) -> Result<&'a OwnedFrame, TopologyError> {
    fields
        .chunks(2)
        .find(|pair| text(&pair[0]) == name)
        .and_then(|pair| pair.get(1))
        .ok_or_else(|| TopologyError(format!("missing field '{name}'")))
}

fn text(frame: &OwnedFrame) -> String {
    match frame {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            String::from_utf8_lossy(b).into()
        }
        OwnedFrame::Integer(i) => i.to_string(),
        _ => String::new(),
    }
}

fn integer(frame: &OwnedFrame) -> Result<i64, TopologyError> {
    match frame {
        OwnedFrame::Integer(i) => Ok(*i),
        other => text(other)
            .parse()
            .map_err(|_| TopologyError(format!("expected an integer, got {other:?}"))),
    }
}

fn slot_number(frame: &OwnedFrame) -> Result<u16, TopologyError> {
    let n = integer(frame)?;
    u16::try_from(n)
        .ok()
        .filter(|&s| s < SLOT_COUNT)
        .ok_or_else(|| TopologyError(format!("slot {n} out of range")))
}

fn host_port(host: &str, port: i64, asked_host: &str) -> Result<String, TopologyError> {
    let port = u16::try_from(port).map_err(|_| TopologyError(format!("bad port {port}")))?;
    let host = if host.is_empty() || host == "?" {
        asked_host
    } else {
        host
    };
    if host.contains(':') {
        Ok(format!("[{host}]:{port}"))
    } else {
        Ok(format!("{host}:{port}"))
    }
}

fn node_addr(node: &[OwnedFrame], asked_host: &str, tls: bool) -> Result<String, TopologyError> {
    let endpoint = field(node, "endpoint").map(text).unwrap_or_default();
    let host = if endpoint.is_empty() || endpoint == "?" {
        field(node, "ip").map(text).unwrap_or_default()
    } else {
        endpoint
    };
    let port = match field(node, "tls-port") {
        Ok(port) if tls => port,
        _ => field(node, "port")?,
    };
    host_port(&host, integer(port)?, asked_host)
}

fn slots_node_addr(frame: &OwnedFrame, asked_host: &str) -> Result<String, TopologyError> {
    match array(frame, "node")?.as_slice() {
        [host, port, ..] => host_port(&text(host), integer(port)?, asked_host),
        _ => Err(TopologyError("node without host and port".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    fn shards_node(port: i64, role: &str, health: &str) -> OwnedFrame {
        OwnedFrame::Array(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            OwnedFrame::Integer(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    #[test]
    fn cluster_shards_reply_parses_into_layout() {
        let shard = |ranges: &[i64], nodes: Vec<OwnedFrame>| {
            OwnedFrame::Array(vec![
                bulk("slots"),
                OwnedFrame::Array(ranges.iter().map(|&s| OwnedFrame::Integer(s)).collect()),
                bulk("nodes"),
                OwnedFrame::Array(nodes),
            ])
        };
        let reply = OwnedFrame::Array(vec![
            shard(
                &[0, 5460, 10000, 10001],
                vec![
                    shards_node(7000, "master", "online"),
                    shards_node(7003, "replica", "online"),
                ],
            ),
            shard(
                &[5461, 9999],
                vec![
                    shards_node(7001, "master", "online"),
                    shards_node(7004, "replica", "loading"),
                ],
            ),
        ]);
        let layout = parse_shards(&reply, "127.0.0.1", false).unwrap();
        assert_eq!(
            layout,
            vec![
                ShardLayout {
                    ranges: vec![(0, 5460), (10000, 10001)],
                    primary: "127.0.0.1:7000".into(),
                    replicas: vec!["127.0.0.1:7003".into()],
                    live_replicas: 1,
                },
                ShardLayout {
                    ranges: vec![(5461, 9999)],
                    primary: "127.0.0.1:7001".into(),
                    replicas: vec![],
                    live_replicas: 1,
                },
            ]
        );
    }

    #[test]
    fn cluster_slots_reply_parses_and_merges_ranges() {
        let node = |host: &str, port: i64| {
            OwnedFrame::Array(vec![bulk(host), OwnedFrame::Integer(port), bulk("id")])
        };
        let range = |s: i64, e: i64, nodes: Vec<OwnedFrame>| {
            let mut v = vec![OwnedFrame::Integer(s), OwnedFrame::Integer(e)];
            v.extend(nodes);
            OwnedFrame::Array(v)
        };
        let reply = OwnedFrame::Array(vec![
            range(0, 99, vec![node("", 7000), node("10.0.0.2", 7003)]),
            range(100, 16383, vec![node("10.0.0.1", 7001)]),
            range(200, 300, vec![node("", 7000)]),
        ]);
        let layout = parse_slots(&reply, "10.0.0.9").unwrap();
        assert_eq!(layout[0].primary, "10.0.0.9:7000");
        assert_eq!(layout[0].ranges, vec![(0, 99), (200, 300)]);
        assert_eq!(layout[0].replicas, vec!["10.0.0.2:7003".to_string()]);
        assert_eq!(layout[1].primary, "10.0.0.1:7001");
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        let cases = [
            OwnedFrame::Integer(1),
            OwnedFrame::Array(vec![OwnedFrame::Integer(1)]),
            OwnedFrame::Array(vec![OwnedFrame::Array(vec![bulk("slots")])]),
        ];
        for reply in &cases {
            assert!(parse_shards(reply, "h", false).is_err(), "{reply:?}");
            assert!(parse_slots(reply, "h").is_err(), "{reply:?}");
        }
    }
}
