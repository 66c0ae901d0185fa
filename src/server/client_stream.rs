//! `ClientStream`: a client's connection, plain TCP or TLS, split into the reading and writing
//! halves a session uses.
//!
//! The session writes without waiting (`try_write`, `try_write_vectored`: a `WouldBlock` means
//! the socket is full) and waits for readiness (`writable`), as redis-server does; it never
//! blocks on output. These halves keep that for TLS too: rustls runs on the session's own
//! task over the non-blocking socket (no extra task, no copy through a pipe). The plain path is
//! tokio's owned TCP halves behind one enum match: no boxing, no lock.
//!
//! With TLS, bytes the writer accepted may wait in rustls as encrypted records until the
//! socket takes them: `pending` says so, and the session waits for `writable` and calls
//! `try_flush` until it is false.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use rustls::ServerConnection;
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Plaintext a TLS read takes at most, when the buffer offers less (never 0 for a live
/// connection: 0 means end of stream).
const MIN_TLS_READ: usize = 4 * 1024;
/// How long closing a TLS connection waits for its last records (and `close_notify`) to be
/// written to a client that does not read.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// A client's connection.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain TCP (`listen`).
    Plain(TcpStream),
    /// TLS over TCP (`tls_listen`), after the handshake.
    Tls(Arc<TlsConnection>),
}

/// A TLS connection shared by its two halves. Both run on the session's task, so the lock is
/// never contended; it is never held across an `.await`.
pub struct TlsConnection {
    tcp: TcpStream,
    conn: Mutex<ServerConnection>,
}

impl std::fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// The reading half of a [`ClientStream`].
#[derive(Debug)]
pub enum ClientReader {
    /// Plain TCP; `first` until the first read, whose bytes are checked for a TLS handshake.
    Plain {
        /// The socket's reading half.
        half: OwnedReadHalf,
        /// No byte read yet.
        first: bool,
    },
    /// TLS.
    Tls(Arc<TlsConnection>),
}

/// The writing half of a [`ClientStream`].
#[derive(Debug)]
pub enum ClientWriter {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(Arc<TlsConnection>),
}

impl ClientStream {
    pub(super) fn tls(tcp: TcpStream, conn: ServerConnection) -> Self {
        ClientStream::Tls(Arc::new(TlsConnection {
            tcp,
            conn: Mutex::new(conn),
        }))
    }

    /// The TCP socket under the connection (addresses, options, file descriptor).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(tcp) => tcp,
            ClientStream::Tls(tls) => &tls.tcp,
        }
    }

    /// Splits the stream so the session can read while it writes.
    pub fn into_split(self) -> (ClientReader, ClientWriter) {
        match self {
            ClientStream::Plain(tcp) => {
                let (half, writer) = tcp.into_split();
                (
                    ClientReader::Plain { half, first: true },
                    ClientWriter::Plain(writer),
                )
            }
            ClientStream::Tls(tls) => (ClientReader::Tls(tls.clone()), ClientWriter::Tls(tls)),
        }
    }
}

impl ClientReader {
    /// Reads what has arrived into `buf`, or registers `cx` to be woken when something does;
    /// `Ok(0)` is the end of the client's stream. A `buf` with no room gets `chunk` bytes only
    /// once something has arrived, so an idle client holds no read buffer.
    ///
    /// A poll function rather than an `async fn`: the session waits on it beside its other
    /// events in every loop pass, and a future's state would be part of every idle client's
    /// memory.
    ///
    /// # Errors
    /// The socket failed, or (TLS) the client sent a bad record.
    pub fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            let readiness = match self {
                ClientReader::Plain { half, .. } => {
                    let tcp: &TcpStream = (*half).as_ref();
                    tcp.poll_read_ready(cx)
                }
                // Plaintext rustls already decrypted comes before any wait.
                ClientReader::Tls(tls) => match tls.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => tls.tcp.poll_read_ready(cx),
                    result => return Poll::Ready(result),
                },
            };
            ready!(readiness)?;
            match self {
                ClientReader::Plain { half, first } => {
                    let start = buf.len();
                    let read = if buf.capacity() == buf.len() {
                        // Readiness may be stale (after a read that filled the buffer): look
                        // first, so a client with nothing to send gets no buffer.
                        let mut look = [0u8; 512];
                        read_draining(half, look.len(), || half.try_read(&mut look)).inspect(|&n| {
                            buf.reserve(chunk.max(n));
                            buf.extend_from_slice(&look[..n]);
                        })
                    } else {
                        let room = buf.capacity() - buf.len();
                        read_draining(half, room, || half.try_read_buf(buf))
                    };
                    match read {
                        // Readiness was stale; the next poll registers `cx`.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Poll::Ready(Err(e)),
                        Ok(n) => {
                            if *first && n > 0 {
                                *first = false;
                                super::tls::log_tls_on_plain_port(&buf[start..], || {
                                    half.peer_addr().ok()
                                });
                            }
                            return Poll::Ready(Ok(n));
                        }
                    }
                }
                ClientReader::Tls(_) => continue,
            }
        }
    }

    /// Reads what has arrived into `buf` without waiting (`WouldBlock` when nothing has).
    ///
    /// # Errors
    /// As [`ClientReader::poll_read_buf`], and `WouldBlock`.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ClientReader::Plain { half, .. } => half.try_read_buf(buf),
            ClientReader::Tls(tls) => tls.try_read_buf(buf),
        }
    }
}

/// Runs `read`, a read into `room` bytes from `half`. A read that leaves some of the room
/// unused took everything that had arrived, so the socket's readiness is cleared with it:
/// otherwise the next poll would learn that from a read failing `WouldBlock`, one wasted system
/// call per request for a client that waits for each reply. (The reactor is edge-triggered:
/// bytes that arrive after this read make the socket ready again.)
fn read_draining(
    half: &OwnedReadHalf,
    room: usize,
    read: impl FnOnce() -> io::Result<usize>,
) -> io::Result<usize> {
    let tcp: &TcpStream = half.as_ref();
    let mut got = 0;
    let result = tcp.try_io(Interest::READABLE, || {
        got = read()?;
        match got > 0 && got < room {
            // Tells `try_io` to clear the readiness; the bytes are returned below.
            true => Err(io::ErrorKind::WouldBlock.into()),
            false => Ok(got),
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

impl ClientWriter {
    /// Writes what the socket takes now (`WouldBlock` when it takes nothing).
    ///
    /// # Errors
    /// The socket failed, or `WouldBlock`.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientWriter::Plain(half) => half.try_write(buf),
            ClientWriter::Tls(tls) => tls.try_write_vectored(&[IoSlice::new(buf)]),
        }
    }

    /// [`ClientWriter::try_write`] from several buffers in order.
    ///
    /// # Errors
    /// As [`ClientWriter::try_write`].
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            ClientWriter::Plain(half) => half.try_write_vectored(bufs),
            ClientWriter::Tls(tls) => tls.try_write_vectored(bufs),
        }
    }

    /// True while accepted bytes wait to be written to the socket (TLS records); always false
    /// on plain TCP.
    pub fn pending(&self) -> bool {
        match self {
            ClientWriter::Plain(_) => false,
            ClientWriter::Tls(tls) => tls.lock().wants_write(),
        }
    }

    /// Writes pending TLS records the socket takes now; a full socket is not an error.
    ///
    /// # Errors
    /// The socket failed.
    pub fn try_flush(&self) -> io::Result<()> {
        match self {
            ClientWriter::Plain(_) => Ok(()),
            ClientWriter::Tls(tls) => match tls.flush_records(&mut tls.lock()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                result => result,
            },
        }
    }

    /// Waits until the socket may take more.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// Ready when the socket may take more, else registers `cx` (see
    /// [`ClientReader::poll_read_buf`] for why the session polls).
    ///
    /// # Errors
    /// The socket failed.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientWriter::Plain(half) => half.as_ref().poll_write_ready(cx),
            ClientWriter::Tls(tls) => {
                // rustls takes plaintext while its records are written; only those wait.
                if tls.lock().wants_write() {
                    tls.tcp.poll_write_ready(cx)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    /// Ends the client's stream: a TCP FIN; with TLS, `close_notify` and the records still
    /// pending first (waiting at most `CLOSE_FLUSH_TIMEOUT` for a client that does not read).
    ///
    /// # Errors
    /// The socket failed.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            ClientWriter::Plain(half) => half.shutdown().await,
            ClientWriter::Tls(tls) => {
                tls.lock().send_close_notify();
                let flush = async {
                    loop {
                        let flushed = tls.flush_records(&mut tls.lock());
                        match flushed {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                tls.tcp.writable().await?;
                            }
                            result => return result,
                        }
                    }
                };
                tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush)
                    .await
                    .unwrap_or(Ok(()))
            }
        }
    }

    /// Writes all of `bytes` (a refusal before any session), waiting as needed, then closes.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn write_all_and_close(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.writable().await?;
            match self.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.shutdown().await
    }
}

impl TlsConnection {
    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        // A panic while holding it would have ended the session's task already.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes pending records until none are left (`Ok`) or the socket is full (`WouldBlock`).
    fn flush_records(&self, conn: &mut ServerConnection) -> io::Result<()> {
        while conn.wants_write() {
            if conn.write_tls(&mut TryIo(&self.tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Decrypts what has arrived into `buf`: the plaintext rustls holds first, then records
    /// from the socket until it has none or `buf`'s spare room is filled.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let want = (buf.capacity() - buf.len()).max(MIN_TLS_READ);
        let mut conn = self.lock();
        let mut total = 0;
        loop {
            let mut reader = conn.reader();
            match reader.fill_buf() {
                // `close_notify`: the end of the stream, after what was already taken.
                Ok([]) => return Ok(total),
                Ok(plain) => {
                    let n = plain.len().min(want - total);
                    buf.extend_from_slice(&plain[..n]);
                    reader.consume(n);
                    total += n;
                    if total == want {
                        return Ok(total);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The client closed TCP without `close_notify` (most clients do): the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(total),
                Err(e) => return Err(e),
            }
            match conn.read_tls(&mut TryIo(&self.tcp)) {
                // TCP's end: the next `fill_buf` reports it, after any plaintext left.
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        // Best effort: the alert tells the client why.
                        let _ = conn.write_tls(&mut TryIo(&self.tcp));
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    // Records rustls answers with (a key update): sent when the socket takes
                    // them now, else with the next reply.
                    match self.flush_records(&mut conn) {
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                        _ => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && total > 0 => {
                    return Ok(total);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts what the buffers hold, as much as rustls takes while its records can be
    /// written; `WouldBlock` while earlier records still wait for the socket.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut conn = self.lock();
        self.flush_records(&mut conn)?;
        let n = conn.writer().write_vectored(bufs)?;
        match self.flush_records(&mut conn) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

/// `Read`/`Write` over a tokio socket without waiting: `WouldBlock` when it has nothing or is
/// full (and tokio then waits for the next readiness event).
pub(super) struct TryIo<'a>(pub(super) &'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
