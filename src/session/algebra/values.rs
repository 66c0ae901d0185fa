//! Reading the values of the keys a computed command fetched, and writing its reply: the shared
//! helpers of `sets.rs`, `zsets.rs` and `hll.rs`.

use bytes::{BufMut, BytesMut};

use crate::protocol::view::Elements;
use crate::protocol::{Protocol, View};

/// The elements of an array or set reply (the shapes `SMEMBERS` and `ZUNION` answer with).
pub(super) fn set_elements(raw: &[u8]) -> Option<Elements<'_>> {
    match View::of(raw)? {
        View::Array(elements) | View::Set(elements) => Some(elements),
        _ => None,
    }
}

/// A score: a bulk string in RESP2, a double in RESP3 (both as redis prints them).
pub(super) fn score(raw: &[u8]) -> Option<f64> {
    let text = match View::of(raw)? {
        View::Bulk(text) | View::Double(text) => text,
        _ => return None,
    };
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Compares an argument with a keyword as redis' `strcasecmp` does: up to the first NUL.
pub(super) fn keyword(arg: &[u8], word: &str) -> bool {
    let end = arg.iter().position(|&b| b == 0).unwrap_or(arg.len());
    arg[..end].eq_ignore_ascii_case(word.as_bytes())
}

/// Appends a set header: an array in RESP2, a set (`~`) in RESP3.
pub(super) fn write_set_len(out: &mut BytesMut, protocol: Protocol, len: usize) {
    match protocol {
        Protocol::Resp2 => crate::protocol::reply::write_array_len(out, len),
        Protocol::Resp3 => {
            out.put_u8(b'~');
            out.put_slice(len.to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
    }
}
