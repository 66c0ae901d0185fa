//! Who may use slotproxy itself: users, ACL rules, permission checks. No I/O.
//!
//! A [`User`] is redis 7.0's user without selectors: flags, SHA-256 password hashes, and the
//! allowed commands (one bit per command table row), key patterns and channel patterns. Rules
//! in redis' syntax change it ([`rules`]), [`check()`] answers "may this user run this request"
//! on the hot path, [`describe`] prints a user back as `ACL LIST`/`ACL GETUSER` do, and
//! [`Users`] is the set of users the session reads (swapped whole when one changes).
//! It must not know about sockets, nodes or slots.

pub mod check;
pub mod config;
pub mod describe;
pub mod log;
pub mod pattern;
pub mod rules;
pub mod shared;
pub mod user;
pub mod users;

pub use check::{Denied, check};
pub use rules::{RuleError, apply_all, split_rules};
pub use shared::Acl;
pub use user::{PasswordHash, User};
pub use users::{Users, UsersError};
