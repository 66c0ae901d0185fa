//! Figures read from the proxy's state when `/metrics` is scraped: clients, the slot map, every
//! node of it, and the process (RSS, CPU, file descriptors). Nothing here runs per request.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::backend::rtt_histogram::RttBuckets;

use crate::cluster::state;
use crate::session::Shared;

/// Every metric family: the registry's event counters, then the state read now.
pub fn gather(shared: &Shared) -> Vec<MetricFamily> {
    let mut families = shared.metrics.registry().gather();
    families.extend(state_families(shared));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    families
}

/// Renders families in the Prometheus text format.
pub fn encode(families: &[MetricFamily]) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    // Encoding into a Vec fails only on families without metrics, which are skipped.
    let nonempty: Vec<MetricFamily> = families
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .cloned()
        .collect();
    let _ = prometheus::TextEncoder::new().encode(&nonempty, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A family under construction.
struct Family {
    inner: MetricFamily,
    kind: MetricType,
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut inner = MetricFamily::default();
        inner.set_name(name.to_string());
        inner.set_help(help.to_string());
        inner.set_field_type(kind);
        Self { inner, kind }
    }

    fn labelled(labels: &[(&str, &str)]) -> Metric {
        let mut metric = Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name((*name).to_string());
                    pair.set_value((*value).to_string());
                    pair
                })
                .collect(),
        );
        metric
    }

    /// A histogram sample of microsecond buckets, reported in seconds.
    fn histogram(&mut self, labels: &[(&str, &str)], buckets: &RttBuckets) -> &mut Self {
        let mut metric = Self::labelled(labels);
        let mut histogram = Histogram::default();
        histogram.set_sample_count(buckets.count);
        histogram.set_sample_sum(buckets.sum_us as f64 / 1e6);
        histogram.set_bucket(
            buckets
                .cumulative
                .iter()
                .map(|&(bound_us, count)| {
                    let mut bucket = Bucket::default();
                    bucket.set_upper_bound(bound_us as f64 / 1e6);
                    bucket.set_cumulative_count(count);
                    bucket
                })
                .collect(),
        );
        metric.set_histogram(histogram);
        self.inner.mut_metric().push(metric);
        self
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut metric = Self::labelled(labels);
        match self.kind {
            MetricType::COUNTER => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        self.inner.mut_metric().push(metric);
        self
    }

    fn done(self) -> MetricFamily {
        self.inner
    }
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut family = Family::new(name, help, MetricType::GAUGE);
    family.sample(&[], value);
    family.done()
}

fn counter(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut family = Family::new(name, help, MetricType::COUNTER);
    family.sample(&[], value);
    family.done()
}

fn state_families(shared: &Shared) -> Vec<MetricFamily> {
    use std::sync::atomic::Ordering;
    let map = shared.topology.slot_map();
    let stats = shared.topology.stats();
    let draining = *shared.draining.borrow();
    let cluster_ok = state::check(&map).is_ok();
    let mut out = vec![
        gauge(
            "slotproxy_clients_connected",
            "Client connections open now.",
            shared.clients.load(Ordering::Relaxed) as f64,
        ),
        gauge(
            "slotproxy_client_memory_bytes",
            "Bytes all clients hold (replies unread or on their way, input buffers), counted in \
             16 KB steps per client; held to session.max_client_memory_bytes.",
            shared.registry.memory().used() as f64,
        ),
        counter(
            "slotproxy_auth_failures_total",
            "AUTH and HELLO AUTH attempts refused.",
            shared.auth_failures.load(Ordering::Relaxed) as f64,
        ),
        gauge(
            "slotproxy_ready",
            "1 when /readyz answers 200: every slot covered, every primary up, not draining.",
            f64::from(u8::from(cluster_ok && !draining)),
        ),
        gauge(
            "slotproxy_draining",
            "1 once shutdown has begun (SIGTERM/SIGINT).",
            f64::from(u8::from(draining)),
        ),
        gauge(
            "slotproxy_slot_map_generation",
            "Generation of the slot map in use; it counts up with each topology change.",
            map.generation() as f64,
        ),
        gauge(
            "slotproxy_slot_map_age_seconds",
            "Time since the slot map in use was published.",
            stats.map_age().map_or(0.0, |age| age.as_secs_f64()),
        ),
        gauge(
            "slotproxy_slots_covered",
            "Slots (of 16384) the slot map gives a node.",
            map.covered_slots() as f64,
        ),
        counter(
            "slotproxy_failovers_total",
            "Slot ranges seen moving to another primary (failovers and resharding).",
            stats.failovers() as f64,
        ),
    ];
    let (ok, failed) = stats.refreshes();
    let mut refreshes = Family::new(
        "slotproxy_slot_map_refreshes_total",
        "Slot map refreshes, by result: ok (a node answered) or failed.",
        MetricType::COUNTER,
    );
    refreshes
        .sample(&[("result", "ok")], ok as f64)
        .sample(&[("result", "failed")], failed as f64);
    out.push(refreshes.done());
    let [resp2, resp3] = shared.registry.by_protocol();
    let mut protocols = Family::new(
        "slotproxy_clients_by_protocol",
        "Connected clients by the protocol they speak (resp3 after HELLO 3).",
        MetricType::GAUGE,
    );
    protocols
        .sample(&[("protocol", "resp2")], resp2 as f64)
        .sample(&[("protocol", "resp3")], resp3 as f64);
    out.push(protocols.done());
    let pubsub = shared.hub.counts();
    let mut held = Family::new(
        "slotproxy_pubsub_channels",
        "Channels, patterns and shard channels clients are subscribed to, by kind.",
        MetricType::GAUGE,
    );
    held.sample(&[("kind", "channel")], pubsub.channels as f64)
        .sample(&[("kind", "pattern")], pubsub.patterns as f64)
        .sample(&[("kind", "shard")], pubsub.shard_channels as f64);
    out.push(held.done());
    out.push(gauge(
        "slotproxy_pubsub_subscribers",
        "Clients subscribed to at least one channel, pattern or shard channel.",
        pubsub.subscribers as f64,
    ));
    let (tracking_clients, tracked_keys) = shared.tracker.counts();
    out.push(gauge(
        "slotproxy_tracking_clients",
        "Clients with CLIENT TRACKING on.",
        tracking_clients as f64,
    ));
    out.push(gauge(
        "slotproxy_tracking_keys",
        "Keys remembered for default-mode tracking clients (as redis' tracking_total_keys).",
        tracked_keys as f64,
    ));
    out.extend(node_families(&map));
    out.extend(process_families());
    out
}

fn node_families(map: &crate::cluster::SlotMap) -> Vec<MetricFamily> {
    let mut up = Family::new(
        "slotproxy_node_up",
        "1 when the node answers its health checks.",
        MetricType::GAUGE,
    );
    let mut rtt = Family::new(
        "slotproxy_node_rtt_seconds",
        "Smoothed health-check PING round-trip time of the node.",
        MetricType::GAUGE,
    );
    let mut pings = Family::new(
        "slotproxy_node_ping_seconds",
        "Health-check PING round-trip times of the node.",
        MetricType::HISTOGRAM,
    );
    let mut requests = Family::new(
        "slotproxy_node_requests_total",
        "Requests written to the node.",
        MetricType::COUNTER,
    );
    let mut in_flight = Family::new(
        "slotproxy_node_in_flight",
        "Requests written to the node and not answered yet.",
        MetricType::GAUGE,
    );
    let mut connections = Family::new(
        "slotproxy_node_connections",
        "Connections to the node open now.",
        MetricType::GAUGE,
    );
    let mut connects = Family::new(
        "slotproxy_node_connects_total",
        "Connections to the node established (the first one and every reconnect).",
        MetricType::COUNTER,
    );
    let mut failures = Family::new(
        "slotproxy_node_connection_failures_total",
        "Connects to the node that failed, and connections that broke or timed out.",
        MetricType::COUNTER,
    );
    for (node, primary) in map.checked_nodes() {
        let role = if primary { "primary" } else { "replica" };
        let labels = [("node", node.addr()), ("role", role)];
        let health = node.health().snapshot();
        let stats = node.stats();
        up.sample(&labels, f64::from(u8::from(health.up)));
        if let Some(us) = health.rtt_us {
            rtt.sample(&labels, us as f64 / 1e6);
        }
        pings.histogram(&labels, &node.health().rtt_buckets());
        requests.sample(&labels, stats.requests as f64);
        in_flight.sample(&labels, stats.in_flight as f64);
        connections.sample(&labels, stats.open as f64);
        connects.sample(&labels, stats.connects as f64);
        failures.sample(&labels, stats.failures as f64);
    }
    [
        up,
        rtt,
        pings,
        requests,
        in_flight,
        connections,
        connects,
        failures,
    ]
    .into_iter()
    .map(Family::done)
    .collect()
}

/// Linux clock ticks per second for `/proc/self/stat` (USER_HZ, 100 on every mainstream
/// architecture).
const CLOCK_TICKS: f64 = 100.0;

fn process_families() -> Vec<MetricFamily> {
    let mut out = Vec::new();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kb) = status.lines().find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
    {
        out.push(gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            kb * 1024.0,
        ));
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, after_name)) = stat.rsplit_once(')')
    {
        // Fields after the name start at field 3 (state); utime and stime are fields 14, 15.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            out.push(counter(
                "process_cpu_seconds_total",
                "User and system CPU time spent, in seconds.",
                (user + system) / CLOCK_TICKS,
            ));
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push(gauge(
            "process_open_fds",
            "Open file descriptors.",
            fds.count() as f64,
        ));
    }
    out
}
