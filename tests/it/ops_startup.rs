//! The binary's first moments: it stops cleanly on SIGTERM before the cluster ever answered,
//! and refuses a seed that turns out to be slotproxy itself.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, Running, slotproxy, wait_until};

/// Starts the binary on `listen` with `seed`, its log in `log`.
fn spawn(listen: SocketAddr, seed: &str, log: &std::path::Path) -> Running {
    let file = std::fs::File::create(log).unwrap();
    let child = slotproxy()
        .args(["--listen", &listen.to_string(), "--cluster", seed])
        .args(["--admin-listen", "", "--threads", "2", "--log", "info"])
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    Running(child)
}

/// A temp dir holding the log file's path, and a free address to listen on.
fn scratch() -> (tempfile::TempDir, PathBuf, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("slotproxy.log");
    let listen = SocketAddr::from(([127, 0, 0, 1], common::free_port(false)));
    (dir, log, listen)
}

fn log_has(log: &std::path::Path, needle: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle))
}

/// Sends SIGTERM and expects exit code 0 with the shutdown logged.
fn terminate(mut child: Running, log: &std::path::Path) {
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    wait_until(Duration::from_secs(10), "slotproxy exits", || {
        exited = child.0.try_wait().unwrap();
        exited.is_some()
    });
    let log_text = std::fs::read_to_string(log).unwrap();
    assert_eq!(exited.unwrap().code(), Some(0), "{log_text}");
    assert!(log_text.contains("SIGTERM: shutting down"), "{log_text}");
}

#[test]
fn sigterm_before_the_cluster_answers_exits_cleanly() {
    let (_dir, log, listen) = scratch();
    // Nothing listens on the seed's port: the cluster never answers.
    let dead = format!("127.0.0.1:{}", common::free_port(false));
    let child = spawn(listen, &dead, &log);
    wait_until(Duration::from_secs(10), "the startup line", || {
        log_has(&log, "slotproxy starting")
    });
    terminate(child, &log);
}

/// Forwards every connection to `127.0.0.1:<listener's port>` on to `to`, until the test ends.
fn forward(listener: TcpListener, to: SocketAddr) {
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            for (mut from, mut into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
fn a_seed_that_is_slotproxy_itself_is_refused_by_its_run_id() {
    let (_dir, log, listen) = scratch();
    // The seed is another address that leads back to slotproxy: the listen-address check
    // can't tell, the run id in its answer does.
    let forwarder = TcpListener::bind("127.0.0.1:0").unwrap();
    let seed = forwarder.local_addr().unwrap().to_string();
    forward(forwarder, listen);
    let child = spawn(listen, &seed, &log);
    wait_until(Duration::from_secs(30), "the refusal logged", || {
        log_has(&log, "answers with slotproxy's own run id")
    });
    // Nothing was loaded from it: requests fail at once instead of looping through slotproxy.
    let mut conn = common::process_connect(&listen.to_string());
    let reply: redis::RedisResult<Option<String>> = redis::cmd("GET").arg("k").query(&mut conn);
    let error = reply.unwrap_err();
    assert_eq!(error.code(), Some("CLUSTERDOWN"), "{error}");
    let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut conn).unwrap();
    assert_eq!(id.len(), 40);
    assert!(
        log_has(&log, &seed),
        "the refusal names the seed: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    terminate(child, &log);
}
