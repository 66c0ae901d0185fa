//! Moving a slot between primaries the way `redis-cli --cluster reshard` does: `IMPORTING` and
//! `MIGRATING`, `MIGRATE` in batches, then `SETSLOT NODE` everywhere until every node agrees.

use std::time::Duration;

use super::super::wait_for;
use super::{SETTLE_TIMEOUT, TestCluster, TestNode, query};

impl TestCluster {
    /// First step of a slot migration: `IMPORTING` on `to`, then `MIGRATING` on `from`.
    ///
    /// From here `from` answers `-ASK` for keys of `slot` it no longer has.
    pub fn begin_migration(&self, slot: u16, from: &TestNode, to: &TestNode) {
        let _: () = query(
            &to.addr,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("IMPORTING")
                .arg(&from.id),
        );
        let _: () = query(
            &from.addr,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("MIGRATING")
                .arg(&to.id),
        );
    }

    /// Moves the keys of `slot` from `from` to `to`, `batch` keys per `MIGRATE`, until none are
    /// left; returns how many keys moved.
    pub fn migrate_keys(&self, slot: u16, from: &TestNode, to: &TestNode, batch: usize) -> usize {
        self.migrate_keys_paced(slot, from, to, batch, Duration::ZERO)
    }

    /// `migrate_keys` with `pause` after each `MIGRATE`, so that clients running meanwhile meet
    /// the slot in every phase (keys on both nodes, ASK, TRYAGAIN).
    pub fn migrate_keys_paced(
        &self,
        slot: u16,
        from: &TestNode,
        to: &TestNode,
        batch: usize,
        pause: Duration,
    ) -> usize {
        assert!(batch > 0, "batch must be at least 1");
        let mut conn = self.conn(from);
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(batch)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT {slot} on {}: {e}", from.addr));
            if keys.is_empty() {
                return moved;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(to.port)
                .arg("")
                .arg(0)
                .arg(5_000);
            // A secured cluster's target node wants the password (`MIGRATE ... AUTH`).
            if let Some(password) = super::super::process::password_of(&to.addr) {
                migrate.arg("AUTH").arg(password);
            }
            migrate.arg("KEYS");
            for key in &keys {
                migrate.arg(key.as_slice());
            }
            // "NOKEY" when the keys expired meanwhile; either way they left `from`.
            let _: redis::Value = migrate.query(&mut conn).unwrap_or_else(|e| {
                panic!(
                    "MIGRATE {} keys of slot {slot} to {}: {e}",
                    keys.len(),
                    to.addr
                )
            });
            moved += keys.len();
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }

    /// Last step of a slot migration: `SETSLOT slot NODE to` on `to`, then on the old owner, then
    /// on every other running primary; waits until every running node names `to` as the owner
    /// and no node still marks the slot importing or migrating.
    ///
    /// # Panics
    /// When a node refuses (for example the old owner still holds keys of the slot) or the nodes
    /// don't agree in time.
    pub fn finish_migration(&self, slot: u16, to: &TestNode) {
        let old_owners: Vec<&TestNode> = self
            .running()
            .filter(|node| node.id != to.id)
            .filter(|node| {
                self.view(node)
                    .is_ok_and(|v| v.iter().any(|e| e.myself() && e.owns(slot)))
            })
            .collect();
        let rest = self
            .primaries()
            .into_iter()
            .filter(|node| node.id != to.id && !old_owners.iter().any(|old| old.id == node.id));
        let order: Vec<&TestNode> = std::iter::once(to)
            .chain(old_owners.iter().copied())
            .chain(rest)
            .collect();
        for node in order {
            let _: () = query(
                &node.addr,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to.id),
            );
        }
        wait_for(
            SETTLE_TIMEOUT,
            &format!("every node agrees {} owns slot {slot}", to.addr),
            || {
                for node in self.running() {
                    let entries = self.view(node)?;
                    let owner = entries.iter().find(|e| e.owns(slot)).map(|e| e.id.as_str());
                    if owner != Some(to.id.as_str()) {
                        return Err(format!(
                            "{} says slot {slot} is owned by {owner:?}",
                            node.addr
                        ));
                    }
                    if let Some(e) = entries
                        .iter()
                        .find(|e| e.myself() && e.in_transit.contains(&slot))
                    {
                        return Err(format!(
                            "{} still marks slot {slot} as {}",
                            node.addr, e.raw
                        ));
                    }
                }
                Ok(())
            },
        );
    }

    /// Moves `slot` and all its keys from `from` to `to`: begin, migrate keys, finish.
    pub fn migrate_slot(&self, slot: u16, from: &TestNode, to: &TestNode) {
        self.begin_migration(slot, from, to);
        self.migrate_keys(slot, from, to, 100);
        self.finish_migration(slot, to);
    }
}
