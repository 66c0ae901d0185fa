//! Inline (telnet-style) requests: one line, split with redis' quoting rules.
//!
//! Mirrors redis-server's `processInlineBuffer` and `sdssplitargs` byte for byte, including
//! their C-string edges (a NUL ends the line), so slotproxy accepts exactly what redis accepts.

use bytes::{Bytes, BytesMut};

use super::Request;
use crate::error::ProtocolError;

/// What `decode_inline` found at the head of the buffer.
pub(super) enum Inline {
    /// A whole request.
    Request(Request),
    /// A line with no arguments, consumed.
    Blank,
    /// No whole line yet.
    Incomplete,
}

/// Parses a telnet-style inline command (`PING\r\n`, `SET k "a b"\n`) as `processInlineBuffer`.
pub(super) fn decode_inline(buf: &mut BytesMut, max_len: usize) -> Result<Inline, ProtocolError> {
    // redis-server finds the newline with `strchr`: a NUL before it means "no line yet".
    let newline = buf
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .filter(|&at| buf[at] == b'\n');
    let Some(newline) = newline else {
        if buf.len() > max_len {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(Inline::Incomplete);
    };
    let line = buf.split_to(newline + 1);
    let line = &line[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args =
        split_args(line).ok_or_else(|| ProtocolError("unbalanced quotes in request".into()))?;
    if args.is_empty() {
        return Ok(Inline::Blank);
    }
    Ok(Inline::Request(Request::from_args(args)))
}

/// C's `isspace` in the C locale (Rust's `is_ascii_whitespace` leaves out vertical tab).
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits an inline line into arguments with redis' quoting rules (`sdssplitargs`).
///
/// The line ends at a NUL, as the C string redis splits does. Returns `None` for unbalanced
/// quotes or a closing quote not followed by a space.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let line = line
        .iter()
        .position(|&b| b == 0)
        .map_or(line, |nul| &line[..nul]);
    let at = |i: usize| line.get(i).copied();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while at(i).is_some_and(is_space) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = at(i);
            if in_double {
                match c {
                    None => return None,
                    Some(b'\\')
                        if at(i + 1) == Some(b'x')
                            && at(i + 2).is_some_and(|h| h.is_ascii_hexdigit())
                            && at(i + 3).is_some_and(|h| h.is_ascii_hexdigit()) =>
                    {
                        let hex = |h: u8| char::from(h).to_digit(16).unwrap_or(0) as u8;
                        arg.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                        i += 3;
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
                        if at(i + 1).is_some_and(|b| !is_space(b)) {
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
                    Some(b'\\') if at(i + 1) == Some(b'\'') => {
                        arg.push(b'\'');
                        i += 1;
                    }
                    Some(b'\'') => {
                        if at(i + 1).is_some_and(|b| !is_space(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => arg.push(other),
                }
            } else {
                match c {
                    // Only these end a bare word; other spaces (`\v`, `\f`) are part of it.
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => break,
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
