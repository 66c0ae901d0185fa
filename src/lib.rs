//! slotproxy: a Redis Cluster proxy. Cluster-unaware clients connect to one address; slotproxy
//! routes each command to the node that owns its keys and answers as one redis-server would.
//!
//! # Life of a command
//!
//! Open the files in this order to follow one request from the client's socket to a node and
//! back.
//!
//! 1. **Accept** (`server.rs`, `server/accept.rs`, `workers.rs`). The accept loop takes a
//!    client once the first slot map is known (protected mode may refuse it with redis'
//!    `-DENIED`), picks a worker round-robin and hands it the socket, which no runtime has
//!    registered yet; a client of `tls_listen` runs its TLS handshake there first
//!    (`server/tls.rs`), and its session reads and writes through rustls
//!    (`server/client_stream.rs`). Each worker is a single-threaded runtime holding its
//!    sessions and its own connections to every node, so a request never changes thread.
//!    Each session registers in the [`clients`] registry (what `CLIENT LIST`, `CLIENT KILL` and
//!    `CLIENT UNBLOCK` see of it, published on change, and where other sessions leave it
//!    orders).
//! 2. **Read** (`session/mod.rs`, `session/events.rs`, `session/read_buffer.rs`,
//!    `protocol/codec.rs`). The session's loop waits for its events and reads (a client holds
//!    no read buffer until it sends, and gives its buffers back after 2 s idle), and parses
//!    only while its in-flight window allows (`session/window.rs`: `max_in_flight` requests,
//!    fewer while its recent requests or replies are large, so one client's large values
//!    don't queue up on node connections others share);
//!    `session/handle.rs` (`parse_requests`) runs the [`protocol::RequestDecoder`], which yields [`protocol::Request`]s: arguments as slices of the read
//!    buffer plus the raw bytes that get forwarded. It accepts exactly what redis-server
//!    accepts; anything else gets redis' own `-ERR Protocol error` and the connection closes.
//!    While a `CLIENT PAUSE` ([`pause`]) holds it, a request waits here,
//!    and nothing after it is read.
//! 3. **Decide** (`command/table.rs`, `command/policy.rs`, `session/acl.rs`,
//!    `session/access.rs`). The command's row
//!    is found once; its [`command::Policy`], built with the table, says how it is served
//!    (`Local`, `Single`, `Split`, `Computed`, `FanOut`, `AllNodes`, `AnyNode`, `Admin`,
//!    `Refused`), whether it writes, and its metrics row. The ACL check ([`auth::check()`]) runs
//!    here too: `-NOAUTH`, `-NOPERM`, redis 7.0's rules and texts, no round trip. A request
//!    that passed these checks is shown to `MONITOR` clients now, in the order slotproxy takes
//!    requests on all workers ([`monitor`], `session/monitor.rs`; one relaxed load when nobody
//!    monitors).
//! 4. **Plan** (`session/handle.rs`, `session/plan.rs`). A match on the row's handling: local
//!    answers (PING, HELLO, CLUSTER introspection and the client's own settings in
//!    `session/local.rs`, `CLIENT TRACKING` in `session/tracking.rs`, `CLIENT
//!    LIST|KILL|UNBLOCK` in `session/clients.rs`: each a type borrowing only the session parts
//!    it needs, which calls types that build the reply without a session: `session/introspect.rs`,
//!    `session/tracking_state.rs`, `session/subscriptions.rs`; MULTI/EXEC as methods of the
//!    transaction state in `session/transaction.rs` and `session/per_slot.rs`, pub/sub in `session/pubsub.rs`
//!    with the [`pubsub`] hub, WAIT in `session/wait.rs`, SCAN's cursor in `session/scan.rs`),
//!    or a `Plan` (data only): one slot (a `session/target.rs` `Target`, resolved again on
//!    every retry), split by slot (`session/split.rs`), computed from one read per key
//!    (`session/algebra/`), or every primary. Other cross-slot commands get `-CROSSSLOT`.
//! 5. **Order** (`session/order.rs`, `session/queue.rs`). Every request gets one entry in the
//!    reply queue, in the client's order. It is sent now, or held (`Deferred`) until older ones
//!    settle: when the slot map changed while they were in flight, after a request on a
//!    dedicated connection, or when it must see everything before it. No I/O in either file;
//!    every rule has a unit test.
//! 6. **Send** (`session/settle.rs`, `session/dispatch.rs`, `session/send.rs`, `session/pick.rs`,
//!    `backend/pool.rs`). `dispatch` (in `settle.rs`) has `dispatch.rs`'s `Starter` start the
//!    request (or its parts) under the map the order check read (passed down as `&SlotMap`, so a
//!    refresh can't slip in); `send.rs` picks the shard's node (the primary, or a replica the read
//!    policy and its health allow) and queues an [`backend::Outgoing`] on the session's
//!    [`backend::Lane`] of that node's shared connections on its worker, or on its own dedicated
//!    connection (blocking commands, WATCH), with a slot of the session's [`backend::Mailbox`]
//!    for its reply. A full lane (`backend.max_queued_requests`) refuses it: it backs off. A
//!    primary failing its health checks is not sent anything: the request backs off. What was
//!    sent is recorded as an `InFlight` (`session/attempt.rs`).
//! 7. **Node connection** (`backend/connection.rs`, `backend/lane.rs`, `backend/outbox.rs`,
//!    `backend/mailbox.rs`, `backend/ack.rs`). The connection task takes every queued request
//!    and writes them as one batch (large values from the client's own bytes), reading replies
//!    while the node takes it, matches replies to requests in FIFO order and puts each in its
//!    request's mailbox slot, waking the session only when it waits on that slot. With
//!    `ack = replicated`, write replies wait for a `WAIT` after their batch. A node answering
//!    `-BUSY` (a long script) is alive: its requests get that `-BUSY`, and `SCRIPT KILL` never
//!    queues behind the script. Every node connection starts in [`backend::setup::open`]
//!    (credentials, TLS).
//! 8. **Settle** (`session/settle.rs`, `session/settler.rs`). When its entry reaches the front of
//!    the reply queue (`advance_front`), a reply is settled into what to do next (`Settler`),
//!    without sending anything itself: `MOVED` refreshes the map and redirects, `ASK` redirects
//!    with `ASKING` and leaves the map alone (both capped by `max_redirects`); `TRYAGAIN`,
//!    `CLUSTERDOWN` and unreachable nodes back off until `retry_deadline`; `NOSCRIPT` reloads the
//!    script. `send.rs` sends what it says. A read whose connection died is sent again; a write
//!    gets an error saying its outcome is unknown and is never sent twice. A split's parts settle
//!    one by one and merge in key order (`session/split_progress.rs`). Replies are read through
//!    [`protocol::View`]; every error reply slotproxy makes is an [`error::ReplyError`], spelled
//!    once.
//! 9. **Write** (`session/output.rs`). Replies leave in request order (those `CLIENT REPLY
//!    OFF|SKIP` mutes are dropped here, `session/reply_mode.rs`); large ones are written
//!    from the node's bytes without a copy. Pub/sub messages and tracking invalidations
//!    ([`tracking`]) are written between replies. A client whose unwritten and in-flight replies
//!    pass `max_output_buffer_bytes` is disconnected, and its unsent requests are dropped;
//!    past `max_client_memory_bytes` for all clients together, those holding the most are
//!    ([`clients::Registry::evict_for_memory`]).
//!    Each reply's command counters and latency go to [`metrics::Metrics`] by row index
//!    (`session/timings.rs`).
//!
//! Alongside, on the main thread: the refresher ([`cluster::Topology::run_refresher`]: on a
//! timer, on `MOVED`, on failed connections; it keeps the answer with the greatest config
//! epoch), the health checks ([`cluster::health_check`]), the pub/sub hub, the idle-client
//! sweep ([`clients::trim_idle`]), the [`admin`] HTTP listener, config reload ([`reload`]) and
//! the drain on shutdown ([`server`]).

pub mod admin;
pub mod alarm;
pub mod allocator;
pub mod auth;
pub mod backend;
pub mod clients;
pub mod cluster;
pub mod command;
pub mod config;
pub mod error;
pub mod inbox;
pub mod launch;
pub mod metrics;
pub mod monitor;
pub mod offload;
pub mod pause;
pub mod protocol;
pub mod pubsub;
pub mod reload;
pub mod secret;
pub mod server;
pub mod session;
pub mod tracking;
pub mod workers;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::backend::BackendPool;
use crate::cluster::Topology;
use crate::command::CommandTable;
use crate::config::Config;
use crate::protocol::Protocol;
use crate::protocol::codec::decode_owned;
use crate::session::Shared;

/// Reported by `HELLO` until a node has told us its own version.
const DEFAULT_REDIS_VERSION: &str = "7.0.0";

/// Runs the proxy on `listener` until `shutdown` resolves, without an admin listener or reload
/// (see [`run_with`]).
///
/// # Errors
/// `Error::Config` if the configuration does not validate or a password file can't be read;
/// `Error::BackendAuth` if no seed accepts the credentials (see `backend.password`).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), error::Error> {
    let process = Process {
        listeners: vec![listener],
        tls_listeners: Vec::new(),
        admin: None,
        reload: None,
        workers: None,
    };
    run_with(process, config, shutdown).await
}

/// What the process around the proxy provides: bound sockets and how to re-read the config.
pub struct Process {
    /// Client listeners (one per address `listen` resolved to).
    pub listeners: Vec<TcpListener>,
    /// TLS client listeners (one per address `tls_listen` resolved to); their clients use
    /// `[tls]`.
    pub tls_listeners: Vec<TcpListener>,
    /// The admin HTTP listener (`[admin] listen`), if on.
    pub admin: Option<TcpListener>,
    /// Re-reads the configuration on SIGHUP and `POST /reload`; `None`: reload is refused.
    pub reload: Option<reload::Reloader>,
    /// Where sessions run (see [`workers`]); `None`: on the runtime `run_with` runs on.
    pub workers: Option<workers::Workers>,
}

/// Runs the proxy until `shutdown` resolves, then drains (see [`server::serve`]).
///
/// Clients are accepted once the slot map is known, or after `session.retry_deadline_ms` if no
/// seed answers by then; the map keeps being refreshed in the background either way. A
/// `shutdown` that resolves before clients are accepted ends it at once, with `Ok`.
///
/// # Errors
/// `Error::Config` if the configuration does not validate.
pub async fn run_with(
    process: Process,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), error::Error> {
    let mut config = config;
    config.validate()?;
    config.resolve_backend_credentials()?;
    config.load_backend_tls()?;
    config.load_client_tls()?;
    if !process.tls_listeners.is_empty() && config.tls.server.is_none() {
        // TLS listeners bound by the caller, whatever `tls_listen` says.
        config.tls.server = Some(server::tls::TlsServer::load(&config.tls)?);
    }
    config.publish_backend_access();
    // A shutdown before clients are served (the seeds slow to answer) ends the process cleanly.
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    // Wrong credentials are an operator's mistake to report now, not a cluster to wait for.
    let seed_addrs = config.seed_addrs();
    tokio::select! {
        checked = backend::setup::check_credentials(&seed_addrs, &config.backend) => {
            checked.map_err(error::Error::BackendAuth)?;
        }
        () = &mut shutdown => {
            info!("stopped before the seeds answered");
            return Ok(());
        }
    }
    let own: Vec<std::net::SocketAddr> = process
        .listeners
        .iter()
        .chain(&process.tls_listeners)
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let seeds = cluster::seeds::without_self(config.seed_addrs(), &own).await;
    if seeds.is_empty() {
        return Err(error::ConfigError::Invalid {
            field: "cluster.seeds",
            reason: "every seed is slotproxy's own listen address; name the Redis Cluster's nodes"
                .into(),
        }
        .into());
    }
    let wake = Arc::new(Notify::new());
    let workers = Arc::new(process.workers.unwrap_or_else(workers::Workers::current));
    let pool = Arc::new(BackendPool::on_workers(
        config.backend.clone(),
        wake.clone(),
        workers.handles().to_vec(),
    ));
    let run_id = cluster::RunId::random();
    let topology = Arc::new(
        Topology::new(pool, seeds, config.cluster.clone(), wake).with_run_id(run_id.clone()),
    );
    topology
        .stats()
        .set_down_after(config.session.retry_deadline());
    let config_tracking_max_keys = config.session.tracking_max_keys;
    let (stop, stopped) = watch::channel(());
    let (hub, hub_task) = pubsub::start(topology.clone(), &config, wait_changed(stopped.clone()));
    let commands = CommandTable::builtin();
    let users = config
        .auth
        .users(&commands)
        .map_err(|e| error::ConfigError::Parse(e.to_string()))?;
    let metrics = Arc::new(metrics::Metrics::new(&commands));
    let registry = Arc::new(clients::Registry::new(
        config.session.max_client_memory_bytes,
    ));
    registry.install_evictor({
        let metrics = metrics.clone();
        move |memory, evicted| clients::report_evictions(&metrics, memory, evicted)
    });
    let shared = Arc::new(Shared {
        live: ArcSwap::from_pointee(config.clone()),
        metrics,
        draining: watch::Sender::new(false),
        auth_failures: AtomicU64::new(0),
        pause: pause::Pause::default(),
        monitors: monitor::Monitors::default(),
        config,
        topology: topology.clone(),
        commands: ArcSwap::from_pointee(commands),
        clients: AtomicUsize::new(0),
        next_client_id: AtomicU64::new(0),
        redis_version: ArcSwap::from_pointee(DEFAULT_REDIS_VERSION.to_string()),
        scripts: session::ScriptCache::default(),
        stop: Notify::new(),
        tracker: Arc::new(tracking::Tracker::new(config_tracking_max_keys)),
        offload: offload::Offload::default(),
        hub,
        acl: auth::Acl::new(users),
        workers,
        registry,
        run_id,
    });

    let refresher = tokio::spawn(
        topology
            .clone()
            .run_refresher(wait_changed(stopped.clone())),
    );
    let learner = tokio::spawn(learn_from_cluster(
        shared.clone(),
        wait_changed(stopped.clone()),
    ));
    let health = tokio::spawn(cluster::health_check::run_health_checks(
        topology.clone(),
        shared.config.cluster.clone(),
        wait_changed(stopped.clone()),
    ));
    let tracker = tokio::spawn(shared.tracker.clone().run(
        topology.clone(),
        shared.config.backend.clone(),
        wait_changed(stopped.clone()),
    ));
    let trimmer = tokio::spawn(clients::trim_idle(
        shared.registry.clone(),
        wait_changed(stopped.clone()),
    ));
    // Whether scripts could copy keys out of the cluster (docs/reliability.md section 4); it
    // ends on its own within the connect and request timeouts.
    let migrate_check = tokio::spawn(backend::migrate_check::check_and_report(
        shared.config.seed_addrs(),
        shared.config.backend.clone(),
        shared.metrics.node_user_can_migrate.clone(),
    ));
    let reloader = process.reload.map(Arc::new);
    let admin = process.admin.map(|listener| {
        tokio::spawn(admin::serve(
            listener,
            shared.clone(),
            reloader.clone(),
            wait_changed(stopped.clone()),
        ))
    });
    let on_sighup = reloader.clone().map(|reloader| {
        tokio::spawn(reload::on_sighup(
            shared.clone(),
            reloader,
            wait_changed(stopped),
        ))
    });

    // Clients that connect before the slot map is known wait in the listen backlog (bounded by
    // the retry deadline), so nothing they send has to be answered without a map.
    let stopped = tokio::select! {
        ready = topology.wait_ready(shared.config.session.retry_deadline()) => {
            if !ready {
                warn!(
                    "no seed answered yet; accepting clients anyway (they get CLUSTERDOWN until \
                     one does)"
                );
            }
            false
        }
        () = &mut shutdown => true,
    };
    if stopped {
        info!("stopped before serving clients");
    } else {
        server::serve(process.listeners, process.tls_listeners, shared, shutdown).await;
    }

    let _ = stop.send(());
    migrate_check.abort();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    if let Some(on_sighup) = on_sighup {
        let _ = on_sighup.await;
    }
    let _ = refresher.await;
    let _ = health.await;
    let _ = learner.await;
    let _ = tracker.await;
    let _ = trimmer.await;
    let _ = hub_task.await;
    Ok(())
}

async fn wait_changed(mut rx: watch::Receiver<()>) {
    let _ = rx.changed().await;
}

/// Once the cluster is reachable, compares the command table with a node's `COMMAND` reply
/// (adding what the node knows and the table lacks) and records the node's `redis_version`.
async fn learn_from_cluster(shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    let learn = async {
        while !shared.topology.wait_ready(Duration::from_secs(60)).await {
            warn!("no cluster node reachable yet; still trying the seeds");
        }
        let node = {
            let map = shared.topology.slot_map();
            match map.shards().first() {
                Some(shard) => shard.primary.clone(),
                None => return,
            }
        };
        let command = Bytes::from_static(b"*1\r\n$7\r\nCOMMAND\r\n");
        match node
            .request(Protocol::Resp2, command)
            .await
            .map(|r| decode_owned(r.raw()))
        {
            Ok(Ok(frame)) => {
                let mut table = CommandTable::clone(&shared.commands.load());
                let added = table.merge_node_commands(&frame);
                if !added.is_empty() {
                    info!(node = node.addr(), commands = ?added, "learned commands the built-in table lacks");
                }
                shared.commands.store(Arc::new(table));
            }
            Ok(Err(e)) => warn!(node = node.addr(), error = %e, "COMMAND reply unreadable"),
            Err(e) => warn!(node = node.addr(), error = %e, "COMMAND failed"),
        }
        let info = Bytes::from_static(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n");
        if let Ok(reply) = node.request(Protocol::Resp2, info).await
            && let Ok(redis_protocol::resp2::types::OwnedFrame::BulkString(text)) =
                decode_owned(reply.raw())
            && let Some(version) = String::from_utf8_lossy(&text)
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:").map(str::to_string))
        {
            shared.redis_version.store(Arc::new(version));
        }
        // Start-up's temporary tables (the topology replies, the `COMMAND` reply and the table
        // built from it) are freed below live memory: give their pages back once.
        allocator::release_free_memory();
    };
    tokio::select! {
        _ = learn => {}
        _ = stop => {}
    }
}
