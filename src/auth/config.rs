//! The `[auth]` section: who may use slotproxy (the default user's password, ACL users, an
//! aclfile, protected mode).
//!
//! The one place in `auth` that reads outside state: at startup (and for `ACL LOAD`) the
//! password comes from `SLOTPROXY_PASSWORD`, `password_file` or `password`, and the users from
//! `users` and the aclfile. Secrets are never shown by `Debug`.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::users::{Users, UsersError};
use crate::command::CommandTable;

/// Environment variable holding the default user's password (overrides the config file).
pub const PASSWORD_ENV: &str = "SLOTPROXY_PASSWORD";

/// A secret string from the configuration; `Debug` prints `"***"`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

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
        Ok(self.password.as_ref().map(|s| s.0.clone()))
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
    fn debug_hides_the_password() {
        let config = AuthConfig {
            password: Some(Secret("hunter2".into())),
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
