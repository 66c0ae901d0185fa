//! What one client is subscribed to: channels, patterns and shard channels, as of the last
//! request read (`pubsub.rs` changes it).

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::pubsub::Kind;

/// What one client is subscribed to.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    pub(super) sets: [BTreeSet<Bytes>; 3],
}

impl Subscriptions {
    /// The count redis puts in a confirmation: channels plus patterns, or shard channels.
    pub(super) fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.sets[Kind::Shard.index()].len(),
            Kind::Channel | Kind::Pattern => {
                self.sets[Kind::Channel.index()].len() + self.sets[Kind::Pattern.index()].len()
            }
        }
    }

    /// How many of one kind (`CLIENT LIST`'s sub, psub, ssub).
    pub(super) fn len(&self, kind: Kind) -> usize {
        self.sets[kind.index()].len()
    }

    /// True with any subscription at all.
    pub(super) fn any(&self) -> bool {
        self.sets.iter().any(|s| !s.is_empty())
    }

    /// Empties the set, returning what it held.
    pub(super) fn take_all(&mut self) -> Vec<(Kind, Bytes)> {
        Kind::ALL
            .into_iter()
            .flat_map(|kind| {
                std::mem::take(&mut self.sets[kind.index()])
                    .into_iter()
                    .map(move |name| (kind, name))
            })
            .collect()
    }
}
