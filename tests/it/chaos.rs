//! Chaos under load: a primary that stalls (SIGSTOP, then SIGCONT) and a replica that restarts.
//!
//! Twenty clients write unique keys and read back keys they wrote, across all slots, under
//! `read_policy = "prefer-replica"` (see `common::Load`), while a node misbehaves. Each test
//! asserts the bounds that follow from how slotproxy handles the failure (explained in each
//! test) and prints what it measured; docs/failover.md records those figures.

use std::time::{Duration, Instant};

use crate::common::{
    Load, Seen, TestCluster, TestProxy, all_errors, check_acked, error_window, is_primary,
    wait_until,
};
use slotproxy::config::{Ack, Config, ReadPolicy};

const CLIENTS: usize = 20;
/// `backend.request_timeout_ms` in these tests (the default, spelled out).
const REQUEST_TIMEOUT: Duration = Duration::from_millis(5_000);

fn chaos_config(c: &mut Config, ack: Ack) {
    c.read_policy = ReadPolicy::PreferReplica;
    c.backend.request_timeout_ms = REQUEST_TIMEOUT.as_millis() as u64;
    c.backend.ack = ack;
    // Long enough for requests that wait for a promotion (cluster-node-timeout is 2 s here).
    c.session.retry_deadline_ms = 15_000;
}

/// What a stall test measured.
struct Stall {
    failover: Duration,
    /// Every client error, with its time since the SIGSTOP.
    errors: Vec<(Duration, String)>,
    seen: Vec<Seen>,
}

/// Stops the primary of the first shard under load, waits for its replica to be promoted and for
/// the requests stuck on it to time out, resumes it, and waits until it is back as a replica in
/// sync with the new primary.
async fn stall_a_primary(cluster: &mut TestCluster, proxy: &TestProxy, prefix: &str) -> Stall {
    let load = Load::start(proxy, CLIENTS, prefix).await;
    std::thread::sleep(Duration::from_millis(500));
    let victim = cluster.primaries()[0];
    let replica = cluster.replica_of(victim).addr.clone();
    let index = cluster.index_of(victim);

    let stalled_at = Instant::now();
    cluster.stop(index);
    wait_until(Duration::from_secs(20), "the replica was promoted", || {
        is_primary(&replica)
    });
    let failover = stalled_at.elapsed();
    // Resume only once the requests stuck on the stalled node have timed out (their connections
    // are closed by then, so nothing the node does when it wakes reaches a client).
    let resume_at = stalled_at + REQUEST_TIMEOUT + Duration::from_millis(500);
    std::thread::sleep(resume_at.saturating_duration_since(Instant::now()));
    cluster.cont(index);
    let old = &cluster.nodes()[index];
    wait_until(
        Duration::from_secs(30),
        "the old primary rejoined as a replica in sync",
        || !is_primary(&old.addr) && cluster.replica_in_sync(old),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let seen = load.finish().await;
    let errors = all_errors(&seen)
        .into_iter()
        .map(|(at, e)| (at.saturating_duration_since(stalled_at), e))
        .collect();
    Stall {
        failover,
        errors,
        seen,
    }
}

/// (b) SIGSTOP of a primary, `ack = primary`.
///
/// Under prefer-replica the stalled primary gets only writes. Each client's first write to it
/// after the stall hangs (a client has one request in flight), until `request_timeout` fails
/// the connection: that write gets "did not reply ... may or may not have been applied". The
/// health check marks the node down within an interval plus a timeout (2 s), long before
/// the request timeout (5 s), so later writes for its slots are held, not sent, and go to the
/// promoted replica: at most one error per client, all at about stall + request timeout, and
/// no read error at all (reads go to the replicas, which stay up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_primary_costs_each_client_at_most_the_write_it_had_in_flight() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| chaos_config(c, Ack::Primary)).await;
    let stall = stall_a_primary(&mut cluster, &proxy, "stall").await;

    for s in &stall.seen {
        assert!(s.wrong.is_empty(), "wrong replies: {:#?}", s.wrong);
        assert!(s.errors.len() <= 1, "{:#?}", s.errors);
        // Nothing hangs: the longest wait is a write stuck until the request timeout, or a
        // request held until the promotion.
        let bound = REQUEST_TIMEOUT.max(stall.failover) + Duration::from_secs(2);
        assert!(s.slowest < bound, "an operation took {:?}", s.slowest);
    }
    for (after, error) in &stall.errors {
        assert!(
            error.starts_with("SET ")
                && error.contains("did not reply within 5000 ms")
                && error.contains("may or may not have been applied"),
            "{error}"
        );
        // Stuck requests were sent just before or after the stall; the connection check runs
        // every 250 ms.
        assert!(
            *after >= REQUEST_TIMEOUT - Duration::from_millis(100)
                && *after < REQUEST_TIMEOUT + Duration::from_secs(1),
            "{error} came {after:?} after the stall"
        );
    }
    let window = match (stall.errors.first(), stall.errors.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => Duration::ZERO,
    };
    assert!(window < Duration::from_secs(1), "errors over {window:?}");
    let (acked, lost) = check_acked(&proxy, &stall.seen);
    let ops: u64 = stall.seen.iter().map(|s| s.ops).sum();
    assert!(ops > 1000, "only {ops} operations ran");
    let slowest = stall
        .seen
        .iter()
        .map(|s| s.slowest)
        .max()
        .unwrap_or_default();
    eprintln!(
        "SIGSTOP of a primary (ack primary): failover {:?}, {ops} operations, {} client errors \
         (all SET, outcome unknown) from {:?} to {:?} after the stall (window {window:?}), \
         slowest operation {slowest:?}, {lost} of {acked} acknowledged writes lost",
        stall.failover,
        stall.errors.len(),
        stall.errors.first().map(|e| e.0).unwrap_or_default(),
        stall.errors.last().map(|e| e.0).unwrap_or_default(),
    );
}

/// (b) SIGSTOP of a primary, `ack = replicated`: no acknowledged write is lost.
///
/// Errors are the writes stuck on the stalled node (as above), and `NOREPLICAS` for writes to
/// the promoted primary until the old one has rejoined as its replica and synced: with one
/// replica per shard, nobody can confirm them meanwhile. Both tell the client its write is not
/// safe; neither is ever an acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_primary_loses_no_acknowledged_write_with_ack_replicated() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| chaos_config(c, Ack::Replicated)).await;
    let stall = stall_a_primary(&mut cluster, &proxy, "stallrep").await;

    for s in &stall.seen {
        assert!(s.wrong.is_empty(), "wrong replies: {:#?}", s.wrong);
    }
    let mut stuck = 0;
    for (_, error) in &stall.errors {
        if error.contains("NOREPLICAS") {
            assert!(error.starts_with("SET "), "{error}");
        } else {
            assert!(
                error.starts_with("SET ") && error.contains("may or may not have been applied"),
                "{error}"
            );
            stuck += 1;
        }
    }
    assert!(stuck <= CLIENTS, "{stuck} writes stuck on the stalled node");
    let (acked, lost) = check_acked(&proxy, &stall.seen);
    assert_eq!(lost, 0, "{lost} of {acked} acknowledged writes lost");
    eprintln!(
        "SIGSTOP of a primary (ack replicated): failover {:?}, {acked} acknowledged writes, 0 lost, \
         {} client errors ({stuck} outcome unknown, {} NOREPLICAS)",
        stall.failover,
        stall.errors.len(),
        stall.errors.len() - stuck
    );
}

/// (c) A replica killed and restarted under prefer-replica load: no client sees anything.
///
/// Replicas only get reads, and reads are safe to retry: the ones in flight when it dies are
/// sent again, and the health check takes it out of rotation (reads go to its primary). Back,
/// it gets no reads until it is in the map again and in sync with its primary. Read-your-writes
/// is on, so every read of a key a client wrote within the last second goes to the primary and
/// no read may come back empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_replica_costs_no_client_error_and_gets_reads_again() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| {
        chaos_config(c, Ack::Primary);
        c.session.read_your_writes = true;
    })
    .await;
    let load = Load::start(&proxy, CLIENTS, "restart").await;
    std::thread::sleep(Duration::from_millis(500));
    let victim = cluster.replica_of(cluster.primaries()[1]);
    let index = cluster.index_of(victim);
    // With read-your-writes, a client's reads go to replicas once the keys it reads back are
    // older than the window (a client reads keys from the middle of its history).
    wait_until(Duration::from_secs(20), "reads reach the replica", || {
        cluster.command_calls(victim, "get") > 0
    });

    let killed_at = Instant::now();
    cluster.kill(index);
    let victim = &cluster.nodes()[index];
    wait_until(
        Duration::from_secs(20),
        "the cluster marked the replica failed",
        || cluster.marked_failed(victim),
    );
    let down_for = killed_at.elapsed();
    cluster.restart(index);
    let restarted_at = Instant::now();
    let victim = &cluster.nodes()[index];
    wait_until(
        Duration::from_secs(30),
        "the restarted replica is in sync",
        || cluster.replica_in_sync(victim),
    );
    let synced = restarted_at.elapsed();
    wait_until(
        Duration::from_secs(30),
        "the restarted replica serves reads again",
        || cluster.command_calls(victim, "get") > 0,
    );
    let serving = restarted_at.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.finish().await;

    let errors = all_errors(&seen);
    assert!(errors.is_empty(), "client-visible errors: {errors:#?}");
    for s in &seen {
        assert!(s.wrong.is_empty(), "wrong replies: {:#?}", s.wrong);
    }
    let missing: u64 = seen.iter().map(|s| s.missing).sum();
    assert_eq!(missing, 0, "reads of acknowledged keys came back empty");
    let (acked, lost) = check_acked(&proxy, &seen);
    assert_eq!(lost, 0, "{lost} of {acked} acknowledged writes lost");
    let ops: u64 = seen.iter().map(|s| s.ops).sum();
    let reads = cluster.command_calls(&cluster.nodes()[index], "get");
    assert!(ops > 1000, "only {ops} operations ran");
    eprintln!(
        "replica restart (prefer-replica, read-your-writes): down {down_for:?} until marked failed, \
         in sync {synced:?} and serving reads {serving:?} after the restart ({reads} reads since), \
         {ops} operations, 0 errors (window {:?}), 0 empty reads, 0 of {acked} writes lost",
        error_window(&errors)
    );
}
