//! Node replies (`Reply`, with MOVED/ASK parsed into a `Redirect`) and replies the proxy builds.

use bytes::{BufMut, Bytes, BytesMut};

use super::Protocol;
use super::request::fmt_usize;

/// One complete reply from a node: its raw bytes, forwarded as they are, and what kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    raw: Bytes,
    kind: ReplyKind,
}

/// What a reply means to the proxy. Only errors are looked into, so values cost nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// Any non-error reply.
    Value,
    /// An error the client should see as it is.
    Error,
    /// A RESP3 push frame (out of band: not the reply to any request).
    Push,
    /// `-MOVED slot addr`: the slot lives elsewhere now.
    Moved(Redirect),
    /// `-ASK slot addr`: this key is being migrated; ask the target once.
    Ask(Redirect),
    /// `-TRYAGAIN`: multi-key request during a migration; retry later.
    TryAgain,
    /// `-CLUSTERDOWN`: the cluster can't serve the slot right now.
    ClusterDown,
    /// `-NOSCRIPT`: `EVALSHA` named a script this node doesn't have (it may have restarted or
    /// taken over the slot since the script was loaded).
    NoScript,
}

/// Where a MOVED or ASK reply points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Which redirection it was.
    pub kind: RedirectKind,
    /// The slot named in the error.
    pub slot: u16,
    /// The node that serves it, `host:port`.
    pub addr: String,
}

/// MOVED (update the slot map) or ASK (one-off, leave the map alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// Permanent: the slot map is stale.
    Moved,
    /// Temporary: the slot is migrating; send `ASKING` + the command to the target.
    Ask,
}

impl Reply {
    pub(crate) fn new(raw: Bytes, kind: ReplyKind) -> Self {
        Self { raw, kind }
    }

    /// A reply built by the proxy itself (classified like a node's).
    pub fn local(raw: Bytes) -> Self {
        let kind = classify(&raw);
        Self { raw, kind }
    }

    /// The reply's RESP bytes.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Consumes the reply, returning its bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// What kind of reply this is.
    pub fn kind(&self) -> &ReplyKind {
        &self.kind
    }

    /// The text of an error reply without its `-` and CRLF, or `None` for values.
    pub fn error_text(&self) -> Option<&[u8]> {
        match self.raw.first() {
            Some(b'-') => Some(trim_line(&self.raw[1..])),
            _ => None,
        }
    }
}

/// Classifies a complete reply by its first bytes; only errors are parsed further.
pub(crate) fn classify(raw: &[u8]) -> ReplyKind {
    match raw.first() {
        Some(b'-') => classify_error(trim_line(&raw[1..])),
        Some(b'>') => ReplyKind::Push,
        _ => ReplyKind::Value,
    }
}

fn classify_error(text: &[u8]) -> ReplyKind {
    let code_end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    match &text[..code_end] {
        b"MOVED" => Redirect::parse(RedirectKind::Moved, &text[code_end..])
            .map_or(ReplyKind::Error, ReplyKind::Moved),
        b"ASK" => Redirect::parse(RedirectKind::Ask, &text[code_end..])
            .map_or(ReplyKind::Error, ReplyKind::Ask),
        b"TRYAGAIN" => ReplyKind::TryAgain,
        b"CLUSTERDOWN" => ReplyKind::ClusterDown,
        b"NOSCRIPT" => ReplyKind::NoScript,
        _ => ReplyKind::Error,
    }
}

impl Redirect {
    /// Parses the part after `MOVED`/`ASK`: ` <slot> <host>:<port>`.
    fn parse(kind: RedirectKind, rest: &[u8]) -> Option<Self> {
        let rest = std::str::from_utf8(rest).ok()?;
        let mut parts = rest.split_ascii_whitespace();
        let slot = parts.next()?.parse::<u16>().ok()?;
        let addr = parts.next()?;
        // Redis 7 may send ":port" when the node doesn't know its own IP; the caller resolves it.
        if slot >= crate::cluster::SLOT_COUNT || !addr.contains(':') {
            return None;
        }
        Some(Self {
            kind,
            slot,
            addr: addr.to_string(),
        })
    }
}

fn trim_line(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\r\n").unwrap_or(bytes)
}

/// Appends `+text\r\n`.
pub fn write_simple(out: &mut BytesMut, text: &str) {
    out.put_u8(b'+');
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends `-text\r\n`; CR and LF inside `text` become spaces so the frame stays one line.
pub fn write_error(out: &mut BytesMut, text: &str) {
    write_error_bytes(out, text.as_bytes());
}

/// `write_error` for a message that quotes client bytes (not necessarily UTF-8), as redis-server
/// does in its unknown-command errors.
pub fn write_error_bytes(out: &mut BytesMut, text: &[u8]) {
    out.put_u8(b'-');
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

/// Appends `:n\r\n`.
pub fn write_integer(out: &mut BytesMut, n: i64) {
    let mut buf = [0; 20];
    out.put_u8(b':');
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(fmt_usize(&mut buf, n.unsigned_abs() as usize));
    out.put_slice(b"\r\n");
}

/// Appends a bulk string.
pub fn write_bulk(out: &mut BytesMut, data: &[u8]) {
    let mut buf = [0; 20];
    out.put_u8(b'$');
    out.put_slice(fmt_usize(&mut buf, data.len()));
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends the null reply in the session's protocol (`$-1` or `_`).
pub fn write_null(out: &mut BytesMut, protocol: Protocol) {
    out.put_slice(match protocol {
        Protocol::Resp2 => b"$-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// The null array in `protocol`: `*-1` in RESP2 (EXEC's "the transaction did not run"), `_`
/// in RESP3.
pub fn null_array(protocol: Protocol) -> Bytes {
    Bytes::from_static(match protocol {
        Protocol::Resp2 => b"*-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    })
}

/// Appends an array header for `len` elements.
pub fn write_array_len(out: &mut BytesMut, len: usize) {
    let mut buf = [0; 20];
    out.put_u8(b'*');
    out.put_slice(fmt_usize(&mut buf, len));
    out.put_slice(b"\r\n");
}

/// Appends a map header for `len` pairs: `%len` in RESP3, a flat array of `2 * len` in RESP2.
pub fn write_map_len(out: &mut BytesMut, protocol: Protocol, len: usize) {
    match protocol {
        Protocol::Resp2 => write_array_len(out, len * 2),
        Protocol::Resp3 => {
            let mut buf = [0; 20];
            out.put_u8(b'%');
            out.put_slice(fmt_usize(&mut buf, len));
            out.put_slice(b"\r\n");
        }
    }
}

/// Appends a text reply as redis 7 sends one (INFO, CLUSTER NODES...): a bulk string in RESP2,
/// a verbatim string of format `txt` in RESP3.
pub fn write_text(out: &mut BytesMut, protocol: Protocol, text: &[u8]) {
    match protocol {
        Protocol::Resp2 => write_bulk(out, text),
        Protocol::Resp3 => {
            let mut buf = [0; 20];
            out.put_u8(b'=');
            out.put_slice(fmt_usize(&mut buf, text.len() + 4));
            out.put_slice(b"\r\ntxt:");
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let cases: &[(&[u8], ReplyKind)] = &[
            (b"+OK\r\n", ReplyKind::Value),
            (b"-ERR no\r\n", ReplyKind::Error),
            (
                b"-MOVED 3999 127.0.0.1:6381\r\n",
                ReplyKind::Moved(Redirect {
                    kind: RedirectKind::Moved,
                    slot: 3999,
                    addr: "127.0.0.1:6381".into(),
                }),
            ),
            (
                b"-ASK 0 10.0.0.1:7000\r\n",
                ReplyKind::Ask(Redirect {
                    kind: RedirectKind::Ask,
                    slot: 0,
                    addr: "10.0.0.1:7000".into(),
                }),
            ),
            (b"-MOVED 99999 h:1\r\n", ReplyKind::Error),
            (b"-MOVED\r\n", ReplyKind::Error),
            (
                b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
                ReplyKind::TryAgain,
            ),
            (
                b"-CLUSTERDOWN The cluster is down\r\n",
                ReplyKind::ClusterDown,
            ),
            (b">2\r\n+a\r\n+b\r\n", ReplyKind::Push),
            (
                b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
                ReplyKind::NoScript,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(&classify(raw), want, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn writers_encode_resp() {
        let mut out = BytesMut::new();
        write_integer(&mut out, -42);
        write_integer(&mut out, i64::MIN);
        write_error(&mut out, "ERR bad\r\ninput");
        write_null(&mut out, Protocol::Resp3);
        write_map_len(&mut out, Protocol::Resp2, 2);
        write_text(&mut out, Protocol::Resp3, b"ab");
        assert_eq!(
            &out[..],
            b":-42\r\n:-9223372036854775808\r\n-ERR bad  input\r\n_\r\n*4\r\n=6\r\ntxt:ab\r\n"
                .as_slice()
        );
    }
}
