//! The length of one complete RESP2 or RESP3 frame, found by scanning headers only.
//!
//! Node replies are forwarded as bytes, so the proxy only needs to know where each one ends.
//! A scan does that without building frames, and accepts every valid RESP3 reply: a general
//! decoder may refuse some (redis-protocol rejects a set of arrays, which `COMMAND DOCS` sends).

use crate::error::ProtocolError;

/// The length of the complete frame at the start of `buf`, `Ok(None)` if more bytes are
/// needed. Attributes (`|`) count as part of the frame they annotate.
///
/// # Errors
/// The bytes are not RESP (an unknown type byte, or a bad length).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    Ok(match scan(buf)? {
        Scan::Complete(len) => Some(len),
        Scan::Incomplete(_) => None,
    })
}

/// What a scan of the frame at the start of a buffer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole frame of this length.
    Complete(usize),
    /// Part of one, at least this long in all: the end of the bulk string being read once its
    /// header is in, so a reader can make room for a large value in one step.
    Incomplete(usize),
}

/// Scans the frame at the start of `buf` (see [`Scan`]).
///
/// # Errors
/// The bytes are not RESP (an unknown type byte, or a bad length).
pub fn scan(buf: &[u8]) -> Result<Scan, ProtocolError> {
    let mut pos = 0;
    // Frames still to read: the first one, plus the elements of the aggregates opened so far.
    let mut needed: usize = 1;
    while needed > 0 {
        let Some(&kind) = buf.get(pos) else {
            return Ok(Scan::Incomplete(pos));
        };
        let Some(line_len) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(Scan::Incomplete(pos));
        };
        let line = &buf[pos + 1..pos + line_len];
        pos += line_len + 2;
        needed -= 1;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let len = number(line)?;
                if len < 0 {
                    if len == -1 && kind == b'$' {
                        continue; // RESP2 null bulk string
                    }
                    return Err(bad(kind, line));
                }
                let end = pos + len as usize + 2;
                if buf.len() < end {
                    return Ok(Scan::Incomplete(end));
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ProtocolError("bulk string not ended by CRLF".into()));
                }
                pos = end;
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let count = number(line)?;
                if count < 0 {
                    if count == -1 && kind == b'*' {
                        continue; // RESP2 null array
                    }
                    return Err(bad(kind, line));
                }
                let count = count as usize;
                needed += match kind {
                    b'%' => count * 2,
                    // An attribute map, then the frame it annotates.
                    b'|' => count * 2 + 1,
                    _ => count,
                };
            }
            other => {
                return Err(ProtocolError(format!(
                    "unknown RESP type byte {:?}",
                    char::from(other)
                )));
            }
        }
    }
    Ok(Scan::Complete(pos))
}

fn number(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ProtocolError(format!("bad length {:?}", String::from_utf8_lossy(line))))
}

fn bad(kind: u8, line: &[u8]) -> ProtocolError {
    ProtocolError(format!(
        "bad length {:?} for type {:?}",
        String::from_utf8_lossy(line),
        char::from(kind)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_of_every_type() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":42\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"$0\r\n\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"_\r\n",
            b",3.14\r\n",
            b"#t\r\n",
            b"(12345678901234567890\r\n",
            b"!3\r\nerr\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"%1\r\n+k\r\n*1\r\n:1\r\n",
            // A set of arrays, as COMMAND DOCS sends (a general decoder refuses it).
            b"~2\r\n*2\r\n$5\r\n6.2.0\r\n$1\r\nx\r\n*2\r\n$5\r\n7.0.0\r\n$1\r\ny\r\n",
            b">2\r\n$10\r\ninvalidate\r\n_\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
            b"*0\r\n",
        ];
        for frame in cases {
            assert_eq!(frame_len(frame).unwrap(), Some(frame.len()), "{frame:?}");
            let mut two = frame.to_vec();
            two.extend_from_slice(b"+next\r\n");
            assert_eq!(frame_len(&two).unwrap(), Some(frame.len()), "{frame:?}");
            for cut in 0..frame.len() {
                assert_eq!(
                    frame_len(&frame[..cut]).unwrap(),
                    None,
                    "{frame:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn need_names_the_end_of_a_bulk_string_being_read() {
        let value = vec![b'v'; 100_000];
        let mut frame = b"$100000\r\n".to_vec();
        frame.extend_from_slice(&value);
        frame.extend_from_slice(b"\r\n");
        assert_eq!(
            scan(&frame[..3]).unwrap(),
            Scan::Incomplete(0),
            "header not complete"
        );
        for cut in [9, 10, 5000, frame.len() - 1] {
            let found = scan(&frame[..cut]).unwrap();
            assert_eq!(found, Scan::Incomplete(frame.len()), "cut at {cut}");
        }
        assert_eq!(scan(&frame).unwrap(), Scan::Complete(frame.len()));
        // Inside an array: the end of the element being read.
        let array = b"*2\r\n$1\r\na\r\n$5\r\nab";
        assert_eq!(scan(array).unwrap(), Scan::Incomplete(array.len() - 2 + 7));
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"?x\r\n"[..],
            b"$x\r\n",
            b"$-2\r\n",
            b"*-2\r\n",
            b"$1\r\nab\r\n",
            b"~-1\r\n",
        ] {
            assert!(frame_len(bad).is_err(), "{bad:?}");
        }
    }
}
