//! Cross-slot multi-key commands are split by slot and merged; whole-keyspace commands fan out
//! to every primary. Each reply is compared with what one standalone redis-server answers.

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_commands_split_and_merge_like_one_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    // Keys on all three primaries, repeated and interleaved, plus missing ones.
    let keys: Vec<String> = (0..12).map(|i| format!("multi:{i}")).collect();
    let k: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let commands: Vec<Vec<&[u8]>> = vec![
        vec![
            b"MSET", k[0], b"a", k[1], b"b", k[2], b"c", k[3], b"d", k[0], b"a2",
        ],
        vec![b"MGET", k[0], k[1], k[2], k[3], k[4], k[0], k[11]],
        vec![b"EXISTS", k[0], k[1], k[4], k[0]],
        vec![b"TOUCH", k[1], k[2], k[5]],
        vec![b"MSET", k[5], b"e", k[6], b"f", k[7], b"g"],
        vec![b"DEL", k[0], k[5], k[8], k[0]],
        vec![b"UNLINK", k[1], k[6], k[9]],
        vec![b"MGET", k[0], k[1], k[2], k[3], k[5], k[6], k[7]],
        vec![b"MSETNX", k[10], b"x", k[11], b"y"],
        vec![b"MSETNX", b"{t}a", b"1", b"{t}b", b"2"],
        vec![b"MSETNX", b"{t}a", b"1", b"{t}c", b"2"],
        vec![b"MGET", b"{t}a", b"{t}b", b"{t}c", k[2]],
        vec![b"MGET", k[2]],
        vec![b"DEL", k[2], k[3], k[7]],
        vec![b"EXISTS", k[2], k[3], k[7]],
    ];
    for args in &commands {
        let got = via_proxy.request(args).await;
        let want = direct.request(args).await;
        if args[0] == b"MSETNX" {
            // Never applied non-atomically across slots.
            if args[1] != b"{t}a" {
                assert_eq!(
                    got,
                    b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
                );
                direct.request(&[b"DEL", k[10], k[11]]).await;
                continue;
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{args:?}"
        );
    }
    // The split writes really are on the owning nodes.
    let _: () = redis::cmd("MSET")
        .arg(&keys[0])
        .arg("x")
        .arg(&keys[1])
        .arg("y")
        .query(&mut proxy.sync_client())
        .unwrap();
    for key in &keys[..2] {
        let owner = cluster.owner_of(cluster.keyslot(key.as_bytes()));
        assert!(
            redis::cmd("EXISTS")
                .arg(key)
                .query::<bool>(&mut cluster.conn(owner))
                .unwrap()
        );
    }
    // Errors from one part surface as the reply.
    let _: () = redis::cmd("LPUSH")
        .arg(&keys[2])
        .arg("l")
        .query(&mut proxy.sync_client())
        .unwrap();
    let got = via_proxy.request(&[b"MGET", k[0], k[2]]).await;
    assert_eq!(
        got, b"*2\r\n$1\r\nx\r\n$-1\r\n",
        "MGET of a list is nil, as on redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_sessions_get_merged_replies_in_resp3() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    via_proxy.request(&[b"HELLO", b"3"]).await;
    direct.request(&[b"HELLO", b"3"]).await;
    let commands: Vec<Vec<&[u8]>> = vec![
        vec![b"MSET", b"r3:a", b"1", b"r3:b", b"2"],
        vec![b"MGET", b"r3:a", b"r3:nope", b"r3:b"],
        vec![b"EXISTS", b"r3:a", b"r3:b", b"r3:c"],
        vec![b"DEL", b"r3:a", b"r3:b"],
    ];
    common::assert_same_replies(&mut via_proxy, &mut direct, &commands).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_keyspace_commands_fan_out_to_every_primary() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut c = proxy.sync_client();
    for i in 0..30 {
        let _: () = redis::cmd("SET")
            .arg(format!("fan:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 30);
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("fan:*").query(&mut c).unwrap();
    keys.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("fan:{i}")).collect();
    want.sort();
    assert_eq!(keys, want);
    // Each primary really holds part of them.
    for node in cluster.primaries() {
        assert!(
            redis::cmd("DBSIZE")
                .query::<i64>(&mut cluster.conn(node))
                .unwrap()
                > 0
        );
    }
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
    let _: () = redis::cmd("SET")
        .arg("fan:again")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("FLUSHDB").arg("ASYNC").query(&mut c).unwrap();
    common::wait_until(
        std::time::Duration::from_secs(5),
        "FLUSHDB ASYNC emptied the cluster",
        || redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap() == 0,
    );
}
