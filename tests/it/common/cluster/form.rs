//! Forming a new cluster the way `redis-cli --cluster create` does: slots, MEET, replicas, and
//! the wait until every node agrees.

use std::collections::BTreeSet;

use super::{SETTLE_TIMEOUT, TestCluster, query};
use crate::common::topology::{ViewRow, slot_ranges, view_rows};
use crate::common::wait_for;

impl TestCluster {
    /// Slots, MEET, replication, then waits until everything is in place.
    pub(super) fn form(&self, primaries: usize, replicas_per_primary: usize) {
        let ranges = slot_ranges(primaries);
        self.assign_slots(&ranges);
        self.meet_all();
        self.attach_replicas(primaries);
        self.wait_formed(&ranges, replicas_per_primary);
    }

    /// Gives each primary its range, after distinct config epochs (as redis-cli does, which
    /// spares the cluster its epoch-collision handling).
    fn assign_slots(&self, ranges: &[(u16, u16)]) {
        for (epoch, node) in self.nodes.iter().enumerate() {
            let _: () = query(
                &node.addr,
                redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(epoch + 1),
            );
        }
        for (node, &(first, last)) in self.nodes.iter().zip(ranges) {
            let _: () = query(
                &node.addr,
                redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(first)
                    .arg(last),
            );
        }
    }

    /// Introduces every node to every other and waits until all handshakes are done.
    fn meet_all(&self) {
        // Gossip would spread MEETs sent from the first node alone, but only after a second or
        // two; a MEET per pair introduces everyone at once.
        for (i, node) in self.nodes.iter().enumerate() {
            for other in &self.nodes[i + 1..] {
                let meet = redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(other.port)
                    .clone();
                let _: () = query(&node.addr, &meet);
            }
        }
        let all_ids: BTreeSet<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        wait_for(SETTLE_TIMEOUT, "every node knows every other node", || {
            for node in &self.nodes {
                let entries = self.view(node)?;
                let known: BTreeSet<&str> = entries
                    .iter()
                    .filter(|e| !e.has_flag("handshake"))
                    .map(|e| e.id.as_str())
                    .collect();
                if known != all_ids {
                    let (count, all) = (known.len(), all_ids.len());
                    return Err(format!("{} knows {count} of {all} nodes", node.addr));
                }
            }
            Ok(())
        });
    }

    /// Makes node `primaries + k` a replica of node `k % primaries` and waits for the syncs.
    fn attach_replicas(&self, primaries: usize) {
        let replicas = &self.nodes[primaries..];
        if replicas.is_empty() {
            return;
        }
        for (k, replica) in replicas.iter().enumerate() {
            let primary = &self.nodes[k % primaries];
            let _: () = query(
                &replica.addr,
                redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary.id),
            );
        }
        wait_for(
            SETTLE_TIMEOUT,
            "every replica is synced with its primary",
            || {
                replicas
                    .iter()
                    .try_for_each(|replica| self.check_replica_link(replica))
            },
        );
        // A primary lists a replica in CLUSTER SLOTS only once the replica's replication offset
        // is not 0. FLUSHALL (of nothing) is always replicated, so it moves the offset now
        // instead of at the first replication PING.
        for primary in &self.nodes[..primaries] {
            let _: () = query(&primary.addr, &redis::cmd("FLUSHALL"));
        }
    }

    /// Waits until every node has `cluster_state:ok`, sees exactly the intended topology (slot
    /// ranges, roles, healthy links), lists every replica in `CLUSTER SLOTS`, and every replica is
    /// still synced.
    fn wait_formed(&self, ranges: &[(u16, u16)], replicas_per_primary: usize) {
        let primaries = ranges.len();
        let mut expected: Vec<ViewRow> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| ViewRow {
                id: node.id.clone(),
                primary_of: (i >= primaries)
                    .then(|| self.nodes[(i - primaries) % primaries].id.clone()),
                slots: ranges.get(i).map(|&range| vec![range]).unwrap_or_default(),
            })
            .collect();
        expected.sort();
        let what = "the cluster is formed (state ok, one slot map everywhere, replicas synced)";
        wait_for(SETTLE_TIMEOUT, what, || {
            for node in &self.nodes {
                let state =
                    self.field_of(node, redis::cmd("CLUSTER").arg("INFO"), "cluster_state")?;
                if state != "ok" {
                    return Err(format!("{} has cluster_state:{state}", node.addr));
                }
                let entries = self.view(node)?;
                if let Some(bad) = entries.iter().find(|e| !e.is_healthy()) {
                    return Err(format!("{} sees {} as {}", node.addr, bad.id, bad.raw));
                }
                if view_rows(&entries) != expected {
                    return Err(format!("{} sees another topology: {entries:?}", node.addr));
                }
                // Clients discover replicas from CLUSTER SLOTS, which lags CLUSTER NODES.
                let listed = self.replicas_listed(node)?;
                if listed.iter().any(|&n| n != replicas_per_primary) {
                    return Err(format!(
                        "CLUSTER SLOTS on {} lists {listed:?} replicas per range",
                        node.addr
                    ));
                }
            }
            self.nodes[primaries..]
                .iter()
                .try_for_each(|replica| self.check_replica_link(replica))
        });
    }
}
