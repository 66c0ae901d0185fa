//! What every node connection opens with: the credentials and the TLS client. They are read
//! once per connect, from one cell every copy of the backend config shares, so a reload
//! (`crate::reload`) that rotates the password or the certificates reaches the next connection
//! without a restart; connections already open stay as they are, authenticated.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::tls::TlsClient;
use crate::config::BackendConfig;
use crate::secret::Secret;

/// Credentials and TLS client for the nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Access {
    /// The ACL user (`None`: the default user).
    pub username: Option<String>,
    /// The password, if the nodes want one.
    pub password: Option<Secret>,
    /// The TLS client, when `[backend.tls]` is enabled.
    pub tls: Option<TlsClient>,
}

impl Access {
    /// The access a settled config describes (after `resolve_backend_credentials` and
    /// `load_backend_tls`).
    pub fn of(backend: &BackendConfig) -> Access {
        Access {
            username: backend.username.clone(),
            password: backend.password.clone(),
            tls: backend.tls.client.clone(),
        }
    }
}

/// The shared cell; clones of a config share it. Not a config key: it compares equal to any
/// other cell, so comparing configs compares their keys only.
#[derive(Debug, Clone, Default)]
pub struct AccessCell(Arc<ArcSwap<Access>>);

impl AccessCell {
    /// The access for a connection opening now.
    pub fn current(&self) -> Arc<Access> {
        self.0.load_full()
    }

    /// Replaces the access for connections opened from now on.
    pub fn set(&self, access: Access) {
        self.0.store(Arc::new(access));
    }
}

impl PartialEq for AccessCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_of_a_config_sees_the_access_set_on_any() {
        let config = BackendConfig::default();
        let copy = config.clone();
        assert_eq!(*copy.access.current(), Access::default());
        config.access.set(Access {
            username: Some("proxy".into()),
            password: Some(Secret::new("rotated")),
            tls: None,
        });
        assert_eq!(copy.access.current().username.as_deref(), Some("proxy"));
        assert_eq!(copy.access.current().password, Some(Secret::new("rotated")));
    }
}
