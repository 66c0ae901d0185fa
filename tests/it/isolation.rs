//! One client can't hurt the others: CPU-heavy requests don't stall the runtime, a client
//! that never reads is disconnected before its replies outgrow the configured memory, and
//! all clients together stay within `max_client_memory_bytes`.

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{self, TestCluster, TestProxy, encode_command};
use tokio::io::AsyncWriteExt;

/// Connect + PING for a new client, timed.
async fn connect_and_ping(proxy: &TestProxy) -> Duration {
    let started = Instant::now();
    let mut raw = proxy.raw_client().await;
    assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n");
    started.elapsed()
}

fn tracking_request(prefixes: usize) -> Vec<u8> {
    let names: Vec<Vec<u8>> = (0..prefixes)
        .map(|n| format!("prefix:{n}:").into_bytes())
        .collect();
    let mut args: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"ON", b"BCAST"];
    for name in &names {
        args.push(b"PREFIX");
        args.push(name);
    }
    encode_command(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighty_thousand_tracking_prefixes_do_not_delay_other_clients() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.tracking_max_prefixes = 100_000;
    })
    .await;
    let mut quiet = Duration::ZERO;
    for _ in 0..20 {
        quiet = quiet.max(connect_and_ping(&proxy).await);
    }
    let request = tracking_request(80_000);
    let mut attacker = proxy.raw_client().await;
    let attack = tokio::spawn(async move {
        let started = Instant::now();
        attacker.send(&request).await;
        let reply = attacker.read_reply().await;
        (reply, started.elapsed())
    });
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while !attack.is_finished() {
        slowest = slowest.max(connect_and_ping(&proxy).await);
        probes += 1;
    }
    let (reply, took) = attack.await.unwrap();
    assert_eq!(reply, b"+OK\r\n");
    eprintln!(
        "80k prefixes accepted in {took:?}; {probes} connect+PING meanwhile, slowest \
         {slowest:?} (quiet: {quiet:?})"
    );
    assert!(took < Duration::from_secs(5), "80k prefixes took {took:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "a new client waited {slowest:?} for PONG while the prefixes were checked"
    );
    // Overlaps are still found among that many, with redis' error.
    let mut raw = proxy.raw_client().await;
    raw.send(&tracking_request(1_000)).await;
    assert_eq!(raw.read_reply().await, b"+OK\r\n");
    let reply = raw
        .request(&[
            b"CLIENT",
            b"TRACKING",
            b"ON",
            b"BCAST",
            b"PREFIX",
            b"prefix:999:x",
        ])
        .await;
    assert_eq!(
        String::from_utf8(reply).unwrap(),
        "-ERR Prefix 'prefix:999:x' overlaps with an existing prefix 'prefix:999:'. Prefixes \
         for a single client must not overlap.\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_prefixes_past_the_cap_are_refused() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.tracking_max_prefixes = 100;
    })
    .await;
    let mut raw = proxy.raw_client().await;
    raw.send(&tracking_request(60)).await;
    assert_eq!(raw.read_reply().await, b"+OK\r\n");
    // 60 held + 41 more passes 100: refused, and the 60 stay.
    let more: Vec<Vec<u8>> = (0..41).map(|n| format!("more:{n}:").into_bytes()).collect();
    let mut args: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"ON", b"BCAST"];
    for name in &more {
        args.push(b"PREFIX");
        args.push(name);
    }
    let reply = String::from_utf8(raw.request(&args).await).unwrap();
    assert_eq!(
        reply,
        "-ERR too many tracking prefixes for this client (at most 100, \
         session.tracking_max_prefixes)\r\n"
    );
    let info = raw.request(&[b"CLIENT", b"TRACKINGINFO"]).await;
    let held = String::from_utf8_lossy(&info).matches("prefix:").count();
    assert_eq!(held, 60);
    assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n");
}

/// A line of /proc/self/status in bytes (`VmRSS`, `VmHWM`); the proxy runs in this process.
fn status_bytes(field: &str) -> u64 {
    common::proc_status_bytes("self", field)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS, so it measures what comes next.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("reset VmHWM through /proc/self/clear_refs");
}

const MB: u64 = 1024 * 1024;
/// `TCP_ESTABLISHED` in /proc/net/tcp.
const ESTABLISHED: u8 = 0x01;

/// The state of the IPv4 TCP socket whose local port is `port`, from /proc/net/tcp.
fn tcp_state(port: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields[1]
            .ends_with(&local)
            .then(|| u8::from_str_radix(fields[3], 16).ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_pipeline_of_large_gets_is_disconnected_within_the_limit() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await; // max_output_buffer_bytes: 64 MB
    let limit = slotproxy::config::Config::default()
        .session
        .max_output_buffer_bytes as u64;
    let mut conn = proxy.client().await;
    let value = vec![b'v'; MB as usize];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query_async(&mut conn)
        .await
        .unwrap();
    drop(value);
    let pipeline: Vec<u8> = std::iter::repeat_n(encode_command(&[b"GET", b"big"]), 2_000)
        .flatten()
        .collect();
    let before = status_bytes("VmRSS");
    reset_peak_rss();
    let mut attacker = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    attacker.write_all(&pipeline).await.unwrap();
    // Never read: wait until the proxy has closed its side (our socket in CLOSE_WAIT, or gone
    // after a reset: the proxy closes with our unread requests still in its buffers).
    let port = attacker.local_addr().unwrap().port();
    common::wait_until(
        Duration::from_secs(60),
        "the proxy disconnects the client",
        || tcp_state(port) != Some(ESTABLISHED),
    );
    let peak = status_bytes("VmHWM");
    eprintln!(
        "2,000 unread 1 MB GETs: disconnected; RSS {} MB before, peak {} MB (limit {} MB)",
        before / MB,
        peak / MB,
        limit / MB
    );
    // At worst a reply is held twice at the moment the limit trips: in the session's reply
    // queue and copied into its output buffer. Quiet runs peak near 1x (about +73 MB); a loaded
    // machine, where the session runs late, was seen at +122 MB.
    assert!(
        peak <= before + 2 * limit + 32 * MB,
        "peak RSS {} MB passed {} MB before + twice the {} MB limit + 32 MB",
        peak / MB,
        before / MB,
        limit / MB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_set_costs_at_most_1_2_times_its_size() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    const SIZE: u64 = 100 * MB;
    let chunk = vec![b'x'; MB as usize];
    let before = status_bytes("VmRSS");
    reset_peak_rss();
    let mut raw = proxy.raw_client().await;
    raw.send(format!("*3\r\n$3\r\nSET\r\n$5\r\nhuge1\r\n${SIZE}\r\n").as_bytes())
        .await;
    for _ in 0..SIZE / MB {
        raw.send(&chunk).await;
    }
    raw.send(b"\r\n").await;
    assert_eq!(raw.read_reply().await, b"+OK\r\n");
    let peak = status_bytes("VmHWM");
    let cost = peak.saturating_sub(before);
    eprintln!(
        "100 MB SET: RSS {} MB before, peak {} MB: {:.2}x the value",
        before / MB,
        peak / MB,
        cost as f64 / SIZE as f64
    );
    assert!(cost * 10 <= SIZE * 12, "a 100 MB SET cost {} MB", cost / MB);
    assert_eq!(
        raw.request(&[b"STRLEN", b"huge1"]).await,
        format!(":{SIZE}\r\n").as_bytes()
    );
}

/// Found by the fuzzer: a SUBSCRIBE behind a large reply, then the client's FIN. The
/// confirmation waited for the output buffer to drain, and nothing woke the session once it
/// had, so the connection stayed open for good (redis-server closes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_behind_a_large_reply_is_closed_after_its_fin() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    let mut conn = proxy.client().await;
    for _ in 0..20 {
        let mut push = redis::cmd("LPUSH");
        push.arg("long").arg((0..10_000).collect::<Vec<u32>>());
        let _: i64 = push.query_async(&mut conn).await.unwrap();
    }
    let mut raw = proxy.raw_client().await;
    let mut requests = encode_command(&[b"LRANGE", b"long", b"0", b"-1"]);
    requests.extend(encode_command(&[b"SUBSCRIBE", b"news"]));
    raw.send(&requests).await;
    raw.shutdown_write().await;
    let received = raw.read_until_closed().await;
    assert!(
        received.ends_with(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"),
        "{} bytes, ending {:?}",
        received.len(),
        String::from_utf8_lossy(&received[received.len().saturating_sub(60)..])
    );
}

/// Sets `key` to `size` bytes through the proxy.
async fn set_value(proxy: &TestProxy, key: &str, size: usize) {
    let mut conn = proxy.client().await;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(vec![b'v'; size])
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// SET/GET rounds of keys tagged `{a}` on a raw client of its own until `stop` or the first
/// wrong reply; returns (rounds, errors). Raw: redis-rs' async connection gives up after
/// 500 ms by default, which a loaded machine can pass without any error from slotproxy.
fn run_well_behaved(
    proxy: &TestProxy,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    let addr = proxy.addr;
    tokio::spawn(async move {
        let mut client = common::RawClient::connect(addr).await;
        let (mut rounds, mut errors) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let key = format!("{{a}}calm:{}", rounds % 100);
            let value = rounds.to_string();
            let set = client
                .request(&[b"SET", key.as_bytes(), value.as_bytes()])
                .await;
            let got = client.request(&[b"GET", key.as_bytes()]).await;
            rounds += 1;
            let expected = format!("${}\r\n{value}\r\n", value.len());
            if set != b"+OK\r\n" || got != expected.as_bytes() {
                eprintln!(
                    "well-behaved client: SET {:?}, GET {:?}",
                    String::from_utf8_lossy(&set),
                    String::from_utf8_lossy(&got)
                );
                errors += 1;
                break;
            }
        }
        (rounds, errors)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_client_memory_budget_the_largest_clients_are_disconnected() {
    const BUDGET: u64 = 32 * MB;
    const VALUE: usize = 256 * 1024;
    let cluster = TestCluster::start(3, 0);
    // The well-behaved client's keys live on another node than the large value: clients that
    // share a node connection wait behind the replies written before (docs/reliability.md).
    let owner =
        |key: &[u8]| cluster.index_of(cluster.owner_of(slotproxy::cluster::hash_slot(key).0));
    assert_ne!(owner(b"big"), owner(b"{a}"));
    let proxy = TestProxy::start_with(&cluster, |c| {
        // The per-client limit out of the way: the process-wide budget is what trips.
        c.session.max_output_buffer_bytes = 1 << 30;
        c.session.max_client_memory_bytes = BUDGET as usize;
    })
    .await;
    set_value(&proxy, "big", VALUE).await;
    let gets = |n| -> Vec<u8> {
        std::iter::repeat_n(encode_command(&[b"GET", b"big"]), n)
            .flatten()
            .collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let calm = run_well_behaved(&proxy, stop.clone());
    // A client that reads late: 1 MB of replies wait for it, less than any attacker holds
    // when the budget trips.
    let mut late_reader = proxy.raw_client().await;
    late_reader.send(&gets(4)).await;
    let before = status_bytes("VmRSS");
    reset_peak_rss();
    // Four clients pipeline 200 GETs of 256 KB each and never read: 200 MB without the budget.
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let mut attacker = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        attacker.write_all(&gets(200)).await.unwrap();
        attackers.push(attacker);
    }
    let ports: Vec<u16> = attackers
        .iter()
        .map(|a| a.local_addr().unwrap().port())
        .collect();
    // Their sockets may stay ESTABLISHED on this side: the proxy's FIN waits behind the
    // replies already in the socket buffers, which the attackers never read.
    let mut admin = redis::Client::open(format!("redis://{}", proxy.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    common::wait_until(
        Duration::from_secs(60),
        "every attacker is gone from CLIENT LIST",
        || {
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
            ports
                .iter()
                .all(|p| !list.contains(&format!(" addr=127.0.0.1:{p} ")))
        },
    );
    let peak = status_bytes("VmHWM");
    stop.store(true, Ordering::Relaxed);
    let (rounds, errors) = calm.await.unwrap();
    let value = vec![b'v'; VALUE];
    let expected = [format!("${VALUE}\r\n").as_bytes(), &value, b"\r\n"].concat();
    for _ in 0..4 {
        assert_eq!(
            late_reader.read_reply().await,
            expected,
            "the late reader was spared"
        );
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut admin).unwrap();
    let evicted: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("evicted_clients in INFO stats");
    eprintln!(
        "4 clients x 200 unread 256 KB GETs, budget {} MB: {evicted} evicted; RSS {} MB before, \
         peak {} MB (+{} MB); well-behaved client: {rounds} rounds, {errors} errors",
        BUDGET / MB,
        before / MB,
        peak / MB,
        peak.saturating_sub(before) / MB
    );
    assert_eq!(errors, 0, "the well-behaved client saw errors");
    assert!(rounds > 0);
    assert_eq!(evicted, 4, "each attacker once, nobody else");
    // The pool evicts on the thread whose reply crosses the budget, so what the clients hold,
    // counted, peaks at the budget (plus 16 KB per client). The process peaks above that by
    // two things, measured (docs/reliability.md section 3): evicted clients' buffers, freed
    // when their sessions next run (up to 6 MB seen while the others grow), and glibc keeping
    // freed 256 KB chunks in its per-thread arenas (16-25 MB; runs with
    // GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 peaked at +34 to +40 MB). 40 MB covers
    // both with room for a loaded machine; before the synchronous eviction this test saw up to
    // +89 MB.
    assert!(
        peak <= before + BUDGET + 40 * MB,
        "peak RSS {} MB passed {} MB before + the {} MB budget + 40 MB",
        peak / MB,
        before / MB,
        BUDGET / MB
    );
}

/// A client that pipelines large reads and leaves: its in-flight window
/// (`session.max_in_flight_bytes`, 1 MB) lets few of them reach the node, the rest are never
/// sent, and a client sharing that node connection waits behind at most those few replies.
/// Here 200 GETs of 1 MB, then a reset once slotproxy has sent some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_clients_large_reads_stop_at_its_in_flight_window() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    // The neighbour's keys share the large value's node (and so its connections).
    let owner =
        |key: &[u8]| cluster.index_of(cluster.owner_of(slotproxy::cluster::hash_slot(key).0));
    assert_eq!(owner(b"big"), owner(b"{calm}"));
    let node = &cluster.nodes()[owner(b"big")];
    set_value(&proxy, "big", MB as usize).await;
    // A raw client: redis-rs' async connection gives up after 500 ms by default, which
    // this wait can pass (its own figure below, not slotproxy's timeout).
    let mut neighbour = proxy.raw_client().await;
    let slowest = |times: &[Duration]| times.iter().copied().max().unwrap_or_default();
    let mut quiet = Vec::new();
    for n in 0..50 {
        let key = format!("{{calm}}{n}");
        let started = Instant::now();
        assert_eq!(
            neighbour.request(&[b"SET", key.as_bytes(), b"v"]).await,
            b"+OK\r\n"
        );
        quiet.push(started.elapsed());
    }
    let quiet_max = slowest(&quiet);
    let gets_before = cluster.command_calls(node, "get");
    let pipeline: Vec<u8> = std::iter::repeat_n(encode_command(&[b"GET", b"big"]), 200)
        .flatten()
        .collect();
    let mut attacker = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    attacker.write_all(&pipeline).await.unwrap();
    // Reset once the node has run some of them: the first window, 16 requests.
    common::wait_until(Duration::from_secs(30), "the node ran 16 GETs", || {
        cluster.command_calls(node, "get") >= gets_before + 16
    });
    // A reset, not a FIN (after a FIN the requests are still owed replies). A zero linger
    // never blocks the drop, which is what the deprecation warns about.
    #[allow(deprecated)]
    attacker.set_linger(Some(Duration::ZERO)).unwrap();
    drop(attacker);
    let mut loaded = Vec::new();
    let began = Instant::now();
    let mut n = 0;
    while began.elapsed() < Duration::from_secs(3) {
        let key = format!("{{calm}}{n}");
        let started = Instant::now();
        assert_eq!(
            neighbour.request(&[b"SET", key.as_bytes(), b"v"]).await,
            b"+OK\r\n",
            "the neighbour's request succeeds"
        );
        loaded.push(started.elapsed());
        n += 1;
    }
    let loaded_max = slowest(&loaded);
    let ran = cluster.command_calls(node, "get") - gets_before;
    eprintln!(
        "200 x 1 MB GETs then a reset: {ran} ran on the node; the neighbour's slowest SET \
         {loaded_max:?} over {} requests (quiet: {quiet_max:?})",
        loaded.len()
    );
    // 16 before the first reply, then one at a time while the replies are 1 MB; a few more
    // may go out between the node's count and the reset.
    assert!(ran <= 32, "{ran} of the departed client's 200 GETs ran");
    assert!(loaded_max < Duration::from_secs(5), "{loaded_max:?}");
}
