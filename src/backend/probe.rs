//! `Probe`: the small connection a health check uses, apart from the connections that carry
//! clients' requests, so a check measures the node and never waits behind client traffic.
//!
//! One probe serves one node, one check at a time: `PING` and `INFO replication` pipelined in one
//! write. The socket is kept between checks and dropped after any failure (the next check
//! connects again), so a node that stopped answering never leaves a half-read reply behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::setup::{self, Handshake};
use super::stream::NodeStream;
use crate::config::BackendConfig;
use crate::error::BackendError;

use crate::protocol::codec::decode_owned;
use crate::protocol::{Protocol, Reply, ReplyDecoder};

const CHECK: &[u8] = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n";

/// Why a health check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No connection could be made, or the node refused slotproxy's credentials.
    #[error("health check of {node}: connect: {reason}")]
    Connect {
        /// The node's `host:port`.
        node: String,
        /// What failed.
        reason: String,
    },
    /// The replies did not arrive within the timeout.
    #[error("health check of {node}: no reply within {timeout_ms} ms")]
    Timeout {
        /// The node's `host:port`.
        node: String,
        /// The configured `cluster.health_check_timeout_ms`.
        timeout_ms: u64,
    },
    /// The node answered with an error (`-LOADING`...) or something that is not a reply to
    /// these commands.
    #[error("health check of {node}: {reply}")]
    Refused {
        /// The node's `host:port`.
        node: String,
        /// The reply, as text.
        reply: String,
    },
    /// The socket failed or closed.
    #[error("health check of {node}: {reason}")]
    Lost {
        /// The node's `host:port`.
        node: String,
        /// What failed.
        reason: String,
    },
}

/// What one successful check learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Time from writing `PING` to reading its reply.
    pub rtt: Duration,
    /// The text of `INFO replication`; `None` when a busy node refused it too.
    pub replication: Option<String>,
    /// The node's `-BUSY ...` reply to `PING`: it is running a long script or function. It is
    /// alive (it answers); its other connections get this same reply at once.
    pub busy: Option<Bytes>,
}

/// Error codes a live node answers `PING` with while it can't serve data commands. Such a node
/// is up: requests sent to it get the same error a cluster client would, at once.
const ALIVE_CODES: [&[u8]; 3] = [b"-BUSY", b"-LOADING", b"-MASTERDOWN"];

/// Whether `raw` is an error reply with error code `code` (`-BUSY`, not `-BUSYGROUP`).
pub(crate) fn has_code(raw: &[u8], code: &[u8]) -> bool {
    raw.first() == Some(&b'-') && crate::protocol::view::error_code(raw) == code.strip_prefix(b"-")
}

/// Whether a `PING` reply says the node is alive but not serving data (see `ALIVE_CODES`).
fn is_alive_refusal(raw: &[u8]) -> bool {
    ALIVE_CODES.iter().any(|code| has_code(raw, code))
}

/// A health check connection to one node.
#[derive(Debug)]
pub struct Probe {
    addr: Arc<str>,
    config: BackendConfig,
    stream: Option<NodeStream>,
    buf: BytesMut,
}

impl Probe {
    /// A probe for `addr`; it connects (with `config`'s credentials) on the first check.
    pub fn new(addr: Arc<str>, config: BackendConfig) -> Self {
        Self {
            addr,
            config,
            stream: None,
            buf: BytesMut::new(),
        }
    }

    /// Sends `PING` and `INFO replication` and reads both replies, all within `timeout`.
    ///
    /// # Errors
    /// `ProbeError` saying what failed; the connection is dropped then.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled check may leave replies unread. Drop the probe instead.
    pub async fn check(&mut self, timeout: Duration) -> Result<ProbeReport, ProbeError> {
        let result = match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Timeout {
                node: self.addr.to_string(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        if result.is_err() {
            self.stream = None;
            self.buf.clear();
        }
        result
    }

    async fn exchange(&mut self) -> Result<ProbeReport, ProbeError> {
        let addr = self.addr.clone();
        let node = || addr.to_string();
        if self.stream.is_none() {
            let stream = setup::open(&self.addr, &self.config, Handshake::PLAIN)
                .await
                .map_err(|e| ProbeError::Connect {
                    node: node(),
                    reason: match e {
                        BackendError::NotSent { reason, .. } => reason,
                        other => other.to_string(),
                    },
                })?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(ProbeError::Lost {
                node: node(),
                reason: "no connection".into(),
            });
        };
        let lost = |e: std::io::Error| ProbeError::Lost {
            node: node(),
            reason: e.to_string(),
        };
        let sent = Instant::now();
        stream.write_all(CHECK).await.map_err(lost)?;
        stream.flush().await.map_err(lost)?;
        let decoder = ReplyDecoder::new(Protocol::Resp2);
        let mut replies: Vec<Reply> = Vec::with_capacity(2);
        let mut rtt = Duration::ZERO;
        while replies.len() < 2 {
            match decoder.decode(&mut self.buf) {
                Ok(Some(reply)) => {
                    if replies.is_empty() {
                        rtt = sent.elapsed();
                    }
                    replies.push(reply);
                }
                Ok(None) => {
                    if stream.read_buf(&mut self.buf).await.map_err(lost)? == 0 {
                        return Err(ProbeError::Lost {
                            node: node(),
                            reason: "closed by the node".into(),
                        });
                    }
                }
                Err(e) => {
                    return Err(ProbeError::Refused {
                        node: node(),
                        reply: e.to_string(),
                    });
                }
            }
        }
        let refused = |reply: &Reply| ProbeError::Refused {
            node: node(),
            reply: String::from_utf8_lossy(reply.raw()).trim_end().to_string(),
        };
        let ping = replies[0].raw();
        let alive_refusal = is_alive_refusal(ping);
        if !alive_refusal && ping.as_ref() != b"+PONG\r\n" {
            return Err(refused(&replies[0]));
        }
        let replication = match decode_owned(replies[1].raw()) {
            Ok(OwnedFrame::BulkString(text)) => Some(String::from_utf8_lossy(&text).into_owned()),
            _ if alive_refusal => None,
            _ => return Err(refused(&replies[1])),
        };
        let busy = has_code(ping, b"-BUSY").then(|| ping.clone());
        Ok(ProbeReport {
            rtt,
            replication,
            busy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_loading_and_masterdown_pings_mean_alive() {
        let busy = b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n";
        assert!(is_alive_refusal(busy));
        assert!(has_code(busy, b"-BUSY"));
        assert!(is_alive_refusal(
            b"-LOADING Redis is loading the dataset in memory\r\n"
        ));
        assert!(is_alive_refusal(
            b"-MASTERDOWN Link with MASTER is down\r\n"
        ));
        assert!(is_alive_refusal(b"-BUSY\r\n"));
        assert!(!is_alive_refusal(
            b"-BUSYGROUP Consumer Group name already exists\r\n"
        ));
        assert!(!has_code(b"-BUSYGROUP x\r\n", b"-BUSY"));
        assert!(!is_alive_refusal(b"-ERR unknown command 'PING'\r\n"));
        assert!(!is_alive_refusal(b"+PONG\r\n"));
    }
}
