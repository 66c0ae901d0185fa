//! The accept loop: one `Session` task per client, a cap on clients, and the graceful drain.
//!
//! Drain, on the shutdown signal: `Shared.draining` turns true at once (`/readyz` answers 503,
//! sessions stop reading, answer every request they already received, and close; idle ones
//! close at once); clients are still accepted for `drain_delay_ms` so that load balancers
//! notice before connections are refused; then the listeners close, and sessions get
//! `shutdown_timeout_ms` to finish before the rest are closed. A client's allowed `SHUTDOWN`
//! drains the same way without the delay.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::session::{Session, Shared};

/// Accepts clients on every listener until `shutdown` resolves or a client's allowed `SHUTDOWN`
/// notifies `shared.stop`, then drains (see the module doc) and returns once every session has
/// ended.
pub async fn serve(
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let (accepted_tx, mut accepted) = mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept(listener, accepted_tx.clone()));
    }
    drop(accepted_tx);
    let mut sessions = JoinSet::new();
    let delay = loop {
        tokio::select! {
            _ = &mut shutdown => break shared.live.load().drain_delay(),
            () = shared.stop.notified() => break Duration::ZERO,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            Some((stream, peer)) = accepted.recv() => admit(&shared, &mut sessions, stream, peer),
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
            Some((stream, peer)) = accepted.recv() => admit(&shared, &mut sessions, stream, peer),
        }
    }
    acceptors.shutdown().await;
    // Connections accepted but not yet admitted: they get the same drain as the others.
    while let Ok((stream, peer)) = accepted.try_recv() {
        admit(&shared, &mut sessions, stream, peer);
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
async fn accept(listener: TcpListener, accepted: mpsc::Sender<(TcpStream, SocketAddr)>) {
    loop {
        match listener.accept().await {
            Ok(client) => {
                if accepted.send(client).await.is_err() {
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

/// Starts a session for `stream`, or refuses it when `max_clients` are connected.
fn admit(
    shared: &Arc<Shared>,
    sessions: &mut JoinSet<()>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let max_clients = shared.live.load().session.max_clients;
    if shared.clients.fetch_add(1, Ordering::AcqRel) >= max_clients {
        shared.clients.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.clients_refused.inc();
        warn!(%peer, max_clients, "client refused: max number of clients reached");
        tokio::spawn(async move {
            let _ = stream
                .write_all(&crate::error::ReplyError::MaxClients.to_bytes())
                .await;
        });
        return;
    }
    if let Ok(local) = stream.local_addr()
        && shared.protected_mode_refuses(local, peer)
    {
        shared.clients.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.clients_refused.inc();
        info!(%peer, "client refused: protected mode (no password or user configured)");
        tokio::spawn(async move {
            let _ = stream
                .write_all(&crate::error::ReplyError::ProtectedMode.to_bytes())
                .await;
        });
        return;
    }
    shared.metrics.clients_accepted.inc();
    let (worker, runtime) = shared.workers.next();
    let session = Session::new(shared.clone(), worker);
    let guard = ClientGuard(shared.clone());
    debug!(%peer, client = session.id(), worker, "client connected");
    // The socket moves to the worker's runtime (its reactor), with the session.
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            debug!(%peer, error = %e, "client socket failed before its session started");
            return;
        }
    };
    sessions.spawn_on(
        async move {
            let id = session.id();
            match TcpStream::from_std(stream) {
                Ok(stream) => session.run(stream).await,
                Err(e) => debug!(client = id, error = %e, "client socket failed"),
            }
            debug!(client = id, "client disconnected");
            drop(guard);
        },
        runtime,
    );
}

/// Decrements the client count when a session ends, however it ends.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}
