//! `INFO` through the proxy: every primary's INFO text merged into one, in redis' INFO format.
//!
//! The request goes unchanged to every primary, so each node has already picked the sections the
//! client asked for (`INFO`, `INFO keyspace memory`, `INFO all`...); this file merges whatever came
//! back, section by section, in the first primary's section order. Field names are unique across
//! INFO sections (clients such as redis-py flatten INFO into one map), so one table of per-field
//! rules serves every section:
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

use bytes::{Bytes, BytesMut};

use crate::error::ReplyError;
use crate::protocol::reply::write_text;
use crate::protocol::{Protocol, Reply, View};

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
        } else if !matches!(rule(key), Rule::Drop) {
            fields.push((key.to_string(), Some(first.to_string())));
        }
    }
    if parts.len() > 1 && !per_key_lists {
        recompute_derived(&mut fields);
    }
    fields
}

/// How one field's values combine across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The first primary's value.
    First,
    /// The sum, with the nodes' decimals.
    Sum,
    /// The sum, or 0 (unlimited) if any node has 0.
    SumUnlessUnlimited,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The first value that differs from this healthy one, else the healthy one.
    Worst(&'static str),
    /// Always this value.
    Fixed(&'static str),
    /// Left out: it describes one node.
    Drop,
}

fn rule(key: &str) -> Rule {
    match key {
        // Server.
        "redis_mode" => Rule::Fixed("standalone"),
        "process_id" | "run_id" | "tcp_port" | "executable" | "config_file" => Rule::Drop,
        "uptime_in_seconds" | "uptime_in_days" => Rule::Min,
        // Clients.
        "connected_clients"
        | "cluster_connections"
        | "blocked_clients"
        | "tracking_clients"
        | "clients_in_timeout_table"
        | "pubsub_clients"
        | "watching_clients"
        | "total_watched_keys"
        | "total_blocking_keys"
        | "total_blocking_keys_on_nokey" => Rule::Sum,
        "client_recent_max_input_buffer" | "client_recent_max_output_buffer" => Rule::Max,
        // Memory.
        "used_memory"
        | "used_memory_rss"
        | "used_memory_peak"
        | "used_memory_overhead"
        | "used_memory_startup"
        | "used_memory_dataset"
        | "allocator_allocated"
        | "allocator_active"
        | "allocator_resident"
        | "used_memory_lua"
        | "used_memory_vm_eval"
        | "used_memory_scripts_eval"
        | "used_memory_vm_functions"
        | "used_memory_vm_total"
        | "used_memory_functions"
        | "used_memory_scripts"
        | "allocator_frag_bytes"
        | "allocator_rss_bytes"
        | "rss_overhead_bytes"
        | "mem_fragmentation_bytes"
        | "mem_not_counted_for_evict"
        | "mem_replication_backlog"
        | "mem_total_replication_buffers"
        | "mem_clients_slaves"
        | "mem_clients_normal"
        | "mem_cluster_links"
        | "mem_aof_buffer"
        | "lazyfree_pending_objects"
        | "lazyfreed_objects" => Rule::Sum,
        "maxmemory" => Rule::SumUnlessUnlimited,
        "active_defrag_running" => Rule::Max,
        // Persistence.
        "loading"
        | "async_loading"
        | "rdb_bgsave_in_progress"
        | "aof_rewrite_in_progress"
        | "aof_rewrite_scheduled"
        | "module_fork_in_progress" => Rule::Max,
        "rdb_changes_since_last_save" | "rdb_saves" | "aof_rewrites" => Rule::Sum,
        "rdb_last_bgsave_status" | "aof_last_bgrewrite_status" | "aof_last_write_status" => {
            Rule::Worst("ok")
        }
        // Stats.
        "total_connections_received"
        | "total_commands_processed"
        | "instantaneous_ops_per_sec"
        | "total_net_input_bytes"
        | "total_net_output_bytes"
        | "total_net_repl_input_bytes"
        | "total_net_repl_output_bytes"
        | "instantaneous_input_kbps"
        | "instantaneous_output_kbps"
        | "instantaneous_input_repl_kbps"
        | "instantaneous_output_repl_kbps"
        | "rejected_connections"
        | "sync_full"
        | "sync_partial_ok"
        | "sync_partial_err"
        | "expired_keys"
        | "expired_time_cap_reached_count"
        | "expire_cycle_cpu_milliseconds"
        | "evicted_keys"
        | "evicted_clients"
        | "total_eviction_exceeded_time"
        | "current_eviction_exceeded_time"
        | "keyspace_hits"
        | "keyspace_misses"
        | "pubsub_channels"
        | "pubsub_patterns"
        | "pubsubshard_channels"
        | "total_forks"
        | "migrate_cached_sockets"
        | "slave_expires_tracked_keys"
        | "active_defrag_hits"
        | "active_defrag_misses"
        | "active_defrag_key_hits"
        | "active_defrag_key_misses"
        | "total_active_defrag_time"
        | "current_active_defrag_time"
        | "tracking_total_keys"
        | "tracking_total_items"
        | "tracking_total_prefixes"
        | "unexpected_error_replies"
        | "total_error_replies"
        | "dump_payload_sanitizations"
        | "total_reads_processed"
        | "total_writes_processed"
        | "io_threaded_reads_processed"
        | "io_threaded_writes_processed"
        | "reply_buffer_shrinks"
        | "reply_buffer_expands" => Rule::Sum,
        "latest_fork_usec" => Rule::Max,
        // Replication: the role and counts stay; what identifies one node's stream goes.
        "connected_slaves" => Rule::Sum,
        "master_failover_state" => Rule::Worst("no-failover"),
        "master_replid"
        | "master_replid2"
        | "master_repl_offset"
        | "second_repl_offset"
        | "repl_backlog_first_byte_offset"
        | "repl_backlog_histlen" => Rule::Drop,
        k if k.strip_prefix("slave").is_some_and(is_digits) => Rule::Drop,
        // CPU.
        "used_cpu_sys"
        | "used_cpu_user"
        | "used_cpu_sys_children"
        | "used_cpu_user_children"
        | "used_cpu_sys_main_thread"
        | "used_cpu_user_main_thread" => Rule::Sum,
        // Cluster.
        "cluster_enabled" => Rule::Fixed("0"),
        _ => Rule::First,
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The merged value of a plain field; `None` to drop it or (when values aren't numbers) to
/// keep the first node's value.
fn merge_field(key: &str, values: &[&str]) -> Option<String> {
    match rule(key) {
        Rule::First | Rule::Drop => None,
        Rule::Sum => sum(values),
        Rule::SumUnlessUnlimited if values.iter().any(|v| v.parse() == Ok(0u64)) => {
            Some("0".to_string())
        }
        Rule::SumUnlessUnlimited => sum(values),
        Rule::Min => extreme(values, std::cmp::Ordering::Less),
        Rule::Max => extreme(values, std::cmp::Ordering::Greater),
        Rule::Worst(healthy) => Some(
            values
                .iter()
                .find(|v| **v != healthy)
                .unwrap_or(&healthy)
                .to_string(),
        ),
        Rule::Fixed(value) => Some(value.to_string()),
    }
}

/// The sum of numbers, as integers when all are, else with the most decimals any value has.
fn sum(values: &[&str]) -> Option<String> {
    if let Some(integers) = values
        .iter()
        .map(|v| v.parse::<i64>().ok())
        .collect::<Option<Vec<_>>>()
    {
        return Some(
            integers
                .into_iter()
                .map(i128::from)
                .sum::<i128>()
                .to_string(),
        );
    }
    let floats = values
        .iter()
        .map(|v| v.parse::<f64>().ok().filter(|f| f.is_finite()))
        .collect::<Option<Vec<_>>>()?;
    let decimals = values
        .iter()
        .map(|v| v.split_once('.').map_or(0, |(_, d)| d.len()))
        .max()
        .unwrap_or(0);
    Some(format!("{:.*}", decimals, floats.iter().sum::<f64>()))
}

/// The value that is smallest (`Less`) or largest (`Greater`), as the node wrote it.
fn extreme(values: &[&str], want: std::cmp::Ordering) -> Option<String> {
    let numbers = values
        .iter()
        .map(|v| v.parse::<f64>().ok().map(|n| (n, *v)))
        .collect::<Option<Vec<_>>>()?;
    numbers
        .into_iter()
        .reduce(|best, next| {
            if next.0.total_cmp(&best.0) == want {
                next
            } else {
                best
            }
        })
        .map(|(_, v)| v.to_string())
}

/// Merges `a=1,b=2` values (one per node) sub-field by sub-field.
fn merge_list(values: &[&str]) -> String {
    let nodes: Vec<Vec<(&str, &str)>> = values
        .iter()
        .map(|v| v.split(',').filter_map(|p| p.split_once('=')).collect())
        .collect();
    let lookup = |node: &[(&str, &str)], name: &str| -> Option<f64> {
        node.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    let total = |name: &str| -> f64 { nodes.iter().filter_map(|n| lookup(n, name)).sum() };
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in nodes.iter().flatten() {
        if !names.contains(name) {
            names.push(name);
        }
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let here: Vec<&str> = nodes
            .iter()
            .filter_map(|n| n.iter().find(|(k, _)| *k == name).map(|&(_, v)| v))
            .collect();
        let value = match name {
            "avg_ttl" => {
                let (weighted, weight) = nodes
                    .iter()
                    .filter_map(|n| Some((lookup(n, "avg_ttl")?, lookup(n, "expires")?)))
                    .filter(|&(ttl, expires)| ttl > 0.0 && expires > 0.0)
                    .fold((0.0, 0.0), |(sum, w), (ttl, expires)| {
                        (sum + ttl * expires, w + expires)
                    });
                let mean = if weight > 0.0 { weighted / weight } else { 0.0 };
                Some((mean as u64).to_string())
            }
            "usec_per_call" => {
                let calls = total("calls");
                let per_call = if calls > 0.0 {
                    total("usec") / calls
                } else {
                    0.0
                };
                Some(format!("{per_call:.2}"))
            }
            // Latency percentiles (`p50`, `p99.9`).
            n if n.starts_with('p') && n[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                extreme(&here, std::cmp::Ordering::Greater)
            }
            _ => sum(&here),
        };
        let first = here.first().copied().unwrap_or_default();
        out.push(format!("{name}={}", value.as_deref().unwrap_or(first)));
    }
    out.join(",")
}

/// Recomputes the fields derived from summed ones: `*_human` sizes, memory ratios, percentages.
fn recompute_derived(fields: &mut [(String, Option<String>)]) {
    let number = |fields: &[(String, Option<String>)], key: &str| -> Option<u64> {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref()?.parse().ok())
    };
    for i in 0..fields.len() {
        let n = |key| number(fields, key);
        let derived = match fields[i].0.as_str() {
            key if key.ends_with("_human") => n(key.trim_end_matches("_human")).map(bytes_to_human),
            "used_memory_peak_perc" => percent(n("used_memory"), n("used_memory_peak")),
            "used_memory_dataset_perc" => {
                // As redis: dataset over the memory used beyond what the node used at startup.
                let net = n("used_memory")
                    .zip(n("used_memory_startup"))
                    .map(|(used, startup)| used.saturating_sub(startup).max(1));
                percent(n("used_memory_dataset"), net)
            }
            "allocator_frag_ratio" => ratio(n("allocator_active"), n("allocator_allocated")),
            "allocator_rss_ratio" => ratio(n("allocator_resident"), n("allocator_active")),
            "rss_overhead_ratio" => ratio(n("used_memory_rss"), n("allocator_resident")),
            "mem_fragmentation_ratio" => ratio(n("used_memory_rss"), n("used_memory")),
            _ => None,
        };
        if let Some(value) = derived {
            fields[i].1 = Some(value);
        }
    }
}

fn ratio(numerator: Option<u64>, denominator: Option<u64>) -> Option<String> {
    let (n, d) = (numerator?, denominator.filter(|&d| d > 0)?);
    Some(format!("{:.2}", n as f64 / d as f64))
}

fn percent(numerator: Option<u64>, denominator: Option<u64>) -> Option<String> {
    let (n, d) = (numerator?, denominator.filter(|&d| d > 0)?);
    Some(format!("{:.2}%", n as f64 * 100.0 / d as f64))
}

/// A byte count the way redis' `bytesToHuman` writes it: `1023B`, `1.12K`, `4.66G`, up to `P`.
fn bytes_to_human(n: u64) -> String {
    if n < 1024 {
        return format!("{n}B");
    }
    let mut scale = 1024u64;
    for unit in ["K", "M", "G", "T", "P"] {
        match scale.checked_mul(1024) {
            Some(next) if n >= next => scale = next,
            _ => return format!("{:.2}{unit}", n as f64 / scale as f64),
        }
    }
    // Past petabytes redis falls back to plain bytes.
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RESP2 bulk string reply holding `text`.
    fn bulk(text: &str) -> Reply {
        let mut out = BytesMut::new();
        crate::protocol::reply::write_bulk(&mut out, text.as_bytes());
        Reply::local(out.freeze())
    }

    /// The text of a merged RESP2 reply.
    fn merged(texts: &[&str]) -> String {
        let replies: Vec<Reply> = texts.iter().map(|t| bulk(t)).collect();
        let raw = merge_info(&replies, Protocol::Resp2);
        info_text(&raw).unwrap_or_else(|| panic!("not a bulk string: {raw:?}"))
    }

    fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
    }

    #[test]
    fn keyspace_sums_keys_and_weights_avg_ttl_by_expires() {
        let text = merged(&[
            "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\n",
            "# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000\r\n",
            "# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=0\r\n",
            "# Keyspace\r\n",
        ]);
        // (1000 * 2 + 3000 * 6) / 8; the node with no estimate (avg_ttl=0) is skipped.
        assert_eq!(text, "# Keyspace\r\ndb0:keys=16,expires=9,avg_ttl=2500\r\n");
        assert_eq!(
            merged(&["# Keyspace\r\n", "# Keyspace\r\n"]),
            "# Keyspace\r\n"
        );
    }

    #[test]
    fn memory_sums_sizes_and_recomputes_human_and_ratios() {
        let node = |used: u64, rss: u64, max: u64| {
            format!(
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:x\r\nused_memory_rss:{rss}\r\n\
                 used_memory_rss_human:x\r\nused_memory_peak:{used}\r\nused_memory_peak_human:x\r\n\
                 used_memory_peak_perc:100.00%\r\nmaxmemory:{max}\r\nmaxmemory_human:x\r\n\
                 maxmemory_policy:noeviction\r\nmem_fragmentation_ratio:9.99\r\n"
            )
        };
        let a = node(1_000_000, 2_000_000, 1 << 30);
        let b = node(500_000, 1_000_000, 1 << 30);
        let text = merged(&[&a, &b]);
        assert_eq!(field(&text, "used_memory"), Some("1500000"));
        assert_eq!(field(&text, "used_memory_human"), Some("1.43M"));
        assert_eq!(field(&text, "used_memory_rss"), Some("3000000"));
        assert_eq!(field(&text, "used_memory_rss_human"), Some("2.86M"));
        assert_eq!(field(&text, "used_memory_peak_perc"), Some("100.00%"));
        assert_eq!(field(&text, "maxmemory"), Some("2147483648"));
        assert_eq!(field(&text, "maxmemory_human"), Some("2.00G"));
        assert_eq!(field(&text, "maxmemory_policy"), Some("noeviction"));
        assert_eq!(field(&text, "mem_fragmentation_ratio"), Some("2.00"));

        let unlimited = node(1, 1, 0);
        let text = merged(&[&a, &unlimited]);
        assert_eq!(
            field(&text, "maxmemory"),
            Some("0"),
            "one node without a limit"
        );
        assert_eq!(field(&text, "maxmemory_human"), Some("0B"));
    }

    #[test]
    fn server_section_brings_the_proxy_section_and_drops_node_identity() {
        let node = |port: u16, uptime: u32| {
            format!(
                "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\nprocess_id:42\r\n\
                 run_id:abc\r\ntcp_port:{port}\r\nuptime_in_seconds:{uptime}\r\n\
                 executable:/usr/bin/redis-server\r\nconfig_file:/tmp/n.conf\r\n\r\n\
                 # Stats\r\ntotal_commands_processed:{uptime}\r\ninstantaneous_input_kbps:0.25\r\n\r\n\
                 # CPU\r\nused_cpu_sys:0.100000\r\n\r\n\
                 # Cluster\r\ncluster_enabled:1\r\n"
            )
        };
        let text = merged(&[&node(7000, 50), &node(7001, 20), &node(7002, 80)]);
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            text,
            format!(
                "# Proxy\r\nproxy:slotproxy\r\nproxy_version:{version}\r\ncluster_primaries:3\r\n\r\n\
                 # Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nuptime_in_seconds:20\r\n\r\n\
                 # Stats\r\ntotal_commands_processed:150\r\ninstantaneous_input_kbps:0.75\r\n\r\n\
                 # CPU\r\nused_cpu_sys:0.300000\r\n\r\n\
                 # Cluster\r\ncluster_enabled:0\r\n"
            )
        );
    }

    #[test]
    fn replication_keeps_role_and_counts_but_not_one_nodes_stream() {
        let node = |slaves: &str| {
            format!(
                "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n{slaves}\
                 master_failover_state:no-failover\r\nmaster_replid:abc\r\nmaster_repl_offset:99\r\n\
                 repl_backlog_size:1048576\r\n"
            )
        };
        let text = merged(&[
            &node("slave0:ip=127.0.0.1,port=7003,state=online,offset=1,lag=0\r\n"),
            &node("slave0:ip=127.0.0.1,port=7004,state=online,offset=1,lag=1\r\n"),
        ]);
        assert_eq!(
            text,
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
             master_failover_state:no-failover\r\nrepl_backlog_size:1048576\r\n"
        );
    }

    #[test]
    fn statuses_take_the_worst_node() {
        let text = merged(&[
            "# Persistence\r\nloading:0\r\nrdb_last_bgsave_status:ok\r\n",
            "# Persistence\r\nloading:1\r\nrdb_last_bgsave_status:err\r\n",
        ]);
        assert_eq!(
            text,
            "# Persistence\r\nloading:1\r\nrdb_last_bgsave_status:err\r\n"
        );
    }

    #[test]
    fn command_stats_sum_and_recompute_per_call_and_latency_takes_the_worst() {
        let text = merged(&[
            "# Commandstats\r\ncmdstat_get:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\r\n\
             # Errorstats\r\nerrorstat_ERR:count=1\r\n\r\n\
             # Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=9.023,p99.9=9.023\r\n",
            "# Commandstats\r\ncmdstat_get:calls=3,usec=5,usec_per_call=1.67,rejected_calls=1,failed_calls=0\r\n\
             cmdstat_set:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\r\n\
             # Errorstats\r\nerrorstat_ERR:count=2\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n\
             # Latencystats\r\nlatency_percentiles_usec_get:p50=2.007,p99=3.007,p99.9=12.031\r\n",
        ]);
        assert_eq!(
            text,
            "# Commandstats\r\n\
             cmdstat_get:calls=5,usec=15,usec_per_call=3.00,rejected_calls=1,failed_calls=0\r\n\
             cmdstat_set:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\r\n\
             # Errorstats\r\nerrorstat_ERR:count=3\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n\
             # Latencystats\r\nlatency_percentiles_usec_get:p50=2.007,p99=9.023,p99.9=12.031\r\n"
        );
    }

    #[test]
    fn one_primary_passes_its_text_through_apart_from_the_rules() {
        let node = "# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\n\
                    mem_fragmentation_ratio:12.55\r\n";
        assert_eq!(
            merged(&[node]),
            node,
            "derived fields stay as the node wrote them"
        );
    }

    #[test]
    fn resp3_verbatim_parts_give_a_verbatim_reply() {
        let verbatim = |text: &str| {
            let mut out = BytesMut::new();
            write_text(&mut out, Protocol::Resp3, text.as_bytes());
            out.freeze()
        };
        assert_eq!(&verbatim("ab")[..], b"=6\r\ntxt:ab\r\n");
        let part = Reply::local(verbatim("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"));
        let raw = merge_info(&[part.clone(), part], Protocol::Resp3);
        assert_eq!(
            raw,
            verbatim("# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n")
        );
    }

    #[test]
    fn no_matching_section_is_an_empty_string() {
        assert_eq!(
            &merge_info(&[bulk(""), bulk("")], Protocol::Resp2)[..],
            b"$0\r\n\r\n"
        );
        assert_eq!(
            &merge_info(&[bulk(""), bulk("")], Protocol::Resp3)[..],
            b"=4\r\ntxt:\r\n"
        );
    }

    #[test]
    fn a_part_that_is_not_a_string_is_an_error() {
        let odd = Reply::local(Bytes::from_static(b":1\r\n"));
        let raw = merge_info(&[bulk("# Keyspace\r\n"), odd], Protocol::Resp2);
        assert!(raw.starts_with(b"-ERR "), "{raw:?}");
    }

    #[test]
    fn bytes_to_human_matches_redis() {
        // Checked against redis-server 7.0.15's `maxmemory_human`.
        let cases = [
            (0, "0B"),
            (1023, "1023B"),
            (1152, "1.12K"),
            (1664, "1.62K"),
            (2048, "2.00K"),
            (1_048_575, "1024.00K"),
            (1_179_648, "1.12M"),
            (5_000_000_000, "4.66G"),
            (1_099_511_627_776, "1.00T"),
            (1_234_567_890_123, "1.12T"),
            (1_125_899_906_842_624, "1.00P"),
            (1 << 60, "1152921504606846976B"),
        ];
        for (n, want) in cases {
            assert_eq!(bytes_to_human(n), want, "{n}");
        }
    }
}
