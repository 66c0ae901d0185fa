//! `CLIENT REPLY ON|OFF|SKIP`, done by slotproxy: the same replies reach the client as from a
//! standalone redis-server, whether slotproxy answers a command itself, sends it to one node,
//! or splits it across nodes.

use crate::common::{RawClient, StandaloneRedis, TestCluster, TestProxy, encode_command};

/// Sends `commands` in one write, then `ECHO end`, and returns every reply up to that one.
async fn replies(client: &mut RawClient, commands: &[&[&[u8]]]) -> Vec<String> {
    let mut bytes = Vec::new();
    for args in commands {
        bytes.extend_from_slice(&encode_command(args));
    }
    bytes.extend_from_slice(&encode_command(&[b"ECHO", b"end"]));
    client.send(&bytes).await;
    let mut replies = Vec::new();
    loop {
        let reply = String::from_utf8_lossy(&client.read_reply().await).into_owned();
        if reply == "$3\r\nend\r\n" {
            return replies;
        }
        replies.push(reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_off_and_skip_mute_replies_like_redis_server() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let commands: &[&[&[u8]]] = &[
        &[b"CLIENT", b"REPLY", b"SKIP"],
        &[b"SET", b"a", b"1"],
        &[b"GET", b"a"],
        &[b"CLIENT", b"REPLY", b"SKIP"],
        &[b"PING"],
        &[b"CLIENT", b"REPLY", b"SKIP"],
        &[b"CLIENT", b"REPLY", b"SKIP"],
        &[b"MSET", b"a", b"2", b"b", b"3", b"c", b"4"],
        &[b"MGET", b"a", b"b", b"c"],
        &[b"CLIENT", b"REPLY", b"OFF"],
        &[b"SET", b"a", b"5"],
        &[b"GET", b"a"],
        &[b"MGET", b"a", b"b", b"c"],
        &[b"NOSUCHCOMMAND"],
        &[b"CLIENT", b"REPLY", b"SKIP"],
        &[b"DBSIZE"],
        &[b"PING"],
        &[b"CLIENT", b"REPLY", b"ON"],
        &[b"GET", b"a"],
        &[b"CLIENT", b"REPLY", b"SKIP"],
        &[b"CLIENT", b"REPLY", b"ON"],
        &[b"CLIENT", b"REPLY", b"NOPE"],
        &[b"DEL", b"a", b"b", b"c"],
    ];
    let want = replies(&mut direct, commands).await;
    assert_eq!(
        want,
        [
            "$1\r\n1\r\n",
            "*3\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n",
            "+OK\r\n",
            "$1\r\n5\r\n",
            "+OK\r\n",
            "-ERR syntax error\r\n",
            ":3\r\n"
        ],
        "redis-server"
    );
    assert_eq!(replies(&mut via_proxy, commands).await, want);
}
