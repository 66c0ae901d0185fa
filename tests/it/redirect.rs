//! MOVED, ASK and TRYAGAIN: resharding under the proxy never reaches the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{TestCluster, TestNode, TestProxy, wait_until};
use redis::Value;

/// A hash tag whose slot is owned by `node`, and that slot.
fn tag_on(cluster: &TestCluster, node: &TestNode, prefix: &str) -> (String, u16) {
    let key = cluster.key_for_node(node, prefix);
    let slot = cluster.keyslot(key.as_bytes());
    (key, slot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_slot_map_is_healed_by_moved() {
    let cluster = TestCluster::start(3, 1);
    // A long timer, so only the MOVED can make the proxy learn the new owner.
    let proxy = TestProxy::start_with(&cluster, |c| c.cluster.refresh_interval_ms = 600_000).await;
    let mut c = proxy.client().await;
    let (from, to) = (cluster.primaries()[0], cluster.primaries()[1]);
    let (tag, slot) = tag_on(&cluster, from, "moved");
    let key = format!("{{{tag}}}:k");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("before")
        .query_async(&mut c)
        .await
        .unwrap();

    cluster.migrate_slot(slot, from, to);

    // The proxy still thinks `from` owns the slot: the node answers MOVED, the client sees none.
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(got, "before");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("after")
        .query_async(&mut c)
        .await
        .unwrap();
    let direct: String = redis::cmd("GET")
        .arg(&key)
        .query(&mut cluster.conn(to))
        .unwrap();
    assert_eq!(direct, "after");

    // The MOVED triggered a refresh: soon requests for the slot go straight to the new owner.
    wait_until(
        Duration::from_secs(5),
        "GETs for the moved slot stop reaching the old owner",
        || {
            let before = cluster.command_calls(from, "get");
            let mut sync = proxy.sync_client();
            let got: String = redis::cmd("GET").arg(&key).query(&mut sync).unwrap();
            assert_eq!(got, "after");
            cluster.command_calls(from, "get") == before
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migration_under_pipelined_load_shows_no_client_error() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let (from, to) = (cluster.primaries()[0], cluster.primaries()[2]);
    let (tag, slot) = tag_on(&cluster, from, "migrating");

    // Keys already in the slot, so the migration has something to move while clients run.
    let mut direct = cluster.conn(from);
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("{{{tag}}}:old:{i}"))
            .arg(i)
            .query(&mut direct)
            .unwrap();
    }

    let mut setup = proxy.sync_client();
    for n in 0..8 {
        let _: () = redis::cmd("SET")
            .arg(format!("elsewhere:{n}"))
            .arg(format!("E{n}"))
            .query(&mut setup)
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for n in 0..8 {
        let mut c = proxy.client().await;
        let stop = stop.clone();
        let tag = tag.clone();
        clients.push(tokio::spawn(async move {
            let mut round = 0i64;
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) || round < 5 {
                round += 1;
                let mut pipe = redis::pipe();
                let mut want = Vec::new();
                for j in 0..5 {
                    let key = format!("{{{tag}}}:c{n}:{j}");
                    pipe.cmd("SET").arg(&key).arg(round * 10 + j);
                    want.push(Value::Okay);
                    pipe.cmd("GET").arg(&key);
                    want.push(Value::BulkString((round * 10 + j).to_string().into_bytes()));
                }
                pipe.cmd("INCR").arg(format!("{{{tag}}}:counter:{n}"));
                want.push(Value::Int(round));
                pipe.cmd("MGET")
                    .arg(format!("{{{tag}}}:c{n}:0"))
                    .arg(format!("{{{tag}}}:c{n}:4"));
                want.push(Value::Array(vec![
                    Value::BulkString((round * 10).to_string().into_bytes()),
                    Value::BulkString((round * 10 + 4).to_string().into_bytes()),
                ]));
                // Cross-slot: split by the proxy, one part in the migrating slot.
                pipe.cmd("MGET")
                    .arg(format!("{{{tag}}}:c{n}:1"))
                    .arg(format!("elsewhere:{n}"))
                    .arg(format!("{{{tag}}}:c{n}:2"));
                want.push(Value::Array(vec![
                    Value::BulkString((round * 10 + 1).to_string().into_bytes()),
                    Value::BulkString(format!("E{n}").into_bytes()),
                    Value::BulkString((round * 10 + 2).to_string().into_bytes()),
                ]));
                let old = format!("{{{tag}}}:old:{}", (round * 7 + n) % 300);
                pipe.cmd("EXISTS").arg(&old);
                want.push(Value::Int(1));
                match pipe.query_async::<Vec<Value>>(&mut c).await {
                    Ok(got) if got == want => {}
                    Ok(got) => errors.push(format!("round {round}: got {got:?}, want {want:?}")),
                    Err(e) => errors.push(format!("round {round}: {e}")),
                }
            }
            (round, errors)
        }));
    }

    // Move the slot a few keys at a time, so clients hit every phase: before, ASK, TRYAGAIN, MOVED.
    std::thread::sleep(Duration::from_millis(200));
    let asking_before = cluster.command_calls(to, "asking");
    let started = Instant::now();
    cluster.begin_migration(slot, from, to);
    let moved = cluster.migrate_keys_paced(slot, from, to, 5, Duration::from_millis(5));
    cluster.finish_migration(slot, to);
    let migration_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);

    let mut rounds = 0;
    for client in clients {
        let (client_rounds, errors) = client.await.unwrap();
        assert!(errors.is_empty(), "client-visible errors: {errors:#?}");
        rounds += client_rounds;
    }
    let asking = cluster.command_calls(to, "asking") - asking_before;
    assert!(moved >= 300, "moved only {moved} keys");
    assert!(
        asking > 0,
        "no ASK redirect happened during the {migration_time:?} migration"
    );
    assert!(rounds > 40, "only {rounds} pipelines ran");
    // Everything ended up on the new owner.
    let count: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut cluster.conn(to))
        .unwrap();
    assert_eq!(count, 300 + 8 * 5 + 8);
    eprintln!("migrated {moved} keys in {migration_time:?}; {rounds} pipelines, {asking} ASKING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryagain_during_migration_is_retried_until_the_slot_settles() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let (from, to) = (cluster.primaries()[1], cluster.primaries()[0]);
    let (tag, slot) = tag_on(&cluster, from, "tryagain");
    let (a, b) = (format!("{{{tag}}}:a"), format!("{{{tag}}}:b"));
    let mut direct = cluster.conn(from);
    let _: () = redis::cmd("MSET")
        .arg(&a)
        .arg("1")
        .arg(&b)
        .arg("2")
        .query(&mut direct)
        .unwrap();

    // Half the keys moved: the old owner answers multi-key requests with TRYAGAIN.
    cluster.begin_migration(slot, from, to);
    let _: Value = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(to.port)
        .arg(&a)
        .arg(0)
        .arg(5000)
        .query(&mut direct)
        .unwrap();
    let err = redis::cmd("MGET")
        .arg(&a)
        .arg(&b)
        .query::<Value>(&mut direct)
        .unwrap_err();
    assert_eq!(err.code(), Some("TRYAGAIN"), "{err}");

    let mut c = proxy.sync_client();
    let started = Instant::now();
    let finisher = std::thread::scope(|scope| {
        let finisher = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            cluster.migrate_keys(slot, from, to, 10);
            cluster.finish_migration(slot, to);
        });
        let got: Vec<String> = redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
        assert_eq!(got, ["1", "2"]);
        finisher.join()
    });
    finisher.unwrap();
    // The reply could only come after the finisher's 300 ms pause: the proxy waited it out.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}
