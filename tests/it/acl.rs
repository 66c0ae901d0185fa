//! Who may use slotproxy itself: the default password, ACL users with key, channel and
//! command rules, and the ACL commands, compared reply by reply with a standalone
//! redis-server 7.0 given the same users.

use crate::common::{
    self, RawClient, StandaloneRedis, TestCluster, TestProxy, assert_same_replies,
};

const USERS: &[&str] = &[
    "revenue on >secret ~revenue:* &alerts +@all -@dangerous",
    "split on >rw %R~r:* %W~w:* resetchannels +@all",
    "reader on >r ~* &* -@all +@read +@connection",
];

/// A standalone redis-server configured like the proxy: `requirepass` and the same users.
fn standalone_with_users(password: &str) -> StandaloneRedis {
    let redis = StandaloneRedis::start();
    let mut conn = redis.conn();
    for line in USERS {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER");
        for word in line.split(' ') {
            cmd.arg(word);
        }
        let () = cmd.query(&mut conn).unwrap();
    }
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password)
        .query(&mut conn)
        .unwrap();
    redis
}

async fn proxy_with_users(cluster: &TestCluster, password: &str) -> TestProxy {
    let password = password.to_owned();
    TestProxy::start_with(cluster, move |config| {
        config.auth.password = Some(slotproxy::secret::Secret::new(password));
        config.auth.users = USERS.iter().map(|s| s.to_string()).collect();
    })
    .await
}

fn words(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

async fn same(proxy: &mut RawClient, redis: &mut RawClient, lines: &[&str]) {
    let commands: Vec<Vec<&[u8]>> = lines.iter().map(|l| words(l)).collect();
    assert_same_replies(proxy, redis, &commands).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_get_the_same_replies_as_from_redis() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_users(&cluster, "pw").await;
    let standalone = standalone_with_users("pw");
    let mut p = proxy.raw_client().await;
    let mut r = RawClient::connect(&standalone.addr).await;

    // Before AUTH: unknown commands and arity first, then NOAUTH; HELLO has its own text.
    same(
        &mut p,
        &mut r,
        &[
            "PING",
            "GET k",
            "FOO",
            "GET",
            "HELLO 3",
            "CLIENT ID",
            "MULTI",
            "ACL WHOAMI",
            "AUTH nope",
            "AUTH revenue nope",
            "AUTH nobody secret",
            "AUTH a b c",
            "HELLO 2 AUTH default nope",
            "AUTH pw",
            "ACL WHOAMI",
            "RESET",
            "PING",
            "AUTH default pw",
            "ACL WHOAMI",
        ],
    )
    .await;

    // The revenue user: its keys and channel, NOPERM for the rest.
    same(
        &mut p,
        &mut r,
        &[
            "AUTH revenue secret",
            "ACL WHOAMI",
            "SET revenue:1 a",
            "GET revenue:1",
            "GET other",
            "SET other x",
            "MSET revenue:1 a other b",
            "FLUSHALL",
            "KEYS *",
            "CLIENT KILL ID 1",
            "PUBLISH alerts hi",
            "PUBLISH other hi",
            "EVAL return 1 1 revenue:x",
            "EVAL return 1 1 other",
            "DEL revenue:1",
            "ACL LIST",
            "ACL SETUSER x on",
            "ACL DRYRUN revenue GET x",
        ],
    )
    .await;
    same(
        &mut p,
        &mut r,
        &["SUBSCRIBE other", "PSUBSCRIBE alert*", "PING"],
    )
    .await;

    // In MULTI a refused command is an error at once and EXEC aborts.
    same(
        &mut p,
        &mut r,
        &[
            "MULTI",
            "SET revenue:1 a",
            "GET other",
            "FLUSHALL",
            "EXEC",
            "MULTI",
            "SET revenue:2 b",
            "EXEC",
        ],
    )
    .await;

    // %R~ / %W~: read-only and write-only patterns.
    same(
        &mut p,
        &mut r,
        &[
            "AUTH split rw",
            "SET w:{t}1 x",
            "SET w:{t}1 x GET",
            "SET r:{t}1 x",
            "GET r:{t}1",
            "GET w:{t}1",
            "COPY r:{t}1 w:{t}2",
            "COPY w:{t}1 r:{t}2",
            "LPUSH w:{t}3 a",
            "LRANGE w:{t}3 0 -1",
            "BITFIELD r:{t}1 GET u8 0",
            "BITFIELD w:{t}1 SET u8 0 1",
            "PUBLISH any x",
            "DEL w:{t}1 w:{t}2 w:{t}3",
        ],
    )
    .await;

    // Categories: a reader reads anything and writes nothing.
    same(
        &mut p,
        &mut r,
        &[
            "AUTH reader r",
            "GET r:1",
            "SET r:1 y",
            "PING",
            "CLIENT GETNAME",
            "HSET h f v",
            "ACL WHOAMI",
        ],
    )
    .await;

    // The ACL commands of an admin (the default user).
    same(
        &mut p,
        &mut r,
        &[
            "AUTH pw",
            "ACL USERS",
            "ACL LIST",
            "ACL GETUSER revenue",
            "ACL GETUSER split",
            "ACL GETUSER reader",
            "ACL GETUSER nobody",
            "ACL CAT",
            "ACL CAT nope",
            "ACL DRYRUN revenue GET revenue:1",
            "ACL DRYRUN revenue GET other",
            "ACL DRYRUN revenue FLUSHALL",
            "ACL DRYRUN revenue PUBLISH other x",
            "ACL DRYRUN nobody GET x",
            "ACL DRYRUN revenue NOCMD",
            "ACL DRYRUN revenue GET",
            "ACL SETUSER bad +nocmd",
            "ACL SETUSER bad ~a allkeys ~b",
            "ACL SETUSER bad #abc",
            "ACL DELUSER default",
            "ACL DELUSER nobody",
            "DEL r:1",
        ],
    )
    .await;

    // RESP3: GETUSER is a map with a set of flags; DRYRUN a plain bulk string.
    for client in [&mut p, &mut r] {
        let hello = client.request(&words("HELLO 3 AUTH default pw")).await;
        assert!(
            hello.starts_with(b"%7"),
            "{}",
            String::from_utf8_lossy(&hello)
        );
    }
    same(
        &mut p,
        &mut r,
        &[
            "ACL GETUSER revenue",
            "ACL GETUSER split",
            "ACL GETUSER nobody",
            "ACL DRYRUN revenue GET other",
            "ACL DRYRUN revenue GET revenue:1",
            "ACL USERS",
            "ACL WHOAMI",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_cat_of_a_category_lists_the_same_commands() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_users(&cluster, "pw").await;
    let standalone = standalone_with_users("pw");
    let mut p = proxy.raw_client().await;
    let mut r = RawClient::connect(&standalone.addr).await;
    for client in [&mut p, &mut r] {
        assert_eq!(client.request(&words("AUTH pw")).await, b"+OK\r\n");
    }
    for category in ["dangerous", "read", "pubsub", "scripting"] {
        let line = format!("ACL CAT {category}");
        let mut got = sorted_elements(&p.request(&words(&line)).await);
        let want = sorted_elements(&r.request(&words(&line)).await);
        // The table also knows commands of newer redis versions (hand-kept rows).
        got.retain(|name| want.contains(name) || !is_newer_than_7_0(name));
        assert_eq!(got, want, "{line}");
    }
}

fn is_newer_than_7_0(name: &str) -> bool {
    name.starts_with("waitaof")
        || name.starts_with("hexpire")
        || name.starts_with("hpexpire")
        || name.starts_with("httl")
        || name.starts_with("hpttl")
        || name.starts_with("hpersist")
        || name.starts_with("hgetdel")
        || name.starts_with("hgetex")
        || name.starts_with("hsetex")
        || name.starts_with("client|setinfo")
        || name.starts_with("client|no-touch")
        || name.starts_with("cluster|myshardid")
}

fn sorted_elements(reply: &[u8]) -> Vec<String> {
    let (_, items) = common::split_aggregate(reply).unwrap();
    let mut names: Vec<String> = items
        .iter()
        .map(|item| {
            let text = String::from_utf8_lossy(item).into_owned();
            text.split("\r\n").nth(1).unwrap().to_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setuser_changes_users_and_deluser_disconnects_their_clients() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_users(&cluster, "pw").await;
    let mut admin = proxy.raw_client().await;
    assert_eq!(admin.request(&words("AUTH pw")).await, b"+OK\r\n");
    assert_eq!(
        admin
            .request(&words("ACL SETUSER temp on >t ~temp:* +get +set"))
            .await,
        b"+OK\r\n"
    );
    let mut temp = proxy.raw_client().await;
    assert_eq!(temp.request(&words("AUTH temp t")).await, b"+OK\r\n");
    assert_eq!(temp.request(&words("SET temp:1 v")).await, b"+OK\r\n");
    assert_eq!(
        temp.request(&words("DEL temp:1")).await,
        b"-NOPERM this user has no permissions to run the 'del' command\r\n"
    );
    // A change applies to clients already logged in as the user.
    assert_eq!(
        admin.request(&words("ACL SETUSER temp +del")).await,
        b"+OK\r\n"
    );
    assert_eq!(temp.request(&words("DEL temp:1")).await, b":1\r\n");
    // CONFIG SET requirepass would lock slotproxy out of its nodes: never forwarded.
    let reply = admin.request(&words("CONFIG SET requirepass x")).await;
    assert!(
        reply.starts_with(b"-ERR CONFIG SET 'requirepass' is never allowed through slotproxy"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(admin.request(&words("ACL DELUSER temp")).await, b":1\r\n");
    temp.send(&common::encode_command(&words("PING"))).await;
    assert_eq!(temp.read_until_closed().await, b"");
    assert_eq!(
        admin.request(&words("AUTH temp t")).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_client_logs_in_as_an_acl_user() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_users(&cluster, "pw").await;
    let url = format!("redis://revenue:secret@{}/", proxy.addr);
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET")
        .arg("revenue:crate")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg("revenue:crate")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "v");
    let err = redis::cmd("GET")
        .arg("other")
        .query_async::<Option<String>>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"));
    let no_password = redis::Client::open(proxy.url()).unwrap();
    let mut anonymous = no_password
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let err = redis::cmd("GET")
        .arg("revenue:crate")
        .query_async::<Option<String>>(&mut anonymous)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"));
}

/// This host's address on a non-loopback interface (the one a route to a TEST-NET address
/// would leave from; no packet is sent).
pub(crate) fn non_loopback_ip() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.connect("192.0.2.1:9").unwrap_or_else(|e| {
        panic!("protected mode needs a non-loopback interface to test from: {e}")
    });
    let ip = socket.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "protected mode needs a non-loopback interface to test from, found {ip}"
    );
    ip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_mode_refuses_other_hosts_until_a_password_is_set() {
    let cluster = TestCluster::start(3, 1);
    let ip = non_loopback_ip();
    let open = TestProxy::start_bound(&cluster, "0.0.0.0:0", |_| {}).await;
    let remote = std::net::SocketAddr::new(ip, open.addr.port());
    let mut client = RawClient::connect(remote).await;
    client.send(&common::encode_command(&words("PING"))).await;
    let reply = client.read_until_closed().await;
    assert!(
        reply.starts_with(b"-DENIED Redis is running in protected mode"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    // Loopback clients are still served.
    let mut local = open.raw_client().await;
    assert_eq!(local.request(&words("PING")).await, b"+PONG\r\n");

    let unprotected = TestProxy::start_bound(&cluster, "0.0.0.0:0", |config| {
        config.auth.protected_mode = false;
    })
    .await;
    let mut client =
        RawClient::connect(std::net::SocketAddr::new(ip, unprotected.addr.port())).await;
    assert_eq!(client.request(&words("PING")).await, b"+PONG\r\n");

    let protected = TestProxy::start_bound(&cluster, "0.0.0.0:0", |config| {
        config.auth.password = Some(slotproxy::secret::Secret::new("pw"));
    })
    .await;
    let mut client = RawClient::connect(std::net::SocketAddr::new(ip, protected.addr.port())).await;
    assert_eq!(
        client.request(&words("PING")).await,
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(client.request(&words("AUTH pw")).await, b"+OK\r\n");
}

/// The fields of each `ACL LOG` entry that do not depend on time or connection details.
fn log_fields(reply: &[u8]) -> Vec<Vec<String>> {
    let (_, entries) = common::split_aggregate(reply).unwrap();
    entries
        .iter()
        .map(|entry| {
            let (_, fields) = common::split_aggregate(entry).unwrap();
            fields[..10]
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_log_records_the_same_refusals_as_redis() {
    let cluster = TestCluster::start(3, 1);
    let proxy = proxy_with_users(&cluster, "pw").await;
    let standalone = standalone_with_users("pw");
    let mut p = proxy.raw_client().await;
    let mut r = RawClient::connect(&standalone.addr).await;
    same(
        &mut p,
        &mut r,
        &[
            "AUTH pw",
            "ACL LOG RESET",
            "AUTH revenue wrong",
            "AUTH revenue secret",
            "FLUSHALL",
            "GET other",
            "GET other",
            "PUBLISH nope x",
            "MULTI",
            "GET other2",
            "DISCARD",
            "AUTH pw",
            "ACL LOG x",
            "ACL LOG 1 2",
            "ACL LOG -1",
        ],
    )
    .await;
    for line in ["ACL LOG", "ACL LOG 2"] {
        let got = log_fields(&p.request(&words(line)).await);
        let want = log_fields(&r.request(&words(line)).await);
        assert_eq!(got, want, "{line}");
    }
    same(&mut p, &mut r, &["ACL LOG RESET", "ACL LOG"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_save_writes_the_aclfile_and_acl_load_reads_it() {
    let cluster = TestCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let aclfile = dir.path().join("users.acl");
    std::fs::write(&aclfile, "user filed on >f ~filed:* +get\n").unwrap();
    let path = aclfile.clone();
    let proxy = TestProxy::start_with(&cluster, move |config| {
        config.auth.password = Some(slotproxy::secret::Secret::new("pw"));
        config.auth.aclfile = Some(path);
    })
    .await;
    let mut admin = proxy.raw_client().await;
    assert_eq!(admin.request(&words("AUTH pw")).await, b"+OK\r\n");
    assert_eq!(admin.request(&words("AUTH filed f")).await, b"+OK\r\n");
    assert_eq!(admin.request(&words("AUTH pw")).await, b"+OK\r\n");
    assert_eq!(
        admin
            .request(&words("ACL SETUSER added on >a ~added:* +@read"))
            .await,
        b"+OK\r\n"
    );
    assert_eq!(admin.request(&words("ACL SAVE")).await, b"+OK\r\n");
    let saved = std::fs::read_to_string(&aclfile).unwrap();
    assert!(saved.contains("user added on #"), "{saved}");
    assert!(saved.contains("user filed on #"), "{saved}");
    assert!(
        !saved.contains(">a"),
        "passwords are saved as hashes: {saved}"
    );

    std::fs::write(&aclfile, "user other on nopass ~* +ping\n").unwrap();
    assert_eq!(admin.request(&words("ACL LOAD")).await, b"+OK\r\n");
    let users = admin.request(&words("ACL USERS")).await;
    assert_eq!(
        users,
        b"*2\r\n$7\r\ndefault\r\n$5\r\nother\r\n",
        "{}",
        String::from_utf8_lossy(&users)
    );
    std::fs::write(&aclfile, "user bad on +nocmd\n").unwrap();
    let reply = admin.request(&words("ACL LOAD")).await;
    assert!(
        reply.starts_with(b"-ERR"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(
        admin.request(&words("ACL USERS")).await,
        b"*2\r\n$7\r\ndefault\r\n$5\r\nother\r\n",
        "a bad aclfile leaves the users as they were"
    );
}
