//! slotproxy accepts exactly the RESP redis-server accepts: a differential test sends the same
//! bytes (valid, non-canonical, truncated, oversized, random) to both and compares every reply
//! byte, and a client sending what redis refuses hurts no one else.

use std::time::Duration;

use crate::common::mutate::{Rng, mutate};
use crate::common::{Load, RawClient, StandaloneRedis, TestCluster, TestProxy, all_errors};

/// `proto-max-bulk-len` on both sides (redis' minimum), so oversized cases stay small.
const MAX_BULK: usize = 1024 * 1024;

/// Hand-written cases: every edge of redis' length parsing and line handling.
fn corpus() -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = [
        // Valid, canonical.
        &b"*1\r\n$4\r\nPING\r\n"[..],
        b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"PING\r\n",
        b"PING\n",
        b"\r\n\n  \r\nECHO hi\r\n",
        // Non-canonical lengths (the issue's probe).
        b"*2\r\n$3\r\nGET\r\n$01\r\na\r\n",
        b"*2\r\n$3\r\nGET\r\n$+1\r\na\r\n",
        b"*2\r\n$4\r\nECHO\r\n$003\r\nabc\r\n",
        b"*2\r\n$4\r\nECHO\r\n$-0\r\n\r\n",
        b"*2\r\n$4\r\nECHO\r\n$+0\r\n\r\n",
        b"*02\r\n$4\r\nECHO\r\n$1\r\na\r\n",
        b"*+2\r\n$4\r\nECHO\r\n$1\r\na\r\n",
        b"*-0\r\n",
        b"* 1\r\n$4\r\nPING\r\n",
        b"*1 \r\n$4\r\nPING\r\n",
        b"*1\r\n$ 4\r\nPING\r\n",
        b"*1\r\n$4 \r\nPING\r\n",
        b"*1\r\n$\r\nPING\r\n",
        b"*\r\n",
        b"*1\r\n$99999999999999999999\r\n",
        b"*1\r\n$999999999999999999999\r\n",
        b"*99999999999999999999\r\n",
        b"*2147483648\r\n",
        // Negative and zero counts are ignored; the connection stays open.
        b"*-10\r\nPING\r\n",
        b"*-1\r\n*0\r\n*-2147483649\r\n*1\r\n$4\r\nPING\r\n",
        // Bytes redis skips without looking.
        b"*1\rX$4\rYPINGab",
        b"*2\r\n$4\r\nECHO\r\n$2\r\nhi!!*1\r\n$4\r\nPING\r\n",
        // Wrong type bytes, including ones redis prints as spaces or echoes raw.
        b"*1\r\n:1\r\n",
        b"*1\r\n+PING\r\n",
        b"*1\r\n*1\r\n",
        b"*1\r\n\r\r\n",
        b"*1\r\n\n\r\n",
        b"*1\r\n\xff\r\n",
        // Incomplete: no reply, and nothing is forwarded.
        b"*1\r\nX",
        b"*1\r\n$4\r",
        b"*2\r\n$4\r\nECHO\r\n$5\r\nab",
        b"*1\r\n$\x004\r\nPING\r\n",
        b"PING\x00\n",
        // Oversized and limits.
        b"*1\r\n$1048577\r\n",
        b"*1\r\n$1048576\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$-2\r\n",
        // Inline quoting.
        b"ECHO \"a b\"\r\n",
        b"ECHO \"\\x41\\x4g\\n\"\r\n",
        b"ECHO 'it\\'s'\r\n",
        b"ECHO \"open\r\n",
        b"ECHO \"a\"b\r\n",
        b"ECHO a\x0bb\r\n",
        b"ECHO \"a\"\x0b\r\n",
        b"ECHO a\x0cb\r\n",
        b"\x0bECHO x\r\n",
    ]
    .iter()
    .map(|c| c.to_vec())
    .collect();
    // Header lines and inline requests past 64 KB without a line end.
    cases.push(vec![b'A'; 100 * 1024]);
    let mut count = b"*".to_vec();
    count.extend(std::iter::repeat_n(b'1', 100 * 1024));
    cases.push(count);
    let mut bulk = b"*1\r\n$".to_vec();
    bulk.extend(std::iter::repeat_n(b'1', 100 * 1024));
    cases.push(bulk);
    // The largest bulk allowed, whole.
    let mut big = b"*2\r\n$4\r\nECHO\r\n$1048576\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', MAX_BULK));
    big.extend_from_slice(b"\r\n");
    cases.push(big);
    cases
}

/// Valid requests with a few bytes changed, inserted, removed or cut off.
fn random_corpus(seed: u64, cases: usize) -> Vec<Vec<u8>> {
    const SEEDS: &[&[u8]] = &[
        b"*1\r\n$4\r\nPING\r\n",
        b"*2\r\n$4\r\nECHO\r\n$5\r\nhowdy\r\n", // not "hello": HELLO replies with a client id
        b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
        b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
        b"ECHO \"a b\" \r\n",
    ];
    let mut rng = Rng::new(seed);
    (0..cases)
        .map(|_| mutate(&mut rng, SEEDS, 3, 3))
        .filter(|case| !case.is_empty())
        .collect()
}

/// Sends `case` on a new connection, closes the sending side, and returns everything the
/// server wrote before closing.
async fn exchange(addr: &str, case: &[u8]) -> Vec<u8> {
    let mut raw = RawClient::connect(addr).await;
    raw.send(case).await;
    raw.shutdown_write().await;
    raw.read_until_closed().await
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    format!("{text:?}{}", if bytes.len() > 200 { "..." } else { "" })
}

async fn same_as_redis(proxy: &TestProxy, redis: &StandaloneRedis, cases: &[Vec<u8>]) {
    let proxy_addr = proxy.addr.to_string();
    let mut mismatches = Vec::new();
    for case in cases {
        let want = exchange(&redis.addr, case).await;
        let got = exchange(&proxy_addr, case).await;
        if got != want {
            // Show both from a little before the first byte that differs.
            let at = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()))
                .saturating_sub(40);
            mismatches.push(format!(
                "case {}\n  from byte {at}:\n  redis:     {}\n  slotproxy: {}",
                show(case),
                show(&want[at..]),
                show(&got[at..])
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

async fn start_pair() -> (TestCluster, TestProxy, StandaloneRedis) {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |config| {
        config.session.max_bulk_len = MAX_BULK;
    })
    .await;
    let redis = StandaloneRedis::start();
    let mut conn = redis.conn();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("proto-max-bulk-len")
        .arg(MAX_BULK)
        .exec(&mut conn)
        .unwrap();
    (cluster, proxy, redis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases_get_the_same_bytes_as_from_redis_server() {
    let (_cluster, proxy, redis) = start_pair().await;
    same_as_redis(&proxy, &redis, &corpus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_get_the_same_bytes_as_from_redis_server() {
    let (_cluster, proxy, redis) = start_pair().await;
    same_as_redis(&proxy, &redis, &random_corpus(0x5107_9e0c, 2_000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_count_is_ignored_and_the_connection_stays_open() {
    let (_cluster, proxy, redis) = start_pair().await;
    for addr in [redis.addr.clone(), proxy.addr.to_string()] {
        let mut raw = RawClient::connect(addr.as_str()).await;
        raw.send(b"*-10\r\n*-1\r\n").await;
        assert_eq!(raw.request(&[b"PING"]).await, b"+PONG\r\n", "{addr}");
    }
}

/// The issue's reproduction: a non-canonical length used to reach a shared node connection,
/// whose node then closed it under every other client's requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_hurts_no_other_client() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    let load = Load::start(&proxy, 10, "strict").await;
    let attacks: &[&[u8]] = &[
        b"*2\r\n$3\r\nGET\r\n$01\r\na\r\n",
        b"*2\r\n$3\r\nGET\r\n$+1\r\na\r\n",
        b"*2\r\n$3\r\nGET\r\n$003\r\naaa\r\n",
        b"*3\r\n$3\r\nSET\r\n$-0\r\n\r\n$1\r\nv\r\n",
        b"*02\r\n$3\r\nGET\r\n$1\r\na\r\n",
        b"*+2\r\n$3\r\nGET\r\n$1\r\na\r\n",
    ];
    for round in 0..20 {
        for attack in attacks {
            let mut raw = proxy.raw_client().await;
            raw.send(attack).await;
            let got = raw.read_until_closed().await;
            assert!(
                got.starts_with(b"-ERR Protocol error: invalid "),
                "round {round}, {}: got {}",
                show(attack),
                show(&got)
            );
        }
    }
    let seen = load.finish().await;
    let errors = all_errors(&seen);
    assert!(errors.is_empty(), "well-behaved clients saw {errors:?}");
    let ops: u64 = seen.iter().map(|s| s.ops).sum();
    assert!(ops > 0, "the well-behaved clients ran no command");
    // And a request slotproxy accepts but only because redis does reaches the node canonical.
    let mut raw = proxy.raw_client().await;
    raw.send(b"*3\rX$3\r\nSETab$1\r\nk\r\n$1\r\nvXY").await;
    assert_eq!(raw.read_reply().await, b"+OK\r\n");
    let mut conn = proxy.sync_client();
    let value: String = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(value, "v");
    tokio::time::timeout(Duration::from_secs(5), raw.shutdown_write())
        .await
        .unwrap();
}
