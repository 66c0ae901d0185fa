//! RESP framing only: client requests in, node replies out, locally built replies.
//!
//! Requests are parsed with `redis-protocol`'s range decoder and node replies are delimited by a
//! header scan (`frame.rs`), so payloads are never copied: a request's arguments and a node's
//! reply are slices of the bytes read from the socket, and the original bytes are what gets
//! forwarded. Where the proxy must look into a node's reply (to merge, compute or count), it
//! reads it through [`View`] (`view.rs`), the one RESP reader outside the decoders. This module
//! knows nothing about slots, nodes or routing.

pub mod codec;
pub mod frame;
mod inline;
pub mod reply;
pub mod request;
pub mod view;

pub use codec::{Decoded, ReplyDecoder, RequestDecoder};
pub use reply::{Redirect, RedirectKind, Reply, ReplyKind};
pub use request::Request;
pub use view::{View, string2ll};

/// The RESP version a connection speaks, chosen with `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RESP2, every connection's initial protocol.
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// Index for per-protocol arrays.
    pub const fn index(self) -> usize {
        match self {
            Protocol::Resp2 => 0,
            Protocol::Resp3 => 1,
        }
    }
}
