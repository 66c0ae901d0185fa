//! Byte-level client input: inline commands, malformed RESP, oversized lengths. Bad input gets
//! redis-server's error and the connection is closed; the proxy keeps serving everyone else.

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_work_as_on_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut raw = proxy.raw_client().await;
    raw.send(b"PING\r\n").await;
    assert_eq!(raw.read_reply().await, b"+PONG\r\n");
    raw.send(b"set greeting \"hello world\"\n").await;
    assert_eq!(raw.read_reply().await, b"+OK\r\n");
    raw.send(b"\r\n  get greeting\r\n").await;
    assert_eq!(raw.read_reply().await, b"$11\r\nhello world\r\n");
    raw.send(b"echo 'it\\'s' \"\\x41\\n\"\r\n").await;
    assert_eq!(
        raw.read_reply().await,
        b"-ERR wrong number of arguments for 'echo' command\r\n"
    );
    raw.send(b"echo \"a\\x41\"\r\n").await;
    assert_eq!(raw.read_reply().await, b"$2\r\naA\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_a_protocol_error_and_the_connection_closes() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let cases: &[(&[u8], &str)] = &[
        (
            b"*1\r\n$-5\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*2\r\n:1\r\n",
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"SET k \"open\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        // A pipeline whose second command is bad: the first is still answered, in order.
        (
            b"PING\r\n*1\r\n$-2\r\n",
            "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n",
        ),
    ];
    for (input, want) in cases {
        let mut raw = proxy.raw_client().await;
        raw.send(input).await;
        let got = raw.read_until_closed().await;
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with(want),
            "{:?}: got {got:?}",
            String::from_utf8_lossy(input)
        );
    }
    // The proxy is still there for everyone else.
    let mut raw = proxy.raw_client().await;
    assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bulk_lengths_are_refused_before_any_payload_arrives() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with(&cluster, |c| c.session.max_bulk_len = 1024 * 1024).await;
    for header in [
        &b"*2\r\n$3\r\nGET\r\n$1048577\r\n"[..],
        b"*1\r\n$99999999999999\r\n",
        b"*3000000000\r\n",
    ] {
        let mut raw = proxy.raw_client().await;
        // Only the header is sent: the refusal can't wait for (or buffer) the payload.
        raw.send(header).await;
        let got = raw.read_until_closed().await;
        let got = String::from_utf8_lossy(&got);
        assert!(
            got == "-ERR Protocol error: invalid bulk length\r\n"
                || got == "-ERR Protocol error: invalid multibulk length\r\n",
            "{got:?}"
        );
    }
    // Exactly at the limit is fine.
    let mut raw = proxy.raw_client().await;
    let value = vec![b'v'; 1024 * 1024];
    assert_eq!(raw.request(&[b"SET", b"big", &value]).await, b"+OK\r\n");
    let got = raw.request(&[b"GET", b"big"]).await;
    assert_eq!(got.len(), value.len() + b"$1048576\r\n\r\n".len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_without_newline_are_cut_off_at_64k() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut raw = proxy.raw_client().await;
    raw.send(&vec![b'a'; 70 * 1024]).await;
    let got = raw.read_until_closed().await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: too big inline request\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_request_harms_no_one() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    for partial in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc"[..],
        b"GET k",
        b"*2\r\n",
    ] {
        let mut raw = proxy.raw_client().await;
        raw.send(partial).await;
        drop(raw);
    }
    // A client that sends a write and closes at once still gets the write applied.
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.send(b"*3\r\n$3\r\nSET\r\n$9\r\n{fire}key\r\n$3\r\nyes\r\n")
        .await;
    drop(raw);
    let mut c = proxy.sync_client();
    common::wait_until(
        std::time::Duration::from_secs(5),
        "the fire-and-forget SET landed",
        || {
            redis::cmd("GET")
                .arg("{fire}key")
                .query::<Option<String>>(&mut c)
                .unwrap()
                .as_deref()
                == Some("yes")
        },
    );
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_replies_any_decoder_might_refuse_pass_through() {
    // COMMAND DOCS in RESP3 holds sets of arrays (`history`), which redis-cli -3 asks for at
    // start; the shared connection must carry it and stay up for everyone else.
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let commands: &[&[&[u8]]] = &[
        &[b"HELLO", b"3"],
        &[b"COMMAND", b"DOCS", b"XADD", b"SET"],
        &[b"COMMAND", b"DOCS", b"GET"],
        &[b"SET", b"k", b"v"],
        &[b"GET", b"k"],
    ];
    let mut got = Vec::new();
    for args in commands {
        got.push((via_proxy.request(args).await, direct.request(args).await));
    }
    // HELLO differs (ids, versions); the rest is byte for byte.
    for ((proxy_reply, direct_reply), args) in got.iter().zip(commands).skip(1) {
        assert_eq!(
            String::from_utf8_lossy(proxy_reply),
            String::from_utf8_lossy(direct_reply),
            "{args:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_arguments_the_proxy_reads_itself_follow_redis_rules() {
    // redis reads integer arguments with `string2ll`: no sign, no leading zero, no spaces.
    // The commands slotproxy answers itself (or routes by a number) must refuse what
    // redis-server refuses, with the same error, instead of reading "+2" as 2.
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let commands: &[&[&[u8]]] = &[
        &[b"SELECT", b"+0"],
        &[b"SELECT", b"00"],
        &[b"SELECT", b" 0"],
        &[b"HELLO", b"+2"],
        &[b"HELLO", b"02"],
        &[b"SLOWLOG", b"GET", b"+1"],
        &[b"SLOWLOG", b"GET", b"01"],
        &[b"ACL", b"LOG", b"+1"],
        &[b"WAIT", b"+0", b"0"],
        &[b"WAIT", b"0", b"+10"],
        &[b"CLIENT", b"PAUSE", b"+0"],
        &[b"SCAN", b"0", b"COUNT", b"+5"],
        &[b"SCAN", b"0", b"COUNT", b"05"],
        &[b"PING"],
    ];
    common::assert_same_replies(&mut via_proxy, &mut direct, commands).await;
}
