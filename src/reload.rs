//! Hot reload: SIGHUP and `POST /reload` re-read the configuration and swap in the keys that can
//! change under running clients; the others are reported as needing a restart.
//!
//! A reload is all or nothing: a file that does not parse or validate is refused whole (logged,
//! counted in `slotproxy_config_reloads_total{result="invalid"}`), and the running config stays.
//! Sessions read the reloadable keys from `Shared.live` (one `ArcSwap` load) for each new client
//! or request, so nothing is dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use tracing::{info, warn};

use crate::backend::access::Access;
use crate::config::Config;
use crate::error::ConfigError;
use crate::session::Shared;

/// Keys (dotted paths, or a prefix ending in `.`) that take effect without a restart.
pub const RELOADABLE: &[&str] = &[
    "log",
    "read_policy",
    "drain_delay_ms",
    "shutdown_timeout_ms",
    "session.max_clients",
    "session.max_in_flight",
    "session.max_in_flight_bytes",
    "session.max_bulk_len",
    "session.max_output_buffer_bytes",
    "session.max_client_memory_bytes",
    "session.max_redirects",
    "session.retry_deadline_ms",
    "session.allowed_admin_commands",
    "session.read_your_writes",
    "session.read_your_writes_window_ms",
    "session.pubsub_output_buffer_bytes",
    "session.pubsub_output_buffer_soft_bytes",
    "session.pubsub_output_buffer_soft_ms",
    "auth.password",
    "auth.password_file",
    "auth.users",
    "auth.aclfile",
    "backend.username",
    "backend.password",
    "backend.password_file",
    "backend.tls.ca_file",
    "backend.tls.cert_file",
    "backend.tls.key_file",
    "backend.tls.server_name",
    "tls.cert_file",
    "tls.key_file",
    "tls.client_ca_file",
];

/// Reads the configuration again (the file, with the same flag and environment overrides).
pub type ReadConfig = dyn Fn() -> Result<Config, ConfigError> + Send + Sync;

/// Applies a new log filter (the process owns the subscriber).
pub type SetLogFilter = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// How the process re-reads its configuration.
pub struct Reloader {
    /// Produces the new configuration.
    pub read: Box<ReadConfig>,
    /// Swaps the log filter; `None` leaves logging alone.
    pub set_log: Option<Box<SetLogFilter>>,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Keys whose new value is in effect.
    pub applied: Vec<String>,
    /// Keys that changed in the file but keep their running value until a restart.
    pub needs_restart: Vec<String>,
}

/// Re-reads the configuration and applies it.
///
/// # Errors
/// The reason the new configuration was refused (it stays as it was).
pub fn reload(shared: &Shared, reloader: &Reloader) -> Result<ReloadReport, String> {
    let result = (reloader.read)()
        .map_err(|e| e.to_string())
        .and_then(|next| apply(shared, reloader, next));
    let label = if result.is_ok() { "ok" } else { "invalid" };
    shared
        .metrics
        .config_reloads
        .with_label_values(&[label])
        .inc();
    match &result {
        Ok(report) => info!(
            applied = ?report.applied,
            needs_restart = ?report.needs_restart,
            "config reloaded"
        ),
        Err(reason) => warn!(%reason, "config reload refused; the running config stays"),
    }
    result
}

fn apply(shared: &Shared, reloader: &Reloader, next: Config) -> Result<ReloadReport, String> {
    next.validate().map_err(|e| e.to_string())?;
    let current = shared.live.load_full();
    let before = flatten(&current)?;
    let after = flatten(&next)?;
    let mut report = ReloadReport {
        applied: Vec::new(),
        needs_restart: Vec::new(),
    };
    for (key, value) in &after {
        if before.get(key) == Some(value) {
            continue;
        }
        if is_reloadable(key) {
            report.applied.push(key.clone());
        } else {
            report.needs_restart.push(key.clone());
        }
    }
    // Passwords are written out redacted, so a new one shows in no flattened value.
    for (key, changed) in [
        ("auth.password", current.auth.password != next.auth.password),
        (
            "backend.password",
            current.backend.password != next.backend.password,
        ),
    ] {
        if changed && !report.applied.iter().any(|k| k == key) {
            report.applied.push(key.to_string());
        }
    }
    // Built before anything is applied: users that don't parse refuse the whole reload.
    let users = match current.auth != next.auth {
        true => Some(
            next.auth
                .users(&shared.commands.load())
                .map_err(|e| format!("config section `auth`: {e}"))?,
        ),
        false => None,
    };
    if current.log != next.log
        && let Some(set_log) = &reloader.set_log
    {
        set_log(&next.log).map_err(|e| format!("config field `log`: {e}"))?;
    }
    if let Some(users) = users {
        let _change = shared.acl.change.lock().unwrap_or_else(|e| e.into_inner());
        shared.acl.publish(users);
    }
    // The files were read again: certificates rotated in place take effect too. Connections
    // open now keep what they opened with.
    if next.backend.tls.enabled == current.backend.tls.enabled {
        shared.config.backend.access.set(Access::of(&next.backend));
        if current.backend.username != next.backend.username
            || current.backend.password != next.backend.password
        {
            recheck_migrate(shared);
        }
    }
    // Keys that need a restart keep their running value, so `live` (and `/config`) say what
    // is in effect.
    let merged = merge_reloadable(&current, next);
    shared
        .registry
        .memory()
        .set_limit(merged.session.max_client_memory_bytes);
    shared.live.store(Arc::new(merged));
    Ok(report)
}

/// Asks the nodes again whether the (new) node user may run `MIGRATE`, in a task of its own.
fn recheck_migrate(shared: &Shared) {
    let mut nodes: Vec<String> = shared
        .topology
        .slot_map()
        .node_addrs()
        .into_iter()
        .map(String::from)
        .collect();
    if nodes.is_empty() {
        nodes = shared.config.seed_addrs();
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        // Ends on its own within the connect and request timeouts; it only sets a gauge and logs.
        runtime.spawn(crate::backend::migrate_check::check_and_report(
            nodes,
            shared.config.backend.clone(),
            shared.metrics.node_user_can_migrate.clone(),
        ));
    }
}

/// `current` with the reloadable keys of `next`.
fn merge_reloadable(current: &Config, next: Config) -> Config {
    let mut merged = current.clone();
    merged.log = next.log;
    merged.read_policy = next.read_policy;
    merged.drain_delay_ms = next.drain_delay_ms;
    merged.shutdown_timeout_ms = next.shutdown_timeout_ms;
    let s = next.session;
    let m = &mut merged.session;
    m.max_clients = s.max_clients;
    m.max_in_flight = s.max_in_flight;
    m.max_in_flight_bytes = s.max_in_flight_bytes;
    m.max_bulk_len = s.max_bulk_len;
    m.max_output_buffer_bytes = s.max_output_buffer_bytes;
    m.max_client_memory_bytes = s.max_client_memory_bytes;
    m.max_redirects = s.max_redirects;
    m.retry_deadline_ms = s.retry_deadline_ms;
    m.allowed_admin_commands = s.allowed_admin_commands;
    m.read_your_writes = s.read_your_writes;
    m.read_your_writes_window_ms = s.read_your_writes_window_ms;
    m.pubsub_output_buffer_bytes = s.pubsub_output_buffer_bytes;
    m.pubsub_output_buffer_soft_bytes = s.pubsub_output_buffer_soft_bytes;
    m.pubsub_output_buffer_soft_ms = s.pubsub_output_buffer_soft_ms;
    // Protected mode is decided per listener at accept, from the config the proxy started with.
    let protected_mode = merged.auth.protected_mode;
    merged.auth = next.auth;
    merged.auth.protected_mode = protected_mode;
    let (b, m) = (next.backend, &mut merged.backend);
    m.username = b.username;
    m.password = b.password;
    m.password_file = b.password_file;
    // Client TLS: the files were read again (`load_client_tls`), so new handshakes present
    // the certificate now in them. The listeners themselves need a restart.
    if merged.tls_listen == next.tls_listen {
        merged.tls = next.tls;
    }
    let m = &mut merged.backend;
    if m.tls.enabled == b.tls.enabled {
        m.tls.ca_file = b.tls.ca_file;
        m.tls.cert_file = b.tls.cert_file;
        m.tls.key_file = b.tls.key_file;
        m.tls.server_name = b.tls.server_name;
        m.tls.client = b.tls.client;
    }
    merged
}

fn is_reloadable(key: &str) -> bool {
    RELOADABLE.contains(&key)
}

/// Every leaf of the config as `dotted.key -> value`.
fn flatten(config: &Config) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let value = serde_json::to_value(config).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    flatten_into(String::new(), value, &mut out);
    Ok(out)
}

fn flatten_into(
    prefix: String,
    value: serde_json::Value,
    out: &mut BTreeMap<String, serde_json::Value>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(path, value, out);
            }
        }
        leaf => {
            out.insert(prefix, leaf);
        }
    }
}

/// Reloads on every SIGHUP until `stop` resolves.
pub async fn on_sighup(
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    stop: impl Future<Output = ()>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; reload only through POST /reload");
                return;
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                Some(()) = hangup.recv() => {
                    info!("SIGHUP: reloading the config");
                    let _ = reload(&shared, &reloader);
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (shared, reloader);
        stop.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reloadable_key_exists_and_is_merged() {
        let keys = flatten(&Config::default()).unwrap();
        for key in RELOADABLE {
            assert!(keys.contains_key(*key), "{key} is not a config key");
        }
        // Changing every reloadable key at once: the merged config equals the new one on them.
        let mut next = Config {
            log: "debug".into(),
            read_policy: crate::config::ReadPolicy::Any,
            ..Config::default()
        };
        next.session.max_redirects = 9;
        next.session.allowed_admin_commands = vec!["save".into()];
        next.listen = "127.0.0.1:1".into();
        let merged = merge_reloadable(&Config::default(), next.clone());
        assert_eq!(merged.read_policy, next.read_policy);
        assert_eq!(merged.session, next.session);
        assert_eq!(merged.log, "debug");
        assert_eq!(
            merged.listen,
            Config::default().listen,
            "listen needs a restart"
        );
    }
}
