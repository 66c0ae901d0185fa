//! Busy and slow nodes stay in service: a node running a long script answers `-BUSY`, which
//! means it is alive. Its requests get that `-BUSY` at once, `SCRIPT KILL` through slotproxy
//! reaches it, the script's own client gets redis' reply for a killed script, and clients of the
//! other primaries never see an error. A node stalled by a slow command (`DEBUG SLEEP`) delays
//! its own clients' requests but fails none of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{
    self, RawClient, StandaloneRedis, TestCluster, TestNode, TestProxy, encode_command,
};

/// A script that never ends on its own.
const SPIN: &[u8] = b"while true do end";
/// How long a script runs before its node answers other clients `-BUSY` (redis' default is
/// 5000 ms; shorter here so the test is quick).
const BUSY_THRESHOLD_MS: &str = "100";

/// Sets the node's `busy-reply-threshold`.
fn set_busy_threshold(conn: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(BUSY_THRESHOLD_MS)
        .query(conn)
        .unwrap();
}

/// Whether `node`, asked directly, answers `-BUSY`.
fn answers_busy(cluster: &TestCluster, node: &TestNode) -> bool {
    let result: redis::RedisResult<String> = redis::cmd("PING").query(&mut cluster.conn(node));
    result.is_err_and(|e| e.code() == Some("BUSY"))
}

/// Clients that `SET` and `GET` their own keys one request at a time until stopped; what each
/// got that was not the expected reply.
struct Workers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>,
}

impl Workers {
    async fn start(proxy: &TestProxy, keys: &[String]) -> Workers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for key in keys {
            let mut client = proxy.raw_client().await;
            let key = key.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let value = done.to_string();
                    let set = client
                        .request(&[b"SET", key.as_bytes(), value.as_bytes()])
                        .await;
                    let get = client.request(&[b"GET", key.as_bytes()]).await;
                    let want = format!("${}\r\n{value}\r\n", value.len()).into_bytes();
                    if set != b"+OK\r\n" || get != want {
                        errors.push(format!(
                            "{key}: SET {} GET {}",
                            set.escape_ascii(),
                            get.escape_ascii()
                        ));
                    }
                    done += 1;
                }
                (done, errors)
            }));
        }
        Workers { stop, tasks }
    }

    /// Stops the clients; how many rounds they did and every unexpected reply.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut rounds = 0;
        let mut errors = Vec::new();
        for task in self.tasks {
            let (done, errs) = task.await.unwrap();
            rounds += done;
            errors.extend(errs);
        }
        (rounds, errors)
    }
}

/// What a standalone redis-server answers the client whose script `SCRIPT KILL` ended.
async fn killed_script_reply_of_redis() -> Vec<u8> {
    let standalone = StandaloneRedis::start();
    set_busy_threshold(&mut standalone.conn());
    let mut scripted = RawClient::connect(standalone.addr.as_str()).await;
    scripted
        .send(&encode_command(&[b"EVAL", SPIN, b"1", b"k"]))
        .await;
    let mut killer = RawClient::connect(standalone.addr.as_str()).await;
    common::wait_until(
        Duration::from_secs(5),
        "the standalone node is busy",
        || {
            let result: redis::RedisResult<String> =
                redis::cmd("PING").query(&mut standalone.conn());
            result.is_err_and(|e| e.code() == Some("BUSY"))
        },
    );
    assert_eq!(killer.request(&[b"SCRIPT", b"KILL"]).await, b"+OK\r\n");
    scripted.read_reply().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_script_keeps_its_node_in_service_and_script_kill_ends_it() {
    let cluster = TestCluster::start(3, 1);
    for node in cluster.nodes() {
        set_busy_threshold(&mut cluster.conn(node));
    }
    // A request timeout well inside the script's run: before the fix, the script's connection
    // was closed at this point and every request on it failed with an unknown outcome.
    let proxy = TestProxy::start_with(&cluster, |c| c.backend.request_timeout_ms = 1500).await;
    let primaries = cluster.primaries();
    let busy = primaries[0];
    let busy_key = cluster.key_for_node(busy, "busy");
    let calm_keys: Vec<String> = primaries[1..]
        .iter()
        .flat_map(|p| (0..3).map(|i| cluster.key_for_node(p, &format!("calm{i}"))))
        .collect();
    let workers = Workers::start(&proxy, &calm_keys).await;

    let mut scripted = proxy.raw_client().await;
    scripted
        .send(&encode_command(&[b"EVAL", SPIN, b"1", busy_key.as_bytes()]))
        .await;
    common::wait_until(Duration::from_secs(5), "the node runs the script", || {
        answers_busy(&cluster, busy)
    });

    // Two clients in a row use the node's two shared connections, one of which carries the
    // script. The other gets the node's `-BUSY` at once. A GET that went out behind the script
    // before slotproxy knew the node was busy waits for the script to end, as on any one
    // connection to redis; it is answered then, never dropped.
    let mut first = Vec::new();
    for _ in 0..2 {
        let mut client = proxy.raw_client().await;
        client
            .send(&encode_command(&[b"GET", busy_key.as_bytes()]))
            .await;
        first.push(client);
    }
    let mut behind_script = Vec::new();
    let mut busy_seen = 0;
    for mut client in first {
        match tokio::time::timeout(Duration::from_millis(1000), client.read_reply()).await {
            Ok(reply) => {
                assert!(
                    reply.starts_with(b"-BUSY Redis is busy running a script."),
                    "{}",
                    reply.escape_ascii()
                );
                busy_seen += 1;
            }
            Err(_) => behind_script.push(client),
        }
    }
    assert!(busy_seen >= 1, "no client got -BUSY at once");

    // From then on, for longer than the request timeout, every client of the busy node gets
    // its `-BUSY` at once, whichever connection its session uses, and is never told the
    // cluster is down.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut asked = 0;
    while Instant::now() < until {
        let mut client = proxy.raw_client().await;
        let started = Instant::now();
        let reply = client.request(&[b"GET", busy_key.as_bytes()]).await;
        let took = started.elapsed();
        assert!(
            reply.starts_with(b"-BUSY Redis is busy running a script."),
            "GET on the busy node got {} after {took:?}",
            reply.escape_ascii()
        );
        assert!(
            took < Duration::from_millis(500),
            "-BUSY took {took:?}, not at once"
        );
        asked += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(asked >= 10, "only {asked} GETs in 2.5 s");

    let mut killer = proxy.raw_client().await;
    let started = Instant::now();
    assert_eq!(killer.request(&[b"SCRIPT", b"KILL"]).await, b"+OK\r\n");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        scripted.read_reply().await,
        killed_script_reply_of_redis().await,
        "the script's client gets redis' reply for a killed script"
    );
    assert_eq!(
        killer.request(&[b"SCRIPT", b"KILL"]).await,
        b"-NOTBUSY No scripts in execution right now.\r\n"
    );
    for mut client in behind_script {
        assert_eq!(
            client.read_reply().await,
            b"$-1\r\n",
            "the GET behind the script"
        );
    }
    // Everything works again on the node that was busy, the script's own client included.
    assert_eq!(
        scripted
            .request(&[b"SET", busy_key.as_bytes(), b"after"])
            .await,
        b"+OK\r\n"
    );
    assert_eq!(
        killer.request(&[b"GET", busy_key.as_bytes()]).await,
        b"$5\r\nafter\r\n"
    );
    let (rounds, errors) = workers.finish().await;
    assert!(
        errors.is_empty(),
        "clients of the other primaries saw errors: {errors:?}"
    );
    assert!(
        rounds > 20,
        "the other primaries' clients did only {rounds} rounds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_by_a_slow_command_delays_but_fails_no_request() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let primaries = cluster.primaries();
    let slow = primaries[0];
    let keys: Vec<String> = primaries
        .iter()
        .flat_map(|p| (0..2).map(|i| cluster.key_for_node(p, &format!("k{i}"))))
        .collect();
    let workers = Workers::start(&proxy, &keys).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 2.5 s: past the health check's timeout (the node is out of rotation meanwhile), within
    // the request timeout and the retry deadline.
    let mut direct = cluster.conn(slow);
    let stalled = Instant::now();
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("2.5")
        .query(&mut direct)
        .unwrap();
    assert!(stalled.elapsed() >= Duration::from_secs(2));
    // Requests that waited for the node go through once it answers again.
    let mut client = proxy.raw_client().await;
    let key = cluster.key_for_node(slow, "after");
    assert_eq!(
        client.request(&[b"SET", key.as_bytes(), b"x"]).await,
        b"+OK\r\n"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rounds, errors) = workers.finish().await;
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    assert!(rounds > 20, "only {rounds} rounds");
}
