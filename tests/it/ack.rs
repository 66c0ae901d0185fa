//! `ack = replicated`: a write's reply waits until a replica has it (one WAIT per batch).

use std::time::{Duration, Instant};

use crate::common::{self, TestCluster, TestProxy, encode_command};
use slotproxy::config::Ack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_already_on_the_replica_and_waits_are_batched() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| c.backend.ack = Ack::Replicated).await;
    let primary = cluster.primaries()[0];
    let replica = cluster.replica_of(primary);
    let mut on_replica = cluster.conn(replica);
    let _: () = redis::cmd("READONLY").query(&mut on_replica).unwrap();

    // Each acknowledged write is readable on the replica at once.
    let mut c = proxy.sync_client();
    let tag = cluster.key_for_node(primary, "acked");
    for i in 0..20 {
        let key = format!("{{{tag}}}:{i}");
        let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut c).unwrap();
        let got: Option<i64> = redis::cmd("GET").arg(&key).query(&mut on_replica).unwrap();
        assert_eq!(got, Some(i), "{key} acknowledged but not on the replica");
    }

    // A burst of writes to one node shares WAITs: far fewer WAITs than writes.
    let waits = cluster.command_calls(primary, "wait");
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(encode_command(&[
            b"SET",
            format!("{{{tag}}}:{i}").as_bytes(),
            b"v",
        ]));
    }
    let mut raw = proxy.raw_client().await;
    raw.send(&burst).await;
    for _ in 0..500 {
        assert_eq!(raw.read_reply().await, b"+OK\r\n");
    }
    let used = cluster.command_calls(primary, "wait") - waits;
    assert!((1..250).contains(&used), "{used} WAITs for 500 writes");
    // Reads are not held and need no WAIT.
    let waits = cluster.command_calls(primary, "wait");
    for _ in 0..10 {
        let _: Option<String> = redis::cmd("GET")
            .arg(format!("{{{tag}}}:1"))
            .query(&mut c)
            .unwrap();
    }
    assert_eq!(cluster.command_calls(primary, "wait"), waits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_replica_confirms_gets_noreplicas() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.backend.ack = Ack::Replicated;
        c.backend.ack_timeout_ms = 300;
    })
    .await;
    let primary = cluster.primaries()[1];
    let key = cluster.key_for_node(primary, "unconfirmed");
    let replica = cluster.index_of(cluster.replica_of(primary));
    let mut c = proxy.sync_client();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("before")
        .query(&mut c)
        .unwrap();

    cluster.stop(replica); // SIGSTOP: the replica can't acknowledge anything
    let started = Instant::now();
    let err = redis::cmd("SET")
        .arg(&key)
        .arg("during")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(err.code(), Some("NOREPLICAS"), "{err}");
    assert!(
        err.to_string()
            .contains("no replica confirmed it within 300 ms"),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // Reads are unaffected; the primary did apply the write, as the error says.
    let got: String = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
    assert_eq!(got, "during");

    cluster.cont(replica);
    common::wait_until(
        Duration::from_secs(10),
        "writes are confirmed again",
        || {
            redis::cmd("SET")
                .arg(&key)
                .arg("after")
                .query::<()>(&mut c)
                .is_ok()
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_without_replicas_answers_noreplicas_at_once() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.backend.ack = Ack::Replicated;
        c.backend.ack_timeout_ms = 3000;
        c.cluster.refresh_interval_ms = 200;
    })
    .await;
    let primary = cluster.primaries()[0];
    let key = cluster.key_for_node(primary, "alone");
    let replica = cluster.index_of(cluster.replica_of(primary));
    let primary = cluster.index_of(primary);
    cluster.kill(replica);
    // Once the cluster has flagged the replica failed, the proxy's map shows no live replica.
    common::wait_until(
        Duration::from_secs(15),
        "the replica is flagged failed",
        || {
            let shards: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut cluster.conn(&cluster.nodes()[primary]))
                .unwrap();
            shards.lines().any(|l| l.contains("slave,fail "))
        },
    );
    tokio::time::sleep(Duration::from_millis(600)).await;

    let mut raw = proxy.raw_client().await;
    let waits = cluster.command_calls(&cluster.nodes()[primary], "wait");
    let started = Instant::now();
    let mut pipeline = encode_command(&[b"SET", key.as_bytes(), b"v"]);
    pipeline.extend(encode_command(&[b"GET", key.as_bytes()]));
    raw.send(&pipeline).await;
    let reply = String::from_utf8(raw.read_reply().await).unwrap();
    assert!(
        reply
            .starts_with("-NOREPLICAS slotproxy: the primary applied the write but has no replica"),
        "{reply}"
    );
    // The read behind it is not held up by a WAIT that could only time out.
    assert_eq!(raw.read_reply().await, b"$1\r\nv\r\n");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert_eq!(
        cluster.command_calls(&cluster.nodes()[primary], "wait"),
        waits
    );
}
