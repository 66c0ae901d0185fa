//! Reading a node's reply: its type and payload, as slices of the reply's own bytes.
//!
//! Every place that looks into a reply (merging split replies, computing set algebra, parsing
//! pushes, counting `WAIT` acknowledgements) reads it through [`View`], so RESP is parsed here
//! only. Nothing is copied or allocated: a string is a slice of the reply, an aggregate's
//! elements are an iterator over the raw bytes of each element (forwarded as they are, or viewed
//! in turn). Integers are read with redis' own rules ([`string2ll`]).

use super::frame::frame_len;

/// One RESP2 or RESP3 frame, viewed without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View<'a> {
    /// `+text`.
    Simple(&'a [u8]),
    /// `-text` or the RESP3 blob error `!len`: the text, code first (`ERR ...`).
    Error(&'a [u8]),
    /// `:n`.
    Integer(i64),
    /// `$len` with its payload.
    Bulk(&'a [u8]),
    /// RESP3 `=len` (a verbatim string): the three-letter format and the text after its colon.
    Verbatim {
        /// `txt` or `mkd`.
        format: &'a [u8],
        /// The text.
        text: &'a [u8],
    },
    /// `$-1` or `*-1` in RESP2, `_` in RESP3.
    Null,
    /// RESP3 `,` as the node printed it (`3.14`, `inf`).
    Double(&'a [u8]),
    /// RESP3 `#t` or `#f`.
    Boolean(bool),
    /// RESP3 `(` as the node printed it.
    BigNumber(&'a [u8]),
    /// `*n`.
    Array(Elements<'a>),
    /// RESP3 `~n`.
    Set(Elements<'a>),
    /// RESP3 `>n` (out of band).
    Push(Elements<'a>),
    /// RESP3 `%n`: keys and values alternate, `2n` elements.
    Map(Elements<'a>),
}

/// The elements of an aggregate, each as its complete raw frame, in order.
///
/// Elements are delimited as they are read; iteration stops early at bytes that are not a
/// complete frame, so a malformed reply yields fewer elements than [`Elements::len`] announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elements<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> View<'a> {
    /// Views the frame at the start of `raw`; `None` if it is not a complete, valid frame head
    /// (an aggregate's elements are checked as they are read). A RESP3 attribute (`|`) is
    /// skipped: the view is of the frame it annotates.
    pub fn of(raw: &'a [u8]) -> Option<View<'a>> {
        let (&kind, _) = raw.split_first()?;
        let end = line_end(raw)?;
        let line = &raw[1..end];
        let body = &raw[end + 2..];
        Some(match kind {
            b'+' => View::Simple(line),
            b'-' => View::Error(line),
            b':' => View::Integer(string2ll(line)?),
            b',' => View::Double(line),
            b'(' => View::BigNumber(line),
            b'#' => match line {
                b"t" => View::Boolean(true),
                b"f" => View::Boolean(false),
                _ => return None,
            },
            b'_' if line.is_empty() => View::Null,
            b'$' if line == b"-1" => View::Null,
            b'$' => View::Bulk(payload(line, body)?),
            b'!' => View::Error(payload(line, body)?),
            b'=' => {
                let payload = payload(line, body)?;
                let (format, text) = (payload.get(..3)?, payload.get(4..)?);
                (payload[3] == b':').then_some(View::Verbatim { format, text })?
            }
            b'*' if line == b"-1" => View::Null,
            b'*' => View::Array(Elements::new(line, body, 1)?),
            b'~' => View::Set(Elements::new(line, body, 1)?),
            b'>' => View::Push(Elements::new(line, body, 1)?),
            b'%' => View::Map(Elements::new(line, body, 2)?),
            b'|' => {
                let mut attributes = Elements::new(line, body, 2)?;
                for _ in 0..attributes.len() {
                    attributes.next()?;
                }
                return View::of(attributes.rest);
            }
            _ => return None,
        })
    }

    /// The value of an integer reply.
    pub fn integer(&self) -> Option<i64> {
        match self {
            View::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The payload of a bulk string.
    pub fn bulk(&self) -> Option<&'a [u8]> {
        match self {
            View::Bulk(data) => Some(data),
            _ => None,
        }
    }

    /// The payload of a bulk or simple string.
    pub fn string(&self) -> Option<&'a [u8]> {
        match self {
            View::Bulk(data) | View::Simple(data) => Some(data),
            _ => None,
        }
    }

    /// The text of an error reply (`-` or `!`), code first.
    pub fn error(&self) -> Option<&'a [u8]> {
        match self {
            View::Error(text) => Some(text),
            _ => None,
        }
    }

    /// True for a null (`$-1`, `*-1`, `_`).
    pub fn is_null(&self) -> bool {
        matches!(self, View::Null)
    }

    /// The elements of an array, set, push or map (a map's keys and values alternate).
    pub fn elements(self) -> Option<Elements<'a>> {
        match self {
            View::Array(e) | View::Set(e) | View::Push(e) | View::Map(e) => Some(e),
            _ => None,
        }
    }
}

impl<'a> Elements<'a> {
    /// The elements after an aggregate's header line `count` (`per_entry` frames per entry).
    fn new(count: &[u8], body: &'a [u8], per_entry: usize) -> Option<Self> {
        let count = usize::try_from(string2ll(count)?).ok()?;
        Some(Self {
            rest: body,
            left: count.checked_mul(per_entry)?,
        })
    }

    /// How many elements are left to read, as the header announced them.
    pub fn len(&self) -> usize {
        self.left
    }

    /// True when no element is left to read.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The next element, viewed; `None` at the end or at a malformed element.
    pub fn next_view(&mut self) -> Option<View<'a>> {
        self.next().and_then(View::of)
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let Some(len) = frame_len(self.rest).ok().flatten() else {
            self.left = 0;
            return None;
        };
        let (element, rest) = self.rest.split_at(len);
        self.rest = rest;
        self.left -= 1;
        Some(element)
    }
}

/// The raw bytes of each element of an array reply, or the keys and values (alternating) of a
/// RESP3 map (empty for anything else).
pub fn elements(raw: &[u8]) -> Vec<&[u8]> {
    match View::of(raw) {
        Some(View::Array(elements) | View::Map(elements)) => elements.collect(),
        _ => Vec::new(),
    }
}

/// Splits back-to-back complete frames (the replies of a job that answers several commands at
/// once) into their raw bytes; stops at the first incomplete or malformed frame.
pub fn frames(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        // RESP2 is a subset of RESP3: one scan serves both protocols.
        let len = frame_len(rest).ok().flatten()?;
        let (frame, tail) = rest.split_at(len);
        rest = tail;
        Some(frame)
    })
}

/// The first line of an error reply's text (`-text` or the blob error `!len`), up to its first
/// CR; `None` for any other reply. The frame is not checked (a blob's length is not read): this
/// is for reading an error's code cheaply, e.g. to count replies by outcome.
pub fn error_line(raw: &[u8]) -> Option<&[u8]> {
    let text = match raw.split_first()? {
        (b'-', rest) => rest,
        (b'!', rest) => rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest, |i| &rest[i + 1..]),
        _ => return None,
    };
    let end = text.iter().position(|&b| b == b'\r').unwrap_or(text.len());
    Some(&text[..end])
}

/// The code of an error reply (`MOVED`, `BUSY`: its first word), read as [`error_line`] does;
/// `None` for any other reply.
pub fn error_code(raw: &[u8]) -> Option<&[u8]> {
    let line = error_line(raw)?;
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    Some(&line[..end])
}

/// Parses an integer as redis' `string2ll` does: an optional `-` (never `+`), no leading zeros,
/// no `-0`, no spaces, at most 20 bytes, within `i64`.
pub fn string2ll(text: &[u8]) -> Option<i64> {
    const LONG_STR_SIZE: usize = 21;
    if text.is_empty() || text.len() >= LONG_STR_SIZE {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if negative {
        if value > i64::MIN.unsigned_abs() {
            return None;
        }
        Some(0i64.wrapping_sub_unsigned(value))
    } else {
        i64::try_from(value).ok()
    }
}

/// Where the header line of the frame at the start of `raw` ends (the index of its CR).
fn line_end(raw: &[u8]) -> Option<usize> {
    raw.windows(2).position(|w| w == b"\r\n")
}

/// The `len` bytes of a blob (bulk, blob error, verbatim) at the start of `body`, which must be
/// followed by CRLF.
fn payload<'a>(len: &[u8], body: &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(string2ll(len)?).ok()?;
    let data = body.get(..len)?;
    (body.get(len..len.checked_add(2)?)? == b"\r\n").then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_viewed() {
        let cases: &[(&[u8], View)] = &[
            (b"+OK\r\n", View::Simple(b"OK")),
            (b"-ERR no\r\n", View::Error(b"ERR no")),
            (b"!8\r\nERR a\r\nb\r\n", View::Error(b"ERR a\r\nb")),
            (b":42\r\n", View::Integer(42)),
            (b":-9223372036854775808\r\n", View::Integer(i64::MIN)),
            (b"$3\r\na\r\n\r\n", View::Bulk(b"a\r\n")),
            (b"$0\r\n\r\n", View::Bulk(b"")),
            (b"$-1\r\n", View::Null),
            (b"*-1\r\n", View::Null),
            (b"_\r\n", View::Null),
            (b",3.14\r\n", View::Double(b"3.14")),
            (b",-inf\r\n", View::Double(b"-inf")),
            (b"#t\r\n", View::Boolean(true)),
            (b"#f\r\n", View::Boolean(false)),
            (
                b"(12345678901234567890\r\n",
                View::BigNumber(b"12345678901234567890"),
            ),
            (
                b"=7\r\ntxt:abc\r\n",
                View::Verbatim {
                    format: b"txt",
                    text: b"abc",
                },
            ),
            // An attribute is skipped: the view is of the frame it annotates.
            (b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", View::Bulk(b"v")),
        ];
        for (raw, want) in cases {
            assert_eq!(View::of(raw).as_ref(), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn aggregates_yield_their_raw_elements() {
        let raw: &[u8] = b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n_\r\n%1\r\n+k\r\n~1\r\n,1.5\r\n+next\r\n";
        let view = View::of(raw).unwrap();
        assert!(matches!(view, View::Array(_)));
        let mut elements = view.elements().unwrap();
        assert_eq!(elements.len(), 3);
        assert_eq!(elements.next_view(), Some(View::Bulk(b"a")));
        let nested: Vec<&[u8]> = elements.next_view().unwrap().elements().unwrap().collect();
        assert_eq!(nested, [&b":1\r\n"[..], b"_\r\n"]);
        let map = elements.next().unwrap();
        assert_eq!(map, b"%1\r\n+k\r\n~1\r\n,1.5\r\n");
        let mut pairs = View::of(map).unwrap().elements().unwrap();
        assert_eq!(pairs.len(), 2, "a map of one entry has a key and a value");
        assert_eq!(pairs.next_view(), Some(View::Simple(b"k")));
        assert!(matches!(pairs.next_view(), Some(View::Set(_))));
        assert_eq!(pairs.next(), None);
        assert_eq!(
            elements.next(),
            None,
            "the frame after the array is not an element"
        );

        for (raw, want) in [
            (&b"~1\r\n:1\r\n"[..], 1),
            (b">2\r\n:1\r\n:2\r\n", 2),
            (b"*0\r\n", 0),
        ] {
            let elements = View::of(raw).unwrap().elements().unwrap();
            assert_eq!(elements.count(), want, "{raw:?}");
        }
    }

    #[test]
    fn accessors_pick_their_type_only() {
        let bulk = View::of(b"$2\r\nhi\r\n").unwrap();
        assert_eq!(
            (bulk.bulk(), bulk.string()),
            (Some(&b"hi"[..]), Some(&b"hi"[..]))
        );
        assert_eq!(bulk.integer(), None);
        let simple = View::of(b"+hi\r\n").unwrap();
        assert_eq!((simple.bulk(), simple.string()), (None, Some(&b"hi"[..])));
        let integer = View::of(b":7\r\n").unwrap();
        assert_eq!((integer.integer(), integer.string()), (Some(7), None));
        let error = View::of(b"-ERR x\r\n").unwrap();
        assert_eq!((error.error(), error.string()), (Some(&b"ERR x"[..]), None));
        assert!(View::of(b"_\r\n").unwrap().is_null());
        assert!(!View::of(b"$0\r\n\r\n").unwrap().is_null());
        assert!(View::of(b"+x\r\n").unwrap().elements().is_none());
    }

    #[test]
    fn malformed_frames_are_not_viewed() {
        for bad in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"?x\r\n",
            b":\r\n",
            b":+1\r\n",
            b":01\r\n",
            b":1.5\r\n",
            b":9223372036854775808\r\n",
            b"$3\r\nab\r\n",
            b"$3\r\nabcd\r\n",
            b"$-2\r\n",
            b"$x\r\n",
            b"*-2\r\n",
            b"*x\r\n",
            b"#x\r\n",
            b"_x\r\n",
            b"=3\r\ntxt\r\n",
            b"=5\r\ntxt-a\r\n",
            b"|1\r\n+ttl\r\n",
        ] {
            assert_eq!(View::of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_elements_end_the_iteration() {
        let view = View::of(b"*3\r\n:1\r\n$5\r\nab\r\n:2\r\n").unwrap();
        let mut elements = view.elements().unwrap();
        assert_eq!(elements.len(), 3);
        assert_eq!(elements.next(), Some(&b":1\r\n"[..]));
        assert_eq!(elements.next(), None);
        assert!(elements.is_empty());
        let truncated = View::of(b"*2\r\n:1\r\n").unwrap().elements().unwrap();
        assert_eq!(truncated.count(), 1);
    }

    #[test]
    fn error_lines_are_read_without_checking_the_frame() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"-ERR x\r\n", Some(b"ERR x")),
            (b"-ERR x", Some(b"ERR x")),
            (b"!9\r\nTRYAGAIN x\r\n", Some(b"TRYAGAIN x")),
            (b"!5\r\nERR a\r\nb\r\n", Some(b"ERR a")),
            (b"+OK\r\n", None),
            (b"", None),
        ];
        for (raw, want) in cases {
            assert_eq!(error_line(raw), *want, "{raw:?}");
        }
        let codes: &[(&[u8], Option<&[u8]>)] = &[
            (b"-BUSY Redis is busy\r\n", Some(b"BUSY")),
            (b"-BUSY\r\n", Some(b"BUSY")),
            (b"-BUSYGROUP x\r\n", Some(b"BUSYGROUP")),
            (b"!10\r\nTRYAGAIN x\r\n", Some(b"TRYAGAIN")),
            (b":1\r\n", None),
        ];
        for (raw, want) in codes {
            assert_eq!(error_code(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn back_to_back_frames_split() {
        let got: Vec<&[u8]> = frames(b"+OK\r\n*1\r\n:1\r\n$1\r\nx\r\n$5\r\nab").collect();
        assert_eq!(got, [&b"+OK\r\n"[..], b"*1\r\n:1\r\n", b"$1\r\nx\r\n"]);
        assert_eq!(frames(b"").count(), 0);
    }

    #[test]
    fn string2ll_matches_redis() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("7", Some(7)),
            ("-12", Some(-12)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("18446744073709551616", None),
            ("123456789012345678901", None),
            ("-0", None),
            ("00", None),
            ("007", None),
            ("-01", None),
            ("+1", None),
            ("+0", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("-", None),
            ("1a", None),
            ("0x1", None),
            ("1.0", None),
        ];
        for &(text, want) in cases {
            assert_eq!(string2ll(text.as_bytes()), want, "{text:?}");
        }
    }
}
