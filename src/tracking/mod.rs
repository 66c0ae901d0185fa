//! Client-side caching (`CLIENT TRACKING`): which client read which key, and the invalidations
//! the cluster's primaries send when keys change.
//!
//! Each primary has one listener connection with `CLIENT TRACKING ON BCAST` (every key written on
//! the node is pushed to it), open only while some client tracks. The `Tracker` keeps redis'
//! table of keys read by clients in default mode, and each broadcast-mode client's prefixes; an
//! invalidation from any listener goes to the clients that read the key (which then forget it,
//! as in redis) or whose prefixes match. A client's session receives them as [`Invalidation`]s
//! and writes them as its protocol and `REDIRECT` say (`frames.rs` builds the frames).
//!
//! `CLIENT TRACKING ON` is answered once every primary's listener is ready, so nothing the client
//! reads afterwards can change unseen. A listener that is lost, or ready again (reconnected, or a
//! new primary after a failover), may have missed invalidations: every tracking client then gets
//! a null invalidation ("flush everything"), as redis sends after FLUSHALL. The
//! session writes an invalidation after every reply still owed to its client, so a client never
//! caches a value read before a change after being told of the change. Clients with tracking on
//! read from primaries only: a replica may still serve a value its primary already invalidated.

pub mod frames;
pub mod listener;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::cluster::Topology;
use crate::config::BackendConfig;
pub use frames::Redirected;
pub use listener::Invalidation;
use listener::listen;

/// How long listeners stay open after the last tracking client left: clients that track on
/// short-lived connections would otherwise open and close a connection to every primary each
/// time (and wait for them on `CLIENT TRACKING on`).
const LISTENER_LINGER: Duration = Duration::from_secs(10);

/// How a client asked to be told about changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mode {
    /// `BCAST`: every key under one of `prefixes` (all keys when empty), read or not.
    pub bcast: bool,
    /// `PREFIX`es (broadcast mode only), sorted; none is a prefix of another. Shared by the
    /// client's session and the tracker: turning tracking on copies none of them.
    pub prefixes: Arc<BTreeSet<Bytes>>,
    /// `NOLOOP`: not about keys this client wrote itself.
    pub noloop: bool,
}

impl Mode {
    /// Whether a change to `key` concerns a broadcast client with these prefixes.
    ///
    /// As no prefix is a prefix of another, the only one that can cover `key` is the greatest
    /// prefix not after it: one lookup, whatever the number of prefixes.
    pub fn covers(&self, key: &[u8]) -> bool {
        if self.prefixes.is_empty() {
            return true;
        }
        self.prefixes
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|prefix| key.starts_with(prefix))
    }
}

/// One tracking client.
#[derive(Debug)]
struct Client {
    pushes: mpsc::UnboundedSender<Invalidation>,
    mode: Mode,
    /// Broadcast + NOLOOP: keys this client wrote whose invalidation hasn't come back yet.
    own_writes: HashMap<Bytes, usize>,
    /// Its `CLIENT TRACKING ON` was answered: it may hold cached values.
    confirmed: bool,
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<u64, Client>,
    /// Default mode: key -> ids of the clients that read it since it last changed.
    keys: HashMap<Bytes, Vec<u64>>,
    /// Primaries that need a listener, and those whose listener is ready.
    wanted: HashSet<Arc<str>>,
    ready: HashSet<Arc<str>>,
    /// Clients waiting for every listener to be ready before their `ON` is answered.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl State {
    fn all_ready(&self) -> bool {
        !self.wanted.is_empty() && self.wanted.is_subset(&self.ready)
    }

    fn answer_waiters(&mut self) {
        if !self.all_ready() {
            return;
        }
        for (id, waiter) in std::mem::take(&mut self.waiters) {
            if let Some(client) = self.clients.get_mut(&id) {
                client.confirmed = true;
            }
            let _ = waiter.send(());
        }
    }
}

/// The proxy-wide tracking table; sessions register here, listeners report here.
#[derive(Debug)]
pub struct Tracker {
    state: Mutex<State>,
    /// Wakes the listener manager when the first client turns tracking on.
    wake: Notify,
    max_keys: usize,
}

impl Tracker {
    /// An empty table that remembers at most `max_keys` keys (like redis'
    /// `tracking-table-max-keys`; the oldest are invalidated beyond it).
    pub fn new(max_keys: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            max_keys,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("tracking lock is never held across a panic")
    }

    /// Clients with tracking on, and keys remembered for default-mode clients (metrics).
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.clients.len(), state.keys.len())
    }

    /// Turns tracking on (or changes its mode) for client `id`; invalidations go to `pushes`.
    /// `Some` when the client must wait for the listeners before its `ON` is answered.
    pub fn enable(
        &self,
        id: u64,
        mode: Mode,
        pushes: mpsc::UnboundedSender<Invalidation>,
    ) -> Option<oneshot::Receiver<()>> {
        let mut state = self.state();
        let first = state.clients.is_empty();
        let confirmed = state.clients.get(&id).is_some_and(|c| c.confirmed) || state.all_ready();
        // What it replaces (a whole prefix set, maybe) is dropped after the lock is released.
        let _replaced = state.clients.insert(
            id,
            Client {
                pushes,
                mode,
                own_writes: HashMap::new(),
                confirmed,
            },
        );
        let wait = (!confirmed).then(|| {
            let (tx, rx) = oneshot::channel();
            state.waiters.push((id, tx));
            rx
        });
        drop(state);
        if first {
            self.wake.notify_one();
        }
        wait
    }

    /// Client `id` stopped waiting for its `ON` (the listeners took too long): it is told of
    /// lost listeners from now on all the same.
    pub fn confirm(&self, id: u64) {
        if let Some(client) = self.state().clients.get_mut(&id) {
            client.confirmed = true;
        }
    }

    /// Turns tracking off for client `id`; its entries in the key table go lazily.
    pub fn disable(&self, id: u64) {
        // Dropped after the lock is released (the guard is a temporary of this statement).
        let removed = self.state().clients.remove(&id);
        drop(removed);
    }

    /// Client `id` (default mode) read `keys`: tell it when they change.
    pub fn remember<'a>(&self, id: u64, keys: impl Iterator<Item = &'a [u8]>) {
        let mut state = self.state();
        for key in keys {
            let readers = state.keys.entry(Bytes::copy_from_slice(key)).or_default();
            if !readers.contains(&id) {
                readers.push(id);
            }
        }
        while state.keys.len() > self.max_keys {
            let Some(key) = state.keys.keys().next().cloned() else {
                break;
            };
            deliver(&mut state, &[key]);
        }
    }

    /// Client `id` (NOLOOP) is writing `keys`: it isn't told about these changes.
    pub fn wrote<'a>(&self, id: u64, keys: impl Iterator<Item = &'a [u8]>) {
        let mut state = self.state();
        let bcast = match state.clients.get(&id) {
            Some(client) if client.mode.noloop => client.mode.bcast,
            _ => return,
        };
        for key in keys {
            if bcast {
                if let Some(client) = state.clients.get_mut(&id) {
                    *client
                        .own_writes
                        .entry(Bytes::copy_from_slice(key))
                        .or_default() += 1;
                }
            } else if let Some(readers) = state.keys.get_mut(key) {
                readers.retain(|&r| r != id);
            }
        }
    }

    /// Whether any client tracks.
    pub fn active(&self) -> bool {
        !self.state().clients.is_empty()
    }

    fn invalidate(&self, invalidation: Invalidation) {
        let mut state = self.state();
        match invalidation {
            Invalidation::Keys(keys) => deliver(&mut state, &keys),
            Invalidation::All => flush(&mut state),
        }
    }

    /// A listener is ready: clients that may hold values start over, waiting ones are answered.
    fn listener_ready(&self, addr: &Arc<str>) {
        let mut state = self.state();
        state.ready.insert(addr.clone());
        flush(&mut state);
        state.answer_waiters();
    }

    /// A listener is lost: changes on its node go unseen until it is ready again.
    fn listener_lost(&self, addr: &Arc<str>) {
        let mut state = self.state();
        state.ready.remove(addr);
        flush(&mut state);
    }

    /// The primaries that need a listener now (none once no client has tracked for a while).
    fn want(&self, wanted: HashSet<Arc<str>>) {
        let mut state = self.state();
        state.ready.retain(|addr| wanted.contains(addr));
        state.wanted = wanted;
        state.answer_waiters();
    }

    /// Keeps one listener per primary while any client tracks; closes them when none has for
    /// `LISTENER_LINGER`.
    /// Runs until `stop` resolves.
    pub async fn run(
        self: Arc<Self>,
        topology: Arc<Topology>,
        config: BackendConfig,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut listeners: HashMap<Arc<str>, tokio::task::AbortHandle> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut last_active: Option<tokio::time::Instant> = None;
        loop {
            if self.active() {
                last_active = Some(tokio::time::Instant::now());
            }
            let wanted: HashSet<Arc<str>> =
                if last_active.is_some_and(|at| at.elapsed() < LISTENER_LINGER) {
                    let map = topology.slot_map();
                    map.shards()
                        .iter()
                        .map(|shard| Arc::from(shard.primary.addr()))
                        .collect()
                } else {
                    HashSet::new()
                };
            self.want(wanted.clone());
            listeners.retain(|addr, handle| {
                let keep = wanted.contains(addr) && !handle.is_finished();
                if !keep {
                    handle.abort();
                }
                keep
            });
            for addr in wanted {
                if let std::collections::hash_map::Entry::Vacant(entry) = listeners.entry(addr) {
                    let addr = entry.key().clone();
                    let handle = tasks.spawn(keep_listening(self.clone(), addr, config.clone()));
                    entry.insert(handle);
                }
            }
            let idle = listeners.is_empty();
            tokio::select! {
                () = &mut stop => break,
                () = self.wake.notified(), if idle => {}
                () = tokio::time::sleep(Duration::from_millis(200)), if !idle => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.abort_all();
        debug!("tracking listeners stopped");
    }
}

/// Listens to one primary until aborted, reconnecting after failures.
async fn keep_listening(tracker: Arc<Tracker>, addr: Arc<str>, config: BackendConfig) {
    let mut delay = Duration::from_millis(50);
    loop {
        let result = listen(
            &addr,
            &config,
            || {
                info!(node = %addr, "invalidation listener ready");
                tracker.listener_ready(&addr);
            },
            |invalidation| tracker.invalidate(invalidation),
        )
        .await;
        if let Err(e) = result {
            debug!(node = %addr, error = %e, "invalidation listener lost");
        }
        tracker.listener_lost(&addr);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Sends each changed key to the clients that read it or whose prefixes cover it.
fn deliver(state: &mut State, keys: &[Bytes]) {
    let mut batches: HashMap<u64, Vec<&Bytes>> = HashMap::new();
    for key in keys {
        for id in state.keys.remove(key).unwrap_or_default() {
            batches.entry(id).or_default().push(key);
        }
    }
    for (&id, client) in &mut state.clients {
        if !client.mode.bcast {
            continue;
        }
        for key in keys {
            if let Some(count) = client.own_writes.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    client.own_writes.remove(key);
                }
                continue;
            }
            if client.mode.covers(key) {
                batches.entry(id).or_default().push(key);
            }
        }
    }
    for (id, keys) in batches {
        if let Some(client) = state.clients.get(&id) {
            let _ = client
                .pushes
                .send(Invalidation::Keys(keys.into_iter().cloned().collect()));
        }
    }
}

/// Tells every client that may hold cached values to forget them all.
fn flush(state: &mut State) {
    state.keys.clear();
    for client in state.clients.values_mut().filter(|c| c.confirmed) {
        client.own_writes.clear();
        let _ = client.pushes.send(Invalidation::All);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(tracker: &Tracker, id: u64, mode: Mode) -> mpsc::UnboundedReceiver<Invalidation> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tracker.enable(id, mode, tx);
        tracker.confirm(id);
        rx
    }

    fn keys(list: &[&str]) -> Invalidation {
        Invalidation::Keys(list.iter().map(|k| Bytes::from(k.to_string())).collect())
    }

    #[test]
    fn readers_are_told_once_and_broadcast_clients_by_prefix() {
        let tracker = Tracker::new(100);
        let mut reader = client(&tracker, 1, Mode::default());
        let mut bcast = client(
            &tracker,
            2,
            Mode {
                bcast: true,
                prefixes: Arc::new([Bytes::from_static(b"user:")].into()),
                noloop: false,
            },
        );
        tracker.remember(1, [&b"user:1"[..], b"other"].into_iter());
        tracker.invalidate(keys(&["user:1", "user:2", "x"]));
        assert_eq!(reader.try_recv().unwrap(), keys(&["user:1"]));
        assert_eq!(bcast.try_recv().unwrap(), keys(&["user:1", "user:2"]));
        // Told once: a second change of user:1 is not sent until it is read again.
        tracker.invalidate(keys(&["user:1"]));
        assert!(reader.try_recv().is_err());
        tracker.invalidate(Invalidation::All);
        assert_eq!(reader.try_recv().unwrap(), Invalidation::All);
    }

    #[test]
    fn noloop_clients_are_not_told_of_their_own_writes() {
        let tracker = Tracker::new(100);
        let noloop = Mode {
            noloop: true,
            ..Mode::default()
        };
        let mut reader = client(&tracker, 1, noloop.clone());
        tracker.remember(1, [&b"k"[..]].into_iter());
        tracker.wrote(1, [&b"k"[..]].into_iter());
        tracker.invalidate(keys(&["k"]));
        assert!(reader.try_recv().is_err());
        let mut bcast = client(
            &tracker,
            2,
            Mode {
                bcast: true,
                ..noloop
            },
        );
        tracker.wrote(2, [&b"b"[..]].into_iter());
        tracker.invalidate(keys(&["b"]));
        assert!(bcast.try_recv().is_err());
        tracker.invalidate(keys(&["b"]));
        assert!(bcast.try_recv().is_ok());
    }

    #[test]
    fn on_is_answered_when_every_listener_is_ready_and_only_confirmed_clients_flush() {
        let tracker = Tracker::new(100);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("n1"), Arc::from("n2"));
        let (tx, mut pushes) = mpsc::unbounded_channel();
        let mut waiting = tracker.enable(1, Mode::default(), tx).expect("must wait");
        tracker.want([a.clone(), b.clone()].into_iter().collect());
        tracker.listener_ready(&a);
        assert!(waiting.try_recv().is_err(), "one listener is not ready");
        tracker.listener_ready(&b);
        assert!(waiting.try_recv().is_ok());
        assert!(
            pushes.try_recv().is_err(),
            "nothing to flush before ON was answered"
        );
        // Ready now: the next client is answered at once.
        let (tx, _other) = mpsc::unbounded_channel();
        assert!(tracker.enable(2, Mode::default(), tx).is_none());
        tracker.listener_lost(&a);
        assert_eq!(pushes.try_recv().unwrap(), Invalidation::All);
    }

    #[test]
    fn the_table_is_bounded_by_invalidating_keys() {
        let tracker = Tracker::new(2);
        let mut reader = client(&tracker, 1, Mode::default());
        tracker.remember(1, [&b"a"[..], b"b", b"c"].into_iter());
        assert!(
            reader.try_recv().is_ok(),
            "one key was evicted and invalidated"
        );
        assert_eq!(tracker.state().keys.len(), 2);
    }
}
