//! Failover under load: a primary killed with SIGKILL, and a manual CLUSTER FAILOVER.
//!
//! Twenty clients write unique keys and read back keys they wrote, across all slots, while a
//! primary goes away. The clients count what they see; the assertions are the bounds.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may unwrap too

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestCluster, TestProxy, wait_until};

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Keys whose SET was acknowledged, with their value.
    acked: Vec<(String, u64)>,
    /// Errors, with when they happened.
    errors: Vec<(Instant, String)>,
    /// Reads that returned a wrong value (must stay empty).
    wrong: Vec<String>,
    ops: u64,
}

/// Runs `clients` loops of SET (unique key) + GET (an earlier key) until `stop`.
async fn load(
    proxy: &TestProxy,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    let mut tasks = Vec::new();
    // Like an application configured to ride out a failover: it waits for replies longer than
    // the promotion takes (the redis crate's default is 500 ms).
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let client = redis::Client::open(proxy.url()).unwrap();
    for n in 0..clients {
        let mut c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("fo:{n}:{i}");
                match redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .query_async::<()>(&mut c)
                    .await
                {
                    Ok(()) => seen.acked.push((key, i)),
                    Err(e) => seen
                        .errors
                        .push((Instant::now(), format!("SET {key}: {e}"))),
                }
                if let Some((key, value)) = seen.acked.get(seen.acked.len() / 2).cloned() {
                    match redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<u64>>(&mut c)
                        .await
                    {
                        Ok(Some(got)) if got == value => {}
                        // A key acknowledged by the killed primary may be lost (async replication).
                        Ok(None) => {}
                        Ok(Some(got)) => {
                            seen.wrong.push(format!("GET {key}: {got}, wrote {value}"))
                        }
                        Err(e) => seen
                            .errors
                            .push((Instant::now(), format!("GET {key}: {e}"))),
                    }
                }
                seen.ops += 2;
            }
            seen
        }));
    }
    tasks
}

/// True when the node at `addr` reports itself a primary.
fn is_primary(addr: &str) -> bool {
    let mut conn = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .unwrap();
    info.contains("role:master")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_under_load_shows_no_client_error() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| c.session.retry_deadline_ms = 10_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&proxy, 20, stop.clone()).await;
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
    stop.store(true, Ordering::Relaxed);

    let mut ops = 0;
    for task in tasks {
        let seen = task.await.unwrap();
        assert!(
            seen.errors.is_empty(),
            "client-visible errors: {:#?}",
            seen.errors
        );
        assert!(seen.wrong.is_empty(), "wrong replies: {:#?}", seen.wrong);
        ops += seen.ops;
        // Nothing acknowledged is lost in a manual failover (it waits for the replica).
        let mut c = proxy.sync_client();
        for (key, value) in &seen.acked {
            assert_eq!(
                redis::cmd("GET")
                    .arg(key)
                    .query::<Option<u64>>(&mut c)
                    .unwrap(),
                Some(*value),
                "{key}"
            );
        }
    }
    assert!(ops > 1000, "only {ops} operations ran");
    eprintln!("manual failover: {ops} operations, 0 errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_costs_at_most_its_in_flight_writes() {
    let mut cluster = TestCluster::start(3, 1);
    // Requests for the dead primary's slots wait for the promotion (cluster-node-timeout is 2 s
    // in tests) instead of failing.
    let proxy = TestProxy::start_with(&cluster, |c| c.session.retry_deadline_ms = 15_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&proxy, 20, stop.clone()).await;
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
    stop.store(true, Ordering::Relaxed);

    let mut ops = 0;
    let mut errors = Vec::new();
    let mut lost = 0;
    let mut acked = 0;
    let mut c = proxy.sync_client();
    for task in tasks {
        let seen = task.await.unwrap();
        assert!(seen.wrong.is_empty(), "wrong replies: {:#?}", seen.wrong);
        // Only a write in flight on the killed node at the instant of the kill may fail: one per
        // client at most, and it says its outcome is unknown.
        assert!(seen.errors.len() <= 1, "{:#?}", seen.errors);
        for (_, error) in &seen.errors {
            assert!(
                error.starts_with("SET ") && error.contains("may or may not have been applied"),
                "{error}"
            );
        }
        errors.extend(seen.errors);
        ops += seen.ops;
        for (key, value) in &seen.acked {
            acked += 1;
            match redis::cmd("GET")
                .arg(key)
                .query::<Option<u64>>(&mut c)
                .unwrap()
            {
                Some(got) => assert_eq!(got, *value, "{key}"),
                None => lost += 1,
            }
        }
    }
    let window = match (
        errors.iter().map(|e| e.0).min(),
        errors.iter().map(|e| e.0).max(),
    ) {
        (Some(first), Some(last)) => last - first,
        _ => Duration::ZERO,
    };
    assert!(
        window < failover + Duration::from_secs(1),
        "errors over {window:?}, failover took {failover:?}"
    );
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
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(&proxy, 20, stop.clone()).await;
    std::thread::sleep(Duration::from_millis(500));
    let victim = cluster.primaries()[0];
    let replica = cluster.replica_of(victim).addr.clone();
    let index = cluster.index_of(victim);
    cluster.kill(index);
    wait_until(Duration::from_secs(20), "the replica was promoted", || {
        is_primary(&replica)
    });
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);

    let mut c = proxy.sync_client();
    let (mut acked, mut errors) = (0, 0);
    for task in tasks {
        let seen = task.await.unwrap();
        assert!(seen.wrong.is_empty(), "wrong replies: {:#?}", seen.wrong);
        // Besides the write in flight at the kill, writes to the promoted primary can't be
        // confirmed (its only replica was the node that died): NOREPLICAS, never a silent ack.
        for (_, error) in &seen.errors {
            assert!(
                error.starts_with("SET ")
                    && (error.contains("may or may not have been applied")
                        || error.contains("NOREPLICAS")),
                "{error}"
            );
        }
        errors += seen.errors.len();
        for (key, value) in &seen.acked {
            acked += 1;
            let got: Option<u64> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
            assert_eq!(got, Some(*value), "{key} was acknowledged, then lost");
        }
    }
    eprintln!(
        "ack replicated, SIGKILL of a primary: {acked} acknowledged writes, 0 lost, {errors} client errors"
    );
}
