//! Config epochs: how a refresh tells a fresh topology answer from a stale one.
//!
//! Redis Cluster settles every conflict over who serves a slot by config epoch: each failover
//! (and each slot move that completes) gives the winning primary a config epoch greater than any
//! the cluster had used, and nodes adopt a claim when its epoch beats the one they know. So the
//! greatest config epoch among the slot-owning primaries a node lists says how recent that node's
//! view is: a node that has seen a failover lists the promoted primary with the new epoch, a node
//! that has not still lists the old primary with its older one. The refresh asks several nodes
//! and keeps the answer whose view scores highest.
//!
//! The score is per answer, not per slot: if two changes happened at once and each answering node
//! has seen only one of them, the answer with the later change wins and the other change is
//! picked up by the next refresh (which the refresher keeps scheduling while a primary of the map
//! fails its health checks). Merging answers slot by slot would avoid that wait at the cost of
//! stitching shards together from different views; it is not done.
//!
//! `CLUSTER SHARDS` does not report epochs; `CLUSTER NODES` does (its seventh field).

/// The greatest config epoch among the primaries that own at least one slot in a `CLUSTER NODES`
/// reply; `None` when no line has one (an empty or unreadable reply).
pub fn owners_epoch(cluster_nodes: &str) -> Option<u64> {
    cluster_nodes
        .lines()
        .filter_map(|line| {
            // <id> <ip:port@cport> <flags> <primary> <ping-sent> <pong-recv> <config-epoch>
            // <link-state> <slot> <slot> ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") {
                return None;
            }
            // Slot tokens: `5`, `0-5460`; `[slot->-id]` marks a migration, not ownership.
            let owns_slots = fields
                .get(8..)
                .is_some_and(|slots| slots.iter().any(|s| !s.starts_with('[')));
            if !owns_slots {
                return None;
            }
            fields.get(6)?.parse::<u64>().ok()
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_the_greatest_among_slot_owners() {
        // After a failover: the promoted node owns the slots with epoch 7; the failed primary
        // (epoch 1) owns nothing any more and must not count, nor must replicas.
        let fresh = "\
a 127.0.0.1:7000@17000 master,fail - 0 0 1 disconnected
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c 127.0.0.1:7002@17002 myself,master - 0 0 3 connected 10923-16383 [42->-b]
d 127.0.0.1:7003@17003 master - 0 0 7 connected 0-5460
e 127.0.0.1:7004@17004 slave b 0 0 9 connected
";
        assert_eq!(owners_epoch(fresh), Some(7));
        // The same cluster seen by a node that missed the failover.
        let stale = "\
a 127.0.0.1:7000@17000 master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383
d 127.0.0.1:7003@17003 myself,slave a 0 0 1 connected
";
        assert_eq!(owners_epoch(stale), Some(3));
    }

    #[test]
    fn unreadable_replies_have_no_epoch() {
        for text in [
            "",
            "garbage",
            "a 127.0.0.1:7000@17000 master - 0 0 x connected 0-1",
            // A primary whose only slot token is a migration mark owns nothing.
            "a 127.0.0.1:7000@17000 master - 0 0 4 connected [5-<-b]",
        ] {
            assert_eq!(owners_epoch(text), None, "{text:?}");
        }
    }
}
