//! What the `slotproxy` binary does around [`crate::run_with`]: logging set-up, the runtime,
//! binding listeners, the startup line, signals, and the `slotproxy health` probe. Kept in the
//! library so that `main.rs` stays flags and nothing else.

use std::io::{IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use tracing::info;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

use crate::Process;
use crate::config::redact::redact_url;
use crate::config::{Config, LogFormat};
use crate::error::{ConfigError, Error};
use crate::reload::{ReadConfig, Reloader, SetLogFilter};
use crate::workers::Workers;

/// Installs the global log subscriber: `filter` (tracing env-filter syntax), in `format`, on
/// stdout; ANSI colours only when stdout is a terminal and `NO_COLOR` is unset or empty.
/// Returns the function that swaps the filter on reload.
///
/// # Errors
/// `ConfigError::Invalid` for `log` when the filter does not parse.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<Box<SetLogFilter>, ConfigError> {
    let filter = parse_filter(filter)?;
    let (filter, handle) = reload::Layer::new(filter);
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(colour))
            .init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_ansi(false))
            .init(),
    }
    Ok(Box::new(move |text: &str| {
        let filter = parse_filter(text).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    }))
}

fn parse_filter(text: &str) -> Result<EnvFilter, ConfigError> {
    EnvFilter::try_new(text).map_err(|e| ConfigError::Invalid {
        field: "log",
        reason: e.to_string(),
    })
}

/// Builds the runtime and `config.threads()` workers (see [`crate::workers`]), binds the client and admin listeners,
/// logs the startup line, and runs the proxy until SIGTERM or SIGINT (then drains).
/// `read` re-reads the configuration on SIGHUP and `POST /reload` (`None`: no config file).
///
/// # Errors
/// Binding a listener or starting the runtime failed, or the proxy stopped with an error.
pub fn serve(
    config: Config,
    read: Option<Box<ReadConfig>>,
    set_log: Box<SetLogFilter>,
) -> Result<(), Error> {
    let threads = config.threads();
    let runtime_error = |source| Error::Listen {
        addr: "the tokio runtime".into(),
        source,
    };
    // The main thread runs what every session shares (refresher, health checks, pub/sub hub,
    // admin listener, accept loop); clients run on the workers. With one thread, everything
    // runs on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(runtime_error)?;
    // Installed before anything that may take a while (workers, binding, the seeds' first
    // answers): a SIGTERM at any moment from here on is a clean shutdown, never the default
    // action that kills the process.
    let signals = {
        let _entered = runtime.enter();
        ShutdownSignals::install()
    };
    let (workers, worker_threads) = if threads > 1 {
        let (workers, worker_threads) = Workers::start(threads).map_err(runtime_error)?;
        (Some(workers), Some(worker_threads))
    } else {
        (None, None)
    };
    let result = runtime.block_on(async {
        let mut listeners = Vec::new();
        for addr in config.listen_addrs()? {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen {
                    addr: addr.to_string(),
                    source,
                })?;
            listeners.push(listener);
        }
        let mut tls_listeners = Vec::new();
        for addr in config.tls_listen_addrs()? {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen {
                    addr: format!("tls {addr}"),
                    source,
                })?;
            tls_listeners.push(listener);
        }
        let mut admin = None;
        if let Some(addr) = config.admin.listen_addrs()?.first() {
            admin = Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::Listen {
                        addr: format!("admin {addr}"),
                        source,
                    })?,
            );
        }
        let listening: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        let tls_listening: Vec<String> = tls_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        let admin_addr = admin
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "off".to_string(), |a| a.to_string());
        let seeds: Vec<String> = config.cluster.seeds.iter().map(|s| redact_url(s)).collect();
        info!(
            version = %env!("CARGO_PKG_VERSION"),
            listen = ?listening,
            tls_listen = ?tls_listening,
            client_certificates = config.tls.client_ca_file.is_some(),
            seeds = ?seeds,
            read_policy = ?config.read_policy,
            ack = ?config.backend.ack,
            threads,
            admin = %admin_addr,
            "slotproxy starting"
        );
        let reload = read.map(|read| Reloader {
            read,
            set_log: Some(set_log),
        });
        let process = Process {
            listeners,
            tls_listeners,
            admin,
            reload,
            workers,
        };
        crate::run_with(process, config, signals.recv()).await
    });
    if let Some(worker_threads) = worker_threads {
        worker_threads.stop();
    }
    result
}

/// SIGTERM and SIGINT, listened for from the moment they are installed.
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Replaces the default actions of SIGTERM and SIGINT now (in a runtime context).
    fn install() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            ShutdownSignals {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                int: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            ShutdownSignals {}
        }
    }

    /// Resolves on the first SIGTERM or SIGINT.
    async fn recv(mut self) {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(&mut self.int) => info!("SIGINT: shutting down"),
                () = next(&mut self.term) => info!("SIGTERM: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            info!("shutting down");
        }
    }
}

/// `slotproxy health`: `GET /readyz` on the admin listener at `admin`; true on a 200.
///
/// # Errors
/// A sentence saying why the probe could not ask (bad address, connect refused, no answer).
pub fn health(admin: &str, timeout: Duration) -> Result<bool, String> {
    let addr = admin
        .to_socket_addrs()
        .map_err(|e| format!("admin address '{admin}': {e}"))?
        .next()
        .ok_or_else(|| format!("admin address '{admin}' resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connect to the admin listener {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = Vec::new();
    // The body is small (a JSON reason); bound what is read anyway.
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| format!("{addr} did not answer HTTP"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    if status == "200" {
        Ok(true)
    } else {
        eprintln!("slotproxy: not ready ({status}): {}", body.trim());
        Ok(false)
    }
}
