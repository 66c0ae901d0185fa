//! TLS for clients (`tls_listen`, `[tls]`): TLS clients (rustls, and `redis-cli --tls`) get
//! what plain clients get, through a real cluster: single-slot and cross-slot commands,
//! pipelines, values of megabytes (the vectored-write path), `CLIENT LIST`'s laddr; mutual TLS
//! with `client_ca_file`; TLS together with a password and an ACL user. Bad input is in
//! `client_tls_bad`.

use std::path::Path;

use crate::common::{ClientTls, TestCa, TestCluster, TestProxy, redis_cli_tls};
use slotproxy::config::Config;

/// `[tls]` with a certificate for 127.0.0.1 signed by `ca`.
pub(crate) fn serve_tls(config: &mut Config, ca: &TestCa) {
    let (cert, key) = ca.issue("proxy");
    config.tls.cert_file = Some(cert);
    config.tls.key_file = Some(key);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_get_what_plain_clients_get() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path(), "clients");
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |c| serve_tls(c, &ca)).await;
    let tls_addr = proxy.tls_addr.expect("a TLS listener");

    let mut client = ClientTls::trusting(&ca.cert)
        .connect(tls_addr)
        .await
        .expect("TLS 1.3 handshake");
    assert_eq!(client.request(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    assert_eq!(client.request(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
    // Keys on three different slots (and nodes).
    let mset: &[&[u8]] = &[b"MSET", b"a", b"1", b"b", b"2", b"c", b"3"];
    assert_eq!(client.request(mset).await, b"+OK\r\n");
    assert_eq!(
        client.request(&[b"MGET", b"a", b"b", b"c", b"nokey"]).await,
        b"*4\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$-1\r\n"
    );

    // A pipeline of 2000 commands in one write; replies in order.
    let mut batch = Vec::new();
    for i in 0..1000 {
        let key = format!("p:{i}");
        batch.extend(crate::common::encode_command(&[
            b"SET",
            key.as_bytes(),
            key.as_bytes(),
        ]));
        batch.extend(crate::common::encode_command(&[b"GET", key.as_bytes()]));
    }
    client.send(&batch).await;
    for i in 0..1000 {
        let key = format!("p:{i}");
        assert_eq!(client.read_reply().await, b"+OK\r\n");
        assert_eq!(
            text(&client.read_reply().await),
            format!("${}\r\n{key}\r\n", key.len())
        );
    }

    // Values of megabytes, several replies queued at once: the vectored-write path.
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(client.request(&[b"SET", b"big", &big]).await, b"+OK\r\n");
    let mut expected = format!("${}\r\n", big.len()).into_bytes();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"\r\n");
    let mut gets = Vec::new();
    for _ in 0..4 {
        gets.extend(crate::common::encode_command(&[b"GET", b"big"]));
        gets.extend(crate::common::encode_command(&[b"GET", b"k"]));
    }
    client.send(&gets).await;
    for _ in 0..4 {
        assert!(client.read_reply().await == expected, "large value differs");
        assert_eq!(client.read_reply().await, b"$1\r\nv\r\n");
    }

    // CLIENT LIST shows the TLS port as the client's laddr.
    let list = text(&client.request(&[b"CLIENT", b"LIST"]).await);
    assert!(list.contains(&format!("laddr={tls_addr} ")), "{list}");

    // TLS 1.2 too; and the plain port still serves plain clients.
    let mut tls12 = ClientTls {
        tls12_only: true,
        ..ClientTls::trusting(&ca.cert)
    }
    .connect(tls_addr)
    .await
    .expect("TLS 1.2 handshake");
    assert_eq!(tls12.request(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");
    let mut plain = proxy.raw_client().await;
    assert_eq!(plain.request(&[b"GET", b"k"]).await, b"$1\r\nv\r\n");

    // redis-cli --tls: commands, a value from stdin, and --pipe.
    let cli = |args: &[&str], stdin: Option<&[u8]>| {
        let out = redis_cli_tls(tls_addr, &ca.cert, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(cli(&["SET", "cli", "x"], None), "OK\n");
    assert_eq!(cli(&["MGET", "cli", "a", "b"], None), "x\n1\n2\n");
    let value = "v".repeat(1024 * 1024);
    assert_eq!(
        cli(&["-x", "SET", "cli:big"], Some(value.as_bytes())),
        "OK\n"
    );
    assert_eq!(cli(&["GET", "cli:big"], None), format!("{value}\n"));
    let mut pipe = Vec::new();
    for i in 0..500 {
        let key = format!("pipe:{i}");
        pipe.extend(crate::common::encode_command(&[
            b"SET",
            key.as_bytes(),
            b"1",
        ]));
    }
    let piped = cli(&["--pipe"], Some(&pipe));
    assert!(piped.contains("errors: 0, replies: 500"), "{piped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_subscribers_get_messages_and_quit_ends_with_close_notify() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path(), "clients");
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |c| serve_tls(c, &ca)).await;
    let tls = ClientTls::trusting(&ca.cert);
    let tls_addr = proxy.tls_addr.expect("a TLS listener");
    let mut subscriber = tls.connect(tls_addr).await.unwrap();
    assert_eq!(
        subscriber.request(&[b"SUBSCRIBE", b"news"]).await,
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    let mut publisher = proxy.raw_client().await;
    assert_eq!(
        publisher.request(&[b"PUBLISH", b"news", b"hello"]).await,
        b":1\r\n"
    );
    assert_eq!(
        subscriber.read_reply().await,
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );

    // QUIT: the reply, then a clean TLS close (close_notify), not a bare TCP close.
    let mut quitting = tls.connect(tls_addr).await.unwrap();
    quitting
        .send(&crate::common::encode_command(&[b"QUIT"]))
        .await;
    assert_eq!(
        quitting.read_until_closed().await.as_deref(),
        Ok(&b"+OK\r\n"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_an_acl_user_together() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path(), "clients");
    let other = TestCa::new(certs.path(), "other");
    let identity = ca.issue("app");
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with(&cluster, |c| {
        serve_tls(c, &ca);
        c.tls.client_ca_file = Some(ca.cert.clone());
        c.auth.password = Some(slotproxy::secret::Secret::new("pw"));
        c.auth.users = vec!["revenue on >secret ~revenue:* +@all -@dangerous".into()];
    })
    .await;
    let tls_addr = proxy.tls_addr.expect("a TLS listener");
    let (cert, key) = (identity.0.to_str().unwrap(), identity.1.to_str().unwrap());
    let cli = |args: &[&str]| {
        let mut all = vec!["--cert", cert, "--key", key];
        all.extend_from_slice(args);
        let out = redis_cli_tls(tls_addr, &ca.cert, &all, None);
        (text(&out.stdout), text(&out.stderr))
    };
    let user = ["--no-auth-warning", "--user", "revenue", "--pass", "secret"];
    let with_user = |args: &[&str]| {
        let mut all = user.to_vec();
        all.extend_from_slice(args);
        cli(&all)
    };
    assert_eq!(with_user(&["SET", "revenue:1", "10"]).0, "OK\n");
    assert_eq!(with_user(&["GET", "revenue:1"]).0, "10\n");
    // redis-server's own text for a key outside the user's patterns.
    assert_eq!(
        with_user(&["SET", "costs:1", "5"]).0.trim_end(),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    // A certificate alone is not a password.
    assert_eq!(
        cli(&["GET", "revenue:1"]).0.trim_end(),
        "NOAUTH Authentication required."
    );

    // Without a certificate, or with one from another CA, the handshake fails.
    let tls = ClientTls::trusting(&ca.cert);
    let error = tls.connect(tls_addr).await.err().expect("no certificate");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    let error = tls
        .clone()
        .with_identity(other.issue("stranger"))
        .connect(tls_addr)
        .await
        .err()
        .expect("a certificate of another CA");
    assert!(error.contains("UnknownCA"), "{error}");
    let mut ok = tls
        .with_identity(identity.clone())
        .connect(tls_addr)
        .await
        .expect("a certificate of the client CA");
    assert_eq!(
        ok.request(&[b"AUTH", b"revenue", b"secret"]).await,
        b"+OK\r\n"
    );
}

/// Protected mode holds on the TLS listener too: a client from another host gets redis'
/// protected-mode error, over TLS, and the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_mode_applies_to_tls_clients() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path(), "clients");
    let cluster = TestCluster::start(3, 0);
    let ip = crate::acl::non_loopback_ip();
    let proxy = TestProxy::start_bound(&cluster, "0.0.0.0:0", |c| serve_tls(c, &ca)).await;
    let tls_port = proxy.tls_addr.expect("a TLS listener").port();
    let tls = ClientTls::trusting(&ca.cert);
    let remote = tls
        .connect(std::net::SocketAddr::new(ip, tls_port))
        .await
        .expect("the handshake succeeds; the refusal comes over TLS");
    assert!(
        remote
            .first_reply
            .starts_with(b"-DENIED Redis is running in protected mode"),
        "{}",
        text(&remote.first_reply)
    );
    // Loopback clients are served.
    let local = tls.connect(proxy.tls_addr.unwrap()).await.unwrap();
    assert_eq!(local.first_reply, b"+PONG\r\n");
}

/// The files of the `[tls]` section must exist and be usable: exit 2, naming the field and
/// the file.
#[test]
fn unusable_tls_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "startup");
    let (cert, key) = ca.issue("proxy");
    let (_, other_key) = ca.issue("other");
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM\n").unwrap();
    let cases: [(&Path, &Path, Option<&Path>, &str, &Path); 6] = [
        (&missing, &key, None, "tls.cert_file", &missing),
        (&cert, &missing, None, "tls.key_file", &missing),
        (&garbage, &key, None, "tls.cert_file", &garbage),
        (&cert, &garbage, None, "tls.key_file", &garbage),
        (&cert, &key, Some(&missing), "tls.client_ca_file", &missing),
        // A key that is not the certificate's.
        (&cert, &other_key, None, "tls.key_file", &other_key),
    ];
    for (cert, key, client_ca, field, named) in cases {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_slotproxy"));
        command
            .args(["--tls-listen", "127.0.0.1:0", "--tls-cert-file"])
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .env("SLOTPROXY_ADMIN_LISTEN", "");
        if let Some(client_ca) = client_ca {
            command.env("SLOTPROXY_TLS_CLIENT_CA_FILE", client_ca);
        }
        let out = command.output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(field) && err.contains(&named.display().to_string()),
            "{err}"
        );
    }
}

/// A reload re-reads `[tls]`'s files: a certificate replaced in place (here, one from another
/// CA) is what new TLS clients get, and a client already connected keeps its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_client_certificate_without_dropping_tls_clients() {
    let certs = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(certs.path(), "old");
    let new_ca = TestCa::new(certs.path(), "new");
    let cluster = TestCluster::start(3, 0);
    let (proxy, _source) = TestProxy::start_reloadable(&cluster, |c| serve_tls(c, &old_ca)).await;
    let tls_addr = proxy.tls_addr.expect("a TLS listener");
    let admin = proxy.admin.expect("an admin listener");
    let mut early = ClientTls::trusting(&old_ca.cert)
        .connect(tls_addr)
        .await
        .expect("the old certificate is served");
    assert!(
        ClientTls::trusting(&new_ca.cert)
            .connect(tls_addr)
            .await
            .is_err(),
        "the new CA does not vouch for the old certificate"
    );

    // The operator replaces the files in place, then reloads.
    // `serve_tls` had `old_ca` issue these.
    let (served_cert, served_key) = (
        certs.path().join("old-proxy.crt"),
        certs.path().join("old-proxy.key"),
    );
    let (rotated_cert, rotated_key) = new_ca.issue("proxy");
    std::fs::copy(&rotated_cert, &served_cert).unwrap();
    std::fs::copy(&rotated_key, &served_key).unwrap();
    let reload = crate::common::http(admin, "POST", "/reload");
    assert_eq!(reload.status, 200, "{}", reload.body);

    let mut late = ClientTls::trusting(&new_ca.cert)
        .connect(tls_addr)
        .await
        .expect("the rotated certificate is served");
    assert_eq!(late.request(&[b"SET", b"rot", b"1"]).await, b"+OK\r\n");
    assert!(
        ClientTls::trusting(&old_ca.cert)
            .connect(tls_addr)
            .await
            .is_err(),
        "new handshakes no longer present the old certificate"
    );
    assert_eq!(early.request(&[b"GET", b"rot"]).await, b"$1\r\n1\r\n");
}
