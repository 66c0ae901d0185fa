//! The admin HTTP listener against a real cluster: each endpoint's answer, its bounds, and the
//! metrics moving under load.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::{NodeAuth, TestCluster, TestProxy, http, http_get, metric, wait_until};
use serde_json::Value;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_cluster_and_config_endpoints_answer() {
    // Nodes that require a password, given to slotproxy in a seed URL: /config must not show it.
    let cluster = TestCluster::start_secured(
        3,
        1,
        NodeAuth {
            password: "s3cret-pw".into(),
            users: Vec::new(),
        },
    );
    let first = cluster.seeds()[0].clone();
    let proxy = TestProxy::start_with_admin(&cluster, |c| {
        c.cluster
            .seeds
            .push(format!("redis://default:s3cret-pw@{first}"));
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
            .any(|s| s == &Value::from(format!("redis://default:<redacted>@{first}"))),
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

/// `[admin] command_metrics = false` spares requests the per-command counting: no command
/// figure appears, while the other figures still move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_metrics_off_counts_no_command_but_keeps_the_rest() {
    let cluster = TestCluster::start(3, 0);
    let proxy = TestProxy::start_with_admin(&cluster, |c| c.admin.command_metrics = false).await;
    let admin = proxy.admin.unwrap();
    let mut conn = proxy.client().await;
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("quiet:{i}"))
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    let body = http_get(admin, "/metrics").body;
    assert_eq!(
        metric(&body, "slotproxy_commands_total", ""),
        None,
        "{body}"
    );
    assert_eq!(
        metric(&body, "slotproxy_command_duration_seconds_count", ""),
        None
    );
    let requests = metric(&body, "slotproxy_node_requests_total", "").unwrap();
    assert!(requests >= 50.0, "{requests}");
    assert!(metric(&body, "slotproxy_client_received_bytes_total", "").unwrap() > 0.0);
}

/// The figures read from state when scraped follow what clients do: pub/sub subscriptions,
/// tracking clients and their keys, and every node's health-check PING histogram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_tracking_and_ping_figures_follow_the_clients() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with_admin(&cluster, |_| {}).await;
    let admin = proxy.admin.unwrap();
    let figure = |name: &'static str, labels: &'static str| {
        move || metric(&http_get(admin, "/metrics").body, name, labels).unwrap_or(-1.0)
    };
    let channels = figure("slotproxy_pubsub_channels", r#"kind="channel""#);
    let patterns = figure("slotproxy_pubsub_channels", r#"kind="pattern""#);
    let subscribers = figure("slotproxy_pubsub_subscribers", "");
    assert_eq!((channels(), patterns(), subscribers()), (0.0, 0.0, 0.0));

    let mut subscriber = proxy.raw_client().await;
    subscriber
        .send(&crate::common::encode_command(&[
            b"SUBSCRIBE",
            b"news",
            b"sport",
        ]))
        .await;
    subscriber.read_reply().await;
    subscriber.read_reply().await;
    subscriber
        .send(&crate::common::encode_command(&[b"PSUBSCRIBE", b"w*"]))
        .await;
    subscriber.read_reply().await;
    wait_until(Duration::from_secs(5), "subscriptions counted", || {
        (channels(), patterns(), subscribers()) == (2.0, 1.0, 1.0)
    });

    let resp3 = figure("slotproxy_clients_by_protocol", r#"protocol="resp3""#);
    let resp2 = figure("slotproxy_clients_by_protocol", r#"protocol="resp2""#);
    assert_eq!(
        (resp2(), resp3()),
        (1.0, 0.0),
        "the subscriber speaks RESP2"
    );
    let mut tracker = proxy.raw_client().await;
    tracker.request(&[b"HELLO", b"3"]).await;
    wait_until(Duration::from_secs(5), "HELLO 3 counted", || {
        (resp2(), resp3()) == (1.0, 1.0)
    });
    assert_eq!(
        tracker.request(&[b"CLIENT", b"TRACKING", b"ON"]).await,
        b"+OK\r\n"
    );
    tracker.request(&[b"GET", b"tracked:1"]).await;
    tracker.request(&[b"GET", b"tracked:2"]).await;
    let tracking_clients = figure("slotproxy_tracking_clients", "");
    let tracking_keys = figure("slotproxy_tracking_keys", "");
    assert_eq!(tracking_clients(), 1.0);
    assert_eq!(tracking_keys(), 2.0);

    subscriber
        .send(&crate::common::encode_command(&[b"UNSUBSCRIBE"]))
        .await;
    subscriber.read_reply().await;
    subscriber.read_reply().await;
    wait_until(Duration::from_secs(5), "unsubscribed channels gone", || {
        (channels(), patterns(), subscribers()) == (0.0, 1.0, 1.0)
    });
    drop(subscriber);
    drop(tracker);
    wait_until(Duration::from_secs(5), "departed clients gone", || {
        subscribers() == 0.0 && tracking_clients() == 0.0
    });

    let body = http_get(admin, "/metrics").body;
    let pings = metric(&body, "slotproxy_node_ping_seconds_count", "").unwrap();
    assert!(pings >= 6.0, "every node has been pinged: {pings}");
    let within_a_second = metric(&body, "slotproxy_node_ping_seconds_bucket", r#"le="1""#).unwrap();
    assert_eq!(within_a_second, pings, "loopback PINGs take under a second");
}

/// The metrics reference in docs/operations.md, generated from what `/metrics` exports.
/// `SLOTPROXY_UPDATE_DOCS=1` rewrites it; otherwise a difference fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reference_in_the_docs_and_the_dashboard_match_the_registry() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start_with_admin(&cluster, |_| {}).await;
    let admin = proxy.admin.unwrap();
    let mut conn = proxy.client().await;
    // One command, so that the per-command families have a series.
    let _: () = redis::cmd("SET")
        .arg("doc")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "node figures", || {
        http_get(admin, "/metrics")
            .body
            .contains("slotproxy_node_rtt_seconds{")
    });
    let body = http_get(admin, "/metrics").body;

    // name -> (type, help, label names)
    let mut families: std::collections::BTreeMap<String, (String, String, Vec<String>)> =
        Default::default();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            families.entry(name.into()).or_default().1 = help.into();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.into()).or_default().0 = kind.into();
        } else if let Some((series, _)) = line.split_once('{') {
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    series
                        .strip_suffix(suffix)
                        .filter(|n| families.contains_key(*n))
                })
                .unwrap_or(series);
            let labels = line[series.len() + 1..].split_once('}').unwrap().0;
            let entry = families.get_mut(name).unwrap();
            for pair in labels.split(',') {
                let label = pair.split_once('=').unwrap().0.to_string();
                if label != "le" && !entry.2.contains(&label) {
                    entry.2.push(label);
                }
            }
        }
    }
    let mut table = String::from("| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n");
    for (name, (kind, help, labels)) in &families {
        table.push_str(&format!(
            "| `{name}` | {kind} | {} | {} |\n",
            labels.join(", "),
            help.replace('|', "\\|")
        ));
    }
    // The Grafana dashboard queries only metrics that exist.
    let dashboard = concat!(env!("CARGO_MANIFEST_DIR"), "/config/grafana/slotproxy.json");
    let dashboard: Value = json(&std::fs::read_to_string(dashboard).unwrap());
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !(word.starts_with("slotproxy_") || word.starts_with("process_")) {
                    continue;
                }
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .filter(|base| families.contains_key(*base))
                    .unwrap_or(word);
                assert!(
                    families.contains_key(base),
                    "dashboard queries unknown metric {word}"
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 20, "{queried}");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- metrics:begin -->\n", "<!-- metrics:end -->");
    let start = doc.find(begin).expect("metrics:begin marker") + begin.len();
    let stop = doc.find(end).expect("metrics:end marker");
    if std::env::var_os("SLOTPROXY_UPDATE_DOCS").is_some() {
        let updated = format!("{}{table}{}", &doc[..start], &doc[stop..]);
        std::fs::write(path, updated).unwrap();
    } else {
        assert_eq!(
            &doc[start..stop],
            table,
            "docs/operations.md is stale: run SLOTPROXY_UPDATE_DOCS=1 cargo nextest run admin_http::metrics_reference"
        );
    }
}
