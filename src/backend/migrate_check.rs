//! Whether the node user slotproxy connects as may run `MIGRATE`.
//!
//! slotproxy refuses `MIGRATE` from clients, but a script (`EVAL "return
//! redis.call('MIGRATE', ...)" 0`) runs it on its node as slotproxy's node user, so only the
//! nodes' ACL can stop a client from copying keys out of the cluster (docs/reliability.md
//! section 4). This asks a node, on a connection of its own:
//!
//! 1. `ACL DRYRUN <user> MIGRATE 127.0.0.1 1 k 0 1` (redis 7): `+OK` means it may, a bulk
//!    string (the reason) that it may not. Nothing runs.
//! 2. When the user may not run `ACL DRYRUN` itself (or the node predates it): `MIGRATE
//!    127.0.0.1 1 "" 0 1 KEYS` with no key after `KEYS`, which the ACL checks like any
//!    `MIGRATE` and which, allowed, answers `+NOKEY` without connecting anywhere. `NOPERM`
//!    means it may not. Each refusal leaves an entry in the node's `ACL LOG`.
//!
//! [`check_and_report`] asks all the nodes it is given at once and reports the answer: one WARN
//! line when they allow it, and the `slotproxy_node_user_can_migrate` gauge.

use bytes::{Bytes, BytesMut};
use prometheus::IntGauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use super::setup::{self, Handshake};
use super::stream::NodeStream;
use crate::config::BackendConfig;
use crate::error::BackendError;
use crate::protocol::request::encode_multibulk;
use crate::protocol::view::{View, error_code};
use crate::protocol::{Protocol, ReplyDecoder};

/// What a node said about slotproxy's node user and `MIGRATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateAccess {
    /// The node's ACL lets the user run `MIGRATE`: scripts can move keys out of the cluster.
    Allowed,
    /// The node's ACL refuses it.
    Refused,
}

/// Asks the node at `addr` whether slotproxy's node user (as `config` connects) may run
/// `MIGRATE`, within `config.connect_timeout_ms` to connect and `request_timeout_ms` per
/// question.
///
/// # Errors
/// The connection or its handshake failed (`setup::open`'s errors), or the node did not answer
/// in time or answered something that is not RESP (`BackendError::NotSent`).
pub async fn node_user_may_migrate(
    addr: &str,
    config: &BackendConfig,
) -> Result<MigrateAccess, BackendError> {
    let mut stream = setup::open(addr, config, Handshake::PLAIN).await?;
    let user = node_user(config);
    let dryrun: [&[u8]; 9] = [
        b"ACL",
        b"DRYRUN",
        user.as_bytes(),
        b"MIGRATE",
        b"127.0.0.1",
        b"1",
        b"k",
        b"0",
        b"1",
    ];
    let reply = ask(&mut stream, addr, config, &dryrun).await?;
    if let Some(view) = View::of(&reply) {
        match view {
            View::Simple(_) => return Ok(MigrateAccess::Allowed),
            View::Bulk(_) | View::Verbatim { .. } => return Ok(MigrateAccess::Refused),
            _ => {}
        }
    }
    // ACL DRYRUN itself refused or unknown: ask MIGRATE, in the form that can move nothing.
    let probe: [&[u8]; 7] = [b"MIGRATE", b"127.0.0.1", b"1", b"", b"0", b"1", b"KEYS"];
    let reply = ask(&mut stream, addr, config, &probe).await?;
    Ok(match error_code(&reply) {
        Some(b"NOPERM") => MigrateAccess::Refused,
        _ => MigrateAccess::Allowed,
    })
}

/// Sends one command and reads its reply, within `request_timeout_ms`.
async fn ask(
    stream: &mut NodeStream,
    addr: &str,
    config: &BackendConfig,
    args: &[&[u8]],
) -> Result<Bytes, BackendError> {
    let failed = |reason: String| BackendError::NotSent {
        node: addr.to_string(),
        reason,
    };
    let mut out = BytesMut::new();
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    encode_multibulk(&mut out, &args);
    let exchange = async {
        stream
            .write_all(&out)
            .await
            .map_err(|e| failed(e.to_string()))?;
        stream.flush().await.map_err(|e| failed(e.to_string()))?;
        let decoder = ReplyDecoder::new(Protocol::Resp2);
        let mut buf = BytesMut::with_capacity(512);
        loop {
            if let Some(reply) = decoder
                .decode(&mut buf)
                .map_err(|e| failed(e.to_string()))?
            {
                return Ok(reply.into_raw());
            }
            let read = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| failed(e.to_string()))?;
            if read == 0 {
                return Err(failed("closed before answering".into()));
            }
        }
    };
    let timeout = config.request_timeout();
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| failed(format!("no answer within {} ms", timeout.as_millis())))?
}

/// Asks every node of `nodes` at once and reports what they say: `gauge` is set to 1 when any
/// lets the user run `MIGRATE` (and one WARN line names the remedy), 0 when all that answered
/// refuse it, and -1 when none answered (an INFO line says why).
pub async fn check_and_report(nodes: Vec<String>, config: BackendConfig, gauge: IntGauge) {
    let mut asks = tokio::task::JoinSet::new();
    for node in nodes {
        let config = config.clone();
        asks.spawn(async move {
            let answer = node_user_may_migrate(&node, &config).await;
            (node, answer)
        });
    }
    let user = node_user(&config);
    let (mut allowed, mut refused, mut failed) = (Vec::new(), 0, None);
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((node, Ok(MigrateAccess::Allowed))) => allowed.push(node),
            Ok((_, Ok(MigrateAccess::Refused))) => refused += 1,
            Ok((_, Err(error))) => failed = Some(error.to_string()),
            Err(error) => failed = Some(error.to_string()),
        }
    }
    if !allowed.is_empty() {
        gauge.set(1);
        allowed.sort();
        warn!(
            user = %user,
            nodes = ?allowed,
            "the nodes let slotproxy's node user run MIGRATE: a script sent through slotproxy \
             (EVAL \"return redis.call('MIGRATE', ...)\" 0) can copy keys out of the cluster; \
             give slotproxy a node ACL user with -migrate (config/slotproxy.toml, \
             docs/reliability.md section 4)"
        );
    } else if refused > 0 {
        gauge.set(0);
        info!(user = %user, nodes = refused, "the nodes' ACL refuses MIGRATE to slotproxy's node user");
    } else {
        gauge.set(-1);
        info!(
            user = %user,
            reason = failed.as_deref().unwrap_or("no node to ask"),
            "could not ask the nodes whether slotproxy's node user may run MIGRATE"
        );
    }
}

/// The user slotproxy logs in to the nodes as (`default` when only a password is set).
fn node_user(config: &BackendConfig) -> String {
    config
        .access
        .current()
        .username
        .clone()
        .unwrap_or_else(|| "default".to_string())
}
