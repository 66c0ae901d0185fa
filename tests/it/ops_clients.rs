//! slotproxy's own clients: `CLIENT LIST` shows every session whatever worker thread it runs
//! on, `CLIENT KILL` and `CLIENT UNBLOCK` act on them with redis-server's replies, `ACL DELUSER`
//! closes a deleted user's clients at once.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy, wait_until};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn words(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

/// The body of a bulk (`$`) string reply.
fn string_body(reply: &[u8]) -> String {
    assert_eq!(reply[0], b'$', "not a bulk string: {}", text(reply));
    let newline = reply.iter().position(|&b| b == b'\n').unwrap();
    text(&reply[newline + 1..reply.len() - 2])
}

/// One `CLIENT LIST` line as `field -> value`.
fn fields(line: &str) -> std::collections::HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `CLIENT LIST` through `client`, as one field map per line.
async fn client_list(
    client: &mut RawClient,
    args: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let command = format!("CLIENT LIST{args}");
    let body = string_body(&client.request(&words(&command)).await);
    body.lines().map(fields).collect()
}

/// The line named `name` in a `CLIENT LIST`.
fn named<'a>(
    list: &'a [std::collections::HashMap<String, String>],
    name: &str,
) -> Option<&'a std::collections::HashMap<String, String>> {
    list.iter().find(|l| l["name"] == name)
}

async fn proxy_with_alice(cluster: &TestCluster) -> TestProxy {
    TestProxy::start_with(cluster, |config| {
        config.auth.users = vec!["alice on >a ~* &* +@all".to_string()];
    })
    .await
}

/// A client named `name` (and logged in as `alice` when asked), with its id.
async fn named_client(proxy: &TestProxy, name: &str, alice: bool) -> (RawClient, String) {
    let mut client = proxy.raw_client().await;
    if alice {
        assert_eq!(client.request(&words("AUTH alice a")).await, b"+OK\r\n");
    }
    let set = format!("CLIENT SETNAME {name}");
    assert_eq!(client.request(&words(&set)).await, b"+OK\r\n");
    let id = text(&client.request(&words("CLIENT ID")).await);
    (client, id.trim_start_matches(':').trim_end().to_string())
}

/// Sends PING on `client` and expects the connection closed without a reply.
async fn assert_closed(client: &mut RawClient, what: &str) {
    client.send(&common::encode_command(&words("PING"))).await;
    assert_eq!(client.read_until_closed().await, b"", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_list_shows_every_client_on_every_worker() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_alice(&cluster).await;
    // Clients are spread round-robin over the proxy's two workers: three land on both.
    let (mut one, one_id) = named_client(&proxy, "one", false).await;
    let (mut two, two_id) = named_client(&proxy, "two", false).await;
    let (mut three, _) = named_client(&proxy, "three", true).await;
    assert_eq!(one.request(&words("SET ops:k v")).await, b"+OK\r\n");
    assert_eq!(two.request(&words("GET ops:k")).await, b"$1\r\nv\r\n");
    assert_eq!(three.request(&words("PING")).await, b"+PONG\r\n");

    wait_until(Duration::from_secs(5), "three clients listed", || {
        futures_lite_block(client_list(&mut one, "")).len() == 3
    });
    let list = client_list(&mut one, "").await;
    let ids: Vec<u64> = list.iter().map(|l| l["id"].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order: {ids:?}");
    let (a, b, c) = (
        named(&list, "one").unwrap(),
        named(&list, "two").unwrap(),
        named(&list, "three").unwrap(),
    );
    assert_eq!(
        (a["cmd"].as_str(), a["user"].as_str(), a["id"].as_str()),
        ("client|list", "default", one_id.as_str())
    );
    assert_eq!((b["cmd"].as_str(), b["user"].as_str()), ("get", "default"));
    assert_eq!((c["cmd"].as_str(), c["user"].as_str()), ("ping", "alice"));
    for line in [a, b, c] {
        assert_eq!(line["laddr"], proxy.addr.to_string());
        assert_eq!(line["flags"], "N");
        assert!(line["tot-net-in"].parse::<u64>().unwrap() > 0);
    }
    assert_eq!(b["tot-cmds"], "3", "SETNAME, ID, GET");

    // A subscriber is a pubsub client; TYPE and ID filter as redis does.
    assert_eq!(
        two.request(&words("SUBSCRIBE ops:ch")).await,
        b"*3\r\n$9\r\nsubscribe\r\n$6\r\nops:ch\r\n:1\r\n"
    );
    let pubsub = client_list(&mut one, " TYPE pubsub").await;
    assert_eq!(pubsub.len(), 1, "{pubsub:?}");
    assert_eq!(
        (pubsub[0]["name"].as_str(), pubsub[0]["flags"].as_str()),
        ("two", "P")
    );
    assert_eq!(pubsub[0]["sub"], "1");
    let normal = client_list(&mut one, " TYPE normal").await;
    assert_eq!(normal.len(), 2);
    let by_id = client_list(&mut one, &format!(" ID {two_id} 99999 {one_id} {two_id}")).await;
    let names: Vec<&str> = by_id.iter().map(|l| l["name"].as_str()).collect();
    assert_eq!(
        names,
        ["two", "one", "two"],
        "in the order asked, repeats too"
    );

    // INFO counts the same clients.
    let info = string_body(&one.request(&words("INFO clients")).await);
    assert!(info.contains("connected_clients:3\r\n"), "{info}");
    assert!(info.contains("blocked_clients:0\r\n"), "{info}");
}

/// As redis-server's cron shrinks idle clients' query buffers: a session keeps its buffers
/// between requests, and gives them back once the client has been idle for 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_gives_back_its_buffers() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let (mut busy, _) = named_client(&proxy, "busy", false).await;
    let (mut watcher, _) = named_client(&proxy, "watcher", false).await;
    // 2,000 SETs in one write (about 200 KB): the session reads them in growing chunks.
    let value = [b'x'; 64];
    let burst: Vec<u8> = (0..2000)
        .flat_map(|i| common::encode_command(&[b"SET", format!("idle:{i}").as_bytes(), &value]))
        .collect();
    busy.send(&burst).await;
    for _ in 0..2000 {
        assert_eq!(busy.read_reply().await, b"+OK\r\n");
    }
    let tot_mem = |list: &[std::collections::HashMap<String, String>]| -> u64 {
        named(list, "busy").unwrap()["tot-mem"].parse().unwrap()
    };
    let held = tot_mem(&client_list(&mut watcher, "").await);
    assert!(
        held >= 16 * 1024,
        "right after the burst, the read buffer is kept: tot-mem={held}"
    );

    wait_until(
        Duration::from_secs(8),
        "the idle client's buffers given back",
        || tot_mem(&futures_lite_block(client_list(&mut watcher, ""))) == 0,
    );
    // It takes a new buffer when it sends again.
    assert_eq!(
        busy.request(&words("GET idle:1999")).await,
        [b"$64\r\n".as_slice(), &value, b"\r\n"].concat()
    );
}

/// Runs a future to completion from a synchronous `wait_until` condition.
fn futures_lite_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_filters_and_replies_as_redis() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_alice(&cluster).await;
    let standalone = StandaloneRedis::start();
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let (mut admin, admin_id) = named_client(&proxy, "admin", false).await;

    // Replies that name no client: byte for byte redis-server's.
    for line in [
        "CLIENT KILL 1.2.3.4:5",
        "CLIENT KILL ID 99999",
        "CLIENT KILL ID x",
        "CLIENT KILL ID 0",
        "CLIENT KILL ID 5 SKIPME",
        "CLIENT KILL SKIPME maybe",
        "CLIENT KILL TYPE foo",
        "CLIENT KILL TYPE master",
        "CLIENT KILL USER nobody",
        "CLIENT KILL MAXAGE 1",
        "CLIENT KILL ADDR 1.2.3.4:5 LADDR 1.2.3.4:6",
        "CLIENT KILL",
        "CLIENT UNBLOCK 99999",
        "CLIENT UNBLOCK x",
        "CLIENT UNBLOCK 99999 foo",
        "CLIENT UNBLOCK 99999 ERROR",
        "CLIENT UnBlock 1 TIMEOUT extra",
        "CLIENT KILL ID 1 ID 2",
        "CLIENT LIST ID 99998 99999",
    ] {
        assert_eq!(
            text(&admin.request(&words(line)).await),
            text(&direct.request(&words(line)).await),
            "{line}"
        );
    }

    // ID.
    let (mut by_id, id) = named_client(&proxy, "by-id", false).await;
    let kill = format!("CLIENT KILL ID {id}");
    assert_eq!(admin.request(&words(&kill)).await, b":1\r\n");
    assert_closed(&mut by_id, "killed by ID").await;
    assert_eq!(admin.request(&words(&kill)).await, b":0\r\n");

    // ADDR, and the old form (+OK, then no such client).
    let (mut by_addr, _) = named_client(&proxy, "by-addr", false).await;
    let addr = by_addr.local_addr().to_string();
    let kill = format!("CLIENT KILL ADDR {addr}");
    assert_eq!(admin.request(&words(&kill)).await, b":1\r\n");
    assert_closed(&mut by_addr, "killed by ADDR").await;
    let (mut old, _) = named_client(&proxy, "old", false).await;
    let kill = format!("CLIENT KILL {}", old.local_addr());
    assert_eq!(admin.request(&words(&kill)).await, b"+OK\r\n");
    assert_closed(&mut old, "killed by the old form").await;
    assert_eq!(
        admin.request(&words(&kill)).await,
        b"-ERR No such client\r\n"
    );

    // USER: every client of the user, none other.
    let (mut alice1, _) = named_client(&proxy, "alice1", true).await;
    let (mut alice2, _) = named_client(&proxy, "alice2", true).await;
    let (mut bystander, _) = named_client(&proxy, "bystander", false).await;
    assert_eq!(
        admin.request(&words("CLIENT KILL USER alice")).await,
        b":2\r\n"
    );
    assert_closed(&mut alice1, "alice1").await;
    assert_closed(&mut alice2, "alice2").await;
    assert_eq!(bystander.request(&words("PING")).await, b"+PONG\r\n");

    // TYPE pubsub.
    let (mut subscriber, _) = named_client(&proxy, "subscriber", false).await;
    subscriber.request(&words("SUBSCRIBE ops:kill")).await;
    assert_eq!(
        admin.request(&words("CLIENT KILL TYPE pubsub")).await,
        b":1\r\n"
    );
    assert_eq!(subscriber.read_until_closed().await, b"");

    // SKIPME: the caller is spared unless it says no; then it gets its reply, then closes.
    let own = format!("CLIENT KILL ID {admin_id}");
    assert_eq!(admin.request(&words(&own)).await, b":0\r\n");
    let laddr = format!("CLIENT KILL LADDR {} SKIPME yes", proxy.addr);
    assert_eq!(admin.request(&words(&laddr)).await, b":1\r\n");
    assert_closed(&mut bystander, "killed by LADDR").await;
    let own = format!("CLIENT KILL ID {admin_id} SKIPME no");
    assert_eq!(admin.request(&words(&own)).await, b":1\r\n");
    assert_eq!(admin.read_until_closed().await, b"");
}

/// `blocked_clients` in a node's own INFO.
fn node_blocked_clients(cluster: &TestCluster, node: &common::TestNode) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut cluster.conn(node))
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unblock_ends_a_blocked_pop_without_losing_data() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let node = cluster.primaries()[0];
    let list = cluster.key_for_node(node, "ops:queue");
    let (mut blocked, id) = named_client(&proxy, "blocked", false).await;
    let (mut admin, _) = named_client(&proxy, "admin", false).await;
    let blpop = common::encode_command(&[b"BLPOP", list.as_bytes(), b"0"]);
    let llen = [&b"LLEN"[..], list.as_bytes()];

    let unblock = |mode: &str| format!("CLIENT UNBLOCK {id}{mode}");
    for (mode, want) in [
        ("", &b"*-1\r\n"[..]),
        (" TIMEOUT", b"*-1\r\n"),
        (
            " ERROR",
            b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
    ] {
        blocked.send(&blpop).await;
        wait_until(
            Duration::from_secs(5),
            "the client shows as blocked",
            || {
                let list = futures_lite_block(client_list(&mut admin, ""));
                named(&list, "blocked").is_some_and(|l| l["flags"] == "b" && l["cmd"] == "blpop")
            },
        );
        let info = string_body(&admin.request(&words("INFO clients")).await);
        assert!(info.contains("blocked_clients:1\r\n"), "{info}");
        assert_eq!(
            admin.request(&words(&unblock(mode))).await,
            b":1\r\n",
            "{mode}"
        );
        assert_eq!(blocked.read_reply().await, want, "{mode}");
        assert_eq!(node_blocked_clients(&cluster, node), 0, "{mode}");
        // Nothing still pops on the node: a push after the unblock stays in the list.
        let push = [&b"LPUSH"[..], list.as_bytes(), b"kept"];
        assert_eq!(admin.request(&push).await, b":1\r\n");
        assert_eq!(admin.request(&llen).await, b":1\r\n", "{mode}");
        // The unblocked client's next BLPOP gets it.
        let got = blocked.request(&[b"BLPOP", list.as_bytes(), b"0"]).await;
        assert!(text(&got).ends_with("$4\r\nkept\r\n"), "{}", text(&got));
    }
    // The node itself ended each command (so it popped nothing after).
    assert_eq!(cluster.command_calls(node, "client|unblock"), 3);
    // Not blocked: 0.
    assert_eq!(admin.request(&words(&unblock(""))).await, b":0\r\n");

    // Nodes whose ACL refuses slotproxy CLIENT UNBLOCK: the session ends the command itself
    // by closing its node connection, and still nothing pops behind the client's back.
    for n in cluster.primaries() {
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("-client|unblock")
            .query(&mut cluster.conn(n))
            .unwrap();
    }
    for (mode, want) in [
        ("", &b"*-1\r\n"[..]),
        (
            " ERROR",
            b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
    ] {
        blocked.send(&blpop).await;
        wait_until(
            Duration::from_secs(5),
            "the client shows as blocked",
            || {
                let list = futures_lite_block(client_list(&mut admin, ""));
                named(&list, "blocked").is_some_and(|l| l["flags"] == "b")
            },
        );
        assert_eq!(admin.request(&words(&unblock(mode))).await, b":1\r\n");
        assert_eq!(blocked.read_reply().await, want, "{mode}");
        // The node learns of the closed connection on its own time (see clients/unblock.rs):
        // once it has, a push stays in the list.
        wait_until(Duration::from_secs(5), "the node unblocked", || {
            node_blocked_clients(&cluster, node) == 0
        });
        let push = [&b"LPUSH"[..], list.as_bytes(), b"kept"];
        assert_eq!(admin.request(&push).await, b":1\r\n");
        assert_eq!(admin.request(&llen).await, b":1\r\n", "{mode}");
        let got = blocked.request(&[b"BLPOP", list.as_bytes(), b"0"]).await;
        assert!(text(&got).ends_with("$4\r\nkept\r\n"), "{}", text(&got));
    }
}

/// The blocking command reaches the node on the client's own (new) connection and the unblock
/// on another, so the node may see the unblock first: as soon as slotproxy lists the client as
/// blocked, `CLIENT UNBLOCK` answers `1` and ends the command all the same. The node is kept
/// in `DEBUG SLEEP` while both are sent; when it wakes, it accepts the new connection in the
/// same pass as it runs the unblock, and reads the command from it only in the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unblock_right_after_the_blocking_command_still_ends_it() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    let node = cluster.primaries()[0];
    let list = cluster.key_for_node(node, "ops:race");
    let blpop = common::encode_command(&[b"BLPOP", list.as_bytes(), b"0"]);
    let (mut admin, _) = named_client(&proxy, "admin", false).await;
    for round in 0..5 {
        // A new client each round: its dedicated node connection is opened for the BLPOP.
        let name = format!("racer{round}");
        let (mut blocked, id) = named_client(&proxy, &name, false).await;
        let asked_before = cluster.command_calls(node, "client|unblock");
        let mut sleeper = std::net::TcpStream::connect(&node.addr).unwrap();
        sleeper
            .write_all(&common::encode_command(&[b"DEBUG", b"SLEEP", b"0.2"]))
            .unwrap();
        blocked.send(&blpop).await;
        let listed_by = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let clients = client_list(&mut admin, "").await;
            if named(&clients, &name).is_some_and(|l| l["flags"] == "b") {
                break;
            }
            assert!(
                std::time::Instant::now() < listed_by,
                "round {round}: not listed as blocked"
            );
        }
        let unblock = format!("CLIENT UNBLOCK {id}");
        assert_eq!(
            admin.request(&words(&unblock)).await,
            b":1\r\n",
            "round {round}"
        );
        assert_eq!(blocked.read_reply().await, b"*-1\r\n", "round {round}");
        // The node ended it, not slotproxy by dropping the connection (which can lose an
        // element the node pops meanwhile).
        assert!(
            cluster.command_calls(node, "client|unblock") > asked_before,
            "round {round}: the node was not asked"
        );
        let mut slept = [0; 5];
        sleeper.read_exact(&mut slept).unwrap();
        assert_eq!(&slept, b"+OK\r\n");
    }
}

/// Issue 9's drain: "blocked and subscribed clients are closed" (as redis-server closes its
/// clients on SHUTDOWN): no reply, and the node drops the command, so it pops nothing later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_client_is_closed_without_a_reply_on_drain() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let node = cluster.primaries()[0];
    let list = cluster.key_for_node(node, "ops:drain");
    let (mut blocked, _) = named_client(&proxy, "blocked", false).await;
    let (mut watcher, _) = named_client(&proxy, "watcher", false).await;
    blocked
        .send(&common::encode_command(&[b"BLPOP", list.as_bytes(), b"0"]))
        .await;
    wait_until(
        Duration::from_secs(5),
        "the client shows as blocked",
        || {
            let list = futures_lite_block(client_list(&mut watcher, ""));
            named(&list, "blocked").is_some_and(|l| l["flags"] == "b")
        },
    );
    proxy.shutdown().await.unwrap();
    assert_eq!(blocked.read_until_closed().await, b"", "closed, no reply");
    wait_until(Duration::from_secs(5), "the node unblocked", || {
        node_blocked_clients(&cluster, node) == 0
    });
    let mut direct = cluster.conn(node);
    let pushed: i64 = redis::cmd("LPUSH")
        .arg(&list)
        .arg("kept")
        .query(&mut direct)
        .unwrap();
    assert_eq!(pushed, 1);
    let len: i64 = redis::cmd("LLEN").arg(&list).query(&mut direct).unwrap();
    assert_eq!(len, 1, "nothing popped after the client was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_deluser_closes_the_users_clients_at_once() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_alice(&cluster).await;
    let (mut admin, _) = named_client(&proxy, "admin", false).await;
    let (mut alice1, _) = named_client(&proxy, "alice1", true).await;
    let (mut alice2, _) = named_client(&proxy, "alice2", true).await;
    assert_eq!(admin.request(&words("ACL DELUSER alice")).await, b":1\r\n");
    // Closed without sending anything more.
    assert_eq!(alice1.read_until_closed().await, b"");
    assert_eq!(alice2.read_until_closed().await, b"");
    assert_eq!(admin.request(&words("PING")).await, b"+PONG\r\n");

    // A client deleting its own user gets the reply, then is closed.
    assert_eq!(
        admin
            .request(&words("ACL SETUSER bob on >b ~* &* +@all"))
            .await,
        b"+OK\r\n"
    );
    let (mut bob, _) = named_client(&proxy, "bob", false).await;
    assert_eq!(bob.request(&words("AUTH bob b")).await, b"+OK\r\n");
    assert_eq!(bob.request(&words("ACL DELUSER bob")).await, b":1\r\n");
    assert_eq!(bob.read_until_closed().await, b"");
}
