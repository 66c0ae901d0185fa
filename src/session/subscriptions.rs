//! What one client is subscribed to: channels, patterns and shard channels, as of the last
//! request read, and what a (P|S)(UN)SUBSCRIBE changes in it, with the confirmations redis
//! gives (`pubsub.rs` has the hub apply the change).

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};

use crate::cluster::hash_slot;
use crate::error::ReplyError;
use crate::protocol::Protocol;
use crate::pubsub::{Kind, write_confirmation};

/// What a (P|S)(UN)SUBSCRIBE changed: the names newly (un)subscribed, and the confirmations.
#[derive(Debug)]
pub(super) struct Changed {
    pub(super) subscribe: bool,
    pub(super) names: Vec<(Kind, Bytes)>,
    pub(super) reply: Bytes,
}

/// One set per [`Kind`], by [`Kind::index`].
type Sets = [BTreeSet<Bytes>; 3];

/// What one client is subscribed to.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// On the heap while there is any subscription: most clients never subscribe, and the
    /// empty sets would take 72 bytes of every session.
    sets: Option<Box<Sets>>,
}

impl Subscriptions {
    /// The count redis puts in a confirmation: channels plus patterns, or shard channels.
    pub(super) fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.len(Kind::Shard),
            Kind::Channel | Kind::Pattern => self.len(Kind::Channel) + self.len(Kind::Pattern),
        }
    }

    /// How many of one kind (`CLIENT LIST`'s sub, psub, ssub).
    pub(super) fn len(&self, kind: Kind) -> usize {
        self.sets
            .as_ref()
            .map_or(0, |sets| sets[kind.index()].len())
    }

    /// True with any subscription at all.
    pub(super) fn any(&self) -> bool {
        self.sets.is_some()
    }

    /// Whether a client speaking `protocol` is in RESP2 subscribed mode, where most commands
    /// are refused.
    pub(super) fn refuse_commands(&self, protocol: Protocol) -> bool {
        protocol == Protocol::Resp2 && self.any()
    }

    /// (P|S)SUBSCRIBE (`subscribe`) or (P|S)UNSUBSCRIBE of `names` (none: all of `kind`), with
    /// one confirmation per name in `protocol`. Shard channels must share one slot.
    pub(super) fn change(
        &mut self,
        kind: Kind,
        subscribe: bool,
        names: &[Bytes],
        protocol: Protocol,
    ) -> Result<Changed, ReplyError> {
        if kind == Kind::Shard
            && names
                .windows(2)
                .any(|pair| hash_slot(&pair[0]) != hash_slot(&pair[1]))
        {
            return Err(ReplyError::CrossSlot);
        }
        let mut reply = BytesMut::new();
        let mut changed = Vec::new();
        let set = kind.index();
        if subscribe {
            for name in names {
                if self.sets.get_or_insert_default()[set].insert(name.clone()) {
                    changed.push((kind, name.clone()));
                }
                let count = self.count(kind);
                write_confirmation(
                    &mut reply,
                    protocol,
                    kind.subscribe_name(),
                    Some(name),
                    count,
                );
            }
        } else {
            let names: Vec<Bytes> = if names.is_empty() {
                let all = self.sets.as_ref().map(|sets| &sets[set]);
                all.into_iter().flatten().cloned().collect()
            } else {
                names.to_vec()
            };
            if names.is_empty() {
                let count = self.count(kind);
                write_confirmation(&mut reply, protocol, kind.unsubscribe_name(), None, count);
            }
            for name in names {
                if let Some(sets) = &mut self.sets
                    && sets[set].remove(&name)
                {
                    changed.push((kind, name.clone()));
                    if sets.iter().all(BTreeSet::is_empty) {
                        self.sets = None;
                    }
                }
                let count = self.count(kind);
                let name = Some(&name[..]);
                write_confirmation(&mut reply, protocol, kind.unsubscribe_name(), name, count);
            }
        }
        Ok(Changed {
            subscribe,
            names: changed,
            reply: reply.freeze(),
        })
    }

    /// Empties the set, returning what it held.
    pub(super) fn take_all(&mut self) -> Vec<(Kind, Bytes)> {
        let Some(sets) = self.sets.take() else {
            return Vec::new();
        };
        Kind::ALL
            .into_iter()
            .zip(*sets)
            .flat_map(|(kind, set)| set.into_iter().map(move |name| (kind, name)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::View;

    #[test]
    fn counts_are_channels_plus_patterns_or_shard_channels() {
        let mut subs = Subscriptions::default();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let sets = subs.sets.get_or_insert_default();
        sets[Kind::Channel.index()].insert(b("a"));
        sets[Kind::Channel.index()].insert(b("b"));
        sets[Kind::Pattern.index()].insert(b("p*"));
        sets[Kind::Shard.index()].insert(b("s"));
        assert_eq!(subs.count(Kind::Channel), 3);
        assert_eq!(subs.count(Kind::Pattern), 3);
        assert_eq!(subs.count(Kind::Shard), 1);
        assert_eq!(subs.len(Kind::Pattern), 1);
        assert!(subs.any());
        let all = subs.take_all();
        assert_eq!(
            all,
            vec![
                (Kind::Channel, b("a")),
                (Kind::Channel, b("b")),
                (Kind::Pattern, b("p*")),
                (Kind::Shard, b("s")),
            ]
        );
        assert!(!subs.any());
        assert_eq!(subs.count(Kind::Channel), 0);
    }

    fn names(list: &[&'static str]) -> Vec<Bytes> {
        list.iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect()
    }

    /// Each confirmation's name and count.
    fn confirmations(reply: &[u8]) -> Vec<(Vec<u8>, Option<i64>)> {
        crate::protocol::view::frames(reply)
            .map(|frame| {
                let mut parts = View::of(frame).and_then(View::elements).expect("array");
                parts.next_view();
                let name = parts
                    .next_view()
                    .and_then(|v| v.bulk())
                    .unwrap_or(b"")
                    .to_vec();
                (name, parts.next_view().and_then(|v| v.integer()))
            })
            .collect()
    }

    #[test]
    fn subscribing_confirms_each_name_with_the_running_count_and_reports_only_new_ones() {
        let mut subs = Subscriptions::default();
        let first = subs.change(
            Kind::Channel,
            true,
            &names(&["a", "b", "a"]),
            Protocol::Resp2,
        );
        let first = first.expect("subscribed");
        assert_eq!(
            first.names,
            vec![
                (Kind::Channel, names(&["a"])[0].clone()),
                (Kind::Channel, names(&["b"])[0].clone())
            ]
        );
        let counts: Vec<_> = confirmations(&first.reply)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        assert_eq!(counts, [Some(1), Some(2), Some(2)]);
        let patterns = subs.change(Kind::Pattern, true, &names(&["p*"]), Protocol::Resp3);
        assert_eq!(
            confirmations(&patterns.expect("subscribed").reply)[0].1,
            Some(3)
        );
    }

    #[test]
    fn unsubscribing_from_nothing_confirms_once_and_from_all_names_each() {
        let mut subs = Subscriptions::default();
        let none = subs
            .change(Kind::Channel, false, &[], Protocol::Resp2)
            .expect("ok");
        assert!(none.names.is_empty());
        assert_eq!(confirmations(&none.reply), [(Vec::new(), Some(0))]);
        subs.change(Kind::Channel, true, &names(&["a", "b"]), Protocol::Resp2)
            .expect("subscribed");
        let all = subs
            .change(Kind::Channel, false, &[], Protocol::Resp2)
            .expect("ok");
        assert_eq!(all.names.len(), 2);
        let got = confirmations(&all.reply);
        assert_eq!(got, [(b"a".to_vec(), Some(1)), (b"b".to_vec(), Some(0))]);
        assert!(!subs.any());
        assert!(
            subs.sets.is_none(),
            "with no subscription left the sets are freed"
        );
    }

    #[test]
    fn shard_channels_of_different_slots_are_refused_unchanged() {
        let mut subs = Subscriptions::default();
        let refused = subs.change(Kind::Shard, true, &names(&["a", "b"]), Protocol::Resp2);
        assert_eq!(refused.err(), Some(ReplyError::CrossSlot));
        assert!(!subs.any());
        let same = subs.change(
            Kind::Shard,
            true,
            &names(&["{a}1", "{a}2"]),
            Protocol::Resp2,
        );
        assert_eq!(same.expect("one slot").names.len(), 2);
    }
}
