//! TLS towards the nodes: a cluster started with `tls-port`, `tls-cluster yes` and
//! `tls-replication yes` (certificates made by the harness with the `openssl` CLI) works through
//! slotproxy; a wrong CA, a missing client certificate and a plain-text node are clear errors;
//! unusable certificate files stop the binary with exit code 2 naming the file.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{self, TestCa, TestCluster, TestProxy, exercise_connections, wait_until};
use slotproxy::config::Config;

/// `[backend.tls]` trusting `ca`, with a client certificate when given.
fn tls_config(config: &mut Config, ca: &Path, client: Option<(&Path, &Path)>) {
    let tls = &mut config.backend.tls;
    tls.enabled = true;
    tls.ca_file = Some(ca.to_path_buf());
    if let Some((cert, key)) = client {
        tls.cert_file = Some(cert.to_path_buf());
        tls.key_file = Some(key.to_path_buf());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_serves_every_kind_of_node_connection() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path(), "good");
    let (cert, key) = ca.issue("slotproxy");
    let cluster = TestCluster::start_tls(3, 1, &ca);
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.cluster.seeds = cluster.tls_seeds();
        c.cluster.health_check_interval_ms = 100;
        tls_config(c, &ca.cert, Some((&cert, &key)));
    })
    .await;
    // Every request below fails unless slotproxy followed the TLS ports CLUSTER SHARDS lists
    // (the plain ports would refuse a TLS handshake).
    exercise_connections(&cluster, &proxy).await;
    // The health checks run over TLS too: every node counts their PINGs.
    common::wait_health_checks_reach_every_node(&cluster);
}

/// The error a client gets for a key while no node can be reached over TLS.
async fn first_error(proxy: &TestProxy) -> String {
    let mut client = proxy.raw_client().await;
    String::from_utf8(client.request(&[b"GET", b"k"]).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_missing_client_cert_and_plain_node_are_clear_errors() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path(), "good");
    let other = TestCa::new(certs.path(), "other");
    let (cert, key) = ca.issue("slotproxy");
    let cluster = TestCluster::start_tls(1, 0, &ca);
    let fast = |c: &mut Config| {
        c.session.retry_deadline_ms = 300;
        c.backend.connect_timeout_ms = 500;
    };

    // A CA that did not sign the node's certificate: clients get CLUSTERDOWN (no slot map can
    // be had), the log says why.
    let proxy = TestProxy::start_with(&cluster, |c| {
        fast(c);
        c.cluster.seeds = cluster.tls_seeds();
        tls_config(c, &other.cert, Some((&cert, &key)));
    })
    .await;
    let error = first_error(&proxy).await;
    assert!(error.starts_with("-CLUSTERDOWN"), "{error}");
    drop(proxy);
    let log = binary_log(
        certs.path(),
        &cluster.tls_seeds()[0],
        &other.cert,
        &cert,
        &key,
    );
    assert!(
        log.lines()
            .any(|l| l.contains("TLS handshake") && l.contains("UnknownIssuer")),
        "{log}"
    );

    // No client certificate for a node that requires one (redis' default).
    let proxy = TestProxy::start_with(&cluster, |c| {
        fast(c);
        c.cluster.seeds = cluster.tls_seeds();
        tls_config(c, &ca.cert, None);
    })
    .await;
    let error = first_error(&proxy).await;
    assert!(error.starts_with("-CLUSTERDOWN"), "{error}");
    drop(proxy);

    // TLS towards a plain-text port.
    let proxy = TestProxy::start_with(&cluster, |c| {
        fast(c);
        tls_config(c, &ca.cert, Some((&cert, &key)));
    })
    .await;
    let error = first_error(&proxy).await;
    assert!(error.starts_with("-CLUSTERDOWN"), "{error}");
    // A plain-text node never answers the ClientHello: the handshake stalls, and is cut at
    // connect_timeout_ms.
    let log = binary_log(certs.path(), &cluster.seeds()[0], &ca.cert, &cert, &key);
    assert!(log.contains("connect timed out after 1000 ms"), "{log}");
}

/// Runs the binary against `seed` with `[backend.tls]` trusting `ca` until it has logged a
/// failed topology refresh; its log, without colours.
fn binary_log(dir: &Path, seed: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.join("tls-proxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\n[cluster]\nseeds = [\"{seed}\"]\n\
             [backend.tls]\nenabled = true\nca_file = \"{}\"\ncert_file = \"{}\"\n\
             key_file = \"{}\"\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let log = dir.join("tls-proxy.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slotproxy"))
        .arg("--config")
        .arg(&config)
        // No admin listener: its default port is fixed, and tests run in parallel.
        .env("SLOTPROXY_ADMIN_LISTEN", "")
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "a refresh failure is logged",
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("topology refresh failed")),
    );
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn unusable_certificate_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing-ca.pem");
    for (file, field) in [
        (&missing, "backend.tls.ca_file"),
        (&garbage, "backend.tls.ca_file"),
    ] {
        let config = dir.path().join("slotproxy.toml");
        std::fs::write(
            &config,
            format!(
                "[backend.tls]\nenabled = true\nca_file = \"{}\"\n",
                file.display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_slotproxy"))
            .arg("--config")
            .arg(&config)
            .env("SLOTPROXY_ADMIN_LISTEN", "")
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(field) && err.contains(&file.display().to_string()),
            "{err}"
        );
    }
}
