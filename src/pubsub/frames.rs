//! Pub/sub frames: the confirmations the proxy builds for a client, the pushes nodes send the hub,
//! and redis' glob matching (for `PUBLISH`'s count of pattern subscribers).

use bytes::{BufMut, Bytes, BytesMut};

use super::Kind;
use crate::protocol::reply::{write_bulk, write_integer, write_null};
use crate::protocol::{Protocol, View};

/// Appends an aggregate header for a pub/sub frame: a push (`>`) in RESP3, an array in RESP2.
pub fn write_push_len(out: &mut BytesMut, protocol: Protocol, len: usize) {
    out.put_u8(match protocol {
        Protocol::Resp2 => b'*',
        Protocol::Resp3 => b'>',
    });
    out.put_slice(len.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends one (un)subscribe confirmation: `[kind, channel or nil, count]`.
pub fn write_confirmation(
    out: &mut BytesMut,
    protocol: Protocol,
    kind: &str,
    channel: Option<&[u8]>,
    count: usize,
) {
    write_push_len(out, protocol, 3);
    write_bulk(out, kind.as_bytes());
    match channel {
        Some(channel) => write_bulk(out, channel),
        None => write_null(out, protocol),
    }
    write_integer(out, count as i64);
}

/// A push frame a node sent on a hub connection, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// `message`/`smessage` (`pattern` is `None`) or `pmessage`: deliver to subscribers.
    Message {
        /// Which family delivered it.
        kind: Kind,
        /// The pattern that matched (`pmessage` only).
        pattern: Option<Bytes>,
        /// The channel it was published to.
        channel: Bytes,
    },
    /// A confirmation: `subscribe`, `sunsubscribe`...
    Confirmation {
        /// The family.
        kind: Kind,
        /// True for (p|s)subscribe, false for the unsubscribes.
        subscribed: bool,
        /// The channel or pattern (`None` for an unsubscribe with nothing to drop).
        channel: Option<Bytes>,
    },
    /// Anything else (a push this proxy does not use).
    Other,
}

impl Push {
    /// Parses a RESP3 push frame (`>n` followed by bulk strings and an integer).
    pub fn parse(raw: &Bytes) -> Push {
        let Some(parts) = elements(raw) else {
            return Push::Other;
        };
        let bulk = |i: usize| parts.get(i).and_then(|p| p.clone());
        let Some(name) = parts.first().and_then(|p| p.as_deref()) else {
            return Push::Other;
        };
        let (kind, subscribed) = match name {
            b"message" if parts.len() == 3 => {
                return bulk(1).map_or(Push::Other, |channel| Push::Message {
                    kind: Kind::Channel,
                    pattern: None,
                    channel,
                });
            }
            b"smessage" if parts.len() == 3 => {
                return bulk(1).map_or(Push::Other, |channel| Push::Message {
                    kind: Kind::Shard,
                    pattern: None,
                    channel,
                });
            }
            b"pmessage" if parts.len() == 4 => {
                return match (bulk(1), bulk(2)) {
                    (Some(pattern), Some(channel)) => Push::Message {
                        kind: Kind::Pattern,
                        pattern: Some(pattern),
                        channel,
                    },
                    _ => Push::Other,
                };
            }
            b"subscribe" => (Kind::Channel, true),
            b"unsubscribe" => (Kind::Channel, false),
            b"psubscribe" => (Kind::Pattern, true),
            b"punsubscribe" => (Kind::Pattern, false),
            b"ssubscribe" => (Kind::Shard, true),
            b"sunsubscribe" => (Kind::Shard, false),
            _ => return Push::Other,
        };
        if parts.len() != 3 {
            return Push::Other;
        }
        Push::Confirmation {
            kind,
            subscribed,
            channel: bulk(1),
        }
    }
}

/// The elements of a push or array frame whose elements are bulk strings (as `Some`), nulls or
/// integers (as `None`); `None` for anything else.
fn elements(raw: &Bytes) -> Option<Vec<Option<Bytes>>> {
    let (View::Push(elements) | View::Array(elements)) = View::of(raw)? else {
        return None;
    };
    let len = elements.len();
    let parts: Vec<Option<Bytes>> = elements
        .map(|element| match View::of(element)? {
            View::Bulk(data) => Some(Some(raw.slice_ref(data))),
            View::Integer(_) | View::Null => Some(None),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (parts.len() == len).then_some(parts)
}

/// A RESP3 push re-encoded for a RESP2 client: the same bytes, as an array.
pub fn push_as_resp2(raw: &Bytes) -> Bytes {
    if raw.first() != Some(&b'>') {
        return raw.clone();
    }
    let mut out = BytesMut::with_capacity(raw.len());
    out.put_u8(b'*');
    out.put_slice(&raw[1..]);
    out.freeze()
}

pub use crate::auth::pattern::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_match_redis_bytes() {
        let mut out = BytesMut::new();
        write_confirmation(&mut out, Protocol::Resp2, "subscribe", Some(b"a"), 1);
        assert_eq!(&out[..], b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
        let mut out = BytesMut::new();
        write_confirmation(&mut out, Protocol::Resp3, "unsubscribe", None, 0);
        assert_eq!(&out[..], b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        let mut out = BytesMut::new();
        write_confirmation(&mut out, Protocol::Resp2, "punsubscribe", None, 2);
        assert_eq!(&out[..], b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:2\r\n");
    }

    #[test]
    fn pushes_are_parsed() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let cases = [
            (
                b(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
                Push::Message {
                    kind: Kind::Channel,
                    pattern: None,
                    channel: b(b"ch"),
                },
            ),
            (
                b(b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$0\r\n\r\n"),
                Push::Message {
                    kind: Kind::Pattern,
                    pattern: Some(b(b"c*")),
                    channel: b(b"ch"),
                },
            ),
            (
                b(b">3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\nx\r\n"),
                Push::Message {
                    kind: Kind::Shard,
                    pattern: None,
                    channel: b(b"s"),
                },
            ),
            (
                b(b">3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n"),
                Push::Confirmation {
                    kind: Kind::Shard,
                    subscribed: false,
                    channel: Some(b(b"s")),
                },
            ),
            (
                b(b">3\r\n$10\r\npsubscribe\r\n$2\r\na*\r\n:3\r\n"),
                Push::Confirmation {
                    kind: Kind::Pattern,
                    subscribed: true,
                    channel: Some(b(b"a*")),
                },
            ),
            (
                b(b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"),
                Push::Confirmation {
                    kind: Kind::Channel,
                    subscribed: false,
                    channel: None,
                },
            ),
            (b(b">2\r\n$10\r\ninvalidate\r\n_\r\n"), Push::Other),
            (b(b"+PONG\r\n"), Push::Other),
        ];
        for (raw, want) in cases {
            assert_eq!(Push::parse(&raw), want, "{raw:?}");
        }
    }

    #[test]
    fn resp3_pushes_become_resp2_arrays() {
        let raw = Bytes::from_static(b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n");
        assert_eq!(
            &push_as_resp2(&raw)[..],
            b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
    }

    #[test]
    fn glob_matches_like_redis() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"*", b"", true),
            (b"*", b"anything", true),
            (b"news.*", b"news.sport", true),
            (b"news.*", b"new", false),
            (b"h?llo", b"hello", true),
            (b"h?llo", b"hllo", false),
            (b"h[ae]llo", b"hallo", true),
            (b"h[ae]llo", b"hillo", false),
            (b"h[^e]llo", b"hallo", true),
            (b"h[^e]llo", b"hello", false),
            (b"h[a-c]llo", b"hbllo", true),
            (b"h[c-a]llo", b"hbllo", true),
            (b"h[a-c]llo", b"hdllo", false),
            (b"h\\*llo", b"h*llo", true),
            (b"h\\*llo", b"hello", false),
            (b"a*b*c", b"aXXbYYc", true),
            (b"a*b*c", b"aXXbYY", false),
            (b"*.x", b"a.b.x", true),
            (b"", b"", true),
            (b"", b"a", false),
            (b"abc", b"ABC", false),
            (b"[abc", b"a", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                glob_match(pattern, text),
                *want,
                "{} ~ {}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(text)
            );
        }
    }
}
