//! `MONITOR` feeds: one connection per node, each line it streams handed to the session as is.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::setup::{self, Handshake};
use crate::config::BackendConfig;

/// One node to monitor. A replica's feed names its primary: the commands it replays from its
/// primary's link show up on the primary's feed already and are skipped.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The node's `host:port`.
    pub addr: Arc<str>,
    /// For a replica, its primary's `host:port`.
    pub primary: Option<Arc<str>>,
}

/// Opens a `MONITOR` connection to each node; their lines (`+<time> [0 <client>] ...`) arrive
/// on the returned channel. Each feed ends when its node closes or the receiver is dropped.
pub fn open(feeds: Vec<Feed>, config: &BackendConfig) -> mpsc::UnboundedReceiver<Bytes> {
    let (tx, rx) = mpsc::unbounded_channel();
    for node in feeds {
        let tx = tx.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let addr = node.addr.clone();
            tokio::select! {
                result = feed(&node, &config, &tx) => {
                    debug!(node = %addr, ?result, "monitor feed ended");
                }
                () = tx.closed() => {}
            }
        });
    }
    rx
}

async fn feed(
    node: &Feed,
    config: &BackendConfig,
    lines: &mpsc::UnboundedSender<Bytes>,
) -> std::io::Result<()> {
    let mut stream = setup::open(&node.addr, config, Handshake::PLAIN)
        .await
        .map_err(std::io::Error::other)?;
    stream.write_all(b"*1\r\n$7\r\nMONITOR\r\n").await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(4096);
    // The node's own +OK to MONITOR; the session sent the client one already.
    let mut confirmed = false;
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(end + 2).freeze();
            if !confirmed {
                confirmed = true;
                continue;
            }
            if node
                .primary
                .as_deref()
                .is_some_and(|primary| client_of(&line) == Some(primary.as_bytes()))
            {
                continue;
            }
            if lines.send(line).is_err() {
                return Ok(());
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
    }
}

/// The client address in a MONITOR line: `+1700000000.000000 [0 127.0.0.1:6379] "GET" "k"`.
fn client_of(line: &[u8]) -> Option<&[u8]> {
    let open = line.iter().position(|&b| b == b'[')?;
    let close = open + line[open..].iter().position(|&b| b == b']')?;
    line[open + 1..close].split(|&b| b == b' ').nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_their_client() {
        let line = b"+1795326036.870810 [0 127.0.0.1:23453] \"SET\" \"k\" \"v\"\r\n";
        assert_eq!(client_of(line), Some(&b"127.0.0.1:23453"[..]));
        assert_eq!(client_of(b"+1.0 [0 lua] \"GET\"\r\n"), Some(&b"lua"[..]));
        assert_eq!(client_of(b"+OK\r\n"), None);
    }
}
