//! `CLIENT UNBLOCK id [TIMEOUT|ERROR]` for a client blocked on a node.
//!
//! A blocked client (BLPOP, XREAD BLOCK...) waits on its own dedicated connection to one node,
//! whose client id on that node slotproxy learned with a `CLIENT ID` sent ahead of the
//! connection's first command. `CLIENT UNBLOCK` is then passed to that node for that id: the
//! node ends the command exactly as redis-server does (a timeout's reply, or `-UNBLOCKED`),
//! the reply reaches the client through its session as any reply, and the node's `1`/`0` is
//! the answer. Nothing can be lost: if the node had already served the command (popped the
//! element), it answers `0` and the client gets its element.
//!
//! Only when the node can't be asked (the node refused `CLIENT ID` or `CLIENT UNBLOCK`: a
//! backend ACL user without `+client|id +client|unblock`) does the session end the command
//! itself: it answers as the node would have and closes the dedicated connection, which makes
//! the node drop the blocked command. Until the node has seen the close it may still serve
//! the command, and an element it pops then (already there, or pushed right after the unblock
//! on another connection) is lost; with the ACL rules above that path is never taken.

use bytes::{Bytes, BytesMut};

use crate::error::ReplyError;
use crate::protocol::request::encode_multibulk;

/// How an unblocked command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnblockMode {
    /// As if its timeout had passed (the default).
    Timeout,
    /// With `-UNBLOCKED client unblocked via CLIENT UNBLOCK`.
    Error,
}

impl UnblockMode {
    /// Parses `CLIENT UNBLOCK`'s arguments after `UNBLOCK`: the id, and the mode if given.
    /// The mode is checked before the id, as redis-server does.
    ///
    /// # Errors
    /// Redis' errors for a bad mode or an id that is not an integer.
    pub fn parse(args: &[Bytes]) -> Result<(i64, UnblockMode), ReplyError> {
        let mode = match args.get(1) {
            None => UnblockMode::Timeout,
            Some(mode) if mode.eq_ignore_ascii_case(b"timeout") => UnblockMode::Timeout,
            Some(mode) if mode.eq_ignore_ascii_case(b"error") => UnblockMode::Error,
            Some(_) => return Err(ReplyError::UnblockReason),
        };
        let id = args
            .first()
            .and_then(|id| crate::protocol::string2ll(id))
            .ok_or(ReplyError::NotInteger)?;
        Ok((id, mode))
    }
}

/// `CLIENT UNBLOCK <node_client> TIMEOUT|ERROR`, for the node.
pub fn node_unblock_command(node_client: i64, mode: UnblockMode) -> Bytes {
    let mode: &'static [u8] = match mode {
        UnblockMode::Timeout => b"TIMEOUT",
        UnblockMode::Error => b"ERROR",
    };
    let mut out = BytesMut::new();
    encode_multibulk(
        &mut out,
        &[
            Bytes::from_static(b"CLIENT"),
            Bytes::from_static(b"UNBLOCK"),
            Bytes::from(node_client.to_string()),
            Bytes::from_static(mode),
        ],
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_checked_before_the_id() {
        let args = |a: &[&'static str]| a.iter().map(|s| Bytes::from(*s)).collect::<Vec<_>>();
        assert_eq!(
            UnblockMode::parse(&args(&["x", "foo"])),
            Err(ReplyError::UnblockReason)
        );
        assert_eq!(
            UnblockMode::parse(&args(&["x"])),
            Err(ReplyError::NotInteger)
        );
        assert_eq!(
            UnblockMode::parse(&args(&["12", "Error"])),
            Ok((12, UnblockMode::Error))
        );
        assert_eq!(
            &node_unblock_command(5, UnblockMode::Timeout)[..],
            b"*4\r\n$6\r\nCLIENT\r\n$7\r\nUNBLOCK\r\n$1\r\n5\r\n$7\r\nTIMEOUT\r\n"
        );
    }
}
