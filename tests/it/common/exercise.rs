//! One pass over every kind of node connection slotproxy opens, for the secured-cluster tests
//! (authentication, TLS): each must have been set up right for its commands to work.

use std::time::Duration;

use super::{TestCluster, TestProxy, wait_until};

/// The RESP2 `message` a subscriber gets.
pub fn message(channel: &str, payload: &str) -> Vec<u8> {
    format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
        channel.len(),
        payload.len()
    )
    .into_bytes()
}

/// Data commands, a split MGET, SCAN, pub/sub and tracking through `proxy`: each opens a
/// different kind of node connection (shared, hub link, tracking listener).
pub async fn exercise_connections(cluster: &TestCluster, proxy: &TestProxy) {
    let primaries = cluster.primaries();
    let keys: Vec<String> = primaries
        .iter()
        .map(|p| cluster.key_for_node(p, "sec"))
        .collect();
    let mut client = proxy.raw_client().await;
    for key in &keys {
        assert_eq!(
            client
                .request(&[b"SET", key.as_bytes(), key.as_bytes()])
                .await,
            b"+OK\r\n"
        );
    }
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| k.as_bytes()));
    let want: String = format!(
        "*3\r\n{}",
        keys.iter()
            .map(|k| format!("${}\r\n{k}\r\n", k.len()))
            .collect::<String>()
    );
    assert_eq!(client.request(&mget).await, want.as_bytes());

    // SCAN walks every primary's keys.
    let mut conn = proxy.client().await;
    let mut cursor = 0u64;
    let mut seen = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("sec:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        seen.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    seen.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    // Pub/sub over the hub's links.
    let mut subscriber = proxy.raw_client().await;
    assert_eq!(
        subscriber.request(&[b"SUBSCRIBE", b"news"]).await,
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        client.request(&[b"PUBLISH", b"news", b"hello"]).await,
        b":1\r\n"
    );
    assert_eq!(subscriber.read_reply().await, message("news", "hello"));

    // Tracking over the invalidation listeners.
    let mut reader = proxy.raw_client().await;
    let hello = reader.request(&[b"HELLO", b"3"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{hello:?}");
    assert_eq!(
        reader.request(&[b"CLIENT", b"TRACKING", b"ON"]).await,
        b"+OK\r\n"
    );
    let key = keys[2].as_bytes();
    let value = reader.request(&[b"GET", key]).await;
    assert_eq!(
        value,
        format!("${}\r\n{}\r\n", key.len(), keys[2]).as_bytes()
    );
    assert_eq!(client.request(&[b"SET", key, b"changed"]).await, b"+OK\r\n");
    let push = format!(
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n${}\r\n{}\r\n",
        key.len(),
        keys[2]
    );
    assert_eq!(reader.read_reply().await, push.as_bytes());
}

/// Waits until every node has run `PING` twice since its stats were reset: slotproxy's health
/// checks reached it, which they only do over a connection set up right (authenticated, TLS).
pub fn wait_health_checks_reach_every_node(cluster: &TestCluster) {
    for node in cluster.nodes() {
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut cluster.conn(node))
            .expect("CONFIG RESETSTAT");
    }
    for node in cluster.nodes() {
        wait_until(
            Duration::from_secs(10),
            "the health checks ping every node",
            || cluster.command_calls(node, "ping") >= 2,
        );
    }
}
