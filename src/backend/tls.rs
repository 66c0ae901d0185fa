//! TLS towards the nodes: the rustls client configuration, built once at startup from
//! `[backend.tls]`, and the handshake [`super::setup::open`] runs on each new connection.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::BackendTlsConfig;
use crate::error::ConfigError;

/// The TLS client configuration every node connection uses; cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    /// `[backend.tls] server_name`, parsed.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TlsClient {
    /// Two clients are the same only if they are clones of one another.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(self.connector.config(), other.connector.config())
    }
}

impl TlsClient {
    /// Reads the CA, and the client certificate and key if given, and builds the configuration.
    ///
    /// # Errors
    /// `ConfigError::Invalid` naming the field and the file that is missing, unreadable or
    /// holds no usable PEM.
    pub fn load(config: &BackendTlsConfig) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        let ca_file = config.ca_file.as_deref().ok_or(ConfigError::Invalid {
            field: "backend.tls.ca_file",
            reason: "required when backend.tls.enabled".into(),
        })?;
        for cert in certificates(ca_file, "backend.tls.ca_file")? {
            roots
                .add(cert)
                .map_err(|e| invalid("backend.tls.ca_file", ca_file, &e.to_string()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid {
            field: "backend.tls",
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
        let client = match (&config.cert_file, &config.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = certificates(cert_file, "backend.tls.cert_file")?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|e| invalid("backend.tls.key_file", key_file, &e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid("backend.tls.key_file", key_file, &e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        let server_name = config
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_string()).map_err(|e| ConfigError::Invalid {
                    field: "backend.tls.server_name",
                    reason: format!("'{name}': {e}"),
                })
            })
            .transpose()?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// Runs the TLS handshake on `stream`, checking the node's certificate against
    /// `server_name`, or else against the host of `addr`.
    ///
    /// # Errors
    /// Why the handshake failed (bad certificate, unknown CA, wrong name, plain-text node...).
    pub async fn connect(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(host.to_string())
                    .map_err(|e| format!("TLS server name '{host}': {e}"))?
            }
        };
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    }
}

/// Every certificate in a PEM file; at least one.
pub(crate) fn certificates(
    path: &Path,
    field: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(field, path, &e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, path, &e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid(field, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

pub(crate) fn invalid(field: &'static str, path: &Path, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: format!("{}: {reason}", path.display()),
    }
}
