use super::fields::bytes_to_human;
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
