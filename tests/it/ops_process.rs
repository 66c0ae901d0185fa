//! The `slotproxy` binary operated as a container would: configured through SLOTPROXY_*
//! environment variables, probed with `slotproxy health`, reloaded with SIGHUP and POST
//! /reload, stopped with SIGTERM, its log piped to a file.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{
    self, Running, TestCluster, free_port, http, http_get, metric, slotproxy, wait_until,
};

fn health(admin: SocketAddr) -> bool {
    slotproxy()
        .args(["health", "--admin", &admin.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

fn config_text(read_policy: &str, connections_per_node: usize) -> String {
    format!(
        "read_policy = \"{read_policy}\"\ndrain_delay_ms = 200\n\n[cluster]\nhealth_check_interval_ms = 100\n\n[backend]\nconnections_per_node = {connections_per_node}\n"
    )
}

#[test]
fn env_configured_binary_reloads_on_sighup_and_drains_on_sigterm() {
    let cluster = TestCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotproxy.toml");
    std::fs::write(&config, config_text("primary", 2)).unwrap();
    let log_path = dir.path().join("slotproxy.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port(false)).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port(false)).parse().unwrap();
    let child = slotproxy()
        .env("SLOTPROXY_CONFIG", &config)
        .env("SLOTPROXY_LISTEN", listen.to_string())
        .env("SLOTPROXY_CLUSTER", cluster.seeds().join(","))
        .env("SLOTPROXY_ADMIN_LISTEN", admin.to_string())
        .env("SLOTPROXY_THREADS", "2")
        .env("SLOTPROXY_LOG", "info")
        .env("SLOTPROXY_LOG_FORMAT", "text")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut child = Running(child);
    wait_until(Duration::from_secs(15), "slotproxy health exits 0", || {
        health(admin)
    });

    let mut conn = common::process_connect(&listen.to_string());
    let _: () = redis::cmd("SET")
        .arg("reload:k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let config_json = http_get(admin, "/config").body;
    assert!(
        config_json.contains("\"read_policy\": \"primary\""),
        "{config_json}"
    );

    // SIGHUP: the read policy changes for the client already connected; a key that needs a
    // restart is reported, not applied.
    std::fs::write(&config, config_text("any", 3)).unwrap();
    signal(&child.0, "HUP");
    wait_until(
        Duration::from_secs(10),
        "read_policy any in /config",
        || {
            http_get(admin, "/config")
                .body
                .contains("\"read_policy\": \"any\"")
        },
    );
    assert!(
        http_get(admin, "/config")
            .body
            .contains("\"connections_per_node\": 2"),
        "needs a restart: keeps its running value"
    );
    let replicas = cluster.replicas();
    let before: u64 = replicas
        .iter()
        .map(|r| cluster.command_calls(r, "get"))
        .sum();
    for _ in 0..60 {
        let value: String = redis::cmd("GET").arg("reload:k").query(&mut conn).unwrap();
        assert_eq!(value, "v");
    }
    let after: u64 = replicas
        .iter()
        .map(|r| cluster.command_calls(r, "get"))
        .sum();
    assert!(after > before, "no read reached a replica after the reload");

    // An invalid file is refused whole; the running config stays.
    std::fs::write(&config, "read_policy = \"sideways\"\n").unwrap();
    let refused = http(admin, "POST", "/reload");
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("read_policy"), "{}", refused.body);
    assert!(
        http_get(admin, "/config")
            .body
            .contains("\"read_policy\": \"any\"")
    );
    let metrics = http_get(admin, "/metrics").body;
    assert_eq!(
        metric(&metrics, "slotproxy_config_reloads_total", r#"result="ok""#),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "slotproxy_config_reloads_total",
            r#"result="invalid""#
        ),
        Some(1.0)
    );
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG", "the client survived both reloads");

    // SIGTERM: not ready at once, then a clean exit.
    signal(&child.0, "TERM");
    let status = {
        let mut status = None;
        wait_until(
            Duration::from_secs(15),
            "slotproxy exits after SIGTERM",
            || {
                status = child.0.try_wait().unwrap();
                status.is_some()
            },
        );
        status.unwrap()
    };
    assert!(status.success(), "{status:?}");
    assert!(!health(admin), "health fails once slotproxy is gone");

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log:\n{log}"
    );
    let startup = log
        .lines()
        .find(|l| l.contains("slotproxy starting"))
        .unwrap_or_else(|| panic!("no startup line:\n{log}"));
    for part in [
        format!("version={}", env!("CARGO_PKG_VERSION")),
        "threads=2".into(),
        "read_policy=Primary".into(),
        "ack=Primary".into(),
        listen.to_string(),
        admin.to_string(),
    ] {
        assert!(startup.contains(&part), "{part} missing: {startup}");
    }
    assert!(log.contains("config reloaded"), "{log}");
    assert!(log.contains("backend.connections_per_node"), "{log}");
    assert!(log.contains("config reload refused"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

/// `SLOTPROXY_THREADS=1` runs sessions, node connections and everything they share on one
/// thread (no worker threads): cross-slot commands and pub/sub work, and SIGINT with a
/// subscriber and a client still connected drains and exits 0.
#[test]
fn one_thread_binary_serves_the_cluster_and_stops_on_sigint() {
    let cluster = TestCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("slotproxy.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port(false)).parse().unwrap();
    let child = slotproxy()
        .env("SLOTPROXY_LISTEN", listen.to_string())
        .env("SLOTPROXY_CLUSTER", cluster.seeds().join(","))
        .env("SLOTPROXY_ADMIN_LISTEN", "")
        .env("SLOTPROXY_THREADS", "1")
        .env("SLOTPROXY_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut child = Running(child);
    // It listens once the slot map is known.
    wait_until(Duration::from_secs(15), "slotproxy accepts clients", || {
        std::net::TcpStream::connect(listen).is_ok()
    });

    let mut conn = common::process_connect(&listen.to_string());
    let keys: Vec<String> = (0..20).map(|i| format!("one-thread:{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for key in &keys {
        mset.arg(key).arg(format!("v-{key}"));
    }
    let _: () = mset.query(&mut conn).unwrap();
    let got: Vec<String> = redis::cmd("MGET").arg(&keys).query(&mut conn).unwrap();
    let want: Vec<String> = keys.iter().map(|k| format!("v-{k}")).collect();
    assert_eq!(got, want, "a cross-slot MGET reads what MSET wrote");

    let mut subscriber = common::process_connect(&listen.to_string());
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("one-thread:channel").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("one-thread:channel")
        .arg("hello")
        .query(&mut conn)
        .unwrap();
    assert_eq!(receivers, 1);
    let message: String = pubsub.get_message().unwrap().get_payload().unwrap();
    assert_eq!(message, "hello");

    signal(&child.0, "INT");
    let mut status = None;
    wait_until(
        Duration::from_secs(15),
        "slotproxy exits after SIGINT",
        || {
            status = child.0.try_wait().unwrap();
            status.is_some()
        },
    );
    assert!(status.unwrap().success(), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("threads=1"), "{log}");
    assert!(log.contains("SIGINT"), "{log}");
}

#[test]
fn health_fails_when_nothing_answers() {
    let port = free_port(false);
    let out = slotproxy()
        .args(["health", "--admin", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("connect to the admin listener"), "{stderr}");
}

#[test]
fn json_log_format_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("slotproxy.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = slotproxy()
        .env("SLOTPROXY_LOG_FORMAT", "json")
        .env(
            "SLOTPROXY_LISTEN",
            format!("127.0.0.1:{}", free_port(false)),
        )
        .env("SLOTPROXY_ADMIN_LISTEN", "")
        // Nobody answers there: the startup line is all this test needs.
        .env(
            "SLOTPROXY_CLUSTER",
            format!("redis://user:hunter2@127.0.0.1:{}", free_port(false)),
        )
        .stdout(Stdio::from(log))
        .spawn()
        .unwrap();
    let _child = Running(child);
    let mut line = String::new();
    wait_until(Duration::from_secs(10), "a JSON startup line", || {
        let text = std::fs::read_to_string(&log_path).unwrap();
        match text.lines().find(|l| l.contains("slotproxy starting")) {
            Some(found) => {
                line = found.to_string();
                true
            }
            None => false,
        }
    });
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["fields"]["message"], "slotproxy starting", "{line}");
    assert_eq!(value["fields"]["admin"], "off", "{line}");
    assert!(
        !line.contains("hunter2"),
        "a seed's password in the log: {line}"
    );
    assert!(line.contains("<redacted>"), "{line}");
}

#[test]
fn a_seed_that_is_slotproxy_itself_is_refused_with_a_clear_line() {
    let listen = format!("127.0.0.1:{}", free_port(false));
    let out = slotproxy()
        .args([
            "--listen",
            &listen,
            "--cluster",
            &listen,
            "--admin-listen",
            "",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("seed refused"), "{stdout}");
    assert!(stderr.contains("cluster.seeds"), "{stderr}");
}
