//! One node's invalidation stream: a RESP3 connection with `CLIENT TRACKING ON BCAST`, over which
//! the node pushes `invalidate` for every key written on it (and a null for FLUSHALL/FLUSHDB).

use bytes::Buf;
use bytes::{Bytes, BytesMut};
use redis_protocol::resp3::types::{FrameKind, OwnedFrame, Resp3Frame};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::setup::{self, Handshake};
use crate::config::BackendConfig;
use crate::error::BackendError;

/// What a node says about keys that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// These keys were modified (or expired, or evicted).
    Keys(Vec<Bytes>),
    /// The whole keyspace was flushed.
    All,
}

const TRACKING_ON: &[u8] = b"*4\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$5\r\nBCAST\r\n";

/// Connects to `addr` (RESP3, authenticated), turns on broadcast tracking, calls `ready` once the node confirmed it,
/// then `on_invalidation` for every push until the connection fails.
///
/// # Errors
/// Why the connection ended (it never ends cleanly: the caller reconnects or stops it).
pub async fn listen(
    addr: &Arc<str>,
    config: &BackendConfig,
    mut ready: impl FnMut(),
    mut on_invalidation: impl FnMut(Invalidation),
) -> Result<(), BackendError> {
    let lost = |reason: String| BackendError::Lost {
        node: addr.to_string(),
        reason,
    };
    let mut stream = setup::open(addr, config, Handshake::RESP3).await?;
    stream
        .write_all(TRACKING_ON)
        .await
        .map_err(|e| lost(e.to_string()))?;
    stream.flush().await.map_err(|e| lost(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(4096);
    // TRACKING's +OK; pushes may only follow.
    let mut confirmed = false;
    loop {
        if stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| lost(e.to_string()))?
            == 0
        {
            return Err(lost("closed by the node".into()));
        }
        loop {
            let frame = match redis_protocol::resp3::decode::complete::decode(&buf) {
                Ok(Some((frame, len))) => {
                    buf.advance(len);
                    frame
                }
                Ok(None) => break,
                Err(e) => return Err(lost(format!("bad frame: {e}"))),
            };
            if !confirmed {
                if let OwnedFrame::SimpleError { data, .. } = &frame {
                    return Err(lost(format!("CLIENT TRACKING refused: {data}")));
                }
                confirmed = true;
                ready();
                continue;
            }
            if let Some(invalidation) = invalidation_of(&frame) {
                on_invalidation(invalidation);
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
    }
}

/// `>2 invalidate [keys...]` or `>2 invalidate _`; anything else is not an invalidation.
fn invalidation_of(frame: &OwnedFrame) -> Option<Invalidation> {
    let OwnedFrame::Push { data, .. } = frame else {
        return None;
    };
    let [kind, keys] = data.as_slice() else {
        return None;
    };
    if kind.as_bytes()? != b"invalidate" {
        return None;
    }
    match keys {
        OwnedFrame::Array { data, .. } => Some(Invalidation::Keys(
            data.iter()
                .filter_map(|key| match key {
                    OwnedFrame::BlobString { data, .. } => Some(Bytes::copy_from_slice(data)),
                    _ => None,
                })
                .collect(),
        )),
        frame if frame.kind() == FrameKind::Null => Some(Invalidation::All),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &[u8]) -> OwnedFrame {
        redis_protocol::resp3::decode::complete::decode(raw)
            .expect("valid frame")
            .expect("complete frame")
            .0
    }

    #[test]
    fn pushes_become_invalidations() {
        let keys = decode(b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n");
        assert_eq!(
            invalidation_of(&keys),
            Some(Invalidation::Keys(vec![
                Bytes::from_static(b"a"),
                Bytes::from_static(b"bc")
            ]))
        );
        let flush = decode(b">2\r\n$10\r\ninvalidate\r\n_\r\n");
        assert_eq!(invalidation_of(&flush), Some(Invalidation::All));
        let message = decode(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n");
        assert_eq!(invalidation_of(&message), None);
        assert_eq!(invalidation_of(&decode(b"+OK\r\n")), None);
    }
}
