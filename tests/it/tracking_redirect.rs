//! `CLIENT TRACKING ... REDIRECT id` through the proxy, byte for byte as on a standalone
//! redis-server: invalidations reach the target client (a pub/sub message on
//! `__redis__:invalidate` for a RESP2 subscriber, a push for a RESP3 client), whatever worker
//! each client runs on, and a tracking client whose target left is told so.
//!
//! Each scenario runs once against the proxy and once against redis-server; client ids differ
//! between the two, so each transcript spells them as names (`<sub>`, `<gone>`...).

use std::time::Duration;

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy};

/// A transcript of replies, with client ids replaced by names.
struct Transcript {
    lines: Vec<String>,
    ids: Vec<(String, String)>,
}

impl Transcript {
    fn new() -> Transcript {
        Transcript {
            lines: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Names client `id` in what is recorded from now on.
    fn name(&mut self, id: i64, name: &str) {
        // An integer frame (at the start of a line: not a key that ends in `:<digits>`).
        self.ids
            .push((format!("\n:{id}\r\n"), format!("\n:<{name}>\r\n")));
        self.ids.push((format!(" {id}"), format!(" <{name}>")));
        self.ids
            .push((format!("redir={id}"), format!("redir=<{name}>")));
    }

    fn record(&mut self, what: &str, reply: &[u8]) {
        let mut text = format!("\n{}", String::from_utf8_lossy(reply));
        for (id, name) in &self.ids {
            text = text.replace(id.as_str(), name);
        }
        self.lines.push(format!("{what}: {}", &text[1..]));
    }
}

async fn client_id(client: &mut RawClient) -> i64 {
    let reply = client.request(&[b"CLIENT", b"ID"]).await;
    std::str::from_utf8(&reply[1..reply.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

/// `args` with `{id}` replaced by `id`.
fn with_id(line: &str, id: i64) -> Vec<Vec<u8>> {
    line.replace("{id}", &id.to_string())
        .split(' ')
        .map(|a| a.as_bytes().to_vec())
        .collect()
}

async fn request(client: &mut RawClient, args: &[Vec<u8>]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    client.request(&args).await
}

/// A RESP2 subscriber on `__redis__:invalidate` and tracking clients redirecting to it.
async fn resp2_subscriber(addr: &str, keys: &Keys) -> Vec<String> {
    let mut t = Transcript::new();
    let mut sub = RawClient::connect(addr).await;
    let id = client_id(&mut sub).await;
    t.name(id, "sub");
    let reply = sub.request(&[b"SUBSCRIBE", b"__redis__:invalidate"]).await;
    t.record("subscribe", &reply);
    let mut tracker = RawClient::connect(addr).await;
    let mut writer = RawClient::connect(addr).await;
    for line in [
        "CLIENT TRACKING ON REDIRECT 987654321",
        "CLIENT TRACKING ON REDIRECT 0",
        "CLIENT TRACKING ON REDIRECT abc",
        "CLIENT TRACKING ON REDIRECT {id} REDIRECT {id}",
        "CLIENT TRACKING ON FOO REDIRECT 987654321",
        "CLIENT TRACKING ON REDIRECT 987654321 FOO",
        "CLIENT TRACKING OFF REDIRECT 987654321",
        "CLIENT TRACKING ON REDIRECT {id} PREFIX a",
        "CLIENT GETREDIR",
        "CLIENT TRACKING ON REDIRECT {id}",
        "CLIENT GETREDIR",
        "CLIENT TRACKINGINFO",
    ] {
        let reply = request(&mut tracker, &with_id(line, id)).await;
        t.record(line, &reply);
    }
    let reply = tracker.request(&[b"GET", keys.a.as_bytes()]).await;
    t.record("GET a", &reply);
    let reply = tracker
        .request(&[b"MGET", keys.b.as_bytes(), keys.c.as_bytes()])
        .await;
    t.record("MGET b c", &reply);
    for key in [&keys.a, &keys.c] {
        let reply = writer.request(&[b"SET", key.as_bytes(), b"v"]).await;
        t.record("SET", &reply);
        let message = sub.read_reply().await;
        t.record("message", &message);
    }

    // Broadcast with prefixes, redirected to the same subscriber.
    let mut bcast = RawClient::connect(addr).await;
    let on = "CLIENT TRACKING ON BCAST PREFIX user: PREFIX {o} REDIRECT {id}";
    let reply = request(&mut bcast, &with_id(on, id)).await;
    t.record(on, &reply);
    let reply = bcast.request(&[b"CLIENT", b"TRACKINGINFO"]).await;
    t.record("bcast TRACKINGINFO", &reply);
    for key in ["other", "user:1", "nouser", "{o}x"] {
        let reply = writer.request(&[b"SET", key.as_bytes(), b"v"]).await;
        t.record("SET", &reply);
        if key != "other" && key != "nouser" {
            let message = sub.read_reply().await;
            t.record(key, &message);
        }
    }
    // Tracking off: nothing more for this client; the subscriber still works.
    let reply = tracker.request(&[b"CLIENT", b"TRACKING", b"OFF"]).await;
    t.record("OFF", &reply);
    let reply = tracker.request(&[b"CLIENT", b"GETREDIR"]).await;
    t.record("GETREDIR off", &reply);
    let reply = sub.request(&[b"PING"]).await;
    t.record("sub PING", &reply);
    t.lines
}

/// Keys on different primaries of the cluster (any keys on a standalone redis).
struct Keys {
    a: String,
    b: String,
    c: String,
}

fn keys(cluster: &TestCluster) -> Keys {
    let primaries = cluster.primaries();
    Keys {
        a: cluster.key_for_node(primaries[0], "redir"),
        b: cluster.key_for_node(primaries[1], "redir"),
        c: cluster.key_for_node(primaries[2], "redir"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resp2_subscriber_gets_redirected_invalidations_like_redis() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let keys = keys(&cluster);
    let got = resp2_subscriber(&proxy.addr.to_string(), &keys).await;
    let want = resp2_subscriber(&standalone.addr, &keys).await;
    assert_eq!(got, want);
}

/// Waits until client `id` is no longer listed.
fn wait_gone(addr: &str, id: i64) {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let mut conn = client.get_connection().unwrap();
    common::wait_until(Duration::from_secs(5), "the client is gone", || {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("ID")
            .arg(id)
            .query(&mut conn)
            .unwrap();
        list.is_empty()
    });
}

/// A new RESP2 client tracking with `REDIRECT target` reads `key`, then `writer` changes it.
async fn read_then_change(
    t: &mut Transcript,
    addr: &str,
    target: i64,
    writer: &mut RawClient,
    key: &str,
) -> RawClient {
    let mut tracker = RawClient::connect(addr).await;
    let on = with_id("CLIENT TRACKING ON REDIRECT {id}", target);
    let reply = request(&mut tracker, &on).await;
    t.record("ON", &reply);
    let reply = tracker.request(&[b"GET", key.as_bytes()]).await;
    t.record("GET", &reply);
    let reply = writer.request(&[b"SET", key.as_bytes(), b"1"]).await;
    t.record("SET", &reply);
    tracker
}

/// A RESP3 target, a RESP2 target without subscriptions, and a target that leaves.
async fn targets(addr: &str, keys: &Keys) -> Vec<String> {
    let mut t = Transcript::new();
    let mut writer = RawClient::connect(addr).await;

    // RESP2 tracking client, RESP3 target: a push, with the tracking client's null for a
    // flush (checked last, below).
    let mut resp3 = RawClient::connect(addr).await;
    let hello = resp3.request(&[b"HELLO", b"3"]).await;
    assert!(hello.starts_with(b"%7\r\n"));
    let resp3_id = client_id(&mut resp3).await;
    t.name(resp3_id, "resp3");
    let _tracker = read_then_change(&mut t, addr, resp3_id, &mut writer, &keys.a).await;
    let push = resp3.read_reply().await;
    t.record("resp3 push", &push);

    // A RESP2 target with no subscription gets nothing: its next frame is its PING's reply.
    let mut plain = RawClient::connect(addr).await;
    let plain_id = client_id(&mut plain).await;
    t.name(plain_id, "plain");
    let _tracker2 = read_then_change(&mut t, addr, plain_id, &mut writer, &keys.b).await;
    let reply = plain.request(&[b"PING"]).await;
    t.record("plain PING", &reply);

    // A RESP3 tracking client whose target leaves: told at each invalidation.
    let mut gone = RawClient::connect(addr).await;
    let gone_id = client_id(&mut gone).await;
    t.name(gone_id, "gone");
    let mut orphan = RawClient::connect(addr).await;
    let hello = orphan.request(&[b"HELLO", b"3"]).await;
    assert!(hello.starts_with(b"%7\r\n"));
    let on = "CLIENT TRACKING ON BCAST PREFIX {o} REDIRECT {id}";
    let reply = request(&mut orphan, &with_id(on, gone_id)).await;
    t.record("ON orphan", &reply);
    drop(gone);
    wait_gone(addr, gone_id);
    for n in ["1", "2"] {
        let reply = writer.request(&[b"SET", b"{o}k", n.as_bytes()]).await;
        t.record("SET", &reply);
        let push = orphan.read_reply().await;
        t.record("orphan push", &push);
    }
    for command in [&b"TRACKINGINFO"[..], b"GETREDIR"] {
        let reply = orphan.request(&[b"CLIENT", command]).await;
        t.record("orphan", &reply);
    }
    let reply = orphan.request(&[b"CLIENT", b"INFO"]).await;
    let info = String::from_utf8_lossy(&reply).into_owned();
    let flags = info.split(' ').find(|f| f.starts_with("flags=")).unwrap();
    let redir = info.split(' ').find(|f| f.starts_with("redir=")).unwrap();
    t.record("orphan CLIENT INFO", format!("{flags} {redir}").as_bytes());

    // FLUSHALL: the RESP3 target hears "everything" in the RESP2 tracking client's null.
    let reply = writer.request(&[b"FLUSHALL"]).await;
    t.record("FLUSHALL", &reply);
    let push = resp3.read_reply().await;
    t.record("resp3 flush", &push);
    t.lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_targets_plain_targets_and_gone_targets_behave_like_redis() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let keys = keys(&cluster);
    let got = targets(&proxy.addr.to_string(), &keys).await;
    let want = targets(&standalone.addr, &keys).await;
    assert_eq!(got, want);
}
