//! `ACL LOG`: the recent refusals and failed logins, grouped as redis 7.0 groups them.
//!
//! An entry like the newest one of the last minute (same reason, context, object and user)
//! is counted into it and moves to the front; at most [`MAX_ENTRIES`] are kept (redis'
//! `acllog-max-len` default). No I/O and no clock: callers pass the time.

use std::collections::VecDeque;

/// Entries kept, as redis' default `acllog-max-len`.
pub const MAX_ENTRIES: usize = 128;
/// Entries this close in time (ms) with the same fields are grouped.
const GROUP_WINDOW_MS: u64 = 60_000;

/// Why an entry was logged (`reason` in `ACL LOG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A command the user may not run.
    Command,
    /// A key it may not touch.
    Key,
    /// A channel it may not use.
    Channel,
    /// A failed `AUTH`/`HELLO AUTH`.
    Auth,
}

impl Reason {
    /// The name `ACL LOG` shows.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

/// One `ACL LOG` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// How many similar events it stands for.
    pub count: u64,
    /// Why.
    pub reason: Reason,
    /// `toplevel` or `multi`.
    pub context: &'static str,
    /// The command, key or channel refused (`AUTH` for failed logins).
    pub object: Vec<u8>,
    /// The user (for failed logins, the name tried).
    pub username: Vec<u8>,
    /// When it last happened, ms since the Unix epoch.
    pub at_ms: u64,
    /// The client's `CLIENT LIST` line when it last happened.
    pub client_info: String,
}

/// The log, newest first.
#[derive(Debug, Default)]
pub struct AclLog {
    entries: VecDeque<Entry>,
}

impl AclLog {
    /// Adds `entry`, or counts it into a similar recent one.
    pub fn add(&mut self, entry: Entry) {
        let similar = self.entries.iter().position(|e| {
            e.reason == entry.reason
                && e.context == entry.context
                && e.object == entry.object
                && e.username == entry.username
                && entry.at_ms.saturating_sub(e.at_ms) < GROUP_WINDOW_MS
        });
        let entry = match similar.and_then(|i| self.entries.remove(i)) {
            Some(old) => Entry {
                count: old.count + 1,
                ..entry
            },
            None => entry,
        };
        self.entries.push_front(entry);
        self.entries.truncate(MAX_ENTRIES);
    }

    /// The newest `count` entries.
    pub fn newest(&self, count: usize) -> impl Iterator<Item = &Entry> {
        self.entries.iter().take(count)
    }

    /// `ACL LOG RESET`.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(object: &str, at_ms: u64) -> Entry {
        Entry {
            count: 1,
            reason: Reason::Key,
            context: "toplevel",
            object: object.as_bytes().to_vec(),
            username: b"u".to_vec(),
            at_ms,
            client_info: String::new(),
        }
    }

    #[test]
    fn groups_recent_similar_entries_newest_first() {
        let mut log = AclLog::default();
        log.add(entry("a", 0));
        log.add(entry("b", 10));
        log.add(entry("a", 20));
        let shown: Vec<(&[u8], u64)> = log.newest(10).map(|e| (&e.object[..], e.count)).collect();
        assert_eq!(shown, vec![(&b"a"[..], 2), (&b"b"[..], 1)]);
        log.add(entry("a", 20 + GROUP_WINDOW_MS));
        assert_eq!(log.newest(10).count(), 3, "an old entry is not grouped");
        for i in 0..200 {
            log.add(entry(&i.to_string(), 0));
        }
        assert_eq!(log.newest(usize::MAX).count(), MAX_ENTRIES);
        log.clear();
        assert_eq!(log.newest(10).count(), 0);
    }
}
