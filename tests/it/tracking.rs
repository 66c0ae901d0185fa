//! Client-side caching through the proxy: `CLIENT TRACKING` answers like redis-server, and the
//! invalidations for keys changed on any primary reach the RESP3 client that read them.

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestNode, TestProxy};
use slotproxy::config::ReadPolicy;

/// `>2 invalidate [keys]` as redis sends it.
fn invalidate(keys: &[&str]) -> Vec<u8> {
    let mut out = format!(">2\r\n$10\r\ninvalidate\r\n*{}\r\n", keys.len()).into_bytes();
    for key in keys {
        out.extend_from_slice(format!("${}\r\n{key}\r\n", key.len()).as_bytes());
    }
    out
}

const FLUSH: &[u8] = b">2\r\n$10\r\ninvalidate\r\n_\r\n";

async fn resp3(client: &mut RawClient) {
    let hello = client.request(&[b"HELLO", b"3"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{hello:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_commands_answer_like_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    for hello3 in [false, true] {
        let mut via_proxy = proxy.raw_client().await;
        let mut direct = RawClient::connect(standalone.addr.as_str()).await;
        if hello3 {
            resp3(&mut via_proxy).await;
            resp3(&mut direct).await;
        }
        let commands: Vec<Vec<&[u8]>> = [
            "CLIENT TRACKINGINFO",
            "CLIENT GETREDIR",
            "CLIENT CACHING YES",
            "CLIENT TRACKING ON PREFIX a",
            "CLIENT TRACKING ON OPTIN OPTOUT",
            "CLIENT TRACKING ON BCAST OPTIN",
            "CLIENT TRACKING ON FOO",
            "CLIENT TRACKING MAYBE",
            "CLIENT TRACKING ON BCAST PREFIX a PREFIX ab",
            "CLIENT TRACKING ON OPTIN",
            "CLIENT CACHING NO",
            "CLIENT CACHING YES",
            "CLIENT CACHING maybe",
            "CLIENT TRACKINGINFO",
            "CLIENT GETREDIR",
            "CLIENT TRACKING ON BCAST",
            "CLIENT TRACKING ON OPTOUT",
            "CLIENT TRACKING OFF",
            "CLIENT TRACKINGINFO",
            "CLIENT TRACKING ON BCAST PREFIX a NOLOOP",
            "CLIENT TRACKINGINFO",
            "CLIENT TRACKING ON BCAST PREFIX ab",
            "CLIENT TRACKING ON BCAST PREFIX b",
            "CLIENT TRACKINGINFO",
            "CLIENT TRACKING ON",
            "CLIENT TRACKING OFF",
            "CLIENT TRACKING ON BCAST",
            "CLIENT TRACKINGINFO",
            "CLIENT TRACKING ON BCAST PREFIX x",
            "CLIENT TRACKING OFF",
        ]
        .iter()
        .map(|line| line.split(' ').map(str::as_bytes).collect())
        .collect();
        common::assert_same_replies(&mut via_proxy, &mut direct, &commands).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_the_client_that_read_the_keys() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let primaries = cluster.primaries();
    let k: Vec<String> = primaries
        .iter()
        .map(|p| cluster.key_for_node(p, "track"))
        .collect();
    // A second key on the first primary: its invalidations come in order with k[0]'s.
    let same_node = cluster.key_for_node(primaries[0], "track-b");
    let mut reader = proxy.raw_client().await;
    resp3(&mut reader).await;
    assert_eq!(
        reader.request(&[b"CLIENT", b"TRACKING", b"ON"]).await,
        b"+OK\r\n"
    );
    assert_eq!(reader.request(&[b"GET", k[0].as_bytes()]).await, b"_\r\n");
    let mget = reader
        .request(&[
            b"MGET",
            k[1].as_bytes(),
            k[2].as_bytes(),
            same_node.as_bytes(),
        ])
        .await;
    assert_eq!(mget, b"*3\r\n_\r\n_\r\n_\r\n");

    let mut writer = proxy.raw_client().await;
    for (i, key) in k.iter().enumerate() {
        assert_eq!(
            writer.request(&[b"SET", key.as_bytes(), b"v"]).await,
            b"+OK\r\n"
        );
        assert_eq!(reader.read_reply().await, invalidate(&[key]), "key {i}");
    }
    // Told once: k[0] changes again unseen until it is read again; same_node's change (on the
    // same primary, so after it) is the next thing the reader hears.
    assert_eq!(
        writer.request(&[b"SET", k[0].as_bytes(), b"w"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        writer.request(&[b"DEL", same_node.as_bytes()]).await,
        b":0\r\n"
    );
    assert_eq!(
        writer.request(&[b"SET", same_node.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );
    assert_eq!(reader.read_reply().await, invalidate(&[&same_node]));
    // The reader's own replies and the pushes stay in order.
    assert_eq!(
        reader.request(&[b"GET", k[0].as_bytes()]).await,
        b"$1\r\nw\r\n"
    );
    assert_eq!(reader.request(&[b"PING"]).await, b"+PONG\r\n");
    // FLUSHALL through the proxy reaches every primary: each says "forget everything".
    assert_eq!(writer.request(&[b"FLUSHALL"]).await, b"+OK\r\n");
    assert_eq!(reader.read_reply().await, FLUSH);
    // A RESP2 client with tracking on gets no pushes (redis sends RESP2 clients invalidations
    // only through REDIRECT).
    let mut resp2 = proxy.raw_client().await;
    assert_eq!(
        resp2.request(&[b"CLIENT", b"TRACKING", b"ON"]).await,
        b"+OK\r\n"
    );
    assert_eq!(resp2.request(&[b"GET", k[1].as_bytes()]).await, b"$-1\r\n");
    assert_eq!(
        writer.request(&[b"SET", k[1].as_bytes(), b"x"]).await,
        b"+OK\r\n"
    );
    assert_eq!(resp2.request(&[b"PING"]).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_prefixes_noloop_and_optin_select_what_is_sent() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut bcast = proxy.raw_client().await;
    resp3(&mut bcast).await;
    let on = [
        &b"CLIENT"[..],
        b"TRACKING",
        b"ON",
        b"BCAST",
        b"PREFIX",
        b"user:",
        b"NOLOOP",
    ];
    assert_eq!(bcast.request(&on).await, b"+OK\r\n");
    let mut writer = proxy.raw_client().await;
    // Its own write is not reported (NOLOOP); another client's is, and keys outside the prefix
    // are not.
    assert_eq!(bcast.request(&[b"SET", b"user:1", b"a"]).await, b"+OK\r\n");
    assert_eq!(writer.request(&[b"SET", b"other", b"a"]).await, b"+OK\r\n");
    assert_eq!(writer.request(&[b"SET", b"user:2", b"a"]).await, b"+OK\r\n");
    assert_eq!(bcast.read_reply().await, invalidate(&["user:2"]));

    let mut optin = proxy.raw_client().await;
    resp3(&mut optin).await;
    assert_eq!(
        optin
            .request(&[b"CLIENT", b"TRACKING", b"ON", b"OPTIN"])
            .await,
        b"+OK\r\n"
    );
    // Only the read right after CLIENT CACHING YES is tracked.
    let (untracked, tracked) = ("{o}untracked", "{o}tracked");
    assert_eq!(
        optin.request(&[b"GET", untracked.as_bytes()]).await,
        b"_\r\n"
    );
    assert_eq!(
        optin.request(&[b"CLIENT", b"CACHING", b"YES"]).await,
        b"+OK\r\n"
    );
    assert_eq!(optin.request(&[b"GET", tracked.as_bytes()]).await, b"_\r\n");
    assert_eq!(
        writer.request(&[b"SET", untracked.as_bytes(), b"1"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        writer.request(&[b"SET", tracked.as_bytes(), b"1"]).await,
        b"+OK\r\n"
    );
    assert_eq!(optin.read_reply().await, invalidate(&[tracked]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_flushes_and_tracking_reads_stay_on_primaries() {
    let cluster = TestCluster::start(3, 1);
    let proxy =
        TestProxy::start_with(&cluster, |c| c.read_policy = ReadPolicy::PreferReplica).await;
    let primary = cluster.primaries()[0];
    let replica = cluster.replica_of(primary);
    let key = cluster.key_for_node(primary, "lost");
    let mut reader = proxy.raw_client().await;
    resp3(&mut reader).await;
    assert_eq!(
        reader.request(&[b"CLIENT", b"TRACKING", b"ON"]).await,
        b"+OK\r\n"
    );
    let replica_gets = cluster.command_calls(replica, "get");
    assert_eq!(reader.request(&[b"GET", key.as_bytes()]).await, b"_\r\n");
    assert_eq!(cluster.command_calls(replica, "get"), replica_gets);

    // Kill the node's end of the proxy's invalidation stream (the client with tracking on).
    let id = listener_id(&cluster, primary).expect("the proxy's listener is a tracking client");
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut cluster.conn(primary))
        .unwrap();
    // Changes on that node can't be seen until it is back: the client starts over.
    assert_eq!(reader.read_reply().await, FLUSH);
    assert_eq!(reader.read_reply().await, FLUSH, "again once it is back");
    // And it works again.
    assert_eq!(reader.request(&[b"GET", key.as_bytes()]).await, b"_\r\n");
    let mut writer = proxy.raw_client().await;
    assert_eq!(
        writer.request(&[b"SET", key.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );
    assert_eq!(reader.read_reply().await, invalidate(&[&key]));
}

/// The node-side client id of slotproxy's invalidation listener on `node` (the node's client with
/// tracking on), if there is one.
fn listener_id(cluster: &TestCluster, node: &TestNode) -> Option<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut cluster.conn(node))
        .unwrap();
    let listener = list.lines().find(|line| {
        line.split(' ')
            .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
    })?;
    listener
        .split(' ')
        .find_map(|f| f.strip_prefix("id="))
        .map(str::to_owned)
}

/// Clients that track on short-lived connections reuse the listeners: they stay open for a while
/// after the last tracking client left, instead of a connection to every primary per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_outlive_a_short_lived_tracking_client() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    let primary = cluster.primaries()[0];
    let mut first = proxy.raw_client().await;
    resp3(&mut first).await;
    assert_eq!(
        first.request(&[b"CLIENT", b"TRACKING", b"ON"]).await,
        b"+OK\r\n"
    );
    let before = listener_id(&cluster, primary).expect("a listener while a client tracks");
    drop(first);
    // The tracker looks at its clients every 200 ms; without the linger it closes the listeners
    // on its next look. Give it several.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(
        listener_id(&cluster, primary).as_deref(),
        Some(before.as_str())
    );
    let mut second = proxy.raw_client().await;
    resp3(&mut second).await;
    assert_eq!(
        second.request(&[b"CLIENT", b"TRACKING", b"ON"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        listener_id(&cluster, primary),
        Some(before),
        "the second client uses the same listener"
    );
}
