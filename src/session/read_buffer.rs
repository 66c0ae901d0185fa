//! The client's read buffer and how much room each read is offered: a new client gets a small
//! buffer once it first sends, one whose reads fill it gets twice as much (up to a cap), a value
//! of known large size gets one buffer of exactly its size, and an idle client gives its buffer
//! back (`trim`).

use bytes::BytesMut;

/// Read buffer offered to a new client; it doubles for clients whose reads fill it.
pub(super) const MIN_READ_CHUNK: usize = 512;
/// Largest read buffer growth step.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// The bytes read from the client and not parsed yet.
#[derive(Debug)]
pub(super) struct ReadBuffer {
    pub(super) buf: BytesMut,
    /// Room to offer the next read when the buffer runs short.
    chunk: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            chunk: MIN_READ_CHUNK,
        }
    }
}

impl ReadBuffer {
    /// Makes room before a read; `need` is how many bytes the decoder knows the request being
    /// parsed needs in all (see `RequestDecoder::need`).
    ///
    /// A buffer with no room at all (a new client's, or one given back by `trim`) stays so:
    /// the read takes [`ReadBuffer::chunk`] bytes once something has arrived
    /// (`ClientReader::poll_read_buf`), so an idle client holds none.
    pub(super) fn prepare(&mut self, need: usize) {
        let buf = &mut self.buf;
        if need > buf.capacity() {
            // A large value whose length is known: one buffer of exactly its size, instead
            // of doubling (which holds up to twice the value, plus a copy while growing).
            buf.reserve(need - buf.len());
        }
        if buf.capacity() > 0 && buf.capacity() - buf.len() < self.chunk / 2 {
            buf.reserve(self.chunk);
        }
    }

    /// Room a read into a buffer without any takes.
    pub(super) fn chunk(&self) -> usize {
        self.chunk
    }

    /// A read went into the buffer.
    pub(super) fn read(&mut self) {
        // A read that filled the buffer: this client sends in bulk, offer more.
        if self.buf.len() == self.buf.capacity() {
            self.chunk = (self.chunk * 2).min(MAX_READ_CHUNK);
        }
    }

    /// Gives the buffer back if nothing waits in it (the client is idle: `Bells::TRIM`).
    pub(super) fn trim(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prepares, then reads as much as was offered (`fill`) or a little, and parses it all.
    fn round(buffer: &mut ReadBuffer, need: usize, fill: bool) -> usize {
        buffer.prepare(need);
        if buffer.buf.capacity() == buffer.buf.len() {
            // As `ClientReader::poll_read_buf` does once something has arrived.
            buffer.buf.reserve(buffer.chunk());
        }
        let offered = buffer.buf.capacity() - buffer.buf.len();
        let n = if fill { offered } else { 10 };
        buffer.buf.extend_from_slice(&vec![b'x'; n]);
        buffer.read();
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
    }

    #[test]
    fn a_new_or_idle_client_holds_no_buffer() {
        let mut buffer = ReadBuffer::default();
        buffer.prepare(0);
        assert_eq!(buffer.buf.capacity(), 0, "nothing before the first read");
        round(&mut buffer, 0, false);
        assert!(buffer.buf.capacity() > 0);
        buffer.prepare(0);
        buffer.trim();
        assert_eq!(buffer.buf.capacity(), 0, "given back when idle");
        buffer.buf.extend_from_slice(b"*1\r\n");
        buffer.trim();
        assert_eq!(
            &buffer.buf[..],
            b"*1\r\n",
            "kept while a request is partly read"
        );
    }
}
