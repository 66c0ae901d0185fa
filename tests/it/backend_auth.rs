//! slotproxy in front of a secured cluster: nodes with `requirepass` + `masterauth` as in the
//! seed document, nodes that give slotproxy its own ACL user with the minimal rule set the README
//! documents, and wrong or rotated credentials (a clear error, never a hang, never a secret in a
//! log line).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{
    self, Load, NodeAuth, RawClient, TestCluster, TestProxy, all_errors, check_acked,
    exercise_connections, is_primary, wait_until,
};
use slotproxy::secret::Secret;

const PASSWORD: &str = "seed-doc-secret";
const PROXY_PASSWORD: &str = "proxy-user-secret";

/// The ACL rules the README documents as the minimum slotproxy itself needs, plus the commands
/// these tests' clients use.
const MINIMAL_RULES: &str = "on ~* &* resetchannels &* -@all \
    +hello +auth +ping +readonly +asking +info +command \
    +cluster|shards +cluster|slots +cluster|nodes +client|tracking";
const CLIENT_COMMANDS: &str = "+get +set +mget +del +scan +subscribe +unsubscribe +publish";

fn seed_doc_cluster() -> TestCluster {
    TestCluster::start_secured(
        3,
        1,
        NodeAuth {
            password: PASSWORD.into(),
            users: Vec::new(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_cluster_serves_data_pubsub_tracking_scan_and_health_checks() {
    let cluster = seed_doc_cluster();
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.backend.password = Some(Secret::new(PASSWORD));
        c.cluster.health_check_interval_ms = 100;
        c.session.allowed_admin_commands = vec!["monitor".to_string()];
    })
    .await;
    exercise_connections(&cluster, &proxy).await;
    common::wait_health_checks_reach_every_node(&cluster);

    // A blocking command runs on a dedicated connection, which authenticates too.
    let list = cluster.key_for_node(cluster.primaries()[1], "sec-list");
    let mut blocked = proxy.raw_client().await;
    blocked
        .send(&common::encode_command(&[b"BLPOP", list.as_bytes(), b"5"]))
        .await;
    let mut pusher = proxy.raw_client().await;
    wait_until(
        Duration::from_secs(5),
        "BLPOP is blocked on its node",
        || {
            cluster.info_field(cluster.primaries()[1], "clients", "blocked_clients")
                == Ok("1".to_string())
        },
    );
    assert_eq!(
        pusher.request(&[b"RPUSH", list.as_bytes(), b"x"]).await,
        b":1\r\n"
    );
    let popped = format!("*2\r\n${}\r\n{list}\r\n$1\r\nx\r\n", list.len());
    assert_eq!(blocked.read_reply().await, popped.as_bytes());

    // MONITOR is slotproxy's own stream (no node connection): a SET through slotproxy shows.
    let mut monitor = proxy.raw_client().await;
    assert_eq!(monitor.request(&[b"MONITOR"]).await, b"+OK\r\n");
    let key = cluster.key_for_node(cluster.primaries()[2], "sec-mon");
    assert_eq!(
        pusher.request(&[b"SET", key.as_bytes(), b"seen"]).await,
        b"+OK\r\n"
    );
    let line = String::from_utf8(monitor.read_reply().await).unwrap();
    assert!(
        line.ends_with(&format!("\"SET\" \"{key}\" \"seen\"\r\n")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_a_seed_url_are_used() {
    let cluster = seed_doc_cluster();
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.cluster.seeds = vec![format!("redis://:{PASSWORD}@{}", cluster.nodes()[0].addr)];
    })
    .await;
    exercise_connections(&cluster, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_with_the_minimal_rules_serves_clients() {
    let cluster = TestCluster::start_secured(
        3,
        1,
        NodeAuth {
            password: PASSWORD.into(),
            users: vec![format!(
                "slotproxy >{PROXY_PASSWORD} {MINIMAL_RULES} {CLIENT_COMMANDS}"
            )],
        },
    );
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.backend.username = Some("slotproxy".into());
        c.backend.password = Some(Secret::new(PROXY_PASSWORD));
        c.cluster.health_check_interval_ms = 100;
    })
    .await;
    exercise_connections(&cluster, &proxy).await;
    common::wait_health_checks_reach_every_node(&cluster);
    // What the user may not do, the node refuses, and the client hears it as is.
    let mut client = proxy.raw_client().await;
    let refused = client.request(&[b"INCR", b"counter"]).await;
    assert!(refused.starts_with(b"-NOPERM"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_on_a_secured_cluster_shows_no_client_error() {
    let cluster = seed_doc_cluster();
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.backend.password = Some(Secret::new(PASSWORD));
        c.session.retry_deadline_ms = 10_000;
    })
    .await;
    let load = Load::start(&proxy, 10, "secfo").await;
    std::thread::sleep(Duration::from_millis(300));
    let replica = cluster.replica_of(cluster.primaries()[0]);
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut cluster.conn(replica))
        .unwrap();
    wait_until(Duration::from_secs(10), "the replica took over", || {
        is_primary(&replica.addr)
    });
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.finish().await;
    let errors = all_errors(&seen);
    assert!(errors.is_empty(), "client-visible errors: {errors:#?}");
    let (acked, lost) = check_acked(&proxy, &seen);
    assert_eq!(lost, 0, "{lost} of {acked} acknowledged writes lost");
    let ops: u64 = seen.iter().map(|s| s.ops).sum();
    assert!(ops > 200, "only {ops} operations ran");
}

/// Issue 8: slot migration passes on the secured cluster too. A slot moves (`MIGRATE ... AUTH`,
/// ASK, then MOVED) while a client writes and reads its keys through slotproxy, whose node
/// connections to the importing node authenticate like every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migration_on_a_secured_cluster_shows_no_client_error() {
    let cluster = seed_doc_cluster();
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.backend.password = Some(Secret::new(PASSWORD));
    })
    .await;
    let (from, to) = (cluster.primaries()[0], cluster.primaries()[1]);
    let tag = cluster.key_for_node(from, "secmig");
    let slot = cluster.keyslot(tag.as_bytes());
    let mut client = proxy.raw_client().await;
    for i in 0..200 {
        let key = format!("{{{tag}}}:{i}");
        assert_eq!(
            client.request(&[b"SET", key.as_bytes(), b"before"]).await,
            b"+OK\r\n"
        );
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let stop = stop.clone();
        let done = done.clone();
        let tag = tag.clone();
        let mut client = proxy.raw_client().await;
        tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let old = format!("{{{tag}}}:{}", rounds % 200);
                let new = format!("{{{tag}}}:new:{rounds}");
                let set = client.request(&[b"SET", new.as_bytes(), b"during"]).await;
                let get = client.request(&[b"GET", old.as_bytes()]).await;
                let both = client
                    .request(&[b"MGET", old.as_bytes(), new.as_bytes()])
                    .await;
                if set != b"+OK\r\n" || get != b"$6\r\nbefore\r\n" || !both.ends_with(b"during\r\n")
                {
                    errors.push(format!("{set:?} {get:?} {both:?}"));
                }
                rounds += 1;
                done.store(rounds, std::sync::atomic::Ordering::Relaxed);
            }
            (rounds, errors)
        })
    };
    let asking_before = cluster.command_calls(to, "asking");
    cluster.begin_migration(slot, from, to);
    cluster.migrate_keys_paced(slot, from, to, 5, Duration::from_millis(5));
    // The keys are on the importing node and the slot still migrating: let the client run
    // some rounds now (each meets ASK), however slowly this machine schedules it.
    let moved_at = done.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while done.load(std::sync::atomic::Ordering::Relaxed) < moved_at + 5
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.finish_migration(slot, to);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (rounds, errors) = writer.await.unwrap();
    assert!(errors.is_empty(), "client-visible errors: {errors:#?}");
    assert!(rounds > 0, "the client ran no round during the migration");
    // slotproxy followed ASK to the importing node (on an authenticated connection).
    let asking = cluster.command_calls(to, "asking") - asking_before;
    assert!(
        asking > 0,
        "no ASK redirect during the migration ({rounds} rounds)"
    );
    // Everything is on the new owner, and slotproxy reads it from there.
    let on_to: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut cluster.conn(to))
        .unwrap();
    assert_eq!(on_to, 200 + rounds as i64);
    let key = format!("{{{tag}}}:199");
    assert_eq!(
        client.request(&[b"GET", key.as_bytes()]).await,
        b"$6\r\nbefore\r\n"
    );
}

/// Drops every connection slotproxy holds to the nodes (the harness's own is skipped), so the
/// next request must connect, and authenticate, again.
fn kill_proxy_connections(cluster: &TestCluster) {
    for node in cluster.nodes() {
        for kind in ["normal", "pubsub"] {
            let _: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg(kind)
                .query(&mut cluster.conn(node))
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_password_gives_clients_an_error_naming_the_node_until_restarted_with_it() {
    let mut cluster = seed_doc_cluster();
    let proxy = TestProxy::start_with(&cluster, |c| {
        c.backend.password = Some(Secret::new(PASSWORD));
    })
    .await;
    let key = cluster.key_for_node(cluster.primaries()[0], "rot");
    let owner = cluster.primaries()[0].addr.clone();
    let mut client = proxy.raw_client().await;
    assert_eq!(
        client.request(&[b"SET", key.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );

    cluster.rotate_password("rotated-secret");
    kill_proxy_connections(&cluster);
    let want = format!(
        "-ERR slotproxy: node {owner} refused slotproxy's credentials: WRONGPASS invalid \
         username-password pair or user is disabled.\r\n"
    );
    let mut last = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "the client hears the node refused the credentials",
        || {
            last = futures_block(client.request(&[b"GET", key.as_bytes()]));
            last == want.as_bytes()
        },
    );
    drop(proxy);

    let healed = TestProxy::start_with(&cluster, |c| {
        c.backend.password = Some(Secret::new("rotated-secret"));
    })
    .await;
    let mut client = healed.raw_client().await;
    assert_eq!(
        client.request(&[b"GET", key.as_bytes()]).await,
        b"$1\r\nv\r\n"
    );
}

/// `kill -HUP` (here `POST /reload`) rotates both passwords without a restart and without
/// dropping a client: the nodes' new password reaches the next node connection, slotproxy's
/// own new password the next `AUTH`, and a client authenticated before keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_node_and_client_passwords_without_dropping_clients() {
    let mut cluster = seed_doc_cluster();
    let (proxy, source) = TestProxy::start_reloadable(&cluster, |c| {
        c.backend.password = Some(Secret::new(PASSWORD));
        c.auth.password = Some(Secret::new("client-secret-1"));
    })
    .await;
    let admin = proxy.admin.unwrap();
    let key = cluster.key_for_node(cluster.primaries()[0], "reload-rot");
    let mut client = proxy.raw_client().await;
    assert_eq!(
        client.request(&[b"AUTH", b"client-secret-1"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        client.request(&[b"SET", key.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );

    cluster.rotate_password("rotated-secret");
    kill_proxy_connections(&cluster);
    wait_until(
        Duration::from_secs(10),
        "the nodes refuse the old password",
        || futures_block(client.request(&[b"GET", key.as_bytes()])).starts_with(b"-ERR"),
    );

    {
        let mut next = source.lock().unwrap();
        next.backend.password = Some(Secret::new("rotated-secret"));
        next.auth.password = Some(Secret::new("client-secret-2"));
    }
    let reload = common::http(admin, "POST", "/reload");
    assert_eq!(reload.status, 200, "{}", reload.body);
    for key in ["auth.password", "backend.password"] {
        assert!(reload.body.contains(key), "{key} applied: {}", reload.body);
    }
    assert!(
        !reload.body.contains("rotated-secret") && !reload.body.contains("client-secret"),
        "{}",
        reload.body
    );
    let mut last = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "the same client reads again through new node connections",
        || {
            last = futures_block(client.request(&[b"GET", key.as_bytes()]));
            last == b"$1\r\nv\r\n"
        },
    );

    let mut newcomer = proxy.raw_client().await;
    assert_eq!(
        newcomer.request(&[b"AUTH", b"client-secret-1"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        newcomer.request(&[b"AUTH", b"client-secret-2"]).await,
        b"+OK\r\n"
    );
    let config = common::http_get(admin, "/config").body;
    assert!(!config.contains("rotated-secret") && !config.contains("client-secret"));
}

/// Runs a future to completion from inside a `wait_until` closure (on this multi-threaded
/// runtime's worker, which may block).
fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// The built binary against `cluster`; stdout and stderr both piped (logs go to stdout).
fn spawn_binary(seeds: &str, listen: &str, password: Option<&str>, log: &str) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slotproxy"));
    command
        .args(["--cluster", seeds, "--listen", listen, "--log", log])
        // No admin listener: its default port is fixed, and tests run in parallel.
        .env("SLOTPROXY_ADMIN_LISTEN", "")
        .env_remove("SLOTPROXY_BACKEND_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        command.env("SLOTPROXY_BACKEND_PASSWORD", password);
    }
    command.spawn().expect("run the slotproxy binary")
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn wrong_or_missing_password_at_start_exits_1_with_one_line_naming_the_node() {
    let cluster = seed_doc_cluster();
    let seed = &cluster.nodes()[0].addr;
    let url_seed = format!("redis://:url-wrong-secret@{seed}");
    let cases = [
        (
            seed.as_str(),
            Some("env-wrong-secret"),
            "WRONGPASS invalid username-password pair or user is disabled.",
        ),
        (
            url_seed.as_str(),
            None,
            "WRONGPASS invalid username-password pair or user is disabled.",
        ),
        (seed.as_str(), None, "NOAUTH Authentication required."),
    ];
    for (seeds, password, redis_error) in cases {
        let child = spawn_binary(seeds, &free_addr(), password, "debug");
        let (code, out, err) = common::finish(child);
        assert_eq!(code, Some(1), "{seeds}: stdout {out}\nstderr {err}");
        assert_eq!(
            err,
            format!("slotproxy: node {seed} refused slotproxy's credentials: {redis_error}\n"),
            "{seeds}"
        );
        for secret in ["wrong-secret", PASSWORD] {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{secret} printed:\n{out}\n{err}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_and_refusals_logged_once_per_node_per_backoff() {
    let mut cluster = seed_doc_cluster();
    let listen = free_addr();
    let seeds = format!("redis://:{PASSWORD}@{}", cluster.nodes()[0].addr);
    let child = spawn_binary(&seeds, &listen, Some(PASSWORD), "slotproxy=debug");
    wait_until(Duration::from_secs(15), "the binary listens", || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    let mut client = RawClient::connect(listen.as_str()).await;
    let key = cluster.key_for_node(cluster.primaries()[1], "log");
    assert_eq!(
        client.request(&[b"SET", key.as_bytes(), b"v"]).await,
        b"+OK\r\n"
    );
    // Rotate the password under it: every connection to every node now fails, for a while.
    cluster.rotate_password("rotated-secret");
    kill_proxy_connections(&cluster);
    let started = std::time::Instant::now();
    let mut last = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "the client hears WRONGPASS",
        || {
            last = futures_block(client.request(&[b"GET", key.as_bytes()]));
            last.starts_with(b"-ERR slotproxy: node") && last.windows(9).any(|w| w == b"WRONGPASS")
        },
    );
    std::thread::sleep(Duration::from_millis(2_500));
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let (_, out, err) = common::finish(child);
    // Until it exited: it keeps logging while it drains after SIGTERM.
    let elapsed = started.elapsed();
    let out = strip_ansi(&out);
    let all = format!("{out}{err}");
    for secret in [PASSWORD, "rotated-secret"] {
        assert!(!all.contains(secret), "{secret} in the output:\n{all}");
    }
    // One warning per node per reconnect_backoff_max (2 s by default), however many connections.
    let max_per_node = elapsed.as_secs() / 2 + 1;
    for node in cluster.nodes() {
        let warnings = out
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("connect failed"))
            .filter(|l| l.contains(&format!("node={}", node.addr)))
            .count() as u64;
        assert!(
            warnings <= max_per_node,
            "{warnings} connect warnings for {} in {elapsed:?}:\n{out}",
            node.addr
        );
    }
    assert!(
        out.contains("refused slotproxy's credentials"),
        "no auth failure logged:\n{out}"
    );
}

/// `text` without ANSI colour sequences (`ESC [ ... m`), which split `key=value` in log lines.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
