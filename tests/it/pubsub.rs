//! Pub/sub through the proxy: replies compared byte for byte with a standalone redis-server,
//! subscribed-mode rules (also for pipelined requests), RESP3 pushes, one node subscription shared
//! by many clients, message order around (un)subscribes, PUBLISH and PUBSUB counts, the output
//! limit for slow subscribers, and the loss of the node holding the proxy's subscriptions.
//! Sharded pub/sub is in `pubsub_sharded.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{
    self, NodeState, RawClient, StandaloneRedis, TestCluster, TestProxy, encode_command, wait_until,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends `args` to both clients and compares the next `replies` frames of each, in order.
async fn same(via: &mut RawClient, direct: &mut RawClient, args: &[&[u8]], replies: usize) {
    via.send(&encode_command(args)).await;
    direct.send(&encode_command(args)).await;
    for i in 0..replies {
        let got = via.read_reply().await;
        let want = direct.read_reply().await;
        assert_eq!(
            text(&got),
            text(&want),
            "reply {i} to {:?}",
            args.iter().map(|a| text(a)).collect::<Vec<_>>()
        );
    }
}

/// `PUBSUB NUMSUB channel` summed over every running node of the cluster, asked directly.
fn node_subscriptions(cluster: &TestCluster, channel: &str) -> i64 {
    running(cluster)
        .map(|node| {
            let (_, count): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query(&mut cluster.conn(node))
                .unwrap();
            count
        })
        .sum()
}

/// `PUBSUB NUMPAT` summed over every running node.
fn node_patterns(cluster: &TestCluster) -> i64 {
    running(cluster)
        .map(|node| {
            redis::cmd("PUBSUB")
                .arg("NUMPAT")
                .query::<i64>(&mut cluster.conn(node))
                .unwrap()
        })
        .sum()
}

fn running(cluster: &TestCluster) -> impl Iterator<Item = &common::TestNode> {
    cluster
        .nodes()
        .iter()
        .filter(|n| n.state() == NodeState::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_family_replies_are_redis_servers_bytes() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    for protocol in [&b"2"[..], b"3"] {
        let mut via = proxy.raw_client().await;
        let mut direct = RawClient::connect(standalone.addr.as_str()).await;
        // The HELLO replies differ (client id, version); what follows must not.
        via.request(&[b"HELLO", protocol]).await;
        direct.request(&[b"HELLO", protocol]).await;
        let steps: &[(&[&[u8]], usize)] = &[
            (&[b"UNSUBSCRIBE"], 1),
            (&[b"PUNSUBSCRIBE"], 1),
            (&[b"SUNSUBSCRIBE"], 1),
            (&[b"SUBSCRIBE", b"a", b"a", b"b"], 3),
            (&[b"PSUBSCRIBE", b"p*"], 1),
            (&[b"SSUBSCRIBE", b"s1", b"{s1}x"], 2),
            (&[b"SUBSCRIBE", b"a"], 1),
            (&[b"GET", b"k"], 1),
            (&[b"PING"], 1),
            (&[b"PING", b"hi"], 1),
            (&[b"CLIENT", b"ID"], 1),
            (&[b"UNSUBSCRIBE", b"zz"], 1),
            (&[b"UNSUBSCRIBE", b"b"], 1),
            (&[b"PUNSUBSCRIBE"], 1),
            (&[b"UNSUBSCRIBE"], 1),
            (&[b"PUNSUBSCRIBE"], 1),
            (&[b"SUNSUBSCRIBE", b"s1"], 1),
            // Still subscribed: one shard channel is left.
            (&[b"GET", b"k"], 1),
            (&[b"SUNSUBSCRIBE"], 1),
            (&[b"GET", b"k"], 1),
            (&[b"PING"], 1),
            (&[b"SUBSCRIBE", b"a"], 1),
            (&[b"RESET"], 1),
            (&[b"GET", b"k"], 1),
            (&[b"PSUBSCRIBE", b"q*"], 1),
            (&[b"QUIT"], 1),
        ];
        for (args, replies) in steps {
            if args[0] == b"CLIENT" && protocol == b"2" {
                // Refused in subscribed mode with the command's name: same text, any id.
                same(&mut via, &mut direct, args, *replies).await;
                continue;
            }
            if args[0] == b"CLIENT" {
                // RESP3 may run anything; the ids differ, so only the type is compared.
                via.send(&encode_command(args)).await;
                direct.send(&encode_command(args)).await;
                assert_eq!(via.read_reply().await[0], direct.read_reply().await[0]);
                continue;
            }
            same(&mut via, &mut direct, args, *replies).await;
        }
        assert_eq!(
            via.read_until_closed().await,
            direct.read_until_closed().await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_follow_the_subscribed_mode_of_the_requests_before_them() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let pipeline: &[&[&[u8]]] = &[
        &[b"SUBSCRIBE", b"ch"],
        &[b"GET", b"k"],
        &[b"PING"],
        &[b"SET", b"k", b"v"],
        &[b"UNSUBSCRIBE"],
        &[b"SET", b"k", b"v"],
        &[b"PSUBSCRIBE", b"p*"],
        &[b"GET", b"k"],
        &[b"SSUBSCRIBE", b"s"],
        &[b"PUNSUBSCRIBE", b"p*"],
        &[b"GET", b"k"],
        &[b"SUNSUBSCRIBE", b"s"],
        &[b"GET", b"k"],
    ];
    let bytes: Vec<u8> = pipeline
        .iter()
        .flat_map(|args| encode_command(args))
        .collect();
    for protocol in [&b"2"[..], b"3"] {
        let mut via = proxy.raw_client().await;
        let mut direct = RawClient::connect(standalone.addr.as_str()).await;
        via.request(&[b"HELLO", protocol]).await;
        direct.request(&[b"HELLO", protocol]).await;
        via.request(&[b"DEL", b"k"]).await;
        direct.request(&[b"DEL", b"k"]).await;
        // All in one write: subscribed mode starts with the SUBSCRIBE itself.
        via.send(&bytes).await;
        direct.send(&bytes).await;
        for args in pipeline {
            let got = via.read_reply().await;
            let want = direct.read_reply().await;
            assert_eq!(
                text(&got),
                text(&want),
                "RESP{} {:?}",
                text(protocol),
                args.iter().map(|a| text(a)).collect::<Vec<_>>()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_node_subscription_per_channel() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    const CLIENTS: usize = 8;
    let mut via = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..CLIENTS {
        for (clients, addr) in [
            (&mut via, proxy.addr.to_string()),
            (&mut direct, standalone.addr.clone()),
        ] {
            let mut raw = RawClient::connect(addr.as_str()).await;
            raw.send(&encode_command(&[b"SUBSCRIBE", b"news"])).await;
            raw.send(&encode_command(&[b"PSUBSCRIBE", b"n*"])).await;
            raw.read_reply().await;
            raw.read_reply().await;
            clients.push(raw);
        }
    }
    // The proxy holds the channel and the pattern once, on one node.
    assert_eq!(node_subscriptions(&cluster, "news"), 1);
    assert_eq!(node_patterns(&cluster), 1);

    // A real client publishes; every subscriber gets what redis-server sends it.
    let mut publisher = proxy.sync_client();
    let mut direct_publisher = standalone.conn();
    let publish = |conn: &mut redis::Connection, payload: &str| -> i64 {
        redis::cmd("PUBLISH")
            .arg("news")
            .arg(payload)
            .query(conn)
            .unwrap()
    };
    assert_eq!(
        publish(&mut publisher, "hello"),
        publish(&mut direct_publisher, "hello")
    );
    for (v, d) in via.iter_mut().zip(direct.iter_mut()) {
        for _ in 0..2 {
            assert_eq!(text(&v.read_reply().await), text(&d.read_reply().await));
        }
    }
    let numsub = |conn: &mut redis::Connection| -> Vec<redis::Value> {
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("news")
            .arg("other")
            .query(conn)
            .unwrap()
    };
    assert_eq!(numsub(&mut publisher), numsub(&mut direct_publisher));

    // Clients leave; the node subscription stays while one is left, then goes.
    for _ in 1..CLIENTS {
        drop(via.pop());
        drop(direct.pop());
    }
    wait_until(
        Duration::from_secs(5),
        "the proxy counts one subscriber left",
        || numsub(&mut publisher) == numsub(&mut direct_publisher),
    );
    assert_eq!(node_subscriptions(&cluster, "news"), 1);
    assert_eq!(
        publish(&mut publisher, "last"),
        publish(&mut direct_publisher, "last")
    );
    drop(via.pop());
    wait_until(
        Duration::from_secs(5),
        "the node subscription is dropped",
        || node_subscriptions(&cluster, "news") == 0 && node_patterns(&cluster) == 0,
    );

    // A confirmation means the node holds the subscription: a message published anywhere right
    // after it is delivered, as by redis-server.
    let mut raw = proxy.raw_client().await;
    let mut node = cluster.conn(&cluster.nodes()[4]);
    for i in 0..20 {
        let channel = format!("fresh:{i}");
        raw.request(&[b"SUBSCRIBE", channel.as_bytes()]).await;
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("now")
            .query(&mut node)
            .unwrap();
        assert_eq!(
            text(&raw.read_reply().await),
            format!(
                "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n$3\r\nnow\r\n",
                channel.len()
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_subscribers_get_pushes_and_may_run_commands() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    via.request(&[b"HELLO", b"3"]).await;
    direct.request(&[b"HELLO", b"3"]).await;
    // Publishing to itself in one write: confirmation, the message, then the count.
    let pipeline: Vec<u8> = [
        encode_command(&[b"SUBSCRIBE", b"self"]),
        encode_command(&[b"PUBLISH", b"self", b"hi"]),
        encode_command(&[b"UNSUBSCRIBE", b"self"]),
    ]
    .concat();
    via.send(&pipeline).await;
    direct.send(&pipeline).await;
    for i in 0..4 {
        let got = via.read_reply().await;
        assert_eq!(text(&got), text(&direct.read_reply().await), "frame {i}");
    }
    same(&mut via, &mut direct, &[b"SUBSCRIBE", b"ch"], 1).await;
    same(&mut via, &mut direct, &[b"PSUBSCRIBE", b"c*"], 1).await;
    same(&mut via, &mut direct, &[b"SET", b"r3k", b"v"], 1).await;
    same(&mut via, &mut direct, &[b"GET", b"r3k"], 1).await;
    same(&mut via, &mut direct, &[b"PUBSUB", b"NUMSUB", b"ch"], 1).await;

    let mut publisher = proxy.sync_client();
    let mut direct_publisher = standalone.conn();
    let publish = |conn: &mut redis::Connection, payload: &str| -> i64 {
        redis::cmd("PUBLISH")
            .arg("ch")
            .arg(payload)
            .query(conn)
            .unwrap()
    };
    assert_eq!(
        publish(&mut publisher, "pushed"),
        publish(&mut direct_publisher, "pushed")
    );
    // A push for the channel, then one for the pattern.
    for _ in 0..2 {
        assert_eq!(
            text(&via.read_reply().await),
            text(&direct.read_reply().await)
        );
    }
    // Back to RESP2 while subscribed: subscribed mode, and messages as arrays.
    via.request(&[b"HELLO", b"2"]).await;
    direct.request(&[b"HELLO", b"2"]).await;
    same(&mut via, &mut direct, &[b"GET", b"r3k"], 1).await;
    assert_eq!(
        publish(&mut publisher, "array"),
        publish(&mut direct_publisher, "array")
    );
    for _ in 0..2 {
        assert_eq!(
            text(&via.read_reply().await),
            text(&direct.read_reply().await)
        );
    }
}

/// Reads frames until one equals `want`; every frame before it must satisfy `allowed`.
async fn read_until(raw: &mut RawClient, want: &[u8], allowed: impl Fn(&[u8]) -> bool) {
    loop {
        let frame = raw.read_reply().await;
        if frame == want {
            return;
        }
        assert!(
            allowed(&frame),
            "unexpected frame {:?} before {:?}",
            text(&frame),
            text(want)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_never_precede_their_subscription_nor_follow_its_end() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    // Publishers keep the channel busy, through the proxy and straight to a node.
    let mut publishers = Vec::new();
    for addr in [proxy.addr.to_string(), cluster.nodes()[1].addr.clone()] {
        let stop = stop.clone();
        let published = published.clone();
        publishers.push(tokio::spawn(async move {
            let mut raw = RawClient::connect(addr.as_str()).await;
            while !stop.load(Ordering::Relaxed) {
                raw.request(&[b"PUBLISH", b"busy", b"tick"]).await;
                published.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let message = b"*3\r\n$7\r\nmessage\r\n$4\r\nbusy\r\n$4\r\ntick\r\n".to_vec();
    let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nbusy\r\n:1\r\n".to_vec();
    let unsubscribed = b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nbusy\r\n:0\r\n".to_vec();
    let mut raw = proxy.raw_client().await;
    for _ in 0..30 {
        raw.send(&encode_command(&[b"SUBSCRIBE", b"busy"])).await;
        read_until(&mut raw, &subscribed, |_| false).await;
        // At least one message arrives while subscribed.
        assert_eq!(raw.read_reply().await, message);
        raw.send(&encode_command(&[b"UNSUBSCRIBE", b"busy"])).await;
        read_until(&mut raw, &unsubscribed, |f| f == message).await;
        // Nothing for the channel after its unsubscribe confirmation.
        assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n");
    }
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        publisher.await.unwrap();
    }
    assert!(published.load(Ordering::Relaxed) > 30);
}

fn string_set(value: Vec<String>) -> BTreeSet<String> {
    value.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_pubsub_counts_match_a_single_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    // The same subscribers on both sides.
    let subscriptions: &[&[&[u8]]] = &[
        &[b"SUBSCRIBE", b"c1"],
        &[b"SUBSCRIBE", b"c1", b"c2"],
        &[b"SUBSCRIBE", b"c1"],
        &[b"PSUBSCRIBE", b"c*"],
        &[b"PSUBSCRIBE", b"c*", b"x*"],
        &[b"SSUBSCRIBE", b"s1"],
        &[b"SSUBSCRIBE", b"s1"],
        &[b"SSUBSCRIBE", b"s2"],
    ];
    let mut held = Vec::new();
    for args in subscriptions {
        for addr in [proxy.addr.to_string(), standalone.addr.clone()] {
            let mut raw = RawClient::connect(addr.as_str()).await;
            raw.send(&encode_command(args)).await;
            for _ in 1..args.len() {
                raw.read_reply().await;
            }
            held.push(raw);
        }
    }
    let mut via = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    for args in [
        &[&b"PUBLISH"[..], b"c1", b"m"][..],
        &[b"PUBLISH", b"c2", b"m"],
        &[b"PUBLISH", b"xy", b"m"],
        &[b"PUBLISH", b"nobody", b"m"],
        &[b"SPUBLISH", b"s1", b"m"],
        &[b"SPUBLISH", b"s3", b"m"],
    ] {
        same(&mut via, &mut direct, args, 1).await;
    }
    // A client subscribed straight to a node counts too (the standalone gets its twin).
    let mut outside = RawClient::connect(cluster.nodes()[2].addr.as_str()).await;
    let mut twin = RawClient::connect(standalone.addr.as_str()).await;
    for raw in [&mut outside, &mut twin] {
        raw.send(&encode_command(&[b"SUBSCRIBE", b"c1", b"o1"]))
            .await;
        raw.send(&encode_command(&[b"PSUBSCRIBE", b"o*"])).await;
        for _ in 0..3 {
            raw.read_reply().await;
        }
    }
    for args in [
        &[
            &b"PUBSUB"[..],
            b"NUMSUB",
            b"c1",
            b"c2",
            b"o1",
            b"nobody",
            b"c1",
        ][..],
        &[b"PUBSUB", b"NUMSUB"],
        &[b"PUBSUB", b"NUMPAT"],
        &[b"PUBSUB", b"SHARDNUMSUB", b"s1", b"s2", b"s3"],
        &[b"PUBSUB", b"CHANNELS", b"a", b"b"],
    ] {
        same(&mut via, &mut direct, args, 1).await;
    }
    // Lists come in each server's own order: compare them as sets.
    let mut client = proxy.sync_client();
    let mut direct_client = standalone.conn();
    for (sub, pattern) in [
        ("CHANNELS", None),
        ("CHANNELS", Some("c*")),
        ("CHANNELS", Some("o?")),
        ("SHARDCHANNELS", None),
        ("SHARDCHANNELS", Some("*2")),
    ] {
        let list = |conn: &mut redis::Connection| {
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg(sub);
            if let Some(pattern) = pattern {
                cmd.arg(pattern);
            }
            string_set(cmd.query::<Vec<String>>(conn).unwrap())
        };
        assert_eq!(
            list(&mut client),
            list(&mut direct_client),
            "{sub} {pattern:?}"
        );
    }
}

/// The resident memory of this test process (the proxy runs in it).
fn rss_bytes() -> u64 {
    crate::common::proc_status_bytes("self", "VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_is_disconnected_at_its_limit_and_others_keep_receiving() {
    const LIMIT: usize = 2 * 1024 * 1024;
    const PAYLOAD: usize = 32 * 1024;
    const MESSAGES: usize = 4096; // 128 MB in all
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.pubsub_output_buffer_bytes = LIMIT;
        c.session.pubsub_output_buffer_soft_bytes = 0;
    })
    .await;
    let mut slow = proxy.raw_client().await;
    slow.request(&[b"SUBSCRIBE", b"firehose"]).await;
    // A real client that reads as fast as it can.
    let mut fast_conn = proxy.sync_client();
    let fast = std::thread::spawn(move || {
        let mut pubsub = fast_conn.as_pubsub();
        pubsub.subscribe("firehose").unwrap();
        let mut received = 0;
        while received < MESSAGES {
            let message = pubsub.get_message().unwrap();
            assert_eq!(message.get_payload_bytes().len(), PAYLOAD);
            received += 1;
        }
        received
    });
    let mut publisher = proxy.sync_client();
    wait_until(Duration::from_secs(5), "both subscribed", || {
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("firehose")
            .query(&mut publisher)
            .unwrap();
        n == 2
    });
    let before = rss_bytes();
    let payload = vec![b'x'; PAYLOAD];
    let mut peak = before;
    let started = Instant::now();
    for i in 0..MESSAGES {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("firehose")
            .arg(&payload)
            .query(&mut publisher)
            .unwrap();
        if i % 256 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(
        fast.join().unwrap(),
        MESSAGES,
        "the fast subscriber got everything"
    );
    // The slow one was cut off long before the end: what it can still read is what the socket
    // buffers held when the proxy gave up on it.
    let leftover = slow.read_until_closed().await;
    let total = PAYLOAD * MESSAGES;
    assert!(
        leftover.len() < total / 4,
        "the slow subscriber was sent {} of {total} bytes",
        leftover.len()
    );
    let grown = peak.saturating_sub(before);
    assert!(
        grown < (total / 3) as u64,
        "memory grew by {grown} bytes while {total} bytes went to a subscriber that never read"
    );
    eprintln!(
        "published {total} bytes in {:?}; slow subscriber cut off after {} bytes; rss +{grown}",
        started.elapsed(),
        leftover.len()
    );
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("firehose")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(n, 0, "both subscribers are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_keep_receiving_after_the_node_holding_their_channels_dies() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut raw = proxy.raw_client().await;
    raw.send(&encode_command(&[b"SUBSCRIBE", b"survivor"]))
        .await;
    raw.send(&encode_command(&[b"PSUBSCRIBE", b"surv*"])).await;
    raw.read_reply().await;
    raw.read_reply().await;
    let holder = cluster
        .nodes()
        .iter()
        .position(|node| {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("survivor")
                .query(&mut cluster.conn(node))
                .unwrap();
            n == 1
        })
        .expect("one node holds the proxy's subscription");
    let other = cluster.nodes()[(holder + 1) % cluster.nodes().len()]
        .addr
        .clone();
    cluster.kill(holder);
    // The proxy subscribes again elsewhere; messages published after that arrive. Those
    // published in between are lost, as for any subscriber whose connection drops.
    let mut publisher = redis::Client::open(format!("redis://{other}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        assert!(Instant::now() < deadline, "no message after the node died");
        let _: i64 = redis::cmd("PUBLISH")
            .arg("survivor")
            .arg("after")
            .query(&mut publisher)
            .unwrap();
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), raw.read_reply()).await
        {
            break frame;
        }
    };
    assert_eq!(
        text(&got),
        "*3\r\n$7\r\nmessage\r\n$8\r\nsurvivor\r\n$5\r\nafter\r\n"
    );
    assert_eq!(
        text(&raw.read_reply().await),
        "*4\r\n$8\r\npmessage\r\n$5\r\nsurv*\r\n$8\r\nsurvivor\r\n$5\r\nafter\r\n"
    );
    assert_eq!(node_subscriptions(&cluster, "survivor"), 1);
    // Still the same client, in subscribed mode.
    assert_eq!(
        text(&raw.request(&[b"PING"]).await),
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
}
