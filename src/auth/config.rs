//! The `[auth]` section: who may use slotproxy (the default user's password, ACL users, an
//! aclfile, protected mode).
//!
//! The one place in `auth` that reads outside state: at startup (and for `ACL LOAD`) the
//! password comes from `SLOTPROXY_PASSWORD`, `password_file` or `password`, and the users from
//! `users` and the aclfile. Secrets are never shown by `Debug`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::users::{Users, UsersError};
use crate::command::CommandTable;
use crate::secret::Secret;

/// Environment variable holding the default user's password (overrides the config file).
pub const PASSWORD_ENV: &str = "SLOTPROXY_PASSWORD";

/// `[auth]`: client authentication and ACL users of slotproxy itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The default user's password, like redis' `requirepass` (prefer `password_file` or the
    /// `SLOTPROXY_PASSWORD` environment variable).
    pub password: Option<Secret>,
    /// A file whose first line is the default user's password.
    pub password_file: Option<PathBuf>,
    /// ACL users in redis' rule syntax, one per entry: `"revenue on >secret ~revenue:* +@all"`.
    pub users: Vec<String>,
    /// A redis aclfile (`user <name> <rules...>` per line), loaded at startup and by
    /// `ACL LOAD`, written by `ACL SAVE`.
    pub aclfile: Option<PathBuf>,
    /// Refuse clients from other hosts while no password and no user is configured, as
    /// redis-server's `protected-mode yes` does.
    pub protected_mode: bool,
}

/// Written out (the admin `/config` endpoint) with every secret redacted: the password, and
/// the `>password`, `<password`, `#hash` and `!hash` rules of each user.
impl Serialize for AuthConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let users: Vec<String> = self.users.iter().map(|u| redact_rules(u)).collect();
        let mut out = serializer.serialize_struct("AuthConfig", 5)?;
        out.serialize_field("password", &self.password)?;
        out.serialize_field("password_file", &self.password_file)?;
        out.serialize_field("users", &users)?;
        out.serialize_field("aclfile", &self.aclfile)?;
        out.serialize_field("protected_mode", &self.protected_mode)?;
        out.end()
    }
}

/// `rules` with each password or password hash replaced by `<redacted>`.
fn redact_rules(rules: &str) -> String {
    rules
        .split_whitespace()
        .map(|rule| match rule.chars().next() {
            Some(c @ ('>' | '<' | '#' | '!')) => format!("{c}<redacted>"),
            _ => rule.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            password: None,
            password_file: None,
            users: Vec::new(),
            aclfile: None,
            protected_mode: true,
        }
    }
}

/// Why the `[auth]` section could not be turned into users.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// `password_file` or `aclfile` could not be read.
    #[error("auth: read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A user or rule is invalid.
    #[error("auth: {0}")]
    Users(#[from] UsersError),
}

impl AuthConfig {
    /// The default user's password: `SLOTPROXY_PASSWORD`, else `password_file`, else `password`.
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn default_password(&self) -> Result<Option<String>, AuthConfigError> {
        if let Ok(password) = std::env::var(PASSWORD_ENV)
            && !password.is_empty()
        {
            return Ok(Some(password));
        }
        if let Some(path) = &self.password_file {
            let text = read(path)?;
            return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
        }
        Ok(self.password.as_ref().map(|s| s.expose().to_string()))
    }

    /// The users this section configures: the default user's password, `users`, then the
    /// aclfile's users.
    ///
    /// # Errors
    /// An unreadable file or an invalid user, naming where it is.
    pub fn users(&self, table: &CommandTable) -> Result<Users, AuthConfigError> {
        let password = self.default_password()?;
        let lines: Vec<(String, String)> = self
            .users
            .iter()
            .enumerate()
            .map(|(i, line)| (format!("auth.users[{i}]"), line.clone()))
            .collect();
        let users = Users::from_config(password.as_deref(), &lines, table)?;
        self.with_aclfile(&users, table)
    }

    /// `users` with the aclfile's users (if one is configured) replacing the others.
    ///
    /// # Errors
    /// An unreadable file or an invalid user.
    pub fn with_aclfile(
        &self,
        users: &Users,
        table: &CommandTable,
    ) -> Result<Users, AuthConfigError> {
        let Some(path) = &self.aclfile else {
            return Ok(users.clone());
        };
        let text = read(path)?;
        Ok(users.with_aclfile(&path.display().to_string(), &text, table)?)
    }
}

fn read(path: &std::path::Path) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_users_show_no_password_or_hash() {
        let auth = AuthConfig {
            password: Some(Secret::new("hunter2")),
            users: vec!["revenue on >s3cret #5e884898da28 ~revenue:* +@all".into()],
            ..AuthConfig::default()
        };
        let json = serde_json::to_string(&auth).expect("serializes");
        assert!(!json.contains("hunter2") && !json.contains("s3cret") && !json.contains("5e88"));
        assert!(json.contains("revenue on ><redacted> #<redacted> ~revenue:* +@all"));
    }

    #[test]
    fn debug_hides_the_password() {
        let config = AuthConfig {
            password: Some(Secret::new("hunter2")),
            ..AuthConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn password_file_and_aclfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password_file = dir.path().join("pw");
        std::fs::write(&password_file, "filepw\n").expect("write");
        let aclfile = dir.path().join("users.acl");
        std::fs::write(&aclfile, "user a on >x ~a:* +get\n").expect("write");
        let config = AuthConfig {
            password_file: Some(password_file),
            users: vec!["b on nopass +@all".into()],
            aclfile: Some(aclfile),
            ..AuthConfig::default()
        };
        let table = CommandTable::builtin();
        let users = config.users(&table).expect("valid");
        assert!(users.default_user().authenticates(b"filepw"));
        assert!(users.get(b"a").is_some());
        assert!(
            users.get(b"b").is_none(),
            "the aclfile replaces the other users"
        );
        let missing = AuthConfig {
            aclfile: Some(dir.path().join("nope.acl")),
            ..AuthConfig::default()
        };
        assert!(
            missing
                .users(&table)
                .unwrap_err()
                .to_string()
                .contains("nope.acl")
        );
    }
}
