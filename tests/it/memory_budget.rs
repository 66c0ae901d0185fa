//! The process' real RSS: the `slotproxy` binary as shipped (its allocator set-up included,
//! `src/allocator.rs`). `session.max_client_memory_bytes` against clients that pipeline large
//! reads and never read, and the memory of clients that left going back to the OS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Running, slotproxy};
use crate::common::{TestCluster, encode_command, free_port, proc_status_bytes, wait_until};

const MB: u64 = 1024 * 1024;
const BUDGET: u64 = 128 * MB;
const VALUE: usize = 256 * 1024;
/// What the process may hold besides the budget: its buffers for the nodes and the clients'
/// reads, and the allocator's own overhead. The same test peaked 67-73 MB over the budget
/// with glibc's default arenas.
const SLACK: u64 = 24 * MB;

/// A line of the child's /proc status in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> u64 {
    proc_status_bytes(&pid.to_string(), field)
}

/// The shipped binary in front of `cluster` with 2 workers and `config` (a TOML file), once it
/// answers: the process, its address, and a client connection to it.
fn start(
    cluster: &TestCluster,
    config: &std::path::Path,
) -> (Running, SocketAddr, redis::Connection) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port(false)).parse().unwrap();
    let child = slotproxy()
        .env("SLOTPROXY_CONFIG", config)
        .env("SLOTPROXY_LISTEN", listen.to_string())
        .env("SLOTPROXY_CLUSTER", cluster.seeds().join(","))
        .env("SLOTPROXY_ADMIN_LISTEN", "")
        .env("SLOTPROXY_THREADS", "2")
        .env("SLOTPROXY_LOG", "warn")
        .env_remove("GLIBC_TUNABLES")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Running(child);
    let mut admin = None;
    wait_until(Duration::from_secs(15), "slotproxy answers", || {
        admin = redis::Client::open(format!("redis://{listen}"))
            .unwrap()
            .get_connection()
            .ok();
        admin.is_some()
    });
    (child, listen, admin.unwrap())
}

/// `count` clients that each sent `request` and read `reply_len` bytes back, which `check`
/// looked at; still connected.
fn served_clients(
    listen: SocketAddr,
    count: usize,
    request: &[u8],
    reply_len: usize,
    check: impl Fn(&[u8]),
) -> Vec<TcpStream> {
    let clients: Vec<TcpStream> = (0..count)
        .map(|_| {
            let mut client = TcpStream::connect(listen).unwrap();
            client.write_all(request).unwrap();
            client
        })
        .collect();
    for mut client in &clients {
        let mut reply = vec![0; reply_len];
        client.read_exact(&mut reply).unwrap();
        check(&reply);
    }
    clients
}

#[test]
fn the_process_peaks_near_the_client_memory_budget() {
    let cluster = TestCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotproxy.toml");
    // The per-client limit out of the way: the process-wide budget is what trips.
    std::fs::write(
        &config,
        format!(
            "[session]\nmax_output_buffer_bytes = {}\nmax_client_memory_bytes = {BUDGET}\n",
            1u64 << 30
        ),
    )
    .unwrap();
    let (child, listen, mut admin) = start(&cluster, &config);
    let pid = child.0.id();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(vec![b'v'; VALUE])
        .query(&mut admin)
        .unwrap();
    let before = status_bytes(pid, "VmRSS");
    // Four clients pipeline 800 GETs of 256 KB each and never read: 800 MB without the budget.
    let gets: Vec<u8> = std::iter::repeat_n(encode_command(&[b"GET", b"big"]), 800)
        .flatten()
        .collect();
    let attackers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut attacker = TcpStream::connect(listen).unwrap();
            attacker.write_all(&gets).unwrap();
            attacker
        })
        .collect();
    let ports: Vec<u16> = attackers
        .iter()
        .map(|a| a.local_addr().unwrap().port())
        .collect();
    let listed = |admin: &mut redis::Connection| -> usize {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(admin).unwrap();
        ports
            .iter()
            .filter(|p| list.contains(&format!(" addr=127.0.0.1:{p} ")))
            .count()
    };
    // Seen first: a connection is listed once its session runs, a moment after connect.
    wait_until(Duration::from_secs(10), "every attacker is listed", || {
        listed(&mut admin) == ports.len()
    });
    wait_until(
        Duration::from_secs(60),
        "every attacker is gone from CLIENT LIST",
        || listed(&mut admin) == 0,
    );
    let peak = status_bytes(pid, "VmHWM");
    // Each attacker was cut off with replies unread: it reads less than it asked for.
    for mut attacker in attackers {
        attacker
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = Vec::new();
        let _ = attacker.read_to_end(&mut got);
        assert!(
            got.len() < 800 * VALUE,
            "an attacker got every reply: {} bytes",
            got.len()
        );
    }
    eprintln!(
        "4 clients x 800 unread 256 KB GETs, budget {} MB: RSS {} MB before, peak {} MB \
         (+{} MB)",
        BUDGET / MB,
        before / MB,
        peak / MB,
        (peak - before) / MB
    );
    assert!(
        peak <= before + BUDGET + SLACK,
        "peak RSS {} MB passed {} MB before + the {} MB budget + {} MB",
        peak / MB,
        before / MB,
        BUDGET / MB,
        SLACK / MB
    );
}

/// Clients that read values and leave: glibc keeps what their sessions freed as free chunks
/// below live memory, so without the trimmer's release (`src/clients/trim.rs`) the process
/// stays at its peak (measured: anonymous RSS 5.9 MB after 1,000 clients had left, 1.9 MB
/// before they came).
#[test]
fn memory_of_clients_that_left_goes_back_to_the_os() {
    const CLIENTS: usize = 300;
    const GETS: usize = 10;
    const SIZE: usize = 8 * 1024;
    let cluster = TestCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotproxy.toml");
    std::fs::write(&config, "").unwrap();
    let (child, listen, mut admin) = start(&cluster, &config);
    let pid = child.0.id();
    let _: () = redis::cmd("SET")
        .arg("value")
        .arg(vec![b'v'; SIZE])
        .query(&mut admin)
        .unwrap();
    let anon = || status_bytes(pid, "RssAnon");
    let idle = anon();

    // Each client pipelines its GETs and reads every reply: the session's buffers grow to hold
    // them, and are kept while it stays connected.
    let gets: Vec<u8> = std::iter::repeat_n(encode_command(&[b"GET", b"value"]), GETS)
        .flatten()
        .collect();
    let reply_len = GETS * (format!("${SIZE}\r\n").len() + SIZE + 2);
    let clients = served_clients(listen, CLIENTS, &gets, reply_len, |replies| {
        assert!(replies.starts_with(format!("${SIZE}\r\nvvv").as_bytes()));
    });
    let loaded = anon();
    drop(clients);

    eprintln!(
        "{CLIENTS} clients x {GETS} GETs of {SIZE} bytes: anonymous RSS {} KB idle, {} KB \
         with them",
        idle / 1024,
        loaded / 1024
    );
    assert!(
        loaded >= idle + 4 * MB,
        "the clients should have grown the process by MBs: {} KB to {} KB",
        idle / 1024,
        loaded / 1024
    );
    // The trimmer sweeps every second, and its first release is at once.
    wait_until(
        Duration::from_secs(15),
        "three quarters of what the clients took is given back",
        || anon() <= idle + (loaded - idle) / 4,
    );
    eprintln!("after they left: {} KB", anon() / 1024);
}

/// Clients that connect for one command and leave, thousands of them: each session's task is
/// freed once the accept loop collects it (`src/server.rs`), so the process doesn't keep a
/// task's memory per client that ever connected.
#[test]
fn sessions_of_clients_that_left_are_freed() {
    const ROUNDS: usize = 40;
    const CLIENTS: usize = 100;
    let cluster = TestCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slotproxy.toml");
    std::fs::write(&config, "").unwrap();
    let (child, listen, _admin) = start(&cluster, &config);
    let pid = child.0.id();
    let anon = || status_bytes(pid, "RssAnon");
    let ping = encode_command(&[b"PING"]);
    let round = || {
        served_clients(listen, CLIENTS, &ping, 7, |pong| {
            assert_eq!(pong, b"+PONG\r\n")
        });
    };

    // The baseline is the process after one round, once the trimmer has given back what that
    // round freed (its first release is at the sweep after clients left): start-up's own
    // release may come at any moment before, and what one round leaves is not the question.
    round();
    std::thread::sleep(Duration::from_millis(2500));
    let settled = anon();
    for _ in 1..ROUNDS {
        round();
    }
    eprintln!(
        "{} clients came and went: anonymous RSS {} KB after the first {CLIENTS}, {} KB right \
         after",
        ROUNDS * CLIENTS,
        settled / 1024,
        anon() / 1024
    );
    // The trimmer releases at most every 10 s.
    wait_until(
        Duration::from_secs(20),
        "the process is back within 1 MB of where one round left it",
        || anon() <= settled + MB,
    );
    eprintln!("a moment later: {} KB", anon() / 1024);
}
