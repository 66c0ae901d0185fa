//! `TlsRawClient`: `RawClient`'s bytes-in, replies-out over TLS (rustls, as a client would),
//! and `redis-cli --tls`, for the tests of slotproxy's TLS listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::raw::{encode_command, resp_frame_len};

/// Time allowed for the handshake, each send and each reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What a TLS client presents and trusts.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA the server's certificate must chain to.
    pub ca: PathBuf,
    /// The client's certificate and key, for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Only TLS 1.2 (else 1.2 or 1.3, as the server prefers: 1.3).
    pub tls12_only: bool,
}

impl ClientTls {
    /// Trusting `ca`, no client certificate.
    pub fn trusting(ca: &Path) -> ClientTls {
        ClientTls {
            ca: ca.to_path_buf(),
            identity: None,
            tls12_only: false,
        }
    }

    /// The same, presenting `cert`/`key`.
    pub fn with_identity(mut self, (cert, key): (PathBuf, PathBuf)) -> ClientTls {
        self.identity = Some((cert, key));
        self
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read the CA file") {
            roots.add(cert.expect("CA PEM")).expect("add the CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider);
        let builder = if self.tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        }
        .expect("protocol versions")
        .with_root_certificates(roots);
        let config = match &self.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .expect("read the client certificate")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client certificate PEM");
                let key = PrivateKeyDer::from_pem_file(key).expect("read the client key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client certificate and key")
            }
            None => builder.with_no_client_auth(),
        };
        TlsConnector::from(Arc::new(config))
    }

    /// The first flight a client sends (a ClientHello), for tests that send it raw.
    pub fn client_hello(&self) -> Vec<u8> {
        let connector = self.connector();
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let mut conn = rustls::ClientConnection::new(connector.config().clone(), name)
            .expect("client connection");
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello).expect("write the ClientHello");
        }
        hello
    }

    /// Connects and runs the handshake: the stream, or the handshake's error as text.
    pub async fn connect(&self, addr: SocketAddr) -> Result<TlsRawClient, String> {
        let connector = self.connector();
        let attempt = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let name = ServerName::try_from("127.0.0.1").expect("server name");
            let mut stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            // With TLS 1.3 the server judges the client's certificate after the client's last
            // handshake message: its refusal arrives instead of the first reply.
            stream
                .write_all(&encode_command(&[b"PING"]))
                .await
                .map_err(|e| e.to_string())?;
            let mut client = TlsRawClient {
                stream,
                pending: Vec::new(),
                first_reply: Vec::new(),
            };
            // Any reply (`-NOAUTH` too) means the handshake succeeded.
            client.first_reply = client.try_read_reply().await?;
            Ok(client)
        };
        tokio::time::timeout(IO_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err("handshake timed out".into()))
    }
}

/// A TLS connection that sends bytes as given and reads whole RESP replies as raw bytes.
pub struct TlsRawClient {
    stream: TlsStream<TcpStream>,
    pending: Vec<u8>,
    /// The reply to the `PING` sent after the handshake.
    pub first_reply: Vec<u8>,
}

impl TlsRawClient {
    /// Writes `bytes` as they are.
    ///
    /// # Panics
    /// On an error or a timeout.
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("send: timed out")
        .expect("send");
    }

    /// Sends one command and reads its reply.
    pub async fn request(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode_command(args)).await;
        self.read_reply().await
    }

    /// Reads exactly one complete reply.
    ///
    /// # Panics
    /// When none arrives in time or the connection ends first.
    pub async fn read_reply(&mut self) -> Vec<u8> {
        tokio::time::timeout(IO_TIMEOUT, self.try_read_reply())
            .await
            .expect("read_reply: timed out")
            .unwrap_or_else(|e| panic!("read_reply: {e}"))
    }

    /// Reads until the server ends the stream: `Ok` after its `close_notify`, `Err` when the
    /// connection ended without one (or timed out).
    pub async fn read_until_closed(&mut self) -> Result<Vec<u8>, String> {
        let read = async {
            loop {
                let mut chunk = vec![0u8; 64 * 1024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) => return Ok(std::mem::take(&mut self.pending)),
                    Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err("still open".into()))
    }

    async fn try_read_reply(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(len) = resp_frame_len(&self.pending)? {
                return Ok(self.pending.drain(..len).collect());
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before a complete reply".into());
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> --tls --cacert <ca> <args...>`, with `stdin` piped
/// in when given; fails after 10 s.
///
/// # Panics
/// When `redis-cli` is missing.
pub fn redis_cli_tls(addr: SocketAddr, ca: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new("timeout");
    command
        .arg("10")
        .arg("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("run redis-cli (apt-get install redis-tools)");
    if let Some(bytes) = stdin {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(bytes).expect("write redis-cli's stdin");
    }
    child.wait_with_output().expect("wait for redis-cli")
}
