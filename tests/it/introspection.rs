//! Introspection through the proxy: to cluster-aware clients it is a one-node cluster owning all
//! 16384 slots at its own address (compared with a real one-node cluster), and `CLIENT`
//! subcommands describe the calling client, answer what is trivially true, or refuse clearly.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a redis tool (`redis-cli`, `redis-benchmark`) installed next to redis-server.
fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool} (installed with redis-server): {e}"))
}

/// The body of a bulk (`$`) or RESP3 verbatim (`=`, `txt:`) string reply.
fn string_body(reply: &[u8]) -> String {
    let newline = reply.iter().position(|&b| b == b'\n').unwrap();
    let body = &reply[newline + 1..reply.len() - 2];
    match reply[0] {
        b'$' => text(body),
        b'=' => text(body.strip_prefix(b"txt:").unwrap()),
        other => panic!("not a string reply ({}): {}", other as char, text(reply)),
    }
}

/// `field:value` lines of a CLUSTER INFO text, names only.
fn info_fields(info: &str) -> BTreeSet<String> {
    info.lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
        .collect()
}

/// `name=value` fields of a CLIENT INFO line, names only.
fn client_fields(line: &str) -> Vec<String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_aware_clients_see_a_one_node_cluster_at_the_proxy() {
    let cluster = TestCluster::start(3, 1);
    let real = TestCluster::start(1, 0);
    let proxy = TestProxy::start(&cluster).await;
    let port = proxy.addr.port();
    let mut raw = proxy.raw_client().await;
    let real_node = &real.nodes()[0];
    let mut real_raw = RawClient::connect(real_node.addr.as_str()).await;

    // MYID: 40 hex digits, the same on every connection.
    let id = string_body(&raw.request(&[b"CLUSTER", b"MYID"]).await);
    assert_eq!(id.len(), 40);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let again = string_body(
        &proxy
            .raw_client()
            .await
            .request(&[b"CLUSTER", b"MYID"])
            .await,
    );
    assert_eq!(again, id);

    // CLUSTER SLOTS and SHARDS: byte for byte what a real one-node cluster says, with the
    // proxy's address and id in place of the node's, in RESP2 and RESP3.
    for protocol in [b"2", b"3"] {
        raw.request(&[b"HELLO", protocol]).await;
        real_raw.request(&[b"HELLO", protocol]).await;
        for sub in [&b"SLOTS"[..], b"SHARDS"] {
            let got = text(&raw.request(&[b"CLUSTER", sub]).await);
            let want = text(&real_raw.request(&[b"CLUSTER", sub]).await)
                .replace(&real_node.id, &id)
                // A node that never met another doesn't know its own IP.
                .replace("$0\r\n\r\n", "$9\r\n127.0.0.1\r\n")
                .replace(&format!(":{}\r\n", real_node.port), &format!(":{port}\r\n"));
            // The real node's replication offset is its own.
            let want = match want.find("replication-offset\r\n:") {
                Some(at) => {
                    let start = at + "replication-offset\r\n:".len();
                    let end = start + want[start..].find('\r').unwrap();
                    format!("{}0{}", &want[..start], &want[end..])
                }
                None => want,
            };
            assert_eq!(got, want, "CLUSTER {} in RESP{}", text(sub), text(protocol));
        }
        // CLUSTER INFO: the same fields; a healthy one-node cluster.
        let info = raw.request(&[b"CLUSTER", b"INFO"]).await;
        let real_info = real_raw.request(&[b"CLUSTER", b"INFO"]).await;
        assert_eq!(info[0], real_info[0], "reply type");
        let (info, real_info) = (string_body(&info), string_body(&real_info));
        assert_eq!(info_fields(&info), info_fields(&real_info));
        for line in [
            "cluster_state:ok",
            "cluster_slots_assigned:16384",
            "cluster_slots_ok:16384",
            "cluster_known_nodes:1",
            "cluster_size:1",
        ] {
            assert!(info.lines().any(|l| l == line), "{line} not in {info}");
        }
        // CLUSTER NODES: one line, the proxy as myself,master with every slot.
        let nodes = raw.request(&[b"CLUSTER", b"NODES"]).await;
        assert_eq!(nodes[0], real_raw.request(&[b"CLUSTER", b"NODES"]).await[0]);
        assert_eq!(
            string_body(&nodes),
            format!("{id} 127.0.0.1:{port}@{port} myself,master - 0 0 0 connected 0-16383\n")
        );
    }
    raw.request(&[b"HELLO", b"2"]).await;

    // redis-cli in cluster mode works through it, and the write lands on the right node.
    let port_arg = port.to_string();
    let out = run("redis-cli", &["-c", "-p", &port_arg, "set", "cli:k", "v"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "OK");
    let out = run("redis-cli", &["-c", "-p", &port_arg, "get", "cli:k"]);
    assert_eq!(text(&out.stdout).trim(), "v");
    let owner = cluster.owner_of(cluster.keyslot(b"cli:k"));
    let direct: String = redis::cmd("GET")
        .arg("cli:k")
        .query(&mut cluster.conn(owner))
        .unwrap();
    assert_eq!(direct, "v");

    // redis-benchmark --cluster treats the proxy exactly as a real one-node cluster (the
    // benchmark of redis 7.0 refuses clusters of one node; newer ones run), and in its
    // ordinary mode it runs through the proxy.
    let bench = |port: u16, cluster_mode: bool| {
        let port = port.to_string();
        let mut args = vec!["-p", &port, "-t", "set,get", "-n", "2000", "-q"];
        if cluster_mode {
            args.insert(0, "--cluster");
        }
        run("redis-benchmark", &args)
    };
    let via_proxy = bench(port, true);
    let one_node = bench(real_node.port, true);
    assert_eq!(
        via_proxy.status.code(),
        one_node.status.code(),
        "{via_proxy:?}"
    );
    if via_proxy.status.success() {
        assert!(
            text(&via_proxy.stdout).contains("requests per second"),
            "{via_proxy:?}"
        );
    } else {
        assert_eq!(text(&via_proxy.stderr), text(&one_node.stderr));
    }
    let plain = bench(port, false);
    assert!(plain.status.success(), "{plain:?}");
    let report = text(&plain.stdout);
    assert!(
        report.contains("SET: ") && report.contains("GET: "),
        "{report}"
    );
    assert!(report.contains("requests per second"), "{report}");

    // CONFIG GET goes to a node (redis-benchmark reads it to warn about persistence).
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut proxy.sync_client())
        .unwrap();
    assert_eq!(config[0], "maxmemory-policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands_describe_the_caller_or_refuse_clearly() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut raw = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;

    raw.request(&[b"CLIENT", b"SETNAME", b"scanner"]).await;
    raw.request(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"mylib"])
        .await;
    let id = text(&raw.request(&[b"CLIENT", b"ID"]).await);
    let id = id.trim_start_matches(':').trim_end();
    let line = string_body(&raw.request(&[b"CLIENT", b"INFO"]).await);
    assert!(line.ends_with('\n'), "{line:?}");
    for field in [
        format!("id={id}"),
        // Both ends as the accept found them.
        format!("addr={}", raw.local_addr()),
        "name=scanner".to_string(),
        format!("laddr={}", proxy.addr),
        "db=0".to_string(),
        "cmd=client|info".to_string(),
        "resp=2".to_string(),
        "lib-name=mylib".to_string(),
    ] {
        assert!(
            line.split_whitespace().any(|f| f == field),
            "{field} not in {line}"
        );
    }
    assert!(
        line.starts_with(&format!("id={id} addr=127.0.0.1:")),
        "{line}"
    );
    // Every field redis-server 7.0 reports, in its order (the proxy adds 7.2's lib fields).
    let real_line = string_body(&direct.request(&[b"CLIENT", b"INFO"]).await);
    let fields = client_fields(&line);
    let real_fields = client_fields(&real_line);
    assert_eq!(fields[..real_fields.len()], real_fields[..], "{line}");

    // CLIENT LIST: every client of slotproxy (see ops_clients.rs), filtered like
    // redis-server filters.
    let list = string_body(&raw.request(&[b"CLIENT", b"LIST"]).await);
    let own = list
        .lines()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(own.contains("cmd=client|list") && own.contains("name=scanner"));
    let bytes = id.as_bytes();
    fn mine<'a>(args: &[&'a [u8]]) -> Vec<&'a [u8]> {
        let mut full: Vec<&'a [u8]> = vec![b"CLIENT", b"LIST"];
        full.extend_from_slice(args);
        full
    }
    for (args, listed) in [
        (mine(&[b"TYPE", b"normal"]), true),
        (mine(&[b"TYPE", b"replica"]), false),
        (mine(&[b"ID", b"99999", bytes]), true),
        (mine(&[b"ID", b"99999"]), false),
    ] {
        let got = string_body(&raw.request(&args).await);
        assert_eq!(!got.is_empty(), listed, "{args:?}: {got}");
    }
    for args in [
        mine(&[b"TYPE", b"nope"]),
        mine(&[b"ID", b"abc"]),
        mine(&[b"foo"]),
    ] {
        assert_eq!(
            text(&raw.request(&args).await),
            text(&direct.request(&args).await),
            "{args:?}"
        );
    }

    // What is trivially true of a client without tracking: byte for byte redis-server's reply,
    // in both protocols.
    for protocol in [b"2", b"3"] {
        raw.request(&[b"HELLO", protocol]).await;
        direct.request(&[b"HELLO", protocol]).await;
        for args in [
            vec![&b"CLIENT"[..], b"TRACKINGINFO"],
            vec![b"CLIENT", b"GETREDIR"],
            vec![b"CLIENT", b"CACHING", b"yes"],
            vec![b"CLIENT", b"NO-EVICT", b"on"],
            vec![b"CLIENT", b"NO-EVICT", b"maybe"],
            vec![b"CLIENT", b"TRACKING", b"off"],
            vec![b"CLIENT", b"REPLY", b"ON"],
            vec![b"CLIENT", b"LIST", b"TYPE", b"pubsub"],
        ] {
            assert_eq!(
                text(&raw.request(&args).await),
                text(&direct.request(&args).await),
                "{args:?} in RESP{}",
                text(protocol)
            );
        }
        let info = raw.request(&[b"CLIENT", b"INFO"]).await;
        let want = if protocol == b"3" { b'=' } else { b'$' };
        assert_eq!(info[0], want, "{}", text(&info));
        assert!(string_body(&info).contains(&format!("resp={}", text(protocol))));
    }
    raw.request(&[b"HELLO", b"2"]).await;

    // Refused with the command's name and why; the connection stays open.
    for args in [vec![&b"CLIENT"[..], b"NO-TOUCH", b"on"]] {
        let reply = text(&raw.request(&args).await);
        let name = format!(
            "-ERR '{} {}",
            text(args[0]),
            text(args[1]).to_ascii_uppercase()
        );
        assert!(reply.starts_with(&name), "{args:?}: {reply}");
        assert!(reply.contains("not supported by slotproxy") || reply.contains("not allowed"));
        assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_role_asking_slowlog_and_slot_questions_answer_like_the_cluster() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut raw = proxy.raw_client().await;
    let node = cluster.primaries()[1];
    let mut direct = RawClient::connect(node.addr.as_str()).await;
    // Keyless questions every node answers alike: the proxy's reply is a node's.
    let same: Vec<Vec<&[u8]>> = [
        "CLIENT HELP",
        "CLUSTER HELP",
        "OBJECT HELP",
        "MEMORY HELP",
        "SLOWLOG HELP",
        "XINFO HELP",
        "MODULE LIST",
        "ACL WHOAMI",
        "SWAPDB 0 1",
    ]
    .iter()
    .map(|line| line.split(' ').map(str::as_bytes).collect())
    .collect();
    common::assert_same_replies(&mut raw, &mut direct, &same).await;

    // slotproxy is a primary without replicas, as in CLUSTER NODES.
    assert_eq!(
        raw.request(&[b"ROLE"]).await,
        b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
    );
    assert_eq!(raw.request(&[b"ASKING"]).await, b"+OK\r\n");

    // Slot questions go to the slot's owner.
    for i in 0..3 {
        let key = format!("{{slotq}}:{i}");
        assert_eq!(
            raw.request(&[b"SET", key.as_bytes(), b"v"]).await,
            b"+OK\r\n"
        );
    }
    let slot = cluster.keyslot(b"{slotq}").to_string();
    assert_eq!(
        raw.request(&[b"CLUSTER", b"COUNTKEYSINSLOT", slot.as_bytes()])
            .await,
        b":3\r\n"
    );
    let keys = raw
        .request(&[b"CLUSTER", b"GETKEYSINSLOT", slot.as_bytes(), b"10"])
        .await;
    let text = String::from_utf8(keys).unwrap();
    assert!(
        text.starts_with("*3\r\n") && text.contains("{slotq}:2"),
        "{text}"
    );
    let bad = raw
        .request(&[b"CLUSTER", b"COUNTKEYSINSLOT", b"99999"])
        .await;
    let want = direct
        .request(&[b"CLUSTER", b"COUNTKEYSINSLOT", b"99999"])
        .await;
    assert_eq!(bad, want);

    // SLOWLOG is every primary's, merged.
    assert_eq!(raw.request(&[b"SLOWLOG", b"RESET"]).await, b"+OK\r\n");
    assert_eq!(raw.request(&[b"SLOWLOG", b"LEN"]).await, b":0\r\n");
    assert_eq!(raw.request(&[b"SLOWLOG", b"GET"]).await, b"*0\r\n");
}
