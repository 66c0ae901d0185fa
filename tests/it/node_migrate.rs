//! Whether slotproxy's node user may run `MIGRATE`, which scripts reach past slotproxy's own
//! refusal (docs/reliability.md section 4): checked against real secured clusters, through the
//! built binary so its log lines can be read.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{self, NodeAuth, RawClient, TestCluster, TestProxy, wait_until};
use slotproxy::secret::Secret;

const PASSWORD: &str = "migrate-check-secret";
const WARNING: &str = "let slotproxy's node user run MIGRATE";
/// A script that asks its node to MIGRATE (to a port nothing listens on).
const SCRIPT: &[u8] = b"return redis.call('MIGRATE', '127.0.0.1', '1', 'k', '0', '100')";

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The binary against the seed `seed_url`, with an admin listener; logs (stdout) piped.
fn spawn_binary(seed_url: &str, listen: SocketAddr, admin: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_slotproxy"))
        .args(["--cluster", seed_url, "--listen", &listen.to_string()])
        .args([
            "--log",
            "slotproxy=info",
            "--admin-listen",
            &admin.to_string(),
        ])
        .env_remove("SLOTPROXY_BACKEND_PASSWORD")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the slotproxy binary")
}

/// The gauge once the check has answered (it starts at -1).
fn checked_gauge(admin: SocketAddr) -> f64 {
    wait_until(Duration::from_secs(15), "the admin listener is up", || {
        std::net::TcpStream::connect(admin).is_ok()
    });
    let mut value = None;
    wait_until(
        Duration::from_secs(15),
        "the MIGRATE check answered",
        || {
            let body = common::http_get(admin, "/metrics").body;
            value =
                common::metric(&body, "slotproxy_node_user_can_migrate", "").filter(|v| *v != -1.0);
            value.is_some()
        },
    );
    value.unwrap()
}

/// Stops the binary (SIGTERM) and returns everything it printed.
fn stop(child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let (_, out, err) = common::finish(child);
    format!("{out}{err}")
}

async fn eval_migrate(listen: SocketAddr) -> String {
    let mut client = RawClient::connect(listen).await;
    String::from_utf8(client.request(&[b"EVAL", SCRIPT, b"0"]).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_requirepass_the_node_user_may_migrate_and_slotproxy_warns_once() {
    let cluster = TestCluster::start_secured(
        3,
        0,
        NodeAuth {
            password: PASSWORD.into(),
            users: Vec::new(),
        },
    );
    let (listen, admin) = (free_addr(), free_addr());
    let seed = format!("redis://:{PASSWORD}@{}", cluster.nodes()[0].addr);
    let child = spawn_binary(&seed, listen, admin);
    assert_eq!(
        checked_gauge(admin),
        1.0,
        "the default user may run anything"
    );
    let output = stop(child);
    assert_eq!(
        output.lines().filter(|l| l.contains(WARNING)).count(),
        1,
        "one warning:\n{output}"
    );
    let warning = output.lines().find(|l| l.contains(WARNING)).unwrap();
    assert!(
        warning.contains("WARN") && warning.contains("-migrate"),
        "{warning}"
    );
    assert!(
        !output.contains(PASSWORD),
        "the password was printed:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_without_migrate_gets_no_warning_and_scripts_get_the_nodes_refusal() {
    // The remedy the sample config shows, and the same without ACL DRYRUN (the check falls back
    // to a MIGRATE that can move nothing).
    let users = [
        ("with-dryrun", "+@all -migrate"),
        ("without-dryrun", "+@all -migrate -acl"),
    ];
    let cluster = TestCluster::start_secured(
        3,
        0,
        NodeAuth {
            password: PASSWORD.into(),
            users: users
                .iter()
                .map(|(name, rules)| format!("{name} on >{PASSWORD} ~* &* {rules}"))
                .collect(),
        },
    );
    for (user, _) in users {
        let (listen, admin) = (free_addr(), free_addr());
        let seed = format!("redis://{user}:{PASSWORD}@{}", cluster.nodes()[0].addr);
        let child = spawn_binary(&seed, listen, admin);
        assert_eq!(
            checked_gauge(admin),
            0.0,
            "{user}: the nodes refuse MIGRATE"
        );
        let reply = eval_migrate(listen).await;
        let output = stop(child);
        // The node's ACL refusal as its scripts word it (redis 7.0: an ERR; NOPERM later).
        assert!(
            reply.starts_with('-')
                && (reply.contains("NOPERM")
                    || reply.contains("user executing the script can't run this command")),
            "{user}: the script's MIGRATE got {reply:?}"
        );
        assert!(!output.contains(WARNING), "{user}: warned:\n{output}");
        assert!(
            !output.contains(PASSWORD),
            "{user}: password printed:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_node_user_checks_again() {
    let cluster = TestCluster::start_secured(
        3,
        0,
        NodeAuth {
            password: PASSWORD.into(),
            users: vec![format!("no-migrate on >{PASSWORD} ~* &* +@all -migrate")],
        },
    );
    let (proxy, source) = TestProxy::start_reloadable(&cluster, |c| {
        c.backend.password = Some(Secret::new(PASSWORD));
    })
    .await;
    let admin = proxy.admin.unwrap();
    assert_eq!(checked_gauge(admin), 1.0, "the default user may");
    {
        let mut next = source.lock().unwrap();
        next.backend.username = Some("no-migrate".into());
        next.backend.password = Some(Secret::new(PASSWORD));
    }
    let reload = common::http(admin, "POST", "/reload");
    assert_eq!(reload.status, 200, "{}", reload.body);
    wait_until(Duration::from_secs(15), "the check ran again", || {
        let body = common::http_get(admin, "/metrics").body;
        common::metric(&body, "slotproxy_node_user_can_migrate", "") == Some(0.0)
    });
}
