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
//! The command reaches the node on the client's own connection and the unblock on another,
//! so right after the client sent it the node may not have answered the connection's
//! `CLIENT ID` yet (the unblock waits for it), or not have the command blocked yet (it answers
//! `0` for a client slotproxy shows as blocked). While the client still waits on that
//! connection, the unblock is asked again for a moment ([`SETTLE`]); a `0` once the client's
//! reply has come (the node served the command) is the answer.
//!
//! Only when the node can't be asked (the node refused `CLIENT ID` or `CLIENT UNBLOCK`: a
//! backend ACL user without `+client|id +client|unblock`; or no id within [`SETTLE`]) does
//! the session end the command itself: it answers as the node would have and closes the
//! dedicated connection, which makes the node drop the blocked command. Until the node has
//! seen the close it may still serve the command, and an element it pops then (already there,
//! or pushed right after the unblock on another connection) is lost; with the ACL rules above
//! and a node that answers, that path is never taken.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{Blocked, ClientEntry, Lookup};
use crate::error::ReplyError;
use crate::protocol::request::encode_multibulk;
use crate::protocol::{Protocol, View};

/// How long a `0` from the node is asked again while the client still waits on its
/// connection: the time its command may take to reach the node.
pub const SETTLE: Duration = Duration::from_millis(500);
/// The pause between two asks.
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(5);

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

/// Asks the node to end the command `entry` is `blocked` on; the node's integer reply, or
/// `None` when it can't be asked (its connection's id unknown: an ACL without `+client|id`)
/// or would not answer (an ACL without `+client|unblock`).
pub async fn on_node(entry: &ClientEntry, blocked: &Blocked, mode: UnblockMode) -> Option<Bytes> {
    let deadline = Instant::now() + SETTLE;
    // The connection may be new, its `CLIENT ID` not answered yet.
    let node_client = loop {
        match blocked.node_client.lookup() {
            Lookup::Known(id) => break id,
            Lookup::Pending if Instant::now() < deadline => {
                tokio::time::sleep(ASK_AGAIN_AFTER).await;
            }
            Lookup::Pending | Lookup::Never => return None,
        }
    };
    let command = node_unblock_command(node_client, mode);
    // Still blocked on that connection: its command's reply has not come.
    let still_waiting = || {
        entry
            .blocked_on()
            .is_some_and(|now| Arc::ptr_eq(&now.node_client, &blocked.node_client))
    };
    loop {
        let reply = blocked
            .node
            .request(Protocol::Resp2, command.clone())
            .await
            .ok()?;
        let unblocked = View::of(reply.raw())?.integer()? != 0;
        if unblocked || Instant::now() >= deadline || !still_waiting() {
            return Some(reply.into_raw());
        }
        tokio::time::sleep(ASK_AGAIN_AFTER).await;
    }
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
