//! Keyed commands of every data type reach the right primary through the proxy, with a real
//! client (the `redis` crate), on keys spread over all three primaries.

use crate::common::{self, TestCluster, TestProxy};
use redis::{AsyncCommands, Value};

/// One key per primary, so every test touches all three shards.
fn keys_on_every_primary(cluster: &TestCluster, prefix: &str) -> Vec<String> {
    cluster
        .primaries()
        .iter()
        .map(|node| cluster.key_for_node(node, prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_data_type_works_on_keys_across_all_primaries() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut c = proxy.client().await;

    for (i, key) in keys_on_every_primary(&cluster, "str").iter().enumerate() {
        let _: () = c.set(key, format!("v{i}")).await.unwrap();
        assert_eq!(c.get::<_, String>(key).await.unwrap(), format!("v{i}"));
        assert_eq!(c.append::<_, _, i64>(key, "!").await.unwrap(), 3);
        assert_eq!(c.strlen::<_, i64>(key).await.unwrap(), 3);
        assert_eq!(
            c.getrange::<_, String>(key, 0, 1).await.unwrap(),
            format!("v{i}")
        );
        // The value landed on the node the cluster says owns the key.
        let owner = cluster.owner_of(cluster.keyslot(key.as_bytes()));
        let direct: String = redis::cmd("GET")
            .arg(key)
            .query(&mut cluster.conn(owner))
            .unwrap();
        assert_eq!(direct, format!("v{i}!"));
    }
    for key in keys_on_every_primary(&cluster, "counter") {
        assert_eq!(c.incr::<_, _, i64>(&key, 5).await.unwrap(), 5);
        assert_eq!(c.decr::<_, _, i64>(&key, 2).await.unwrap(), 3);
        let f: f64 = redis::cmd("INCRBYFLOAT")
            .arg(&key)
            .arg(0.5)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(f, 3.5);
    }
    for key in keys_on_every_primary(&cluster, "hash") {
        let _: () = c
            .hset_multiple(&key, &[("a", "1"), ("b", "2")])
            .await
            .unwrap();
        let all: std::collections::HashMap<String, String> = c.hgetall(&key).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(c.hincr::<_, _, _, i64>(&key, "a", 10).await.unwrap(), 11);
        assert_eq!(c.hdel::<_, _, i64>(&key, "b").await.unwrap(), 1);
        assert!(c.hexists::<_, _, bool>(&key, "a").await.unwrap());
        assert_eq!(c.hlen::<_, i64>(&key).await.unwrap(), 1);
    }
    for key in keys_on_every_primary(&cluster, "list") {
        assert_eq!(
            c.rpush::<_, _, i64>(&key, &["a", "b", "c"]).await.unwrap(),
            3
        );
        assert_eq!(c.lpush::<_, _, i64>(&key, "z").await.unwrap(), 4);
        assert_eq!(
            c.lrange::<_, Vec<String>>(&key, 0, -1).await.unwrap(),
            ["z", "a", "b", "c"]
        );
        assert_eq!(c.lpop::<_, String>(&key, None).await.unwrap(), "z");
        assert_eq!(c.llen::<_, i64>(&key).await.unwrap(), 3);
    }
    for key in keys_on_every_primary(&cluster, "set") {
        assert_eq!(
            c.sadd::<_, _, i64>(&key, &["x", "y", "x"]).await.unwrap(),
            2
        );
        assert!(c.sismember::<_, _, bool>(&key, "y").await.unwrap());
        let mut members: Vec<String> = c.smembers(&key).await.unwrap();
        members.sort();
        assert_eq!(members, ["x", "y"]);
        assert_eq!(c.scard::<_, i64>(&key).await.unwrap(), 2);
    }
    for key in keys_on_every_primary(&cluster, "zset") {
        assert_eq!(
            c.zadd_multiple::<_, _, _, i64>(&key, &[(1, "a"), (2, "b"), (3, "c")])
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            c.zrange::<_, Vec<String>>(&key, 0, 1).await.unwrap(),
            ["a", "b"]
        );
        assert_eq!(c.zscore::<_, _, f64>(&key, "c").await.unwrap(), 3.0);
        assert_eq!(c.zrank::<_, _, i64>(&key, "b").await.unwrap(), 1);
        let top: Vec<(String, f64)> = c.zrevrange_withscores(&key, 0, 0).await.unwrap();
        assert_eq!(top, [("c".to_string(), 3.0)]);
    }
    for key in keys_on_every_primary(&cluster, "stream") {
        let id: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("f")
            .arg("v")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(id.contains('-'), "{id}");
        let len: i64 = redis::cmd("XLEN")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(len, 1);
        let read: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(
            matches!(read, Value::Array(ref entries) if entries.len() == 1),
            "{read:?}"
        );
        let group: String = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("g")
            .arg("0")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(group, "OK");
    }
    for key in keys_on_every_primary(&cluster, "bits") {
        assert!(!c.setbit::<_, bool>(&key, 7, true).await.unwrap());
        assert!(c.getbit::<_, bool>(&key, 7).await.unwrap());
        assert_eq!(c.bitcount::<_, i64>(&key).await.unwrap(), 1);
        let pos: i64 = redis::cmd("BITPOS")
            .arg(&key)
            .arg(1)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(pos, 7);
    }
    for key in keys_on_every_primary(&cluster, "hll") {
        assert_eq!(
            c.pfadd::<_, _, i64>(&key, &["a", "b", "c", "a"])
                .await
                .unwrap(),
            1
        );
        assert_eq!(c.pfcount::<_, i64>(&key).await.unwrap(), 3);
    }
    for key in keys_on_every_primary(&cluster, "geo") {
        let added: i64 = redis::cmd("GEOADD")
            .arg(&key)
            .arg(&[
                "13.361389",
                "38.115556",
                "Palermo",
                "15.087269",
                "37.502669",
                "Catania",
            ])
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(added, 2);
        let dist: f64 = redis::cmd("GEODIST")
            .arg(&key)
            .arg("Palermo")
            .arg("Catania")
            .arg("km")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!((dist - 166.27).abs() < 0.1, "{dist}");
        let near: Vec<String> = redis::cmd("GEOSEARCH")
            .arg(&key)
            .arg(&["FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC"])
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(near, ["Catania", "Palermo"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_and_key_commands_work() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut c = proxy.client().await;
    for key in keys_on_every_primary(&cluster, "ttl") {
        let _: () = c.set_ex(&key, "v", 100).await.unwrap();
        let ttl: i64 = c.ttl(&key).await.unwrap();
        assert!((90..=100).contains(&ttl), "{ttl}");
        assert!(c.persist::<_, bool>(&key).await.unwrap());
        assert_eq!(c.ttl::<_, i64>(&key).await.unwrap(), -1);
        assert!(c.pexpire::<_, bool>(&key, 50_000).await.unwrap());
        let pttl: i64 = c.pttl(&key).await.unwrap();
        assert!((40_000..=50_000).contains(&pttl), "{pttl}");
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(kind, "string");
        assert_eq!(c.exists::<_, i64>(&key).await.unwrap(), 1);
        assert_eq!(c.del::<_, i64>(&key).await.unwrap(), 1);
        assert_eq!(c.ttl::<_, i64>(&key).await.unwrap(), -2);
    }
    // A key that expires is gone when read through the proxy.
    let key = cluster.key_for_node(cluster.primaries()[1], "short");
    let _: () = c.pset_ex(&key, "v", 30).await.unwrap();
    common::wait_until(std::time::Duration::from_secs(5), "the key expired", || {
        !redis::cmd("EXISTS")
            .arg(&key)
            .query::<bool>(&mut cluster.conn(cluster.primaries()[1]))
            .unwrap()
    });
    assert_eq!(c.get::<_, Option<String>>(&key).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_slot_multi_key_commands_route_and_cross_slot_ones_get_crossslot() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut c = proxy.client().await;
    let _: () = c.mset(&[("{u}:a", "1"), ("{u}:b", "2")]).await.unwrap();
    let got: Vec<String> = c.mget(&["{u}:a", "{u}:b"]).await.unwrap();
    assert_eq!(got, ["1", "2"]);
    let _: () = c.rename("{u}:a", "{u}:c").await.unwrap();
    assert_eq!(c.get::<_, String>("{u}:c").await.unwrap(), "1");
    let moved: i64 = redis::cmd("EVAL")
        .arg("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        .arg(1)
        .arg("{u}:n")
        .arg(7)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(moved, 7);
    let keyless: i64 = redis::cmd("EVAL")
        .arg("return 42")
        .arg(0)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(keyless, 42);

    // Two keys on different primaries, for commands that need them on one node: redis' own
    // CROSSSLOT error, connection kept.
    let keys = keys_on_every_primary(&cluster, "x");
    for (cmd, rest) in [
        ("SINTERSTORE", &[][..]),
        ("SMOVE", &["m"][..]),
        ("LMOVE", &["LEFT", "RIGHT"][..]),
    ] {
        let err = redis::cmd(cmd)
            .arg(&keys[0])
            .arg(&keys[1])
            .arg(rest)
            .query_async::<Value>(&mut c)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("CROSSSLOT"), "{cmd}: {err}");
        assert!(
            err.to_string()
                .contains("Keys in request don't hash to the same slot"),
            "{err}"
        );
    }
    let err = c.rename::<_, _, ()>(&keys[0], &keys[2]).await.unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"));
    assert_eq!(
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .unwrap(),
        "PONG"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_local_commands_answer_like_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut c = proxy.client().await;

    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    let echoed: String = redis::cmd("PING")
        .arg("hi")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(echoed, "hi");
    let echoed: Vec<u8> = redis::cmd("ECHO")
        .arg(&b"\x00bin\xff"[..])
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(echoed, b"\x00bin\xff");
    let ok: String = redis::cmd("SELECT")
        .arg(0)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(ok, "OK");
    let err = redis::cmd("SELECT")
        .arg(1)
        .query_async::<String>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("SELECT is not allowed in cluster mode"),
        "{err}"
    );
    let err = redis::cmd("SELECT")
        .arg("x")
        .query_async::<String>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range"),
        "{err}"
    );

    let none: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(none, None);
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("app-1")
        .query_async(&mut c)
        .await
        .unwrap();
    let name: String = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(name, "app-1");
    let err = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("a b")
        .query_async::<()>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Client names cannot contain spaces"),
        "{err}"
    );
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut other = proxy.client().await;
    let other_id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut other)
        .await
        .unwrap();
    assert!(id > 0 && other_id > 0 && id != other_id, "{id} {other_id}");
    let _: () = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("mylib")
        .query_async(&mut c)
        .await
        .unwrap();
    let err = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("color")
        .arg("x")
        .query_async::<()>(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Unrecognized option 'color'"),
        "{err}"
    );

    let count: i64 = redis::cmd("COMMAND")
        .arg("COUNT")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(count > 200, "{count}");
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        matches!(info, Value::Array(ref rows) if rows.len() == 1),
        "{info:?}"
    );
    let time: Vec<String> = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let secs: u64 = time[0].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs.abs_diff(now) < 5, "{secs} vs {now}");
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("foo")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(slot, i64::from(cluster.keyslot(b"foo")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_command_and_keep_the_connection() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut raw = proxy.raw_client().await;
    let cases: &[(&[&[u8]], &str)] = &[
        (
            &[b"NOSUCH", b"a", b"b"],
            "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            &[b"GET"],
            "-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &[b"CLIENT", b"SETNAME"],
            "-ERR wrong number of arguments for 'client|setname' command\r\n",
        ),
        (
            &[b"CLIENT", b"FROB"],
            "-ERR unknown subcommand 'FROB'. Try CLIENT HELP.\r\n",
        ),
        (
            &[b"SHUTDOWN"],
            "-ERR 'SHUTDOWN' is not allowed through slotproxy unless its configuration lists it \
             in session.allowed_admin_commands\r\n",
        ),
        (&[b"GET", b"still-open"], "$-1\r\n"),
    ];
    for (args, want) in cases {
        let got = raw.request(args).await;
        assert_eq!(String::from_utf8_lossy(&got), *want, "{args:?}");
    }
    // Errors of the node itself come through unchanged.
    let key = cluster.key_for_node(cluster.primaries()[2], "wrongtype");
    assert_eq!(
        raw.request(&[b"SET", key.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );
    let got = raw.request(&[b"LPUSH", key.as_bytes(), b"x"]).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_3_gives_resp3_replies_like_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = common::StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let key = cluster.key_for_node(cluster.primaries()[0], "r3");
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = common::RawClient::connect(standalone.addr.as_str()).await;

    let hello = via_proxy
        .request(&[b"HELLO", b"3", b"SETNAME", b"r3client"])
        .await;
    assert!(
        hello.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    assert!(
        hello.windows(11).any(|w| w == b"$5\r\nproto\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    assert!(
        hello.windows(6).any(|w| w == b":3\r\n$2"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    direct.request(&[b"HELLO", b"3"]).await;

    // The same sequence on both; replies must be byte-identical RESP3.
    let sequence: &[&[&[u8]]] = &[
        &[b"DEL", key.as_bytes()],
        &[b"HSET", key.as_bytes(), b"f", b"v"],
        &[b"HGETALL", key.as_bytes()],
        &[b"GET", b"{r3}nokey"],
        &[b"ZADD", b"{r3}z", b"1.5", b"m"],
        &[b"ZSCORE", b"{r3}z", b"m"],
        &[b"SADD", b"{r3}s", b"a"],
        &[b"SMEMBERS", b"{r3}s"],
        &[b"EXISTS", b"{r3}s"],
        &[b"CLIENT", b"GETNAME"],
        &[b"PING"],
    ];
    for args in sequence {
        let got = via_proxy.request(args).await;
        let want = direct.request(args).await;
        if args[0] == b"CLIENT" {
            assert_eq!(got, b"$8\r\nr3client\r\n");
            continue;
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{args:?}"
        );
    }
    // Back to RESP2 on the same connection.
    via_proxy.request(&[b"HELLO", b"2"]).await;
    assert_eq!(
        via_proxy.request(&[b"HGETALL", key.as_bytes()]).await,
        b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(via_proxy.request(&[b"GET", b"{r3}nokey"]).await, b"$-1\r\n");
    assert_eq!(
        via_proxy.request(&[b"HELLO", b"4"]).await,
        b"-NOPROTO unsupported protocol version\r\n"
    );
}
