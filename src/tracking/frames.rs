//! The frames that tell a client about invalidations, as redis-server 7.0 writes them: the RESP3
//! `invalidate` push, the RESP2 pub/sub message on `__redis__:invalidate` that a `REDIRECT`
//! target subscribed to something receives, and the `tracking-redir-broken` push.
//!
//! Which frame a client gets is the session's choice (its protocol, its subscriptions, its
//! `REDIRECT`); this file only spells them.

use bytes::{BufMut, Bytes, BytesMut};

use super::listener::Invalidation;
use crate::protocol::Protocol;
use crate::protocol::reply::{write_array_len, write_bulk, write_integer, write_null};

/// The channel RESP2 redirect targets hear invalidations on.
pub const CHANNEL: &[u8] = b"__redis__:invalidate";

/// An invalidation on its way to the client another client's `CLIENT TRACKING ... REDIRECT`
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirected {
    /// What changed.
    pub invalidation: Invalidation,
    /// The tracking client's protocol: redis spells "everything" (after a flush) with the
    /// tracking client's null, whatever the target speaks.
    pub null: Protocol,
}

/// `>2 invalidate <keys>` (a RESP3 push; `null` spells a flush).
pub fn push(invalidation: &Invalidation, null: Protocol) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(b">2\r\n");
    write_bulk(&mut out, b"invalidate");
    write_keys(&mut out, invalidation, null);
    out.freeze()
}

/// `message __redis__:invalidate <keys>`: a pub/sub message whose payload is the array of keys
/// (or a null for a flush), for a RESP2 redirect target.
pub fn message(invalidation: &Invalidation, null: Protocol) -> Bytes {
    let mut out = BytesMut::new();
    write_array_len(&mut out, 3);
    write_bulk(&mut out, b"message");
    write_bulk(&mut out, CHANNEL);
    write_keys(&mut out, invalidation, null);
    out.freeze()
}

/// `>2 tracking-redir-broken <id>`: the client named by `REDIRECT id` is gone.
pub fn redirect_broken(id: u64) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(b">2\r\n");
    write_bulk(&mut out, b"tracking-redir-broken");
    write_integer(&mut out, i64::try_from(id).unwrap_or(i64::MAX));
    out.freeze()
}

fn write_keys(out: &mut BytesMut, invalidation: &Invalidation, null: Protocol) {
    match invalidation {
        Invalidation::Keys(keys) => {
            write_array_len(out, keys.len());
            for key in keys {
                write_bulk(out, key);
            }
        }
        Invalidation::All => write_null(out, null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_spelled_as_redis_writes_them() {
        let keys = Invalidation::Keys(vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]);
        assert_eq!(
            push(&keys, Protocol::Resp3),
            &b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n"[..]
        );
        assert_eq!(
            push(&Invalidation::All, Protocol::Resp3),
            &b">2\r\n$10\r\ninvalidate\r\n_\r\n"[..]
        );
        assert_eq!(
            message(&keys, Protocol::Resp2),
            &b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
                [..]
        );
        assert_eq!(
            message(&Invalidation::All, Protocol::Resp2),
            &b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"[..]
        );
        assert_eq!(
            redirect_broken(7),
            &b">2\r\n$21\r\ntracking-redir-broken\r\n:7\r\n"[..]
        );
    }
}
