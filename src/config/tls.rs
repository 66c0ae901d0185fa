//! TLS for clients: the `tls_listen` addresses and the `[tls]` section (server certificate,
//! and the CA that client certificates must chain to for mutual TLS).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, process};
use crate::error::ConfigError;

/// TLS for clients on the `tls_listen` addresses, like redis' `tls-cert-file`, `tls-key-file`
/// and `tls-ca-cert-file` with `tls-auth-clients yes`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM certificate chain slotproxy presents to clients (leaf first); required with
    /// `tls_listen`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1); required with `tls_listen`.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s): when set, every TLS client must present a certificate that
    /// chains to one of them (mutual TLS, like `tls-auth-clients yes`); unset, clients need
    /// none (like `tls-auth-clients no`).
    pub client_ca_file: Option<PathBuf>,
    /// The TLS server configuration built from the files at startup (not a config key).
    #[serde(skip)]
    pub server: Option<crate::server::tls::TlsServer>,
}

impl Config {
    /// The plain-text listen addresses (none when `listen` is `""`).
    ///
    /// # Errors
    /// `ConfigError::Invalid` for `listen` if it is not `host:port` or does not resolve.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(Vec::new());
        }
        process::resolve("listen", &self.listen)
    }

    /// The TLS listen addresses (none when `tls_listen` is `""`, the default).
    ///
    /// # Errors
    /// `ConfigError::Invalid` for `tls_listen` if it is not `host:port` or does not resolve.
    pub fn tls_listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        if self.tls_listen.is_empty() {
            return Ok(Vec::new());
        }
        process::resolve("tls_listen", &self.tls_listen)
    }

    /// Checks the listen addresses and the `[tls]` files named (not yet read).
    pub(super) fn validate_listen(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.into(),
        };
        let plain = self.listen_addrs()?;
        let tls = self.tls_listen_addrs()?;
        if plain.is_empty() && tls.is_empty() {
            return Err(invalid(
                "listen",
                "listen and tls_listen are both empty: clients could not connect",
            ));
        }
        if !tls.is_empty() {
            if self.tls.cert_file.is_none() {
                return Err(invalid("tls.cert_file", "required with tls_listen"));
            }
            if self.tls.key_file.is_none() {
                return Err(invalid("tls.key_file", "required with tls_listen"));
            }
        }
        Ok(())
    }

    /// Builds the TLS server of `[tls]` from its files, once at startup (a no-op when
    /// `tls_listen` is empty or the server is already built).
    ///
    /// # Errors
    /// `ConfigError::Invalid` naming the field and the file that can't be used.
    pub fn load_client_tls(&mut self) -> Result<(), ConfigError> {
        if !self.tls_listen.is_empty() && self.tls.server.is_none() {
            self.tls.server = Some(crate::server::tls::TlsServer::load(&self.tls)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_listen_may_be_off_when_tls_listen_is_on() {
        let mut config = Config {
            listen: String::new(),
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("`listen`") && err.contains("tls_listen"),
            "{err}"
        );
        config.tls_listen = "127.0.0.1:6380".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("tls.cert_file"), "{err}");
        config.tls.cert_file = Some("/etc/proxy.crt".into());
        config.tls.key_file = Some("/etc/proxy.key".into());
        config.validate().expect("TLS only");
        assert!(config.listen_addrs().unwrap().is_empty());
        assert_eq!(
            config.tls_listen_addrs().unwrap(),
            vec!["127.0.0.1:6380".parse().unwrap()]
        );
        let err = config.load_client_tls().unwrap_err().to_string();
        assert!(
            err.contains("tls.cert_file") && err.contains("/etc/proxy.crt"),
            "{err}"
        );
    }

    #[test]
    fn tls_files_are_not_needed_without_tls_listen() {
        let mut config = Config::default();
        config.tls.cert_file = Some("/nonexistent.crt".into());
        config.validate().expect("valid");
        config.load_client_tls().expect("nothing to load");
        assert!(config.tls.server.is_none());
    }
}
