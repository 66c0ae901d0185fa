//! `RawClient`: bytes in, whole RESP replies out, for byte-level tests.
//!
//! The frame scanner here is deliberately minimal and independent of the proxy's codec: it only
//! finds where one RESP2/RESP3 reply ends, so a test never checks our codec with itself.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// Time allowed for each send, reply or close.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A plain TCP connection that sends bytes as given and reads replies as raw bytes.
pub struct RawClient {
    stream: TcpStream,
    /// Bytes read but not yet returned.
    pending: Vec<u8>,
}

impl RawClient {
    /// Connects to `addr`.
    ///
    /// # Panics
    /// When the connection fails or takes more than 5 s.
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Debug) -> RawClient {
        let what = format!("{addr:?}");
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {what}: timed out"))
            .unwrap_or_else(|e| panic!("connect to {what}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        RawClient {
            stream,
            pending: Vec::new(),
        }
    }

    /// This end's address (what the server sees as the client's address).
    ///
    /// # Panics
    /// When the socket has none.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.stream
            .local_addr()
            .expect("a connected socket's address")
    }

    /// Writes `bytes` as they are (any framing, including none or a partial one).
    ///
    /// # Panics
    /// On a write error or after 5 s.
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("send: timed out")
            .expect("send");
    }

    /// Closes the sending side (a FIN), as a client that has said all it will.
    ///
    /// # Panics
    /// On an error or after 5 s.
    pub async fn shutdown_write(&mut self) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.shutdown())
            .await
            .expect("shutdown: timed out")
            .expect("shutdown");
    }

    /// Sends one command as a RESP array of bulk strings and reads its reply.
    pub async fn request(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode_command(args)).await;
        self.read_reply().await
    }

    /// Reads exactly one complete reply (RESP2 or RESP3) and returns its bytes.
    ///
    /// # Panics
    /// When no complete reply arrives within 5 s, the peer closes first, or the bytes are not
    /// RESP; the message shows what was received.
    pub async fn read_reply(&mut self) -> Vec<u8> {
        let read = tokio::time::timeout(IO_TIMEOUT, async {
            loop {
                match resp_frame_len(&self.pending) {
                    Ok(Some(len)) => return Ok(self.pending.drain(..len).collect::<Vec<u8>>()),
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
                if self.fill().await == 0 {
                    return Err("connection closed before a complete reply".to_string());
                }
            }
        })
        .await;
        match read {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("read_reply: {e}; received {:?}", show(&self.pending)),
            Err(_) => panic!(
                "read_reply: no complete reply within {IO_TIMEOUT:?}; received {:?}",
                show(&self.pending)
            ),
        }
    }

    /// Reads until the peer closes the connection; returns everything not yet returned.
    ///
    /// # Panics
    /// When the connection is still open after 5 s.
    pub async fn read_until_closed(&mut self) -> Vec<u8> {
        let closed =
            tokio::time::timeout(IO_TIMEOUT, async { while self.fill().await > 0 {} }).await;
        if closed.is_err() {
            panic!(
                "read_until_closed: still open after {IO_TIMEOUT:?}; received {:?}",
                show(&self.pending)
            );
        }
        std::mem::take(&mut self.pending)
    }

    /// Reads once into `pending`; 0 on EOF. A reset counts as closed.
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Length of the first complete RESP2/RESP3 frame in `buf`: `Ok(None)` while incomplete.
///
/// Streamed (`$?`, `*?`) frames are not supported.
///
/// # Errors
/// When the bytes are not RESP (unknown type byte, bad length, missing CRLF).
pub fn resp_frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    frame_end(buf, 0)
}

fn frame_end(buf: &[u8], start: usize) -> Result<Option<usize>, String> {
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    if !b"+-:_#,($!=*~>%|".contains(&kind) {
        return Err(format!(
            "unknown RESP type byte {:?} at offset {start}",
            kind as char
        ));
    }
    let Some(line_end) = find_crlf(buf, start + 1) else {
        return Ok(None);
    };
    let header = &buf[start + 1..line_end];
    let after_header = line_end + 2;
    match kind {
        // Simple string, error, integer, null, boolean, double, big number.
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Ok(Some(after_header)),
        // Bulk string, bulk error, verbatim string: a length, the bytes, CRLF.
        b'$' | b'!' | b'=' => {
            let len = parse_len(header, start)?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Some(after_header));
            }; // $-1
            let end = after_header + len + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(format!("bulk at offset {start} does not end with CRLF"));
            }
            Ok(Some(end))
        }
        // Array, set, push; map and attribute hold pairs.
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = parse_len(header, start)?;
            let Ok(count) = usize::try_from(count) else {
                return Ok(Some(after_header));
            }; // *-1
            let elements = if matches!(kind, b'%' | b'|') {
                count * 2
            } else {
                count
            };
            let mut pos = after_header;
            for _ in 0..elements {
                match frame_end(buf, pos)? {
                    Some(end) => pos = end,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute annotates the reply that follows it; both form one frame.
                return frame_end(buf, pos);
            }
            Ok(Some(pos))
        }
        _ => unreachable!("type byte checked above"),
    }
}

fn parse_len(header: &[u8], start: usize) -> Result<i64, String> {
    std::str::from_utf8(header)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|&n| n >= -1)
        .ok_or_else(|| format!("bad length {:?} at offset {start}", show(header)))
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// Bytes as an escaped string, for messages.
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Sends each command to both clients (slotproxy and a standalone redis-server) and asserts that
/// the replies are byte-identical.
///
/// # Panics
/// On the first pair of replies that differ, naming the command.
pub async fn assert_same_replies<'a, C: AsRef<[&'a [u8]]>>(
    proxy: &mut RawClient,
    standalone: &mut RawClient,
    commands: &[C],
) {
    for args in commands {
        let args = args.as_ref();
        let got = proxy.request(args).await;
        let want = standalone.request(args).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{:?}",
            args.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        );
    }
}

/// An array's or set's header and its top-level elements; `None` for anything else (a nil
/// array included). Panics when `reply` is more than one frame.
pub fn split_aggregate(reply: &[u8]) -> Option<(&[u8], Vec<&[u8]>)> {
    if !matches!(reply.first(), Some(b'*' | b'~')) {
        return None;
    }
    let header_end = reply.windows(2).position(|w| w == b"\r\n")? + 2;
    // Not a count for a nil array (`*-1`).
    let count: usize = std::str::from_utf8(&reply[1..header_end - 2])
        .ok()?
        .parse()
        .ok()?;
    let mut elements = Vec::with_capacity(count);
    let mut pos = header_end;
    for _ in 0..count {
        let len = resp_frame_len(&reply[pos..]).unwrap().unwrap();
        elements.push(&reply[pos..pos + len]);
        pos += len;
    }
    assert_eq!(pos, reply.len(), "one reply: {}", show(reply));
    Some((&reply[..header_end], elements))
}
