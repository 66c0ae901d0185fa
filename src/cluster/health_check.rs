//! Active health checks: every node of the slot map gets a `PING` and an `INFO replication` on a
//! connection of its own every `health_check_interval`, and what they show is written into the
//! node's `NodeHealth`, which sessions read when they pick a node.
//!
//! - A node that does not answer within `health_check_timeout` (or answers `PING` with an
//!   unexpected error) is down until a check succeeds again. A node that answers `-BUSY` (a
//!   long script), `-LOADING` or `-MASTERDOWN` is up: it answers, so it stays in rotation and
//!   requests sent to it get its own error at once, as a cluster client would. A down replica gets no
//!   reads; requests for a down primary wait (see `session/dispatch.rs`), and the topology is
//!   refreshed at once and then with backoff until the cluster has promoted a replica.
//! - A replica whose `master_link_status` is not `up`, or that is syncing, lags: it gets no reads
//!   until it is in sync again.
//! - The PING's round-trip time feeds a moving average, which `read_policy = "nearest"` uses.
//! - A node whose role is not the one the map gives it (a replica that was promoted, a primary
//!   that was demoted) means the map is stale: a refresh is requested.
//!
//! One supervisor task follows the map and runs one check loop per node; it owns the loops (a
//! `JoinSet`), so stopping it stops them all. The map holds the nodes, not this module: a node
//! that leaves the map loses its loop, and a node that comes back is checked afresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::task::{AbortHandle, JoinSet};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use super::Topology;
use crate::backend::{Node, Probe, ProbeReport};
use crate::config::ClusterConfig;

/// Runs the health checks of every node in `topology`'s map until `shutdown` resolves.
pub async fn run_health_checks(
    topology: Arc<Topology>,
    config: ClusterConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut loops = JoinSet::new();
    // Per node address: the node the loop checks (the same `Arc` as the map's) and its task.
    let mut checked: HashMap<Arc<str>, (Arc<Node>, AbortHandle)> = HashMap::new();
    loop {
        let wanted: Vec<Arc<Node>> = topology
            .slot_map()
            .checked_nodes()
            .map(|(node, _)| node.clone())
            .collect();
        checked.retain(|addr, (node, task)| {
            let keep = wanted
                .iter()
                .any(|w| Arc::ptr_eq(w, node) && w.shared_addr() == addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for node in wanted {
            if checked.contains_key(node.shared_addr()) {
                continue;
            }
            let task = loops.spawn(check_loop(topology.clone(), node.clone(), config.clone()));
            checked.insert(node.shared_addr().clone(), (node, task));
        }
        topology.stats().check_down();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = topology.map_changed() => {}
            _ = tokio::time::sleep(config.health_check_interval()) => {}
            // Reap loops that ended (aborted); the set would otherwise keep their results.
            Some(_) = loops.join_next(), if !loops.is_empty() => {}
        }
    }
    debug!("health checks stop: the proxy is shutting down");
}

/// Checks one node every interval, for as long as the supervisor keeps it.
async fn check_loop(topology: Arc<Topology>, node: Arc<Node>, config: ClusterConfig) {
    let mut probe = Probe::new(node.shared_addr().clone(), topology.pool().config().clone());
    let mut ticks = tokio::time::interval(config.health_check_interval());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = probe.check(config.health_check_timeout()).await;
        let is_primary = topology
            .slot_map()
            .checked_nodes()
            .find(|(n, _)| Arc::ptr_eq(n, &node))
            .map(|(_, primary)| primary);
        let Some(is_primary) = is_primary else {
            // No longer in the map; the supervisor stops this loop.
            continue;
        };
        match outcome {
            Ok(report) => answered(&topology, &node, is_primary, &report),
            Err(e) => {
                if node.health().set_up(false) {
                    let role = if is_primary { "primary" } else { "replica" };
                    warn!(node = node.addr(), role, error = %e, "node failed its health check; out of rotation");
                } else {
                    debug!(node = node.addr(), error = %e, "node still fails its health check");
                }
                if is_primary {
                    // Failure detection not only from a timer: look for a promoted replica now.
                    topology.request_refresh();
                }
            }
        }
    }
}

/// Records a check the node answered.
fn answered(topology: &Topology, node: &Node, is_primary: bool, report: &ProbeReport) {
    topology.stats().node_answered();
    let health = node.health();
    health.record_rtt(report.rtt);
    if health.set_up(true) {
        info!(
            node = node.addr(),
            "node answers its health check again; back in rotation"
        );
    }
    if health.set_answered(report.busy.clone()) {
        if report.busy.is_some() {
            info!(
                node = node.addr(),
                "node busy running a script; it stays in rotation (SCRIPT KILL reaches it)"
            );
        } else {
            info!(node = node.addr(), "node no longer busy");
        }
    }
    // A busy node may refuse `INFO` too: keep what the last full answer said.
    let Some(replication) = report.replication.as_deref() else {
        return;
    };
    let role = field(replication, "role");
    let lagging = !is_primary && replica_lags(replication);
    if health.set_lagging(lagging) {
        if lagging {
            warn!(
                node = node.addr(),
                master_link_status = field(replication, "master_link_status"),
                "replica is not in sync with its primary; no reads until it is"
            );
        } else {
            info!(
                node = node.addr(),
                "replica in sync with its primary again; back in read rotation"
            );
        }
    }
    if is_primary && role == Some("master") {
        node.health()
            .set_replicas(live_replicas(topology, replication));
    }
    let expected = if is_primary { "master" } else { "slave" };
    if role.is_some_and(|r| r != expected) {
        debug!(
            node = node.addr(),
            ?role,
            expected,
            "node changed role; refreshing the map"
        );
        topology.request_refresh();
    }
}

/// The replicas a primary's `INFO replication` lists as `state=online`, less those that fail
/// their own health check (a stalled replica stays listed until `repl-timeout`): the ones that
/// can confirm a write for `ack = replicated`. Fresher than the slot map, which learns of a
/// rejoined replica only at its next refresh.
fn live_replicas(topology: &Topology, replication: &str) -> usize {
    let pool = topology.pool();
    replication
        .lines()
        .filter(|line| line.starts_with("slave") && line.contains(':'))
        .filter_map(|line| {
            let fields = line.split_once(':')?.1;
            let value = |name: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let online = value("state")? == "online";
            online.then_some(format!("{}:{}", value("ip")?, value("port")?))
        })
        .filter(|addr| pool.find(addr).is_none_or(|n| n.health().is_up()))
        .count()
}

/// Whether a replica's `INFO replication` shows it out of sync: its link to the primary is not
/// up, or a full sync is in progress.
fn replica_lags(replication: &str) -> bool {
    field(replication, "role") == Some("slave")
        && (field(replication, "master_link_status") != Some("up")
            || field(replication, "master_sync_in_progress") == Some("1"))
}

/// One `name:value` line of an INFO text.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_replicas_are_counted_from_the_primary_report() {
        let topology = Topology::new(
            Arc::new(crate::backend::BackendPool::new(
                crate::config::BackendConfig::default(),
                Arc::new(tokio::sync::Notify::new()),
            )),
            Vec::new(),
            ClusterConfig::default(),
            Arc::new(tokio::sync::Notify::new()),
        );
        let report = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                      slave0:ip=127.0.0.1,port=7003,state=online,offset=10,lag=0\r\n\
                      slave1:ip=127.0.0.1,port=7004,state=wait_bgsave,offset=0,lag=0\r\n\
                      master_failover_state:no-failover\r\n";
        assert_eq!(live_replicas(&topology, report), 1);
        assert_eq!(
            live_replicas(&topology, "role:master\r\nconnected_slaves:0\r\n"),
            0
        );
    }

    #[test]
    fn a_replica_lags_while_its_link_is_down_or_syncing() {
        let info = |link: &str, syncing: &str| {
            format!(
                "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7000\r\n\
                 master_link_status:{link}\r\nmaster_last_io_seconds_ago:0\r\n\
                 master_sync_in_progress:{syncing}\r\nslave_read_repl_offset:42\r\n"
            )
        };
        assert!(!replica_lags(&info("up", "0")));
        assert!(replica_lags(&info("down", "0")));
        assert!(replica_lags(&info("down", "1")));
        assert!(replica_lags(&info("up", "1")));
        // A node that turned primary does not lag (the map is stale; a refresh fixes that).
        assert!(!replica_lags(
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
        ));
    }

    #[test]
    fn info_fields_are_found_by_whole_name() {
        let text = "role:slave\r\nmaster_link_status:up\r\nmaster_link_down_since_seconds:3\r\n";
        assert_eq!(field(text, "role"), Some("slave"));
        assert_eq!(field(text, "master_link_status"), Some("up"));
        assert_eq!(field(text, "master_link"), None);
    }
}
