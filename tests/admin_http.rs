//! The admin HTTP listener against a real cluster: each endpoint's answer, its bounds, and the
//! metrics moving under load.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns may unwrap too

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{TestCluster, TestProxy, http, http_get, metric, wait_until};
use serde_json::Value;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_cluster_and_config_endpoints_answer() {
    let cluster = TestCluster::start(3, 1);
    let first = cluster.seeds()[0].clone();
    let proxy = TestProxy::start_with_admin(&cluster, |c| {
        // A seed with credentials in it: /config must not show them.
        c.cluster
            .seeds
            .push(format!("redis://app:s3cret-pw@{first}"));
    })
    .await;
    let admin = proxy.admin.unwrap();

    let healthz = http_get(admin, "/healthz");
    assert_eq!(healthz.status, 200);
    assert_eq!(healthz.body, "ok\n");

    wait_until(Duration::from_secs(10), "/readyz answers 200", || {
        http_get(admin, "/readyz").status == 200
    });
    assert_eq!(json(&http_get(admin, "/readyz").body)["ready"], true);

    let view = json(&http_get(admin, "/cluster").body);
    assert_eq!(view["state"], "ok", "{view}");
    assert_eq!(view["covered_slots"], 16384);
    assert!(view["generation"].as_u64().unwrap() >= 1);
    let shards = view["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3, "{view}");
    for shard in shards {
        assert_eq!(shard["primary"]["role"], "primary");
        assert_eq!(shard["replicas"].as_array().unwrap().len(), 1);
        assert!(shard["slots"].as_array().is_some_and(|s| !s.is_empty()));
    }

    let config = http_get(admin, "/config");
    assert_eq!(config.status, 200);
    assert!(!config.body.contains("s3cret-pw"), "{}", config.body);
    let config = json(&config.body);
    assert_eq!(config["listen"], proxy.addr.to_string());
    assert!(
        config["cluster"]["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == &Value::from(format!("redis://app:<redacted>@{first}"))),
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_methods_and_oversized_requests_are_refused() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with_admin(&cluster, |_| {}).await;
    let admin = proxy.admin.unwrap();
    assert_eq!(http_get(admin, "/nope").status, 404);
    let wrong = http(admin, "DELETE", "/metrics");
    assert_eq!(wrong.status, 405);
    assert!(
        wrong.headers.to_ascii_lowercase().contains("allow: get"),
        "{}",
        wrong.headers
    );
    assert_eq!(http(admin, "GET", "/reload").status, 405);
    // Started without a config file to read: reload says so instead of pretending.
    let reload = http(admin, "POST", "/reload");
    assert_eq!(reload.status, 409, "{}", reload.body);

    // A 64 KiB header: refused with 431, and the listener keeps serving.
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let huge = "x".repeat(64 * 1024);
    let _ = write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: {huge}\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(http_get(admin, "/healthz").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_under_load() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with_admin(&cluster, |_| {}).await;
    let admin = proxy.admin.unwrap();
    let before = http_get(admin, "/metrics").body;
    let sets_before =
        metric(&before, "slotproxy_commands_total", r#"command="set""#).unwrap_or(0.0);
    let requests_before = metric(&before, "slotproxy_node_requests_total", "").unwrap_or(0.0);

    let mut conn = proxy.client().await;
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("metrics:{i}")).arg(i).ignore();
    }
    pipe.cmd("GET").arg("metrics:1");
    let _: (String,) = pipe.query_async(&mut conn).await.unwrap();
    // One error reply of a known class.
    let crossslot: redis::RedisResult<()> = redis::cmd("SUNIONSTORE")
        .arg("a{1}")
        .arg("b{2}")
        .query_async(&mut conn)
        .await;
    assert!(crossslot.is_err());

    let after = http_get(admin, "/metrics");
    assert_eq!(after.status, 200);
    assert!(
        after.headers.contains("text/plain; version=0.0.4"),
        "{}",
        after.headers
    );
    let body = after.body;
    let sets = metric(
        &body,
        "slotproxy_commands_total",
        r#"command="set",outcome="ok""#,
    )
    .unwrap();
    assert!(
        sets - sets_before >= 500.0,
        "sets counted: {sets} (before {sets_before})"
    );
    assert_eq!(
        metric(
            &body,
            "slotproxy_commands_total",
            r#"command="sunionstore",outcome="crossslot""#
        ),
        Some(1.0),
        "{body}"
    );
    let set_latency = metric(
        &body,
        "slotproxy_command_duration_seconds_count",
        r#"command="set""#,
    )
    .unwrap();
    assert!(set_latency >= 500.0, "{set_latency}");
    let requests = metric(&body, "slotproxy_node_requests_total", r#"role="primary""#).unwrap();
    assert!(
        requests - requests_before >= 500.0,
        "{requests} vs {requests_before}"
    );
    assert!(metric(&body, "slotproxy_client_received_bytes_total", "").unwrap() > 0.0);
    assert!(metric(&body, "slotproxy_client_sent_bytes_total", "").unwrap() > 0.0);
    assert_eq!(
        metric(&body, "slotproxy_clients_connected", ""),
        Some(1.0),
        "{body}"
    );
    assert!(metric(&body, "slotproxy_clients_accepted_total", "").unwrap() >= 1.0);
    assert_eq!(metric(&body, "slotproxy_slots_covered", ""), Some(16384.0));
    assert_eq!(metric(&body, "slotproxy_ready", ""), Some(1.0));
    assert_eq!(
        metric(&body, "slotproxy_node_up", "").unwrap(),
        6.0,
        "six nodes up: {body}"
    );
    assert!(metric(&body, "slotproxy_slot_map_generation", "").unwrap() >= 1.0);
    assert!(metric(&body, "process_resident_memory_bytes", "").unwrap() > 0.0);
    assert!(metric(&body, "process_open_fds", "").unwrap() > 0.0);
}
