//! Who this client is and what it may do: authentication (`AUTH`, `HELLO AUTH`), the one
//! permission check every request passes before it is planned, and protected mode.
//!
//! A [`Login`] holds the client's user as an `Arc<User>` and the generation of the user set it
//! read it from; the check reloads the user only when `Acl::generation` moved (one atomic load
//! per request otherwise). It decides and never replies: `access.rs` turns a [`Refusal`] into
//! redis-server 7.0's reply, in redis' order: unknown command and arity errors first, then
//! `-NOAUTH`, then `-NOPERM`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::auth::log::Reason;
use crate::auth::{Acl, Denied, User, check};
use crate::command::{CommandSpec, Flags, KeyRef};

/// Who this client is: its user, whether it authenticated, and the generation of the user set
/// the user was read from.
#[derive(Debug)]
pub(super) struct Login {
    /// The ACL user this client runs as.
    pub(super) user: Arc<User>,
    /// Whether the client has authenticated (or the default user needs no password).
    pub(super) authenticated: bool,
    /// `Acl::generation` when `user` was read.
    generation: u64,
    /// Scratch space for the keys the check looks at, reused across requests.
    keys: Vec<KeyRef>,
}

/// Why [`Login::check`] refused a request.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Not authenticated yet: `-NOAUTH`.
    NoAuth,
    /// The client's user was deleted (`ACL DELUSER`, a reload): the client is closed.
    UserDeleted,
    /// The user may not run this command or touch this key or channel: `-NOPERM`.
    Denied(Denied),
}

impl Login {
    /// A new client's identity: the default user, authenticated if it needs no password.
    pub(super) fn new(acl: &Acl) -> Self {
        let generation = acl.generation.load(Ordering::Acquire);
        let user = acl.users.load().default_user().clone();
        Self {
            authenticated: !user.requires_auth(),
            user,
            generation,
            keys: Vec::new(),
        }
    }

    /// `RESET`: back to the default user, authenticated only if it needs no password.
    pub(super) fn reset(&mut self, acl: &Acl) {
        let keys = std::mem::take(&mut self.keys);
        *self = Self {
            keys,
            ..Self::new(acl)
        };
    }

    /// The one check before a request is planned: `NoAuth` before authentication, `Denied` for
    /// what the user may not run or touch. The user is read again only when the user set
    /// changed (one atomic load per request otherwise).
    pub(super) fn check(
        &mut self,
        acl: &Acl,
        spec: &CommandSpec,
        args: &[Bytes],
    ) -> Result<(), Refusal> {
        if !self.authenticated && !spec.flags.contains(Flags::NO_AUTH) {
            return Err(Refusal::NoAuth);
        }
        if acl.generation.load(Ordering::Acquire) != self.generation {
            self.generation = acl.generation.load(Ordering::Acquire);
            match acl.users.load().get(self.user.name.as_bytes()) {
                Some(user) => self.user = user.clone(),
                None => return Err(Refusal::UserDeleted),
            }
        }
        check(&self.user, spec, args, &mut self.keys).map_err(Refusal::Denied)
    }

    /// Whether `user` may run `command` (`ACL DRYRUN`), with this login's scratch space.
    pub(super) fn dry_run(
        &mut self,
        user: &User,
        spec: &CommandSpec,
        command: &[Bytes],
    ) -> Result<(), Denied> {
        check(user, spec, command, &mut self.keys)
    }

    /// `AUTH [user] password` and `HELLO ... AUTH user password`: on success the client becomes
    /// `user`; a failure leaves it as it was. The password compares in constant time.
    pub(super) fn authenticate(&mut self, acl: &Acl, user: &[u8], password: &[u8]) -> bool {
        let generation = acl.generation.load(Ordering::Acquire);
        match acl.users.load().get(user) {
            Some(found) if found.authenticates(password) => {
                self.user = found.clone();
                self.generation = generation;
                self.authenticated = true;
                true
            }
            _ => false,
        }
    }
}

impl Refusal {
    /// What `ACL LOG` records of the refusal, if anything: the reason and the object.
    pub(super) fn log_entry(
        &self,
        spec: &CommandSpec,
        args: &[Bytes],
    ) -> Option<(Reason, Vec<u8>)> {
        match self {
            Refusal::NoAuth | Refusal::UserDeleted => None,
            Refusal::Denied(Denied::Command) => {
                Some((Reason::Command, spec.name.as_bytes().to_vec()))
            }
            Refusal::Denied(Denied::Key(i)) => Some((Reason::Key, args[*i].to_vec())),
            Refusal::Denied(Denied::Channel(i)) => Some((Reason::Channel, args[*i].to_vec())),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Users;
    use crate::command::CommandTable;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// `default` needs `secret`; `reader` may only GET keys under `r:`.
    fn acl(table: &CommandTable) -> Acl {
        let lines = [(
            "test".to_owned(),
            "user reader on >pw ~r:* -@all +get".to_owned(),
        )];
        Acl::new(Users::from_config(Some("secret"), &lines, table).unwrap())
    }

    #[test]
    fn a_new_client_needs_auth_and_gets_noauth_before_any_permission_check() {
        let table = CommandTable::builtin();
        let acl = acl(&table);
        let mut login = Login::new(&acl);
        assert!(!login.authenticated);
        let get = table.lookup("get").unwrap();
        let refusal = login.check(&acl, get, &args(&["GET", "k"])).unwrap_err();
        assert!(matches!(refusal, Refusal::NoAuth));
        assert_eq!(refusal.log_entry(get, &args(&["GET", "k"])), None);
        // AUTH itself is allowed before authentication.
        let auth = table.lookup("auth").unwrap();
        assert!(login.check(&acl, auth, &args(&["AUTH", "x"])).is_ok());
    }

    #[test]
    fn authenticate_switches_user_only_on_the_right_password() {
        let table = CommandTable::builtin();
        let acl = acl(&table);
        let mut login = Login::new(&acl);
        assert!(!login.authenticate(&acl, b"reader", b"wrong"));
        assert_eq!(login.user.name, "default");
        assert!(login.authenticate(&acl, b"reader", b"pw"));
        assert_eq!(login.user.name, "reader");
        let get = table.lookup("get").unwrap();
        assert!(login.check(&acl, get, &args(&["GET", "r:1"])).is_ok());
        let refusal = login
            .check(&acl, get, &args(&["GET", "other"]))
            .unwrap_err();
        assert!(matches!(refusal, Refusal::Denied(Denied::Key(1))));
        assert_eq!(
            refusal.log_entry(get, &args(&["GET", "other"])),
            Some((Reason::Key, b"other".to_vec()))
        );
        let set = table.lookup("set").unwrap();
        let refusal = login
            .check(&acl, set, &args(&["SET", "r:1", "v"]))
            .unwrap_err();
        assert!(matches!(refusal, Refusal::Denied(Denied::Command)));
        login.reset(&acl);
        assert_eq!(login.user.name, "default");
        assert!(!login.authenticated);
    }

    #[test]
    fn a_changed_user_set_is_read_again_and_a_deleted_user_is_refused() {
        let table = CommandTable::builtin();
        let acl = acl(&table);
        let mut login = Login::new(&acl);
        assert!(login.authenticate(&acl, b"reader", b"pw"));
        let set = table.lookup("set").unwrap();
        let mut users = Users::clone(&acl.users.load());
        users.set_user(b"reader", [&b"+set"[..]], &table).unwrap();
        acl.publish(users);
        assert!(login.check(&acl, set, &args(&["SET", "r:1", "v"])).is_ok());
        let mut users = Users::clone(&acl.users.load());
        assert!(users.remove(b"reader"));
        acl.publish(users);
        let refusal = login
            .check(&acl, set, &args(&["SET", "r:1", "v"]))
            .unwrap_err();
        assert!(matches!(refusal, Refusal::UserDeleted));
    }
}
