//! `Metrics`: slotproxy's Prometheus figures, in a registry owned by the proxy (not a global).
//!
//! Two kinds. Event counters the hot path bumps (commands, latency, clients accepted, bytes)
//! live in the registry; each command's handles are created on first use and cached in its
//! row, so a request pays an atomic add or two, never a label lookup by string. Figures that
//! already exist as state elsewhere (connected clients, the slot map, node health, process
//! RSS) are read when `/metrics` is scraped, by [`crate::admin`], and cost nothing per request.
//!
//! Label values come from bounded sets: command names from the command table (anything else
//! is `unknown`), error classes from [`Outcome`], nodes from the cluster's slot map.

pub mod scrape;

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    exponential_buckets,
};

use crate::command::CommandTable;
use crate::protocol::view::{error_code, error_line};

/// How a command ended, as the client saw it: `ok` or the class of its error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any reply that is not an error.
    Ok,
    /// `-MOVED` reached the client (redirects ran out).
    Moved,
    /// `-ASK` reached the client.
    Ask,
    /// `-CROSSSLOT`.
    Crossslot,
    /// `-CLUSTERDOWN`.
    Clusterdown,
    /// `-TRYAGAIN`.
    Tryagain,
    /// A node did not answer in time.
    Timeout,
    /// Refused by the proxy or a node: `-NOPERM`, `-NOAUTH`, `-WRONGPASS`, unsupported
    /// commands, `-READONLY`...
    Refused,
    /// Any other error (`-ERR`, `-WRONGTYPE`...).
    Error,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::Moved,
        Outcome::Ask,
        Outcome::Crossslot,
        Outcome::Clusterdown,
        Outcome::Tryagain,
        Outcome::Timeout,
        Outcome::Refused,
        Outcome::Error,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Moved => "moved",
            Outcome::Ask => "ask",
            Outcome::Crossslot => "crossslot",
            Outcome::Clusterdown => "clusterdown",
            Outcome::Tryagain => "tryagain",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }

    /// Classifies an encoded reply by its first bytes (no parsing beyond the error code).
    pub fn of_reply(reply: &[u8]) -> Outcome {
        let (Some(text), Some(code)) = (error_line(reply), error_code(reply)) else {
            return Outcome::Ok;
        };
        let is = |name: &[u8]| code.eq_ignore_ascii_case(name);
        if is(b"MOVED") {
            Outcome::Moved
        } else if is(b"ASK") {
            Outcome::Ask
        } else if is(b"CROSSSLOT") {
            Outcome::Crossslot
        } else if is(b"CLUSTERDOWN") {
            Outcome::Clusterdown
        } else if is(b"TRYAGAIN") {
            Outcome::Tryagain
        } else if is(b"NOPERM")
            || is(b"NOAUTH")
            || is(b"WRONGPASS")
            || is(b"READONLY")
            || is(b"NOREPLICAS")
        {
            Outcome::Refused
        } else if contains(text, b"timed out") || contains(text, b"timeout") {
            Outcome::Timeout
        } else {
            Outcome::Error
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Label for commands the table does not know (their number is unbounded).
pub const UNKNOWN_COMMAND: &str = "unknown";

/// One command's cached metric handles.
#[derive(Debug)]
pub struct CommandStats {
    name: &'static str,
    outcomes: [OnceLock<IntCounter>; Outcome::ALL.len()],
    duration: OnceLock<Histogram>,
}

/// Every figure slotproxy counts as it goes; see the module doc.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commands_total: IntCounterVec,
    command_duration: HistogramVec,
    /// Per command name (lowercase), the cached handles; sorted by name for binary search.
    commands: Vec<CommandStats>,
    unknown: usize,
    /// Per command table row ([`CommandId`](crate::command::CommandId)), its index in
    /// `commands`; `unknown` for subcommands and rows learned after startup.
    by_row: Vec<usize>,
    /// Clients accepted by the listener.
    pub clients_accepted: IntCounter,
    /// Clients refused (`max_clients` reached).
    pub clients_refused: IntCounter,
    /// Clients disconnected to keep the clients' memory under `max_client_memory_bytes`.
    pub clients_evicted: IntCounter,
    /// 1 when the nodes let slotproxy's node user run `MIGRATE` (scripts can copy keys out of
    /// the cluster), 0 when their ACL refuses it, -1 until a node answered
    /// (`backend::migrate_check`).
    pub node_user_can_migrate: IntGauge,
    /// Bytes read from clients.
    pub client_bytes_received: IntCounter,
    /// Bytes written to clients.
    pub client_bytes_sent: IntCounter,
    /// MOVED redirects the proxy followed.
    pub redirects_moved: IntCounter,
    /// ASK redirects the proxy followed.
    pub redirects_ask: IntCounter,
    /// Requests sent again (after TRYAGAIN, CLUSTERDOWN, an unreachable node, a lost read).
    pub retries: IntCounter,
    /// Config reloads, by result (`ok`, `invalid`).
    pub config_reloads: IntCounterVec,
    /// Client TLS handshakes that failed, by kind (see `server::tls`).
    pub client_tls_handshake_failures: IntCounterVec,
    /// The two latest (time, commands answered) samples for `ops_per_sec`.
    ops_sample: Mutex<((Instant, u64), (Instant, u64))>,
}

/// Shortest period `INFO`'s ops/s is measured over.
const OPS_SAMPLE: std::time::Duration = std::time::Duration::from_secs(1);

impl Metrics {
    /// A registry with every event metric, and a cache row for each command of `table`.
    ///
    /// # Panics
    /// Only if a metric definition here is invalid (a programming error caught by the tests).
    pub fn new(table: &CommandTable) -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid counter definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("valid counter definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let commands_total = counter_vec(
            "slotproxy_commands_total",
            "Commands answered, by command and outcome (ok or the error class the client got).",
            &["command", "outcome"],
        );
        // 50 µs .. ~1.6 s in doublings: a cluster round trip on loopback is ~100 µs.
        let buckets = exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets");
        let command_duration = HistogramVec::new(
            HistogramOpts::new(
                "slotproxy_command_duration_seconds",
                "Time from reading a command to its reply being ready, as the client sees it.",
            )
            .buckets(buckets),
            &["command"],
        )
        .expect("valid histogram definition");
        registry
            .register(Box::new(command_duration.clone()))
            .expect("unique metric name");
        let redirects = counter_vec(
            "slotproxy_redirects_total",
            "MOVED and ASK redirects slotproxy followed for clients, by kind.",
            &["kind"],
        );
        let config_reloads = counter_vec(
            "slotproxy_config_reloads_total",
            "Config reloads (SIGHUP, POST /reload), by result: ok or invalid.",
            &["result"],
        );
        // Both results exist from the start, so an alert on `invalid` has a series to watch.
        for result in ["ok", "invalid"] {
            config_reloads.with_label_values(&[result]);
        }
        let client_tls_handshake_failures = counter_vec(
            "slotproxy_client_tls_handshake_failures_total",
            "Client TLS handshakes on tls_listen that failed, by kind: not_tls, certificate, \
             closed, timeout or other.",
            &["kind"],
        );
        for kind in crate::server::tls::FAILURE_KINDS {
            client_tls_handshake_failures.with_label_values(&[kind]);
        }
        let mut names: Vec<&'static str> = table.iter().map(|spec| spec.name).collect();
        names.push(UNKNOWN_COMMAND);
        names.sort_unstable();
        names.dedup();
        let commands: Vec<CommandStats> = names
            .into_iter()
            .map(|name| CommandStats {
                name,
                outcomes: Default::default(),
                duration: OnceLock::new(),
            })
            .collect();
        let unknown = commands
            .binary_search_by(|c| c.name.cmp(UNKNOWN_COMMAND))
            .expect("unknown row was added");
        let mut by_row = vec![unknown; table.rows()];
        for spec in table.iter() {
            if let Some(index) = by_row.get_mut(usize::from(spec.id.0)) {
                *index = commands
                    .binary_search_by(|c| c.name.cmp(spec.name))
                    .unwrap_or(unknown);
            }
        }
        let node_user_can_migrate = IntGauge::new(
            "slotproxy_node_user_can_migrate",
            "1 when the nodes let slotproxy's node user run MIGRATE (a script sent through \
             slotproxy can copy keys out of the cluster; give it a node ACL user with -migrate), \
             0 when their ACL refuses it, -1 when no node answered the check.",
        )
        .expect("valid gauge definition");
        node_user_can_migrate.set(-1);
        registry
            .register(Box::new(node_user_can_migrate.clone()))
            .expect("unique metric name");
        Self {
            node_user_can_migrate,
            clients_accepted: counter(
                "slotproxy_clients_accepted_total",
                "Client connections accepted.",
            ),
            clients_refused: counter(
                "slotproxy_clients_refused_total",
                "Client connections refused because max_clients was reached.",
            ),
            clients_evicted: counter(
                "slotproxy_clients_evicted_total",
                "Clients disconnected, largest first, because all clients together held more \
                 than session.max_client_memory_bytes (redis' evicted_clients).",
            ),
            client_bytes_received: counter(
                "slotproxy_client_received_bytes_total",
                "Bytes read from clients.",
            ),
            client_bytes_sent: counter(
                "slotproxy_client_sent_bytes_total",
                "Bytes written to clients.",
            ),
            redirects_moved: redirects.with_label_values(&["moved"]),
            redirects_ask: redirects.with_label_values(&["ask"]),
            retries: counter(
                "slotproxy_retries_total",
                "Requests sent again after TRYAGAIN, CLUSTERDOWN, an unreachable node or a lost read.",
            ),
            config_reloads,
            client_tls_handshake_failures,
            ops_sample: Mutex::new(((Instant::now(), 0), (Instant::now(), 0))),
            registry,
            commands_total,
            command_duration,
            commands,
            unknown,
            by_row,
        }
    }

    /// The registry (for `/metrics`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The row index for a command name as the client spelled it (any case); resolve once per
    /// distinct name, then pass the index to [`Metrics::record`].
    pub fn command_index(&self, name: &[u8]) -> usize {
        let mut lower = [0u8; 32];
        if name.len() > lower.len() {
            return self.unknown;
        }
        for (dst, src) in lower.iter_mut().zip(name) {
            *dst = src.to_ascii_lowercase();
        }
        let lower = &lower[..name.len()];
        self.commands
            .binary_search_by(|c| c.name.as_bytes().cmp(lower))
            .unwrap_or(self.unknown)
    }

    /// The row index for a command known by its table row (a policy's
    /// [`metric`](crate::command::Policy::metric)): an array index, no name lookup. `None` and
    /// rows learned after startup are `unknown`.
    pub fn command_row(&self, command: Option<crate::command::CommandId>) -> usize {
        command
            .and_then(|id| self.by_row.get(usize::from(id.0)))
            .copied()
            .unwrap_or(self.unknown)
    }

    /// The command name of a row from [`Metrics::command_row`] (`None` for the row of
    /// unknown commands).
    pub fn command_name(&self, row: usize) -> Option<&'static str> {
        (row != self.unknown)
            .then(|| self.commands.get(row).map(|c| c.name))
            .flatten()
    }

    /// Commands answered since start, over every command and outcome (for `INFO`).
    pub fn commands_answered(&self) -> u64 {
        self.commands
            .iter()
            .flat_map(|c| &c.outcomes)
            .filter_map(OnceLock::get)
            .map(IntCounter::get)
            .sum()
    }

    /// Commands per second since the previous sample at least `OPS_SAMPLE` old (for `INFO`'s
    /// `instantaneous_ops_per_sec`), given the current total.
    pub fn ops_per_sec(&self, total: u64) -> u64 {
        let now = std::time::Instant::now();
        let Ok(mut sample) = self.ops_sample.lock() else {
            return 0;
        };
        let (previous, current) = &mut *sample;
        if now.duration_since(current.0) >= OPS_SAMPLE {
            *previous = *current;
            *current = (now, total);
        }
        let seconds = now.duration_since(previous.0).as_secs_f64();
        if seconds <= 0.0 {
            return 0;
        }
        (total.saturating_sub(previous.1) as f64 / seconds).round() as u64
    }

    /// Counts one answered command and its latency.
    pub fn record(&self, command: usize, outcome: Outcome, seconds: f64) {
        let Some(stats) = self.commands.get(command) else {
            return;
        };
        stats.outcomes[outcome.index()]
            .get_or_init(|| {
                self.commands_total
                    .with_label_values(&[stats.name, outcome.label()])
            })
            .inc();
        stats
            .duration
            .get_or_init(|| self.command_duration.with_label_values(&[stats.name]))
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_are_classified_by_code() {
        let cases: [(&[u8], Outcome); 10] = [
            (b"+OK\r\n", Outcome::Ok),
            (b"$-1\r\n", Outcome::Ok),
            (b"-MOVED 1 127.0.0.1:7000\r\n", Outcome::Moved),
            (b"-ASK 1 127.0.0.1:7000\r\n", Outcome::Ask),
            (
                b"-CROSSSLOT Keys in request don't hash\r\n",
                Outcome::Crossslot,
            ),
            (b"-CLUSTERDOWN no node answers\r\n", Outcome::Clusterdown),
            (b"-NOPERM no\r\n", Outcome::Refused),
            (b"-ERR node 127.0.0.1:1 timed out\r\n", Outcome::Timeout),
            (b"-WRONGTYPE Operation\r\n", Outcome::Error),
            (b"!9\r\nTRYAGAIN x\r\n", Outcome::Tryagain),
        ];
        for (reply, want) in cases {
            assert_eq!(
                Outcome::of_reply(reply),
                want,
                "{}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn policy_rows_give_the_same_metrics_row_as_the_name() {
        let table = CommandTable::builtin();
        let metrics = Metrics::new(&table);
        for spec in table.iter() {
            for row in std::iter::once(spec).chain(spec.subcommands) {
                let policy = table.policy(row);
                assert_eq!(
                    metrics.command_row(Some(policy.metric)),
                    metrics.command_index(spec.name.as_bytes()),
                    "{}",
                    row.name
                );
                assert_eq!(policy.metric_label, spec.name);
            }
        }
        assert_eq!(metrics.command_row(None), metrics.unknown);
        let learned = crate::command::CommandId(u16::MAX);
        assert_eq!(metrics.command_row(Some(learned)), metrics.unknown);
    }

    #[test]
    fn commands_resolve_to_their_row_in_any_case_and_unknown_otherwise() {
        let metrics = Metrics::new(&CommandTable::builtin());
        let get = metrics.command_index(b"GeT");
        assert_eq!(metrics.commands[get].name, "get");
        for unknown in [&b"nosuchcommand"[..], &[b'x'; 100][..], b""] {
            assert_eq!(metrics.command_index(unknown), metrics.unknown);
        }
        metrics.record(get, Outcome::Ok, 0.001);
        metrics.record(get, Outcome::Moved, 0.002);
        let families = metrics.registry().gather();
        let total = families
            .iter()
            .find(|f| f.name() == "slotproxy_commands_total")
            .expect("commands family");
        assert_eq!(total.get_metric().len(), 2);
    }
}
