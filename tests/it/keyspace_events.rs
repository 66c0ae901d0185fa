//! Keyspace notifications through the proxy: redis publishes them on the node that owns the key
//! only, so slotproxy holds keyspace channels and patterns on one node of every shard. A client
//! gets each shard's events once, as from one redis-server, and `PSUBSCRIBE *` still gets a
//! `PUBLISH` once (every node receives those), not once per shard.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{
    self, RawClient, TestCluster, TestProxy, encode_command, is_primary, wait_until,
};

/// A RESP2 push of bulk strings: the same bytes as a command with those arguments.
fn push(parts: &[&[u8]]) -> Vec<u8> {
    encode_command(parts)
}

/// Reads frames until every one of `want` has arrived (in any order), then a marker published
/// after a pause, failing on anything else: a duplicate, or an event of a key not written.
async fn expect_exactly(client: &mut RawClient, want: &[Vec<u8>], marker: &[u8]) {
    let mut missing: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for frame in want {
        *missing.entry(frame.clone()).or_default() += 1;
    }
    let mut seen_marker = false;
    while !missing.is_empty() || !seen_marker {
        let frame = client.read_reply().await;
        if frame == marker {
            assert!(
                missing.is_empty(),
                "marker before {:?}",
                missing
                    .keys()
                    .map(|f| f.escape_ascii().to_string())
                    .collect::<Vec<_>>()
            );
            seen_marker = true;
            continue;
        }
        match missing.get_mut(&frame) {
            Some(count) => {
                *count -= 1;
                if *count == 0 {
                    missing.remove(&frame);
                }
            }
            None => panic!("unexpected frame {}", frame.escape_ascii()),
        }
    }
}

/// A (p)subscribe confirmation: `[kind, name, count]`.
fn confirmation(kind: &[u8], name: &[u8], count: usize) -> Vec<u8> {
    let mut frame = format!("*3\r\n${}\r\n", kind.len()).into_bytes();
    frame.extend_from_slice(kind);
    frame.extend_from_slice(format!("\r\n${}\r\n", name.len()).as_bytes());
    frame.extend_from_slice(name);
    frame.extend_from_slice(format!("\r\n:{count}\r\n").as_bytes());
    frame
}

/// What an operator sets on every node (or through slotproxy, with CONFIG SET allowed).
fn enable_notifications(cluster: &TestCluster) {
    for node in cluster.nodes() {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg("KE$x")
            .query(&mut cluster.conn(node))
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_events_of_every_shard_arrive_once() {
    let cluster = TestCluster::start(3, 1);
    enable_notifications(&cluster);
    let proxy = TestProxy::start(&cluster).await;
    let mut space = proxy.raw_client().await;
    let mut event = proxy.raw_client().await;
    let mut everything = proxy.raw_client().await;
    let mut writer = proxy.raw_client().await;
    let space_pattern: &[u8] = b"__keyspace@0__:*";
    let set_channel: &[u8] = b"__keyevent@0__:set";
    assert_eq!(
        space.request(&[b"PSUBSCRIBE", space_pattern]).await,
        confirmation(b"psubscribe", space_pattern, 1)
    );
    assert_eq!(
        event.request(&[b"SUBSCRIBE", set_channel]).await,
        confirmation(b"subscribe", set_channel, 1)
    );
    let marker: &[u8] = b"marker";
    for client in [&mut space, &mut event] {
        assert_eq!(
            client.request(&[b"SUBSCRIBE", marker]).await,
            confirmation(b"subscribe", marker, 2)
        );
    }
    assert_eq!(
        everything.request(&[b"PSUBSCRIBE", b"*"]).await,
        confirmation(b"psubscribe", b"*", 1)
    );

    // Counted as one redis-server would: the proxy's links on every shard are not subscribers.
    let mut numsub = b"*4\r\n".to_vec();
    for (channel, count) in [(set_channel, 1), (marker, 2)] {
        numsub.extend_from_slice(format!("${}\r\n", channel.len()).as_bytes());
        numsub.extend_from_slice(channel);
        numsub.extend_from_slice(format!("\r\n:{count}\r\n").as_bytes());
    }
    assert_eq!(
        String::from_utf8_lossy(
            &writer
                .request(&[b"PUBSUB", b"NUMSUB", set_channel, marker])
                .await
        ),
        String::from_utf8_lossy(&numsub)
    );
    assert_eq!(writer.request(&[b"PUBSUB", b"NUMPAT"]).await, b":2\r\n");

    // One key on each primary, written right after the subscriptions were confirmed.
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|p| cluster.key_for_node(p, "watched"))
        .collect();
    for key in &keys {
        assert_eq!(
            writer.request(&[b"SET", key.as_bytes(), b"v"]).await,
            b"+OK\r\n"
        );
    }
    assert!(
        writer
            .request(&[b"PUBLISH", b"news", b"hello"])
            .await
            .starts_with(b":")
    );
    // Anything duplicated would arrive within this pause, before the marker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        writer
            .request(&[b"PUBLISH", marker, b"end"])
            .await
            .starts_with(b":")
    );

    let space_events: Vec<Vec<u8>> = keys
        .iter()
        .map(|key| {
            let channel = format!("__keyspace@0__:{key}");
            push(&[b"pmessage", space_pattern, channel.as_bytes(), b"set"])
        })
        .collect();
    let set_events: Vec<Vec<u8>> = keys
        .iter()
        .map(|key| push(&[b"message", set_channel, key.as_bytes()]))
        .collect();
    let marked = push(&[b"message", marker, b"end"]);
    expect_exactly(&mut space, &space_events, &marked).await;
    expect_exactly(&mut event, &set_events, &marked).await;
    // `*` sees every keyspace and keyevent channel, and each PUBLISH once.
    let mut all: Vec<Vec<u8>> = Vec::new();
    for key in &keys {
        let space_channel = format!("__keyspace@0__:{key}");
        all.push(push(&[b"pmessage", b"*", space_channel.as_bytes(), b"set"]));
        all.push(push(&[b"pmessage", b"*", set_channel, key.as_bytes()]));
    }
    all.push(push(&[b"pmessage", b"*", b"news", b"hello"]));
    expect_exactly(
        &mut everything,
        &all,
        &push(&[b"pmessage", b"*", marker, b"end"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_events_resume_after_their_shard_fails_over() {
    let mut cluster = TestCluster::start(3, 1);
    enable_notifications(&cluster);
    let proxy = TestProxy::start(&cluster).await;
    let mut event = proxy.raw_client().await;
    let mut writer = proxy.raw_client().await;
    let set_channel: &[u8] = b"__keyevent@0__:set";
    let plain: &[u8] = b"plain";
    assert_eq!(
        event.request(&[b"SUBSCRIBE", set_channel]).await,
        confirmation(b"subscribe", set_channel, 1)
    );
    assert_eq!(
        event.request(&[b"SUBSCRIBE", plain]).await,
        confirmation(b"subscribe", plain, 2)
    );
    // The node holding the plain channel is the one the classic link went to; kill the primary
    // of another shard, whose events come over a keyspace link.
    let holds_plain = |node: &common::TestNode| {
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("plain")
            .query(&mut cluster.conn(node))
            .unwrap();
        count == 1
    };
    let classic = cluster
        .nodes()
        .iter()
        .find(|n| holds_plain(n))
        .expect("one node holds the proxy's channel subscriptions")
        .addr
        .clone();
    let victim = cluster
        .primaries()
        .into_iter()
        .find(|p| p.addr != classic && cluster.replica_of(p).addr != classic)
        .expect("a shard without the classic link");
    let key = cluster.key_for_node(victim, "failover");
    let promoted = cluster.replica_of(victim).addr.clone();
    assert_eq!(
        writer.request(&[b"SET", key.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        event.read_reply().await,
        push(&[b"message", set_channel, key.as_bytes()])
    );

    let index = cluster.index_of(victim);
    cluster.kill(index);
    wait_until(Duration::from_secs(20), "the replica was promoted", || {
        is_primary(&promoted)
    });
    // Events during the move are lost (as documented); once the proxy follows, they flow again.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut round = 0;
    loop {
        round += 1;
        // Same slot as `key`, so on the promoted primary.
        let key = format!("{{{key}}}:{round}");
        let reply = writer.request(&[b"SET", key.as_bytes(), b"v"]).await;
        assert_eq!(reply, b"+OK\r\n", "SET after the failover");
        let want = push(&[b"message", set_channel, key.as_bytes()]);
        let got = tokio::time::timeout(Duration::from_millis(300), event.read_reply()).await;
        match got {
            Ok(frame) if frame == want => break,
            Ok(frame) => panic!("unexpected frame {}", frame.escape_ascii()),
            Err(_) => assert!(
                std::time::Instant::now() < deadline,
                "no keyspace event from the promoted primary {promoted} after {round} writes"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_from_primaries_when_the_proxy_subscribed_on_a_replica() {
    let cluster = TestCluster::start(3, 1);
    enable_notifications(&cluster);
    let proxy = TestProxy::start(&cluster).await;
    let mut event = proxy.raw_client().await;
    let mut writer = proxy.raw_client().await;
    let (set_channel, expired_channel, plain): (&[u8], &[u8], &[u8]) =
        (b"__keyevent@0__:set", b"__keyevent@0__:expired", b"plain");
    for (i, channel) in [set_channel, expired_channel, plain]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            event.request(&[b"SUBSCRIBE", channel]).await,
            confirmation(b"subscribe", channel, i + 1)
        );
    }
    // Put the classic link on a replica: if its node is a primary, fail that shard over.
    let classic = cluster
        .nodes()
        .iter()
        .find(|n| {
            let (_, count): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("plain")
                .query(&mut cluster.conn(n))
                .unwrap();
            count == 1
        })
        .expect("one node holds the proxy's channel subscriptions");
    if is_primary(&classic.addr) {
        let replica = cluster.replica_of(classic);
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut cluster.conn(replica))
            .unwrap();
        wait_until(Duration::from_secs(10), "the replica took over", || {
            is_primary(&replica.addr) && !is_primary(&classic.addr)
        });
    }
    // Until the proxy has followed the map, events may be missing; a probe per shard shows it.
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|p| cluster.key_for_node(p, "replica-case"))
        .collect();
    // Bytes of a `set` event before its key: `*3`, `message`, the channel.
    let set_header = push(&[b"message", set_channel, b""]).len() - b"$0\r\n\r\n".len();
    // A probe counts once its SET brings exactly one event: before the proxy has followed the
    // failover, its old link may still pass on the replica's copy too (a duplicate), or none.
    for key in &keys {
        let probe = format!("{{{key}}}:probe");
        let want = push(&[b"message", set_channel, probe.as_bytes()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = writer.request(&[b"SET", probe.as_bytes(), b"p"]).await;
            assert_eq!(reply, b"+OK\r\n");
            let mut events = Vec::new();
            while let Ok(frame) =
                tokio::time::timeout(Duration::from_millis(300), event.read_reply()).await
            {
                assert!(
                    frame.starts_with(&want[..set_header]),
                    "unexpected frame {}",
                    frame.escape_ascii()
                );
                events.push(frame);
            }
            if events == [want.clone()] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{probe}: {} events, not one",
                events.len()
            );
        }
    }
    // Settle: drop any late duplicate of the probes, up to a marker.
    assert!(
        writer
            .request(&[b"PUBLISH", plain, b"settled"])
            .await
            .starts_with(b":")
    );
    let settled = push(&[b"message", plain, b"settled"]);
    while event.read_reply().await != settled {}

    // Each SET once (a replica replays it too), and each expiry once (only primaries report
    // `expired`; a replica reports the DEL it is sent).
    let mut want = Vec::new();
    for key in &keys {
        assert_eq!(
            writer
                .request(&[b"SET", key.as_bytes(), b"v", b"PX", b"50"])
                .await,
            b"+OK\r\n"
        );
        want.push(push(&[b"message", set_channel, key.as_bytes()]));
        want.push(push(&[b"message", expired_channel, key.as_bytes()]));
    }
    // Expired keys are found by the nodes' active expiry (10 times a second) or on access.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for key in &keys {
        let got = writer.request(&[b"GET", key.as_bytes()]).await;
        assert_eq!(got, b"$-1\r\n");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        writer
            .request(&[b"PUBLISH", plain, b"end"])
            .await
            .starts_with(b":")
    );
    expect_exactly(&mut event, &want, &push(&[b"message", plain, b"end"])).await;
}
