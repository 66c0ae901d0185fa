//! `MONITOR` made by slotproxy: the lines of every client's commands, in the order slotproxy
//! took them, compared with a standalone redis-server 7.0 (timestamps and client addresses
//! normalised): commands slotproxy answers itself, multi-key commands, transactions, redacted
//! credentials, what is not shown, and what the monitoring client may still send.

use crate::common::{RawClient, StandaloneRedis, TestCluster, TestProxy};

/// `line` with its timestamp as `T` and each client address named in order of appearance.
fn normalise(line: &[u8], addresses: &mut Vec<String>) -> String {
    let text = String::from_utf8_lossy(line).into_owned();
    // Replies (`+PONG`) are kept as they are; lines start with `+<digits>.`.
    let Some(rest) = text
        .strip_prefix('+')
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    else {
        return text;
    };
    let (time, rest) = rest.split_once(' ').expect("a timestamp");
    let (secs, micros) = time.split_once('.').expect("seconds.micros");
    assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{text}");
    let Some(rest) = rest.strip_prefix("[0 ") else {
        return text;
    };
    let (addr, rest) = rest.split_once("] ").expect("[0 addr]");
    let n = match addresses.iter().position(|a| a == addr) {
        Some(n) => n,
        None => {
            addresses.push(addr.to_string());
            addresses.len() - 1
        }
    };
    format!("+T [0 <client {n}>] {rest}")
}

/// Runs the scenario against `addr`; returns what the monitoring client read.
async fn scenario(addr: &str) -> Vec<String> {
    let mut addresses = Vec::new();
    let mut seen = Vec::new();
    let mut monitor = RawClient::connect(addr).await;
    assert_eq!(monitor.request(&[b"MONITOR"]).await, b"+OK\r\n");
    // Clients go to the proxy's two workers in turn: `one` and `two` run on different threads.
    let mut one = RawClient::connect(addr).await;
    let mut two = RawClient::connect(addr).await;
    let commands: &[(usize, &[&[u8]])] = &[
        (1, &[b"PING"]),
        (1, &[b"SET", b"a", b"x y\"\n\x01\xc3\xa9\\"]),
        (2, &[b"PING", b"from two"]),
        (1, &[b"MSET", b"k1", b"1", b"k2", b"2", b"k3", b"3"]),
        (2, &[b"MGET", b"k1", b"k2", b"k3"]),
        (1, &[b"MULTI"]),
        (1, &[b"SET", b"{t}a", b"1"]),
        (2, &[b"ECHO", b"between"]),
        (1, &[b"INCR", b"{t}a"]),
        (1, &[b"EXEC"]),
        (1, &[b"MULTI"]),
        (1, &[b"SET", b"{t}a"]),
        (1, &[b"EXEC"]),
        (1, &[b"MULTI"]),
        (1, &[b"SET", b"{t}a", b"2"]),
        (1, &[b"DISCARD"]),
        (1, &[b"AUTH", b"secret"]),
        (1, &[b"AUTH", b"user", b"secret"]),
        (1, &[b"HELLO", b"2", b"AUTH", b"default", b"secret"]),
        (1, &[b"NOSUCH", b"x"]),
        (1, &[b"GET"]),
        (1, &[b"CONFIG", b"GET", b"maxmemory"]),
        (1, &[b"CLIENT", b"SETNAME", b"one"]),
        (1, &[b"EVAL", b"return 1", b"0"]),
        (2, &[b"UNWATCH"]),
        (1, &[b"ECHO", b"end"]),
    ];
    for (client, args) in commands {
        let client = if *client == 1 { &mut one } else { &mut two };
        client.request(args).await;
    }
    loop {
        let line = normalise(&monitor.read_reply().await, &mut addresses);
        let end = line.ends_with("\"ECHO\" \"end\"\r\n");
        seen.push(line);
        if end {
            break;
        }
    }
    // The monitoring client: no keys; other commands answered, then shown; MONITOR again is
    // ignored without a reply; RESET ends it.
    for args in [
        &[&b"GET"[..], b"a"][..],
        &[b"PING"],
        &[b"MONITOR"],
        &[b"ECHO", b"x"],
    ] {
        if args == [b"MONITOR"] {
            monitor.send(&crate::common::encode_command(args)).await;
            continue;
        }
        let reply = monitor.request(args).await;
        seen.push(normalise(&reply, &mut addresses));
        if args[0] != b"GET" {
            seen.push(normalise(&monitor.read_reply().await, &mut addresses));
        }
    }
    let reply = monitor.request(&[b"RESET"]).await;
    seen.push(normalise(&reply, &mut addresses));
    let reply = monitor.request(&[b"GET", b"a"]).await;
    seen.push(normalise(&reply, &mut addresses));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_what_clients_send_like_redis() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.allowed_admin_commands = vec!["monitor".to_string()];
    })
    .await;
    let got = scenario(&proxy.addr.to_string()).await;
    let want = scenario(&standalone.addr).await;
    assert_eq!(got, want);
}

/// The timestamp of a line, in microseconds.
fn micros(line: &str) -> u64 {
    let time = line[1..].split_once(' ').expect("a timestamp").0;
    let (secs, micros) = time.split_once('.').expect("seconds.micros");
    secs.parse::<u64>().unwrap() * 1_000_000 + micros.parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_monitor_sees_one_order_across_workers() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.session.allowed_admin_commands = vec!["monitor".to_string()];
    })
    .await;
    // Clients go to the two workers in turn: a monitor and a writer on each.
    let mut monitors = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..2 {
        let mut monitor = proxy.raw_client().await;
        assert_eq!(monitor.request(&[b"MONITOR"]).await, b"+OK\r\n");
        monitors.push(monitor);
    }
    for _ in 0..2 {
        writers.push(proxy.raw_client().await);
    }
    const EACH: usize = 300;
    let pipelines: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, mut writer)| {
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                for i in 0..EACH {
                    let key = format!("w{w}:{i}");
                    bytes.extend(crate::common::encode_command(&[
                        b"SET",
                        key.as_bytes(),
                        b"v",
                    ]));
                }
                writer.send(&bytes).await;
                for _ in 0..EACH {
                    assert_eq!(writer.read_reply().await, b"+OK\r\n");
                }
            })
        })
        .collect();
    for pipeline in pipelines {
        pipeline.await.unwrap();
    }
    let mut seen = Vec::new();
    for monitor in &mut monitors {
        let mut lines = Vec::new();
        for _ in 0..2 * EACH {
            lines.push(String::from_utf8(monitor.read_reply().await).unwrap());
        }
        seen.push(lines);
    }
    // The same lines, in the same order, for both monitors; times never go back.
    assert_eq!(seen[0], seen[1]);
    let lines = &seen[0];
    assert!(lines.windows(2).all(|w| micros(&w[0]) <= micros(&w[1])));
    // Each writer's commands in the order it sent them, the two interleaved somehow.
    for w in 0..2 {
        let keys: Vec<String> = lines
            .iter()
            .filter_map(|l| {
                let key = l.split('"').nth(3)?;
                key.starts_with(&format!("w{w}:")).then(|| key.to_string())
            })
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("w{w}:{i}")).collect();
        assert_eq!(keys, want);
    }
}
