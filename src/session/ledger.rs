//! The reply queue with a running count of the entries that left its front, so that an entry
//! keeps one absolute index from its push to its reply: what the command metrics pair a
//! request's start with its reply by. No I/O, no ordering rules (those stay in the session).

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};

use super::Pending;

/// `VecDeque<Pending>` plus the number of entries popped from its front so far.
///
/// `push_front` only ever puts back (a settled form of) the entry just popped, so it undoes
/// that pop's count.
#[derive(Default)]
pub(super) struct Ledger {
    entries: VecDeque<Pending>,
    popped: u64,
}

impl Ledger {
    /// Removes the front entry.
    pub(super) fn pop_front(&mut self) -> Option<Pending> {
        let entry = self.entries.pop_front();
        if entry.is_some() {
            self.popped += 1;
        }
        entry
    }

    /// Puts an entry back at the front, in place of the one just popped.
    pub(super) fn push_front(&mut self, entry: Pending) {
        self.popped = self.popped.wrapping_sub(1);
        self.entries.push_front(entry);
    }

    /// Drops every entry.
    pub(super) fn clear(&mut self) {
        self.popped += self.entries.len() as u64;
        self.entries.clear();
    }

    /// The absolute index of the front entry.
    pub(super) fn front_index(&self) -> u64 {
        self.popped
    }

    /// The absolute index the next `push_back` gets.
    pub(super) fn next_index(&self) -> u64 {
        self.popped + self.entries.len() as u64
    }
}

impl Deref for Ledger {
    type Target = VecDeque<Pending>;

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl DerefMut for Ledger {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.entries
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn an_entry_keeps_its_index_through_pops_and_put_backs() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.next_index(), 0);
        ledger.push_back(Pending::Done(Bytes::from_static(b"+a\r\n")));
        ledger.push_back(Pending::Done(Bytes::from_static(b"+b\r\n")));
        assert_eq!(ledger.next_index(), 2);
        let first = ledger.pop_front().unwrap();
        ledger.push_front(first);
        assert_eq!(ledger.front_index(), 0);
        ledger.pop_front();
        assert_eq!(ledger.front_index(), 1);
        ledger.clear();
        assert_eq!(ledger.front_index(), 2);
        assert_eq!(ledger.next_index(), 2);
    }
}
