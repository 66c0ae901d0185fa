//! Bad input on slotproxy's TLS and plain listeners, against the binary (its log is checked):
//! a plain-text client on the TLS port, a TLS client on the plain port (answered as
//! redis-server answers it, byte for byte), a handshake that stalls (closed after
//! `backend.connect_timeout_ms`), a client that leaves mid-handshake, and client certificates
//! that are missing, from another CA or expired, and a client that refuses slotproxy's
//! certificate. Each closes the connection with a log line; no session is left behind.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use crate::common::{
    ClientTls, RawClient, StandaloneRedis, TestCa, TestCluster, encode_command, wait_until,
};

/// The slotproxy binary with a plain and a TLS listener (mutual TLS), killed on drop.
struct Binary {
    child: Child,
    plain: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Binary {
    fn start(dir: &std::path::Path, cluster: &TestCluster, ca: &TestCa) -> Binary {
        let (cert, key) = ca.issue("proxy");
        let (plain, tls, admin) = (free_addr(), free_addr(), free_addr());
        let config = dir.join("client-tls.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{plain}\"\ntls_listen = \"{tls}\"\n[admin]\nlisten = \"{admin}\"\n\
                 [cluster]\nseeds = [\"{}\"]\n\
                 [backend]\nconnect_timeout_ms = 300\n\
                 [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
                cluster.seeds()[0],
                cert.display(),
                key.display(),
                ca.cert.display()
            ),
        )
        .unwrap();
        let log = dir.join("client-tls.log");
        let child = Command::new(env!("CARGO_BIN_EXE_slotproxy"))
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let binary = Binary {
            child,
            plain,
            tls,
            admin,
            log,
        };
        wait_until(Duration::from_secs(15), "slotproxy answers", || {
            let mut redis =
                redis::Client::open(format!("redis://{plain}/")).and_then(|c| c.get_connection());
            redis.as_mut().is_ok_and(|c| {
                redis::cmd("GET")
                    .arg("k")
                    .query::<Option<String>>(c)
                    .is_ok()
            })
        });
        binary
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// Log lines of one kind are rate-limited to one a second: wait that out between cases of
/// the same kind, so each gets its line.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_the_connection_with_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "clients");
    let other = TestCa::new(dir.path(), "other");
    let cluster = TestCluster::start(3, 0);
    let proxy = Binary::start(dir.path(), &cluster, &ca);
    let good = ClientTls::trusting(&ca.cert).with_identity(ca.issue("app"));

    // A plain-text client on the TLS port: it gets a TLS alert at most, then the close.
    let mut plain = RawClient::connect(proxy.tls).await;
    plain.send(&encode_command(&[b"PING"])).await;
    let got = plain.read_until_closed().await;
    assert!(!got.starts_with(b"+PONG"), "{got:?}");

    // A TLS client on the plain port gets what redis-server gives it: its ClientHello is an
    // inline request whose line never ends (a NUL comes first), so nothing until 64 KB, then
    // the protocol error.
    let mut hello = good.client_hello();
    hello.resize(64 * 1024 + 1, b'x');
    let standalone = StandaloneRedis::start();
    let mut redis = RawClient::connect(&standalone.addr).await;
    redis.send(&hello).await;
    let from_redis = redis.read_until_closed().await;
    let mut slotproxy = RawClient::connect(proxy.plain).await;
    slotproxy.send(&hello).await;
    let from_slotproxy = slotproxy.read_until_closed().await;
    assert_eq!(
        String::from_utf8_lossy(&from_slotproxy),
        String::from_utf8_lossy(&from_redis)
    );

    // A handshake that stalls is closed after the connect timeout (300 ms here).
    let mut stalled = RawClient::connect(proxy.tls).await;
    let hello = good.client_hello();
    stalled.send(&hello[..hello.len() / 2]).await;
    assert!(stalled.read_until_closed().await.is_empty());

    // A client that leaves mid-handshake.
    let mut gone = RawClient::connect(proxy.tls).await;
    gone.send(&hello[..10]).await;
    drop(gone);

    // Certificates: none, another CA's, an expired one; and a client that does not trust
    // slotproxy's certificate.
    let no_cert = ClientTls::trusting(&ca.cert);
    let refusals = [
        no_cert.clone(),
        no_cert.clone().with_identity(other.issue("stranger")),
        no_cert.clone().with_identity(ca.issue_expired("old")),
        ClientTls::trusting(&other.cert).with_identity(ca.issue("distrustful")),
    ];
    for (i, tls) in refusals.iter().enumerate() {
        if i > 0 {
            next_second();
        }
        let error = tls.connect(proxy.tls).await.err().expect("refused");
        let error = error.to_lowercase();
        assert!(
            error.contains("certificate") || error.contains("unknown"),
            "{error}"
        );
    }

    // Nothing is left behind: the only client is the one asking.
    let mut client = good.connect(proxy.tls).await.expect("a good client");
    let mut clients = 0;
    for _ in 0..100 {
        let list = client.request(&[b"CLIENT", b"LIST"]).await;
        clients = String::from_utf8_lossy(&list).matches("id=").count();
        if clients == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(clients, 1, "sessions left behind");

    // Each failure is counted by kind.
    let metrics = crate::common::http_get(proxy.admin, "/metrics").body;
    for (kind, count) in [
        ("not_tls", 1.0),
        ("timeout", 1.0),
        ("closed", 1.0),
        ("certificate", 4.0),
    ] {
        assert_eq!(
            crate::common::metric(
                &metrics,
                "slotproxy_client_tls_handshake_failures_total",
                &format!("kind=\"{kind}\""),
            ),
            Some(count),
            "{kind}"
        );
    }

    let log = proxy.log();
    for expected in [
        "not a TLS client (plain text on the TLS port?)",
        "a TLS handshake arrived on the plain-text listen port",
        "no complete handshake within 300 ms",
        "the client closed the connection during the handshake",
        "peer sent no certificates",
        "UnknownIssuer",
        "xpired",
        "received fatal alert",
    ] {
        assert!(
            log.lines().any(|l| l.contains(expected)),
            "no log line with {expected:?}:\n{log}"
        );
    }
}
