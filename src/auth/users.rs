//! The set of users: the `default` user plus the configured and `ACL SETUSER`-made ones.
//!
//! Immutable once built: a change (`ACL SETUSER`, `DELUSER`, `LOAD`) builds a new [`Users`]
//! that the session layer swaps in whole, so a reader holds one consistent set. Users are
//! kept sorted by name, the order `ACL USERS` and `ACL LIST` give. No I/O: the caller reads
//! the aclfile and hands its text over.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::describe::acl_line;
use super::rules::{RuleError, apply_all, split_rules};
use super::user::{PasswordHash, User};
use crate::command::CommandTable;

/// Why users could not be built from the configuration or an aclfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    /// A rule of a user is invalid.
    #[error("{origin}: user '{user}': rule '{rule}': {error}")]
    Rule {
        /// Where the user came from (`auth.users[0]`, `users.acl:3`).
        origin: String,
        /// The user's name.
        user: String,
        /// The bad rule.
        rule: String,
        /// Why.
        error: RuleError,
    },
    /// A line that is not `user <name> <rules...>`.
    #[error("{origin}: should start with user keyword")]
    NotAUser {
        /// Where.
        origin: String,
    },
    /// A user named twice in one aclfile.
    #[error("{origin}: duplicate user '{user}' found")]
    Duplicate {
        /// Where.
        origin: String,
        /// The user's name.
        user: String,
    },
    /// A user name with characters redis refuses.
    #[error("{origin}: usernames can't contain spaces or null characters")]
    BadName {
        /// Where.
        origin: String,
    },
}

/// Every user, by name.
#[derive(Clone, Debug)]
pub struct Users {
    by_name: BTreeMap<String, Arc<User>>,
}

impl Users {
    /// Only the `default` user, as redis-server without configuration: `on nopass ~* &* +@all`.
    pub fn new(table: &CommandTable) -> Users {
        let mut by_name = BTreeMap::new();
        by_name.insert("default".to_owned(), Arc::new(User::default_user(table)));
        Users { by_name }
    }

    /// The users of the configuration: `password` makes the default user need it (like
    /// `requirepass`), then each `user <name> <rules>` of `lines` (config `users` entries
    /// without the `user` keyword are accepted too) is applied in order.
    ///
    /// # Errors
    /// The first bad line or rule, naming where it came from.
    pub fn from_config(
        password: Option<&str>,
        lines: &[(String, String)],
        table: &CommandTable,
    ) -> Result<Users, UsersError> {
        let mut users = Users::new(table);
        if let Some(password) = password {
            let mut default = User::default_user(table);
            default.nopass = false;
            default.passwords = vec![PasswordHash::of(password.as_bytes())];
            users
                .by_name
                .insert("default".to_owned(), Arc::new(default));
        }
        for (origin, line) in lines {
            users.apply_line(origin, line, table)?;
        }
        Ok(users)
    }

    /// Applies one `[user] <name> <rules...>` line (creating the user if needed).
    fn apply_line(
        &mut self,
        origin: &str,
        line: &str,
        table: &CommandTable,
    ) -> Result<(), UsersError> {
        let mut words = line.split_ascii_whitespace();
        let mut name = words.next().ok_or_else(|| UsersError::NotAUser {
            origin: origin.to_owned(),
        })?;
        if name == "user" {
            name = words.next().ok_or_else(|| UsersError::NotAUser {
                origin: origin.to_owned(),
            })?;
        }
        let rest: Vec<&[u8]> = words.map(str::as_bytes).collect();
        self.set_user(name.as_bytes(), rest, table)
            .map_err(|(rule, error)| UsersError::Rule {
                origin: origin.to_owned(),
                user: name.to_owned(),
                rule: String::from_utf8_lossy(&rule).into_owned(),
                error,
            })
    }

    /// Parses an aclfile (`user <name> <rules...>` per line; blank lines and `#` comments
    /// skipped) into a whole new set; the default user stays as it is unless the file names it.
    ///
    /// # Errors
    /// The first bad line, as `<origin>:<line>`.
    pub fn with_aclfile(
        &self,
        origin: &str,
        text: &str,
        table: &CommandTable,
    ) -> Result<Users, UsersError> {
        let mut users = Users::new(table);
        if let Some(default) = self.by_name.get("default") {
            users.by_name.insert("default".to_owned(), default.clone());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{origin}:{}", i + 1);
            let mut words = line.split_ascii_whitespace();
            if words.next() != Some("user") {
                return Err(UsersError::NotAUser { origin: at });
            }
            let name = words
                .next()
                .ok_or_else(|| UsersError::NotAUser { origin: at.clone() })?;
            if !seen.insert(name.to_owned()) {
                return Err(UsersError::Duplicate {
                    origin: at,
                    user: name.to_owned(),
                });
            }
            // A user in the file starts from scratch (`reset`), as redis' ACL LOAD does.
            users.by_name.remove(name);
            users.apply_line(&at, line, table)?;
        }
        Ok(users)
    }

    /// Every user as aclfile lines (`ACL SAVE`), sorted by name.
    pub fn to_aclfile(&self, table: &CommandTable) -> Vec<u8> {
        let mut out = Vec::new();
        for user in self.by_name.values() {
            out.extend_from_slice(&acl_line(user, table));
            out.push(b'\n');
        }
        out
    }

    /// The user named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<User>> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.by_name.get(n))
    }

    /// The `default` user (always present).
    pub fn default_user(&self) -> &Arc<User> {
        self.by_name
            .get("default")
            .expect("the default user is never removed")
    }

    /// Every user, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<User>> {
        self.by_name.values()
    }

    /// Whether only the unconfigured default user exists (`on nopass`, no other user): what
    /// protected mode calls "no password set".
    pub fn open(&self) -> bool {
        self.by_name.len() == 1 && !self.default_user().requires_auth()
    }

    /// `ACL SETUSER name rules...`: creates the user if needed, all rules or none.
    ///
    /// # Errors
    /// The bad rule and why (the set is unchanged).
    pub fn set_user<'r>(
        &mut self,
        name: &[u8],
        rules: impl IntoIterator<Item = &'r [u8]>,
        table: &CommandTable,
    ) -> Result<(), (Vec<u8>, RuleError)> {
        let name_str = String::from_utf8_lossy(name).into_owned();
        let mut user = match self.by_name.get(&name_str) {
            Some(user) => User::clone(user),
            None => User::new(&name_str, table),
        };
        apply_all(&mut user, rules, table)?;
        self.by_name.insert(name_str, Arc::new(user));
        Ok(())
    }

    /// Removes the user `name`; whether it existed. The default user cannot be removed.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        match std::str::from_utf8(name) {
            Ok("default") | Err(_) => false,
            Ok(name) => self.by_name.remove(name).is_some(),
        }
    }
}

/// Whether `name` is a valid user name for redis (no spaces, no NUL).
pub fn valid_name(name: &[u8]) -> bool {
    !name.iter().any(|&b| b == b' ' || b == 0)
}

/// Splits a config rule line into rules, for tests and callers holding one string.
pub fn rules_of(line: &str) -> Vec<&[u8]> {
    split_rules(line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_password_and_users() {
        let table = CommandTable::builtin();
        let users = Users::from_config(
            Some("pw"),
            &[(
                "auth.users[0]".into(),
                "revenue on >secret ~revenue:* +@all".into(),
            )],
            &table,
        )
        .expect("valid");
        assert!(users.default_user().requires_auth());
        assert!(users.default_user().authenticates(b"pw"));
        let revenue = users.get(b"revenue").expect("configured");
        assert!(revenue.authenticates(b"secret") && !revenue.authenticates(b"pw"));
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["default", "revenue"]);
        assert!(!users.open());
        assert!(Users::new(&table).open());
    }

    #[test]
    fn config_errors_name_the_rule() {
        let table = CommandTable::builtin();
        let err = Users::from_config(
            None,
            &[("auth.users[1]".into(), "x on +nocmd".into())],
            &table,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.users[1]: user 'x': rule '+nocmd': Unknown command or category name in ACL"
        );
    }

    #[test]
    fn aclfile_round_trip() {
        let table = CommandTable::builtin();
        let text = "# users\nuser a on >x ~a:* +get\n\nuser b off resetchannels -@all\n";
        let users = Users::new(&table)
            .with_aclfile("f.acl", text, &table)
            .expect("valid");
        let saved = String::from_utf8(users.to_aclfile(&table)).expect("utf-8");
        let again = Users::new(&table)
            .with_aclfile("f.acl", &saved, &table)
            .expect("valid");
        assert_eq!(saved.as_bytes(), again.to_aclfile(&table));
        assert!(saved.contains("user a on #"));
        let err = Users::new(&table).with_aclfile("f.acl", "user a on\nuser a off\n", &table);
        assert_eq!(
            err.unwrap_err().to_string(),
            "f.acl:2: duplicate user 'a' found"
        );
        let err = Users::new(&table).with_aclfile("f.acl", "bogus\n", &table);
        assert_eq!(
            err.unwrap_err().to_string(),
            "f.acl:1: should start with user keyword"
        );
    }

    #[test]
    fn setuser_and_remove() {
        let table = CommandTable::builtin();
        let mut users = Users::new(&table);
        users
            .set_user(b"u", rules_of("on nopass +get"), &table)
            .expect("valid");
        assert!(users.get(b"u").is_some());
        assert!(users.set_user(b"u", rules_of("+nocmd"), &table).is_err());
        assert!(
            users
                .get(b"u")
                .expect("kept")
                .commands
                .allows(table.lookup("get").expect("get").id)
        );
        assert!(!users.remove(b"default"));
        assert!(users.remove(b"u"));
        assert!(!users.remove(b"u"));
    }
}
