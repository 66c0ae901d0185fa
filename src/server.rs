//! The accept loop: one `Session` task per client, a cap on clients, stop on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::session::{Session, Shared};

/// Accepts clients until `shutdown` resolves or a client's allowed `SHUTDOWN` notifies
/// `shared.stop`. Sessions already running finish on their own.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let max_clients = shared.config.session.max_clients;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            () = shared.stop.notified() => break,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if shared.clients.fetch_add(1, Ordering::AcqRel) >= max_clients {
            shared.clients.fetch_sub(1, Ordering::AcqRel);
            warn!(%peer, max_clients, "client refused: max number of clients reached");
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            continue;
        }
        if let Ok(local) = stream.local_addr()
            && crate::session::protected_mode_refuses(&shared, local, peer)
        {
            shared.clients.fetch_sub(1, Ordering::AcqRel);
            info!(%peer, "client refused: protected mode (no password or user configured)");
            tokio::spawn(async move {
                let _ = stream.write_all(crate::session::PROTECTED_MODE).await;
            });
            continue;
        }
        let session = Session::new(shared.clone());
        let guard = ClientGuard(shared.clone());
        debug!(%peer, client = session.id(), "client connected");
        tokio::spawn(async move {
            let id = session.id();
            session.run(stream).await;
            debug!(client = id, "client disconnected");
            drop(guard);
        });
    }
    info!("stopped accepting clients");
}

/// Decrements the client count when a session ends, however it ends.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}
