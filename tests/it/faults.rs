//! Faults: a node that dies mid-reply, a node that stalls, a node that refuses a frame as bad
//! RESP, seeds that are down.
//!
//! Torn replies and stalls can't be produced by a real redis-server on demand, so those cases
//! use a fake node that owns every slot; everything else runs against the real cluster.

use std::time::{Duration, Instant};

use crate::common::{RawClient, TestCluster, TestProxy, encode_command, resp_frame_len};
use slotproxy::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A fake cluster node: claims all 16384 slots and answers by key name.
///
/// `CLUSTER NODES` gives config epoch 0. `PING` -> PONG (the proxy's health check); `GET ok` ->
/// "ok"; `SET torn ..` -> half a reply, then the connection closes; `GET flaky` ->
/// the same on its first call only, "ok" after; `GET stall` -> never answers; `GET poison` ->
/// once another request is behind it on the connection, redis-server's answer to a bad frame
/// (`-ERR Protocol error: ...`, then the connection closes, the request behind unread).
async fn fake_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let port = listener.local_addr().unwrap().port();
    let flaky_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_fake(stream, port, flaky_done.clone()));
        }
    });
    addr
}

async fn serve_fake(
    mut stream: TcpStream,
    port: u16,
    flaky_done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = Vec::new();
    loop {
        while let Ok(Some(len)) = resp_frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let args = split_multibulk(&frame);
            let reply: Vec<u8> = match (
                args[0].to_ascii_uppercase().as_slice(),
                args.get(1).map(Vec::as_slice),
            ) {
                (b"CLUSTER", Some(sub)) if sub.eq_ignore_ascii_case(b"nodes") => {
                    // Config epoch 0: the view of a node that has seen no failover.
                    let line = format!(
                        "fake 127.0.0.1:{port}@{} myself,master - 0 0 0 connected 0-16383\n",
                        u32::from(port) + 10_000
                    );
                    format!("${}\r\n{line}\r\n", line.len()).into_bytes()
                }
                (b"CLUSTER", _) => shards_reply(port),
                // The proxy's health check.
                (b"PING", _) => b"+PONG\r\n".to_vec(),
                (b"COMMAND", _) => b"*0\r\n".to_vec(),
                (b"INFO", _) => b"$22\r\nredis_version:7.0.99\r\n\r\n".to_vec(),
                (b"GET", Some(b"ok")) => b"$2\r\nok\r\n".to_vec(),
                (b"SET", Some(b"torn")) => {
                    let _ = stream.write_all(b"+O").await;
                    return; // drop the socket mid-reply
                }
                (b"GET", Some(b"flaky"))
                    if !flaky_done.swap(true, std::sync::atomic::Ordering::SeqCst) =>
                {
                    let _ = stream.write_all(b"$10\r\nabc").await;
                    return;
                }
                (b"GET", Some(b"flaky")) => b"$2\r\nok\r\n".to_vec(),
                (b"GET", Some(b"poison")) => {
                    while !matches!(resp_frame_len(&buf), Ok(Some(_))) {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"-ERR Protocol error: invalid bulk length\r\n")
                        .await;
                    return;
                }
                (b"GET" | b"SET", Some(b"stall")) => {
                    std::future::pending::<()>().await;
                    return;
                }
                _ => b"-ERR fake node\r\n".to_vec(),
            };
            if stream.write_all(&reply).await.is_err() {
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn split_multibulk(frame: &[u8]) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    let mut rest = &frame[frame.iter().position(|&b| b == b'\n').unwrap() + 1..];
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let len: usize = std::str::from_utf8(&rest[1..nl - 1])
            .unwrap()
            .parse()
            .unwrap();
        args.push(rest[nl + 1..nl + 1 + len].to_vec());
        rest = &rest[nl + 1 + len + 2..];
    }
    args
}

fn shards_reply(port: u16) -> Vec<u8> {
    let mut out =
        b"*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*12\r\n".to_vec();
    for (k, v) in [
        ("id", "fake"),
        ("ip", "127.0.0.1"),
        ("endpoint", "127.0.0.1"),
        ("role", "master"),
        ("health", "online"),
    ] {
        out.extend(format!("${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).as_bytes());
    }
    out.extend(format!("$4\r\nport\r\n:{port}\r\n").as_bytes());
    out
}

/// Runs the proxy in this test's runtime against arbitrary seeds; returns its address.
async fn start_proxy(seeds: Vec<String>, edit: impl FnOnce(&mut Config)) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::default();
    config.cluster.seeds = seeds;
    edit(&mut config);
    tokio::spawn(slotproxy::run(listener, config, std::future::pending()));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_dying_mid_reply_fails_only_its_in_flight_requests() {
    let node = fake_node().await;
    let proxy = start_proxy(vec![node.clone()], |_| {}).await;
    let mut raw = RawClient::connect(proxy).await;
    assert_eq!(raw.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");

    let mut pipeline = encode_command(&[b"GET", b"ok"]);
    pipeline.extend(encode_command(&[b"SET", b"torn", b"v"]));
    raw.send(&pipeline).await;
    assert_eq!(raw.read_reply().await, b"$2\r\nok\r\n");
    let error = String::from_utf8(raw.read_reply().await).unwrap();
    assert!(
        error.starts_with(&format!(
            "-ERR slotproxy: connection to node {node} lost before the reply"
        )),
        "{error:?}"
    );
    assert!(
        error.contains("may or may not have been applied"),
        "{error:?}"
    );

    // A read whose connection dies before the reply is simply asked again.
    assert_eq!(raw.request(&[b"GET", b"flaky"]).await, b"$2\r\nok\r\n");

    // Same client, and a new one: the proxy reconnects and carries on.
    assert_eq!(raw.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
    let mut other = RawClient::connect(proxy).await;
    assert_eq!(other.request(&[b"PING"]).await, b"+PONG\r\n");
    assert_eq!(other.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_node_gets_a_timeout_error_not_a_hang() {
    let node = fake_node().await;
    let proxy = start_proxy(vec![node.clone()], |c| {
        c.backend.request_timeout_ms = 300;
        c.session.retry_deadline_ms = 1_000;
    })
    .await;
    let mut raw = RawClient::connect(proxy).await;
    assert_eq!(raw.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");

    // A write: its outcome is unknown, so the client is told at once.
    let started = Instant::now();
    let error = String::from_utf8(raw.request(&[b"SET", b"stall", b"v"]).await).unwrap();
    let waited = started.elapsed();
    assert!(
        error.contains(&format!("node {node} did not reply within 300 ms")),
        "{error:?}"
    );
    assert!(
        error.contains("may or may not have been applied"),
        "{error:?}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(raw.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");

    // A read is asked again until the retry deadline, then fails with the node's last error.
    let started = Instant::now();
    let error = String::from_utf8(raw.request(&[b"GET", b"stall"]).await).unwrap();
    let waited = started.elapsed();
    assert!(error.starts_with("-CLUSTERDOWN"), "{error:?}");
    assert!(error.contains("did not reply within 300 ms"), "{error:?}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(raw.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
}

/// A node that stops reading: the proxy's write to it can't finish (the socket buffers are
/// full), and the request timeout must still fail the connection, with a reply for every
/// request on it, instead of waiting for the write forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_stops_reading_mid_write_gets_a_timeout_error_not_a_hang() {
    let node = fake_node().await;
    let proxy = start_proxy(vec![node.clone()], |c| {
        c.backend.request_timeout_ms = 300;
        c.session.retry_deadline_ms = 500;
    })
    .await;
    let mut raw = RawClient::connect(proxy).await;
    assert_eq!(raw.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");

    // The node stops reading at `GET stall`; 64 MB behind it are more than loopback buffers.
    let big = vec![b'x'; 64 << 20];
    let mut pipeline = encode_command(&[b"GET", b"stall"]);
    pipeline.extend(encode_command(&[b"SET", b"big", &big]));
    let started = Instant::now();
    raw.send(&pipeline).await;
    // `read_reply` fails the test if no reply comes within 5 s.
    let mut replies = Vec::new();
    for _ in 0..2 {
        replies.push(String::from_utf8(raw.read_reply().await).unwrap());
    }
    let waited = started.elapsed();
    assert!(
        replies[0].starts_with("-CLUSTERDOWN")
            && replies[0].contains("did not reply within 300 ms"),
        "{replies:?}"
    );
    assert!(
        replies[1].contains(&format!("node {node} did not reply within 300 ms"))
            && replies[1].contains("may or may not have been applied"),
        "{replies:?}"
    );
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(raw.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
}

/// While a node takes no more bytes, its connection's queue fills up to
/// `backend.max_queued_requests`: a request past it is not queued but retried with backoff, and
/// answered `TRYAGAIN` at the retry deadline if the queue is still full; the queued ones go out
/// once the connection is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_queue_answers_tryagain_and_keeps_its_queued_requests() {
    let node = fake_node().await;
    let proxy = start_proxy(vec![node.clone()], |c| {
        c.worker_threads = 1; // every client shares one connection to the node
        c.backend.max_queued_requests = 4;
        c.backend.request_timeout_ms = 3_000;
        c.session.retry_deadline_ms = 300;
    })
    .await;
    let mut stalls = RawClient::connect(proxy).await;
    let mut writes = RawClient::connect(proxy).await;
    let mut queued = RawClient::connect(proxy).await;
    let mut late = RawClient::connect(proxy).await;
    assert_eq!(late.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");

    // The node stops reading at the first client's request (a write: not sent again); the
    // second's 48 MB (more than loopback buffers) can't all be written, so the connection takes
    // no more jobs.
    let stalled_at = Instant::now();
    stalls
        .send(&encode_command(&[b"SET", b"stall", b"v"]))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    writes
        .send(&encode_command(&[b"SET", b"big", &vec![b'x'; 48 << 20]]))
        .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    // Four requests fill the queue; the next one is refused by it until the retry deadline.
    queued
        .send(&encode_command(&[b"GET", b"ok"]).repeat(4))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let busy = String::from_utf8(late.request(&[b"GET", b"ok"]).await).unwrap();
    assert_eq!(
        busy,
        format!(
            "-TRYAGAIN node {node} has 4 requests queued in slotproxy, its limit \
             (backend.max_queued_requests): it reads slower than clients send\r\n"
        )
    );
    assert!(
        stalled_at.elapsed() < Duration::from_millis(2_500),
        "before the stall ends"
    );

    // At the request timeout the connection is replaced: the queued requests go out on the
    // new one, and the two writes in flight get the timeout's error.
    for _ in 0..4 {
        assert_eq!(queued.read_reply().await, b"$2\r\nok\r\n");
    }
    for client in [&mut stalls, &mut writes] {
        let unknown = String::from_utf8(client.read_reply().await).unwrap();
        assert!(
            unknown.contains("did not reply within 3000 ms")
                && unknown.contains("may or may not have been applied"),
            "{unknown:?}"
        );
    }
    assert_eq!(late.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_list_with_dead_seeds_still_discovers_the_cluster() {
    let cluster = TestCluster::start(3, 1);
    // Two seeds nobody listens on (bound then closed), then one real node.
    let dead: Vec<String> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut seeds = dead.clone();
    seeds.push(format!("redis://{}", cluster.nodes()[4].addr));
    let proxy = TestProxy::start_with(&cluster, |c| c.cluster.seeds = seeds).await;
    let mut c = proxy.sync_client();
    for node in cluster.primaries() {
        let key = cluster.key_for_node(node, "seeded");
        let _: () = redis::cmd("SET").arg(&key).arg("v").query(&mut c).unwrap();
        let direct: String = redis::cmd("GET")
            .arg(&key)
            .query(&mut cluster.conn(node))
            .unwrap();
        assert_eq!(direct, "v");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_seed_gives_clusterdown_after_the_retry_deadline() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let proxy = start_proxy(vec![dead], |c| c.session.retry_deadline_ms = 300).await;
    let mut raw = RawClient::connect(proxy).await;
    assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n");
    let started = Instant::now();
    let error = String::from_utf8(raw.request(&[b"GET", b"k"]).await).unwrap();
    assert!(error.starts_with("-CLUSTERDOWN"), "{error:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // The connection stays usable.
    assert_eq!(
        raw.request(&[b"ECHO", b"still here"]).await,
        b"$10\r\nstill here\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_answer_with_a_lower_config_epoch_loses() {
    let cluster = TestCluster::start(3, 1);
    // Precondition: the real cluster's slot owners have config epochs above the fake's 0.
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut cluster.conn(&cluster.nodes()[0]))
        .unwrap();
    let max_epoch = nodes
        .lines()
        .filter(|l| l.contains("master") && l.split_whitespace().count() > 8)
        .filter_map(|l| l.split_whitespace().nth(6)?.parse::<u64>().ok())
        .max();
    assert!(max_epoch.is_some_and(|e| e > 0), "{nodes}");
    // The fake is the first seed and answers first, claiming every slot: a proxy that took the
    // first answer would send everything to it. The three seeds are asked at once.
    let fake = fake_node().await;
    let mut seeds = vec![fake];
    seeds.extend(cluster.seeds().into_iter().take(2));
    let proxy = start_proxy(seeds, |_| {}).await;
    let mut raw = RawClient::connect(proxy).await;
    for node in cluster.primaries() {
        let key = cluster.key_for_node(node, "epoch");
        assert_eq!(
            raw.request(&[b"SET", key.as_bytes(), b"v"]).await,
            b"+OK\r\n",
            "{key}"
        );
        let direct: String = redis::cmd("GET")
            .arg(&key)
            .query(&mut cluster.conn(node))
            .unwrap();
        assert_eq!(direct, "v");
    }
}

/// slotproxy forwards only canonical frames, so a node that refuses one as bad RESP means a
/// slotproxy bug: an operator must hear of it, and only the request it refused may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refusing_a_frame_is_logged_as_an_error_and_fails_that_request_alone() {
    use crate::common::{Running, slotproxy};
    let node = fake_node().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotproxy.toml");
    // One worker and one connection per node: the requests share the refused connection.
    std::fs::write(&config, "[backend]\nconnections_per_node = 1\n").unwrap();
    let log_path = dir.path().join("slotproxy.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let listen = format!("127.0.0.1:{}", crate::common::free_port(false));
    let child = slotproxy()
        .env("SLOTPROXY_CONFIG", &config)
        .env("SLOTPROXY_LISTEN", &listen)
        .env("SLOTPROXY_CLUSTER", &node)
        .env("SLOTPROXY_ADMIN_LISTEN", "")
        .env("SLOTPROXY_THREADS", "1")
        .env("SLOTPROXY_LOG", "info")
        .env("SLOTPROXY_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .unwrap();
    let _child = Running(child);
    crate::common::wait_until(Duration::from_secs(15), "slotproxy listens", || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    let mut culprit = RawClient::connect(&listen).await;
    let mut neighbour = RawClient::connect(&listen).await;
    assert_eq!(culprit.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
    assert_eq!(neighbour.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");

    // The neighbour's request goes out behind the refused one, on the same connection.
    culprit.send(&encode_command(&[b"GET", b"poison"])).await;
    neighbour.send(&encode_command(&[b"GET", b"ok"])).await;
    let refused = String::from_utf8(culprit.read_reply().await).unwrap();
    assert_eq!(refused, "-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(
        neighbour.read_reply().await,
        b"$2\r\nok\r\n",
        "sent again, unharmed"
    );

    // Both carry on, and so does a new client.
    assert_eq!(culprit.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
    assert_eq!(neighbour.request(&[b"GET", b"ok"]).await, b"$2\r\nok\r\n");
    let mut fresh = RawClient::connect(&listen).await;
    assert_eq!(fresh.request(&[b"PING"]).await, b"+PONG\r\n");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("node refused a request as bad RESP"))
        .unwrap_or_else(|| panic!("no line about the refused frame in the log:\n{text}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("requests_behind=1"), "{line}");
}
