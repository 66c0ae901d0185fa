//! WAIT and WAITAOF through the proxy: they count the replicas that have this client's writes,
//! on the nodes it wrote to, without stalling other clients that share those nodes' connections.

use std::time::{Duration, Instant};

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy};

/// `WAIT` sent straight to `node` after a write there: what a cluster-aware client would get.
fn direct_wait(cluster: &TestCluster, node: &common::TestNode, key: &str) -> i64 {
    let mut conn = cluster.conn(node);
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("direct")
        .query(&mut conn)
        .unwrap();
    redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut conn)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_the_replicas_of_every_node_written() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let primaries = cluster.primaries();
    // Each primary has one replica: that is what WAIT on the node itself reports.
    for node in &primaries {
        assert_eq!(
            direct_wait(&cluster, node, &cluster.key_for_node(node, "d")),
            1
        );
    }
    let mut client = proxy.raw_client().await;
    // No write yet: nothing of this client's is unreplicated.
    assert_eq!(client.request(&[b"WAIT", b"1", b"1000"]).await, b":1\r\n");
    // One node written.
    let key = cluster.key_for_node(primaries[0], "one");
    assert_eq!(
        client.request(&[b"SET", key.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );
    assert_eq!(client.request(&[b"WAIT", b"1", b"2000"]).await, b":1\r\n");
    // Every primary written by one cross-slot MSET.
    let keys: Vec<String> = primaries
        .iter()
        .map(|n| cluster.key_for_node(n, "all"))
        .collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for key in &keys {
        mset.push(key.as_bytes());
        mset.push(b"v");
    }
    assert_eq!(client.request(&mset).await, b"+OK\r\n");
    assert_eq!(client.request(&[b"WAIT", b"1", b"0"]).await, b":1\r\n");
    // Asking for more replicas than exist: the count after the timeout, as redis does.
    let started = Instant::now();
    assert_eq!(client.request(&[b"WAIT", b"2", b"300"]).await, b":1\r\n");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(3),
        "WAIT 2 300 returned after {elapsed:?}"
    );
    // A write on the client's own connection (a blocking move) is waited for there.
    let (src, dst) = ("{bl}src".as_bytes(), "{bl}dst".as_bytes());
    assert_eq!(client.request(&[b"RPUSH", src, b"x"]).await, b":1\r\n");
    assert_eq!(
        client
            .request(&[b"BLMOVE", src, dst, b"LEFT", b"RIGHT", b"0"])
            .await,
        b"$1\r\nx\r\n"
    );
    assert_eq!(client.request(&[b"WAIT", b"1", b"2000"]).await, b":1\r\n");
    // The replies after WAIT keep their order.
    client
        .send(&common::encode_command(&[b"WAIT", b"1", b"1000"]))
        .await;
    client
        .send(&common::encode_command(&[b"GET", key.as_bytes()]))
        .await;
    assert_eq!(client.read_reply().await, b":1\r\n");
    assert_eq!(client.read_reply().await, b"$1\r\nv\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_a_stopped_replica_does_not_stall_others_and_ends_when_it_is_back() {
    let mut cluster = TestCluster::start(3, 1);
    // One shared connection per node: the waiting client and the other one share it.
    let proxy = TestProxy::start_with(&cluster, |c| c.backend.connections_per_node = 1).await;
    let primary = cluster.index_of(cluster.primaries()[0]);
    let replica = cluster.index_of(cluster.replica_of(&cluster.nodes()[primary]));
    let key = cluster.key_for_node(&cluster.nodes()[primary], "w");
    let mut writer = proxy.raw_client().await;
    let mut other = proxy.raw_client().await;
    assert_eq!(
        writer.request(&[b"SET", key.as_bytes(), b"1"]).await,
        b"+OK\r\n"
    );
    assert_eq!(writer.request(&[b"WAIT", b"1", b"2000"]).await, b":1\r\n");

    cluster.stop(replica);
    assert_eq!(
        writer.request(&[b"SET", key.as_bytes(), b"2"]).await,
        b"+OK\r\n"
    );
    writer
        .send(&common::encode_command(&[b"WAIT", b"1", b"1500"]))
        .await;
    // While the WAIT can't be satisfied, the other client is served on the same connection.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(1000) {
        assert_eq!(
            other.request(&[b"GET", key.as_bytes()]).await,
            b"$1\r\n2\r\n"
        );
        served += 1;
    }
    assert!(served >= 5, "only {served} GETs served during the WAIT");
    assert_eq!(writer.read_reply().await, b":0\r\n");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");

    // Timeout 0 waits until the replica is back and has the write.
    writer
        .send(&common::encode_command(&[b"WAIT", b"1", b"0"]))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        other.request(&[b"GET", key.as_bytes()]).await,
        b"$1\r\n2\r\n"
    );
    cluster.cont(replica);
    let reply = tokio::time::timeout(Duration::from_secs(10), writer.read_reply())
        .await
        .expect("WAIT 1 0 ends once the replica is back");
    assert_eq!(reply, b":1\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_waiting_frees_its_wait() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let primary = cluster.index_of(cluster.primaries()[0]);
    let replica = cluster.index_of(cluster.replica_of(&cluster.nodes()[primary]));
    let key = cluster.key_for_node(&cluster.nodes()[primary], "gone");
    cluster.stop(replica);
    {
        let mut client = proxy.raw_client().await;
        assert_eq!(
            client.request(&[b"SET", key.as_bytes(), b"1"]).await,
            b"+OK\r\n"
        );
        client
            .send(&common::encode_command(&[b"WAIT", b"1", b"0"]))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The proxy stops asking the node on the client's behalf.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cluster.command_calls(&cluster.nodes()[primary], "wait");
    assert!(before > 0, "the WAIT reached the node");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        cluster.command_calls(&cluster.nodes()[primary], "wait"),
        before
    );
    cluster.cont(replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_waitaof_get_redis_own_errors() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let cases: &[&[&[u8]]] = &[
        &[b"WAIT", b"abc", b"0"],
        &[b"WAIT", b"1", b"abc"],
        &[b"WAIT", b"1", b"-1"],
        &[b"WAIT", b"1"],
        // WAITAOF is new in 7.2: unknown to these nodes, as to the standalone server.
        &[b"WAITAOF", b"0", b"0", b"0"],
    ];
    common::assert_same_replies(&mut via_proxy, &mut direct, cases).await;
}
