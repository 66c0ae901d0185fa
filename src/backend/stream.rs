//! `NodeStream`: a connection to a node, plain TCP or TLS, and its read and write halves.
//!
//! An enum rather than a boxed trait object, so the plain-TCP path stays what it was: its halves
//! are tokio's owned TCP halves (no lock between them); only TLS pays for `tokio::io::split`.
//! TLS buffers the records it encrypts: writers call `flush` after each batch (a no-op on TCP).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;

/// A connection to a node.
#[derive(Debug)]
pub enum NodeStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (`[backend.tls] enabled`).
    Tls(Box<TlsStream<TcpStream>>),
}

/// The reading half of a [`NodeStream`].
#[derive(Debug)]
pub enum NodeReader {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS.
    Tls(ReadHalf<Box<TlsStream<TcpStream>>>),
}

/// The writing half of a [`NodeStream`].
#[derive(Debug)]
pub enum NodeWriter {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(WriteHalf<Box<TlsStream<TcpStream>>>),
}

impl NodeStream {
    /// Splits the stream so one task can read while it writes.
    pub fn into_split(self) -> (NodeReader, NodeWriter) {
        match self {
            NodeStream::Plain(stream) => {
                let (reader, writer) = stream.into_split();
                (NodeReader::Plain(reader), NodeWriter::Plain(writer))
            }
            NodeStream::Tls(stream) => {
                let (reader, writer) = tokio::io::split(stream);
                (NodeReader::Tls(reader), NodeWriter::Tls(writer))
            }
        }
    }
}

impl NodeWriter {
    /// True when written bytes may wait in the stream until `flush` (TLS records).
    pub fn buffers(&self) -> bool {
        matches!(self, NodeWriter::Tls(_))
    }
}

/// Forwards the `AsyncRead`/`AsyncWrite` calls of an enum to its variant.
macro_rules! delegate {
    ($self:ident, $ty:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            $ty::Plain($s) => $call,
            $ty::Tls($s) => $call,
        }
    };
}

impl AsyncRead for NodeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, NodeStream, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for NodeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, NodeStream, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, NodeStream, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, NodeStream, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for NodeReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, NodeReader, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for NodeWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, NodeWriter, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, NodeWriter, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, NodeWriter, s => Pin::new(s).poll_shutdown(cx))
    }
}
