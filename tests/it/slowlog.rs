//! `SLOWLOG` through slotproxy reads as one server's: the newest entries first across
//! primaries, `count` in all, without slotproxy's health-check `PING`s and replicas'
//! `REPLCONF ACK`s, and `SLOWLOG LEN` agrees with `SLOWLOG GET -1`.

use std::time::Duration;

use crate::common::{StandaloneRedis, TestCluster, TestProxy};

fn slower_than(conn: &mut redis::Connection, micros: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(micros)
        .query::<()>(conn)
        .unwrap();
}

/// The command names of `SLOWLOG GET` entries (each: id, time, duration, args, addr, name).
fn commands(entries: &[redis::Value]) -> Vec<String> {
    entries
        .iter()
        .map(|entry| match entry {
            redis::Value::Array(fields) => match &fields[3] {
                redis::Value::Array(args) => args
                    .iter()
                    .map(|a| redis::from_redis_value::<String>(a.clone()).unwrap())
                    .collect::<Vec<_>>()
                    .join(" "),
                other => panic!("args: {other:?}"),
            },
            other => panic!("entry: {other:?}"),
        })
        .collect()
}

fn slowlog(conn: &mut redis::Connection, args: &[&str]) -> Vec<String> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(args)
        .query(conn)
        .unwrap();
    commands(&entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_is_newest_first_across_primaries_without_slotproxys_own_commands() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut conn = proxy.sync_client();
    let mut direct = standalone.conn();
    for node in cluster.nodes() {
        slower_than(&mut cluster.conn(node), "0");
    }
    slower_than(&mut direct, "0");
    // Keys on different primaries, one second apart (the log's timestamps are in seconds).
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|node| cluster.key_for_node(node, "slow"))
        .collect();
    for c in [&mut conn, &mut direct] {
        redis::cmd("SLOWLOG").arg("RESET").query::<()>(c).unwrap();
    }
    for key in &keys {
        for c in [&mut conn, &mut direct] {
            redis::cmd("SET").arg(key).arg("v").query::<()>(c).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let want = slowlog(&mut direct, &["2"]);
    assert_eq!(
        want,
        [format!("SET {} v", keys[2]), format!("SET {} v", keys[1])],
        "redis-server"
    );
    assert_eq!(slowlog(&mut conn, &["2"]), want);
    // The nodes did log slotproxy's health checks and the replicas' acks...
    let node_log: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg("-1")
        .query(&mut cluster.conn(cluster.primaries()[0]))
        .unwrap();
    let node_log = commands(&node_log);
    assert!(
        node_log
            .iter()
            .any(|c| c == "PING" || c.starts_with("REPLCONF")),
        "{node_log:?}"
    );
    // ...which slotproxy's log leaves out; LEN counts what GET -1 returns.
    for node in cluster.nodes() {
        slower_than(&mut cluster.conn(node), "10000000");
    }
    let all = slowlog(&mut conn, &["-1"]);
    assert!(
        !all.iter().any(|c| c == "PING" || c.starts_with("REPLCONF")),
        "{all:?}"
    );
    let len: usize = redis::cmd("SLOWLOG").arg("LEN").query(&mut conn).unwrap();
    assert_eq!(len, all.len(), "{all:?}");
    assert_eq!(
        slowlog(&mut conn, &[]).len(),
        all.len().min(10),
        "default count 10"
    );
}
