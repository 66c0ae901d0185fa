//! The process-level keys: admin listener, log format, threads, drain timings, and how
//! addresses given as `host:port` (hostnames and `[v6]:port` included) are resolved.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Config;
use crate::error::ConfigError;

/// The HTTP admin listener (`/metrics`, `/healthz`, `/readyz`, `/cluster`, `/config`, `/reload`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener, `host:port`; `""` turns it off. Loopback by default: it
    /// can reload the config and shows the topology, so expose it only where that is wanted.
    pub listen: String,
    /// Count every command by name and outcome, with its latency as the client sees it
    /// (`slotproxy_commands_total`, `slotproxy_command_duration_seconds`). Off spares each
    /// request that bookkeeping; every other figure stays. Read at start.
    pub command_metrics: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9379".to_string(),
            command_metrics: true,
        }
    }
}

impl AdminConfig {
    /// Whether the admin listener is on.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The admin addresses to bind (none when off).
    ///
    /// # Errors
    /// `ConfigError::Invalid` for `admin.listen` if it is not `host:port` or does not resolve.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        if !self.enabled() {
            return Ok(Vec::new());
        }
        resolve("admin.listen", &self.listen)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addrs().map(|_| ())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when the output is a terminal and `NO_COLOR` is
    /// unset.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' is not a log format (text, json)")),
        }
    }
}

impl Config {
    /// How long readiness fails before the listener closes on shutdown.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }

    /// How long clients keep their connections after the listener closed on shutdown.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// Worker threads to run: `worker_threads`, or the cores this process may use (which
    /// `available_parallelism` reads from the cgroup CPU quota and affinity mask on Linux).
    pub fn threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Resolves `host:port` (IPv4, `[IPv6]:port` or a hostname) to socket addresses, without
/// duplicates, in resolver order.
pub(super) fn resolve(field: &'static str, text: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { field, reason };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let port_ok = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(invalid(format!(
            "'{text}' is not host:port (IPv6 as [addr]:port)"
        )));
    }
    let resolved = text
        .to_socket_addrs()
        .map_err(|e| invalid(format!("'{text}' does not resolve: {e}")))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(invalid(format!("'{text}' resolves to no address")));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_ipv4_ipv6_and_hostnames() {
        let v4 = resolve("listen", "127.0.0.1:6379").unwrap();
        assert_eq!(v4, vec!["127.0.0.1:6379".parse().unwrap()]);
        let v6 = resolve("listen", "[::1]:6379").unwrap();
        assert_eq!(v6, vec!["[::1]:6379".parse().unwrap()]);
        let host = resolve("listen", "localhost:6379").unwrap();
        assert!(
            host.iter()
                .all(|a| a.ip().is_loopback() && a.port() == 6379),
            "{host:?}"
        );
        for bad in ["not-an-address", "127.0.0.1", "::1:6379x", ":6379"] {
            let err = resolve("listen", bad).unwrap_err().to_string();
            assert!(err.contains("`listen`"), "{bad}: {err}");
        }
    }

    #[test]
    fn admin_listen_empty_is_off() {
        let admin = AdminConfig {
            listen: String::new(),
            ..AdminConfig::default()
        };
        assert!(!admin.enabled());
        assert!(admin.listen_addrs().unwrap().is_empty());
        assert_eq!(
            AdminConfig::default().listen_addrs().unwrap(),
            vec!["127.0.0.1:9379".parse().unwrap()]
        );
    }

    #[test]
    fn threads_default_to_available_cores() {
        let mut config = Config::default();
        assert!(config.threads() >= 1);
        config.worker_threads = 3;
        assert_eq!(config.threads(), 3);
    }
}
