//! `INFO` through the proxy: every primary's INFO text merged into one, in redis' INFO format.
//!
//! The request goes unchanged to every primary, so each node has already picked the sections the
//! client asked for (`INFO`, `INFO keyspace memory`, `INFO all`...); this file parses whatever
//! came back and writes it out again section by section, in the first primary's section order,
//! with what slotproxy reports as its own ([`ProxyFacts`]). Field names are unique across INFO
//! sections (clients such as redis-py flatten INFO into one map), so one table of per-field rules,
//! in [`fields`], serves every section:
//!
//! - `# Proxy` comes first, with `proxy:slotproxy`, `proxy_version` and `cluster_primaries` (the
//!   number of replies merged), `cluster_state` (as `CLUSTER INFO` says) and slotproxy's own
//!   `run_id` (random per process; the nodes' are dropped). It goes with the
//!   `# Server` section: a client that asked only for
//!   `INFO keyspace` gets only the keyspace, as from redis-server. `INFO proxy` alone is not
//!   served (the merge only sees the replies, and nodes return nothing for an unknown section).
//! - `# Keyspace`, `# Commandstats`, `# Errorstats`: per line (`db0`, `cmdstat_get`...) the
//!   numbers are summed; `avg_ttl` is the mean of the nodes' `avg_ttl` weighted by their
//!   `expires` (it is an average over keys with a TTL), skipping nodes that report 0 (no
//!   estimate), and 0 when no node has one; `usec_per_call` is recomputed as `usec / calls`.
//!   `# Latencystats` percentiles take the worst node's value: the cluster's true percentile lies
//!   between the nodes' smallest and largest, so the largest is a safe upper bound.
//! - `connected_clients`, `blocked_clients`, `total_commands_processed`,
//!   `instantaneous_ops_per_sec` and `evicted_clients` are slotproxy's own (its clients, as
//!   `CLIENT LIST` shows them, the commands it answered, the clients it evicted for
//!   `max_client_memory_bytes`; the nodes would count slotproxy's connections and health
//!   checks).
//! - Other counters and sizes (`used_memory`, `keyspace_hits`, `used_cpu_sys`...) are summed, keeping the nodes' decimals. `maxmemory`
//!   is summed unless a node has none (0 = unlimited), then it is 0. Every `*_human` field is
//!   recomputed from its merged base with redis' `bytesToHuman` rules, and the memory ratios and
//!   percentages (`mem_fragmentation_ratio`, `used_memory_peak_perc`...) from the merged sums.
//! - Flags and states take the worst node: `loading`, `*_in_progress` the maximum,
//!   `rdb_last_bgsave_status` and friends the first that is not `ok`; uptimes take the minimum
//!   (the youngest node shows a restart).
//! - `# Replication` is slotproxy's own: a primary without replicas (`role:master`,
//!   `connected_slaves:0`, offsets 0, a `master_replid` of its own), since a client can reach
//!   neither the nodes' replicas nor their replication streams through slotproxy.
//! - Fields that name one node are dropped, since the client can't reach that node through the
//!   proxy and one node's value would pass for the cluster's: `tcp_port`, `process_id`, `run_id`,
//!   `executable`, `config_file`, replication ids and offsets, and the `slaveN` lines.
//! - The client talks to slotproxy as to a redis without cluster support (no MOVED, no
//!   CROSSSLOT for the commands slotproxy splits, only db 0), so `redis_mode` says `standalone`
//!   and `cluster_enabled` says `0`: a client that saw `1` would switch to cluster mode and try
//!   to reach the nodes directly. The cluster's own view stays honest in `# Proxy`
//!   (`cluster_primaries`).
//! - Everything else (`redis_version`, `maxmemory_policy`, `role`, modules...) is the first
//!   primary's value. With one primary, derived fields are left as that node wrote them.
//!
//! The reply has the type redis 7 uses: a bulk string in RESP2, a `txt` verbatim string in RESP3.

mod fields;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

use crate::error::ReplyError;
use crate::protocol::reply::write_text;
use crate::protocol::{Protocol, Reply, View};
use fields::{is_dropped, merge_field, merge_list, recompute_derived};

/// What slotproxy itself reports in `INFO` instead of the nodes' figures: its own clients and
/// commands (the nodes count slotproxy's connections and health checks), and the cluster state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFacts {
    /// `ok` or `fail`, as `CLUSTER INFO` says.
    pub cluster_state: &'static str,
    /// Clients connected to slotproxy.
    pub connected_clients: u64,
    /// slotproxy's clients blocked in a command on a node.
    pub blocked_clients: u64,
    /// slotproxy's own run id (the nodes' are dropped).
    pub run_id: String,
    /// Commands slotproxy answered since it started.
    pub total_commands_processed: u64,
    /// Clients slotproxy disconnected for `session.max_client_memory_bytes`.
    pub evicted_clients: u64,
    /// Commands per second, over the last sampling period.
    pub instantaneous_ops_per_sec: u64,
    /// The `master_replid` of slotproxy's `# Replication` section (40 hex digits).
    pub master_replid: String,
}

/// Merges the primaries' `INFO` replies (in shard order, none an error) into one reply in the
/// session's protocol.
pub(super) fn merge_info(replies: &[Reply], protocol: Protocol) -> Bytes {
    merge_info_with(replies, protocol, None)
}

/// [`merge_info`], with slotproxy's own figures in place of the nodes' where `facts` is given.
pub(crate) fn merge_info_with(
    replies: &[Reply],
    protocol: Protocol,
    facts: Option<&ProxyFacts>,
) -> Bytes {
    let mut out = BytesMut::new();
    let Some(texts) = replies
        .iter()
        .map(|r| info_text(r.raw()))
        .collect::<Option<Vec<_>>>()
    else {
        return ReplyError::InfoReply.to_bytes();
    };
    let text = merge_texts(&texts, facts);
    write_text(&mut out, protocol, text.as_bytes());
    out.freeze()
}

/// The text of a bulk (`$`) or verbatim (`=`, RESP3) string reply.
fn info_text(raw: &[u8]) -> Option<String> {
    let text = match View::of(raw)? {
        View::Bulk(text) | View::Verbatim { text, .. } => text,
        _ => return None,
    };
    Some(String::from_utf8_lossy(text).into_owned())
}

/// One `# Name` section of an INFO text; lines without a colon have no value.
struct Section<'a> {
    name: &'a str,
    fields: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Section<'a> {
    fn value(&self, key: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|&(_, v)| v)
    }
}

/// Splits an INFO text into sections; lines before the first header form a nameless one.
fn parse(text: &str) -> Vec<Section<'_>> {
    let mut sections: Vec<Section<'_>> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(name) = line.strip_prefix("# ") {
            sections.push(Section {
                name,
                fields: Vec::new(),
            });
            continue;
        }
        if sections.is_empty() {
            sections.push(Section {
                name: "",
                fields: Vec::new(),
            });
        }
        let field = match line.split_once(':') {
            Some((key, value)) => (key, Some(value)),
            None => (line, None),
        };
        if let Some(section) = sections.last_mut() {
            section.fields.push(field);
        }
    }
    sections
}

/// The merged INFO text, in redis' layout: `# Name` headers, `key:value` lines, CRLF endings,
/// one blank line between sections.
fn merge_texts(texts: &[String], facts: Option<&ProxyFacts>) -> String {
    let nodes: Vec<Vec<Section<'_>>> = texts.iter().map(|t| parse(t)).collect();
    let mut names: Vec<&str> = Vec::new();
    for section in nodes.iter().flatten() {
        if !names.contains(&section.name) {
            names.push(section.name);
        }
    }
    let mut out = String::new();
    if names.iter().any(|n| n.eq_ignore_ascii_case("server")) {
        out.push_str("# Proxy\r\nproxy:slotproxy\r\n");
        out.push_str(&format!(
            "proxy_version:{}\r\ncluster_primaries:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            texts.len()
        ));
        if let Some(facts) = facts {
            out.push_str(&format!("cluster_state:{}\r\n", facts.cluster_state));
            out.push_str(&format!("run_id:{}\r\n", facts.run_id));
        }
    }
    for name in names {
        let parts: Vec<&Section<'_>> = nodes
            .iter()
            .filter_map(|sections| sections.iter().find(|s| s.name == name))
            .collect();
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        if !name.is_empty() {
            out.push_str(&format!("# {name}\r\n"));
        }
        if let Some(facts) = facts
            && name.eq_ignore_ascii_case("replication")
        {
            out.push_str(&own_replication(facts, &parts));
            continue;
        }
        for (key, mut value) in merge_section(name, &parts) {
            if let Some(facts) = facts {
                let own = match key.as_str() {
                    "connected_clients" => Some(facts.connected_clients),
                    "blocked_clients" => Some(facts.blocked_clients),
                    "total_commands_processed" => Some(facts.total_commands_processed),
                    "evicted_clients" => Some(facts.evicted_clients),
                    "instantaneous_ops_per_sec" => Some(facts.instantaneous_ops_per_sec),
                    _ => None,
                };
                if let Some(own) = own {
                    value = Some(own.to_string());
                }
            }
            out.push_str(&key);
            if let Some(value) = value {
                out.push(':');
                out.push_str(&value);
            }
            out.push_str("\r\n");
        }
    }
    out
}

/// slotproxy's own `# Replication` fields: those of a redis-server that is a primary without
/// replicas, which is what a client sees through slotproxy (the nodes' replicas and their
/// replication streams can't be reached through it; `WAIT` still counts the nodes' replicas).
/// Nothing was ever replicated from slotproxy, so the offsets are 0 and no backlog is active;
/// the backlog size is the first primary's setting.
fn own_replication(facts: &ProxyFacts, parts: &[&Section<'_>]) -> String {
    let backlog_size = parts
        .iter()
        .find_map(|s| s.value("repl_backlog_size"))
        .unwrap_or("1048576");
    format!(
        "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n\
         master_replid:{}\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n\
         master_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n\
         repl_backlog_size:{backlog_size}\r\nrepl_backlog_first_byte_offset:0\r\n\
         repl_backlog_histlen:0\r\n",
        facts.master_replid
    )
}

/// One section merged over the nodes that have it; keys in first-appearance order.
fn merge_section(name: &str, parts: &[&Section<'_>]) -> Vec<(String, Option<String>)> {
    let per_key_lists = ["keyspace", "commandstats", "errorstats", "latencystats"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name));
    let mut keys: Vec<&str> = Vec::new();
    for (key, _) in parts.iter().flat_map(|s| &s.fields) {
        if !keys.contains(key) {
            keys.push(key);
        }
    }
    let mut fields = Vec::with_capacity(keys.len());
    for key in keys {
        let values: Vec<&str> = parts.iter().filter_map(|s| s.value(key)).collect();
        let Some(&first) = values.first() else {
            fields.push((key.to_string(), None));
            continue;
        };
        let merged = if per_key_lists {
            Some(merge_list(&values))
        } else {
            merge_field(key, &values)
        };
        if let Some(value) = merged {
            fields.push((key.to_string(), Some(value)));
        } else if !is_dropped(key) {
            fields.push((key.to_string(), Some(first.to_string())));
        }
    }
    if parts.len() > 1 && !per_key_lists {
        recompute_derived(&mut fields);
    }
    fields
}
