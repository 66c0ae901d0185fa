//! The accept loop: one `Session` task per client, a cap on clients, and the graceful drain.
//!
//! Drain, on the shutdown signal: `Shared.draining` turns true at once (`/readyz` answers 503,
//! sessions stop reading, answer every request they already received, and close; idle ones
//! close at once); clients are still accepted for `drain_delay_ms` so that load balancers
//! notice before connections are refused; then the listeners close, and sessions get
//! `shutdown_timeout_ms` to finish before the rest are closed. A client's allowed `SHUTDOWN`
//! drains the same way without the delay.
//!
//! Clients of a `tls_listen` address run their TLS handshake on their worker, within
//! `backend.connect_timeout_ms`, before their session starts (see [`tls`]); the accept loop
//! never waits for one.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::ReplyError;
use crate::session::{Session, Shared};

mod accept;
pub mod client_stream;
pub mod tls;

pub use client_stream::ClientStream;

/// How often sessions that ended are taken off the accept loop's set (their tasks' memory is
/// freed then).
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// An accepted client: its socket (not yet registered with any runtime), its address, and
/// whether it came on a TLS listener.
type Accepted = (std::net::TcpStream, SocketAddr, bool);

/// Accepts clients on every listener (plain `listeners`, and `tls_listeners` whose clients
/// shake hands with `shared.config.tls.server` first) until `shutdown` resolves or a client's
/// allowed `SHUTDOWN` notifies `shared.stop`, then drains (see the module doc) and returns once
/// every session has ended.
pub async fn serve(
    listeners: Vec<TcpListener>,
    tls_listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let (accepted_tx, mut accepted) = mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept(listener, false, accepted_tx.clone()));
    }
    for listener in tls_listeners {
        acceptors.spawn(accept(listener, true, accepted_tx.clone()));
    }
    drop(accepted_tx);
    let mut sessions = JoinSet::new();
    // Ended sessions are collected now and then rather than awaited: awaiting them would have
    // each one that ends on a worker wake this thread (an eventfd write, and a wake-up).
    let mut collect = tokio::time::interval(COLLECT_EVERY);
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let delay = loop {
        tokio::select! {
            _ = &mut shutdown => break shared.live.load().drain_delay(),
            () = shared.stop.notified() => break Duration::ZERO,
            _ = collect.tick() => while sessions.try_join_next().is_some() {},
            Some(client) = accepted.recv() => admit(&shared, &mut sessions, client),
        }
    };
    shared.draining.send_replace(true);
    // Sessions registered from here on see the flag themselves (`Session::run`).
    shared.registry.ring_all(crate::alarm::Bells::DRAIN);
    info!(
        drain_delay_ms = delay.as_millis() as u64,
        clients = shared.clients.load(Ordering::Relaxed),
        "draining: /readyz answers 503; the listener closes after the drain delay"
    );
    let close_at = Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(close_at) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            Some(client) = accepted.recv() => admit(&shared, &mut sessions, client),
        }
    }
    acceptors.shutdown().await;
    // Connections accepted but not yet admitted: they get the same drain as the others.
    while let Ok(client) = accepted.try_recv() {
        admit(&shared, &mut sessions, client);
    }
    info!("stopped accepting clients");
    let timeout = shared.live.load().shutdown_timeout();
    let finished = tokio::time::timeout(timeout, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        warn!(
            clients = sessions.len(),
            shutdown_timeout_ms = timeout.as_millis() as u64,
            "closing the clients still connected after the shutdown timeout"
        );
        sessions.shutdown().await;
    }
}

/// Accepts on one listener until the task is aborted, handing each client to the main loop.
async fn accept(listener: TcpListener, tls: bool, accepted: mpsc::Sender<Accepted>) {
    let listener = match accept::Listener::new(listener) {
        Ok(listener) => listener,
        Err(e) => return warn!(error = %e, "could not watch a listening socket"),
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if accepted.send((stream, peer, tls)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Starts a session for `stream`, or refuses it when `max_clients` are connected or protected
/// mode applies (on a TLS listener, the refusal is sent after the handshake, as redis does).
fn admit(shared: &Arc<Shared>, sessions: &mut JoinSet<()>, client: Accepted) {
    let (stream, peer, tls) = client;
    let local = stream.local_addr().ok();
    let max_clients = shared.live.load().session.max_clients;
    let refusal = if shared.clients.fetch_add(1, Ordering::AcqRel) >= max_clients {
        warn!(%peer, max_clients, "client refused: max number of clients reached");
        Some(ReplyError::MaxClients)
    } else if let Some(local) = local
        && shared.protected_mode_refuses(local, peer)
    {
        info!(%peer, "client refused: protected mode (no password or user configured)");
        Some(ReplyError::ProtectedMode)
    } else {
        None
    };
    let tls = if tls {
        // From the live config: a reload re-reads the certificate files (rotation).
        let Some(server) = shared.live.load().tls.server.clone() else {
            // `run_with` loads it whenever there are TLS listeners.
            warn!(%peer, "TLS client refused: no [tls] certificate loaded");
            shared.clients.fetch_sub(1, Ordering::AcqRel);
            return;
        };
        Some(server)
    } else {
        None
    };
    let handshake_timeout = shared.live.load().backend.connect_timeout();
    if let Some(refusal) = refusal {
        shared.clients.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.clients_refused.inc();
        refuse(shared, stream, peer, tls, &refusal, handshake_timeout);
        return;
    }
    shared.metrics.clients_accepted.inc();
    let (worker, runtime) = shared.workers.next();
    let id = shared.client_id();
    let guard = ClientGuard(shared.clone());
    debug!(%peer, client = id, worker, tls = tls.is_some(), "client connected");
    // The socket is registered with the worker's runtime (its reactor), with the session.
    sessions.spawn_on(
        async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => return debug!(client = id, error = %e, "client socket failed"),
            };
            let stream = match tls {
                None => ClientStream::Plain(stream),
                // Boxed: the handshake's state (1.6 KB) would otherwise size every client's
                // task, TLS or not, for its whole life.
                Some(tls) => match Box::pin(tls.accept(stream, handshake_timeout)).await {
                    Ok(stream) => stream,
                    Err(failure) => return failure.record(&guard.0.metrics, peer, id),
                },
            };
            // Made only now and moved straight into `run`: a session made before the handshake
            // would stay in this task's state beside `run`'s own copy (1.3 KB per client).
            let session = Box::new(Session::new(guard.0.clone(), worker, id));
            session.run(stream, peer, local).await;
            debug!(client = id, "client disconnected");
            drop(guard);
        },
        runtime,
    );
}

/// Sends `refusal` to a client that is not admitted, then closes: at once in plain text; over
/// TLS after the handshake, which runs on a worker as for an admitted client.
fn refuse(
    shared: &Arc<Shared>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tls::TlsServer>,
    refusal: &ReplyError,
    handshake_timeout: Duration,
) {
    let bytes = refusal.to_bytes();
    let Some(tls) = tls else {
        tokio::spawn(async move {
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            let (_, mut writer) = ClientStream::Plain(stream).into_split();
            let _ = writer.write_all_and_close(&bytes).await;
        });
        return;
    };
    let metrics = shared.metrics.clone();
    shared.workers.next().1.spawn(async move {
        let Ok(stream) = TcpStream::from_std(stream) else {
            return;
        };
        match tls.accept(stream, handshake_timeout).await {
            Ok(stream) => {
                let (_, mut writer) = stream.into_split();
                let _ = writer.write_all_and_close(&bytes).await;
            }
            Err(failure) => failure.record(&metrics, peer, 0),
        }
    });
}

/// Decrements the client count when a session ends, however it ends.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}
