//! `ack = replicated`: a write's reply reaches its client only once a replica has the write.
//!
//! A shared connection to a primary follows each batch that holds writes with one
//! `WAIT 1 <ack_timeout_ms>` (it covers every write before it), holds those writes' replies
//! until it answers, then releases them, or tells each client its write is not known to be
//! replicated. A primary with no replica online can't confirm anything: its writes are answered
//! `NOREPLICAS` as soon as they are applied instead of waiting for a `WAIT` that must time out.

use super::connection::Use;
use super::mailbox::ReplyTo;
use crate::config::{Ack, BackendConfig};
use crate::error::{BackendError, ReplyError};
use crate::protocol::{Reply, View};

/// What happens to one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Delivered as it comes (reads, or `ack = primary`).
    No,
    /// A write: held until the batch's `WAIT` confirms a replica has it.
    UntilWait,
    /// A write to a primary with no replica: `NOREPLICAS` once it is applied.
    NoReplica,
}

/// One connection's replication acknowledgements.
#[derive(Debug)]
pub(super) struct Replication {
    /// `WAIT 1 <ack_timeout_ms>` for this connection, when it acknowledges writes.
    wait: Option<Vec<u8>>,
    ack_timeout_ms: u64,
    /// Write replies held until the `WAIT` after their batch answers.
    held: Vec<(ReplyTo, Reply)>,
}

impl Replication {
    /// Acknowledgements for a connection: only shared, non-`READONLY` connections with
    /// `ack = replicated` wait (a dedicated one serves blocking commands and transactions
    /// whose clients wait for the node anyway).
    pub(super) fn new(config: &BackendConfig, usage: Use, replica_read: bool) -> Self {
        let on = config.ack == Ack::Replicated && usage == Use::Shared && !replica_read;
        let wait = on.then(|| {
            let timeout = config.ack_timeout_ms.to_string();
            format!(
                "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n${}\r\n{timeout}\r\n",
                timeout.len()
            )
            .into_bytes()
        });
        Self {
            wait,
            ack_timeout_ms: config.ack_timeout_ms,
            held: Vec::new(),
        }
    }

    /// How a request's reply is handed over: `write` requests wait for a replica when this
    /// connection acknowledges, and `replicas` says whether the primary has one online.
    pub(super) fn hold(&self, write: bool, replicas: bool) -> Hold {
        match (write && self.wait.is_some(), replicas) {
            (false, _) => Hold::No,
            (true, true) => Hold::UntilWait,
            (true, false) => Hold::NoReplica,
        }
    }

    /// The `WAIT` to send after a batch that holds writes.
    pub(super) fn wait_command(&self) -> Option<&[u8]> {
        self.wait.as_deref()
    }

    /// Hands `reply` to its client as `hold` says: at once, after the `WAIT`, or replaced by
    /// `NOREPLICAS`. An error reply is never held (nothing was written).
    pub(super) fn hand_over(&mut self, to: ReplyTo, reply: Reply, hold: Hold) {
        if reply.error_text().is_some() {
            to.send(Ok(reply));
            return;
        }
        match hold {
            Hold::No => to.send(Ok(reply)),
            Hold::UntilWait => self.held.push((to, reply)),
            Hold::NoReplica => to.send(Ok(Reply::local(ReplyError::NoReplicaToAck.to_bytes()))),
        }
    }

    /// The batch's `WAIT` answered: release its writes' replies if a replica has them, otherwise
    /// tell each client its write is not known to be replicated.
    pub(super) fn wait_answered(&mut self, wait_reply: &Reply) {
        let replicas = View::of(wait_reply.raw())
            .and_then(|view| view.integer())
            .unwrap_or(0);
        for (sender, reply) in self.held.drain(..) {
            let reply = if replicas >= 1 {
                reply
            } else {
                Reply::local(ReplyError::NotReplicated(self.ack_timeout_ms).to_bytes())
            };
            sender.send(Ok(reply));
        }
    }

    /// The connection failed: writes applied on the node but not known to be replicated have
    /// an unknown outcome too.
    pub(super) fn fail(&mut self, error: &BackendError) {
        for (sender, _) in self.held.drain(..) {
            sender.send(Err(error.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::sync::oneshot;

    fn config(ack: Ack) -> BackendConfig {
        BackendConfig {
            ack,
            ack_timeout_ms: 250,
            ..BackendConfig::default()
        }
    }

    fn ok() -> Reply {
        Reply::local(Bytes::from_static(b"+OK\r\n"))
    }

    #[test]
    fn only_shared_primary_connections_with_ack_replicated_wait() {
        let replicated = config(Ack::Replicated);
        let wait = Replication::new(&replicated, Use::Shared, false);
        assert_eq!(
            wait.wait_command(),
            Some(&b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$3\r\n250\r\n"[..])
        );
        assert_eq!(wait.hold(true, true), Hold::UntilWait);
        assert_eq!(wait.hold(true, false), Hold::NoReplica);
        assert_eq!(wait.hold(false, true), Hold::No);
        for (config, usage, replica_read) in [
            (&replicated, Use::Dedicated, false),
            (&replicated, Use::Shared, true),
            (&config(Ack::Primary), Use::Shared, false),
        ] {
            let off = Replication::new(config, usage, replica_read);
            assert_eq!(off.wait_command(), None);
            assert_eq!(off.hold(true, true), Hold::No);
        }
    }

    #[test]
    fn held_writes_are_released_by_a_wait_that_reached_a_replica() {
        let mut ack = Replication::new(&config(Ack::Replicated), Use::Shared, false);
        let (tx, mut rx) = oneshot::channel();
        ack.hand_over(ReplyTo::Once(tx), ok(), Hold::UntilWait);
        assert!(rx.try_recv().is_err(), "held until the WAIT answers");
        ack.wait_answered(&Reply::local(Bytes::from_static(b":1\r\n")));
        assert_eq!(rx.try_recv().unwrap().unwrap(), ok());
    }

    #[test]
    fn a_wait_no_replica_confirmed_turns_held_writes_into_noreplicas() {
        let mut ack = Replication::new(&config(Ack::Replicated), Use::Shared, false);
        let (tx, mut rx) = oneshot::channel();
        ack.hand_over(ReplyTo::Once(tx), ok(), Hold::UntilWait);
        ack.wait_answered(&Reply::local(Bytes::from_static(b":0\r\n")));
        let reply = rx.try_recv().unwrap().unwrap();
        let text = reply.error_text().unwrap();
        assert!(text.starts_with(b"NOREPLICAS"), "{text:?}");
        assert!(String::from_utf8_lossy(text).contains("within 250 ms"));
    }

    #[test]
    fn errors_pass_and_writes_without_replica_are_noreplicas_at_once() {
        let mut ack = Replication::new(&config(Ack::Replicated), Use::Shared, false);
        let (tx, mut rx) = oneshot::channel();
        let error = Reply::local(Bytes::from_static(b"-WRONGTYPE x\r\n"));
        ack.hand_over(ReplyTo::Once(tx), error.clone(), Hold::UntilWait);
        assert_eq!(rx.try_recv().unwrap().unwrap(), error);
        let (tx, mut rx) = oneshot::channel();
        ack.hand_over(ReplyTo::Once(tx), ok(), Hold::NoReplica);
        let reply = rx.try_recv().unwrap().unwrap();
        assert!(reply.error_text().unwrap().starts_with(b"NOREPLICAS"));
    }
}
