//! Decoders: client bytes into `Request`s, node bytes into `Reply`s, without copying payloads.
//!
//! Complete frames are parsed once by `redis-protocol`'s range decoder and sliced out of the read
//! buffer. When a request is still incomplete, a header walk checks redis-server's limits (bulk
//! length, multibulk count, inline size) on what has arrived so far, so an oversized bulk is
//! refused before the proxy buffers any of it, and remembers how many bytes the frame needs at
//! least so a large value arriving in many reads is not re-parsed on every read.

use bytes::{Buf, Bytes, BytesMut};
use redis_protocol::resp2::types::RangeFrame as Resp2Range;

use super::reply::{Reply, classify};
use super::{Protocol, Request};
use crate::error::ProtocolError;

/// Longest inline command or header line redis-server accepts (`PROTO_INLINE_MAX_SIZE`).
const MAX_INLINE_LEN: usize = 64 * 1024;
/// Most arguments in one multibulk, as redis-server (`INT_MAX`).
const MAX_MULTIBULK_LEN: i64 = i32::MAX as i64;

/// Turns client bytes into requests, enforcing redis-server's protocol limits.
#[derive(Debug)]
pub struct RequestDecoder {
    max_bulk_len: usize,
    /// Bytes the frame at the head of the buffer needs at least; no parse is tried below this.
    need: usize,
}

impl RequestDecoder {
    /// A decoder refusing bulk strings longer than `max_bulk_len`.
    pub fn new(max_bulk_len: usize) -> Self {
        Self {
            max_bulk_len,
            need: 0,
        }
    }

    /// Takes the next complete request off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Empty multibulks and blank inline lines are
    /// consumed and skipped, as redis-server does.
    ///
    /// # Errors
    /// A `ProtocolError` with redis-server's own wording; the caller replies with it and closes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            if buf.is_empty() || buf.len() < self.need {
                return Ok(None);
            }
            if buf[0] != b'*' {
                match decode_inline(buf)? {
                    Inline::Request(request) => return Ok(Some(request)),
                    Inline::Blank => continue,
                    Inline::Incomplete => return Ok(None),
                }
            }
            match redis_protocol::resp2::decode::decode_range(buf) {
                Ok(Some((frame, len))) => {
                    self.need = 0;
                    if let Some(request) = take_multibulk(buf, frame, len)? {
                        return Ok(Some(request));
                    }
                }
                Ok(None) => {
                    self.need = scan_multibulk(buf, self.max_bulk_len)?;
                    return Ok(None);
                }
                Err(e) => {
                    scan_multibulk(buf, self.max_bulk_len)?;
                    return Err(ProtocolError(format!("invalid multibulk request ({e})")));
                }
            }
        }
    }
}

/// Slices a decoded multibulk out of `buf`; `None` for an empty or null array (skipped).
fn take_multibulk(
    buf: &mut BytesMut,
    frame: Resp2Range,
    len: usize,
) -> Result<Option<Request>, ProtocolError> {
    let items = match frame {
        Resp2Range::Array(items) if !items.is_empty() => items,
        Resp2Range::Array(_) | Resp2Range::Null => {
            buf.advance(len);
            return Ok(None);
        }
        _ => return Err(ProtocolError("expected '*'".into())),
    };
    let mut ranges = Vec::with_capacity(items.len());
    for item in &items {
        match item {
            Resp2Range::BulkString(range) => ranges.push(*range),
            Resp2Range::Null => return Err(ProtocolError("invalid bulk length".into())),
            other => {
                let got = match other {
                    Resp2Range::SimpleString(_) => '+',
                    Resp2Range::Error(_) => '-',
                    Resp2Range::Integer(_) => ':',
                    _ => '*',
                };
                return Err(ProtocolError(format!("expected '$', got '{got}'")));
            }
        }
    }
    let raw = buf.split_to(len).freeze();
    let args = ranges.iter().map(|&(s, e)| raw.slice(s..e)).collect();
    Ok(Some(Request::from_parts(args, raw)))
}

/// Walks the headers of a possibly partial multibulk at the head of `buf`.
///
/// Returns the number of bytes the frame needs at least (the full length once every header is
/// in), or the error redis-server gives for the first illegal header.
fn scan_multibulk(buf: &[u8], max_bulk_len: usize) -> Result<usize, ProtocolError> {
    let (count, mut pos) = match header_int(buf, 1) {
        Header::Incomplete if buf.len() > MAX_INLINE_LEN => {
            return Err(ProtocolError("too big mbulk count string".into()));
        }
        Header::Incomplete => return Ok(buf.len() + 1),
        Header::Invalid => return Err(ProtocolError("invalid multibulk length".into())),
        Header::Int(n, next) => (n, next),
    };
    if count > MAX_MULTIBULK_LEN {
        return Err(ProtocolError("invalid multibulk length".into()));
    }
    for _ in 0..count.max(0) {
        let Some(&kind) = buf.get(pos) else {
            return Ok(pos + 1);
        };
        if kind != b'$' {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                kind as char
            )));
        }
        match header_int(buf, pos + 1) {
            Header::Incomplete if buf.len() - pos > MAX_INLINE_LEN => {
                return Err(ProtocolError("too big bulk count string".into()));
            }
            Header::Incomplete => return Ok(buf.len() + 1),
            Header::Int(len, next) if (0..=max_bulk_len as i64).contains(&len) => {
                pos = next + len as usize + 2;
            }
            Header::Int(..) | Header::Invalid => {
                return Err(ProtocolError("invalid bulk length".into()));
            }
        }
    }
    Ok(pos)
}

enum Header {
    /// The integer and the offset just past its CRLF.
    Int(i64, usize),
    Invalid,
    Incomplete,
}

/// Reads the decimal integer that starts at `start` and ends with CRLF.
fn header_int(buf: &[u8], start: usize) -> Header {
    let Some(rest) = buf.get(start..) else {
        return Header::Incomplete;
    };
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        return Header::Incomplete;
    };
    match rest.get(cr + 1) {
        None => return Header::Incomplete,
        Some(b'\n') => {}
        Some(_) => return Header::Invalid,
    }
    std::str::from_utf8(&rest[..cr])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map_or(Header::Invalid, |n| Header::Int(n, start + cr + 2))
}

enum Inline {
    Request(Request),
    Blank,
    Incomplete,
}

/// Parses a telnet-style inline command (`PING\r\n`, `SET k "a b"\n`).
fn decode_inline(buf: &mut BytesMut) -> Result<Inline, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_INLINE_LEN {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(Inline::Incomplete);
    };
    let line = buf.split_to(newline + 1);
    let line = line.strip_suffix(b"\n").unwrap_or(&line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args =
        split_args(line).ok_or_else(|| ProtocolError("unbalanced quotes in request".into()))?;
    if args.is_empty() {
        return Ok(Inline::Blank);
    }
    Ok(Inline::Request(Request::from_args(args)))
}

/// Splits an inline line into arguments with redis' quoting rules (`sdssplitargs`).
///
/// Returns `None` for unbalanced quotes or a closing quote not followed by a space.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'x') => {
                        let hex = line.get(i + 2..i + 4).and_then(|h| {
                            std::str::from_utf8(h)
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                        });
                        if let Some(byte) = hex {
                            arg.push(byte);
                            i += 3;
                        } else {
                            arg.push(b'\\');
                        }
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        arg.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        // The closing quote must be followed by a space or the end.
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => arg.push(other),
                }
            } else if in_single {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        arg.push(b'\'');
                        i += 1;
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => arg.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(b) if b.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(other) => arg.push(other),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(arg));
    }
}

/// Splits node replies off a read buffer, in the protocol the connection speaks.
#[derive(Debug, Clone, Copy)]
pub struct ReplyDecoder {
    protocol: Protocol,
}

impl ReplyDecoder {
    /// A decoder for a connection speaking `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Self { protocol }
    }

    /// Takes the next complete reply off the front of `buf`, or `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// The node sent bytes that are not RESP; the connection can't be trusted any more.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if self.protocol == Protocol::Resp2 && !matches!(buf[0], b'+' | b'-' | b':' | b'$' | b'*') {
            return Err(ProtocolError(format!(
                "bad reply from node: RESP3 type {:?} on a RESP2 connection",
                char::from(buf[0])
            )));
        }
        // RESP2 is a subset of RESP3: one scan serves both.
        let len = super::frame::frame_len(buf)
            .map_err(|e| ProtocolError(format!("bad reply from node: {}", e.0)))?;
        Ok(len.map(|len| {
            let raw = buf.split_to(len).freeze();
            let kind = classify(&raw);
            Reply::new(raw, kind)
        }))
    }
}

/// Decodes one whole RESP2 reply into an owned frame (for topology and COMMAND replies).
///
/// # Errors
/// The bytes are not one complete RESP2 frame.
pub fn decode_owned(raw: &[u8]) -> Result<redis_protocol::resp2::types::OwnedFrame, ProtocolError> {
    match redis_protocol::resp2::decode::decode(raw) {
        Ok(Some((frame, _))) => Ok(frame),
        Ok(None) => Err(ProtocolError("incomplete reply".into())),
        Err(e) => Err(ProtocolError(format!("bad reply: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Args = Vec<Vec<u8>>;

    fn decode_all(input: &[u8]) -> (Vec<Args>, Result<(), ProtocolError>) {
        let mut decoder = RequestDecoder::new(1024);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(req)) => out.push(req.args().iter().map(|a| a.to_vec()).collect()),
                Ok(None) => return (out, Ok(())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    fn args(list: &[&str]) -> Args {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_requests_decode_and_keep_raw_bytes() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let mut decoder = RequestDecoder::new(1024);
        let mut buf = BytesMut::from(&input[..]);
        let first = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&first.raw()[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let second = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(second.name(), b"PING");
        assert!(decoder.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn inline_and_empty_requests() {
        let cases: &[(&[u8], Vec<Args>)] = &[
            (b"PING\r\n", vec![args(&["PING"])]),
            (b"set k \"a b\"\n", vec![args(&["set", "k", "a b"])]),
            (b"\r\n\r\nECHO 'it\\'s'\r\n", vec![args(&["ECHO", "it's"])]),
            (
                b"echo \"\\x41\\n\"\r\n",
                vec![vec![b"echo".to_vec(), b"A\n".to_vec()]],
            ),
            (b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", vec![args(&["PING"])]),
            (b"GET k", vec![]),
        ];
        for (input, want) in cases {
            let (got, result) = decode_all(input);
            assert_eq!(result, Ok(()), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn malformed_requests_get_redis_errors() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"*2\r\n:1\r\n$1\r\nk\r\n",
                "Protocol error: expected '$', got ':'",
            ),
            (b"*1\r\n+OK\r\n", "Protocol error: expected '$', got '+'"),
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$2000\r\n", "Protocol error: invalid bulk length"),
            (
                b"*3000000000\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (
                b"set k \"unterminated\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"set k \"a\"b\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, want) in cases {
            let (_, result) = decode_all(input);
            let err = result.expect_err(&String::from_utf8_lossy(input));
            assert_eq!(
                err.to_string(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn oversized_bulk_is_refused_from_its_header_alone() {
        let mut decoder = RequestDecoder::new(1024);
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$99999999999\r\n"[..]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(err.to_string(), "Protocol error: invalid bulk length");
    }

    #[test]
    fn long_lines_without_newline_are_refused() {
        let mut decoder = RequestDecoder::new(1024);
        let mut buf = BytesMut::from(&vec![b'a'; MAX_INLINE_LEN + 1][..]);
        assert!(decoder.decode(&mut buf).is_err());
        let mut header = b"*1\r\n$".to_vec();
        header.extend(std::iter::repeat_n(b'1', MAX_INLINE_LEN + 1));
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap_err().to_string(),
            "Protocol error: too big bulk count string"
        );
    }

    #[test]
    fn request_split_at_every_byte_decodes_once() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 1..input.len() {
            let mut decoder = RequestDecoder::new(1024);
            let mut buf = BytesMut::from(&input[..cut]);
            assert!(decoder.decode(&mut buf).unwrap().is_none(), "cut {cut}");
            buf.extend_from_slice(&input[cut..]);
            let req = decoder.decode(&mut buf).unwrap().expect("complete");
            assert_eq!(req.args().len(), 3);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn replies_decode_per_protocol() {
        let resp2 = ReplyDecoder::new(Protocol::Resp2);
        let mut buf =
            BytesMut::from(&b"$-1\r\n*2\r\n$1\r\na\r\n:5\r\n-MOVED 1 127.0.0.1:7000\r\n+O"[..]);
        assert_eq!(
            &resp2.decode(&mut buf).unwrap().unwrap().raw()[..],
            b"$-1\r\n"
        );
        assert_eq!(resp2.decode(&mut buf).unwrap().unwrap().raw().len(), 15);
        let moved = resp2.decode(&mut buf).unwrap().unwrap();
        assert!(matches!(moved.kind(), crate::protocol::ReplyKind::Moved(_)));
        assert!(resp2.decode(&mut buf).unwrap().is_none());

        let resp3 = ReplyDecoder::new(Protocol::Resp3);
        let mut buf = BytesMut::from(&b"%1\r\n+a\r\n,1.5\r\n_\r\n#t\r\n"[..]);
        assert_eq!(
            &resp3.decode(&mut buf).unwrap().unwrap().raw()[..],
            b"%1\r\n+a\r\n,1.5\r\n"
        );
        assert_eq!(
            &resp3.decode(&mut buf).unwrap().unwrap().raw()[..],
            b"_\r\n"
        );
        assert_eq!(
            &resp3.decode(&mut buf).unwrap().unwrap().raw()[..],
            b"#t\r\n"
        );
    }
}
