//! Taking clients off a listening socket for a worker to register.
//!
//! A client's socket is served on a worker's runtime, not on the accept loop's. Tokio's
//! `TcpListener::accept` registers each socket with the runtime that accepts it, so moving it
//! to a worker took an `epoll_ctl` to remove it there and another to add it again: two of the
//! dozen or so system calls a connection costs in all, which count for clients that connect
//! for each request. [`Listener`] accepts sockets that no runtime has seen yet.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A listening socket whose accepted clients are not registered with any runtime.
pub(super) struct Listener {
    #[cfg(unix)]
    fd: tokio::io::unix::AsyncFd<mio::net::TcpListener>,
    #[cfg(not(unix))]
    listener: TcpListener,
}

impl Listener {
    /// Watches `listener` on the current runtime.
    ///
    /// # Errors
    /// When the socket can't be registered with the runtime's reactor.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    pub(super) fn new(listener: TcpListener) -> io::Result<Self> {
        let listener = mio::net::TcpListener::from_std(listener.into_std()?);
        // SAFETY: the mio listener owns its file descriptor, keeps it open until it is dropped
        // with the `AsyncFd`, and always answers `as_raw_fd` with it.
        let fd =
            unsafe { tokio::io::unix::AsyncFd::register(listener) }.map_err(io::Error::from)?;
        Ok(Listener { fd })
    }

    /// Watches `listener` on the current runtime.
    ///
    /// # Errors
    /// Never on this platform.
    #[cfg(not(unix))]
    pub(super) fn new(listener: TcpListener) -> io::Result<Self> {
        Ok(Listener { listener })
    }

    /// The next client: a non-blocking socket, ready for `TcpStream::from_std` on any runtime,
    /// and its address.
    ///
    /// # Errors
    /// What `accept` fails with (out of file descriptors, and the like).
    #[cfg(unix)]
    pub(super) async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.fd.readable().await?;
            // `accept4` with `SOCK_NONBLOCK`; on `WouldBlock` the readiness is cleared and
            // awaited again.
            if let Ok(accepted) = ready.try_io(|fd| fd.get_ref().accept()) {
                return accepted.map(|(stream, peer)| (stream.into(), peer));
            }
        }
    }

    /// The next client: a non-blocking socket, ready for `TcpStream::from_std` on any runtime,
    /// and its address.
    ///
    /// # Errors
    /// What `accept` fails with (out of file descriptors, and the like).
    #[cfg(not(unix))]
    pub(super) async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        Ok((stream.into_std()?, peer))
    }
}
