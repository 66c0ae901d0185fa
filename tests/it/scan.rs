//! `SCAN` over every primary with a cursor that names the shard, and `RANDOMKEY`: a full
//! iteration returns every key, options reach the nodes, and keys that stay put survive slot
//! migrations in the middle of an iteration.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::common::{RawClient, StandaloneRedis, TestCluster, TestNode, TestProxy, wait_until};

/// Most calls one iteration may take before the test calls it a loop.
const MAX_CALLS: usize = 20_000;

/// One full `SCAN` iteration with `options`: every key returned (with repeats) and the number
/// of calls it took.
fn scan_all(conn: &mut redis::Connection, options: &[&str]) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut cursor = "0".to_string();
    for calls in 1..=MAX_CALLS {
        let (next, batch): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg(options)
            .query(conn)
            .unwrap_or_else(|e| panic!("SCAN {cursor} {options:?}: {e}"));
        keys.extend(batch);
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
    }
    panic!("SCAN {options:?} did not finish within {MAX_CALLS} calls");
}

fn set_of(keys: &[String]) -> BTreeSet<String> {
    keys.iter().cloned().collect()
}

/// Writes `keys` as strings through `conn`, in one pipeline.
fn write(conn: &mut redis::Connection, keys: &[String]) {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("SET").arg(key).arg("v").ignore();
    }
    pipe.query::<()>(conn).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_returns_every_key_once_per_iteration_and_honours_options() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut conn = proxy.sync_client();

    // An empty keyspace: one iteration, no keys; RANDOMKEY is nil, as from redis-server.
    assert_eq!(scan_all(&mut conn, &[]).0, Vec::<String>::new());
    let mut raw = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    assert_eq!(
        raw.request(&[b"RANDOMKEY"]).await,
        direct.request(&[b"RANDOMKEY"]).await
    );

    let strings: Vec<String> = (0..1000).map(|i| format!("key:{i}")).collect();
    write(&mut conn, &strings);
    let mut lists = Vec::new();
    let mut pipe = redis::pipe();
    for i in 0..60 {
        let list = format!("list:{i}");
        pipe.cmd("RPUSH").arg(&list).arg("x").ignore();
        pipe.cmd("HSET")
            .arg(format!("hash:{i}"))
            .arg("f")
            .arg("v")
            .ignore();
        lists.push(list);
    }
    pipe.query::<()>(&mut conn).unwrap();
    let hashes: Vec<String> = (0..60).map(|i| format!("hash:{i}")).collect();
    let all: BTreeSet<String> = strings
        .iter()
        .chain(&lists)
        .chain(&hashes)
        .cloned()
        .collect();
    // The keys really are spread over every primary.
    for node in &cluster.nodes()[..3] {
        let size: usize = redis::cmd("DBSIZE").query(&mut cluster.conn(node)).unwrap();
        assert!(size > 300, "{} holds only {size} keys", node.addr);
    }

    let (keys, calls) = scan_all(&mut conn, &["COUNT", "10"]);
    assert_eq!(set_of(&keys), all, "a full iteration returns every key");
    // Without topology changes each primary is scanned once, so repeats are redis' own (a
    // node resizing its table mid-scan), which are rare.
    assert!(keys.len() < all.len() + 50, "{} keys returned", keys.len());
    assert!(calls > 30, "COUNT 10 took only {calls} calls");

    // COUNT reaches the nodes: a large one covers each primary in one call (plus the last
    // call that says the iteration is over).
    let (keys, calls) = scan_all(&mut conn, &["COUNT", "1000"]);
    assert_eq!(set_of(&keys), all);
    assert!(calls <= 4, "COUNT 1000 took {calls} calls");

    let (keys, _) = scan_all(&mut conn, &["MATCH", "key:1*", "COUNT", "50"]);
    let want: BTreeSet<String> = strings
        .iter()
        .filter(|k| k.starts_with("key:1"))
        .cloned()
        .collect();
    assert_eq!(set_of(&keys), want, "MATCH");
    let (keys, _) = scan_all(&mut conn, &["TYPE", "list"]);
    assert_eq!(set_of(&keys), set_of(&lists), "TYPE list");
    let (keys, _) = scan_all(&mut conn, &["type", "hash", "match", "hash:1*"]);
    let want: BTreeSet<String> = hashes
        .iter()
        .filter(|k| k.starts_with("hash:1"))
        .cloned()
        .collect();
    assert_eq!(set_of(&keys), want, "TYPE and MATCH");

    // RESP3, through a real client and byte by byte.
    let resp3 = redis::Client::open(format!("redis://{}/?protocol=resp3", proxy.addr)).unwrap();
    let mut conn3 = resp3.get_connection().unwrap();
    let (keys, _) = scan_all(&mut conn3, &["COUNT", "100"]);
    assert_eq!(set_of(&keys), all, "RESP3 iteration");
    raw.request(&[b"HELLO", b"3"]).await;
    let reply = raw.request(&[b"SCAN", b"0", b"MATCH", b"key:7"]).await;
    assert!(
        reply.starts_with(b"*2\r\n$") && reply.ends_with(b"\r\n"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    raw.request(&[b"HELLO", b"2"]).await;

    // Cursors: redis' error for one that is not a number (or one the proxy never made), and
    // the connection stays usable; options are checked by the node.
    for cursor in [&b"abc"[..], b" 1", b"1.5"] {
        let want = direct.request(&[b"SCAN", cursor]).await;
        assert_eq!(raw.request(&[b"SCAN", cursor]).await, want, "{cursor:?}");
    }
    assert_eq!(
        raw.request(&[b"SCAN", b"5"]).await,
        b"-ERR invalid cursor\r\n"
    );
    for options in [
        vec![&b"COUNT"[..], b"0"],
        vec![b"COUNT", b"x"],
        vec![b"TYPE"],
        vec![b"NOPE", b"1"],
    ] {
        let mut args: Vec<&[u8]> = vec![b"SCAN", b"0"];
        args.extend(options.iter().copied());
        assert_eq!(
            raw.request(&args).await,
            direct.request(&args).await,
            "{options:?}"
        );
    }
    assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n");

    // RANDOMKEY picks a key that exists, from any primary.
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let key: String = redis::cmd("RANDOMKEY").query(&mut conn).unwrap();
        assert!(all.contains(&key), "RANDOMKEY gave {key}");
        seen.insert(key);
    }
    assert!(seen.len() > 1, "RANDOMKEY always gave {seen:?}");
}

/// The slot in the low 14 bits of a proxy cursor (`src/session/scan.rs` documents the layout).
fn anchor_of(cursor: &str) -> u16 {
    (cursor.parse::<u64>().unwrap() & 0x3fff) as u16
}

/// Keys of `slot`, in one hash tag.
fn keys_in_slot(cluster: &TestCluster, slot: u16, n: usize) -> Vec<String> {
    let tag = cluster.key_in_slot(slot, &format!("slot{slot}"));
    (0..n).map(|i| format!("{{{tag}}}:{i}")).collect()
}

/// GETs `node` has served or refused (MOVED) so far.
fn get_calls(cluster: &TestCluster, node: &TestNode) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut cluster.conn(node))
        .unwrap();
    let Some(stats) = info.lines().find_map(|l| l.strip_prefix("cmdstat_get:")) else {
        return 0;
    };
    stats
        .split(',')
        .filter_map(|field| field.split_once('='))
        .filter(|(name, _)| *name == "calls" || *name == "rejected_calls")
        .map(|(_, n)| n.parse::<u64>().unwrap())
        .sum()
}

/// Moves `slot` (whose keys include `key`) from `from` to `to`, then waits until the proxy's
/// slot map has caught up: GETs for `key` through the proxy stop reaching `from`.
fn move_slot(
    cluster: &TestCluster,
    proxy: &TestProxy,
    slot: u16,
    (from, to): (&TestNode, &TestNode),
    key: &str,
) {
    cluster.migrate_slot(slot, from, to);
    let mut conn = proxy.sync_client();
    wait_until(
        Duration::from_secs(10),
        "the proxy sends the moved slot to its new owner",
        || {
            let before = get_calls(cluster, from);
            let _: String = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
            get_calls(cluster, from) == before
        },
    );
}

/// Scans with COUNT 10 until the cursor's anchor is `anchor`, runs `change`, then finishes the
/// iteration; returns every key returned.
fn scan_across(conn: &mut redis::Connection, anchor: u16, change: impl FnOnce()) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = "0".to_string();
    let mut change = Some(change);
    for _ in 0..MAX_CALLS {
        let (next, batch): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("COUNT")
            .arg(10)
            .query(conn)
            .unwrap();
        keys.extend(batch);
        if next == "0" {
            assert!(
                change.is_none(),
                "the iteration never reached slot {anchor}"
            );
            return keys;
        }
        if anchor_of(&next) == anchor
            && let Some(change) = change.take()
        {
            change();
        }
        cursor = next;
    }
    panic!("SCAN did not finish within {MAX_CALLS} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migrations_mid_scan_lose_no_key_that_stayed_put() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut conn = proxy.sync_client();
    let (a, b, c) = (
        &cluster.nodes()[0],
        &cluster.nodes()[1],
        &cluster.nodes()[2],
    );
    let spread: Vec<String> = (0..1000).map(|i| format!("key:{i}")).collect();
    let slot_0 = keys_in_slot(&cluster, 0, 20);
    let slot_100 = keys_in_slot(&cluster, 100, 20);
    let mut all = spread.clone();
    all.extend(slot_0.iter().cloned());
    all.extend(slot_100.iter().cloned());
    write(&mut conn, &all);
    let all: BTreeSet<String> = all.into_iter().collect();

    // While the second shard (lowest slot 5461) is scanned, slot 100 moves from the first
    // shard, already scanned, to the third, not scanned yet: the third shard's lowest slot
    // drops below the shard being scanned, and it must still be scanned.
    let keys = scan_across(&mut conn, 5461, || {
        move_slot(&cluster, &proxy, 100, (a, c), &slot_100[0]);
    });
    assert_kept_keys(&all, &slot_100, &keys);

    // While the first shard (lowest slot 0) is scanned, its own lowest slot moves to the
    // second shard.
    let keys = scan_across(&mut conn, 0, || {
        move_slot(&cluster, &proxy, 0, (a, b), &slot_0[0]);
    });
    assert_kept_keys(&all, &slot_0, &keys);

    // With the topology stable again, an iteration is exact: each key once or, rarely, twice.
    let (keys, _) = scan_all(&mut conn, &["COUNT", "10"]);
    assert_eq!(set_of(&keys), all);
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for key in &keys {
        *counts.entry(key).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n <= 2), "a key came back 3 times");
}

/// A scan across a slot move returned every key of `all` that did not move (`moved` may be
/// missed or returned), and nothing that never existed.
fn assert_kept_keys(all: &BTreeSet<String>, moved: &[String], keys: &[String]) {
    let stayed: BTreeSet<String> = all.iter().filter(|k| !moved.contains(k)).cloned().collect();
    let got = set_of(keys);
    let missing: Vec<&String> = stayed.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "lost {} keys: {missing:?}",
        missing.len()
    );
    assert!(got.is_subset(all), "returned keys that never existed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_0_returns_a_small_keyspace_in_one_call_like_redis_server() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut conn = proxy.sync_client();
    let mut direct = standalone.conn();
    // Two keys on each primary, so the first primary alone holds fewer than COUNT.
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .flat_map(|node| {
            [
                cluster.key_for_node(node, "small:a"),
                cluster.key_for_node(node, "small:b"),
            ]
        })
        .collect();
    write(&mut conn, &keys);
    write(&mut direct, &keys);
    let scan = |conn: &mut redis::Connection, options: &[&str]| {
        let (cursor, batch): (String, Vec<String>) = redis::cmd("SCAN")
            .arg("0")
            .arg(options)
            .query(conn)
            .unwrap();
        (cursor, set_of(&batch))
    };
    let want = scan(&mut direct, &[]);
    assert_eq!(want, ("0".to_string(), set_of(&keys)), "redis-server");
    assert_eq!(scan(&mut conn, &[]), want, "one call, every key, cursor 0");
    let matching = scan(&mut direct, &["MATCH", "*small:a*"]);
    assert_eq!(scan(&mut conn, &["MATCH", "*small:a*"]), matching);
    // A batch that reached COUNT stops at the primary that filled it; the iteration goes on.
    let (cursor, batch) = scan(&mut conn, &["COUNT", "2"]);
    assert_ne!(cursor, "0");
    assert!(batch.len() >= 2, "{batch:?}");
    let (all, _) = scan_all(&mut conn, &["COUNT", "2"]);
    assert_eq!(set_of(&all), set_of(&keys));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomkey_picks_keys_of_every_primary_like_redis_server() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut conn = proxy.sync_client();
    let mut direct = standalone.conn();
    // One key on each primary: redis-server returns each of them now and then.
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|node| cluster.key_for_node(node, "rk"))
        .collect();
    write(&mut conn, &keys);
    write(&mut direct, &keys);
    let picks = |conn: &mut redis::Connection| {
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let key: String = redis::cmd("RANDOMKEY").query(conn).unwrap();
            seen.insert(key);
        }
        seen
    };
    let want = picks(&mut direct);
    assert_eq!(want, set_of(&keys), "redis-server");
    // Missing one of three keys in 100 fair picks has a chance of about 1e-17.
    assert_eq!(picks(&mut conn), want);
}
