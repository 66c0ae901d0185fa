//! A subscriber connection: one session's (P)SUBSCRIBE state on one node.
//!
//! Unlike the request/reply connections, every frame the node sends here (confirmations,
//! messages, PING replies) goes to the session as it arrives, in order; nothing is matched to
//! requests. The session writes commands with `send`. When the connection fails or the node
//! closes it, the frame channel closes, and the session ends the client connection so the client
//! resubscribes (messages published meanwhile can't be recovered).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

use crate::protocol::{Protocol, Reply, ReplyDecoder};

/// The session's end of a subscriber connection.
#[derive(Debug)]
pub struct Subscriber {
    commands: mpsc::UnboundedSender<Bytes>,
    /// Every frame from the node; closed when the connection ends.
    pub frames: mpsc::UnboundedReceiver<Reply>,
}

impl Subscriber {
    /// Opens (in the background) a subscriber connection to `addr` speaking `protocol`.
    pub fn open(addr: Arc<str>, protocol: Protocol, connect_timeout: Duration) -> Self {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(run(addr, protocol, connect_timeout, commands_rx, frames_tx));
        Self { commands, frames }
    }

    /// Queues a command (SUBSCRIBE, PING...) for the node; its replies arrive as frames.
    pub fn send(&self, command: Bytes) {
        // A closed connection shows up as a closed frame channel; nothing to do here.
        let _ = self.commands.send(command);
    }
}

async fn run(
    addr: Arc<str>,
    protocol: Protocol,
    connect_timeout: Duration,
    mut commands: mpsc::UnboundedReceiver<Bytes>,
    frames: mpsc::UnboundedSender<Reply>,
) {
    let connect = async {
        let mut stream = TcpStream::connect(&*addr).await?;
        stream.set_nodelay(true)?;
        if protocol == Protocol::Resp3 {
            stream
                .write_all(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
                .await?;
        }
        Ok::<_, std::io::Error>(stream)
    };
    let stream = match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return debug!(node = %addr, error = %e, "subscriber connect failed"),
        Err(_) => return debug!(node = %addr, "subscriber connect timed out"),
    };
    let (mut reader, mut writer) = stream.into_split();
    let decoder = ReplyDecoder::new(protocol);
    let mut buf = BytesMut::with_capacity(4096);
    // The HELLO 3 reply is ours, not the client's.
    let mut skip = usize::from(protocol == Protocol::Resp3);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => {
                    if writer.write_all(&command).await.is_err() {
                        break;
                    }
                }
                None => break, // the session is gone: closing unsubscribes everything
            },
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(_)) if skip > 0 => skip -= 1,
                        Ok(Some(frame)) => {
                            if frames.send(frame).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            debug!(node = %addr, error = %e, "bad frame on subscriber connection");
                            return;
                        }
                    }
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
            }
        }
    }
    debug!(node = %addr, "subscriber connection closed");
}
