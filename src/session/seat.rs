//! A session's place in the registry of clients ([`crate::clients`]): its registration, and the
//! client ids its dedicated connections have on their nodes (`clients.rs` keeps the profile
//! the registry shows up to date).

use std::sync::Arc;

use bytes::Bytes;

use super::client_info::ClientInfo;
use crate::backend::{Lane, Node, Outgoing, ReplyBudget};
use crate::clients::{ClientEntry, NodeClientId, Registration, Registry};
use crate::protocol::Protocol;

/// `CLIENT ID`, asked of a node on each dedicated connection.
const CLIENT_ID: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";

/// A session's registration, and what it told the registry it is blocked on.
pub(super) struct Seat {
    pub(super) registration: Registration,
    /// The node connection the published `Blocked` names (`None`: not blocked).
    pub(super) blocked_on: Option<Arc<Node>>,
    /// Each dedicated connection's client id on its node, as they were opened.
    pub(super) node_ids: Vec<NodeIdOf>,
}

/// A dedicated connection (by node and protocol) and its client id on the node.
pub(super) type NodeIdOf = (Arc<Node>, Protocol, Arc<NodeClientId>);

impl Seat {
    /// Adds client `id` to `registry` (once its socket's addresses, in `info`, are known);
    /// `budget` counts the reply bytes it holds.
    pub(super) fn take(
        registry: &Arc<Registry>,
        id: u64,
        info: &ClientInfo,
        budget: &Arc<ReplyBudget>,
    ) -> Seat {
        let (peer, local, fd) = info.addresses();
        let entry = Arc::new(ClientEntry::new(id, peer, local, fd, budget.clone()));
        Seat {
            registration: registry.register(entry),
            blocked_on: None,
            node_ids: Vec::new(),
        }
    }

    /// The session's entry.
    pub(super) fn entry(&self) -> &Arc<ClientEntry> {
        self.registration.entry()
    }

    /// A dedicated connection in `protocol` was just opened: ask the node for its client id on
    /// it, ahead of its first command (for `CLIENT UNBLOCK`).
    pub(super) fn dedicated_opened(&mut self, node: &Arc<Node>, lane: &Lane, protocol: Protocol) {
        let id = NodeClientId::asked(lane.send(Outgoing::new(Bytes::from_static(CLIENT_ID))));
        let ids = &mut self.node_ids;
        ids.retain(|(n, p, _)| !(Arc::ptr_eq(n, node) && *p == protocol));
        ids.push((node.clone(), protocol, Arc::new(id)));
    }
}
