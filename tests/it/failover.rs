//! Failover under load: a primary killed with SIGKILL, and a manual CLUSTER FAILOVER.
//!
//! Twenty clients write unique keys and read back keys they wrote, across all slots, while a
//! primary goes away (see `common::Load`). The clients count what they see; the assertions are
//! the bounds. Stalls, restarts and lagging replicas are in `chaos.rs`.

use std::time::{Duration, Instant};

use crate::common::{
    Load, TestCluster, TestProxy, all_errors, check_acked, error_window, is_primary, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_under_load_shows_no_client_error() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| c.session.retry_deadline_ms = 10_000).await;
    let load = Load::start(&proxy, 20, "fo").await;
    std::thread::sleep(Duration::from_millis(500));

    let replica = cluster.replica_of(cluster.primaries()[0]);
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut cluster.conn(replica))
        .unwrap();
    wait_until(Duration::from_secs(10), "the replica took over", || {
        is_primary(&replica.addr)
    });
    std::thread::sleep(Duration::from_millis(1000));
    let seen = load.finish().await;

    let errors = all_errors(&seen);
    assert!(errors.is_empty(), "client-visible errors: {errors:#?}");
    for s in &seen {
        assert!(s.wrong.is_empty(), "wrong replies: {:#?}", s.wrong);
    }
    // Nothing acknowledged is lost in a manual failover (it waits for the replica).
    let (acked, lost) = check_acked(&proxy, &seen);
    assert_eq!(lost, 0, "{lost} of {acked} acknowledged writes lost");
    let ops: u64 = seen.iter().map(|s| s.ops).sum();
    assert!(ops > 1000, "only {ops} operations ran");
    eprintln!("manual failover: {ops} operations, 0 errors, 0 of {acked} acknowledged writes lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_costs_at_most_its_in_flight_writes() {
    let mut cluster = TestCluster::start(3, 1);
    // Requests for the dead primary's slots wait for the promotion (cluster-node-timeout is 2 s
    // in tests) instead of failing.
    let proxy = TestProxy::start_with(&cluster, |c| c.session.retry_deadline_ms = 15_000).await;
    let load = Load::start(&proxy, 20, "fo").await;
    std::thread::sleep(Duration::from_millis(500));

    let victim = cluster.primaries()[0];
    let replica = cluster.replica_of(victim).addr.clone();
    let index = cluster.index_of(victim);
    let killed_at = Instant::now();
    cluster.kill(index);
    wait_until(Duration::from_secs(20), "the replica was promoted", || {
        is_primary(&replica)
    });
    let failover = killed_at.elapsed();
    std::thread::sleep(Duration::from_millis(1000));
    let seen = load.finish().await;

    for s in &seen {
        assert!(s.wrong.is_empty(), "wrong replies: {:#?}", s.wrong);
        // Only a write in flight on the killed node at the instant of the kill may fail: one per
        // client at most, and it says its outcome is unknown.
        assert!(s.errors.len() <= 1, "{:#?}", s.errors);
    }
    let errors = all_errors(&seen);
    for (_, error) in &errors {
        assert!(
            error.starts_with("SET ") && error.contains("may or may not have been applied"),
            "{error}"
        );
    }
    let window = error_window(&errors);
    assert!(
        window < failover + Duration::from_secs(1),
        "errors over {window:?}, failover took {failover:?}"
    );
    let (acked, lost) = check_acked(&proxy, &seen);
    let ops: u64 = seen.iter().map(|s| s.ops).sum();
    assert!(ops > 1000, "only {ops} operations ran");
    eprintln!(
        "SIGKILL of a primary: failover {failover:?}, {ops} operations, {} client errors over {window:?}, \
         {lost} of {acked} acknowledged writes lost (asynchronous replication, ack = primary)",
        errors.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_loses_no_acknowledged_write_with_ack_replicated() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.retry_deadline_ms = 15_000;
        c.backend.ack = slotproxy::config::Ack::Replicated;
    })
    .await;
    let load = Load::start(&proxy, 20, "fo").await;
    std::thread::sleep(Duration::from_millis(500));
    let victim = cluster.primaries()[0];
    let replica = cluster.replica_of(victim).addr.clone();
    let index = cluster.index_of(victim);
    cluster.kill(index);
    wait_until(Duration::from_secs(20), "the replica was promoted", || {
        is_primary(&replica)
    });
    std::thread::sleep(Duration::from_millis(1000));
    let seen = load.finish().await;

    for s in &seen {
        assert!(s.wrong.is_empty(), "wrong replies: {:#?}", s.wrong);
    }
    // Besides the write in flight at the kill, writes to the promoted primary can't be
    // confirmed (its only replica was the node that died): NOREPLICAS, never a silent ack.
    let errors = all_errors(&seen);
    for (_, error) in &errors {
        assert!(
            error.starts_with("SET ")
                && (error.contains("may or may not have been applied")
                    || error.contains("NOREPLICAS")),
            "{error}"
        );
    }
    let (acked, lost) = check_acked(&proxy, &seen);
    assert_eq!(lost, 0, "{lost} of {acked} acknowledged writes lost");
    eprintln!(
        "ack replicated, SIGKILL of a primary: {acked} acknowledged writes, 0 lost, {} client errors",
        errors.len()
    );
}
