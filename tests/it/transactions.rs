//! MULTI/EXEC/DISCARD/WATCH/UNWATCH run on one node, in one piece, with redis-server's replies.

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy};
use redis::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_reply_like_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let commands: &[&[&[u8]]] = &[
        &[b"EXEC"],
        &[b"DISCARD"],
        &[b"MULTI"],
        &[b"SET", b"{t}a", b"1"],
        &[b"INCR", b"{t}a"],
        &[b"LPUSH", b"{t}a", b"x"], // fails at run time: EXEC still runs the rest
        &[b"GET", b"{t}a"],
        &[b"PING"],
        &[b"EXEC"],
        &[b"MULTI"],
        &[b"MULTI"],
        &[b"WATCH", b"{t}a"],
        &[b"INCR", b"{t}a"],
        &[b"EXEC"],
        &[b"MULTI"],
        &[b"INCR", b"{t}a"],
        &[b"NOSUCH"],
        &[b"EXEC"],
        &[b"GET", b"{t}a"],
        &[b"MULTI"],
        &[b"INCR", b"{t}a"],
        &[b"DISCARD"],
        &[b"GET", b"{t}a"],
        &[b"MULTI"],
        &[b"EXEC"],
        &[b"UNWATCH"],
        // EXEC refused before it runs (here: its arity) aborts and ends the transaction, as
        // redis' rejectCommand does, in MULTI or not: PING afterwards is not queued.
        &[b"EXEC", b"x"],
        &[b"MULTI"],
        &[b"INCR", b"{t}a"],
        &[b"EXEC", b"x"],
        &[b"PING"],
        &[b"EXEC"],
        &[b"GET", b"{t}a"],
    ];
    common::assert_same_replies(&mut via_proxy, &mut direct, commands).await;
    // RESP3 too.
    via_proxy.request(&[b"HELLO", b"3"]).await;
    direct.request(&[b"HELLO", b"3"]).await;
    common::assert_same_replies(
        &mut via_proxy,
        &mut direct,
        &[
            &[&b"MULTI"[..]][..],
            &[b"HSET", b"{t}h", b"f", b"v"],
            &[b"HGETALL", b"{t}h"],
            &[b"EXEC"],
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_gives_optimistic_locking_across_clients() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut a = proxy.raw_client().await;
    let mut b = proxy.raw_client().await;
    a.request(&[b"SET", b"{w}k", b"1"]).await;

    // Untouched: the transaction runs.
    assert_eq!(a.request(&[b"WATCH", b"{w}k"]).await, b"+OK\r\n");
    assert_eq!(a.request(&[b"GET", b"{w}k"]).await, b"$1\r\n1\r\n");
    a.request(&[b"MULTI"]).await;
    a.request(&[b"SET", b"{w}k", b"2"]).await;
    assert_eq!(a.request(&[b"EXEC"]).await, b"*1\r\n+OK\r\n");

    // Another client writes the watched key between WATCH and EXEC: nil, nothing applied.
    a.request(&[b"WATCH", b"{w}k"]).await;
    b.request(&[b"SET", b"{w}k", b"from-b"]).await;
    a.request(&[b"MULTI"]).await;
    a.request(&[b"SET", b"{w}k", b"from-a"]).await;
    assert_eq!(a.request(&[b"EXEC"]).await, b"*-1\r\n");
    assert_eq!(a.request(&[b"GET", b"{w}k"]).await, b"$6\r\nfrom-b\r\n");

    // UNWATCH forgets the watch.
    a.request(&[b"WATCH", b"{w}k"]).await;
    b.request(&[b"SET", b"{w}k", b"again"]).await;
    a.request(&[b"UNWATCH"]).await;
    a.request(&[b"MULTI"]).await;
    a.request(&[b"SET", b"{w}k", b"from-a"]).await;
    assert_eq!(a.request(&[b"EXEC"]).await, b"*1\r\n+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_watch_loops_count_exactly() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut c = proxy.client().await;
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for _ in 0..20 {
                loop {
                    let _: () = redis::cmd("WATCH")
                        .arg("{cnt}n")
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    let n: Option<i64> = redis::cmd("GET")
                        .arg("{cnt}n")
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    let result: Option<Vec<Value>> = redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg("{cnt}n")
                        .arg(n.unwrap_or(0) + 1)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    if result.is_some() {
                        break;
                    }
                    retries += 1;
                }
            }
            retries
        }));
    }
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }
    let mut c = proxy.sync_client();
    assert_eq!(
        redis::cmd("GET")
            .arg("{cnt}n")
            .query::<i64>(&mut c)
            .unwrap(),
        200
    );
    eprintln!("200 optimistic increments by 10 clients, {retries} retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moving_between_watch_and_exec_fails_exec_safely() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let (from, to) = (cluster.primaries()[0], cluster.primaries()[1]);
    let key = cluster.key_for_node(from, "watched");
    let slot = cluster.keyslot(key.as_bytes());
    let mut a = proxy.raw_client().await;
    a.request(&[b"SET", key.as_bytes(), b"before"]).await;
    assert_eq!(a.request(&[b"WATCH", key.as_bytes()]).await, b"+OK\r\n");
    cluster.migrate_slot(slot, from, to);
    // Whether or not the proxy has learned the new owner yet, EXEC must not run anywhere.
    a.request(&[b"MULTI"]).await;
    a.request(&[b"SET", key.as_bytes(), b"after"]).await;
    assert_eq!(a.request(&[b"EXEC"]).await, b"*-1\r\n");
    let on_new: String = redis::cmd("GET")
        .arg(&key)
        .query(&mut cluster.conn(to))
        .unwrap();
    assert_eq!(
        on_new, "before",
        "the transaction must not have run anywhere"
    );
    // Without WATCH, a transaction follows the slot to its new owner.
    a.request(&[b"MULTI"]).await;
    a.request(&[b"SET", key.as_bytes(), b"after"]).await;
    assert_eq!(a.request(&[b"EXEC"]).await, b"*1\r\n+OK\r\n");
    let on_new: String = redis::cmd("GET")
        .arg(&key)
        .query(&mut cluster.conn(to))
        .unwrap();
    assert_eq!(on_new, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwatch_pipelined_right_behind_watch_still_answers_both() {
    // UNWATCH closes the session's dedicated connection; the WATCH in flight on it must still
    // get its reply (found by the differential test).
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut raw = proxy.raw_client().await;
    let mut pipeline = common::encode_command(&[b"WATCH", b"{p}a", b"{p}b"]);
    pipeline.extend(common::encode_command(&[b"UNWATCH"]));
    pipeline.extend(common::encode_command(&[b"WATCH", b"{p}a"]));
    pipeline.extend(common::encode_command(&[b"MULTI"]));
    pipeline.extend(common::encode_command(&[b"SET", b"{p}a", b"1"]));
    pipeline.extend(common::encode_command(&[b"EXEC"]));
    raw.send(&pipeline).await;
    for want in [
        &b"+OK\r\n"[..],
        b"+OK\r\n",
        b"+OK\r\n",
        b"+OK\r\n",
        b"+QUEUED\r\n",
        b"*1\r\n+OK\r\n",
    ] {
        assert_eq!(
            String::from_utf8_lossy(&raw.read_reply().await),
            String::from_utf8_lossy(want)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_redis_refuses_in_multi_get_its_text() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let commands: &[&[&[u8]]] = &[
        &[b"MULTI"],
        &[b"SAVE"],
        &[b"SHUTDOWN", b"NOSAVE"],
        &[b"PSYNC", b"?", b"-1"],
        &[b"SET", b"{t}a", b"1"],
        &[b"EXEC"],
        &[b"GET", b"{t}a"],
    ];
    common::assert_same_replies(&mut via_proxy, &mut direct, commands).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refusing_a_queued_command_aborts_exec_with_its_reason() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let owner = cluster.owner_of(cluster.keyslot(b"{t}a"));
    let full = |mut conn: redis::Connection, bytes: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query::<()>(&mut conn)
            .expect("CONFIG SET maxmemory");
    };
    full(cluster.conn(owner), "1");
    full(standalone.conn(), "1");
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    for client in [&mut via_proxy, &mut direct] {
        assert_eq!(client.request(&[b"MULTI"]).await, b"+OK\r\n");
    }
    let refused = direct.request(&[b"SET", b"{t}a", b"1"]).await;
    assert!(refused.starts_with(b"-OOM "), "{refused:?}");
    // slotproxy holds the command until EXEC, so it can only say QUEUED now...
    assert_eq!(
        via_proxy.request(&[b"SET", b"{t}a", b"1"]).await,
        b"+QUEUED\r\n"
    );
    assert_eq!(
        direct.request(&[b"EXEC"]).await,
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    // ...and gives the node's reason with the abort, as redis does when it refuses EXEC.
    let mut want = b"-EXECABORT Transaction discarded because of: ".to_vec();
    want.extend_from_slice(&refused[1..]);
    assert_eq!(
        String::from_utf8_lossy(&via_proxy.request(&[b"EXEC"]).await),
        String::from_utf8_lossy(&want)
    );
    full(cluster.conn(owner), "0");
    full(standalone.conn(), "0");
    common::assert_same_replies(
        &mut via_proxy,
        &mut direct,
        &[&[&b"GET"[..], b"{t}a"][..], &[b"PING"]],
    )
    .await;
}
