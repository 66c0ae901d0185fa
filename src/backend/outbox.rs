//! `Outbox`: one batch of requests on its way to a node, written as fast as the socket takes it.
//!
//! The connection task writes a batch by polling its `Outbox` among its other work instead of
//! awaiting the write to its end: while a node is slow to read (or has stopped reading and the
//! socket buffers are full), the task still reads the replies that come, and still fails the
//! connection when its oldest request passes the request timeout.
//!
//! Small payloads are copied into one buffer; a large one is kept as the client's bytes (never
//! copied) between runs of that buffer, and the runs go out with `writev`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::stream::NodeWriter;

/// Payloads this large are written as they are instead of being copied into the buffer.
const DIRECT_WRITE_BYTES: usize = 64 * 1024;
/// At most this many segments per `writev`.
const MAX_SLICES: usize = 64;

/// The bytes of one batch not yet written, and how many of them the socket has taken.
#[derive(Debug)]
pub(super) struct Outbox {
    /// The batch's small payloads, copied together (the whole batch, unless it has segments).
    buf: BytesMut,
    /// The batch in order when it holds a large payload: runs of `buf` and the payloads.
    segments: VecDeque<Bytes>,
    /// Bytes of `buf` already written, when the batch is `buf` alone.
    offset: usize,
    /// The batch is complete and being written.
    sealed: bool,
    /// Bytes of the batch the socket has taken so far.
    taken: usize,
    /// Everything is written; the stream still holds some of it (TLS records).
    flushing: bool,
}

impl Outbox {
    /// An empty outbox whose buffer starts with room for `capacity` bytes.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            segments: VecDeque::new(),
            offset: 0,
            sealed: false,
            taken: 0,
            flushing: false,
        }
    }

    /// Adds bytes to the batch being built, copied.
    pub(super) fn put(&mut self, bytes: &[u8]) {
        debug_assert!(!self.is_writing(), "a batch being written is not added to");
        self.buf.put_slice(bytes);
    }

    /// Adds a request's payload to the batch being built: copied if small, kept if large.
    pub(super) fn put_payload(&mut self, payload: Bytes) {
        if payload.len() >= DIRECT_WRITE_BYTES {
            if !self.buf.is_empty() {
                self.segments.push_back(self.buf.split().freeze());
            }
            self.segments.push_back(payload);
        } else {
            self.put(&payload);
        }
    }

    /// Ends the batch: from now on it is written, and nothing is added until it all is.
    /// Returns false if the batch is empty (nothing to write).
    pub(super) fn seal(&mut self) -> bool {
        if !self.segments.is_empty() && !self.buf.is_empty() {
            self.segments.push_back(self.buf.split().freeze());
        }
        self.sealed = !self.buf.is_empty() || !self.segments.is_empty();
        self.taken = 0;
        self.sealed
    }

    /// A batch is being written (or flushed).
    pub(super) fn is_writing(&self) -> bool {
        self.sealed || self.flushing
    }

    /// Bytes of the batch being written that the socket has taken.
    pub(super) fn taken(&self) -> usize {
        self.taken
    }

    /// Writes what the socket takes now; `Ready(Ok)` once the whole batch is written (and
    /// flushed), and the outbox is empty again.
    ///
    /// # Errors
    /// The write failed; the batch stays, and [`Outbox::taken`] says how much of it left.
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut NodeWriter,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.flushing {
                // Sends what TLS still buffers; nothing to do on plain TCP.
                if writer.buffers() {
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                }
                self.flushing = false;
            }
            if !self.sealed {
                return Poll::Ready(Ok(()));
            }
            let written = if self.segments.is_empty() {
                Pin::new(&mut *writer).poll_write(cx, &self.buf[self.offset..])
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let n = self.segments.len().min(MAX_SLICES);
                for (slice, segment) in slices.iter_mut().zip(&self.segments) {
                    *slice = IoSlice::new(segment);
                }
                Pin::new(&mut *writer).poll_write_vectored(cx, &slices[..n])
            };
            match ready!(written)? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.advance(n),
            }
        }
    }

    /// The socket took `n` more bytes.
    fn advance(&mut self, mut n: usize) {
        self.taken += n;
        let done = if self.segments.is_empty() {
            self.offset += n;
            self.offset == self.buf.len()
        } else {
            while n > 0 {
                let front = self
                    .segments
                    .front_mut()
                    .expect("a write takes no more than it was given");
                let step = n.min(front.len());
                front.advance(step);
                n -= step;
                if front.is_empty() {
                    self.segments.pop_front();
                }
            }
            self.segments.is_empty()
        };
        if done {
            self.buf.clear();
            self.offset = 0;
            self.sealed = false;
            self.flushing = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    fn bytes_of(outbox: &Outbox) -> Vec<u8> {
        if outbox.segments.is_empty() {
            outbox.buf[outbox.offset..].to_vec()
        } else {
            outbox.segments.iter().flat_map(|s| s.to_vec()).collect()
        }
    }

    #[test]
    fn large_payloads_stay_segments_between_copied_runs_in_order() {
        let mut outbox = Outbox::with_capacity(16);
        let large = Bytes::from(vec![b'x'; DIRECT_WRITE_BYTES]);
        outbox.put(b"a");
        outbox.put_payload(Bytes::from_static(b"b"));
        outbox.put_payload(large.clone());
        outbox.put(b"c");
        assert!(outbox.seal());
        assert_eq!(outbox.segments.len(), 3);
        assert!(outbox.segments[1].as_ptr() == large.as_ptr(), "not copied");
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&large);
        expected.push(b'c');
        assert_eq!(bytes_of(&outbox), expected);

        // Partial writes across segment boundaries keep the order and count what was taken.
        outbox.advance(3);
        assert_eq!(outbox.taken(), 3);
        assert_eq!(bytes_of(&outbox), expected[3..]);
        outbox.advance(expected.len() - 3);
        assert!(!outbox.sealed && outbox.flushing);
        assert!(outbox.segments.is_empty() && outbox.buf.is_empty());
    }

    #[test]
    fn an_empty_batch_is_not_written_and_a_partial_write_resumes_where_it_stopped() {
        let mut outbox = Outbox::with_capacity(16);
        assert!(!outbox.seal());
        assert!(!outbox.is_writing());
        outbox.put(b"hello");
        assert!(outbox.seal());
        outbox.advance(2);
        assert_eq!((bytes_of(&outbox), outbox.taken()), (b"llo".to_vec(), 2));
        outbox.advance(3);
        assert!(!outbox.sealed && outbox.buf.is_empty());
    }

    /// Batches written through a real socket arrive whole and in order, the buffer is reused,
    /// and a batch larger than the socket takes at once is finished by later polls.
    #[tokio::test]
    async fn batches_reach_the_peer_whole_and_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_, write_half) = client.unwrap().into_split();
        let mut writer = NodeWriter::Plain(write_half);
        let mut peer = accepted.unwrap().0;

        let large = Bytes::from(vec![b'y'; 8 << 20]);
        let mut expected = Vec::new();
        let mut outbox = Outbox::with_capacity(16);
        for round in 0..3u8 {
            outbox.put(&[b'a' + round]);
            outbox.put_payload(Bytes::copy_from_slice(b"small"));
            if round == 1 {
                outbox.put_payload(large.clone());
                expected.extend_from_slice(&[b'a' + round]);
                expected.extend_from_slice(b"small");
                expected.extend_from_slice(&large);
            } else {
                expected.extend_from_slice(&[b'a' + round]);
                expected.extend_from_slice(b"small");
            }
            assert!(outbox.seal());
            let reader = async {
                let mut got = vec![0; expected.len()];
                peer.read_exact(&mut got).await.unwrap();
                got
            };
            let write = std::future::poll_fn(|cx| outbox.poll_write(cx, &mut writer));
            let (written, got) = tokio::join!(write, reader);
            written.unwrap();
            assert_eq!(got, expected, "round {round}");
            assert!(!outbox.is_writing());
            expected.clear();
        }
    }
}
