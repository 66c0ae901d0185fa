//! One client can't hurt the others: CPU-heavy requests don't stall the runtime, and a client
//! that never reads is disconnected before its replies outgrow the configured memory.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may unwrap too

mod common;

use std::time::{Duration, Instant};

use common::{TestCluster, TestProxy, encode_command};

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
