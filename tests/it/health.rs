//! Health-aware reads: a replica whose link to its primary is down gets no reads, `nearest`
//! avoids slow nodes, and read-your-writes sends a client's reads of what it just wrote to the
//! primary.
//!
//! Where each read went is counted on the nodes themselves (`INFO commandstats`): the proxy's
//! health checks send PING and INFO, never GET.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{TestCluster, TestNode, TestProxy, wait_until};
use slotproxy::config::{Config, ReadPolicy};

/// Health checks every 100 ms, so the tests see their effect quickly.
fn fast_checks(c: &mut Config) {
    c.cluster.health_check_interval_ms = 100;
}

/// Sets one key per primary through `proxy` and waits until each primary's replica has it.
fn keys_replicated(cluster: &TestCluster, proxy: &TestProxy) -> Vec<String> {
    let mut c = proxy.sync_client();
    let mut keys = Vec::new();
    for primary in cluster.primaries() {
        let key = cluster.key_for_node(primary, "health");
        let _: () = redis::cmd("SET").arg(&key).arg(&key).query(&mut c).unwrap();
        let replica = cluster.replica_of(primary);
        cluster.wait_replica_has(replica, &key);
        keys.push(key);
    }
    keys
}

/// GETs `key` `times` times on `conn` and checks each reply.
fn read(conn: &mut redis::Connection, key: &str, times: usize) {
    for _ in 0..times {
        let got: String = redis::cmd("GET").arg(key).query(conn).unwrap();
        assert_eq!(got, key);
    }
}

/// GETs each node served, as `INFO commandstats` counts them.
fn gets(cluster: &TestCluster, nodes: &[&TestNode]) -> Vec<u64> {
    nodes
        .iter()
        .map(|n| cluster.command_calls(n, "get"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_link_is_down_gets_no_reads_until_it_is_in_sync() {
    let cluster = TestCluster::start(3, 1);
    let prefer = TestProxy::start_with(&cluster, |c| {
        fast_checks(c);
        c.read_policy = ReadPolicy::PreferReplica;
    })
    .await;
    let only = TestProxy::start_with(&cluster, |c| {
        fast_checks(c);
        c.read_policy = ReadPolicy::Replica;
    })
    .await;
    let key = keys_replicated(&cluster, &prefer).remove(0);
    let primary = cluster.primaries()[0];
    let replica = cluster.replica_of(primary);
    let mut c = prefer.sync_client();
    let before = gets(&cluster, &[primary, replica]);
    read(&mut c, &key, 10);
    assert_eq!(
        gets(&cluster, &[primary, replica]),
        [before[0], before[1] + 10]
    );

    // A real `master_link_status:down` on a live replica of a live primary: the replica can't
    // authenticate to its primary any more, so it stays disconnected (and the cluster, whose
    // bus is unaffected, still lists it as an online replica).
    let mut admin = cluster.conn(replica);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("masterauth")
        .arg("wrong")
        .query(&mut admin)
        .unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("master")
        .query(&mut admin)
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the replica's link is down",
        || !cluster.replica_in_sync(replica),
    );
    // The next health check takes it out of rotation; from then on the primary serves.
    wait_until(
        Duration::from_secs(10),
        "reads stop reaching the lagging replica",
        || {
            let before = gets(&cluster, &[replica]);
            read(&mut c, &key, 5);
            gets(&cluster, &[replica]) == before
        },
    );
    let before = gets(&cluster, &[primary, replica]);
    read(&mut c, &key, 20);
    assert_eq!(
        gets(&cluster, &[primary, replica]),
        [before[0] + 20, before[1]]
    );
    // Under read_policy replica there is no other replica: a precise error, not a stale read
    // (once that proxy's own health check has seen the replica lag).
    let mut c_only = only.sync_client();
    let expected = format!(
        "no replica of {} is up to serve this read (read_policy replica): {} is not in sync with \
         its primary",
        primary.addr, replica.addr
    );
    wait_until(
        Duration::from_secs(10),
        "read_policy replica refuses to read from the lagging replica",
        || match redis::cmd("GET").arg(&key).query::<String>(&mut c_only) {
            Ok(got) => {
                assert_eq!(got, key);
                false
            }
            Err(e) => {
                assert!(e.to_string().contains(&expected), "{e}");
                true
            }
        },
    );

    // In sync again: back in rotation.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("masterauth")
        .arg("")
        .query(&mut admin)
        .unwrap();
    wait_until(Duration::from_secs(10), "the replica is in sync", || {
        cluster.replica_in_sync(replica)
    });
    wait_until(
        Duration::from_secs(10),
        "reads reach the replica again",
        || {
            let before = gets(&cluster, &[replica]);
            read(&mut c, &key, 1);
            gets(&cluster, &[replica])[0] == before[0] + 1
        },
    );
    wait_until(
        Duration::from_secs(10),
        "read_policy replica reads from the replica again",
        || {
            redis::cmd("GET")
                .arg(&key)
                .query::<String>(&mut c_only)
                .is_ok()
        },
    );
}

/// Keeps `node` busy with `DEBUG SLEEP` (50 ms at a time) until the returned flag is set: it
/// answers everything, slowly, like a node on a distant or overloaded host.
fn slow_down(node: &TestNode) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut conn = redis::Client::open(format!("redis://{}/", node.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let _: () = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("0.05")
                .query(&mut conn)
                .unwrap();
        }
    });
    (stop, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_reads_from_the_nodes_with_the_lowest_round_trip_time() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        fast_checks(c);
        c.read_policy = ReadPolicy::Nearest;
    })
    .await;
    let keys = keys_replicated(&cluster, &proxy);
    let (p0, p1) = (cluster.primaries()[0], cluster.primaries()[1]);
    let (r0, r1) = (cluster.replica_of(p0), cluster.replica_of(p1));
    // Several clients: nodes that are equally near share the clients between them.
    let mut clients: Vec<redis::Connection> = (0..4).map(|_| proxy.sync_client()).collect();
    let mut read_all = |times: usize| {
        for c in clients.iter_mut() {
            read(c, &keys[0], times);
            read(c, &keys[1], times);
        }
    };

    // Shard 0's replica and shard 1's primary become slow.
    let slow = [slow_down(r0), slow_down(p1)];
    wait_until(
        Duration::from_secs(20),
        "reads avoid the slow nodes",
        || {
            let before = gets(&cluster, &[r0, p1]);
            read_all(2);
            gets(&cluster, &[r0, p1]) == before
        },
    );
    let before = gets(&cluster, &[p0, r0, p1, r1]);
    read_all(10);
    assert_eq!(
        gets(&cluster, &[p0, r0, p1, r1]),
        [before[0] + 40, before[1], before[2], before[3] + 40],
        "reads of shard 0 go to its primary and reads of shard 1 to its replica"
    );

    for (stop, thread) in slow {
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
    }
    // Equally near again: the clients spread over both nodes of each shard.
    wait_until(
        Duration::from_secs(30),
        "reads reach the formerly slow nodes again",
        || {
            let before = gets(&cluster, &[r0, p1]);
            read_all(1);
            let after = gets(&cluster, &[r0, p1]);
            after[0] > before[0] && after[1] > before[1]
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_reads_a_written_slot_from_the_primary_for_the_window() {
    let cluster = TestCluster::start(3, 1);
    let window = Duration::from_millis(1_000);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.read_policy = ReadPolicy::PreferReplica;
        c.session.read_your_writes = true;
        c.session.read_your_writes_window_ms = window.as_millis() as u64;
    })
    .await;
    let keys = keys_replicated(&cluster, &proxy);
    let primary = cluster.primaries()[0];
    let replica = cluster.replica_of(primary);
    let nodes = [primary, replica];
    let key = &keys[0];
    let mut writer = proxy.sync_client();
    let mut other = proxy.sync_client();

    // A write, then reads of its slot: the primary serves them.
    let before = gets(&cluster, &nodes);
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("v2")
        .query(&mut writer)
        .unwrap();
    for _ in 0..5 {
        let got: String = redis::cmd("GET").arg(key).query(&mut writer).unwrap();
        assert_eq!(got, "v2");
    }
    assert_eq!(gets(&cluster, &nodes), [before[0] + 5, before[1]]);
    // Another client did not write: it reads from the replica.
    let before = gets(&cluster, &nodes);
    let _: Option<String> = redis::cmd("GET").arg(key).query(&mut other).unwrap();
    assert_eq!(gets(&cluster, &nodes), [before[0], before[1] + 1]);

    // A write and a read pipelined together: the read sees the write.
    let before = gets(&cluster, &nodes);
    let (_, got): ((), String) = redis::pipe()
        .cmd("SET")
        .arg(key)
        .arg("v3")
        .cmd("GET")
        .arg(key)
        .query(&mut writer)
        .unwrap();
    assert_eq!(got, "v3");
    assert_eq!(gets(&cluster, &nodes), [before[0] + 1, before[1]]);

    // Split writes count for each of their slots; whole-keyspace writes for every slot.
    let before = gets(&cluster, &nodes);
    let _: () = redis::cmd("MSET")
        .arg(&keys[0])
        .arg("m")
        .arg(&keys[2])
        .arg("m")
        .query(&mut other)
        .unwrap();
    let got: String = redis::cmd("GET").arg(key).query(&mut other).unwrap();
    assert_eq!(got, "m");
    assert_eq!(gets(&cluster, &nodes), [before[0] + 1, before[1]]);

    // After the window, the writer's reads go to the replica again.
    let last_write = Instant::now();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("v4")
        .query(&mut writer)
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the writer reads from the replica again",
        || {
            let before = gets(&cluster, &[replica]);
            let got: String = redis::cmd("GET").arg(key).query(&mut writer).unwrap();
            assert_eq!(got, "v4");
            gets(&cluster, &[replica])[0] > before[0]
        },
    );
    assert!(
        last_write.elapsed() >= window,
        "a read went to the replica {:?} after the write",
        last_write.elapsed()
    );

    // Without read_your_writes, the same write then read goes to the replica.
    let plain =
        TestProxy::start_with(&cluster, |c| c.read_policy = ReadPolicy::PreferReplica).await;
    let mut c = plain.sync_client();
    let before = gets(&cluster, &nodes);
    let _: () = redis::cmd("SET").arg(key).arg("v5").query(&mut c).unwrap();
    let _: Option<String> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
    assert_eq!(gets(&cluster, &nodes), [before[0], before[1] + 1]);

    // FLUSHALL writes every slot: the next read of any slot goes to the primary.
    let _: () = redis::cmd("FLUSHALL").query(&mut writer).unwrap();
    let before = gets(&cluster, &nodes);
    let got: Option<String> = redis::cmd("GET").arg(key).query(&mut writer).unwrap();
    assert_eq!(got, None);
    assert_eq!(gets(&cluster, &nodes), [before[0] + 1, before[1]]);
}
