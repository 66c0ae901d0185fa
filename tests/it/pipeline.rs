//! Pipelining: replies in request order across slots, bursts, and many concurrent clients.

use crate::common::{RawClient, TestCluster, TestProxy, encode_command, resp_frame_len};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commands_in_one_burst_are_answered_in_order() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut burst = Vec::new();
    for i in 0..10_000 {
        let key = format!("burst:{i}");
        let value = format!("value-{i}");
        if i % 2 == 0 {
            burst.extend(encode_command(&[b"SET", key.as_bytes(), value.as_bytes()]));
        } else {
            let prev = format!("burst:{}", i - 1);
            burst.extend(encode_command(&[b"GET", prev.as_bytes()]));
        }
    }
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.send(&burst).await;
    for i in 0..10_000 {
        let reply = raw.read_reply().await;
        if i % 2 == 0 {
            assert_eq!(reply, b"+OK\r\n", "reply {i}");
        } else {
            let want = format!("value-{}", i - 1);
            let want = format!("${}\r\n{want}\r\n", want.len());
            assert_eq!(String::from_utf8_lossy(&reply), want, "reply {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_slot_pipeline_with_local_replies_keeps_order() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut c = proxy.client().await;
    let mut pipe = redis::pipe();
    let mut want = Vec::new();
    for i in 0..500 {
        let key = format!("mix:{i}");
        pipe.cmd("INCRBY").arg(&key).arg(i);
        want.push(redis::Value::Int(i));
        pipe.cmd("PING");
        want.push(redis::Value::SimpleString("PONG".into()));
        pipe.cmd("ECHO").arg(i);
        want.push(redis::Value::BulkString(i.to_string().into_bytes()));
        pipe.cmd("GET").arg(&key);
        want.push(redis::Value::BulkString(i.to_string().into_bytes()));
    }
    let got: Vec<redis::Value> = pipe.query_async(&mut c).await.unwrap();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients_each_get_their_own_replies() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(RawClient::connect(proxy.addr).await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut raw)| {
            tokio::spawn(async move {
                let mut burst = Vec::new();
                for i in 0..20 {
                    let key = format!("client:{n}:{i}");
                    burst.extend(encode_command(&[
                        b"SET",
                        key.as_bytes(),
                        n.to_string().as_bytes(),
                    ]));
                    burst.extend(encode_command(&[b"GET", key.as_bytes()]));
                }
                raw.send(&burst).await;
                for i in 0..20 {
                    assert_eq!(raw.read_reply().await, b"+OK\r\n", "client {n} set {i}");
                    let got = raw.read_reply().await;
                    let want = format!("${}\r\n{n}\r\n", n.to_string().len());
                    assert_eq!(String::from_utf8_lossy(&got), want, "client {n} get {i}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Every write is on the cluster.
    let mut total = 0;
    for node in cluster.primaries() {
        total += redis::cmd("DBSIZE")
            .query::<i64>(&mut cluster.conn(node))
            .unwrap();
    }
    assert_eq!(total, 1000 * 20);
}

#[test]
fn frame_scanner_used_by_these_tests_agrees_with_known_frames() {
    // The raw client's frame scanner is test code too; check it on real-looking replies.
    assert_eq!(resp_frame_len(b"+OK\r\n"), Ok(Some(5)));
    assert_eq!(resp_frame_len(b"$3\r\nabc\r\n:1\r\n"), Ok(Some(9)));
    assert_eq!(resp_frame_len(b"*2\r\n$1\r\na\r\n"), Ok(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_in_flight_limit_is_answered_in_full() {
    // With one request in flight at a time, every reply frees room while the rest of the burst
    // is already buffered: the session must go on parsing without waiting for more input.
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| c.session.max_in_flight = 1).await;
    let mut burst = Vec::new();
    for i in 0..200 {
        let key = format!("limited:{i}");
        burst.extend(encode_command(&[b"INCR", key.as_bytes()]));
        burst.extend(encode_command(&[b"PING"]));
    }
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.send(&burst).await;
    for i in 0..200 {
        assert_eq!(raw.read_reply().await, b":1\r\n", "INCR {i}");
        assert_eq!(raw.read_reply().await, b"+PONG\r\n", "PING {i}");
    }
}
