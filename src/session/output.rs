//! The client's output: reply bytes waiting for its socket, written without copying large ones.
//!
//! Small replies are copied into one buffer, so a pipeline's replies leave in one `write`. A
//! large reply (a big value a node sent) is kept as the node's own bytes and written from
//! there with the buffered bytes around it in one vectored write: copying 100 KB into the
//! output buffer, growing it, and freeing it again after the write cost more than the write
//! itself. The buffer is kept between writes (up to `KEEP_BYTES`), so a client that reads
//! values in a loop doesn't fault fresh pages in for every reply.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::server::client_stream::ClientWriter;

/// Pushes moved from the inbox to the output buffer stop at this much unsent output (the rest
/// waits in the inbox, where it counts toward the same limit).
pub(super) const DRAIN_BYTES: usize = 64 * 1024;

/// Replies at least this large are written from the node's bytes instead of being copied.
const ZERO_COPY_BYTES: usize = 16 * 1024;
/// A buffer that grew past this (a long pipeline's replies) is freed once written.
const KEEP_BYTES: usize = 256 * 1024;
/// Most pieces one vectored write takes (the kernel's limit is 1024).
const MAX_SLICES: usize = 64;

/// Bytes owed to the client, in order.
#[derive(Debug, Default)]
pub(super) struct Output {
    /// Pieces before `buf`, in order: large replies, and the buffered bytes that came before
    /// each of them.
    queued: VecDeque<Bytes>,
    /// Total length of `queued`.
    queued_len: usize,
    /// Copied bytes after the last queued piece.
    buf: BytesMut,
}

impl Output {
    /// Bytes not written yet.
    pub(super) fn len(&self) -> usize {
        self.queued_len + self.buf.len()
    }

    /// True when everything has been written.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a copy of `bytes`.
    pub(super) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends `bytes`, without copying them when they are large.
    pub(super) fn push(&mut self, bytes: Bytes) {
        if bytes.len() < ZERO_COPY_BYTES {
            return self.buf.extend_from_slice(&bytes);
        }
        if !self.buf.is_empty() {
            let before = self.buf.split().freeze();
            self.queue(before);
        }
        self.queue(bytes);
    }

    /// The buffer after everything queued, for replies built in place.
    /// Frees what is kept for reuse once nothing waits to be written (an idle client).
    pub(super) fn trim(&mut self) {
        if self.is_empty() {
            self.buf = BytesMut::new();
            self.queued = VecDeque::new();
        }
    }

    pub(super) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The bytes appended since `len()` was `mark`, if they were all copied (replies the proxy
    /// builds itself always are).
    pub(super) fn since(&self, mark: usize) -> &[u8] {
        let start = mark.saturating_sub(self.queued_len).min(self.buf.len());
        &self.buf[start..]
    }

    /// Drops the bytes appended since `len()` was `mark`, if they were all copied (replies the
    /// proxy builds itself always are).
    pub(super) fn truncate(&mut self, mark: usize) {
        let keep = mark.saturating_sub(self.queued_len).min(self.buf.len());
        self.buf.truncate(keep);
    }

    fn queue(&mut self, bytes: Bytes) {
        self.queued_len += bytes.len();
        self.queued.push_back(bytes);
    }

    /// Writes as much as the socket takes now, without waiting; returns the bytes written.
    ///
    /// # Errors
    /// The socket failed (a `WouldBlock` is not an error: it just took less).
    pub(super) fn write_to(&mut self, writer: &ClientWriter) -> std::io::Result<usize> {
        let mut total = 0;
        while !self.is_empty() {
            let result = if self.queued.is_empty() {
                writer.try_write(&self.buf)
            } else {
                let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_SLICES);
                slices.extend(
                    self.queued
                        .iter()
                        .take(MAX_SLICES - 1)
                        .map(|piece| IoSlice::new(piece)),
                );
                if slices.len() < MAX_SLICES - 1 && !self.buf.is_empty() {
                    slices.push(IoSlice::new(&self.buf));
                }
                writer.try_write_vectored(&slices)
            };
            match result {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(n);
                    total += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => return Err(e),
            }
        }
        if self.buf.capacity() > KEEP_BYTES {
            self.buf = BytesMut::new();
        } else {
            // Keeps the allocation: the next replies are written into the same pages.
            self.buf.clear();
        }
        Ok(total)
    }

    /// Drops the first `n` bytes, which the socket took.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queued.front_mut() else {
                self.buf.advance(n);
                return;
            };
            let taken = n.min(front.len());
            front.advance(taken);
            self.queued_len -= taken;
            n -= taken;
            if front.is_empty() {
                self.queued.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(output: &Output) -> Vec<u8> {
        let mut all: Vec<u8> = output.queued.iter().flat_map(|b| b.to_vec()).collect();
        all.extend_from_slice(&output.buf);
        all
    }

    #[test]
    fn small_and_large_replies_keep_their_order() {
        let mut output = Output::default();
        let large = Bytes::from(vec![b'x'; ZERO_COPY_BYTES]);
        output.extend_from_slice(b"+OK\r\n");
        output.push(large.clone());
        output.push(Bytes::from_static(b":1\r\n"));
        let mut expected = b"+OK\r\n".to_vec();
        expected.extend_from_slice(&large);
        expected.extend_from_slice(b":1\r\n");
        assert_eq!(contents(&output), expected);
        assert_eq!(output.len(), expected.len());
        // The large reply is the node's own bytes, not a copy.
        assert_eq!(output.queued[1].as_ptr(), large.as_ptr());
    }

    #[test]
    fn advance_crosses_pieces() {
        let mut output = Output::default();
        output.extend_from_slice(b"ab");
        output.push(Bytes::from(vec![b'x'; ZERO_COPY_BYTES]));
        output.extend_from_slice(b"cd");
        output.advance(3);
        assert_eq!(output.len(), ZERO_COPY_BYTES + 1);
        output.advance(ZERO_COPY_BYTES - 1);
        assert_eq!(contents(&output), b"cd");
        output.advance(1);
        assert_eq!(contents(&output), b"d");
    }

    #[test]
    fn since_reads_what_was_built_after_a_mark() {
        let mut output = Output::default();
        output.push(Bytes::from(vec![b'x'; ZERO_COPY_BYTES]));
        let mark = output.len();
        output.buf_mut().extend_from_slice(b"-ERR no\r\n");
        assert_eq!(output.since(mark), b"-ERR no\r\n");
    }

    #[tokio::test]
    async fn writes_everything_in_order_over_a_socket() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (_, writer) = crate::server::ClientStream::Plain(client).into_split();
        let mut output = Output::default();
        let mut expected = Vec::new();
        for i in 0..100u8 {
            let piece = vec![
                i;
                if i % 3 == 0 {
                    ZERO_COPY_BYTES + usize::from(i)
                } else {
                    7
                }
            ];
            expected.extend_from_slice(&piece);
            output.push(Bytes::from(piece));
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            got
        });
        while !output.is_empty() {
            writer.writable().await.unwrap();
            output.write_to(&writer).unwrap();
        }
        drop(writer);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
