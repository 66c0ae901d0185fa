//! Decoders: client bytes into `Request`s, node bytes into `Reply`s, without copying payloads.
//!
//! Requests are parsed as redis-server 7.0 parses them (`processMultibulkBuffer`): lengths with
//! `string2ll`'s rules (no sign, no leading zero, no `-0`), the same limits and the same error
//! texts, so a frame a node would refuse never reaches a connection other clients share. Limits
//! are checked on each header as it arrives, so an oversized bulk is refused before any of it
//! is buffered, and the decoder remembers how many bytes the frame needs at least so a large
//! value arriving in many reads is not re-parsed on every read.

use bytes::{Buf, Bytes, BytesMut};

use super::frame::Scan;
use super::inline::{Inline, decode_inline};
use super::reply::{Reply, classify};
use super::view::string2ll;
use super::{Protocol, Request};
use crate::error::ProtocolError;

/// Longest inline command or header line redis-server accepts (`PROTO_INLINE_MAX_SIZE`).
const MAX_INLINE_LEN: usize = 64 * 1024;
/// Most arguments in one multibulk, as redis-server (`INT_MAX`).
const MAX_MULTIBULK_LEN: i64 = i32::MAX as i64;

/// Turns client bytes into requests, accepting exactly what redis-server accepts.
#[derive(Debug)]
pub struct RequestDecoder {
    max_bulk_len: usize,
    /// Bytes the frame at the head of the buffer needs at least; no parse is tried below this.
    need: usize,
    /// Argument ranges of the multibulk being parsed, reused across requests.
    ranges: Vec<(usize, usize)>,
    /// Where parsing of an incomplete multibulk stopped: the next read resumes there, so a
    /// request that arrives in many reads is parsed once, not once per read (as redis-server
    /// keeps `multibulklen` and `bulklen` across reads).
    resume: Option<Resume>,
}

/// The state of a multibulk parsed up to an incomplete element.
#[derive(Debug, Clone, Copy)]
struct Resume {
    /// Elements the header announced.
    count: i64,
    /// Where the next element's header starts.
    pos: usize,
    /// Every separator so far was CRLF.
    canonical: bool,
}

impl RequestDecoder {
    /// A decoder refusing bulk strings longer than `max_bulk_len` (redis' `proto-max-bulk-len`).
    pub fn new(max_bulk_len: usize) -> Self {
        Self {
            max_bulk_len,
            need: 0,
            ranges: Vec::new(),
            resume: None,
        }
    }

    /// Bytes the request at the head of the buffer needs at least, once its headers have been
    /// seen (0 when unknown), so the caller can size its read buffer once for a large value.
    pub fn need(&self) -> usize {
        self.need
    }

    /// Takes the next complete request off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Empty or negative multibulks and blank
    /// inline lines are consumed and skipped, as redis-server does. The request's raw bytes are
    /// always a canonical RESP multibulk, whatever separators the client used.
    ///
    /// # Errors
    /// A `ProtocolError` with redis-server's own wording; the caller replies with it and closes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            if buf.is_empty() || buf.len() < self.need {
                return Ok(None);
            }
            if buf[0] != b'*' {
                match decode_inline(buf, MAX_INLINE_LEN)? {
                    Inline::Request(request) => return Ok(Some(request)),
                    Inline::Blank => continue,
                    Inline::Incomplete => return Ok(None),
                }
            }
            if self.resume.is_none() {
                self.ranges.clear();
            }
            let parsed =
                parse_multibulk(buf, self.max_bulk_len, &mut self.ranges, &mut self.resume);
            match parsed.inspect_err(|_| self.resume = None)? {
                Multibulk::Incomplete(need) => {
                    self.need = need;
                    return Ok(None);
                }
                Multibulk::Empty(len) => {
                    self.need = 0;
                    buf.advance(len);
                }
                Multibulk::Complete { len, canonical } => {
                    self.need = 0;
                    let raw = buf.split_to(len).freeze();
                    let args: Vec<Bytes> =
                        self.ranges.iter().map(|&(s, e)| raw.slice(s..e)).collect();
                    if canonical {
                        return Ok(Some(Request::from_parts(args, raw)));
                    }
                    // Separators redis skips without looking (`$1\r\nkXY`): forward the frame
                    // a node would have parsed, never the client's bytes.
                    return Ok(Some(Request::from_args(args)));
                }
            }
        }
    }
}

/// What `parse_multibulk` found at the head of the buffer.
enum Multibulk {
    /// More bytes needed; the frame is at least this long.
    Incomplete(usize),
    /// A count of zero or less, this many bytes long: redis-server ignores it.
    Empty(usize),
    /// A whole request of `len` bytes; `canonical` if every separator was CRLF.
    Complete { len: usize, canonical: bool },
}

/// Parses the multibulk at the head of `buf` as redis-server's `processMultibulkBuffer` does.
///
/// Lengths are read with redis' `string2ll` rules, a line ends at the first CR (the byte after
/// it is skipped unread), and the two bytes after a bulk's payload are skipped unread too.
/// `ranges` and `resume` carry an incomplete multibulk's progress from the last call (`buf` has
/// only grown since); `resume` is `None` again once the multibulk is complete.
fn parse_multibulk(
    buf: &[u8],
    max_bulk_len: usize,
    ranges: &mut Vec<(usize, usize)>,
    resume: &mut Option<Resume>,
) -> Result<Multibulk, ProtocolError> {
    let Resume {
        count,
        mut pos,
        mut canonical,
    } = match resume.take() {
        Some(progress) => progress,
        None => {
            let Some(cr) = line_end(buf, 0) else {
                if buf.len() > MAX_INLINE_LEN {
                    return Err(ProtocolError("too big mbulk count string".into()));
                }
                return Ok(Multibulk::Incomplete(buf.len() + 1));
            };
            let count = match string2ll(&buf[1..cr]) {
                Some(n) if n <= MAX_MULTIBULK_LEN => n,
                _ => return Err(ProtocolError("invalid multibulk length".into())),
            };
            if count <= 0 {
                return Ok(Multibulk::Empty(cr + 2));
            }
            Resume {
                count,
                pos: cr + 2,
                canonical: buf[cr + 1] == b'\n',
            }
        }
    };
    while (ranges.len() as i64) < count {
        let Some(cr) = line_end(buf, pos) else {
            if buf.len() - pos > MAX_INLINE_LEN {
                return Err(ProtocolError("too big bulk count string".into()));
            }
            *resume = Some(Resume {
                count,
                pos,
                canonical,
            });
            return Ok(Multibulk::Incomplete(buf.len() + 1));
        };
        if buf[pos] != b'$' {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                // Latin-1: the char stands for the byte (see `ReplyError::Protocol`).
                char::from(buf[pos])
            )));
        }
        let len = match string2ll(&buf[pos + 1..cr]) {
            Some(len) if len >= 0 && len as u64 <= max_bulk_len as u64 => len as usize,
            _ => return Err(ProtocolError("invalid bulk length".into())),
        };
        canonical &= buf[cr + 1] == b'\n';
        let start = cr + 2;
        let end = start + len + 2;
        if buf.len() < end {
            // This element's header is read again next time.
            *resume = Some(Resume {
                count,
                pos,
                canonical,
            });
            return Ok(Multibulk::Incomplete(end));
        }
        canonical &= &buf[end - 2..end] == b"\r\n";
        ranges.push((start, start + len));
        pos = end;
    }
    Ok(Multibulk::Complete {
        len: pos,
        canonical,
    })
}

/// The CR ending the header line that starts at `start`, once the byte after it has arrived.
///
/// redis-server looks for it with `strchr` in its NUL-terminated buffer, so a NUL before any CR
/// means "no line yet", as there.
fn line_end(buf: &[u8], start: usize) -> Option<usize> {
    let rest = &buf[start..];
    let at = rest.iter().position(|&b| b == b'\r' || b == 0)?;
    (rest[at] == b'\r' && at + 1 < rest.len()).then_some(start + at)
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
        Ok(match self.next(buf)? {
            Decoded::Reply(reply) => Some(reply),
            Decoded::Partial { .. } => None,
        })
    }

    /// Takes the next complete reply off the front of `buf`; if there is none yet, says how
    /// many more bytes the partial one needs at least (from the same scan), so a reader can
    /// make room for a large value at once.
    ///
    /// # Errors
    /// As `decode`.
    pub fn next(&self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        if buf.is_empty() {
            return Ok(Decoded::Partial { missing: 0 });
        }
        if self.protocol == Protocol::Resp2 && !matches!(buf[0], b'+' | b'-' | b':' | b'$' | b'*') {
            return Err(ProtocolError(format!(
                "bad reply from node: RESP3 type {:?} on a RESP2 connection",
                char::from(buf[0])
            )));
        }
        // RESP2 is a subset of RESP3: one scan serves both.
        let scan = super::frame::scan(buf)
            .map_err(|e| ProtocolError(format!("bad reply from node: {}", e.0)))?;
        Ok(match scan {
            Scan::Complete(len) => {
                let raw = buf.split_to(len).freeze();
                let kind = classify(&raw);
                Decoded::Reply(Reply::new(raw, kind))
            }
            Scan::Incomplete(need) => Decoded::Partial {
                missing: need.saturating_sub(buf.len()),
            },
        })
    }
}

/// What the front of a node's read buffer holds.
#[derive(Debug)]
pub enum Decoded {
    /// A complete reply, taken off the buffer.
    Reply(Reply),
    /// Part of one: at least `missing` more bytes are needed (0 when nothing is known yet).
    Partial { missing: usize },
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

    /// Feeds `input` one byte at a time, as a client on a slow link would send it.
    fn decode_byte_by_byte(input: &[u8]) -> (Vec<Request>, Result<(), ProtocolError>) {
        let mut decoder = RequestDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in input {
            buf.extend_from_slice(&[byte]);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(request)) => out.push(request),
                    Ok(None) => break,
                    Err(e) => return (out, Err(e)),
                }
            }
        }
        (out, Ok(()))
    }

    #[test]
    fn a_request_arriving_in_pieces_resumes_where_parsing_stopped() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n*1\r\n$4\r\nPING\r\n*0\r\n*1\r\n$4\r\nPING\r\n";
        let (requests, result) = decode_byte_by_byte(input);
        assert_eq!(result, Ok(()));
        let whole = decode_all(input).0;
        let pieces: Vec<Args> = requests
            .iter()
            .map(|r| r.args().iter().map(|a| a.to_vec()).collect())
            .collect();
        assert_eq!(pieces, whole);
        assert_eq!(
            &requests[0].raw()[..],
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n"
        );
        // A separator redis skips unread, seen in an earlier piece, still makes the forwarded
        // frame the canonical one.
        let (requests, result) = decode_byte_by_byte(b"*2\r\n$3\rXGET\r\n$1\r\nkXY");
        assert_eq!(result, Ok(()));
        assert_eq!(&requests[0].raw()[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        // An error after a resumed part is the one the whole input gives.
        let bad = b"*2\r\n$3\r\nGET\r\n$x\r\n";
        assert_eq!(decode_byte_by_byte(bad).1, decode_all(bad).1);
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
    fn lengths_follow_redis_string2ll() {
        for bad in [
            "$01", "$+1", "$003", "$-0", "$+0", "$ 1", "$1 ", "$", "$0x1",
        ] {
            let input = format!("*1\r\n{bad}\r\na\r\n");
            let (_, result) = decode_all(input.as_bytes());
            assert_eq!(
                result.expect_err(bad).to_string(),
                "Protocol error: invalid bulk length",
                "{bad}"
            );
        }
        for bad in ["*02", "*+2", "*-0", "*", "*2 ", "*123456789012345678901"] {
            let input = format!("{bad}\r\n");
            let (_, result) = decode_all(input.as_bytes());
            assert_eq!(
                result.expect_err(bad).to_string(),
                "Protocol error: invalid multibulk length",
                "{bad}"
            );
        }
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(string2ll(b"9223372036854775808"), None);
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-"), None);
    }

    #[test]
    fn zero_and_negative_counts_are_skipped() {
        let (got, result) = decode_all(b"*-10\r\n*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(result, Ok(()));
        assert_eq!(got, vec![args(&["PING"])]);
    }

    #[test]
    fn separators_redis_skips_unread_are_forwarded_as_crlf() {
        let mut decoder = RequestDecoder::new(1024);
        let mut buf = BytesMut::from(&b"*2\rX$3\r\nGETab$1\rYkZZ"[..]);
        let req = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&req.raw()[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert!(buf.is_empty());
    }

    #[test]
    fn a_header_line_is_judged_only_once_complete() {
        // redis-server waits for the CR (and the byte after it) before looking at a line; a
        // NUL before the CR hides it, as `strchr` does there.
        for partial in [
            &b"*1\r\nX"[..],
            b"*1\r\n$1\r",
            b"*1\r\n$\x001\r\n",
            b"*1",
            b"GET\x00\n",
        ] {
            let (got, result) = decode_all(partial);
            assert_eq!((got.len(), result), (0, Ok(())), "{partial:?}");
        }
        let (_, result) = decode_all(b"*1\r\n\xff\r\n");
        assert_eq!(
            result.unwrap_err().to_string(),
            "Protocol error: expected '$', got '\u{ff}'"
        );
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
