//! How one INFO field's values combine across the primaries: the per-field rule table (summed,
//! kept, dropped, worst, youngest...) and the arithmetic behind it (sums that keep the nodes'
//! decimals, extremes, `a=1,b=2` lists, and the ratios and `*_human` sizes derived from merged
//! sums). Works on one field's values at a time: it knows nothing of sections, of replies or
//! their protocol, nor of what slotproxy reports as its own (see [`super`]).

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

/// Whether `key` names one node and is left out of the merged text.
pub(super) fn is_dropped(key: &str) -> bool {
    matches!(rule(key), Rule::Drop)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The merged value of a plain field; `None` to drop it or (when values aren't numbers) to
/// keep the first node's value.
pub(super) fn merge_field(key: &str, values: &[&str]) -> Option<String> {
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
pub(super) fn merge_list(values: &[&str]) -> String {
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
pub(super) fn recompute_derived(fields: &mut [(String, Option<String>)]) {
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
pub(super) fn bytes_to_human(n: u64) -> String {
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
