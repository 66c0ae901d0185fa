//! slotproxy: a Redis Cluster proxy. Cluster-unaware clients connect to one address; slotproxy
//! routes each command to the node that owns its keys and answers as one redis-server would.
//!
//! # Life of a command
//!
//! 1. [`server`] accepts a client (once the first slot map is known) and spawns a
//!    [`session::Session`] task for it (in protected mode, a client from another host of a
//!    proxy without password or users gets redis' `-DENIED` text instead).
//! 2. The session's [`protocol::RequestDecoder`] yields a [`protocol::Request`]: the arguments as
//!    slices of the read buffer plus the raw bytes, which are what gets forwarded (re-encoded
//!    when the client's separators were not CRLF, so a node only ever sees canonical frames).
//!    The decoder accepts exactly what redis-server accepts; anything else gets redis' own
//!    `-ERR Protocol error: ...` and the connection is closed, as redis-server does.
//! 3. [`command::CommandTable::resolve`] finds the command's row (generated from a node's
//!    `COMMAND` output, plus commands learned from the cluster at startup). An unknown command or
//!    a wrong arity gets redis' error and the connection stays open. Then the one ACL check
//!    (`session/acl.rs`, [`auth::check`]): `-NOAUTH` until the client authenticates, `-NOPERM`
//!    for a command, key or channel its user may not use (redis 7.0's rules and texts, no round
//!    trip); `ACL ...` is answered from slotproxy's own users. Inside `MULTI`, commands are
//!    checked and queued by the session instead (`session/transaction.rs`).
//! 4. The row's [`command::Policy`], decided once per row when the table is built
//!    (`command/policy.rs`), says how to serve it; `session/plan.rs` matches on its `Handling`:
//!    - `Local`: answered by the session (PING, HELLO, CLIENT SETNAME..., MULTI/EXEC (run per
//!      slot when `cross_slot_transactions = "per-slot"`: `session/per_slot.rs`), and the
//!      CLUSTER/CLIENT introspection of `session/introspect.rs`); SCAN builds its own request
//!      for one primary (`session/scan.rs`); WAIT/WAITAOF go out on the connections the
//!      session's writes used, to every node it wrote to (`session/wait.rs`). Pub/sub commands update the session's own
//!      subscription set, which builds their replies, and go to the [`pubsub`] hub: one task
//!      that holds each channel once on a node connection of its own (keyspace notification
//!      channels on one node per shard, since each node publishes only its own keys' events)
//!      and copies every message into the [`inbox`] of each subscribed session
//!      (`session/pubsub.rs`). `PUBLISH` and the
//!      `PUBSUB` counts go through the hub too, so they count the proxy's subscribers.
//!    - `Single`, `Split`, `Computed`: keys found by the row's key specs and hashed with
//!      [`cluster::hash_slot`]. One slot: sent there (read-only commands may go to a replica,
//!      blocking ones on a dedicated connection). Several slots: MGET/MSET/DEL/UNLINK/EXISTS/TOUCH are split by slot
//!      (`session/split.rs`); the read-only SUNION/SINTER/SDIFF/SINTERCARD,
//!      ZUNION/ZINTER/ZDIFF/ZINTERCARD and PFCOUNT are computed by the proxy from one read per
//!      key (`session/algebra/`); anything else, writes included (`SUNIONSTORE`, `PFMERGE`...),
//!      gets `-CROSSSLOT`.
//!    - `FanOut`: DBSIZE, KEYS, FLUSH*, INFO... go to every primary and are merged.
//!    - `AnyNode` (keyless, any node answers alike), `Admin` (refused unless the configuration
//!      allows it) or `Refused` (`-ERR` naming the command).
//! 5. If no cluster node has answered for longer than the retry deadline, the request fails at
//!    once with `-CLUSTERDOWN` naming that ([`cluster::RefreshStats::down_reason`]). Otherwise
//!    the session loads the [`cluster::SlotMap`] once, picks the shard's node (the primary, or
//!    for a read, a node the read policy allows: never a replica that fails its health check or
//!    lags its primary, and the primary for a slot the session wrote within the
//!    read-your-writes window), and queues the request on that node's shared connection
//!    (always the same one for a given session, so its requests to a node keep their order) or
//!    on the session's own dedicated connection (blocking commands, WATCH). The
//!    [`backend::connection`] task writes every queued request in one batch and hands replies back
//!    in FIFO order through a oneshot per request. A request waits (`Deferred`) while older ones
//!    are unanswered if the map changed since they were sent or one of them went out on a
//!    dedicated connection, so nothing overtakes them on a node; the map that check read is the
//!    one the request is sent under, even if the refresher publishes another meanwhile. A request for a primary that
//!    fails its health check is not sent: it waits with backoff (as in step 6) until the
//!    primary answers again or the refreshed map names the replica that replaced it. A node
//!    that answers `-BUSY` (a long script) passes its check: its requests get that `-BUSY`, and
//!    `SCRIPT KILL` goes out on the session's own connection, never behind the script.
//! 6. When the request reaches the front of the session's queue its reply is settled: on `MOVED`
//!    the session asks the [`cluster::Topology`] for a refresh and resends to the named node; on
//!    `ASK` it sends `ASKING` + the command to the target and leaves the map alone; both are
//!    capped by `max_redirects`. `TRYAGAIN`, `CLUSTERDOWN` and unreachable nodes are retried with
//!    backoff until `retry_deadline`; a node that refuses slotproxy's credentials is not
//!    retried: the client gets `-ERR` naming it at once. A request whose connection died after it was written is
//!    sent again if it is read-only; a write gets an error saying its outcome is unknown, and is
//!    never sent twice. Split requests settle part by part and are merged in key order;
//!    computed ones once every key's read has settled, reading the nodes' replies through
//!    [`protocol::View`]. Every error reply slotproxy makes itself, here or earlier, is an
//!    [`error::ReplyError`]: its text, spelled once, and whether a retry is safe.
//! 7. With `CLIENT TRACKING` on, the session gives the keys of its read-only commands to the
//!    [`tracking::Tracker`] before sending them; invalidations that primaries stream to the
//!    tracker reach the session as pushes, queued behind every reply it still owes.
//! 8. Replies leave in request order; the session writes all that are ready at once, without
//!    blocking its reads. A client whose unwritten replies plus the replies node connections
//!    handed over for it (its [`backend::ReplyBudget`]) pass `max_output_buffer_bytes` is
//!    disconnected, as by redis' `client-output-buffer-limit`; requests of a departed client
//!    that no node connection has written yet are never sent. As a reply is queued for
//!    writing, its command's counters and latency are recorded in [`metrics::Metrics`]
//!    (handles cached per command, no lookup by name).
//!    Pub/sub messages from the session's inbox are written between replies as they come; a
//!    subscription's confirmation waits in the inbox, among the messages, for its turn in the
//!    reply order. A subscriber whose backlog passes `pubsub_output_buffer_bytes` is closed.
//!
//! Every connection to a node (shared, dedicated, pub/sub link, tracking listener, health
//! check, `MONITOR`) starts in [`backend::setup::open`], which authenticates with the
//! `[backend]` credentials; before accepting clients, `run` checks that a seed accepts them.
//!
//! Alongside, two tasks keep the picture of the cluster current: the refresher
//! ([`cluster::Topology::run_refresher`]: on a timer, on `MOVED`, on failed connections and
//! failed health checks; it asks three nodes at once and keeps the answer with the greatest
//! config epoch) and the health checks ([`cluster::health`]: `PING` and `INFO replication` to
//! every node on a connection of its own, which mark nodes up, down or lagging and measure the
//! round-trip times `read_policy = "nearest"` uses).
//!
//! Around them, [`run_with`] serves the [`admin`] HTTP listener (`/metrics`, `/readyz`...),
//! reloads the config on SIGHUP or `POST /reload` ([`reload`]: reloadable keys are read from
//! `Shared.live` for each new client or request), and on shutdown drains ([`server`]): readiness
//! fails at once, each session answers what it had read and closes, the listener closes after
//! `drain_delay_ms`.

pub mod admin;
pub mod auth;
pub mod backend;
pub mod cluster;
pub mod command;
pub mod config;
pub mod error;
pub mod inbox;
pub mod launch;
pub mod metrics;
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
/// seed answers by then; the map keeps being refreshed in the background either way.
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
    // Wrong credentials are an operator's mistake to report now, not a cluster to wait for.
    backend::setup::check_credentials(&config.seed_addrs(), &config.backend)
        .await
        .map_err(error::Error::BackendAuth)?;
    let own: Vec<std::net::SocketAddr> = process
        .listeners
        .iter()
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
    let topology = Arc::new(Topology::new(pool, seeds, config.cluster.clone(), wake));
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
    let shared = Arc::new(Shared {
        live: ArcSwap::from_pointee(config.clone()),
        metrics,
        draining: watch::Sender::new(false),
        auth_failures: AtomicU64::new(0),
        config,
        topology: topology.clone(),
        commands: ArcSwap::from_pointee(commands),
        clients: AtomicUsize::new(0),
        next_client_id: AtomicU64::new(0),
        redis_version: ArcSwap::from_pointee(DEFAULT_REDIS_VERSION.to_string()),
        scripts: session::ScriptCache::default(),
        stop: Notify::new(),
        tracker: Arc::new(tracking::Tracker::new(config_tracking_max_keys)),
        hub,
        acl: session::Acl::new(users),
        workers,
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
    let health = tokio::spawn(cluster::health::run_health_checks(
        topology.clone(),
        shared.config.cluster.clone(),
        wait_changed(stopped.clone()),
    ));
    let tracker = tokio::spawn(shared.tracker.clone().run(
        topology.clone(),
        shared.config.backend.clone(),
        wait_changed(stopped.clone()),
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
    if !topology
        .wait_ready(shared.config.session.retry_deadline())
        .await
    {
        warn!(
            "no seed answered yet; accepting clients anyway (they get CLUSTERDOWN until one does)"
        );
    }
    server::serve(process.listeners, shared, shutdown).await;

    let _ = stop.send(());
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
    };
    tokio::select! {
        _ = learn => {}
        _ = stop => {}
    }
}
