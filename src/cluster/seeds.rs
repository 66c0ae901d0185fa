//! Seeds that point back at slotproxy itself are refused: loading the proxy's own one-node
//! view as the cluster would make every command wait on itself. At startup, by address (a seed
//! that resolves to a listen address); at every refresh, by answer (a node whose `CLUSTER
//! NODES` names slotproxy's own run id, which is its node id: see [`super::RunId`]), which also
//! catches slotproxy reached through another address, a NAT or a DNS name.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::error;

/// Time allowed to resolve one seed's name at startup.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// `seeds` without those that resolve to one of `own` (the proxy's listen addresses), each
/// refused with an error line. A listener on `0.0.0.0`/`::` counts as every loopback address
/// on its port.
pub async fn without_self(seeds: Vec<String>, own: &[SocketAddr]) -> Vec<String> {
    let mut kept = Vec::with_capacity(seeds.len());
    for seed in seeds {
        let resolved: Vec<SocketAddr> =
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(seed.as_str()))
                .await
            {
                Ok(Ok(addrs)) => addrs.collect(),
                // Unresolvable now: keep it, the refresher reports it (and DNS may heal).
                _ => Vec::new(),
            };
        match resolved.iter().find(|addr| is_own(**addr, own)) {
            Some(addr) => error!(
                %seed,
                %addr,
                "seed refused: it is slotproxy's own listen address, not a Redis Cluster node; point cluster.seeds (--cluster) at the cluster's nodes"
            ),
            None => kept.push(seed),
        }
    }
    kept
}

/// Whether a `CLUSTER NODES` reply names `run_id` as a node's id: the node that sent it is
/// this slotproxy.
pub fn names_self(cluster_nodes: &str, run_id: &super::RunId) -> bool {
    cluster_nodes
        .lines()
        .any(|line| line.split(' ').next() == Some(run_id.as_str()))
}

/// Logs that the node at `addr` is slotproxy itself (the caller logs it once per address).
pub fn refuse_self(addr: &str) {
    error!(
        node = %addr,
        "seed refused: it answers with slotproxy's own run id (it is this slotproxy, reached through another address), not a Redis Cluster node; point cluster.seeds (--cluster) at the cluster's nodes"
    );
}

fn is_own(addr: SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|listen| {
        listen.port() == addr.port()
            && (listen.ip() == addr.ip()
                || (listen.ip().is_unspecified() && addr.ip().is_loopback()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_reply_naming_the_own_run_id_is_self() {
        let own = crate::cluster::RunId::random();
        let other = crate::cluster::RunId::random();
        let line = |id: &crate::cluster::RunId| {
            format!("{id} 127.0.0.1:6379@6379 myself,master - 0 0 0 connected 0-16383\n")
        };
        assert!(names_self(&line(&own), &own));
        assert!(!names_self(&line(&other), &own));
        assert!(!names_self("", &own));
    }

    #[tokio::test]
    async fn seeds_at_the_listen_address_are_dropped() {
        let own: Vec<SocketAddr> = vec!["127.0.0.1:6379".parse().unwrap()];
        let kept = without_self(
            vec![
                "127.0.0.1:6379".into(),
                "localhost:6379".into(),
                "127.0.0.1:7000".into(),
            ],
            &own,
        )
        .await;
        // localhost may resolve to ::1 only, which is not the listen address.
        assert!(!kept.contains(&"127.0.0.1:6379".to_string()));
        assert!(kept.contains(&"127.0.0.1:7000".to_string()));
        let any: Vec<SocketAddr> = vec!["0.0.0.0:6379".parse().unwrap()];
        assert!(
            without_self(vec!["127.0.0.1:6379".into()], &any)
                .await
                .is_empty()
        );
        assert_eq!(
            without_self(vec!["10.1.2.3:6379".into()], &any).await,
            vec!["10.1.2.3:6379".to_string()]
        );
    }
}
