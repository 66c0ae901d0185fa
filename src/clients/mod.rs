//! slotproxy's own clients, as `CLIENT LIST`, `CLIENT KILL` and `CLIENT UNBLOCK` see them.
//!
//! Every session registers a [`ClientEntry`] when it starts and removes it when it ends (the
//! [`Registration`] guard). Sessions run on different worker threads, so an entry is what a
//! session *publishes* about itself, readable from any thread: its addresses (fixed), a few
//! counters it bumps with relaxed atomics (last command, last activity, bytes and commands),
//! and a small [`Profile`] behind a lock that the session writes only when it changes (name,
//! user, flags, subscriptions, transaction, protocol). Nothing walks the registry per request:
//! it is read only when a client asks (`CLIENT LIST`, `CLIENT KILL`, `INFO clients`).
//!
//! Another session is acted on through its entry's orders: [`Order::Kill`] (the session closes
//! at once, as redis-server frees a killed client) and [`Order::Unblock`] (see `unblock.rs`).
//! The registry also holds the clients' [`ClientMemory`]: when it passes its budget, the
//! clients holding the most are evicted (`evict_for_memory`), as redis does past
//! `maxmemory-clients`.
//!
//! This module knows nothing of the session itself.

mod entry;
mod filter;
mod line;
mod trim;
pub mod unblock;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::backend::ClientMemory;

pub use entry::{Blocked, ClientEntry, Flags, Lookup, NodeClientId, Order, Profile};
pub use filter::{ClientType, KillFilter, ListFilter};
pub use line::client_line;
pub use trim::{IDLE_TRIM, trim_idle};
pub use unblock::UnblockMode;

/// Every connected client's entry, by id.
#[derive(Debug, Default)]
pub struct Registry {
    clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    memory: Arc<ClientMemory>,
}

impl Registry {
    /// An empty registry whose clients may hold `max_client_memory` bytes together (0: no
    /// limit).
    pub fn new(max_client_memory: usize) -> Self {
        Self {
            clients: Mutex::default(),
            memory: Arc::new(ClientMemory::new(max_client_memory)),
        }
    }

    /// The memory every client holds, and its budget.
    pub fn memory(&self) -> &Arc<ClientMemory> {
        &self.memory
    }

    /// Evicts clients, those holding the most first, until their memory is back under its
    /// budget (as redis does past `maxmemory-clients`): each is ordered to close and its share
    /// leaves the count at once. Clients that set `CLIENT NO-EVICT on` are spared. Returns the
    /// evicted clients' ids and the bytes each held.
    pub fn evict_for_memory(&self) -> Vec<(u64, usize)> {
        self.memory.one_pass(|| {
            let mut excess = self.memory.excess();
            if excess == 0 {
                return Vec::new();
            }
            // By what each counts in the pool (within a step of what it holds): those are
            // the bytes evicting it takes off.
            let mut by_size: Vec<(usize, Arc<ClientEntry>)> = self
                .entries()
                .into_iter()
                .filter(|e| !e.no_evict())
                .map(|e| (e.memory().published(), e))
                .collect();
            by_size.sort_unstable_by_key(|(published, _)| std::cmp::Reverse(*published));
            let mut evicted = Vec::new();
            for (published, entry) in by_size {
                if excess == 0 || published == 0 {
                    break;
                }
                let freed = entry.memory().evict();
                entry.order(Order::Kill);
                excess = excess.saturating_sub(freed);
                evicted.push((entry.id, freed));
            }
            evicted
        })
    }

    /// Makes the clients' memory evict at once when a publish takes it over its budget, on
    /// whichever thread crossed it, and hand each non-empty pass's victims to `report`.
    pub fn install_evictor(
        self: &Arc<Self>,
        report: impl Fn(&ClientMemory, &[(u64, usize)]) + Send + Sync + 'static,
    ) {
        let registry = Arc::downgrade(self);
        self.memory.set_evictor(Box::new(move || {
            // Weak: the registry owns the memory that owns this closure.
            if let Some(registry) = registry.upgrade() {
                let evicted = registry.evict_for_memory();
                if !evicted.is_empty() {
                    report(&registry.memory, &evicted);
                }
            }
        }));
    }

    /// Adds `entry`; the returned guard removes it when dropped.
    pub fn register(self: &Arc<Self>, entry: Arc<ClientEntry>) -> Registration {
        self.lock().insert(entry.id, entry.clone());
        Registration {
            registry: self.clone(),
            entry,
        }
    }

    /// Every live (not killed) entry, in id order (the order clients connected in).
    pub fn entries(&self) -> Vec<Arc<ClientEntry>> {
        self.lock()
            .values()
            .filter(|e| !e.killed())
            .cloned()
            .collect()
    }

    /// The live entry of client `id`.
    pub fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.lock().get(&id).filter(|e| !e.killed()).cloned()
    }

    /// Clients connected and not killed.
    pub fn len(&self) -> usize {
        self.lock().values().filter(|e| !e.killed()).count()
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rings every registered session's alarm (the drain began).
    pub fn ring_all(&self, bell: crate::alarm::Bells) {
        for entry in self.lock().values() {
            entry.ring(bell);
        }
    }

    /// Rings [`crate::alarm::Bells::TRIM`] for the clients idle for `idle` at `now`, once per
    /// idle spell (see `trim.rs`); returns how many it rang.
    pub fn trim_idle(&self, now: std::time::Instant, idle: std::time::Duration) -> usize {
        self.lock()
            .values()
            .filter(|entry| entry.trim_if_idle(now, idle))
            .count()
    }

    /// Connected clients speaking RESP2 and RESP3 (after `HELLO`), for the metrics.
    pub fn by_protocol(&self) -> [usize; 2] {
        let mut counts = [0, 0];
        for entry in self.entries() {
            counts[usize::from(entry.profile().resp == 3)] += 1;
        }
        counts
    }

    /// Clients blocked in a command on a node (`INFO clients` `blocked_clients`).
    pub fn blocked(&self) -> usize {
        self.entries()
            .iter()
            .filter(|e| e.profile().flags.contains(Flags::BLOCKED))
            .count()
    }

    /// Orders every client `filter` matches, other than `caller`, to close; returns how many
    /// matched, counting `caller` when it matched and `SKIPME no` (the caller closes itself
    /// after its reply), and whether it did.
    pub fn kill(&self, filter: &KillFilter, caller: u64) -> (usize, bool) {
        let mut count = 0;
        let mut caller_matched = false;
        for entry in self.entries() {
            if !filter.matches(&entry) {
                continue;
            }
            if entry.id == caller {
                if filter.skip_me {
                    continue;
                }
                caller_matched = true;
            } else {
                entry.order(Order::Kill);
            }
            count += 1;
        }
        (count, caller_matched)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        // An entry map is valid whatever a panicking holder did to it.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session's place in the [`Registry`]; dropping it removes the entry.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    entry: Arc<ClientEntry>,
}

impl Registration {
    /// The session's entry.
    pub fn entry(&self) -> &Arc<ClientEntry> {
        &self.entry
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.entry.id);
    }
}

/// Counts and logs one eviction pass's victims (`(id, bytes)`, largest first).
pub fn report_evictions(
    metrics: &crate::metrics::Metrics,
    memory: &ClientMemory,
    evicted: &[(u64, usize)],
) {
    metrics.clients_evicted.inc_by(evicted.len() as u64);
    tracing::warn!(
        clients = evicted.len(),
        largest_bytes = evicted.first().map_or(0, |e| e.1),
        used_bytes = memory.used(),
        limit = memory.limit(),
        "clients' memory over max_client_memory_bytes; disconnected the largest"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, port: u16) -> Arc<ClientEntry> {
        Arc::new(ClientEntry::new(
            id,
            Some(([127, 0, 0, 1], port).into()),
            Some(([127, 0, 0, 1], 6379).into()),
            -1,
            entry::tests::budget(),
        ))
    }

    #[test]
    fn entries_leave_with_their_registration_and_killed_ones_are_not_listed() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(entry(1, 5001));
        let b = registry.register(entry(2, 5002));
        assert_eq!(registry.len(), 2);
        let filter = KillFilter::parse(&[b"ID".as_ref().into(), b"2".as_ref().into()], |_| true)
            .expect("parses");
        assert_eq!(registry.kill(&filter, 1), (1, false));
        assert!(b.entry().killed());
        assert_eq!(b.entry().take_order(), Some(Order::Kill));
        assert_eq!(
            registry.entries().iter().map(|e| e.id).collect::<Vec<_>>(),
            [1]
        );
        drop(b);
        drop(a);
        assert!(registry.is_empty());
    }

    #[test]
    fn past_the_budget_the_largest_clients_are_evicted_until_it_is_met() {
        let registry = Arc::new(Registry::new(1 << 20));
        let sizes = [
            (1, 100 << 10),
            (2, 700 << 10),
            (3, 20 << 10),
            (4, 500 << 10),
        ];
        let seats: Vec<Registration> = sizes
            .iter()
            .map(|&(id, _)| {
                let budget = Arc::new(crate::backend::ReplyBudget::new(
                    usize::MAX,
                    Default::default(),
                    registry.memory().clone(),
                ));
                registry.register(Arc::new(ClientEntry::new(id, None, None, -1, budget)))
            })
            .collect();
        assert!(registry.evict_for_memory().is_empty(), "under the budget");
        for (seat, &(_, bytes)) in seats.iter().zip(&sizes) {
            seat.entry().memory().set_buffers(bytes, 0);
        }
        assert_eq!(registry.memory().used(), 1320 << 10);
        seats[1].entry().set_no_evict(true);
        // 300 KB over: the 700 KB client asked to be spared, so the 500 KB one goes.
        assert_eq!(registry.evict_for_memory(), [(4, 500 << 10)]);
        assert_eq!(registry.memory().used(), 820 << 10);
        seats[1].entry().set_no_evict(false);
        seats[3].entry().memory().set_buffers(0, 0);
        seats[2].entry().memory().set_buffers(600 << 10, 0);
        // 300 KB over again: the 700 KB client goes; the 600 KB one is not needed.
        assert_eq!(registry.memory().used(), 1400 << 10);
        assert_eq!(registry.evict_for_memory(), [(2, 700 << 10)]);
        assert!(seats[1].entry().killed());
        assert_eq!(seats[1].entry().take_order(), Some(Order::Kill));
        assert_eq!(registry.memory().used(), 700 << 10);
        assert!(registry.evict_for_memory().is_empty());
        seats[0].entry().memory().set_buffers(1 << 20, 0);
        // Over by 600 KB: the 1 MB client, now the largest, is enough.
        assert_eq!(registry.evict_for_memory(), [(1, 1 << 20)]);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn with_an_evictor_the_reply_that_crosses_the_budget_evicts_at_once_and_is_dropped() {
        let registry = Arc::new(Registry::new(1 << 20));
        let reported = Arc::new(Mutex::new(Vec::new()));
        registry.install_evictor({
            let reported = reported.clone();
            move |_, evicted| reported.lock().unwrap().extend_from_slice(evicted)
        });
        let budgets: Vec<_> = (0..2)
            .map(|_| {
                Arc::new(crate::backend::ReplyBudget::new(
                    usize::MAX,
                    Default::default(),
                    registry.memory().clone(),
                ))
            })
            .collect();
        let seats: Vec<Registration> = (1..)
            .zip(&budgets)
            .map(|(id, b)| {
                registry.register(Arc::new(ClientEntry::new(id, None, None, -1, b.clone())))
            })
            .collect();
        assert!(budgets[0].add(300 << 10));
        assert!(budgets[1].add(600 << 10));
        // 1.2 MB with this reply: its client, the largest, is evicted before it is handed over.
        assert!(!budgets[1].add(300 << 10));
        assert_eq!(*reported.lock().unwrap(), [(2, 900 << 10)]);
        assert!(seats[1].entry().killed());
        assert_eq!(
            budgets[1].held(),
            600 << 10,
            "the dropped reply is not held"
        );
        assert_eq!(registry.memory().used(), 300 << 10);
        assert!(!budgets[1].add(1), "nothing more is handed over");
        assert!(budgets[0].add(100 << 10), "the other client is untouched");
        assert!(!seats[0].entry().killed());
    }

    #[test]
    fn the_caller_is_skipped_unless_skipme_no() {
        let registry = Arc::new(Registry::default());
        let _a = registry.register(entry(1, 5001));
        let by_addr = |skip: &'static [u8]| {
            KillFilter::parse(
                &[
                    b"ADDR".as_ref().into(),
                    b"127.0.0.1:5001".as_ref().into(),
                    b"SKIPME".as_ref().into(),
                    skip.into(),
                ],
                |_| true,
            )
            .expect("parses")
        };
        assert_eq!(registry.kill(&by_addr(b"yes"), 1), (0, false));
        assert_eq!(registry.kill(&by_addr(b"no"), 1), (1, true));
        // The caller closes itself after its reply: its entry was not ordered.
        assert_eq!(registry.get(1).map(|e| e.take_order()), Some(None));
    }
}
