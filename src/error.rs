//! Error enums for each boundary, and what each means for a retry.
//!
//! The session turns these into RESP error replies; it never matches on their text. Every error
//! reply slotproxy makes itself is a [`ReplyError`] (`reply.rs`).

use std::io;

pub mod reply;

pub use reply::{ReplyError, Retry};

/// A configuration problem found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("read config file {path}: {source}")]
    Read {
        /// The path given with `--config`.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The TOML did not parse or had an unknown key.
    #[error("config: {0}")]
    Parse(String),
    /// A field has a value slotproxy can't use.
    #[error("config field `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `backend.connections_per_node`.
        field: &'static str,
        /// Why the value was refused.
        reason: String,
    },
}

/// Bytes from a client that are not valid RESP; redis-server closes the connection for these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// Why a request to a node got no reply from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The request never left the proxy (connect failed, node in backoff): a retry is safe.
    #[error("node {node} unreachable: {reason}")]
    NotSent {
        /// The node's `host:port`.
        node: String,
        /// What failed.
        reason: String,
    },
    /// The request was written but the connection died before its reply: the outcome is unknown.
    #[error("connection to node {node} lost before the reply: {reason}")]
    Lost {
        /// The node's `host:port`.
        node: String,
        /// What failed.
        reason: String,
    },
    /// The node refused slotproxy's credentials (`WRONGPASS`, `NOAUTH`) while the connection was
    /// set up: nothing was sent, and retrying can't help until the password matches again.
    #[error("node {node} refused slotproxy's credentials: {reason}")]
    Auth {
        /// The node's `host:port`.
        node: String,
        /// The node's error reply, e.g. `WRONGPASS invalid username-password pair or user is
        /// disabled.`
        reason: String,
    },
    /// The connection's queue was full (`backend.max_queued_requests`): the node reads slower
    /// than clients send. Nothing was sent; retrying later is safe.
    #[error("node {node} has {queued} requests queued in slotproxy, its limit")]
    Busy {
        /// The node's `host:port`.
        node: String,
        /// The limit the queue was at.
        queued: usize,
    },
    /// The node did not answer within the request timeout; the connection was closed.
    #[error("node {node} did not reply within {timeout_ms} ms")]
    Timeout {
        /// The node's `host:port`.
        node: String,
        /// The configured `backend.request_timeout_ms`.
        timeout_ms: u64,
    },
}

impl BackendError {
    /// True when the node certainly never saw the request, so sending it again can't apply it twice.
    pub fn is_retry_safe(&self) -> bool {
        matches!(
            self,
            BackendError::NotSent { .. } | BackendError::Busy { .. }
        )
    }
}

/// Errors that stop the proxy as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No seed accepted slotproxy's credentials at startup (a `BackendError::Auth`).
    #[error(transparent)]
    BackendAuth(BackendError),
    /// Binding or accepting on the listen address failed.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The listen address.
        addr: String,
        /// The I/O error.
        source: io::Error,
    },
}
