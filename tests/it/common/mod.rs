//! Shared harness for the integration tests: real Redis nodes, an in-process proxy, raw clients.
//!
//! Every test module (see `main.rs`) uses `crate::common` and builds what it needs:
//! - [`TestCluster::start`] starts real `redis-server` processes in cluster mode on free
//!   127.0.0.1 ports, in a temp dir, and kills them on `Drop` (also when the test panics, and,
//!   through a small watchdog, when the test process dies without unwinding).
//! - [`StandaloneRedis::start`] starts one non-cluster node, to compare replies with.
//! - [`TestProxy::start`] runs `slotproxy::run` in-process on an ephemeral port.
//! - [`RawClient`] speaks bytes to any of them, for byte-level cases.
//! - [`Load`] runs clients that write and read back keys while a test breaks nodes.
//!
//! Nothing here uses fixed ports, global servers or sleeps as waits: poll with [`wait_until`].
//! A missing `redis-server` makes tests fail with an install hint; they never skip.
//!
//! Set `SLOTPROXY_KEEP_TEST_DIRS=1` to keep each node's temp dir (config, logs) after the test.

mod binary;
mod cluster;
mod exercise;
mod failure;
mod http;
mod load;
pub mod mutate;
mod process;
mod proxy;
mod raw;
mod tls_client;
mod topology;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use binary::{Running, slotproxy};
pub use cluster::{NodeState, TestCluster, TestNode};
pub use exercise::{exercise_connections, wait_health_checks_reach_every_node};
pub use http::{get as http_get, http, metric};
pub use load::{Load, Seen, all_errors, check_acked, error_window, is_primary};
pub use process::{NodeAuth, StandaloneRedis, TestCa};
pub(crate) use process::{connect as process_connect, free_port, info_field};
pub use proxy::TestProxy;
pub use raw::{RawClient, assert_same_replies, encode_command, resp_frame_len, split_aggregate};
pub use tls_client::{ClientTls, redis_cli_tls};

/// How often [`wait_until`] polls its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Waits (up to 20 s) for a child process (slotproxy's binary) to exit; its exit code, stdout
/// and stderr (both piped by the caller).
pub fn finish(mut child: std::process::Child) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut waited = None;
    wait_until(Duration::from_secs(20), "the process exits", || {
        waited = child.try_wait().unwrap();
        waited.is_some()
    });
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut out).unwrap();
    }
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut err).unwrap();
    }
    (waited.and_then(|s| s.code()), out, err)
}

/// A line of `/proc/<process>/status` in bytes (`VmRSS`, `VmHWM`); `process` is a pid or
/// `self`.
pub fn proc_status_bytes(process: &str, field: &str) -> u64 {
    let path = format!("/proc/{process}/status");
    let status = std::fs::read_to_string(&path).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in {path}"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Polls `cond` every 20 ms until it returns true.
///
/// # Panics
/// When `timeout` passes first, with a message naming `what`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`wait_until`], but the condition explains why it is not met yet; the last explanation
/// is part of the panic message.
pub(crate) fn wait_for(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(()) => return,
            Err(reason) => reason,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}; last state: {last}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Finds the `redis-server` executable on `PATH`.
///
/// # Panics
/// When it is not there: the integration tests need real Redis nodes and must fail, not skip.
pub fn redis_server_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "redis-server not found on PATH: install it with `sudo apt-get install -y redis-server` \
             (the tests start real Redis Cluster nodes)"
        ),
    }
}
