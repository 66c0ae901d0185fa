//! Administrative commands: refused by default with an error naming the command, and served
//! when `session.allowed_admin_commands` lists them: to every node, or (SHUTDOWN) by stopping
//! slotproxy itself.

use std::time::Duration;

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_are_refused_unless_the_config_allows_them() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut client = proxy.raw_client().await;
    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"],
            "CONFIG SET",
        ),
        (&[b"CONFIG", b"RESETSTAT"], "CONFIG RESETSTAT"),
        (&[b"SAVE"], "SAVE"),
        (&[b"BGSAVE"], "BGSAVE"),
        (&[b"DEBUG", b"SLEEP", b"0"], "DEBUG"),
        (&[b"REPLICAOF", b"NO", b"ONE"], "REPLICAOF"),
        (&[b"SHUTDOWN", b"NOSAVE"], "SHUTDOWN"),
        (&[b"MONITOR"], "MONITOR"),
        (
            &[b"MIGRATE", b"127.0.0.1", b"1", b"k", b"0", b"1000", b"COPY"],
            "MIGRATE",
        ),
        (&[b"DEBUG", b"OBJECT", b"k"], "DEBUG"),
    ];
    for (args, name) in cases {
        let reply = String::from_utf8(client.request(args).await).unwrap();
        assert_eq!(
            reply,
            format!(
                "-ERR '{name}' is not allowed through slotproxy unless its configuration lists it \
                 in session.allowed_admin_commands\r\n"
            ),
            "{args:?}"
        );
    }
    // Nothing reached a node, and the connection is still served.
    for node in cluster.nodes() {
        assert_eq!(cluster.command_calls(node, "config|set"), 0);
        assert_eq!(cluster.command_calls(node, "save"), 0);
        assert_eq!(cluster.command_calls(node, "migrate"), 0);
        assert_eq!(cluster.command_calls(node, "debug"), 0);
    }
    assert_eq!(client.request(&[b"PING"]).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_makes_a_node_connect_outside_the_cluster() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut client = proxy.raw_client().await;
    assert_eq!(client.request(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    let cases: &[&[&[u8]]] = &[
        &[b"MIGRATE", b"127.0.0.1", b"9", b"k", b"0", b"1000", b"COPY"],
        &[
            b"MIGRATE",
            b"10.0.0.1",
            b"6379",
            b"",
            b"0",
            b"1000",
            b"KEYS",
            b"k",
        ],
        &[b"CLUSTER", b"MEET", b"127.0.0.1", b"9"],
        &[
            b"CLUSTER",
            b"REPLICATE",
            b"0123456789abcdef0123456789abcdef01234567",
        ],
        &[
            b"CLUSTER",
            b"FORGET",
            b"0123456789abcdef0123456789abcdef01234567",
        ],
        &[b"CLUSTER", b"SETSLOT", b"1", b"NODE", b"x"],
        &[b"CLUSTER", b"FAILOVER"],
        &[b"CLUSTER", b"RESET"],
        &[b"REPLICAOF", b"127.0.0.1", b"9"],
        &[b"SLAVEOF", b"127.0.0.1", b"9"],
        &[b"SYNC"],
        &[b"PSYNC", b"?", b"-1"],
        &[b"FAILOVER"],
    ];
    // The harness itself sent CLUSTER MEET and REPLICATE while building the cluster.
    let commands = [
        "migrate",
        "cluster|meet",
        "cluster|replicate",
        "replicaof",
        "slaveof",
    ];
    let calls = || -> Vec<u64> {
        cluster
            .nodes()
            .iter()
            .flat_map(|node| commands.map(|c| cluster.command_calls(node, c)))
            .collect()
    };
    let before = calls();
    for args in cases {
        let reply = String::from_utf8(client.request(args).await).unwrap();
        assert!(
            reply.starts_with("-ERR '") && reply.contains("is not allowed through slotproxy"),
            "{args:?}: {reply}"
        );
    }
    assert_eq!(calls(), before, "a refused command reached a node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_of_files_passwords_and_addresses_is_never_forwarded() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.allowed_admin_commands = vec!["config set".to_string()];
    })
    .await;
    let mut client = proxy.raw_client().await;
    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"CONFIG", b"SET", b"requirepass", b"locked"],
            "requirepass",
        ),
        (&[b"CONFIG", b"SET", b"masterauth", b"x"], "masterauth"),
        (&[b"CONFIG", b"SET", b"masteruser", b"x"], "masteruser"),
        (&[b"CONFIG", b"SET", b"DIR", b"/tmp"], "DIR"),
        (
            &[b"CONFIG", b"SET", b"dbfilename", b"evil.rdb"],
            "dbfilename",
        ),
        (&[b"CONFIG", b"SET", b"logfile", b"/tmp/x"], "logfile"),
        (
            &[b"CONFIG", b"SET", b"appenddirname", b"x"],
            "appenddirname",
        ),
        (&[b"CONFIG", b"SET", b"aclfile", b"/tmp/x"], "aclfile"),
        (&[b"CONFIG", b"SET", b"unixsocket", b"/tmp/x"], "unixsocket"),
        (
            &[b"CONFIG", b"SET", b"tls-cert-file", b"/tmp/x"],
            "tls-cert-file",
        ),
        (
            &[b"CONFIG", b"SET", b"cluster-announce-ip", b"10.9.9.9"],
            "cluster-announce-ip",
        ),
        (&[b"CONFIG", b"SET", b"maxclients", b"1"], "maxclients"),
        // One refused parameter refuses the whole command: nothing is half applied.
        (
            &[
                b"CONFIG",
                b"SET",
                b"maxmemory-policy",
                b"allkeys-lru",
                b"dbfilename",
                b"x",
            ],
            "dbfilename",
        ),
    ];
    let before: Vec<u64> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.command_calls(n, "config|set"))
        .collect();
    for (args, param) in cases {
        let reply = String::from_utf8(client.request(args).await).unwrap();
        assert!(
            reply.starts_with(&format!(
                "-ERR CONFIG SET '{param}' is never allowed through slotproxy"
            )),
            "{args:?}: {reply}"
        );
    }
    let after: Vec<u64> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.command_calls(n, "config|set"))
        .collect();
    assert_eq!(before, after, "a refused CONFIG SET reached a node");
    for node in cluster.nodes() {
        let policy: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut cluster.conn(node))
            .unwrap();
        assert_ne!(policy[1], "allkeys-lru", "{}", node.addr);
    }
    // Harmless parameters still go through, and the connection is still served.
    assert_eq!(
        client
            .request(&[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"])
            .await,
        b"+OK\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_admin_commands_reach_every_node() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.allowed_admin_commands = ["CONFIG SET", "config resetstat", "save", "debug"]
            .map(String::from)
            .to_vec();
    })
    .await;
    let mut client = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let cases: &[&[&[u8]]] = &[
        &[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"],
        &[b"CONFIG", b"SET", b"no-such-parameter", b"1"],
        &[b"CONFIG", b"RESETSTAT"],
        &[b"SAVE"],
        &[b"DEBUG", b"SLEEP", b"0"],
    ];
    for args in cases {
        let got = client.request(args).await;
        let want = direct.request(args).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{args:?}"
        );
    }
    // Replicas too: a promoted replica must behave like its old primary.
    for node in cluster.nodes() {
        let policy: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut cluster.conn(node))
            .unwrap();
        assert_eq!(policy[1], "allkeys-lru", "{}", node.addr);
    }
    // Not listed: still refused.
    let reply = client.request(&[b"BGSAVE"]).await;
    assert!(
        reply.starts_with(b"-ERR 'BGSAVE' is not allowed"),
        "{reply:?}"
    );
    // DEBUG OBJECT is about one key: routed by it, once DEBUG is allowed.
    assert_eq!(
        client.request(&[b"SET", b"dbg", b"12345"]).await,
        b"+OK\r\n"
    );
    let reply = String::from_utf8(client.request(&[b"DEBUG", b"OBJECT", b"dbg"]).await).unwrap();
    assert!(
        reply.starts_with("+Value at:") && reply.contains("encoding:int"),
        "{reply}"
    );
    for key in ["a", "b", "c", "{x}d"] {
        assert_eq!(
            client.request(&[b"RPUSH", key.as_bytes(), b"v"]).await,
            b":1\r\n"
        );
        let owner = cluster.owner_of(cluster.keyslot(key.as_bytes()));
        let before = cluster.command_calls(owner, "debug");
        let reply = String::from_utf8(client.request(&[b"DEBUG", b"OBJECT", key.as_bytes()]).await)
            .unwrap();
        assert!(reply.starts_with("+Value at:"), "{reply}");
        assert_eq!(cluster.command_calls(owner, "debug"), before + 1, "{key}");
    }
    let missing = client.request(&[b"DEBUG", b"OBJECT", b"missing"]).await;
    assert_eq!(missing, b"-ERR no such key\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_shutdown_stops_slotproxy_and_never_a_node() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.allowed_admin_commands = vec!["shutdown".to_string()];
    })
    .await;
    let mut client = proxy.raw_client().await;
    assert_eq!(
        client.request(&[b"SHUTDOWN", b"ABORT"]).await,
        b"-ERR No shutdown in progress.\r\n"
    );
    assert_eq!(
        client.request(&[b"SHUTDOWN", b"BOGUS"]).await,
        b"-ERR syntax error\r\n"
    );
    client
        .send(&common::encode_command(&[b"SHUTDOWN", b"NOSAVE"]))
        .await;
    // As on redis-server: no reply, the connection closes.
    let rest = tokio::time::timeout(Duration::from_secs(5), client.read_until_closed())
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(proxy.shutdown().await, Ok(()));
    for node in cluster.nodes() {
        let pong: String = redis::cmd("PING").query(&mut cluster.conn(node)).unwrap();
        assert_eq!(pong, "PONG");
    }
}
