//! What a session wrote: the nodes (for `WAIT`, which must go where the writes went) and the
//! slots written recently (for `session.read_your_writes`, which sends their reads to the
//! primary for a while).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::Node;
use crate::cluster::Slot;

/// Nodes remembered per session; the oldest is forgotten beyond it.
const MAX_WRITTEN: usize = 32;

/// The nodes a session has sent writes to, and on which of its connections.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// `(node, dedicated)`: written on the session's dedicated connection, or its shared lane.
    nodes: Vec<(Arc<Node>, bool)>,
}

impl Written {
    /// `(node, dedicated)` for each node written to, oldest first.
    pub(super) fn nodes(&self) -> &[(Arc<Node>, bool)] {
        &self.nodes
    }

    /// Notes a write to `node` (called for every write the session sends).
    pub(super) fn note(&mut self, node: &Arc<Node>, dedicated: bool) {
        if self
            .nodes
            .iter()
            .any(|(n, d)| *d == dedicated && Arc::ptr_eq(n, node))
        {
            return;
        }
        if self.nodes.len() == MAX_WRITTEN {
            self.nodes.remove(0);
        }
        self.nodes.push((node.clone(), dedicated));
    }
}

/// The slots one session wrote recently, for read-your-writes.
#[derive(Debug)]
pub(super) struct WrittenSlots {
    window: Duration,
    /// Made at the first write noted: most sessions never note one (read-your-writes is off,
    /// or they only read), and an idle client should not carry the map.
    recent: Option<Box<Recent>>,
}

#[derive(Debug, Default)]
struct Recent {
    /// When each slot was last written (sent, or acknowledged, whichever is later).
    slots: HashMap<Slot, Instant>,
    /// When a write to the whole keyspace (FLUSHALL...) was last made.
    everything: Option<Instant>,
    /// Entries older than the window are dropped at the first write after this instant, which
    /// keeps the map to about the slots written in the last two windows.
    next_prune: Option<Instant>,
}

impl WrittenSlots {
    /// Tracks writes for `window`.
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            recent: None,
        }
    }

    /// Records a write to `slot` at `now`.
    pub(super) fn note(&mut self, slot: Slot, now: Instant) {
        let window = self.window;
        let recent = self.recent.get_or_insert_default();
        recent.slots.insert(slot, now);
        if recent.next_prune.is_none_or(|at| now >= at) {
            recent
                .slots
                .retain(|_, at| now.duration_since(*at) < window);
            recent.next_prune = Some(now + window);
        }
    }

    /// Records a write to every slot at `now`.
    pub(super) fn note_everything(&mut self, now: Instant) {
        self.recent.get_or_insert_default().everything = Some(now);
    }

    /// Whether `slot` was written within the window before `now`.
    pub(super) fn recent(&self, slot: Slot, now: Instant) -> bool {
        let Some(recent) = &self.recent else {
            return false;
        };
        let fresh = |at: &Instant| now.duration_since(*at) < self.window;
        recent.everything.as_ref().is_some_and(fresh) || recent.slots.get(&slot).is_some_and(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_slots_expire_after_the_window() {
        let start = Instant::now();
        let window = Duration::from_millis(100);
        let mut written = WrittenSlots::new(window);
        let (a, b) = (Slot(1), Slot(2));
        assert!(!written.recent(a, start));
        written.note(a, start);
        assert!(written.recent(a, start + Duration::from_millis(99)));
        assert!(!written.recent(b, start + Duration::from_millis(10)));
        assert!(!written.recent(a, start + window));
        // Old entries are dropped as new writes come in.
        written.note(b, start + Duration::from_millis(150));
        assert_eq!(written.recent.as_ref().map_or(0, |r| r.slots.len()), 1);
        written.note_everything(start + Duration::from_millis(200));
        assert!(written.recent(Slot(16_000), start + Duration::from_millis(250)));
        assert!(!written.recent(Slot(16_000), start + Duration::from_millis(300)));
    }
}
