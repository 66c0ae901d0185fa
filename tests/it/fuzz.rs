//! A mutation fuzzer over valid requests: mutated bytes go to slotproxy on many connections
//! while well-behaved clients run, and after each batch the proxy must still be alive (no
//! panic anywhere), answer a fresh client correctly, and hold flat memory; at the end the
//! well-behaved clients must have seen no error.
//!
//! In CI it runs a fixed seed for a bounded number of cases. For long runs (see
//! scripts/fuzz.sh): `SLOTPROXY_FUZZ_SECS` (run time; 0 = the CI bound), `SLOTPROXY_FUZZ_SEED`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::mutate::{Rng, mutate};
use crate::common::{self, Load, TestCluster, TestProxy, all_errors};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Cases per batch; the checks run between batches.
const BATCH: usize = 500;
/// Connections fuzzing at once.
const PARALLEL: usize = 16;
/// Cases in CI (a fixed seed, well under 20 s).
const CI_CASES: usize = 12_000;
/// How long a case's connection may stay open after the client's FIN.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Valid requests of many kinds (keys under `fz:`, apart from the well-behaved clients').
const SEEDS: &[&[u8]] = &[
    b"*1\r\n$4\r\nPING\r\n",
    b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
    b"*3\r\n$3\r\nSET\r\n$4\r\nfz:a\r\n$5\r\nvalue\r\n",
    b"*2\r\n$3\r\nGET\r\n$4\r\nfz:a\r\n",
    b"*4\r\n$4\r\nMGET\r\n$4\r\nfz:a\r\n$4\r\nfz:b\r\n$4\r\nfz:c\r\n",
    b"*5\r\n$4\r\nMSET\r\n$4\r\nfz:a\r\n$1\r\n1\r\n$4\r\nfz:b\r\n$1\r\n2\r\n",
    b"*2\r\n$4\r\nINCR\r\n$4\r\nfz:n\r\n",
    b"*4\r\n$4\r\nHSET\r\n$4\r\nfz:h\r\n$1\r\nf\r\n$1\r\nv\r\n",
    b"*2\r\n$7\r\nHGETALL\r\n$4\r\nfz:h\r\n",
    b"*4\r\n$5\r\nLPUSH\r\n$4\r\nfz:l\r\n$1\r\na\r\n$1\r\nb\r\n",
    b"*4\r\n$6\r\nLRANGE\r\n$4\r\nfz:l\r\n$1\r\n0\r\n$2\r\n-1\r\n",
    b"*3\r\n$4\r\nSADD\r\n$4\r\nfz:s\r\n$1\r\na\r\n",
    b"*3\r\n$6\r\nSUNION\r\n$4\r\nfz:s\r\n$4\r\nfz:t\r\n",
    b"*4\r\n$4\r\nZADD\r\n$4\r\nfz:z\r\n$1\r\n1\r\n$1\r\na\r\n",
    b"*5\r\n$4\r\nXADD\r\n$5\r\nfz:st\r\n$1\r\n*\r\n$1\r\nf\r\n$1\r\nv\r\n",
    b"*3\r\n$6\r\nEXPIRE\r\n$4\r\nfz:a\r\n$3\r\n100\r\n",
    b"*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n",
    b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
    b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n",
    b"*1\r\n$5\r\nMULTI\r\n",
    b"*1\r\n$4\r\nEXEC\r\n",
    b"*2\r\n$5\r\nWATCH\r\n$4\r\nfz:a\r\n",
    b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nfz:ch\r\n",
    b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nfz:ch\r\n$1\r\nm\r\n",
    b"*6\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$5\r\nBCAST\r\n$6\r\nPREFIX\r\n$3\r\nfz:\r\n",
    b"*2\r\n$4\r\nSCAN\r\n$1\r\n0\r\n",
    b"*1\r\n$6\r\nDBSIZE\r\n",
    b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n",
    b"*2\r\n$7\r\nCOMMAND\r\n$5\r\nCOUNT\r\n",
    b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n",
    b"*3\r\n$5\r\nBLPOP\r\n$5\r\nfz:bl\r\n$4\r\n0.01\r\n",
    b"GET fz:a\r\n",
    b"SET fz:q \"a b\\x41\" \r\n",
];

/// Panics anywhere in this process (a session task's panic is caught by tokio: count it here).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        previous(info);
    }));
}

/// This process' resident memory (the proxy runs in it), from /proc/self/status.
fn rss_bytes() -> u64 {
    crate::common::proc_status_bytes("self", "VmRSS")
}

/// Sends one case, closes the sending side, and reads until the proxy closes.
///
/// # Errors
/// The proxy kept the connection open past the timeout after the client's FIN.
async fn run_case(addr: std::net::SocketAddr, case: Vec<u8>) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // A write can fail when the proxy already closed after a protocol error: fine.
    let _ = stream.write_all(&case).await;
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(CASE_TIMEOUT, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    drained.map_err(|_| {
        format!(
            "connection still open {CASE_TIMEOUT:?} after FIN; case {:?}",
            String::from_utf8_lossy(&case[..case.len().min(300)])
        )
    })
}

/// CPU time this process (proxy and fuzz clients) has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// A client connection that waits up to 10 s for each reply (the redis crate's default of
/// 500 ms fails a long run niced on a busy machine, where a slow answer is the scheduler's
/// doing; a hang still fails).
async fn patient_client(proxy: &TestProxy) -> redis::aio::MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    redis::Client::open(proxy.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// A fresh client's ([`patient_client`]) SET and GET round trip; returns how long it took
/// (the slowest is in the summary).
async fn fresh_client_works(proxy: &TestProxy, batch: usize) -> Duration {
    let started = Instant::now();
    let mut conn = patient_client(proxy).await;
    let key = format!("fz:check:{batch}");
    let value = format!("value-{batch}");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, value, "batch {batch}");
    started.elapsed()
}

/// The proxy's connected clients (a session left open past its client shows here) and the
/// keys the cluster holds (replies such as `SCAN` or `HGETALL` grow with the data), for the
/// long runs' progress lines.
async fn census(proxy: &TestProxy) -> (u64, u64) {
    let mut conn = patient_client(proxy).await;
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .unwrap();
    let clients = common::info_field(&info, "connected_clients")
        .and_then(|v| v.parse().ok())
        .expect("INFO clients gives connected_clients");
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    (clients, keys)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_never_hurt_the_proxy_or_other_clients() {
    let seed = env_u64("SLOTPROXY_FUZZ_SEED").unwrap_or(0x00f0_22ed);
    let run_for = env_u64("SLOTPROXY_FUZZ_SECS")
        .filter(|&s| s > 0)
        .map(Duration::from_secs);
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start(&cluster).await;
    count_panics();
    // A bounded history: the RSS check below measures this process, proxy and clients alike.
    let load = Load::start_keeping(&proxy, 4, "good", 10_000).await;
    let addr = proxy.addr;
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut cases = 0usize;
    let mut batch = 0usize;
    let mut rss = Vec::new();
    let hangs = Arc::new(AtomicUsize::new(0));
    let mut slowest_check = Duration::ZERO;
    loop {
        let done = match run_for {
            Some(limit) => started.elapsed() >= limit,
            None => cases >= CI_CASES,
        };
        if done {
            break;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..BATCH {
            let case = mutate(&mut rng, SEEDS, 4, 4);
            if tasks.len() >= PARALLEL {
                let result: Result<(), String> = tasks.join_next().await.unwrap().unwrap();
                if let Err(e) = result {
                    hangs.fetch_add(1, Ordering::Relaxed);
                    eprintln!("fuzz: {e}");
                }
            }
            tasks.spawn(run_case(addr, case));
        }
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result.unwrap() {
                hangs.fetch_add(1, Ordering::Relaxed);
                eprintln!("fuzz: {e}");
            }
        }
        cases += BATCH;
        batch += 1;
        assert_eq!(
            PANICS.load(Ordering::Relaxed),
            0,
            "a panic after {cases} cases"
        );
        slowest_check = slowest_check.max(fresh_client_works(&proxy, batch).await);
        rss.push(rss_bytes());
        if run_for.is_some() && batch.is_multiple_of(20) {
            let (clients, keys) = census(&proxy).await;
            eprintln!(
                "fuzz: {cases} cases in {:?}, cpu {:.0} s, rss {} MB, \
                 {clients} clients connected, {keys} keys in the cluster",
                started.elapsed(),
                cpu_seconds(),
                rss_bytes() >> 20
            );
        }
    }
    let seen = load.finish().await;
    let errors = all_errors(&seen);
    let ops: u64 = seen.iter().map(|s| s.ops).sum();
    let wrong: usize = seen.iter().map(|s| s.wrong.len()).sum();
    // Memory is flat: after the first batches warm up buffers and tables, it stays put.
    let warm = rss[rss.len().min(3) - 1];
    let last = *rss.last().unwrap();
    let peak = *rss.iter().max().unwrap();
    eprintln!(
        "fuzz summary: seed {seed:#x}, {cases} cases in {:?} ({:.0} CPU s in this process), \
         {} hangs, {} panics, well-behaved ops {ops} with {} errors and {wrong} wrong replies \
         (slowest reply {:?}), slowest fresh-client check {slowest_check:?}, \
         rss after warm-up {} MB, last {} MB, peak {} MB",
        started.elapsed(),
        cpu_seconds(),
        hangs.load(Ordering::Relaxed),
        PANICS.load(Ordering::Relaxed),
        errors.len(),
        seen.iter().map(|s| s.slowest).max().unwrap_or_default(),
        warm >> 20,
        last >> 20,
        peak >> 20
    );
    assert_eq!(hangs.load(Ordering::Relaxed), 0, "connections left hanging");
    assert!(errors.is_empty(), "well-behaved clients saw {errors:?}");
    assert_eq!(wrong, 0, "well-behaved clients read wrong values");
    assert!(ops > 0, "the well-behaved clients ran no command");
    assert!(
        last <= warm + warm / 2 + (64 << 20),
        "RSS grew from {} MB to {} MB",
        warm >> 20,
        last >> 20
    );
}
