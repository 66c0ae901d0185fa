//! `TestProxy`: `slotproxy::run` in-process on an ephemeral port, stopped on `Drop`.
//!
//! The proxy gets its own tokio runtime on its own thread, like a separate process would: it keeps
//! serving while the test blocks (a `TestCluster` call, a sync client) on any runtime flavour.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slotproxy::config::Config;
use tokio::sync::oneshot;

use super::TestCluster;
use super::raw::RawClient;

/// Time allowed for the proxy to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Time `Drop` waits for `run` to return after the shutdown signal.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy in front of a [`TestCluster`].
pub struct TestProxy {
    /// The address clients connect to (`127.0.0.1:<ephemeral>`, also for a wildcard listener).
    pub addr: SocketAddr,
    /// The admin HTTP listener, when started with [`TestProxy::start_with_admin`].
    pub admin: Option<SocketAddr>,
    /// The TLS listener (`127.0.0.1:<ephemeral>`), when the config names a `[tls] cert_file`.
    pub tls_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    /// `run`'s result, with errors as text; the sender is dropped if `run` panics.
    done: mpsc::Receiver<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Starts a proxy with the default config, seeded with every node of `cluster`.
    pub async fn start(cluster: &TestCluster) -> TestProxy {
        Self::start_with(cluster, |_| {}).await
    }

    /// Starts a proxy whose config `edit` may change after the seeds are set, and waits until it
    /// answers PING.
    ///
    /// # Panics
    /// When `run` returns or panics before answering, or no answer comes in time.
    pub async fn start_with(cluster: &TestCluster, edit: impl FnOnce(&mut Config)) -> TestProxy {
        Self::start_inner(cluster, "127.0.0.1:0", edit, false, None).await
    }

    /// Like [`TestProxy::start_with`], plus the admin HTTP listener on an ephemeral port.
    pub async fn start_with_admin(
        cluster: &TestCluster,
        edit: impl FnOnce(&mut Config),
    ) -> TestProxy {
        Self::start_inner(cluster, "127.0.0.1:0", edit, true, None).await
    }

    /// Like [`TestProxy::start_with_admin`], reloadable: `POST /reload` (or a SIGHUP, were this a
    /// process) re-reads the returned config, which the test edits as an operator edits the file.
    pub async fn start_reloadable(
        cluster: &TestCluster,
        edit: impl FnOnce(&mut Config),
    ) -> (TestProxy, Arc<Mutex<Config>>) {
        let source = Arc::new(Mutex::new(Config::default()));
        let proxy =
            Self::start_inner(cluster, "127.0.0.1:0", edit, true, Some(source.clone())).await;
        (proxy, source)
    }

    /// As [`TestProxy::start_with`], listening on `bind` (e.g. `0.0.0.0:0` for protected mode).
    ///
    /// # Panics
    /// As [`TestProxy::start_with`].
    pub async fn start_bound(
        cluster: &TestCluster,
        bind: &str,
        edit: impl FnOnce(&mut Config),
    ) -> TestProxy {
        Self::start_inner(cluster, bind, edit, false, None).await
    }

    async fn start_inner(
        cluster: &TestCluster,
        bind: &str,
        edit: impl FnOnce(&mut Config),
        with_admin: bool,
        reload_source: Option<Arc<Mutex<Config>>>,
    ) -> TestProxy {
        init_tracing();
        let mut config = Config::default();
        config.cluster.seeds = cluster.seeds();
        let listener = std::net::TcpListener::bind(bind).expect("bind the proxy's listener");
        listener
            .set_nonblocking(true)
            .expect("make the listener non-blocking");
        let bound = listener.local_addr().expect("listener address");
        config.listen = bound.to_string();
        // Clients reach a wildcard listener through loopback.
        let addr = if bound.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], bound.port()))
        } else {
            bound
        };
        // Tests stop proxies often; load balancers are not waiting for them.
        config.drain_delay_ms = 0;
        let admin_listener = with_admin.then(|| {
            let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            admin
                .set_nonblocking(true)
                .expect("make the admin listener non-blocking");
            admin
        });
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("admin listener address"));
        config.admin.listen = admin.map(|a| a.to_string()).unwrap_or_default();
        edit(&mut config);
        // A TLS listener beside the plain one (same interface) when the test configured a
        // certificate.
        let tls_listener = config.tls.cert_file.is_some().then(|| {
            let tls = std::net::TcpListener::bind(SocketAddr::new(bound.ip(), 0))
                .expect("bind the TLS listener");
            tls.set_nonblocking(true)
                .expect("make the TLS listener non-blocking");
            tls
        });
        let tls_bound = tls_listener
            .as_ref()
            .map(|l| l.local_addr().expect("TLS listener address"));
        let tls_addr = tls_bound.map(|a| SocketAddr::new(addr.ip(), a.port()));
        if let Some(tls_bound) = tls_bound {
            config.tls_listen = tls_bound.to_string();
        }
        let reload = reload_source.map(|source| {
            *source.lock().expect("reload source") = config.clone();
            let read = move || {
                let mut next = source.lock().expect("reload source").clone();
                next.validate()?;
                next.resolve_backend_credentials()?;
                next.load_backend_tls()?;
                next.load_client_tls()?;
                Ok(next)
            };
            slotproxy::reload::Reloader {
                read: Box::new(read),
                set_log: None,
            }
        });

        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("slotproxy-{}", addr.port()))
            .spawn(move || {
                // As the binary runs with threads = 2: a main runtime for what sessions share,
                // and two worker threads with the sessions and their node connections.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the proxy's tokio runtime");
                let (workers, worker_threads) =
                    slotproxy::workers::Workers::start(2).expect("start the proxy's workers");
                let result = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the listener with tokio");
                    // A dropped sender (TestProxy gone) also means shut down.
                    let signal = async move {
                        let _ = shutdown_rx.await;
                    };
                    let admin = admin_listener.map(|l| {
                        tokio::net::TcpListener::from_std(l)
                            .expect("register the admin listener with tokio")
                    });
                    let tls_listeners = tls_listener
                        .map(|l| {
                            tokio::net::TcpListener::from_std(l)
                                .expect("register the TLS listener with tokio")
                        })
                        .into_iter()
                        .collect();
                    let process = slotproxy::Process {
                        listeners: vec![listener],
                        tls_listeners,
                        admin,
                        reload,
                        workers: Some(workers),
                    };
                    slotproxy::run_with(process, config, signal).await
                });
                worker_threads.stop();
                let _ = done_tx.send(result.map_err(|e| e.to_string()));
            })
            .expect("spawn the proxy thread");
        let mut proxy = TestProxy {
            addr,
            admin,
            tls_addr,
            shutdown: Some(shutdown),
            done,
            thread: Some(thread),
        };
        proxy.wait_ready().await;
        proxy
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = redis::Client::open(self.url()).expect("proxy url");
        let mut last_error = String::from("no attempt yet");
        while Instant::now() < deadline {
            match self.done.try_recv() {
                Ok(result) => panic!("slotproxy::run returned before answering PING: {result:?}"),
                Err(mpsc::TryRecvError::Disconnected) => {
                    panic!("slotproxy::run panicked before answering PING (see its output above)")
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let attempt = tokio::time::timeout(Duration::from_secs(2), async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await;
            match attempt {
                Ok(Ok(pong)) if pong == "PONG" => return,
                // A proxy configured with a password answers, just not to strangers.
                Ok(Err(e)) if e.to_string().contains("NOAUTH") => return,
                Ok(Ok(other)) => last_error = format!("PING answered {other:?}"),
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "PING took more than 2s".to_string(),
            }
            tokio::time::sleep(super::POLL_INTERVAL).await;
        }
        panic!(
            "proxy on {} did not answer PING within {READY_TIMEOUT:?}: {last_error}",
            self.addr
        );
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// A new async client connection to the proxy (the `redis` crate, RESP2).
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("proxy url")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connect to the proxy on {}: {e}", self.addr))
    }

    /// A new sync client connection to the proxy (10 s read/write timeouts).
    ///
    /// # Panics
    /// When the connection fails.
    pub fn sync_client(&self) -> redis::Connection {
        super::process::connect(&self.addr.to_string())
    }

    /// A new raw byte-level connection to the proxy.
    pub async fn raw_client(&self) -> RawClient {
        RawClient::connect(self.addr).await
    }

    /// Signals shutdown and waits for `run` to return; its error, as text, if any.
    ///
    /// # Panics
    /// When `run` panicked or did not return within 10 s.
    pub async fn shutdown(mut self) -> Result<(), String> {
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            match self.done.try_recv() {
                Ok(result) => return result,
                Err(mpsc::TryRecvError::Disconnected) => panic!("slotproxy::run panicked"),
                Err(mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                    tokio::time::sleep(super::POLL_INTERVAL).await;
                }
                Err(mpsc::TryRecvError::Empty) => {
                    panic!("slotproxy::run did not return within {SHUTDOWN_TIMEOUT:?} of shutdown")
                }
            }
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let Some(signal) = self.shutdown.take() else {
            return;
        };
        let _ = signal.send(());
        // Blocking here is fine: it is a std channel, and the proxy runs on its own runtime.
        let outcome = self.done.recv_timeout(SHUTDOWN_TIMEOUT);
        // A thread still running after the timeout is left behind; the panic below reports it.
        if let Some(thread) = self.thread.take()
            && (outcome.is_ok() || thread.is_finished())
        {
            let _ = thread.join();
        }
        if std::thread::panicking() {
            return;
        }
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("slotproxy::run failed: {e}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("slotproxy::run panicked"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("slotproxy::run did not return within {SHUTDOWN_TIMEOUT:?} of shutdown")
            }
        }
    }
}

/// Sends the proxy's `tracing` output to the test's captured output; `RUST_LOG` sets the filter
/// (default `slotproxy=info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("slotproxy=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
