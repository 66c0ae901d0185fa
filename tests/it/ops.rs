//! Operating slotproxy against a real cluster: the truth when every node is gone (readiness,
//! `CLUSTER INFO`, fast failures) and healing after, and the graceful drain under pipelined load.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, TestCluster, TestProxy, http_get, resp_frame_len, wait_until};

fn cluster_info(conn: &mut redis::Connection) -> String {
    redis::cmd("CLUSTER").arg("INFO").query(conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_stopped_fails_readiness_and_requests_fast_then_heals() {
    let mut cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with_admin(&cluster, |c| {
        c.cluster.health_check_interval_ms = 100;
        c.cluster.health_check_timeout_ms = 200;
        c.session.retry_deadline_ms = 1_000;
        c.backend.request_timeout_ms = 1_000;
    })
    .await;
    let admin = proxy.admin.unwrap();
    wait_until(Duration::from_secs(10), "ready", || {
        http_get(admin, "/readyz").status == 200
    });
    let mut conn = proxy.sync_client();
    assert!(cluster_info(&mut conn).contains("cluster_state:ok"));
    let _: () = redis::cmd("SET")
        .arg("ops:k")
        .arg("v")
        .query(&mut conn)
        .unwrap();

    for index in 0..cluster.nodes().len() {
        cluster.stop(index);
    }
    // Within a few health-check intervals: readiness and CLUSTER INFO tell the truth.
    let stopped_at = Instant::now();
    wait_until(Duration::from_secs(3), "/readyz 503", || {
        http_get(admin, "/readyz").status == 503
    });
    let reason = http_get(admin, "/readyz").body;
    assert!(reason.contains("\"ready\": false"), "{reason}");
    wait_until(Duration::from_secs(3), "CLUSTER INFO fail", || {
        cluster_info(&mut conn).contains("cluster_state:fail")
    });
    assert!(stopped_at.elapsed() < Duration::from_secs(3));
    // PING stays local (a keepalive), but data commands fail at once, naming the reason.
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let mut last = String::new();
    wait_until(
        Duration::from_secs(10),
        "GET fails fast with CLUSTERDOWN",
        || {
            let started = Instant::now();
            let result: redis::RedisResult<Option<String>> =
                redis::cmd("GET").arg("ops:k").query(&mut conn);
            let took = started.elapsed();
            last = format!("{result:?} after {took:?}");
            matches!(&result, Err(e) if e.to_string().to_ascii_uppercase().contains("CLUSTERDOWN"))
                && took < Duration::from_millis(200)
        },
    );
    assert!(last.contains("no cluster node has answered"), "{last}");
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");

    for index in 0..cluster.nodes().len() {
        cluster.cont(index);
    }
    wait_until(
        Duration::from_secs(20),
        "healed: ready, CLUSTER INFO ok, GET works",
        || {
            http_get(admin, "/readyz").status == 200
                && cluster_info(&mut conn).contains("cluster_state:ok")
                && redis::cmd("GET")
                    .arg("ops:k")
                    .query::<Option<String>>(&mut conn)
                    .is_ok_and(|v| v.as_deref() == Some("v"))
        },
    );
}

/// One pipelining client: batches of INCRs of fresh keys until the connection closes. Returns
/// every key sent, with the reply it got (if any).
fn pipeline_until_closed(
    addr: std::net::SocketAddr,
    client: usize,
    replies: Arc<AtomicUsize>,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut sent = Vec::new();
    let mut buf = Vec::new();
    for batch in 0.. {
        let keys: Vec<String> = (0..20)
            .map(|i| format!("drain:{client}:{batch}:{i}"))
            .collect();
        let mut bytes = Vec::new();
        for key in &keys {
            bytes.extend_from_slice(&common::encode_command(&[b"INCR", key.as_bytes()]));
        }
        let write_ok = stream.write_all(&bytes).is_ok();
        let first = sent.len();
        sent.extend(keys.into_iter().map(|k| (k, None)));
        if !write_ok {
            return sent;
        }
        let mut next = first;
        while next < sent.len() {
            match resp_frame_len(&buf).unwrap() {
                Some(len) => {
                    sent[next].1 = Some(buf.drain(..len).collect());
                    next += 1;
                    replies.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return sent,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_pipelined_load_answers_every_request_it_read() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |c| c.shutdown_timeout_ms = 5_000).await;
    let addr = proxy.addr;
    let replies = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let replies = replies.clone();
            std::thread::spawn(move || pipeline_until_closed(addr, client, replies))
        })
        .collect();
    wait_until(Duration::from_secs(20), "load running", || {
        replies.load(Ordering::Relaxed) >= 2_000
    });
    proxy.shutdown().await.unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is closed after the drain"
    );

    let mut answered = 0;
    let mut unanswered = 0;
    let mut nodes: Vec<redis::Connection> = cluster
        .primaries()
        .iter()
        .map(|p| cluster.conn(p))
        .collect();
    for client in clients {
        for (key, reply) in client.join().unwrap() {
            // The owner answers; the others answer MOVED.
            let value: Option<i64> = nodes
                .iter_mut()
                .find_map(|node| redis::cmd("GET").arg(&key).query(node).ok())
                .unwrap_or_else(|| panic!("no primary answers GET {key}"));
            match reply {
                Some(reply) => {
                    answered += 1;
                    assert_eq!(reply, b":1\r\n", "{key}: wrong or repeated reply");
                    assert_eq!(value, Some(1), "{key}: acknowledged but not applied once");
                }
                None => {
                    unanswered += 1;
                    assert_eq!(value, None, "{key}: applied but never answered");
                }
            }
        }
    }
    assert!(answered >= 2_000, "{answered}");
    eprintln!("drain: {answered} answered, {unanswered} sent after the drain began (not run)");
}

fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_slotproxys_own_clients_commands_and_cluster_state() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    let mut first = proxy.sync_client();
    let _others: Vec<redis::Connection> = (0..3).map(|_| proxy.sync_client()).collect();
    // The harness' readiness probe may still be leaving: wait for exactly these four.
    let mut info = String::new();
    wait_until(Duration::from_secs(10), "connected_clients:4", || {
        info = redis::cmd("INFO").query(&mut first).unwrap();
        info_field(&info, "connected_clients").as_deref() == Some("4")
    });
    assert_eq!(
        info_field(&info, "cluster_state").as_deref(),
        Some("ok"),
        "{info}"
    );
    let before: u64 = info_field(&info, "total_commands_processed")
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("info:{i}"))
            .arg(i)
            .query(&mut first)
            .unwrap();
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut first).unwrap();
    let after: u64 = info_field(&info, "total_commands_processed")
        .unwrap()
        .parse()
        .unwrap();
    // The 50 SETs and the first INFO: the nodes' own traffic (health checks) is not counted.
    assert_eq!(after - before, 51, "{info}");
}
