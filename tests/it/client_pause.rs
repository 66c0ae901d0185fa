//! `CLIENT PAUSE` / `CLIENT UNPAUSE` held in slotproxy: every client's commands wait (only
//! writes with `WRITE`) until the pause ends, in order, with redis-server's replies and errors;
//! the nodes are never paused.

use std::time::Duration;

use crate::common::{RawClient, StandaloneRedis, TestCluster, TestProxy, encode_command};

/// Long enough to tell "held" from "answered" on a loaded machine; a held request must still
/// be unanswered after it.
const STILL_HELD: Duration = Duration::from_millis(300);

async fn answered_within(client: &mut RawClient, wait: Duration) -> Option<Vec<u8>> {
    tokio::time::timeout(wait, client.read_reply()).await.ok()
}

/// The same steps against slotproxy or a standalone redis-server at `addr`: the replies seen.
async fn write_pause_steps(addr: &str) -> Vec<String> {
    let mut admin = RawClient::connect(addr).await;
    let mut other = RawClient::connect(addr).await;
    let mut seen = Vec::new();
    let mut note = |reply: &[u8]| seen.push(String::from_utf8_lossy(reply).into_owned());
    note(
        &admin
            .request(&[b"CLIENT", b"PAUSE", b"100000", b"WRITE"])
            .await,
    );
    // Reads run during a WRITE pause.
    note(&other.request(&[b"GET", b"paused:k"]).await);
    // A write waits, and so does the read pipelined behind it.
    let mut pipeline = encode_command(&[b"SET", b"paused:k", b"v"]);
    pipeline.extend_from_slice(&encode_command(&[b"GET", b"paused:k"]));
    other.send(&pipeline).await;
    assert_eq!(
        answered_within(&mut other, STILL_HELD).await,
        None,
        "{addr}: SET ran"
    );
    // UNPAUSE is not a write: it runs, and the held requests follow in order.
    note(&admin.request(&[b"CLIENT", b"UNPAUSE"]).await);
    note(&other.read_reply().await);
    note(&other.read_reply().await);
    // A short ALL pause holds reads too, then ends by itself.
    note(&admin.request(&[b"CLIENT", b"PAUSE", b"400", b"ALL"]).await);
    other.send(&encode_command(&[b"GET", b"paused:k"])).await;
    assert_eq!(
        answered_within(&mut other, Duration::from_millis(50)).await,
        None,
        "{addr}: GET ran"
    );
    note(&other.read_reply().await);
    for args in [
        &[&b"CLIENT"[..], b"PAUSE", b"abc"][..],
        &[b"CLIENT", b"PAUSE", b"-1"],
        &[b"CLIENT", b"PAUSE", b"10", b"NOPE"],
        &[b"CLIENT", b"PAUSE", b"0"],
        &[b"CLIENT", b"UNPAUSE"],
        &[b"DEL", b"paused:k"],
    ] {
        note(&admin.request(args).await);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_holds_requests_in_slotproxy_like_redis_server() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let want = write_pause_steps(&standalone.addr).await;
    assert_eq!(want[4], "$1\r\nv\r\n", "redis-server: {want:?}");
    assert_eq!(write_pause_steps(&proxy.addr.to_string()).await, want);
    // The nodes were never paused: a direct write to each primary is answered.
    for node in cluster.primaries() {
        let key = cluster.key_for_node(node, "direct");
        redis::cmd("SET")
            .arg(&key)
            .arg("1")
            .query::<()>(&mut cluster.conn(node))
            .unwrap();
    }
}
