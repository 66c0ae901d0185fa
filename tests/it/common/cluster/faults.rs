//! Faults a test can inflict on one node: SIGKILL, SIGSTOP/SIGCONT, and a restart on the same
//! port and data directory.

use super::super::process::RedisProcess;
use super::{NodeState, TestCluster};

impl TestCluster {
    /// SIGKILLs node `index` (no shutdown, no save). The node keeps its place in `nodes()`.
    pub fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if let Some(mut process) = node.process.take() {
            process.kill();
        }
        node.state = NodeState::Killed;
    }

    /// Pauses node `index` with SIGSTOP: its sockets stay open but it answers nothing.
    pub fn stop(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert_eq!(
            node.state,
            NodeState::Running,
            "stop {}: not running",
            node.addr
        );
        node.process
            .as_ref()
            .expect("a running node has a process")
            .signal("STOP");
        node.state = NodeState::Stopped;
    }

    /// Resumes node `index` after [`TestCluster::stop`] with SIGCONT.
    pub fn cont(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert_eq!(
            node.state,
            NodeState::Stopped,
            "cont {}: not stopped",
            node.addr
        );
        node.process
            .as_ref()
            .expect("a stopped node has a process")
            .signal("CONT");
        node.state = NodeState::Running;
    }

    /// Starts killed node `index` again on its port with its `nodes.conf`, so it rejoins with the
    /// same id (and, having no data, resyncs). Does not wait for the cluster to converge.
    ///
    /// # Panics
    /// When the node is not killed or does not come back (its port may have been taken).
    pub fn restart(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert_eq!(
            node.state,
            NodeState::Killed,
            "restart {}: not killed",
            node.addr
        );
        let process = RedisProcess::start_on(&self.spec, node.port)
            .unwrap_or_else(|e| panic!("restart {}: {e}", node.addr));
        node.process = Some(process);
        node.state = NodeState::Running;
    }
}
