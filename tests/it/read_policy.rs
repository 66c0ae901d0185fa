//! Read policies: read-only commands go to replicas when the policy (or READONLY) says so;
//! writes always go to primaries.

use std::time::Duration;

use crate::common::{TestCluster, TestProxy, wait_until};
use slotproxy::config::ReadPolicy;

/// Writes one key per primary and waits until every replica has it.
fn keys_replicated(cluster: &TestCluster, proxy: &TestProxy) -> Vec<(String, usize)> {
    let mut c = proxy.sync_client();
    let mut keys = Vec::new();
    for (i, primary) in cluster.primaries().into_iter().enumerate() {
        let key = cluster.key_for_node(primary, "rp");
        let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut c).unwrap();
        let replica = cluster.replica_of(primary);
        cluster.wait_replica_has(replica, &key);
        keys.push((key, i));
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_replica_sends_reads_to_replicas_and_writes_to_primaries() {
    let cluster = TestCluster::start(3, 1);
    let proxy =
        TestProxy::start_with(&cluster, |c| c.read_policy = ReadPolicy::PreferReplica).await;
    let keys = keys_replicated(&cluster, &proxy);
    let primaries = cluster.primaries();
    let before: Vec<(u64, u64)> = primaries
        .iter()
        .map(|p| {
            (
                cluster.command_calls(p, "get"),
                cluster.command_calls(cluster.replica_of(p), "get"),
            )
        })
        .collect();
    let mut c = proxy.sync_client();
    for _ in 0..10 {
        for (key, i) in &keys {
            let got: String = redis::cmd("GET").arg(key).query(&mut c).unwrap();
            assert_eq!(got, i.to_string());
        }
    }
    for (p, (primary_before, replica_before)) in primaries.iter().zip(before) {
        assert_eq!(
            cluster.command_calls(p, "get"),
            primary_before,
            "a read reached primary {}",
            p.addr
        );
        assert_eq!(
            cluster.command_calls(cluster.replica_of(p), "get"),
            replica_before + 10
        );
    }
    // Writes still go to the primaries.
    let sets: u64 = primaries
        .iter()
        .map(|p| cluster.command_calls(p, "set"))
        .sum();
    for (key, _) in &keys {
        let _: () = redis::cmd("SET").arg(key).arg("w").query(&mut c).unwrap();
    }
    assert_eq!(
        primaries
            .iter()
            .map(|p| cluster.command_calls(p, "set"))
            .sum::<u64>(),
        sets + 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_and_readwrite_switch_one_connection() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let keys = keys_replicated(&cluster, &proxy);
    let (key, _) = &keys[0];
    let primary = cluster.primaries()[0];
    let replica = cluster.replica_of(primary);
    let mut c = proxy.sync_client();
    let (p0, r0) = (
        cluster.command_calls(primary, "get"),
        cluster.command_calls(replica, "get"),
    );
    let _: String = redis::cmd("GET").arg(key).query(&mut c).unwrap();
    assert_eq!(
        (
            cluster.command_calls(primary, "get"),
            cluster.command_calls(replica, "get")
        ),
        (p0 + 1, r0)
    );
    let _: () = redis::cmd("READONLY").query(&mut c).unwrap();
    let _: String = redis::cmd("GET").arg(key).query(&mut c).unwrap();
    assert_eq!(
        (
            cluster.command_calls(primary, "get"),
            cluster.command_calls(replica, "get")
        ),
        (p0 + 1, r0 + 1)
    );
    let _: () = redis::cmd("READWRITE").query(&mut c).unwrap();
    let _: String = redis::cmd("GET").arg(key).query(&mut c).unwrap();
    assert_eq!(
        (
            cluster.command_calls(primary, "get"),
            cluster.command_calls(replica, "get")
        ),
        (p0 + 2, r0 + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_sends_reads_to_the_primary_or_errors_under_replica_policy() {
    let mut cluster = TestCluster::start(3, 1);
    let prefer =
        TestProxy::start_with(&cluster, |c| c.read_policy = ReadPolicy::PreferReplica).await;
    let only = TestProxy::start_with(&cluster, |c| c.read_policy = ReadPolicy::Replica).await;
    let keys = keys_replicated(&cluster, &prefer);
    let (key, i) = keys[1].clone();
    let primary_port = cluster.primaries()[1].port;
    let replica = cluster.replica_of(cluster.primaries()[1]);
    let index = cluster.index_of(replica);
    cluster.kill(index);

    // prefer-replica: every read still succeeds (retried until the map drops the dead replica).
    let mut c = prefer.sync_client();
    for _ in 0..20 {
        let got: String = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
        assert_eq!(got, i.to_string());
    }
    // replica: once the cluster has marked the replica failed, reads fail with a precise error.
    let mut c = only.sync_client();
    wait_until(
        Duration::from_secs(20),
        "reads under read_policy replica report no replica",
        || match redis::cmd("GET").arg(&key).query::<String>(&mut c) {
            Ok(_) => false,
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("no replica")
                        || text.contains("unreachable")
                        || text.contains("lost"),
                    "{text}"
                );
                text.contains(&format!("no replica of 127.0.0.1:{primary_port} is up"))
            }
        },
    );
}
