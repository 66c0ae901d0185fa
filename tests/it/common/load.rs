//! `Load`: clients writing unique keys and reading back keys they wrote, through the proxy, while
//! a test breaks nodes; and what they saw, for the failover and chaos tests.
//!
//! Each client runs SET (a new key, so keys land in every slot) then GET (one of its own
//! acknowledged keys, from the middle of its history) in a loop, and records every error with
//! its time, every read that returned another value than the one written (a wrong reply, which
//! must never happen), every read that found nothing, and its slowest operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::TestProxy;

/// What one client saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Keys whose SET was acknowledged, with their value.
    pub acked: Vec<(String, u64)>,
    /// Errors, with when they happened.
    pub errors: Vec<(Instant, String)>,
    /// Reads that returned a wrong value (must stay empty).
    pub wrong: Vec<String>,
    /// Reads of an acknowledged key that found no value (a lost write, or a replica behind).
    pub missing: u64,
    /// Operations run (SETs plus GETs).
    pub ops: u64,
    /// The longest any one operation took.
    pub slowest: Duration,
}

/// Clients running until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
}

impl Load {
    /// Starts `clients` clients on their own connections; keys are `{prefix}:{client}:{n}`.
    ///
    /// Like an application configured to ride out a failover, they wait 30 s for a reply (the
    /// redis crate's default is 500 ms, which gives up before any promotion can happen).
    ///
    /// # Panics
    /// When a client can't connect.
    pub async fn start(proxy: &TestProxy, clients: usize, prefix: &str) -> Load {
        Load::start_keeping(proxy, clients, prefix, usize::MAX).await
    }

    /// As [`Load::start`], but each client keeps only about its last `keep` acknowledged keys
    /// (for hour-long runs, whose full history would grow the test process by ~64 bytes a
    /// write and hide the proxy's own memory in the RSS checks).
    ///
    /// # Panics
    /// When a client can't connect.
    pub async fn start_keeping(
        proxy: &TestProxy,
        clients: usize,
        prefix: &str,
        keep: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        let client = redis::Client::open(proxy.url()).expect("proxy url");
        let mut tasks = Vec::new();
        for n in 0..clients {
            let mut c = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap_or_else(|e| panic!("connect load client {n}: {e}"));
            let stop = stop.clone();
            let prefix = prefix.to_string();
            tasks.push(tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("{prefix}:{n}:{i}");
                    let started = Instant::now();
                    let set = redis::cmd("SET")
                        .arg(&key)
                        .arg(i)
                        .query_async::<()>(&mut c)
                        .await;
                    seen.slowest = seen.slowest.max(started.elapsed());
                    match set {
                        Ok(()) => {
                            seen.acked.push((key, i));
                            if seen.acked.len() >= keep.saturating_mul(2) {
                                seen.acked.drain(..keep);
                            }
                        }
                        Err(e) => seen
                            .errors
                            .push((Instant::now(), format!("SET {key}: {e}"))),
                    }
                    seen.ops += 1;
                    let Some((key, value)) = seen.acked.get(seen.acked.len() / 2).cloned() else {
                        continue;
                    };
                    let started = Instant::now();
                    let get = redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<u64>>(&mut c)
                        .await;
                    seen.slowest = seen.slowest.max(started.elapsed());
                    match get {
                        Ok(Some(got)) if got == value => {}
                        Ok(None) => seen.missing += 1,
                        Ok(Some(got)) => {
                            seen.wrong.push(format!("GET {key}: {got}, wrote {value}"))
                        }
                        Err(e) => seen
                            .errors
                            .push((Instant::now(), format!("GET {key}: {e}"))),
                    }
                    seen.ops += 1;
                }
                seen
            }));
        }
        Load { stop, tasks }
    }

    /// Stops the clients and collects what each saw.
    ///
    /// # Panics
    /// When a client task panicked.
    pub async fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in std::mem::take(&mut self.tasks) {
            all.push(task.await.expect("load client task"));
        }
        all
    }
}

impl Drop for Load {
    /// Stops clients that were not finished (a test that panicked): once the proxy is gone,
    /// every request fails at once, and a client looping on instant errors would never yield.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Every error of every client, oldest first.
pub fn all_errors(seen: &[Seen]) -> Vec<(Instant, String)> {
    let mut errors: Vec<(Instant, String)> =
        seen.iter().flat_map(|s| s.errors.iter().cloned()).collect();
    errors.sort_by_key(|e| e.0);
    errors
}

/// Time from the first error to the last (zero with fewer than two).
pub fn error_window(errors: &[(Instant, String)]) -> Duration {
    match (errors.first(), errors.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => Duration::ZERO,
    }
}

/// Reads every acknowledged key back through `proxy`: panics on a wrong value, and returns
/// (acknowledged, found missing).
///
/// # Panics
/// On a value other than the one acknowledged, or a failed read.
pub fn check_acked(proxy: &TestProxy, seen: &[Seen]) -> (usize, usize) {
    let mut c = proxy.sync_client();
    let (mut acked, mut lost) = (0, 0);
    for (key, value) in seen.iter().flat_map(|s| &s.acked) {
        acked += 1;
        let got: Option<u64> = redis::cmd("GET")
            .arg(key)
            .query(&mut c)
            .unwrap_or_else(|e| panic!("GET {key} after the load: {e}"));
        match got {
            Some(got) => assert_eq!(got, *value, "{key} holds another value than acknowledged"),
            None => lost += 1,
        }
    }
    (acked, lost)
}

/// True when the node at `addr` reports itself a primary.
///
/// # Panics
/// When the node can't be asked.
pub fn is_primary(addr: &str) -> bool {
    let mut conn = super::process::connect(addr);
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("INFO replication on {addr}: {e}"));
    info.contains("role:master")
}
