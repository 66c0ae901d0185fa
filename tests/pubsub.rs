//! Pub/sub through the proxy: subscriptions, pattern subscriptions, subscribed-mode rules, RESP3
//! pushes, and messages published by other clients, compared with a standalone redis-server.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may unwrap too

mod common;

use common::{RawClient, StandaloneRedis, TestCluster, TestProxy, encode_command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_clients_get_what_redis_server_sends() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let mut publisher = proxy.raw_client().await;
    let mut direct_publisher = RawClient::connect(standalone.addr.as_str()).await;

    // Confirmations: one frame per channel.
    for raw in [&mut via_proxy, &mut direct] {
        raw.send(&encode_command(&[b"SUBSCRIBE", b"news", b"sport"]))
            .await;
        raw.send(&encode_command(&[b"PSUBSCRIBE", b"n*"])).await;
    }
    for _ in 0..3 {
        let got = via_proxy.read_reply().await;
        let want = direct.read_reply().await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
    // Subscribed mode: only the pub/sub family, PING, QUIT and RESET.
    let same = |got: Vec<u8>, want: Vec<u8>| {
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        )
    };
    same(
        via_proxy.request(&[b"GET", b"k"]).await,
        direct.request(&[b"GET", b"k"]).await,
    );
    same(
        via_proxy.request(&[b"PING"]).await,
        direct.request(&[b"PING"]).await,
    );
    same(
        via_proxy.request(&[b"PING", b"hi"]).await,
        direct.request(&[b"PING", b"hi"]).await,
    );

    // A message published by another client (through the proxy, so maybe via another node).
    let _ = publisher.request(&[b"PUBLISH", b"news", b"hello"]).await;
    direct_publisher
        .request(&[b"PUBLISH", b"news", b"hello"])
        .await;
    for _ in 0..2 {
        // message for "news", then pmessage for "n*"
        same(via_proxy.read_reply().await, direct.read_reply().await);
    }
    // Unsubscribe everything: back to normal mode.
    for raw in [&mut via_proxy, &mut direct] {
        raw.send(&encode_command(&[b"UNSUBSCRIBE"])).await;
        raw.send(&encode_command(&[b"PUNSUBSCRIBE"])).await;
    }
    // Redis unsubscribes in its dict order, which differs between servers, and each confirmation
    // carries the running count: compare the channels, and the counts as a set.
    let mut got = Vec::new();
    let mut want = Vec::new();
    for _ in 0..3 {
        got.push(String::from_utf8_lossy(&via_proxy.read_reply().await).into_owned());
        want.push(String::from_utf8_lossy(&direct.read_reply().await).into_owned());
    }
    let split = |frames: &[String]| {
        let mut channels: Vec<String> = frames
            .iter()
            .map(|f| f.rsplit_once(':').unwrap().0.to_string())
            .collect();
        let mut counts: Vec<String> = frames
            .iter()
            .map(|f| f.rsplit_once(':').unwrap().1.to_string())
            .collect();
        channels.sort();
        counts.sort();
        (channels, counts)
    };
    assert_eq!(split(&got), split(&want));
    assert_eq!(via_proxy.request(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(via_proxy.request(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_subscribers_get_pushes_and_may_run_commands() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    via_proxy.request(&[b"HELLO", b"3"]).await;
    direct.request(&[b"HELLO", b"3"]).await;
    let same = |got: Vec<u8>, want: Vec<u8>| {
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        )
    };
    same(
        via_proxy.request(&[b"SUBSCRIBE", b"ch"]).await,
        direct.request(&[b"SUBSCRIBE", b"ch"]).await,
    );
    same(
        via_proxy.request(&[b"SET", b"r3k", b"v"]).await,
        direct.request(&[b"SET", b"r3k", b"v"]).await,
    );
    same(
        via_proxy.request(&[b"GET", b"r3k"]).await,
        direct.request(&[b"GET", b"r3k"]).await,
    );
    let mut publisher = proxy.raw_client().await;
    publisher.request(&[b"PUBLISH", b"ch", b"pushed"]).await;
    let mut direct_publisher = RawClient::connect(standalone.addr.as_str()).await;
    direct_publisher
        .request(&[b"PUBLISH", b"ch", b"pushed"])
        .await;
    same(via_proxy.read_reply().await, direct.read_reply().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_subscribers_on_every_node() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    // Sessions spread their subscriber connections over the primaries.
    let mut subscribers = Vec::new();
    for _ in 0..6 {
        let mut raw = proxy.raw_client().await;
        assert_eq!(
            raw.request(&[b"SUBSCRIBE", b"fan"]).await,
            b"*3\r\n$9\r\nsubscribe\r\n$3\r\nfan\r\n:1\r\n"
        );
        subscribers.push(raw);
    }
    let mut publisher = proxy.sync_client();
    // The count is the receivers on the node that took the PUBLISH, as in any Redis Cluster.
    let _: i64 = redis::cmd("PUBLISH")
        .arg("fan")
        .arg("to all")
        .query(&mut publisher)
        .unwrap();
    for raw in &mut subscribers {
        assert_eq!(
            raw.read_reply().await,
            b"*3\r\n$7\r\nmessage\r\n$3\r\nfan\r\n$6\r\nto all\r\n"
        );
    }
    // A subscriber that leaves frees its node connection; the others keep receiving.
    drop(subscribers.pop());
    let _: i64 = redis::cmd("PUBLISH")
        .arg("fan")
        .arg("again")
        .query(&mut publisher)
        .unwrap();
    for raw in &mut subscribers {
        assert_eq!(
            raw.read_reply().await,
            b"*3\r\n$7\r\nmessage\r\n$3\r\nfan\r\n$5\r\nagain\r\n"
        );
    }
}
