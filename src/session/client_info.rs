//! What `CLIENT INFO`/`CLIENT LIST` and the logs say about a client beyond its id and name:
//! its addresses and socket, and the library it named (`CLIENT SETINFO`).

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::net::TcpStream;

/// What `CLIENT INFO`/`CLIENT LIST` report about a client beyond its id and name.
#[derive(Debug, Default)]
pub(super) struct ClientInfo {
    /// The client's address.
    peer: Option<SocketAddr>,
    /// The proxy address the client connected to; also the address cluster replies give.
    local: Option<SocketAddr>,
    /// The socket's file descriptor, -1 where there is none to show.
    fd: i64,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    pub(super) lib_name: Option<Bytes>,
    pub(super) lib_ver: Option<Bytes>,
}

impl ClientInfo {
    /// The client's address for logs (`?` when unknown).
    pub(super) fn peer_display(&self) -> String {
        self.peer.map_or_else(|| "?".to_owned(), |p| p.to_string())
    }

    /// The client's address, slotproxy's address it connected to, and the socket's fd.
    pub(super) fn addresses(&self) -> (Option<SocketAddr>, Option<SocketAddr>, i64) {
        (self.peer, self.local, self.fd)
    }

    /// The address cluster replies name: the one the client connected to, else the configured
    /// `listen` address.
    pub(super) fn cluster_addr(&self, listen: &str) -> SocketAddr {
        self.local
            .or_else(|| listen.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6379)))
    }

    /// Records the client's socket and its two ends when its session starts.
    pub(super) fn connected(
        &mut self,
        stream: &TcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) {
        self.peer = Some(peer);
        self.local = local;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            self.fd = i64::from(stream.as_raw_fd());
        }
        #[cfg(not(unix))]
        {
            self.fd = -1;
        }
    }
}
