//! The client's read buffer and how much room each read is offered: a new client gets a small
//! buffer, one whose reads fill it gets twice as much (up to a cap), a value of known large size
//! gets one buffer of exactly its size, and a large buffer is dropped once empty.

use bytes::BytesMut;

/// Read buffer offered to a new client; it doubles for clients whose reads fill it.
pub(super) const MIN_READ_CHUNK: usize = 1024;
/// Largest read buffer growth step.
const MAX_READ_CHUNK: usize = 64 * 1024;
/// Buffers above this size are dropped once empty, so one large request doesn't pin memory.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// The bytes read from the client and not parsed yet.
#[derive(Debug)]
pub(super) struct ReadBuffer {
    pub(super) buf: BytesMut,
    /// Room to offer the next read when the buffer runs short.
    chunk: usize,
    /// Room the last `prepare` offered.
    offered: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            chunk: MIN_READ_CHUNK,
            offered: 0,
        }
    }
}

impl ReadBuffer {
    /// Makes room before a read; `need` is how many bytes the decoder knows the request being
    /// parsed needs in all (see `RequestDecoder::need`).
    pub(super) fn prepare(&mut self, need: usize) {
        let buf = &mut self.buf;
        if need > buf.capacity() {
            // A large value whose length is known: one buffer of exactly its size, instead
            // of doubling (which holds up to twice the value, plus a copy while growing).
            buf.reserve(need - buf.len());
        }
        if buf.capacity() - buf.len() < self.chunk / 2 {
            if buf.is_empty() && buf.capacity() > KEEP_BUFFER_BYTES {
                *buf = BytesMut::new();
            }
            buf.reserve(self.chunk);
        }
        self.offered = buf.capacity() - buf.len();
    }

    /// A read of `n` bytes went into the room `prepare` made.
    pub(super) fn read(&mut self, n: usize) {
        // A read that filled the buffer: this client sends in bulk, offer more.
        if n == self.offered {
            self.chunk = (self.chunk * 2).min(MAX_READ_CHUNK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prepares, then reads as much as was offered (`fill`) or a little, and parses it all.
    fn round(buffer: &mut ReadBuffer, need: usize, fill: bool) -> usize {
        buffer.prepare(need);
        let offered = buffer.buf.capacity() - buffer.buf.len();
        let n = if fill { offered } else { 10 };
        buffer.buf.extend_from_slice(&vec![b'x'; n]);
        buffer.read(n);
        let _ = buffer.buf.split();
        offered
    }

    #[test]
    fn a_client_whose_reads_fill_the_buffer_is_offered_more_up_to_the_cap() {
        let mut buffer = ReadBuffer::default();
        let first = round(&mut buffer, 0, true);
        assert!(first >= MIN_READ_CHUNK);
        for _ in 0..10 {
            round(&mut buffer, 0, true);
        }
        assert_eq!(buffer.chunk, MAX_READ_CHUNK);
        let mut small = ReadBuffer::default();
        for _ in 0..10 {
            round(&mut small, 0, false);
        }
        assert_eq!(small.chunk, MIN_READ_CHUNK);
    }

    #[test]
    fn a_large_value_of_known_size_gets_one_buffer_of_about_its_size() {
        let mut buffer = ReadBuffer::default();
        buffer.buf.extend_from_slice(b"$1048576\r\n");
        buffer.prepare(1 << 20);
        assert!(buffer.buf.capacity() >= 1 << 20);
        assert!(buffer.buf.capacity() < (1 << 20) + MAX_READ_CHUNK);
        assert_eq!(buffer.offered, buffer.buf.capacity() - buffer.buf.len());
    }
}
