//! Blocking commands run on a connection of their own, never stalling other clients, and end
//! on the node as soon as their client goes away.

use std::time::{Duration, Instant};

use crate::common::{
    self, RawClient, StandaloneRedis, TestCluster, TestProxy, encode_command, wait_until,
};

/// `blocked_clients` in a node's INFO.
fn blocked_clients(cluster: &TestCluster, node: &common::TestNode) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut cluster.conn(node))
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_behave_as_on_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let cases: &[&[&[u8]]] = &[
        &[b"BLPOP", b"empty:list", b"0.2"],
        &[b"BRPOP", b"{e}a", b"{e}b", b"0.1"],
        &[b"BZPOPMIN", b"empty:zset", b"0.1"],
        &[b"BLMOVE", b"{e}src", b"{e}dst", b"LEFT", b"RIGHT", b"0.1"],
        &[b"BLMPOP", b"0.1", b"2", b"{e}a", b"{e}b", b"LEFT"],
        &[
            b"XREAD",
            b"BLOCK",
            b"100",
            b"STREAMS",
            b"empty:stream",
            b"$",
        ],
        &[b"BLPOP", b"k", b"-1"],
        &[b"BLPOP", b"k", b"abc"],
    ];
    for args in cases {
        let started = Instant::now();
        let got = via_proxy.request(args).await;
        let elapsed = started.elapsed();
        let want = direct.request(args).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{args:?}"
        );
        if want.starts_with(b"*-1") {
            assert!(
                elapsed >= Duration::from_millis(100),
                "{args:?} returned after {elapsed:?}"
            );
        }
    }
    let got = via_proxy
        .request(&[b"BRPOP", b"cross:a", b"cross:b", b"1"])
        .await;
    assert_eq!(
        got,
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_client_does_not_stall_others_and_is_served_when_data_arrives() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let node = cluster.primaries()[0];
    let list = cluster.key_for_node(node, "queue");

    // Client A blocks forever (timeout 0), with more commands pipelined behind the BLPOP.
    let mut a = proxy.raw_client().await;
    let mut pipeline = encode_command(&[b"BLPOP", list.as_bytes(), b"0"]);
    pipeline.extend(encode_command(&[b"ECHO", b"after"]));
    a.send(&pipeline).await;
    wait_until(
        Duration::from_secs(5),
        "the BLPOP is blocked on the node",
        || blocked_clients(&cluster, node) == 1,
    );

    // Meanwhile other clients' traffic to the same node goes through the shared connections.
    let mut b = proxy.raw_client().await;
    let mut burst = Vec::new();
    for i in 0..1000 {
        let key = format!("{{{list}}}:other:{i}");
        burst.extend(encode_command(&[b"SET", key.as_bytes(), b"v"]));
    }
    let started = Instant::now();
    b.send(&burst).await;
    for _ in 0..1000 {
        assert_eq!(b.read_reply().await, b"+OK\r\n");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Data arrives: A gets it, then the reply it had pipelined behind.
    assert_eq!(
        b.request(&[b"RPUSH", list.as_bytes(), b"job-1"]).await,
        b":1\r\n"
    );
    let got = a.read_reply().await;
    let want = format!("*2\r\n${}\r\n{list}\r\n$5\r\njob-1\r\n", list.len());
    assert_eq!(String::from_utf8_lossy(&got), want);
    assert_eq!(a.read_reply().await, b"$5\r\nafter\r\n");
    // The same client can block again (its dedicated connection is reused).
    assert_eq!(
        a.request(&[b"BLPOP", list.as_bytes(), b"0.05"]).await,
        b"*-1\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_while_blocked_frees_the_node_at_once() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let node = cluster.primaries()[1];
    let list = cluster.key_for_node(node, "abandoned");
    let mut a = proxy.raw_client().await;
    a.send(&encode_command(&[b"BLPOP", list.as_bytes(), b"0"]))
        .await;
    wait_until(
        Duration::from_secs(5),
        "the BLPOP is blocked on the node",
        || blocked_clients(&cluster, node) == 1,
    );
    drop(a);
    wait_until(
        Duration::from_secs(2),
        "the node no longer has a blocked client",
        || blocked_clients(&cluster, node) == 0,
    );
    // Nothing is popped on behalf of the client that left.
    let mut b = proxy.raw_client().await;
    assert_eq!(
        b.request(&[b"RPUSH", list.as_bytes(), b"kept"]).await,
        b":1\r\n"
    );
    assert_eq!(b.request(&[b"LLEN", list.as_bytes()]).await, b":1\r\n");
}

/// Found by the fuzzer: a client blocked at the front with more requests pipelined behind it
/// than its in-flight window lets through (16 before a first reply) must still be seen
/// leaving; otherwise slotproxy stopped reading, never saw the FIN, and the connection and
/// the node's blocked client stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_client_with_a_full_window_behind_it_is_seen_leaving() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    let list = "{full-window}list";
    let mut pipeline = encode_command(&[b"BLPOP", list.as_bytes(), b"0"]);
    for _ in 0..40 {
        pipeline.extend(encode_command(&[b"PING"]));
    }
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, &pipeline)
        .await
        .unwrap();
    let node = cluster.owner_of(slotproxy::cluster::hash_slot(list.as_bytes()).0);
    wait_until(
        Duration::from_secs(5),
        "the BLPOP is blocked on the node",
        || blocked_clients(&cluster, node) == 1,
    );
    tokio::io::AsyncWriteExt::shutdown(&mut client)
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut rest);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("slotproxy closes a blocked client that sent FIN")
        .unwrap();
    assert_eq!(rest, b"", "a client that left while blocked gets no reply");
    wait_until(
        Duration::from_secs(2),
        "the node no longer has a blocked client",
        || blocked_clients(&cluster, node) == 0,
    );
}
