//! The users of slotproxy as every session shares them: swapped whole when one changes, with a
//! generation sessions compare to know when to read their user again, and `ACL LOG`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Users;
use super::log::AclLog;

/// The users of slotproxy and what changes them, shared by every session.
#[derive(Debug)]
pub struct Acl {
    /// Every user; replaced whole on `ACL SETUSER`/`DELUSER`/`LOAD`.
    pub users: arc_swap::ArcSwap<Users>,
    /// Bumped after every replacement of `users`.
    pub generation: AtomicU64,
    /// Serializes changes (read-modify-store of `users`); never held across `.await`.
    pub change: std::sync::Mutex<()>,
    /// Unix second of the last failed-AUTH log line (rate limit: one line per second).
    pub last_failure_log: AtomicU64,
    /// `ACL LOG`; locked briefly, never across `.await`.
    pub log: std::sync::Mutex<AclLog>,
}

impl Acl {
    /// The shared state for `users`.
    pub fn new(users: Users) -> Acl {
        Acl {
            users: arc_swap::ArcSwap::from_pointee(users),
            generation: AtomicU64::new(0),
            change: std::sync::Mutex::new(()),
            last_failure_log: AtomicU64::new(0),
            log: std::sync::Mutex::new(AclLog::default()),
        }
    }

    /// Replaces the users and tells the sessions.
    pub fn publish(&self, users: Users) {
        self.users.store(Arc::new(users));
        self.generation.fetch_add(1, Ordering::Release);
    }
}
