//! A session's place in the registry of clients ([`crate::clients`]): its registration, what
//! it last published there, and the client ids its dedicated connections have on their nodes
//! (`clients.rs` keeps them up to date).

use std::sync::Arc;

use crate::backend::Node;
use crate::clients::{ClientEntry, NodeClientId, Profile, Registration};
use crate::protocol::Protocol;

/// A session's registration and what it last published.
pub(super) struct Seat {
    pub(super) registration: Registration,
    pub(super) published: Profile,
    /// The node connection the published `Blocked` names (`None`: not blocked).
    pub(super) blocked_on: Option<Arc<Node>>,
    /// Each dedicated connection's client id on its node, as they were opened.
    pub(super) node_ids: Vec<NodeIdOf>,
}

/// A dedicated connection (by node and protocol) and its client id on the node.
pub(super) type NodeIdOf = (Arc<Node>, Protocol, Arc<NodeClientId>);

impl Seat {
    /// The session's entry.
    pub(super) fn entry(&self) -> &Arc<ClientEntry> {
        self.registration.entry()
    }
}
