//! `INFO` through the proxy: one INFO text for the whole cluster, in redis' format, with the
//! keyspace, memory and counters summed over the primaries and a `# Proxy` section in front.

use std::process::Command;

use crate::common::{RawClient, StandaloneRedis, TestCluster, TestNode, TestProxy};

/// The text of a RESP2 bulk string (`$n\r\n...\r\n`) or RESP3 verbatim string (`=n\r\ntxt:...`).
fn text_of(reply: &[u8]) -> String {
    let reply = String::from_utf8(reply.to_vec()).unwrap();
    let (header, rest) = reply.split_once("\r\n").unwrap();
    let len: usize = header[1..]
        .parse()
        .unwrap_or_else(|_| panic!("INFO reply is not a string: {reply:?}"));
    let body = &rest[..len];
    match &header[..1] {
        "$" => body.to_string(),
        "=" => body.strip_prefix("txt:").unwrap().to_string(),
        _ => panic!("INFO reply is not a string: {reply:?}"),
    }
}

/// The value of `key:value` in an INFO text.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
}

fn number(text: &str, key: &str) -> u64 {
    field(text, key)
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// The `name=value` numbers of a keyspace line such as `db0:keys=3,expires=1,avg_ttl=0`.
fn db0(text: &str, name: &str) -> u64 {
    let line = field(text, "db0").unwrap_or_else(|| panic!("no db0 line in:\n{text}"));
    line.split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in db0:{line}"))
        .parse()
        .unwrap()
}

/// The section names of an INFO text, in order.
fn sections(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .collect()
}

async fn info(client: &mut RawClient, args: &[&[u8]]) -> String {
    let mut request: Vec<&[u8]> = vec![b"INFO"];
    request.extend_from_slice(args);
    text_of(&client.request(&request).await)
}

/// `INFO <section>` asked of one node directly.
fn node_info(cluster: &TestCluster, node: &TestNode, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query(&mut cluster.conn(node))
        .unwrap()
}

/// Returns once the proxy knows the slot map: a keyed request waits for it, while a fan-out
/// sent before it is known fails with `-CLUSTERDOWN`.
async fn wait_for_slot_map(client: &mut RawClient) {
    let reply = client.request(&[b"EXISTS", b"info:warm-up"]).await;
    assert_eq!(reply, b":0\r\n", "{:?}", String::from_utf8_lossy(&reply));
}

/// Writes keys on every primary (some with a TTL) through the proxy; returns how many.
fn write_keys_on_every_primary(cluster: &TestCluster, proxy: &TestProxy) -> usize {
    let mut conn = proxy.sync_client();
    let mut written = 0;
    for (i, node) in cluster.primaries().into_iter().enumerate() {
        let key = cluster.key_for_node(node, &format!("info{i}"));
        for n in 0..=i {
            let _: () = redis::cmd("SET")
                .arg(format!("{{{key}}}:{n}"))
                .arg("v")
                .query(&mut conn)
                .unwrap();
            written += 1;
        }
        let _: () = redis::cmd("SET")
            .arg(format!("{{{key}}}:ttl"))
            .arg("v")
            .arg("EX")
            .arg(1000)
            .query(&mut conn)
            .unwrap();
        written += 1;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_keyspace_sums_keys_over_primaries_like_dbsize() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let written = write_keys_on_every_primary(&cluster, &proxy);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);

    let mut client = proxy.raw_client().await;
    let text = info(&mut client, &[b"keyspace"]).await;
    assert_eq!(
        sections(&text),
        ["Keyspace"],
        "only what was asked:\n{text}"
    );
    let keys = db0(&text, "keys");
    let per_node: u64 = primaries
        .iter()
        .map(|node| -> u64 { redis::cmd("DBSIZE").query(&mut cluster.conn(node)).unwrap() })
        .sum();
    let dbsize: u64 = redis::cmd("DBSIZE")
        .query(&mut proxy.sync_client())
        .unwrap();
    assert_eq!(keys, written as u64, "{text}");
    assert_eq!(keys, per_node);
    assert_eq!(keys, dbsize);
    assert_eq!(db0(&text, "expires"), 3, "one key with a TTL per primary");
    let avg_ttl = db0(&text, "avg_ttl");
    assert!(
        avg_ttl <= 1_000_000,
        "avg_ttl {avg_ttl} ms is a mean of TTLs"
    );

    // A real client's INFO parser reads the same totals.
    let parsed: redis::InfoDict = redis::cmd("INFO")
        .arg("keyspace")
        .query(&mut proxy.sync_client())
        .unwrap();
    let line: String = parsed.get("db0").unwrap();
    assert!(
        line.starts_with(&format!("keys={keys},expires=3,")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_info_keyspace_prints_the_cluster_total() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let written = write_keys_on_every_primary(&cluster, &proxy);

    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &proxy.addr.port().to_string()])
        .args(["info", "keyspace"])
        .output()
        .unwrap_or_else(|e| {
            panic!("run redis-cli: {e} (install it with `sudo apt-get install -y redis-tools`)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("db0:keys={written},expires=3,")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_memory_and_stats_are_sums_over_primaries() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    write_keys_on_every_primary(&cluster, &proxy);
    let primaries = cluster.primaries();
    let sum = |section: &str, key: &str| -> (u64, u64) {
        let values: Vec<u64> = primaries
            .iter()
            .map(|node| number(&node_info(&cluster, node, section), key))
            .collect();
        (values.iter().sum(), values.into_iter().max().unwrap())
    };
    let mut client = proxy.raw_client().await;

    // Commands processed are slotproxy's own (the nodes also count its health checks): between
    // two INFOs on an otherwise idle proxy, exactly the first INFO.
    let stats = info(&mut client, &[b"stats"]).await;
    let again = info(&mut client, &[b"stats"]).await;
    assert_eq!(
        number(&again, "total_commands_processed") - number(&stats, "total_commands_processed"),
        1,
        "{stats}\n{again}"
    );

    // Memory moves a little with every request: allow 5% drift around the direct samples.
    let (before, _) = sum("memory", "used_memory");
    let memory = info(&mut client, &[b"memory"]).await;
    let (after, largest) = sum("memory", "used_memory");
    let used = number(&memory, "used_memory");
    assert!(
        used > largest,
        "{used} is a sum, above any one node's {largest}"
    );
    let (low, high) = (before.min(after), before.max(after));
    assert!(
        used >= low - low / 20 && used <= high + high / 20,
        "used_memory {used} vs the primaries' sum {low}..{high}"
    );
    let human = field(&memory, "used_memory_human").unwrap();
    let (digits, unit) = human.split_at(human.len() - 1);
    let scale = match unit {
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        _ => panic!("used_memory_human {human}"),
    };
    let shown: f64 = digits.parse().unwrap();
    assert!(
        (shown - used as f64 / scale).abs() <= 0.005,
        "used_memory_human {human} for {used}"
    );
    assert_eq!(
        field(&memory, "maxmemory"),
        Some("0"),
        "no node has a limit"
    );
    assert_eq!(field(&memory, "maxmemory_human"), Some("0B"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_is_one_well_formed_text_with_a_proxy_section() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut client = proxy.raw_client().await;
    wait_for_slot_map(&mut client).await;

    for args in [&[][..], &[&b"all"[..]][..], &[&b"everything"[..]][..]] {
        let text = info(&mut client, args).await;
        for line in text.lines() {
            let ok = line.is_empty()
                || line.starts_with("# ")
                || line
                    .split_once(':')
                    .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' ') && !k.contains('#'));
            assert!(ok, "not an INFO line: {line:?}");
        }
        assert!(text.ends_with("\r\n"), "CRLF line endings");
        let names = sections(&text);
        assert_eq!(names[..2], ["Proxy", "Server"], "{names:?}");
        for name in [
            "Clients",
            "Memory",
            "Stats",
            "Replication",
            "Cluster",
            "Keyspace",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert_eq!(field(&text, "proxy"), Some("slotproxy"));
        assert_eq!(
            field(&text, "proxy_version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(field(&text, "cluster_primaries"), Some("3"));
        assert_eq!(field(&text, "cluster_enabled"), Some("0"));
        assert_eq!(field(&text, "redis_mode"), Some("standalone"));
        assert_eq!(field(&text, "role"), Some("master"));
        // slotproxy is a primary without replicas of its own (info_replication_... below).
        assert_eq!(field(&text, "connected_slaves"), Some("0"));
        // run_id is slotproxy's own (also its node id); the nodes' are dropped.
        let run_id = field(&text, "run_id").expect("run_id");
        assert_eq!(run_id.len(), 40, "{run_id}");
        let myid: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut proxy.sync_client())
            .unwrap();
        assert_eq!(run_id, myid);
        for node_only in ["tcp_port", "process_id", "slave0"] {
            assert_eq!(field(&text, node_only), None, "{node_only} names one node");
        }
    }

    // Sections keep redis' order whatever order they were asked in; no Proxy without Server.
    let text = info(&mut client, &[b"keyspace", b"memory"]).await;
    assert_eq!(sections(&text), ["Memory", "Keyspace"]);
    let text = info(&mut client, &[b"server"]).await;
    assert_eq!(sections(&text), ["Proxy", "Server"]);
    assert_eq!(info(&mut client, &[b"nosuchsection"]).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_under_resp3_is_a_verbatim_string_like_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let node = cluster.primaries()[0].addr.clone();
    let mut direct = RawClient::connect(node.as_str()).await;
    let mut client = proxy.raw_client().await;
    wait_for_slot_map(&mut client).await;
    for c in [&mut direct, &mut client] {
        let hello = c.request(&[b"HELLO", b"3"]).await;
        assert_eq!(
            hello.first(),
            Some(&b'%'),
            "{:?}",
            String::from_utf8_lossy(&hello)
        );
    }
    let want = direct.request(&[b"INFO", b"keyspace"]).await;
    let got = client.request(&[b"INFO", b"keyspace"]).await;
    assert!(
        want.starts_with(b"="),
        "redis-server 7 sends a verbatim string"
    );
    assert_eq!(got[0], want[0], "{:?}", String::from_utf8_lossy(&got));
    assert!(
        String::from_utf8_lossy(&got).contains("\r\ntxt:# Keyspace\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let text = text_of(&got);
    assert_eq!(sections(&text), ["Keyspace"]);

    // Back on RESP2 the same request is a bulk string again.
    client.request(&[b"HELLO", b"2"]).await;
    let got = client.request(&[b"INFO", b"keyspace"]).await;
    assert_eq!(got[0], b'$', "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_replication_reads_like_a_standalone_primary_without_replicas() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut client = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    wait_for_slot_map(&mut client).await;
    let got = info(&mut client, &[b"replication"]).await;
    let want = info(&mut direct, &[b"replication"]).await;
    let without_replid = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with("master_replid:"))
            .map(str::to_string)
            .collect()
    };
    // Same fields, in the same order, with the same values: nothing was ever replicated.
    assert_eq!(without_replid(&got), without_replid(&want), "{got}");
    let replid = field(&got, "master_replid").expect("master_replid");
    assert_eq!(replid.len(), 40, "{replid}");
    assert!(replid.bytes().all(|b| b.is_ascii_hexdigit()), "{replid}");
    // Stable across calls and connections, like a server's.
    let again = info(&mut proxy.raw_client().await, &[b"replication"]).await;
    assert_eq!(field(&again, "master_replid"), Some(replid));
}
