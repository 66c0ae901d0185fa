//! The built `slotproxy` binary as a child process: a clean command and a guard that kills it.

use std::process::{Child, Command};

/// The `slotproxy` binary, without the test's own `SLOTPROXY_*` settings (or `NO_COLOR`): the
/// test's environment must not leak settings into the child.
pub fn slotproxy() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slotproxy"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SLOTPROXY_") || key == "NO_COLOR" {
            command.env_remove(key);
        }
    }
    command
}

/// Kills the child if the test fails before it exits.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
