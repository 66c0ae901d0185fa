//! The configuration tree: one serde struct per component, loaded from TOML.
//!
//! Keys carry their unit (`_ms`); the accessors turn them into `Duration`s. `validate()` runs once
//! at startup and names the bad field. This module knows nothing about sockets or slots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::secret::Secret;

/// Environment variable holding the password slotproxy uses towards the nodes; it wins over
/// `backend.password` and `backend.password_file`.
pub const BACKEND_PASSWORD_ENV: &str = "SLOTPROXY_BACKEND_PASSWORD";

mod process;
pub mod redact;
mod tls;

pub use process::{AdminConfig, LogFormat};
pub use tls::ClientTlsConfig;

/// The whole configuration of one slotproxy process.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the proxy listens on for plain-text clients, `host:port`; `""` turns it off
    /// (with `tls_listen` set), like redis' `port 0`.
    pub listen: String,
    /// Address the proxy listens on for TLS clients, `host:port` (like redis' `tls-port`);
    /// `""` (the default) turns it off. Needs `[tls] cert_file` and `key_file`.
    pub tls_listen: String,
    /// Log filter in `tracing` env-filter syntax (`info`, `slotproxy=debug`).
    pub log: String,
    /// Where read-only commands go: `primary`, `prefer-replica`, `replica`, `any` or `nearest`.
    pub read_policy: ReadPolicy,
    /// Where the cluster is and how its topology is followed.
    pub cluster: ClusterConfig,
    /// Connections from the proxy to the cluster's nodes.
    pub backend: BackendConfig,
    /// Limits and retry rules for each client connection.
    pub session: SessionConfig,
    /// Log line format: `text` (coloured only on a terminal) or `json` (one object per line).
    pub log_format: LogFormat,
    /// Tokio worker threads; 0 means one per core available to the process (cgroup-aware).
    pub worker_threads: usize,
    /// On SIGTERM/SIGINT, how long `/readyz` says 503 before the listener closes, so load
    /// balancers stop sending new clients first.
    pub drain_delay_ms: u64,
    /// After the listener closed, how long clients get to receive the replies they are owed
    /// before the remaining connections are closed.
    pub shutdown_timeout_ms: u64,
    /// The HTTP admin listener: metrics, health, readiness, reload.
    pub admin: AdminConfig,
    /// Who may use slotproxy: passwords, ACL users, protected mode.
    pub auth: crate::auth::config::AuthConfig,
    /// TLS for clients on `tls_listen`: certificate, key, and the CA for client certificates.
    pub tls: ClientTlsConfig,
}

/// Which nodes serve commands the command table flags read-only.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPolicy {
    /// Every command goes to the slot's primary (always up to date).
    Primary,
    /// Reads go to a replica of the slot when one is up, else to the primary.
    PreferReplica,
    /// Reads go only to replicas; with none up, they fail with an error saying so.
    Replica,
    /// Reads are spread over the primary and its replicas.
    Any,
    /// Reads go to the node of the shard (primary or replica) with the lowest round-trip time
    /// measured by the health checks; nodes within a small margin of it share the reads.
    Nearest,
}

impl std::str::FromStr for ReadPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "primary" => Ok(ReadPolicy::Primary),
            "prefer-replica" => Ok(ReadPolicy::PreferReplica),
            "replica" => Ok(ReadPolicy::Replica),
            "any" => Ok(ReadPolicy::Any),
            "nearest" => Ok(ReadPolicy::Nearest),
            other => Err(format!(
                "'{other}' is not a read policy (primary, prefer-replica, replica, any, nearest)"
            )),
        }
    }
}

/// Where the cluster is and how often its slot map is refreshed.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Seed nodes, `host:port` or `redis://host:port`; any reachable one is enough. A seed URL
    /// may carry credentials (`redis://user:password@host:port`): they are used towards every
    /// node when `backend.password` (and `backend.username`) are not set otherwise.
    pub seeds: Vec<String>,
    /// Period of the background slot-map refresh.
    pub refresh_interval_ms: u64,
    /// Minimum gap between two refreshes triggered by MOVED or a failed node (rate limit).
    pub min_refresh_gap_ms: u64,
    /// How often every node of the map gets a health check (`PING`, and `INFO replication`).
    pub health_check_interval_ms: u64,
    /// A health check unanswered for this long marks the node down.
    pub health_check_timeout_ms: u64,
}

/// Connections from the proxy to each node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Shared, pipelined connections per node, per worker thread and protocol version; the
    /// worker's clients are spread over them. One fills each write to the node best.
    pub connections_per_node: usize,
    /// Requests waiting for one node connection to take them; past it a request is not queued
    /// but retried with backoff, then answered `TRYAGAIN` (a node that reads slower than
    /// clients send slows its own clients, and the proxy's memory stays bounded).
    pub max_queued_requests: usize,
    /// Time allowed for TCP connect plus the connection's handshake.
    pub connect_timeout_ms: u64,
    /// A request unanswered for this long fails its connection (all of its in-flight requests).
    pub request_timeout_ms: u64,
    /// First delay before reconnecting to a node whose connect failed; doubles up to the max.
    pub reconnect_backoff_min_ms: u64,
    /// Upper bound of the reconnect delay.
    pub reconnect_backoff_max_ms: u64,
    /// When a write is acknowledged: `primary` (as soon as the primary applied it) or
    /// `replicated` (once `WAIT 1` confirms a replica has it too).
    pub ack: Ack,
    /// With `ack = replicated`, how long the batch's `WAIT` may take before its writes get a
    /// NOREPLICAS error.
    pub ack_timeout_ms: u64,
    /// ACL user slotproxy authenticates as on every node; unset means the `default` user (or
    /// the user of a seed URL `redis://user:password@host:port`).
    pub username: Option<String>,
    /// Password for the nodes (`requirepass`, or the ACL user's). Discouraged in a file that
    /// others can read: prefer `password_file` or the `SLOTPROXY_BACKEND_PASSWORD` environment
    /// variable, which wins over both.
    pub password: Option<Secret>,
    /// File whose content (one trailing newline removed) is the password for the nodes; read
    /// once at startup.
    pub password_file: Option<PathBuf>,
    /// TLS towards the nodes (`tls-port`, `tls-cluster yes`).
    pub tls: BackendTlsConfig,
    /// The credentials and TLS client node connections open with, shared by every copy of this
    /// config and replaced by a reload (not a config key; see [`Config::publish_backend_access`]).
    #[serde(skip)]
    pub access: crate::backend::access::AccessCell,
}

/// TLS towards the nodes: every node connection is TLS when `enabled`, verified against `ca_file`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackendTlsConfig {
    /// Connect to the nodes over TLS (the seeds and `CLUSTER SHARDS` name their TLS ports).
    pub enabled: bool,
    /// PEM file of the CA certificate(s) the nodes' certificates must chain to (like redis'
    /// `tls-ca-cert-file`); required when `enabled`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for nodes that require one (`tls-auth-clients yes`, redis'
    /// default); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name the nodes' certificates are checked against; unset = the host of each node's
    /// address (an IP address must then be in the certificate's subjectAltName).
    pub server_name: Option<String>,
    /// The TLS client configuration built from the files at startup (not a config key).
    #[serde(skip)]
    pub client: Option<crate::backend::tls::TlsClient>,
}

/// When the proxy acknowledges a write to the client.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Ack {
    /// When the primary has applied it (Redis' own behaviour; replication is asynchronous).
    Primary,
    /// When at least one replica has it too (one `WAIT 1` per batch of writes to a node).
    Replicated,
}

impl std::str::FromStr for Ack {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "primary" => Ok(Ack::Primary),
            "replicated" => Ok(Ack::Replicated),
            other => Err(format!(
                "'{other}' is not an ack mode (primary, replicated)"
            )),
        }
    }
}

/// Limits and retry rules for each client connection.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Maximum number of connected clients; more are refused with an error.
    pub max_clients: usize,
    /// Requests of one client that may be in flight at once; reading pauses beyond it.
    pub max_in_flight: usize,
    /// Request and reply bytes of one client on their way through the node connections it
    /// shares with other clients, estimated from its recent requests and replies: while they
    /// are large, fewer than `max_in_flight` requests are in flight, so one client's large
    /// values hold up the others' replies by about this much.
    pub max_in_flight_bytes: usize,
    /// Largest bulk string a client may send, like redis' `proto-max-bulk-len`.
    pub max_bulk_len: usize,
    /// Reply bytes a client may leave unread (buffered, plus on their way from the nodes);
    /// beyond it the client is disconnected, like redis' `client-output-buffer-limit`.
    pub max_output_buffer_bytes: usize,
    /// Bytes all clients together may hold in slotproxy (replies unread or on their way, input
    /// buffers); beyond it the clients holding the most are disconnected first, like redis 7's
    /// `maxmemory-clients`. 0 turns it off.
    pub max_client_memory_bytes: usize,
    /// MOVED/ASK redirections followed for one request before giving up.
    pub max_redirects: u32,
    /// How long TRYAGAIN, CLUSTERDOWN and unreachable nodes are retried for one request.
    pub retry_deadline_ms: u64,
    /// Administrative commands clients may send (refused otherwise), named as in
    /// [`ALLOWABLE_ADMIN_COMMANDS`], e.g. `["config set", "bgsave"]`.
    pub allowed_admin_commands: Vec<String>,
    /// Keys remembered for `CLIENT TRACKING` clients (like redis' `tracking-table-max-keys`);
    /// beyond it the oldest are invalidated and forgotten.
    pub tracking_max_keys: usize,
    /// `CLIENT TRACKING ... BCAST PREFIX` prefixes one client may hold; more are refused.
    pub tracking_max_prefixes: usize,
    /// Output backlog (messages queued plus replies not yet written) past which a client with
    /// subscriptions is disconnected, like redis' `client-output-buffer-limit pubsub` hard
    /// limit; 0 disables it.
    pub pubsub_output_buffer_bytes: usize,
    /// Backlog a client with subscriptions may keep for at most `pubsub_output_buffer_soft_ms`
    /// before it is disconnected (the soft limit); 0 disables it.
    pub pubsub_output_buffer_soft_bytes: usize,
    /// How long a client may stay above `pubsub_output_buffer_soft_bytes`.
    pub pubsub_output_buffer_soft_ms: u64,
    /// Reads of a slot this client wrote within `read_your_writes_window_ms` go to the primary,
    /// whatever the read policy says (only matters when reads may go to replicas).
    pub read_your_writes: bool,
    /// How long after a write its slot's reads stay on the primary, with `read_your_writes`.
    pub read_your_writes_window_ms: u64,
    /// Transactions whose keys span slots: `refuse` (as a cluster node does) or `per-slot`.
    pub cross_slot_transactions: CrossSlotTransactions,
}

/// The administrative commands `session.allowed_admin_commands` may allow, and what each does
/// when allowed: `CONFIG SET|RESETSTAT|REWRITE`, `SAVE`, `BGSAVE`, `BGREWRITEAOF` and `DEBUG`
/// go to every node of the cluster (replicas too, so a promoted replica behaves alike; `CONFIG
/// SET` of paths, passwords, client limits and announced addresses is refused even then);
/// `REPLICAOF`/`SLAVEOF` go to one primary (which refuses them in cluster mode); `SHUTDOWN`
/// stops slotproxy itself, never a node; `MONITOR` streams what slotproxy's clients send; `MIGRATE` is
/// routed by its key and makes that node connect to the host and port the client names.
pub const ALLOWABLE_ADMIN_COMMANDS: &[&str] = &[
    "config|set",
    "config|resetstat",
    "config|rewrite",
    "save",
    "bgsave",
    "bgrewriteaof",
    "debug",
    "replicaof",
    "slaveof",
    "shutdown",
    "monitor",
    "migrate",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6379".to_string(),
            tls_listen: String::new(),
            log: "info".to_string(),
            read_policy: ReadPolicy::Primary,
            cluster: ClusterConfig::default(),
            backend: BackendConfig::default(),
            session: SessionConfig::default(),
            log_format: LogFormat::Text,
            worker_threads: 0,
            drain_delay_ms: 5_000,
            shutdown_timeout_ms: 10_000,
            admin: AdminConfig::default(),
            auth: crate::auth::config::AuthConfig::default(),
            tls: ClientTlsConfig::default(),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            seeds: vec!["127.0.0.1:16379".to_string()],
            refresh_interval_ms: 10_000,
            min_refresh_gap_ms: 100,
            health_check_interval_ms: 1_000,
            health_check_timeout_ms: 1_000,
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            connections_per_node: 1,
            max_queued_requests: 65_536,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
            reconnect_backoff_min_ms: 50,
            reconnect_backoff_max_ms: 2_000,
            ack: Ack::Primary,
            ack_timeout_ms: 1_000,
            username: None,
            password: None,
            password_file: None,
            tls: BackendTlsConfig::default(),
            access: Default::default(),
        }
    }
}

/// What a transaction whose commands' keys span slots does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CrossSlotTransactions {
    /// The command that leaves the transaction's slot gets `-CROSSSLOT` and `EXEC` aborts, as a
    /// cluster node would (the error names hash tags and the `per-slot` option).
    Refuse,
    /// `EXEC` runs each slot's commands as one `MULTI`/`EXEC` on that slot's node, in parallel,
    /// and answers one reply in the client's order: atomic per slot, not across slots.
    PerSlot,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_in_flight: 1_024,
            max_in_flight_bytes: 1024 * 1024,
            max_bulk_len: 512 * 1024 * 1024,
            max_output_buffer_bytes: 64 * 1024 * 1024,
            max_client_memory_bytes: 1024 * 1024 * 1024,
            max_redirects: 5,
            retry_deadline_ms: 5_000,
            allowed_admin_commands: Vec::new(),
            tracking_max_keys: 1_000_000,
            tracking_max_prefixes: 10_000,
            pubsub_output_buffer_bytes: 32 * 1024 * 1024,
            pubsub_output_buffer_soft_bytes: 8 * 1024 * 1024,
            pubsub_output_buffer_soft_ms: 60_000,
            read_your_writes: false,
            read_your_writes_window_ms: 1_000,
            cross_slot_transactions: CrossSlotTransactions::Refuse,
        }
    }
}

impl SessionConfig {
    /// Whether clients may send the admin command `name` (a table name: `config|set`, `save`).
    pub fn allows_admin(&self, name: &str) -> bool {
        self.allowed_admin_commands
            .iter()
            .any(|allowed| admin_command_key(allowed) == name)
    }
}

/// `"CONFIG SET"` or `"config|set"` -> `"config|set"`.
fn admin_command_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join("|")
        .to_ascii_lowercase()
}

impl Config {
    /// Parses a TOML document; unknown keys are errors.
    ///
    /// # Errors
    /// `ConfigError::Parse` naming the offending key or line.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(one_line(&e.to_string())))
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// `ConfigError::Read` if the file can't be read, `ConfigError::Parse` if it is not valid.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks every field once, at startup.
    ///
    /// # Errors
    /// `ConfigError::Invalid` naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid { field, reason };
        self.validate_listen()?;
        self.admin.validate()?;
        if self.cluster.seeds.is_empty() {
            return Err(invalid(
                "cluster.seeds",
                "at least one seed node is required".into(),
            ));
        }
        for seed in &self.cluster.seeds {
            parse_node_addr(seed).map_err(|reason| invalid("cluster.seeds", reason))?;
        }
        let positive = [
            (
                "cluster.refresh_interval_ms",
                self.cluster.refresh_interval_ms,
            ),
            (
                "cluster.health_check_interval_ms",
                self.cluster.health_check_interval_ms,
            ),
            (
                "cluster.health_check_timeout_ms",
                self.cluster.health_check_timeout_ms,
            ),
            (
                "session.read_your_writes_window_ms",
                self.session.read_your_writes_window_ms,
            ),
            (
                "backend.connections_per_node",
                self.backend.connections_per_node as u64,
            ),
            (
                "backend.max_queued_requests",
                self.backend.max_queued_requests as u64,
            ),
            (
                "backend.connect_timeout_ms",
                self.backend.connect_timeout_ms,
            ),
            (
                "backend.request_timeout_ms",
                self.backend.request_timeout_ms,
            ),
            (
                "backend.reconnect_backoff_min_ms",
                self.backend.reconnect_backoff_min_ms,
            ),
            ("session.max_clients", self.session.max_clients as u64),
            ("session.max_in_flight", self.session.max_in_flight as u64),
            (
                "session.max_in_flight_bytes",
                self.session.max_in_flight_bytes as u64,
            ),
            ("session.max_bulk_len", self.session.max_bulk_len as u64),
            (
                "session.tracking_max_keys",
                self.session.tracking_max_keys as u64,
            ),
            (
                "session.tracking_max_prefixes",
                self.session.tracking_max_prefixes as u64,
            ),
            (
                "session.max_output_buffer_bytes",
                self.session.max_output_buffer_bytes as u64,
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0".into()));
            }
        }
        for name in &self.session.allowed_admin_commands {
            if !ALLOWABLE_ADMIN_COMMANDS.contains(&admin_command_key(name).as_str()) {
                return Err(invalid(
                    "session.allowed_admin_commands",
                    format!(
                        "'{name}' is not an admin command slotproxy can allow (one of: {})",
                        ALLOWABLE_ADMIN_COMMANDS
                            .iter()
                            .map(|c| c.replace('|', " "))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if self.backend.connections_per_node > 64 {
            return Err(invalid(
                "backend.connections_per_node",
                "must be at most 64".into(),
            ));
        }
        if self.backend.ack == Ack::Replicated
            && self.backend.ack_timeout_ms >= self.backend.request_timeout_ms
        {
            return Err(invalid(
                "backend.ack_timeout_ms",
                "must be below backend.request_timeout_ms (the WAIT shares the connection)".into(),
            ));
        }
        if self.backend.password.is_some() && self.backend.password_file.is_some() {
            return Err(invalid(
                "backend.password_file",
                "set either backend.password or backend.password_file, not both".into(),
            ));
        }
        let tls = &self.backend.tls;
        if tls.enabled && tls.ca_file.is_none() {
            return Err(invalid(
                "backend.tls.ca_file",
                "required when backend.tls.enabled".into(),
            ));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "backend.tls.key_file",
                "backend.tls.cert_file and key_file go together".into(),
            ));
        }
        if self.backend.reconnect_backoff_max_ms < self.backend.reconnect_backoff_min_ms {
            return Err(invalid(
                "backend.reconnect_backoff_max_ms",
                "must be at least reconnect_backoff_min_ms".into(),
            ));
        }
        Ok(())
    }

    /// Settles the credentials slotproxy uses towards the nodes, once at startup: the
    /// `SLOTPROXY_BACKEND_PASSWORD` environment variable, else `backend.password_file` (read
    /// now), else `backend.password`, else the credentials of the first seed URL that has some.
    /// A seed URL's user is used when `backend.username` is unset. Afterwards `backend.password`
    /// holds the password and `backend.password_file` is cleared, so calling it again changes
    /// nothing.
    ///
    /// # Errors
    /// `ConfigError::Invalid` for `backend.password_file` when the file can't be read.
    pub fn resolve_backend_credentials(&mut self) -> Result<(), ConfigError> {
        let backend = &mut self.backend;
        if let Some(path) = backend.password_file.take() {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                field: "backend.password_file",
                reason: format!("read {}: {e}", path.display()),
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            backend.password = Some(Secret::new(text));
        }
        if let Some(password) = std::env::var_os(BACKEND_PASSWORD_ENV) {
            backend.password = Some(Secret::new(password.to_string_lossy()));
        }
        if let Some((user, password)) = self.cluster.seeds.iter().find_map(|s| seed_credentials(s))
        {
            if backend.password.is_none() {
                backend.password = Some(password);
            }
            if backend.username.is_none() {
                backend.username = user;
            }
        }
        Ok(())
    }

    /// Makes the settled credentials and TLS client (see `resolve_backend_credentials` and
    /// `load_backend_tls`) the ones node connections open with.
    pub fn publish_backend_access(&self) {
        self.backend
            .access
            .set(crate::backend::access::Access::of(&self.backend));
    }

    /// Builds the TLS client of `[backend.tls]` from its files, once at startup (a no-op when
    /// TLS is off or the client is already built).
    ///
    /// # Errors
    /// `ConfigError::Invalid` naming the field and the file that can't be used.
    pub fn load_backend_tls(&mut self) -> Result<(), ConfigError> {
        let tls = &mut self.backend.tls;
        if tls.enabled && tls.client.is_none() {
            tls.client = Some(crate::backend::tls::TlsClient::load(tls)?);
        }
        Ok(())
    }

    /// Seed node addresses with any `redis://` scheme removed.
    pub fn seed_addrs(&self) -> Vec<String> {
        self.cluster
            .seeds
            .iter()
            .filter_map(|s| parse_node_addr(s).ok())
            .collect()
    }
}

impl ClusterConfig {
    /// Period of the background refresh.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_interval_ms)
    }

    /// Minimum gap between two triggered refreshes.
    pub fn min_refresh_gap(&self) -> Duration {
        Duration::from_millis(self.min_refresh_gap_ms)
    }

    /// Period of each node's health check.
    pub fn health_check_interval(&self) -> Duration {
        Duration::from_millis(self.health_check_interval_ms)
    }

    /// Longest wait for a health check's replies.
    pub fn health_check_timeout(&self) -> Duration {
        Duration::from_millis(self.health_check_timeout_ms)
    }
}

impl BackendConfig {
    /// Connect plus handshake timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// How long a request may stay unanswered before its connection is failed.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// First reconnect delay.
    pub fn reconnect_backoff_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_backoff_min_ms)
    }

    /// Largest reconnect delay.
    pub fn reconnect_backoff_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_backoff_max_ms)
    }
}

impl SessionConfig {
    /// Deadline for retrying TRYAGAIN, CLUSTERDOWN and unreachable nodes.
    pub fn retry_deadline(&self) -> Duration {
        Duration::from_millis(self.retry_deadline_ms)
    }

    /// The output limits of a client with subscriptions.
    pub fn pubsub_limits(&self) -> crate::inbox::Limits {
        crate::inbox::Limits {
            hard_bytes: self.pubsub_output_buffer_bytes,
            soft_bytes: self.pubsub_output_buffer_soft_bytes,
            soft_time: Duration::from_millis(self.pubsub_output_buffer_soft_ms),
        }
    }

    /// How long a written slot's reads stay on the primary (`read_your_writes`).
    pub fn read_your_writes_window(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_window_ms)
    }
}

/// Turns `host:port` or `redis://host:port[/db]` into `host:port`.
///
/// # Errors
/// A reason string when the address has no port or a scheme other than `redis://`.
pub fn parse_node_addr(text: &str) -> Result<String, String> {
    let rest = match text.split_once("://") {
        Some(("redis", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "'{}': unsupported scheme '{scheme}://'",
                redact_seed(text)
            ));
        }
        None => text,
    };
    // Drop any user info and path: `redis://user:pass@host:port/0`.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split('/').next().unwrap_or(rest);
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("'{}' is not host:port", redact_seed(text)));
    }
    Ok(rest.to_string())
}

/// The user (if any) and password in a seed URL `redis://[user]:password@host:port`,
/// percent-decoded.
fn seed_credentials(seed: &str) -> Option<(Option<String>, Secret)> {
    let rest = seed.strip_prefix("redis://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    let user = (!user.is_empty()).then(|| percent_decode(user));
    Some((user, Secret::new(percent_decode(password))))
}

/// `%40` -> `@`; anything that is not a valid escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A seed as it may be logged: any credentials of a `redis://` URL replaced by `<redacted>`.
pub fn redact_seed(seed: &str) -> String {
    match seed.split_once("://") {
        Some((scheme, rest)) if rest.contains('@') => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://<redacted>@{host}")
        }
        _ => seed.to_string(),
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seeds: Vec<String> = self.seeds.iter().map(|s| redact_seed(s)).collect();
        f.debug_struct("ClusterConfig")
            .field("seeds", &seeds)
            .field("refresh_interval_ms", &self.refresh_interval_ms)
            .field("min_refresh_gap_ms", &self.min_refresh_gap_ms)
            .field("health_check_interval_ms", &self.health_check_interval_ms)
            .field("health_check_timeout_ms", &self.health_check_timeout_ms)
            .finish()
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_parses_and_validates() {
        let text = include_str!("../config/slotproxy.toml");
        let config = Config::from_toml(text).expect("sample config parses");
        config.validate().expect("sample config is valid");
        assert_eq!(
            config,
            Config::default(),
            "the sample documents the defaults"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[backend]\nconnections = 3\n").unwrap_err();
        assert!(err.to_string().contains("connections"), "{err}");
    }

    #[test]
    fn zero_is_refused_with_field_name() {
        let mut config = Config::default();
        config.backend.connections_per_node = 0;
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().contains("backend.connections_per_node"),
            "{err}"
        );
    }

    #[test]
    fn admin_commands_are_named_as_redis_or_table_spells_them() {
        let mut config = Config::default();
        config.session.allowed_admin_commands = vec!["CONFIG  SET".into(), "bgsave".into()];
        config.validate().expect("valid names");
        assert!(config.session.allows_admin("config|set"));
        assert!(config.session.allows_admin("bgsave"));
        assert!(!config.session.allows_admin("save"));
        config.session.allowed_admin_commands = vec!["flushall".into()];
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("session.allowed_admin_commands") && err.contains("'flushall'"),
            "{err}"
        );
    }

    #[test]
    fn node_addresses_accept_redis_urls() {
        let cases = [
            ("127.0.0.1:16379", "127.0.0.1:16379"),
            ("redis://127.0.0.1:16379", "127.0.0.1:16379"),
            ("redis://:secret@10.0.0.1:7000/0", "10.0.0.1:7000"),
            ("localhost:7000", "localhost:7000"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_node_addr(input).as_deref(), Ok(want), "{input}");
        }
        for bad in ["127.0.0.1", "rediss://h:1", "h:port", ":6379"] {
            assert!(parse_node_addr(bad).is_err(), "{bad} should be refused");
        }
        for bad in ["redis://u:secret@h", "rediss://u:secret@h:1"] {
            let err = parse_node_addr(bad).unwrap_err();
            assert!(
                !err.contains("secret") && err.contains("<redacted>@h"),
                "{err}"
            );
        }
    }

    #[test]
    fn seed_url_credentials_are_used_and_never_printed() {
        let mut config = Config::default();
        config.cluster.seeds = vec![
            "127.0.0.1:7000".into(),
            "redis://proxy:p%40ss:w@127.0.0.1:7001".into(),
        ];
        config.resolve_backend_credentials().unwrap();
        assert_eq!(config.backend.username.as_deref(), Some("proxy"));
        assert_eq!(
            config.backend.password.as_ref().map(Secret::expose),
            Some("p@ss:w")
        );
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("p%40ss") && !printed.contains("p@ss"),
            "{printed}"
        );
        assert!(
            printed.contains("redis://<redacted>@127.0.0.1:7001"),
            "{printed}"
        );
    }

    #[test]
    fn configured_credentials_win_over_the_seed_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut config = Config::default();
        config.cluster.seeds = vec!["redis://:from-url@127.0.0.1:7001".into()];
        config.backend.password_file = Some(file);
        config.backend.username = Some("slotproxy".into());
        config.validate().unwrap();
        config.resolve_backend_credentials().unwrap();
        assert_eq!(
            config.backend.password.as_ref().map(Secret::expose),
            Some("from-file")
        );
        assert_eq!(config.backend.username.as_deref(), Some("slotproxy"));
        config.backend.password_file = Some(dir.path().join("missing"));
        let err = config
            .resolve_backend_credentials()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backend.password_file") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn password_and_password_file_are_exclusive() {
        let mut config = Config::default();
        config.backend.password = Some(Secret::new("a"));
        config.backend.password_file = Some("/run/secrets/pw".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("backend.password_file"), "{err}");
    }
}
