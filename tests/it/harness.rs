//! Tests of the test harness itself (tests/it/common), against real `redis-server` processes and
//! without the proxy: if these fail, no other integration test can be trusted.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{
    RawClient, StandaloneRedis, TestCluster, encode_command, resp_frame_len, wait_until,
};
use redis::{Commands, ErrorKind, ServerErrorKind};

/// `(first, last, primary port, replica ports)` per range of `CLUSTER SLOTS`, sorted.
fn cluster_slots(conn: &mut redis::Connection) -> Vec<(u16, u16, u16, Vec<u16>)> {
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(conn)
        .expect("CLUSTER SLOTS");
    let number = |value: &redis::Value| -> u16 {
        redis::from_redis_value_ref(value).expect("a number in CLUSTER SLOTS")
    };
    let port = |node: &redis::Value| -> u16 {
        let fields: Vec<redis::Value> =
            redis::from_redis_value_ref(node).expect("a node entry in CLUSTER SLOTS");
        number(&fields[1])
    };
    let mut out: Vec<_> = ranges
        .iter()
        .map(|range| {
            let mut replicas: Vec<u16> = range[3..].iter().map(port).collect();
            replicas.sort_unstable();
            (
                number(&range[0]),
                number(&range[1]),
                port(&range[2]),
                replicas,
            )
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn three_primaries_with_one_replica_each_cover_all_slots_and_replicas_are_synced() {
    let cluster = TestCluster::start(3, 1);

    let seeds = cluster.seeds();
    assert_eq!(seeds.len(), 6);
    assert_eq!(
        seeds.iter().collect::<BTreeSet<_>>().len(),
        6,
        "distinct addresses: {seeds:?}"
    );
    let ids: BTreeSet<&str> = cluster.nodes().iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), 6);
    assert!(
        ids.iter()
            .all(|id| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    );

    let primaries: Vec<u16> = cluster.primaries().iter().map(|n| n.port).collect();
    let replicas: Vec<u16> = cluster.replicas().iter().map(|n| n.port).collect();
    let nodes = cluster.nodes();
    assert_eq!(primaries, [nodes[0].port, nodes[1].port, nodes[2].port]);
    assert_eq!(replicas, [nodes[3].port, nodes[4].port, nodes[5].port]);

    // Every node reports the same map: redis-cli's ranges, replica k under primary k.
    let expected = vec![
        (0, 5460, nodes[0].port, vec![nodes[3].port]),
        (5461, 10922, nodes[1].port, vec![nodes[4].port]),
        (10923, 16383, nodes[2].port, vec![nodes[5].port]),
    ];
    for node in nodes {
        let mut conn = cluster.conn(node);
        assert_eq!(
            cluster_slots(&mut conn),
            expected,
            "CLUSTER SLOTS on {}",
            node.addr
        );
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
        assert!(info.contains("cluster_state:ok"), "{}: {info}", node.addr);
        assert!(
            info.contains("cluster_slots_assigned:16384"),
            "{}: {info}",
            node.addr
        );
        assert!(
            info.contains("cluster_known_nodes:6"),
            "{}: {info}",
            node.addr
        );
    }
    assert_eq!(cluster.owner_of(0).port, nodes[0].port);
    assert_eq!(cluster.owner_of(5461).port, nodes[1].port);
    assert_eq!(cluster.owner_of(16383).port, nodes[2].port);

    // Replicas are synced: a write reaches each replica of its shard.
    for (primary, replica) in nodes[..3].iter().zip(&nodes[3..]) {
        let key = cluster.key_for_node(primary, "sync");
        let mut conn = cluster.conn(primary);
        let _: () = conn.set(&key, "v").unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5_000)
            .query(&mut conn)
            .unwrap();
        assert_eq!(acked, 1, "replica {} acknowledged the write", replica.addr);
        let mut on_replica = cluster.conn(replica);
        let _: () = redis::cmd("READONLY").query(&mut on_replica).unwrap();
        let value: String = on_replica.get(&key).unwrap();
        assert_eq!(value, "v");
    }
}

#[test]
fn keyslot_and_key_helpers_agree_with_the_nodes() {
    let cluster = TestCluster::start(3, 0);
    assert_eq!(cluster.keyslot(b"foo"), 12182);
    assert_eq!(
        cluster.keyslot(b"{user1000}.following"),
        cluster.keyslot(b"{user1000}.followers")
    );
    for node in cluster.primaries() {
        let key = cluster.key_for_node(node, "k");
        assert!(key.starts_with("k:"));
        assert_eq!(
            cluster.owner_of(cluster.keyslot(key.as_bytes())).id,
            node.id
        );
    }
    for slot in [0, 1, 5460, 5461, 12182, 16383] {
        let key = cluster.key_in_slot(slot, "s");
        assert_eq!(cluster.keyslot(key.as_bytes()), slot);
    }
}

#[test]
fn migrate_slot_moves_the_keys_and_the_old_owner_answers_moved() {
    let cluster = TestCluster::start(3, 1);
    let from = cluster.owner_of(100);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|n| n.id != from.id)
        .unwrap();
    let tag = cluster.key_in_slot(100, "mig");
    let keys: Vec<String> = (0..50).map(|i| format!("{{{tag}}}:{i}")).collect();
    let mut old = cluster.conn(from);
    for (i, key) in keys.iter().enumerate() {
        let _: () = old.set(key, i).unwrap();
    }

    cluster.migrate_slot(100, from, to);

    assert_eq!(cluster.owner_of(100).id, to.id);
    let mut new = cluster.conn(to);
    for (i, key) in keys.iter().enumerate() {
        let value: usize = new.get(key).unwrap();
        assert_eq!(value, i, "{key} at the new owner");
    }
    let err = old.get::<_, String>(&keys[0]).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::Moved),
        "{err}"
    );
    assert_eq!(err.redirect_node(), Some((to.addr.as_str(), 100)), "{err}");
    let count: usize = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(100)
        .query(&mut old)
        .unwrap();
    assert_eq!(count, 0);
    // Every node, replicas included, names the new owner.
    for node in cluster.nodes() {
        let ranges = cluster_slots(&mut cluster.conn(node));
        let (_, _, owner, _) = ranges.iter().find(|r| (r.0..=r.1).contains(&100)).unwrap();
        assert_eq!(*owner, to.port, "CLUSTER SLOTS on {}", node.addr);
    }
}

#[test]
fn a_slot_in_migration_answers_ask_for_keys_already_moved() {
    let cluster = TestCluster::start(2, 0);
    let from = &cluster.nodes()[0];
    let to = &cluster.nodes()[1];
    let tag = cluster.key_in_slot(7, "ask");
    let mut old = cluster.conn(from);
    for i in 0..5 {
        let _: () = old.set(format!("{{{tag}}}:{i}"), i).unwrap();
    }

    cluster.begin_migration(7, from, to);
    assert_eq!(cluster.migrate_keys(7, from, to, 2), 5);
    let err = old.get::<_, String>(format!("{{{tag}}}:0")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server(ServerErrorKind::Ask), "{err}");
    assert_eq!(err.redirect_node(), Some((to.addr.as_str(), 7)), "{err}");
    assert_eq!(
        cluster.owner_of(7).id,
        from.id,
        "the slot stays with its owner until finished"
    );

    cluster.finish_migration(7, to);
    assert_eq!(cluster.owner_of(7).id, to.id);
    let value: i64 = cluster.conn(to).get(format!("{{{tag}}}:4")).unwrap();
    assert_eq!(value, 4);
}

#[test]
fn stop_pauses_a_node_cont_resumes_it_and_kill_ends_it() {
    let mut cluster = TestCluster::start(2, 0);
    let mut conn = cluster.conn(&cluster.nodes()[1]);
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();

    cluster.stop(1);
    let paused: redis::RedisResult<String> = redis::cmd("PING").query(&mut conn);
    assert!(paused.is_err(), "a stopped node answered: {paused:?}");
    cluster.cont(1);
    let resumed: String = redis::cmd("PING")
        .query(&mut cluster.conn(&cluster.nodes()[1]))
        .unwrap();
    assert_eq!(resumed, "PONG");

    let pid = cluster.nodes()[1].pid().unwrap();
    cluster.kill(1);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists"
    );
    assert!(
        redis::Client::open(format!("redis://{}/", cluster.nodes()[1].addr))
            .unwrap()
            .get_connection_with_timeout(Duration::from_millis(500))
            .is_err()
    );
    // The survivor notices: after the node timeout (2 s) it flags the dead node.
    let survivor = &cluster.nodes()[0];
    let dead_id = cluster.nodes()[1].id.clone();
    wait_until(
        Duration::from_secs(15),
        "the survivor flags the killed node",
        || {
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut cluster.conn(survivor))
                .unwrap();
            nodes
                .lines()
                .any(|l| l.starts_with(&dead_id) && l.contains("fail"))
        },
    );
    assert_eq!(
        cluster.primaries().len(),
        1,
        "only running nodes are listed"
    );

    cluster.restart(1);
    let back: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut cluster.conn(&cluster.nodes()[1]))
        .unwrap();
    assert_eq!(back, dead_id, "a restarted node keeps its id");
}

#[test]
fn dropping_a_cluster_kills_its_processes_and_removes_its_dir() {
    let cluster = TestCluster::start(1, 1);
    let pids: Vec<u32> = cluster.nodes().iter().map(|n| n.pid().unwrap()).collect();
    let dir = cluster.dir().to_path_buf();
    assert!(
        dir.join(format!("nodes-{}.conf", cluster.nodes()[0].port))
            .exists()
    );
    assert!(cluster.nodes()[0].log.exists());
    drop(cluster);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still exists"
        );
    }
    if std::env::var_os("SLOTPROXY_KEEP_TEST_DIRS").is_none() {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}

#[test]
fn standalone_redis_answers_ping_and_is_not_a_cluster() {
    let redis = StandaloneRedis::start();
    let mut conn = redis.conn();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let info: String = redis::cmd("INFO").arg("cluster").query(&mut conn).unwrap();
    assert!(info.contains("cluster_enabled:0"), "{info}");
    assert_eq!(redis.addr, format!("127.0.0.1:{}", redis.port));
}

#[tokio::test]
async fn raw_client_reads_one_reply_at_a_time_from_a_real_node() {
    let redis = StandaloneRedis::start();
    let mut raw = RawClient::connect(redis.addr.as_str()).await;

    // Three pipelined requests, one of them inline, come back as three separate replies.
    let mut pipeline = encode_command(&[b"SET", b"k", b"hello\r\nworld"]);
    pipeline.extend_from_slice(b"PING\r\n");
    pipeline.extend_from_slice(&encode_command(&[b"GET", b"k"]));
    raw.send(&pipeline).await;
    assert_eq!(raw.read_reply().await, b"+OK\r\n");
    assert_eq!(raw.read_reply().await, b"+PONG\r\n");
    assert_eq!(raw.read_reply().await, b"$12\r\nhello\r\nworld\r\n");

    assert_eq!(raw.request(&[b"GET", b"missing"]).await, b"$-1\r\n");
    let _ = raw.request(&[b"RPUSH", b"list", b"a", b"b"]).await;
    assert_eq!(
        raw.request(&[b"LRANGE", b"list", b"0", b"-1"]).await,
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );

    // RESP3: HELLO answers a map with a nested array; it must come back whole.
    let hello = raw.request(&[b"HELLO", b"3"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{}", hello.escape_ascii());
    assert_eq!(resp_frame_len(&hello), Ok(Some(hello.len())));
    assert_eq!(raw.request(&[b"GET", b"missing"]).await, b"_\r\n");

    raw.send(&encode_command(&[b"QUIT"])).await;
    assert_eq!(raw.read_until_closed().await, b"+OK\r\n");
}

#[test]
fn resp_frame_len_finds_the_end_of_one_frame() {
    // `Err(())` stands for "not RESP".
    type Expected = Result<Option<usize>, ()>;
    let cases: &[(&[u8], Expected)] = &[
        (b"", Ok(None)),
        (b"+OK\r\n", Ok(Some(5))),
        (b"+OK\r\n+OK\r\n", Ok(Some(5))),
        (b"+OK\r", Ok(None)),
        (b"-ERR bad\r\n", Ok(Some(10))),
        (b":-12\r\n", Ok(Some(6))),
        (b"$-1\r\n", Ok(Some(5))),
        (b"$0\r\n\r\n", Ok(Some(6))),
        (b"$5\r\nab\r\nc\r\n", Ok(Some(11))),
        (b"$5\r\nab\r\n", Ok(None)),
        (b"$2\r\nabc\r\n", Err(())),
        (b"*-1\r\n", Ok(Some(5))),
        (b"*0\r\n", Ok(Some(4))),
        (b"*2\r\n:1\r\n", Ok(None)),
        (b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n", Ok(Some(19))),
        (b"%1\r\n+a\r\n:1\r\n", Ok(Some(12))),
        (b"%1\r\n+a\r\n", Ok(None)),
        (b"~1\r\n#t\r\n", Ok(Some(8))),
        (b">2\r\n+message\r\n+x\r\n", Ok(Some(18))),
        (b"|1\r\n+k\r\n+v\r\n:5\r\n", Ok(Some(16))),
        (b"|1\r\n+k\r\n+v\r\n", Ok(None)),
        (b"_\r\n,1.5\r\n", Ok(Some(3))),
        (b"=7\r\ntxt:abc\r\n", Ok(Some(13))),
        (b"!3\r\nERR\r\n", Ok(Some(9))),
        (b"(123\r\n", Ok(Some(6))),
        (b"PING\r\n", Err(())),
        (b"$x\r\n", Err(())),
        (b"*-2\r\n", Err(())),
    ];
    for (input, expected) in cases {
        let got = resp_frame_len(input).map_err(|_| ());
        assert_eq!(got, *expected, "{}", input.escape_ascii());
    }
}
