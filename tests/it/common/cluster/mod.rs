//! `TestCluster`: a real Redis Cluster of `redis-server` processes, formed the way `redis-cli
//! --cluster create` does it (`form.rs`), plus the slot-migration (`migration.rs`) and fault
//! (`faults.rs`) steps tests need.
//!
//! Every question about the topology (roles, slot owners) is asked from the nodes at call time,
//! so the answers follow failovers and migrations.

use std::path::Path;
use std::time::{Duration, Instant};

use super::process::{
    NodeAuth, NodeSpec, NodeTls, RedisProcess, TestCa, connect, finish_temp_dir, info_field,
    log_tail, set_password, temp_dir, try_connect,
};
use super::topology::{SLOT_COUNT, ViewEntry, local_hash_slot, parse_cluster_nodes};

mod faults;
mod form;
mod migration;

/// Time allowed for the cluster to form, or for all nodes to agree after a change.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a node's process is running, paused (SIGSTOP) or gone (SIGKILL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Stopped,
    Killed,
}

/// One node of a [`TestCluster`].
#[derive(Debug)]
pub struct TestNode {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The client port; the cluster bus is `port + 10000`.
    pub port: u16,
    /// The TLS client port, in a cluster started with [`TestCluster::start_tls`].
    pub tls_port: Option<u16>,
    /// The cluster node id (40 hex characters), stable for the node's life.
    pub id: String,
    /// The node's log file, worth printing when a test fails.
    pub log: std::path::PathBuf,
    process: Option<RedisProcess>,
    state: NodeState,
}

impl TestNode {
    /// Running, stopped or killed.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// The OS process id while the process exists.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(RedisProcess::pid)
    }

    fn is_running(&self) -> bool {
        self.state == NodeState::Running
    }
}

/// A Redis Cluster of real `redis-server` processes on free ports in a temp dir.
///
/// All processes are SIGKILLed on `Drop`, also when the test panics; the temp dir is removed
/// unless `SLOTPROXY_KEEP_TEST_DIRS` is set.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<TestNode>,
    spec: NodeSpec,
    dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `primaries` primaries with `replicas_per_primary` replicas each and waits until the
    /// cluster is fully formed: `cluster_state:ok` on every node, every node agreeing on the slot
    /// map and the roles, and every replica synced with its primary. Blocking.
    ///
    /// Nodes `0..primaries` are the primaries, in slot order (for 3: 0-5460, 5461-10922,
    /// 10923-16383, as `redis-cli --cluster create` assigns them); replica `k` (node
    /// `primaries + k`) follows primary `k % primaries`.
    ///
    /// # Panics
    /// When `redis-server` is missing, a node does not start, or the cluster does not form in time.
    pub fn start(primaries: usize, replicas_per_primary: usize) -> TestCluster {
        Self::start_with_auth(primaries, replicas_per_primary, None)
    }

    /// Like [`TestCluster::start`], with every node also on a TLS port (`tls-cluster yes`,
    /// `tls-replication yes`, client certificates required as by default), its certificate
    /// signed by `ca`. The harness itself uses the plain ports.
    pub fn start_tls(primaries: usize, replicas_per_primary: usize, ca: &TestCa) -> TestCluster {
        let (cert, key) = ca.issue("node");
        let tls = NodeTls {
            ca: ca.cert.clone(),
            cert,
            key,
        };
        Self::start_spec(primaries, replicas_per_primary, None, Some(tls))
    }

    /// The nodes' TLS addresses, `127.0.0.1:tls_port`, in node order.
    ///
    /// # Panics
    /// When the cluster was not started with [`TestCluster::start_tls`].
    pub fn tls_seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.tls_port.expect("a TLS cluster")))
            .collect()
    }

    /// Like [`TestCluster::start`], for a secured cluster as in the seed document: every node
    /// with `requirepass` and `masterauth` set to `auth.password`, plus `auth.users` as ACL
    /// users. The harness's own connections authenticate as `default`.
    pub fn start_secured(
        primaries: usize,
        replicas_per_primary: usize,
        auth: NodeAuth,
    ) -> TestCluster {
        Self::start_with_auth(primaries, replicas_per_primary, Some(auth))
    }

    fn start_with_auth(
        primaries: usize,
        replicas_per_primary: usize,
        auth: Option<NodeAuth>,
    ) -> TestCluster {
        Self::start_spec(primaries, replicas_per_primary, auth, None)
    }

    fn start_spec(
        primaries: usize,
        replicas_per_primary: usize,
        auth: Option<NodeAuth>,
        tls: Option<NodeTls>,
    ) -> TestCluster {
        assert!(
            (1..=usize::from(SLOT_COUNT)).contains(&primaries),
            "a cluster needs 1..=16384 primaries, not {primaries}"
        );
        super::failure::record_panics();
        let started = Instant::now();
        // Fail here, once, with the install hint, rather than in every start thread.
        super::redis_server_path();
        let dir = temp_dir("slotproxy-cluster-");
        let spec = NodeSpec {
            dir: dir.path().to_path_buf(),
            cluster: true,
            auth,
            tls,
        };
        let count = primaries * (1 + replicas_per_primary);

        // Start all processes at once; a panic in one start drops (kills) the others.
        let processes: Vec<RedisProcess> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..count)
                .map(|_| scope.spawn(|| RedisProcess::start(&spec)))
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            results
                .into_iter()
                .map(|r| r.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });
        let nodes = processes
            .into_iter()
            .map(|process| {
                let addr = format!("127.0.0.1:{}", process.port);
                let id: String = query(&addr, redis::cmd("CLUSTER").arg("MYID"));
                TestNode {
                    port: process.port,
                    tls_port: process.tls_port,
                    log: process.log.clone(),
                    addr,
                    id,
                    process: Some(process),
                    state: NodeState::Running,
                }
            })
            .collect();
        let cluster = TestCluster {
            nodes,
            spec,
            dir: Some(dir),
        };
        cluster.form(primaries, replicas_per_primary);
        eprintln!(
            "TestCluster: {primaries} primaries + {replicas_per_primary} replica(s) each ready in \
             {:?} ({})",
            started.elapsed(),
            cluster.spec.dir.display()
        );
        cluster
    }

    /// `127.0.0.1:port` of every node, in node order.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Changes the `default` user's password (`requirepass` and `masterauth`) on every running
    /// node, as an operator rotating it would; the harness uses the new one from now on.
    /// Connections already authenticated stay so.
    ///
    /// # Panics
    /// When a node refuses the change.
    pub fn rotate_password(&mut self, password: &str) {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let mut conn = connect(&node.addr);
            for name in ["masterauth", "requirepass"] {
                let () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg(name)
                    .arg(password)
                    .query(&mut conn)
                    .unwrap_or_else(|e| panic!("CONFIG SET {name} on {}: {e}", node.addr));
            }
            set_password(&node.addr, Some(password));
        }
        if let Some(auth) = self.spec.auth.as_mut() {
            auth.password = password.to_string();
        }
    }

    /// All nodes, in start order (primaries first, see [`TestCluster::start`]).
    pub fn nodes(&self) -> &[TestNode] {
        &self.nodes
    }

    /// Position of `node` in [`TestCluster::nodes`], for [`TestCluster::kill`] and friends.
    ///
    /// # Panics
    /// When `node` is not part of this cluster.
    pub fn index_of(&self, node: &TestNode) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == node.id)
            .unwrap_or_else(|| panic!("{} is not a node of this cluster", node.addr))
    }

    /// The temp dir holding the nodes' config and log files.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// Running nodes whose current role (asked from each node) is primary.
    pub fn primaries(&self) -> Vec<&TestNode> {
        self.with_role("master")
    }

    /// Running nodes whose current role (asked from each node) is replica.
    pub fn replicas(&self) -> Vec<&TestNode> {
        self.with_role("slave")
    }

    /// The running replica that follows `primary`.
    ///
    /// # Panics
    /// When none does.
    pub fn replica_of(&self, primary: &TestNode) -> &TestNode {
        let port = primary.port.to_string();
        self.replicas()
            .into_iter()
            .find(|r| {
                self.info_field(r, "replication", "master_port")
                    .is_ok_and(|p| p == port)
            })
            .unwrap_or_else(|| panic!("no running replica follows {}", primary.addr))
    }

    /// Waits (up to 5 s) until `replica` serves `key`: a write through the proxy reached it.
    ///
    /// # Panics
    /// When it doesn't within 5 s.
    pub fn wait_replica_has(&self, replica: &TestNode, key: &str) {
        super::wait_until(Duration::from_secs(5), "the replica has the key", || {
            let mut conn = self.conn(replica);
            let _: () = redis::cmd("READONLY").query(&mut conn).unwrap();
            redis::cmd("GET")
                .arg(key)
                .query::<Option<String>>(&mut conn)
                .unwrap()
                .is_some()
        });
    }

    /// How many times `node` has run `command` (`calls=` in its `INFO commandstats`).
    ///
    /// # Panics
    /// When the node can't be asked.
    pub fn command_calls(&self, node: &TestNode, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn(node))
            .unwrap_or_else(|e| panic!("INFO commandstats on {}: {e}", node.addr));
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap_or(0))
    }

    fn with_role(&self, role: &str) -> Vec<&TestNode> {
        self.running()
            .filter(|node| {
                self.info_field(node, "replication", "role")
                    .unwrap_or_else(|e| panic!("role of {}: {e}", node.addr))
                    == role
            })
            .collect()
    }

    /// The current primary of `slot`: the running node that claims it in its own `CLUSTER NODES`
    /// line, or failing that the owner that the first answering node names.
    ///
    /// # Panics
    /// When no running node knows an owner, or the owner is not one of this cluster's nodes.
    pub fn owner_of(&self, slot: u16) -> &TestNode {
        assert!(slot < SLOT_COUNT, "slot {slot} out of range");
        let mut named = None;
        for node in self.running() {
            let Ok(entries) = self.view(node) else {
                continue;
            };
            if entries.iter().any(|e| e.myself() && e.owns(slot)) {
                return node;
            }
            if named.is_none() {
                named = entries.iter().find(|e| e.owns(slot)).map(|e| e.id.clone());
            }
        }
        let id = named.unwrap_or_else(|| panic!("no running node knows an owner of slot {slot}"));
        self.node_by_id(&id)
    }

    /// A new synchronous client connection straight to `node` (10 s read/write timeouts).
    ///
    /// # Panics
    /// When the node can't be reached.
    pub fn conn(&self, node: &TestNode) -> redis::Connection {
        connect(&node.addr)
    }

    /// The hash slot of `key`, computed by a running node (`CLUSTER KEYSLOT`).
    ///
    /// # Panics
    /// When no node is running or the reply is not a slot.
    pub fn keyslot(&self, key: &[u8]) -> u16 {
        let node = self
            .running()
            .next()
            .expect("a running node to ask CLUSTER KEYSLOT");
        query(&node.addr, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
    }

    /// A key `"{prefix}:{n}"` whose slot `node` currently owns.
    ///
    /// # Panics
    /// When `node` owns no slot (a replica) or is not running.
    pub fn key_for_node(&self, node: &TestNode, prefix: &str) -> String {
        let mine = self
            .view(node)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .find(ViewEntry::myself)
            .unwrap_or_else(|| panic!("{} has no myself line in CLUSTER NODES", node.addr));
        assert!(
            !mine.slots.is_empty(),
            "{} owns no slot (is it a replica?)",
            node.addr
        );
        (0u64..)
            .map(|n| format!("{prefix}:{n}"))
            .find(|key| mine.owns(self.keyslot(key.as_bytes())))
            .expect("some key hashes to a slot of the node")
    }

    /// A key `"{prefix}:{n}"` that hashes to `slot`, found locally (CRC16) and confirmed by a node.
    ///
    /// Put it in a hash tag (`{key}:field`) to get more keys in the same slot.
    pub fn key_in_slot(&self, slot: u16, prefix: &str) -> String {
        assert!(slot < SLOT_COUNT, "slot {slot} out of range");
        let key = (0u64..)
            .map(|n| format!("{prefix}:{n}"))
            .find(|key| local_hash_slot(key.as_bytes()) == slot)
            .expect("some key hashes to every slot");
        assert_eq!(
            self.keyslot(key.as_bytes()),
            slot,
            "local CRC16 disagrees with Redis on {key}"
        );
        key
    }

    fn running(&self) -> impl Iterator<Item = &TestNode> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    fn node_by_id(&self, id: &str) -> &TestNode {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("node id {id} is not part of this cluster"))
    }

    /// `CLUSTER NODES` as seen by `node`.
    fn view(&self, node: &TestNode) -> Result<Vec<ViewEntry>, String> {
        let mut conn =
            try_connect(&node.addr).map_err(|e| format!("connect to {}: {e}", node.addr))?;
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut conn)
            .map_err(|e| format!("CLUSTER NODES on {}: {e}", node.addr))?;
        parse_cluster_nodes(&text).map_err(|e| format!("CLUSTER NODES on {}: {e}", node.addr))
    }

    /// `Ok` when `replica` has `master_link_status:up` (synced and connected).
    fn check_replica_link(&self, replica: &TestNode) -> Result<(), String> {
        let link = self.info_field(replica, "replication", "master_link_status")?;
        if link != "up" {
            return Err(format!(
                "replica {} has master_link_status:{link}",
                replica.addr
            ));
        }
        Ok(())
    }

    /// How many replicas `CLUSTER SLOTS` on `node` lists for each slot range.
    fn replicas_listed(&self, node: &TestNode) -> Result<Vec<usize>, String> {
        let mut conn =
            try_connect(&node.addr).map_err(|e| format!("connect to {}: {e}", node.addr))?;
        let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut conn)
            .map_err(|e| format!("CLUSTER SLOTS on {}: {e}", node.addr))?;
        // Each range is [first, last, primary, replica...].
        Ok(ranges
            .iter()
            .map(|range| range.len().saturating_sub(3))
            .collect())
    }

    /// Whether every other running node flags `node` as failed (`fail` in `CLUSTER NODES`).
    pub fn marked_failed(&self, node: &TestNode) -> bool {
        self.running().filter(|n| n.id != node.id).all(|n| {
            self.view(n)
                .is_ok_and(|v| v.iter().any(|e| e.id == node.id && e.has_flag("fail")))
        })
    }

    /// Whether `replica` is connected to its primary and synced (`master_link_status:up`).
    pub fn replica_in_sync(&self, replica: &TestNode) -> bool {
        self.check_replica_link(replica).is_ok()
    }

    /// One field of `INFO <section>` on `node`, or why it could not be read.
    pub fn info_field(
        &self,
        node: &TestNode,
        section: &str,
        field: &str,
    ) -> Result<String, String> {
        self.field_of(node, redis::cmd("INFO").arg(section), field)
    }

    /// One `field:value` line of the text reply to `cmd` (`INFO`, `CLUSTER INFO`) on `node`.
    fn field_of(&self, node: &TestNode, cmd: &redis::Cmd, field: &str) -> Result<String, String> {
        let mut conn =
            try_connect(&node.addr).map_err(|e| format!("connect to {}: {e}", node.addr))?;
        let text: String = cmd
            .query(&mut conn)
            .map_err(|e| format!("{} on {}: {e}", command_name(cmd), node.addr))?;
        info_field(&text, field)
            .map(str::to_string)
            .ok_or_else(|| format!("{} on {} has no {field}", command_name(cmd), node.addr))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for node in &mut self.nodes {
            if panicking {
                eprintln!(
                    "--- {} ({:?}) log {} (tail):\n{}",
                    node.addr,
                    node.state,
                    node.log.display(),
                    log_tail(&node.log, 15)
                );
            }
            if let Some(mut process) = node.process.take() {
                process.kill();
            }
        }
        if let Some(dir) = self.dir.take() {
            finish_temp_dir(dir);
        }
        if panicking {
            super::failure::echo_panic();
        }
    }
}

/// Runs one command on `addr` on a fresh connection.
///
/// # Panics
/// On any error, naming the command and the node.
fn query<T: redis::FromRedisValue>(addr: &str, cmd: &redis::Cmd) -> T {
    let mut conn = connect(addr);
    cmd.query(&mut conn)
        .unwrap_or_else(|e| panic!("{} on {addr}: {e}", command_name(cmd)))
}

/// The first two words of `cmd` (`CLUSTER SETSLOT`), for messages.
fn command_name(cmd: &redis::Cmd) -> String {
    let words: Vec<String> = cmd
        .args_iter()
        .take(2)
        .map(|arg| match arg {
            redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => "<cursor>".to_string(),
        })
        .collect();
    words.join(" ")
}
