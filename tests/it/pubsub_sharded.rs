//! Sharded pub/sub through the proxy: SSUBSCRIBE/SUNSUBSCRIBE/SPUBLISH answered as a cluster
//! node answers, and shard subscribers that keep receiving when their slot moves to another
//! primary or their primary fails over.

use std::time::{Duration, Instant};

use crate::common::{RawClient, TestCluster, TestNode, TestProxy, encode_command, wait_until};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `PUBSUB SHARDNUMSUB channel` on one node, asked directly.
fn shard_subscribers(cluster: &TestCluster, node: &TestNode, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query(&mut cluster.conn(node))
        .unwrap();
    count
}

fn smessage(channel: &str, payload: &str) -> String {
    format!(
        "*3\r\n$8\r\nsmessage\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
        channel.len(),
        payload.len()
    )
}

/// SPUBLISHes on `node` until `raw` receives a message (those published while the proxy moves
/// its subscription may be lost), and returns it. Every frame must be an `smessage`.
async fn publish_until_received(raw: &mut RawClient, node: &str, channel: &str) -> String {
    let mut publisher = redis::Client::open(format!("redis://{node}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "no message on {channel}");
        n += 1;
        let _: redis::Value = redis::cmd("SPUBLISH")
            .arg(channel)
            .arg(format!("m{n}"))
            .query(&mut publisher)
            .unwrap();
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), raw.read_reply()).await
        {
            let frame = text(&frame);
            assert!(
                frame.starts_with("*3\r\n$8\r\nsmessage\r\n"),
                "unexpected frame {frame:?}"
            );
            return frame;
        }
    }
}

/// Reads `smessage`s until the one carrying `payload` (earlier publishes may still arrive).
async fn read_until_payload(raw: &mut RawClient, payload: &str) {
    let tail = format!("${}\r\n{payload}\r\n", payload.len());
    loop {
        let frame = text(&raw.read_reply().await);
        assert!(frame.contains("smessage"), "unexpected frame {frame:?}");
        if frame.ends_with(&tail) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscriptions_are_answered_as_a_cluster_node_answers() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let owner = cluster.primaries()[1];
    let channel = cluster.key_for_node(owner, "sch");
    let same_slot = format!("{{{channel}}}:x");
    let elsewhere = cluster.key_for_node(cluster.primaries()[2], "sch");
    for protocol in [&b"2"[..], b"3"] {
        let mut via = proxy.raw_client().await;
        let mut direct = RawClient::connect(owner.addr.as_str()).await;
        via.request(&[b"HELLO", protocol]).await;
        direct.request(&[b"HELLO", protocol]).await;
        let steps: &[(&[&[u8]], usize)] = &[
            (&[b"SUNSUBSCRIBE"], 1),
            (
                &[b"SSUBSCRIBE", channel.as_bytes(), same_slot.as_bytes()],
                2,
            ),
            (
                &[b"SSUBSCRIBE", channel.as_bytes(), elsewhere.as_bytes()],
                1,
            ),
            (
                &[b"SUNSUBSCRIBE", channel.as_bytes(), elsewhere.as_bytes()],
                1,
            ),
            (&[b"SUBSCRIBE", b"plain"], 1),
            (&[b"PING"], 1),
            (&[b"SUNSUBSCRIBE", channel.as_bytes()], 1),
            (&[b"UNSUBSCRIBE"], 1),
            (&[b"SUNSUBSCRIBE"], 1),
            (&[b"PING"], 1),
        ];
        for (args, replies) in steps {
            via.send(&encode_command(args)).await;
            direct.send(&encode_command(args)).await;
            for _ in 0..*replies {
                assert_eq!(
                    text(&via.read_reply().await),
                    text(&direct.read_reply().await),
                    "RESP{} {:?}",
                    text(protocol),
                    args.iter().map(|a| text(a)).collect::<Vec<_>>()
                );
            }
        }
    }

    // SPUBLISH counts the proxy's subscribers, and they get the message.
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let mut raw = proxy.raw_client().await;
        raw.request(&[b"SSUBSCRIBE", channel.as_bytes()]).await;
        subscribers.push(raw);
    }
    assert_eq!(
        shard_subscribers(&cluster, owner, &channel),
        1,
        "one node subscription"
    );
    let mut client = proxy.sync_client();
    let receivers: i64 = redis::cmd("SPUBLISH")
        .arg(&channel)
        .arg("hi")
        .query(&mut client)
        .unwrap();
    assert_eq!(receivers, 3);
    for raw in &mut subscribers {
        assert_eq!(text(&raw.read_reply().await), smessage(&channel, "hi"));
    }
    let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(&channel)
        .query(&mut client)
        .unwrap();
    assert_eq!(
        counts,
        vec![
            redis::Value::BulkString(channel.clone().into_bytes()),
            redis::Value::Int(3)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscribers_follow_their_slot_to_another_primary() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let from = cluster.primaries()[0];
    let to = cluster.primaries()[2];
    let channel = cluster.key_for_node(from, "moving");
    let slot = cluster.keyslot(channel.as_bytes());
    let mut raw = proxy.raw_client().await;
    raw.request(&[b"SSUBSCRIBE", channel.as_bytes()]).await;
    let mut resp3 = proxy.raw_client().await;
    resp3.request(&[b"HELLO", b"3"]).await;
    resp3.request(&[b"SSUBSCRIBE", channel.as_bytes()]).await;
    assert_eq!(shard_subscribers(&cluster, from, &channel), 1);

    cluster.migrate_slot(slot, from, to);

    // The old owner dropped the subscription when the slot left; the proxy took it to the new
    // owner without the clients noticing: they get messages published there.
    publish_until_received(&mut raw, &to.addr, &channel).await;
    let pushed = text(&resp3.read_reply().await);
    assert!(pushed.starts_with(">3\r\n$8\r\nsmessage\r\n"), "{pushed:?}");
    assert_eq!(shard_subscribers(&cluster, to, &channel), 1);
    assert_eq!(shard_subscribers(&cluster, from, &channel), 0);
    // The RESP3 client may have got earlier messages the RESP2 one missed (or the reverse);
    // from here on both get each message.
    let mut client = proxy.sync_client();
    let receivers: i64 = redis::cmd("SPUBLISH")
        .arg(&channel)
        .arg("after")
        .query(&mut client)
        .unwrap();
    assert_eq!(receivers, 2);
    read_until_payload(&mut raw, "after").await;
    read_until_payload(&mut resp3, "after").await;
    // Still subscribed mode for the RESP2 client, with its subscription intact.
    assert_eq!(
        text(&raw.request(&[b"SUNSUBSCRIBE"]).await),
        format!(
            "*3\r\n$12\r\nsunsubscribe\r\n${}\r\n{channel}\r\n:0\r\n",
            channel.len()
        )
    );
}

/// True when the node at `addr` reports itself a primary.
fn is_primary(addr: &str) -> bool {
    let Ok(mut conn) = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
    else {
        return false;
    };
    redis::cmd("INFO")
        .arg("replication")
        .query::<String>(&mut conn)
        .is_ok_and(|info| info.contains("role:master"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscribers_survive_a_failover_of_their_primary() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let victim = cluster.primaries()[1];
    let channel = cluster.key_for_node(victim, "failing");
    let replica = cluster.replica_of(victim).addr.clone();
    let index = cluster.index_of(victim);
    let mut raw = proxy.raw_client().await;
    raw.request(&[b"SSUBSCRIBE", channel.as_bytes()]).await;
    let mut client = proxy.sync_client();
    let receivers: i64 = redis::cmd("SPUBLISH")
        .arg(&channel)
        .arg("before")
        .query(&mut client)
        .unwrap();
    assert_eq!(receivers, 1);
    assert_eq!(text(&raw.read_reply().await), smessage(&channel, "before"));

    cluster.kill(index);
    wait_until(Duration::from_secs(20), "the replica was promoted", || {
        is_primary(&replica)
    });
    publish_until_received(&mut raw, &replica, &channel).await;
    let promoted = cluster.nodes().iter().find(|n| n.addr == replica).unwrap();
    assert_eq!(shard_subscribers(&cluster, promoted, &channel), 1);
    // Through the proxy too, now that it knows the new primary.
    let receivers: i64 = redis::cmd("SPUBLISH")
        .arg(&channel)
        .arg("after")
        .query(&mut client)
        .unwrap();
    assert_eq!(receivers, 1);
    read_until_payload(&mut raw, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscribers_follow_a_manual_failover() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let primary = cluster.primaries()[2];
    let channel = cluster.key_for_node(primary, "handover");
    let replica = cluster.replica_of(primary).addr.clone();
    let mut raw = proxy.raw_client().await;
    raw.request(&[b"SSUBSCRIBE", channel.as_bytes()]).await;

    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(
            &mut redis::Client::open(format!("redis://{replica}/"))
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    wait_until(Duration::from_secs(10), "the replica took over", || {
        is_primary(&replica)
    });
    publish_until_received(&mut raw, &replica, &channel).await;
    // Through the proxy: every message arrives once, the proxy's subscription is on the new
    // primary only, and the client never saw the old primary drop it.
    let mut client = proxy.sync_client();
    let mut receivers = 0;
    wait_until(
        Duration::from_secs(10),
        "SPUBLISH reaches the client",
        || {
            receivers = redis::cmd("SPUBLISH")
                .arg(&channel)
                .arg("once")
                .query(&mut client)
                .unwrap();
            receivers == 1
        },
    );
    read_until_payload(&mut raw, "once").await;
    // Nodes may briefly disagree about the owner while the failover spreads; the proxy ends up
    // on the new primary alone.
    let new_primary = cluster.nodes().iter().find(|n| n.addr == replica).unwrap();
    wait_until(
        Duration::from_secs(10),
        "one subscription, on the new primary",
        || {
            shard_subscribers(&cluster, new_primary, &channel) == 1
                && shard_subscribers(&cluster, primary, &channel) == 0
        },
    );
    assert_eq!(
        text(&raw.request(&[b"PING"]).await),
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
}
