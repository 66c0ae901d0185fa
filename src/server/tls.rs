//! TLS for clients: the rustls server configuration, built once at startup from `[tls]`, and
//! the handshake each connection on a `tls_listen` address runs on its worker before its
//! session starts.
//!
//! A handshake that fails (a plain-text client, a certificate the client or slotproxy
//! rejects, a client that leaves or stalls) closes the connection with one log line; lines of
//! one kind are written at most once a second, with the count of failures since the last one.
//! Every failure is counted in `slotproxy_client_tls_handshake_failures_total{kind}`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, ServerConnection};
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::client_stream::{ClientStream, TryIo};
use crate::backend::tls::{certificates, invalid};
use crate::config::ClientTlsConfig;
use crate::error::ConfigError;
use crate::metrics::Metrics;

/// The TLS server configuration every client connection on `tls_listen` uses; cheap to clone.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    /// Whether clients must present a certificate (`client_ca_file`).
    mutual: bool,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TlsServer {
    /// Two servers are the same only if they are clones of one another.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

/// Why a client's TLS handshake failed: the kind (for the log's rate limit) and the reason.
#[derive(Debug)]
pub struct HandshakeFailure {
    kind: FailureKind,
    reason: String,
}

/// Kinds of handshake failure; each has its own log rate limit, so a flood of one kind does
/// not hide another.
#[derive(Debug, Clone, Copy)]
enum FailureKind {
    /// The client spoke something other than TLS (a plain-text client on the TLS port).
    NotTls,
    /// A certificate was refused: the client's by slotproxy, or slotproxy's by the client.
    Certificate,
    /// The client closed the connection before the handshake ended.
    Closed,
    /// The handshake did not end within the connect timeout.
    Timeout,
    /// Any other TLS or socket error.
    Other,
}

const KINDS: usize = 5;

/// The `kind` label values of `slotproxy_client_tls_handshake_failures_total`, in
/// `FailureKind` order.
pub const FAILURE_KINDS: [&str; KINDS] = ["not_tls", "certificate", "closed", "timeout", "other"];

/// Unix second of the last log line of each kind, and the failures of each kind since.
static LAST_LOG: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
static UNLOGGED: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];

impl TlsServer {
    /// Reads the certificate chain, the key and the client CA (if any) and builds the
    /// configuration: TLS 1.2 and 1.3, rustls' safe defaults.
    ///
    /// # Errors
    /// `ConfigError::Invalid` naming the field and the file that is missing, unreadable or
    /// holds no usable PEM, or a key that does not match the certificate.
    pub fn load(config: &ClientTlsConfig) -> Result<Self, ConfigError> {
        let required = |field: &'static str| ConfigError::Invalid {
            field,
            reason: "required with tls_listen".into(),
        };
        let cert_file = config
            .cert_file
            .as_deref()
            .ok_or(required("tls.cert_file"))?;
        let key_file = config.key_file.as_deref().ok_or(required("tls.key_file"))?;
        let chain = certificates(cert_file, "tls.cert_file")?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| invalid("tls.key_file", key_file, &e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Invalid {
                field: "tls",
                reason: e.to_string(),
            })?;
        let builder = match &config.client_ca_file {
            Some(ca_file) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(ca_file, "tls.client_ca_file")? {
                    roots
                        .add(cert)
                        .map_err(|e| invalid("tls.client_ca_file", ca_file, &e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| invalid("tls.client_ca_file", ca_file, &e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let server = builder
            .with_single_cert(chain, key)
            .map_err(|e| invalid("tls.key_file", key_file, &e.to_string()))?;
        Ok(Self {
            config: Arc::new(server),
            mutual: config.client_ca_file.is_some(),
        })
    }

    /// Runs the server side of the handshake on `tcp`, for at most `timeout`.
    ///
    /// # Errors
    /// Why it failed; the caller records it with [`HandshakeFailure::record`] and drops the
    /// socket.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<ClientStream, HandshakeFailure> {
        let mut conn =
            ServerConnection::new(self.config.clone()).map_err(|e| HandshakeFailure {
                kind: FailureKind::Other,
                reason: e.to_string(),
            })?;
        match tokio::time::timeout(timeout, handshake(&tcp, &mut conn)).await {
            Ok(Ok(())) => Ok(ClientStream::tls(tcp, conn)),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(HandshakeFailure {
                kind: FailureKind::Timeout,
                reason: format!("no complete handshake within {} ms", timeout.as_millis()),
            }),
        }
    }
}

/// Reads and writes handshake records until the handshake is over and its last records
/// (TLS 1.3 session tickets) are written. On a TLS error, the alert rustls queued is sent.
async fn handshake(tcp: &TcpStream, conn: &mut ServerConnection) -> Result<(), HandshakeFailure> {
    let io_failure = |e: io::Error| HandshakeFailure {
        kind: FailureKind::Other,
        reason: e.to_string(),
    };
    loop {
        while conn.wants_write() {
            tcp.writable().await.map_err(io_failure)?;
            match conn.write_tls(&mut TryIo(tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_failure(e)),
            }
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        tcp.readable().await.map_err(io_failure)?;
        match conn.read_tls(&mut TryIo(tcp)) {
            Ok(0) => {
                return Err(HandshakeFailure {
                    kind: FailureKind::Closed,
                    reason: "the client closed the connection during the handshake".into(),
                });
            }
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    // Best effort: the alert tells the client why (a TLS client shows it).
                    let _ = conn.write_tls(&mut TryIo(tcp));
                    return Err(HandshakeFailure::of(e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_failure(e)),
        }
    }
}

impl HandshakeFailure {
    fn of(error: rustls::Error) -> Self {
        use rustls::{AlertDescription, Error, InvalidMessage};
        let kind = match &error {
            Error::InvalidMessage(
                InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
            ) => FailureKind::NotTls,
            Error::InvalidCertificate(_) | Error::NoCertificatesPresented => {
                FailureKind::Certificate
            }
            Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA,
            ) => FailureKind::Certificate,
            _ => FailureKind::Other,
        };
        let reason = match kind {
            FailureKind::NotTls => {
                format!("not a TLS client (plain text on the TLS port?): {error}")
            }
            _ => error.to_string(),
        };
        Self { kind, reason }
    }

    /// Counts the failure in `metrics` and logs it (rate-limited per kind: one line a second,
    /// with how many were not logged since).
    pub fn record(&self, metrics: &Metrics, peer: SocketAddr, client: u64) {
        let kind = self.kind as usize;
        metrics
            .client_tls_handshake_failures
            .with_label_values(&[FAILURE_KINDS[kind]])
            .inc();
        let unlogged = UNLOGGED[kind].fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if LAST_LOG[kind].swap(now, Ordering::Relaxed) == now {
            return;
        }
        UNLOGGED[kind].fetch_sub(unlogged + 1, Ordering::Relaxed);
        let kind = FAILURE_KINDS[kind];
        match self.kind {
            FailureKind::Closed => info!(
                %peer, client, kind, reason = %self.reason, not_logged_before = unlogged,
                "client TLS handshake failed; connection closed"
            ),
            _ => warn!(
                %peer, client, kind, reason = %self.reason, not_logged_before = unlogged,
                "client TLS handshake failed; connection closed"
            ),
        }
    }
}

/// Notes a TLS handshake's first bytes arriving on a plain-text port. The client gets what
/// redis-server gives it there (nothing: the ClientHello is an inline request without an end,
/// so the client's handshake times out); slotproxy only logs it (one line a second).
pub fn log_tls_on_plain_port(first: &[u8], peer: impl FnOnce() -> Option<SocketAddr>) {
    // A TLS record: handshake (22), version 3.x, then a ClientHello (1).
    let hello = first.len() >= 6 && first[0] == 0x16 && first[1] == 3 && first[5] == 1;
    if !hello {
        return;
    }
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST.swap(now, Ordering::Relaxed) != now {
        let peer = peer().map_or_else(|| "?".to_owned(), |p| p.to_string());
        warn!(
            %peer,
            "a TLS handshake arrived on the plain-text listen port; it is not answered (as by \
             redis-server): point TLS clients at tls_listen"
        );
    }
}
