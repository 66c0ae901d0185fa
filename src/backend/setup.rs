//! How every connection slotproxy opens to a node starts: TCP connect, then one pipelined
//! handshake that authenticates, picks the protocol and sends `READONLY` when asked.
//!
//! With `[backend.tls] enabled`, the TLS handshake comes first, so everything after it,
//! credentials included, travels encrypted.
//!
//! Shared and dedicated connections, pub/sub links, tracking listeners and health-check probes
//! all open their sockets with [`open`] (the topology refresh and `COMMAND` ride
//! on the shared connections), so the credentials are sent in this one place: inside `HELLO 3
//! AUTH user pass` on a RESP3 connection, else as `AUTH user pass` (the two-argument form, with
//! `default` when no user is configured, works for `requirepass` and ACL users alike).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::access::Access;
use super::stream::NodeStream;
use crate::config::BackendConfig;
use crate::error::BackendError;
use crate::protocol::request::encode_multibulk;
use crate::protocol::{Protocol, ReplyDecoder};

const READONLY: &[u8] = b"*1\r\n$8\r\nREADONLY\r\n";
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// What a new connection asks of the node before it carries anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// `Resp3` sends `HELLO 3` (with the credentials in it).
    pub protocol: Protocol,
    /// Send `READONLY`, so a replica serves reads of its primary's slots on this connection.
    pub replica_read: bool,
    /// Send a `PING` last: proves the node accepts commands from us even when nothing else
    /// would have been asked (a node with `requirepass` while slotproxy has no password
    /// answers it `NOAUTH`).
    pub ping: bool,
}

impl Handshake {
    /// A RESP2 connection, without `READONLY`, no `PING`: only the credentials, if any.
    pub const PLAIN: Handshake = Handshake {
        protocol: Protocol::Resp2,
        replica_read: false,
        ping: false,
    };

    /// A RESP3 connection (pub/sub links, tracking listeners).
    pub const RESP3: Handshake = Handshake {
        protocol: Protocol::Resp3,
        replica_read: false,
        ping: false,
    };
}

/// One command of the handshake, and whether it carries the credentials.
struct Step {
    command: Bytes,
    auth: bool,
}

/// Connects to `addr` (with TLS when configured) and runs `handshake`, all within
/// `config.connect_timeout_ms`.
///
/// # Errors
/// `BackendError::Auth` when the node refused the credentials (or wants some and got none),
/// `BackendError::NotSent` for anything else (connect failed, TLS handshake failed, timed out,
/// setup refused).
pub async fn open(
    addr: &str,
    config: &BackendConfig,
    handshake: Handshake,
) -> Result<NodeStream, BackendError> {
    let timeout = config.connect_timeout();
    let not_sent = |reason: String| BackendError::NotSent {
        node: addr.to_string(),
        reason,
    };
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| not_sent(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| not_sent(e.to_string()))?;
        let access = config.access.current();
        let mut stream = match &access.tls {
            Some(tls) => NodeStream::Tls(Box::new(tls.connect(addr, tcp).await.map_err(not_sent)?)),
            None => NodeStream::Plain(tcp),
        };
        let steps = steps(&access, handshake);
        if !steps.is_empty() {
            exchange(&mut stream, addr, handshake.protocol, &steps).await?;
        }
        Ok(stream)
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| {
        not_sent(format!(
            "connect timed out after {} ms",
            timeout.as_millis()
        ))
    })?
}

/// The handshake's commands, in order.
fn steps(access: &Access, handshake: Handshake) -> Vec<Step> {
    let credentials = access.password.as_ref().map(|password| {
        let user = access.username.as_deref().unwrap_or("default");
        [
            Bytes::from_static(b"AUTH"),
            Bytes::copy_from_slice(user.as_bytes()),
            Bytes::copy_from_slice(password.expose().as_bytes()),
        ]
    });
    let mut steps = Vec::new();
    let encode = |args: &[Bytes]| {
        let mut out = BytesMut::new();
        encode_multibulk(&mut out, args);
        out.freeze()
    };
    match (handshake.protocol, credentials) {
        (Protocol::Resp3, credentials) => {
            let mut args = vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")];
            let auth = credentials.is_some();
            args.extend(credentials.into_iter().flatten());
            steps.push(Step {
                command: encode(&args),
                auth,
            });
        }
        (Protocol::Resp2, Some(credentials)) => steps.push(Step {
            command: encode(&credentials),
            auth: true,
        }),
        (Protocol::Resp2, None) => {}
    }
    if handshake.replica_read {
        steps.push(Step {
            command: Bytes::from_static(READONLY),
            auth: false,
        });
    }
    if handshake.ping {
        steps.push(Step {
            command: Bytes::from_static(PING),
            auth: false,
        });
    }
    steps
}

/// Sends every step in one write and checks that none of them failed.
async fn exchange(
    stream: &mut NodeStream,
    addr: &str,
    protocol: Protocol,
    steps: &[Step],
) -> Result<(), BackendError> {
    let not_sent = |reason: String| BackendError::NotSent {
        node: addr.to_string(),
        reason,
    };
    let all: Vec<u8> = steps
        .iter()
        .flat_map(|s| s.command.iter().copied())
        .collect();
    stream
        .write_all(&all)
        .await
        .map_err(|e| not_sent(e.to_string()))?;
    stream.flush().await.map_err(|e| not_sent(e.to_string()))?;
    let decoder = ReplyDecoder::new(protocol);
    let mut buf = BytesMut::with_capacity(1024);
    let mut answered = 0;
    while answered < steps.len() {
        match decoder
            .decode(&mut buf)
            .map_err(|e| not_sent(e.to_string()))?
        {
            Some(reply) => {
                if let Some(text) = reply.error_text() {
                    let text = String::from_utf8_lossy(text).into_owned();
                    if steps[answered].auth || text.starts_with("NOAUTH") {
                        return Err(BackendError::Auth {
                            node: addr.to_string(),
                            reason: text,
                        });
                    }
                    return Err(not_sent(format!("connection setup refused: {text}")));
                }
                answered += 1;
            }
            None => {
                if stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| not_sent(e.to_string()))?
                    == 0
                {
                    return Err(not_sent("closed during connection setup".into()));
                }
            }
        }
    }
    Ok(())
}

/// Checks, once at startup, that the seeds accept slotproxy's credentials: connects to all of
/// them at once (handshake plus `PING`) and returns as soon as one accepts.
///
/// # Errors
/// The first `BackendError::Auth` when no seed accepted and at least one refused the
/// credentials. Seeds that can't be reached don't count: the refresher keeps trying them.
pub async fn check_credentials(
    seeds: &[String],
    config: &BackendConfig,
) -> Result<(), BackendError> {
    let mut attempts = tokio::task::JoinSet::new();
    for seed in seeds {
        let (seed, config) = (seed.clone(), config.clone());
        let handshake = Handshake {
            ping: true,
            ..Handshake::PLAIN
        };
        attempts.spawn(async move { open(&seed, &config, handshake).await.map(drop) });
    }
    let mut refused = None;
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error @ BackendError::Auth { .. })) => {
                refused.get_or_insert(error);
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
    refused.map_or(Ok(()), Err)
}

/// Rate limit for one node's connect-failure warnings, shared by all of its connections, so a
/// node that refuses the password is logged at most once per period rather than once per
/// connection and retry.
#[derive(Debug, Default)]
pub struct FailureLog {
    /// When the last warning was let through, in ms since the process's first use of this
    /// type, plus one (0 = never).
    last_ms: AtomicU64,
}

impl FailureLog {
    /// True when nothing was logged for this node within `period`; marks now as logged then.
    pub fn should_log(&self, period: Duration) -> bool {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < period {
            return false;
        }
        self.last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn commands(access: &Access, handshake: Handshake) -> Vec<(String, bool)> {
        steps(access, handshake)
            .into_iter()
            .map(|s| (String::from_utf8_lossy(&s.command).into_owned(), s.auth))
            .collect()
    }

    #[test]
    fn credentials_ride_in_hello_or_auth() {
        let mut config = Access::default();
        assert!(commands(&config, Handshake::PLAIN).is_empty());
        assert_eq!(
            commands(&config, Handshake::RESP3),
            [("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n".to_string(), false)]
        );
        config.password = Some(Secret::new("pw"));
        assert_eq!(
            commands(&config, Handshake::PLAIN),
            [(
                "*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n".to_string(),
                true
            )]
        );
        config.username = Some("proxy".into());
        let resp3_replica_read = Handshake {
            replica_read: true,
            ping: true,
            ..Handshake::RESP3
        };
        assert_eq!(
            commands(&config, resp3_replica_read),
            [
                (
                    "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$5\r\nproxy\r\n$2\r\npw\r\n"
                        .to_string(),
                    true
                ),
                ("*1\r\n$8\r\nREADONLY\r\n".to_string(), false),
                ("*1\r\n$4\r\nPING\r\n".to_string(), false),
            ]
        );
    }

    #[test]
    fn failure_log_lets_one_warning_through_per_period() {
        let log = FailureLog::default();
        assert!(log.should_log(Duration::from_secs(60)));
        assert!(!log.should_log(Duration::from_secs(60)));
        assert!(log.should_log(Duration::ZERO));
    }
}
