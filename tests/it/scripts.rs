//! Scripts and functions: EVAL/EVALSHA/FCALL route by their keys, SCRIPT and FUNCTION admin
//! commands reach every primary, and a node that lost a script (flushed, restarted, promoted, or
//! new owner of a slot) gets it again from the proxy's cache without the client seeing NOSCRIPT.
//! Replies are compared with a standalone redis-server where both can answer.

use std::time::Duration;

use crate::common::{
    self, RawClient, StandaloneRedis, TestCluster, TestNode, TestProxy, encode_command,
};
use slotproxy::config::ReadPolicy;

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
/// Sets `KEYS[1]` to `ARGV[1]` and returns the key's new value.
const SET_GET: &str = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])";

/// The SHA-1 redis names `body` by, from a standalone node.
fn sha_of(standalone: &StandaloneRedis, body: &str) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query(&mut standalone.conn())
        .unwrap()
}

/// `SCRIPT LOAD body` through slotproxy and on the standalone node, with the same reply; the
/// script's SHA-1.
async fn load_both(
    via_proxy: &mut RawClient,
    direct: &mut RawClient,
    standalone: &StandaloneRedis,
    body: &str,
) -> String {
    common::assert_same_replies(
        via_proxy,
        direct,
        &[vec![&b"SCRIPT"[..], b"LOAD", body.as_bytes()]],
    )
    .await;
    sha_of(standalone, body)
}

/// Whether `node` has the script `sha` in its own cache.
fn node_has_script(cluster: &TestCluster, node: &TestNode, sha: &str) -> bool {
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(sha)
        .query(&mut cluster.conn(node))
        .unwrap();
    exists == [1]
}

/// `SCRIPT FLUSH` sent to `node` directly: what a restart or a promoted replica looks like.
fn flush_scripts(cluster: &TestCluster, node: &TestNode) {
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut cluster.conn(node))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_route_by_keys_and_answer_like_one_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let sha = sha_of(&standalone, SET_GET);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut standalone.conn())
        .unwrap();
    let sha = sha.as_bytes();
    let upper = sha.to_ascii_uppercase();
    let unknown = b"ffffffffffffffffffffffffffffffffffffffff".as_slice();
    let both = b"return {KEYS[1], KEYS[2], ARGV[1]}".as_slice();
    let commands: Vec<Vec<&[u8]>> = vec![
        vec![&b"EVAL"[..], SET_GET.as_bytes(), b"1", b"s:a", b"1"],
        vec![&b"EVAL"[..], both, b"2", b"{s}a", b"{s}b", b"x"],
        vec![&b"EVAL"[..], b"return 42", b"0"],
        vec![
            b"EVAL_RO",
            b"return redis.call('GET', KEYS[1])",
            b"1",
            b"s:a",
        ],
        vec![
            b"EVAL_RO",
            b"return redis.call('SET', KEYS[1], 1)",
            b"1",
            b"s:a",
        ],
        vec![
            &b"EVAL"[..],
            b"return redis.call('INCR', KEYS[1])",
            b"1",
            b"s:b",
        ],
        vec![
            b"EVAL",
            b"return redis.call('LPUSH', KEYS[1], 1)",
            b"1",
            b"s:b",
        ],
        vec![&b"EVAL"[..], b"return 1", b"x"],
        vec![&b"EVAL"[..], b"return 1", b"3", b"a"],
        vec![&b"EVAL"[..], b"this is not lua", b"0"],
        vec![&b"EVALSHA"[..], sha, b"1", b"s:c", b"2"],
        vec![&b"EVALSHA"[..], sha, b"1", b"s:c", b"3"],
        vec![&b"EVALSHA_RO"[..], sha, b"1", b"s:c", b"4"],
        vec![&b"EVALSHA"[..], unknown, b"0"],
        vec![&b"EVALSHA"[..], b"nope", b"0"],
        vec![&b"SCRIPT"[..], b"LOAD", SET_GET.as_bytes()],
        vec![&b"SCRIPT"[..], b"EXISTS", sha, unknown, sha],
        vec![&b"EVALSHA"[..], &upper, b"1", b"s:d", b"5"],
        vec![&b"SCRIPT"[..], b"KILL"],
        vec![&b"FUNCTION"[..], b"KILL"],
        vec![&b"SCRIPT"[..], b"HELP"],
        vec![&b"SCRIPT"[..], b"FLUSH"],
        vec![&b"SCRIPT"[..], b"EXISTS", sha],
        // A flush through the proxy is a flush: the script is gone, as from one redis-server.
        vec![&b"EVALSHA"[..], sha, b"1", b"s:d", b"6"],
        vec![&b"SCRIPT"[..], b"FLUSH", b"ASYNC"],
        vec![&b"SCRIPT"[..], b"LOAD"],
    ];
    common::assert_same_replies(&mut via_proxy, &mut direct, &commands).await;

    // Keys in different slots: one redis-server runs it, a cluster can't.
    for args in [
        vec![&b"EVAL"[..], both, b"2", b"s:a", b"s:b", b"x"],
        vec![&b"EVALSHA"[..], sha, b"2", b"s:a", b"s:b", b"x"],
        vec![&b"EVAL_RO"[..], both, b"2", b"s:a", b"s:b", b"x"],
    ] {
        assert_eq!(via_proxy.request(&args).await, CROSSSLOT, "{args:?}");
    }
    assert_eq!(
        via_proxy.request(&[b"SCRIPT", b"DEBUG", b"YES"]).await,
        b"-ERR 'SCRIPT DEBUG' is not supported by slotproxy (commands reach the nodes on \
          connections clients share)\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_load_reaches_every_primary_and_a_node_that_forgot_is_reloaded() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut c = proxy.sync_client();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SET_GET)
        .query(&mut c)
        .unwrap();
    assert_eq!(sha, sha_of(&standalone, SET_GET));
    let keys: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|p| cluster.key_for_node(p, "load"))
        .collect();
    for (primary, key) in cluster.primaries().into_iter().zip(&keys) {
        assert!(node_has_script(&cluster, primary, &sha), "{}", primary.addr);
        let got: String = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(key)
            .arg("v1")
            .query(&mut c)
            .unwrap();
        assert_eq!(got, "v1");
    }
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("0000000000000000000000000000000000000000")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, [1, 0]);

    // One primary forgets (a restart without persistence looks the same to the proxy).
    let forgetful = cluster.primaries()[1];
    flush_scripts(&cluster, forgetful);
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .query(&mut c)
        .unwrap();
    assert_eq!(
        exists,
        [1],
        "slotproxy knows it and loads it where EVALSHA finds it missing"
    );
    for key in &keys {
        let got: String = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(key)
            .arg("v2")
            .query(&mut c)
            .unwrap();
        assert_eq!(got, "v2", "{key}");
    }
    assert!(node_has_script(&cluster, forgetful, &sha));

    // A script first seen in EVAL (so on one node only) is reloaded on the others.
    let counter = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let counter_sha = sha_of(&standalone, counter);
    for key in &keys {
        let _: () = redis::cmd("DEL").arg(key).query(&mut c).unwrap();
    }
    let _: i64 = redis::cmd("EVAL")
        .arg(counter)
        .arg(1)
        .arg(&keys[0])
        .arg(0)
        .query(&mut c)
        .unwrap();
    for (primary, key) in cluster.primaries().into_iter().zip(&keys) {
        flush_scripts(&cluster, primary);
        let _: () = redis::cmd("DEL").arg(key).query(&mut c).unwrap();
    }

    // Pipelined: every EVALSHA hits NOSCRIPT on its node; the replies keep request order.
    let mut raw = proxy.raw_client().await;
    let mut pipeline = Vec::new();
    for key in &keys {
        for args in [
            vec![
                b"EVALSHA".as_slice(),
                counter_sha.as_bytes(),
                b"1",
                key.as_bytes(),
                b"5",
            ],
            vec![
                b"EVALSHA",
                counter_sha.as_bytes(),
                b"1",
                key.as_bytes(),
                b"2",
            ],
            vec![&b"GET"[..], key.as_bytes()],
        ] {
            pipeline.extend(encode_command(&args));
        }
    }
    raw.send(&pipeline).await;
    for key in &keys {
        assert_eq!(raw.read_reply().await, b":5\r\n", "{key}");
        assert_eq!(raw.read_reply().await, b":7\r\n", "{key}");
        // Sent behind the first try, so it may run before the reloaded script does.
        let get = raw.read_reply().await;
        assert!(
            get == b"$1\r\n7\r\n" || get == b"$-1\r\n" || get == b"$1\r\n5\r\n",
            "{key}: {}",
            String::from_utf8_lossy(&get)
        );
    }
    for (primary, key) in cluster.primaries().into_iter().zip(&keys) {
        assert!(node_has_script(&cluster, primary, &counter_sha));
        let value: i64 = redis::cmd("GET").arg(key).query(&mut c).unwrap();
        assert_eq!(value, 7, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_script_replies_in_resp3_like_one_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    for client in [&mut via_proxy, &mut direct] {
        let hello = client.request(&[b"HELLO", b"3"]).await;
        assert_eq!(hello.first(), Some(&b'%'));
    }
    let body = "redis.setresp(3); redis.call('HSET', KEYS[1], 'f', ARGV[1]); \
                return {redis.call('HGETALL', KEYS[1]), {double = 1.5}, false}";
    let sha = load_both(&mut via_proxy, &mut direct, &standalone, body).await;
    let key = cluster.key_for_node(cluster.primaries()[2], "resp3");
    let key = key.as_bytes();
    let owner = cluster.owner_of(cluster.keyslot(key));
    flush_scripts(&cluster, owner);
    common::assert_same_replies(
        &mut via_proxy,
        &mut direct,
        &[
            vec![&b"EVALSHA"[..], sha.as_bytes(), b"1", key, b"v"],
            vec![&b"EVALSHA"[..], sha.as_bytes(), b"1", key, b"w"],
        ],
    )
    .await;
    assert!(node_has_script(&cluster, owner, &sha));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evalsha_inside_multi_runs_on_a_node_that_forgot_the_script() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let sha = load_both(&mut via_proxy, &mut direct, &standalone, SET_GET).await;
    let key = cluster.key_for_node(cluster.primaries()[0], "tx");
    let key = key.as_bytes();
    let owner = cluster.owner_of(cluster.keyslot(key));
    // A plain transaction (shared connection) and a watched one (dedicated connection).
    for watched in [false, true] {
        flush_scripts(&cluster, owner);
        assert!(!node_has_script(&cluster, owner, &sha));
        let mut commands: Vec<Vec<&[u8]>> = Vec::new();
        if watched {
            commands.push(vec![b"WATCH", key]);
        }
        commands.extend([
            vec![&b"MULTI"[..]],
            vec![b"SET", key, b"before"],
            vec![b"EVALSHA", sha.as_bytes(), b"1", key, b"after"],
            vec![b"GET", key],
            vec![b"EXEC"],
        ]);
        // The EXEC reply holds the script's result, not NOSCRIPT, as on a node that has it.
        common::assert_same_replies(&mut via_proxy, &mut direct, &commands).await;
        assert!(node_has_script(&cluster, owner, &sha), "watched: {watched}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_replica_gets_the_script_from_the_proxy() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| c.session.retry_deadline_ms = 10_000).await;
    let mut c = proxy.sync_client();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SET_GET)
        .query(&mut c)
        .unwrap();
    let primary = cluster.primaries()[0];
    let key = cluster.key_for_node(primary, "failover");
    let replica = cluster.replica_of(primary);
    // Redis 7 does not replicate SCRIPT LOAD; make sure the replica lacks the script whatever
    // the version.
    flush_scripts(&cluster, replica);
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut cluster.conn(replica))
        .unwrap();
    common::wait_until(Duration::from_secs(10), "the replica took over", || {
        cluster.owner_of(cluster.keyslot(key.as_bytes())).id == replica.id
    });
    let got: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg(&key)
        .arg("after")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, "after");
    assert!(node_has_script(&cluster, replica, &sha));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reads_and_migrating_slots_reload_the_script_where_it_runs() {
    let cluster = TestCluster::start(3, 1);
    // One redirect allowed: the ASK. A reload that lost ASKING would need a second (the target
    // would answer MOVED), and fail.
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.read_policy = ReadPolicy::Replica;
        c.session.max_redirects = 1;
    })
    .await;
    let mut c = proxy.sync_client();
    let read = "return redis.call('GET', KEYS[1])";
    let read_sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(read)
        .query(&mut c)
        .unwrap();
    let primary = cluster.primaries()[0];
    let key = cluster.key_for_node(primary, "ro");
    let _: () = redis::cmd("SET").arg(&key).arg("x").query(&mut c).unwrap();
    let replica = cluster.replica_of(primary);
    flush_scripts(&cluster, replica);
    // EVALSHA_RO goes to the replica (read_policy replica), which lacks the script.
    common::wait_until(Duration::from_secs(10), "the replica has the key", || {
        redis::cmd("EVALSHA_RO")
            .arg(&read_sha)
            .arg(1)
            .arg(&key)
            .query::<Option<String>>(&mut c)
            .unwrap()
            .is_some()
    });
    assert!(node_has_script(&cluster, replica, &read_sha));

    // A slot being migrated: a missing key is served by the target after ASK, and the target
    // lacks the script, so ASKING must still come right before the command.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SET_GET)
        .query(&mut c)
        .unwrap();
    let to = cluster.primaries()[1];
    let slot = cluster.keyslot(key.as_bytes());
    let moving = cluster.key_in_slot(slot, "moving");
    flush_scripts(&cluster, to);
    cluster.begin_migration(slot, primary, to);
    let got: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg(&moving)
        .arg("there")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, "there");
    assert!(node_has_script(&cluster, to, &sha));
    let asked: Option<String> = redis::pipe()
        .cmd("ASKING")
        .ignore()
        .cmd("GET")
        .arg(&moving)
        .query::<(Option<String>,)>(&mut cluster.conn(to))
        .unwrap()
        .0;
    assert_eq!(asked.as_deref(), Some("there"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_load_everywhere_and_fcall_routes_by_keys() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    // One function per library, so FUNCTION LIST's order is the same on every server.
    let kv = "#!lua name=kv\nredis.register_function('kv_set', function(keys, args) \
              redis.call('SET', keys[1], args[1]); return redis.call('GET', keys[1]) end)";
    let ro = "#!lua name=ro\nredis.register_function{function_name = 'kv_get', \
              callback = function(keys) return redis.call('GET', keys[1]) end, \
              flags = {'no-writes'}}";
    let misc = "#!lua name=misc\nredis.register_function('pong', function() return 'pong' end)";
    let k: Vec<String> = cluster
        .primaries()
        .iter()
        .map(|p| cluster.key_for_node(p, "fn"))
        .collect();
    let k: Vec<&[u8]> = k.iter().map(|k| k.as_bytes()).collect();
    let mut commands: Vec<Vec<&[u8]>> = vec![
        vec![&b"FUNCTION"[..], b"LOAD", kv.as_bytes()],
        vec![&b"FUNCTION"[..], b"LOAD", kv.as_bytes()],
        vec![&b"FUNCTION"[..], b"LOAD", b"REPLACE", kv.as_bytes()],
        vec![&b"FUNCTION"[..], b"LOAD", ro.as_bytes()],
        vec![
            &b"FUNCTION"[..],
            b"LOAD",
            b"#!lua name=bad\nthis is not lua",
        ],
        vec![&b"FUNCTION"[..], b"LOAD", misc.as_bytes()],
        vec![&b"FCALL"[..], b"pong", b"0"],
        vec![&b"FCALL_RO"[..], b"kv_set", b"1", k[0], b"x"],
        vec![&b"FCALL"[..], b"nope", b"0"],
        vec![&b"FUNCTION"[..], b"LIST", b"LIBRARYNAME", b"kv"],
        vec![
            &b"FUNCTION"[..],
            b"LIST",
            b"WITHCODE",
            b"LIBRARYNAME",
            b"ro",
        ],
    ];
    for key in &k {
        commands.push(vec![&b"FCALL"[..], b"kv_set", b"1", key, b"v"]);
        commands.push(vec![&b"FCALL_RO"[..], b"kv_get", b"1", key]);
    }
    commands.extend([
        vec![&b"FUNCTION"[..], b"STATS"],
        vec![&b"FUNCTION"[..], b"DELETE", b"misc"],
        vec![&b"FUNCTION"[..], b"DELETE", b"misc"],
        vec![&b"FUNCTION"[..], b"STATS"],
        vec![&b"FCALL"[..], b"pong", b"0"],
        vec![&b"FUNCTION"[..], b"HELP"],
    ]);
    common::assert_same_replies(&mut via_proxy, &mut direct, &commands).await;
    assert_eq!(
        via_proxy
            .request(&[b"FCALL", b"kv_set", b"2", k[0], k[1], b"v"])
            .await,
        CROSSSLOT
    );
    // Every primary has the libraries.
    for primary in cluster.primaries() {
        let list: Vec<redis::Value> = redis::cmd("FUNCTION")
            .arg("LIST")
            .query(&mut cluster.conn(primary))
            .unwrap();
        assert_eq!(list.len(), 2, "{}", primary.addr);
    }

    // A library one primary lacks is not listed: FCALL could land there. (The standalone
    // server loses it too, for the comparison.)
    let delete_ro = redis::cmd("FUNCTION").arg("DELETE").arg("ro").clone();
    let _: () = delete_ro
        .query(&mut cluster.conn(cluster.primaries()[2]))
        .unwrap();
    let _: () = delete_ro.query(&mut standalone.conn()).unwrap();
    common::assert_same_replies(
        &mut via_proxy,
        &mut direct,
        &[vec![&b"FUNCTION"[..], b"LIST"]],
    )
    .await;
    // A delete that fails on one primary reports it, though the others did delete.
    assert_eq!(
        via_proxy.request(&[b"FUNCTION", b"DELETE", b"ro"]).await,
        b"-ERR Library not found\r\n"
    );

    // DUMP from one primary, RESTORE to all.
    let dump = via_proxy.request(&[b"FUNCTION", b"DUMP"]).await;
    let payload = {
        let newline = dump.iter().position(|&b| b == b'\n').unwrap();
        dump[newline + 1..dump.len() - 2].to_vec()
    };
    common::assert_same_replies(
        &mut via_proxy,
        &mut direct,
        &[
            vec![&b"FUNCTION"[..], b"FLUSH"],
            vec![&b"FUNCTION"[..], b"LIST"],
            vec![&b"FUNCTION"[..], b"RESTORE", &payload],
            vec![&b"FUNCTION"[..], b"LIST"],
        ],
    )
    .await;
    for primary in cluster.primaries() {
        let list: Vec<redis::Value> = redis::cmd("FUNCTION")
            .arg("LIST")
            .query(&mut cluster.conn(primary))
            .unwrap();
        assert_eq!(list.len(), 1, "{}", primary.addr);
    }
    for key in &k {
        assert_eq!(
            via_proxy
                .request(&[b"FCALL", b"kv_set", b"1", key, b"r"])
                .await,
            b"$1\r\nr\r\n"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_exists_says_1_for_a_script_slotproxy_would_load_where_missing() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let load: &[&[u8]] = &[b"SCRIPT", b"LOAD", b"return 'exists'"];
    let sha = direct.request(load).await;
    assert_eq!(via_proxy.request(load).await, sha);
    // One primary loses it (a restart, a promoted replica): EVALSHA through slotproxy still
    // runs it there, so it exists, as on the standalone server.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query::<()>(&mut cluster.conn(cluster.primaries()[1]))
        .unwrap();
    let sha = std::str::from_utf8(&sha)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let unknown = "0000000000000000000000000000000000000000";
    let upper = sha.to_ascii_uppercase();
    let exists: &[&[u8]] = &[
        b"SCRIPT",
        b"EXISTS",
        sha.as_bytes(),
        unknown.as_bytes(),
        upper.as_bytes(),
    ];
    let evalsha: &[&[u8]] = &[b"EVALSHA", sha.as_bytes(), b"1", b"{k}"];
    common::assert_same_replies(&mut via_proxy, &mut direct, &[exists, evalsha]).await;
}
