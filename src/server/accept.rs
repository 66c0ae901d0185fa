//! Taking clients off a listening socket for a worker to register.
//!
//! A client's socket is served on a worker's runtime, not on the accept loop's. Tokio's
//! `TcpListener::accept` registers each socket with the runtime that accepts it, so moving it
//! to a worker took an `epoll_ctl` to remove it there and another to add it again: two of the
//! dozen or so system calls a connection costs in all, which count for clients that connect
//! for each request. [`Listener`] accepts sockets that no runtime has seen yet.
//!
//! Clients get `TCP_NODELAY`, as redis-server gives them: a reply must not wait for the
//! client's acknowledgement of the previous one (Nagle). On Linux an accepted socket inherits
//! it from the listening socket, so it is set once there instead of once per client.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A listening socket whose accepted clients are not registered with any runtime.
pub(super) struct Listener {
    #[cfg(unix)]
    fd: tokio::io::unix::AsyncFd<mio::net::TcpListener>,
    #[cfg(not(unix))]
    listener: TcpListener,
    /// Accepted sockets have `TCP_NODELAY` from the listening socket.
    inherits_no_delay: bool,
}

impl Listener {
    /// Watches `listener` on the current runtime.
    ///
    /// # Errors
    /// When the socket can't be registered with the runtime's reactor.
    #[cfg(unix)]
    #[allow(unsafe_code)]
    pub(super) fn new(listener: TcpListener) -> io::Result<Self> {
        let inherits_no_delay = cfg!(target_os = "linux")
            && socket2::SockRef::from(&listener)
                .set_tcp_nodelay(true)
                .is_ok();
        let listener = mio::net::TcpListener::from_std(listener.into_std()?);
        // SAFETY: the mio listener owns its file descriptor, keeps it open until it is dropped
        // with the `AsyncFd`, and always answers `as_raw_fd` with it.
        let fd =
            unsafe { tokio::io::unix::AsyncFd::register(listener) }.map_err(io::Error::from)?;
        Ok(Listener {
            fd,
            inherits_no_delay,
        })
    }

    /// Watches `listener` on the current runtime.
    ///
    /// # Errors
    /// Never on this platform.
    #[cfg(not(unix))]
    pub(super) fn new(listener: TcpListener) -> io::Result<Self> {
        Ok(Listener {
            listener,
            inherits_no_delay: false,
        })
    }

    /// The next client: a non-blocking socket with `TCP_NODELAY`, ready for
    /// `TcpStream::from_std` on any runtime, and its address.
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
                let (stream, peer) = accepted?;
                return Ok((self.no_delay(stream.into()), peer));
            }
        }
    }

    /// The next client: a non-blocking socket with `TCP_NODELAY`, ready for
    /// `TcpStream::from_std` on any runtime, and its address.
    ///
    /// # Errors
    /// What `accept` fails with (out of file descriptors, and the like).
    #[cfg(not(unix))]
    pub(super) async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        Ok((self.no_delay(stream.into_std()?), peer))
    }

    #[cfg(test)]
    fn local_addr(&self) -> SocketAddr {
        #[cfg(unix)]
        let addr = self.fd.get_ref().local_addr();
        #[cfg(not(unix))]
        let addr = self.listener.local_addr();
        addr.unwrap()
    }

    /// `stream` with `TCP_NODELAY`, set now unless it came with it.
    fn no_delay(&self, stream: std::net::TcpStream) -> std::net::TcpStream {
        if !self.inherits_no_delay {
            let _ = stream.set_nodelay(true);
        }
        stream
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[tokio::test]
    async fn an_accepted_client_is_non_blocking_with_no_delay_and_its_address() {
        let listener = Listener::new(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let addr = listener.local_addr();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (mut stream, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(stream.nodelay().unwrap(), "TCP_NODELAY");
        let mut buf = [0; 1];
        let read = stream.read(&mut buf).unwrap_err();
        assert_eq!(read.kind(), io::ErrorKind::WouldBlock, "non-blocking");
        // Usable on a runtime that never saw it.
        let stream = tokio::net::TcpStream::from_std(stream).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), peer);
    }
}
