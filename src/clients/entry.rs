//! What one session publishes about itself for the other sessions (see the module doc), and
//! the orders other sessions leave for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::unblock::UnblockMode;
use crate::alarm::Bells;
use crate::backend::{Node, NodeResult, ReplyBudget};
use crate::protocol::View;
use crate::tracking::Redirected;

/// One connected client, as others see it.
#[derive(Debug)]
pub struct ClientEntry {
    /// The client id (`CLIENT ID`).
    pub id: u64,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// slotproxy's address the client connected to.
    pub local: Option<SocketAddr>,
    /// The socket's file descriptor, -1 where there is none to show.
    pub fd: i64,
    connected: Instant,
    /// Milliseconds from `connected` to the last read or write.
    active_ms: AtomicU64,
    /// `active_ms` when [`Bells::TRIM`] was last rung: once per idle spell.
    trimmed_ms: AtomicU64,
    /// The last command's metrics row plus one; 0 before the first.
    command: AtomicUsize,
    net_in: AtomicU64,
    net_out: AtomicU64,
    commands: AtomicU64,
    profile: Mutex<Profile>,
    blocked: Mutex<Option<Blocked>>,
    killed: AtomicBool,
    /// `CLIENT NO-EVICT on`: never evicted for `max_client_memory_bytes`.
    no_evict: AtomicBool,
    order: Mutex<Option<Order>>,
    /// Invalidations of clients whose `CLIENT TRACKING ... REDIRECT` names this one.
    redirected: Mutex<Vec<Redirected>>,
    /// The client's reply budget and memory share; rings the session's alarm when an order is
    /// left.
    budget: Arc<ReplyBudget>,
}

/// What a session publishes when it changes (rarely: not per request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// The ACL user.
    pub user: String,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// Redis' client flags that apply to slotproxy's clients.
    pub flags: Flags,
    /// Channels, patterns and shard channels subscribed to.
    pub subscriptions: [usize; 3],
    /// Commands queued in `MULTI`, or -1 outside a transaction.
    pub multi: i64,
    /// 2 or 3.
    pub resp: u8,
    /// Where tracking redirects invalidations (`redir=`): the client id, 0 for none, -1
    /// without tracking.
    pub redir: i64,
}

/// The `flags=` letters slotproxy's clients can have, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// `O`: `MONITOR`.
    pub const MONITOR: Flags = Flags(1);
    /// `P`: subscribed to something.
    pub const PUBSUB: Flags = Flags(2);
    /// `x`: in `MULTI`.
    pub const MULTI: Flags = Flags(4);
    /// `b`: blocked in a command on a node.
    pub const BLOCKED: Flags = Flags(8);
    /// `t`: `CLIENT TRACKING on`.
    pub const TRACKING: Flags = Flags(16);
    /// `r`: `READONLY`.
    pub const READONLY: Flags = Flags(32);
    /// `R`: tracking's `REDIRECT` target was gone when an invalidation was due.
    pub const BROKEN_REDIRECT: Flags = Flags(64);
    /// `B`: tracking in `BCAST` mode.
    pub const BCAST: Flags = Flags(128);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with `other`'s bits set when `on`.
    #[must_use]
    pub fn with(self, other: Flags, on: bool) -> Flags {
        if on { Flags(self.0 | other.0) } else { self }
    }

    /// The letters, in redis-server's order; `N` for none.
    pub fn letters(self) -> String {
        let mut text: String = [
            (Flags::MONITOR, 'O'),
            (Flags::PUBSUB, 'P'),
            (Flags::MULTI, 'x'),
            (Flags::BLOCKED, 'b'),
            (Flags::TRACKING, 't'),
            (Flags::BROKEN_REDIRECT, 'R'),
            (Flags::BCAST, 'B'),
            (Flags::READONLY, 'r'),
        ]
        .iter()
        .filter(|(flag, _)| self.contains(*flag))
        .map(|&(_, letter)| letter)
        .collect();
        if text.is_empty() {
            text.push('N');
        }
        text
    }
}

/// What another session asks of this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Close now (`CLIENT KILL`, `ACL DELUSER`).
    Kill,
    /// End the blocked command here, closing its node connection (`CLIENT UNBLOCK` when the
    /// node can't be asked to).
    Unblock(UnblockMode),
}

/// The node connection a blocked client waits on.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// The node running the blocked command.
    pub node: Arc<Node>,
    /// That connection's client id on the node.
    pub node_client: Arc<NodeClientId>,
}

/// A dedicated connection's client id on its node, learned from a `CLIENT ID` sent ahead of
/// its first command.
#[derive(Debug)]
pub struct NodeClientId(Mutex<IdState>);

#[derive(Debug)]
enum IdState {
    Asked(oneshot::Receiver<NodeResult>),
    Known(i64),
    Unknown,
}

impl NodeClientId {
    /// The id the node will give in its reply on `rx`.
    pub fn asked(rx: oneshot::Receiver<NodeResult>) -> NodeClientId {
        NodeClientId(Mutex::new(IdState::Asked(rx)))
    }

    /// An id that will never be known.
    pub fn unknown() -> NodeClientId {
        NodeClientId(Mutex::new(IdState::Unknown))
    }

    /// The id if the node answered, whether its answer may still come otherwise.
    pub fn lookup(&self) -> Lookup {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let IdState::Asked(rx) = &mut *state {
            match rx.try_recv() {
                Ok(Ok(reply)) => {
                    *state = match View::of(reply.raw()).and_then(|v| v.integer()) {
                        Some(id) => IdState::Known(id),
                        None => IdState::Unknown,
                    };
                }
                Err(oneshot::error::TryRecvError::Empty) => return Lookup::Pending,
                Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                    *state = IdState::Unknown;
                }
            }
        }
        match *state {
            IdState::Known(id) => Lookup::Known(id),
            _ => Lookup::Never,
        }
    }
}

/// What is known of a dedicated connection's client id on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The node's answer to `CLIENT ID`.
    Known(i64),
    /// Asked; the node has not answered yet (it reads the command sent behind it right after).
    Pending,
    /// It will never be known: the node refused `CLIENT ID`, or the connection failed.
    Never,
}

impl ClientEntry {
    /// A new client's entry.
    pub fn new(
        id: u64,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        fd: i64,
        budget: Arc<ReplyBudget>,
    ) -> ClientEntry {
        ClientEntry {
            id,
            peer,
            local,
            fd,
            connected: Instant::now(),
            active_ms: AtomicU64::new(0),
            trimmed_ms: AtomicU64::new(u64::MAX),
            command: AtomicUsize::new(0),
            net_in: AtomicU64::new(0),
            net_out: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            profile: Mutex::new(Profile {
                multi: -1,
                resp: 2,
                redir: -1,
                ..Profile::default()
            }),
            blocked: Mutex::new(None),
            killed: AtomicBool::new(false),
            no_evict: AtomicBool::new(false),
            order: Mutex::new(None),
            redirected: Mutex::new(Vec::new()),
            budget,
        }
    }

    /// Seconds since the client connected.
    pub fn age_secs(&self) -> u64 {
        self.connected.elapsed().as_secs()
    }

    /// Seconds since the client's last read or write.
    pub fn idle_secs(&self) -> u64 {
        let active = self.active_ms.load(Ordering::Relaxed);
        (self.connected.elapsed().as_millis() as u64).saturating_sub(active) / 1000
    }

    /// Rings the session's [`Bells::TRIM`] when the client has been idle for `idle` at `now`,
    /// once per idle spell; true if it rang.
    pub fn trim_if_idle(&self, now: Instant, idle: Duration) -> bool {
        let active = self.active_ms.load(Ordering::Relaxed);
        let now_ms = now.saturating_duration_since(self.connected).as_millis() as u64;
        let newly_idle = now_ms.saturating_sub(active) >= idle.as_millis() as u64
            && self.trimmed_ms.swap(active, Ordering::Relaxed) != active;
        if newly_idle {
            self.ring(Bells::TRIM);
        }
        newly_idle
    }

    /// Records a read of `bytes` from the client at `now`.
    pub fn read(&self, bytes: usize, now: Instant) {
        self.net_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.touch(now);
    }

    /// Records a write of `bytes` to the client at `now`.
    pub fn wrote(&self, bytes: usize, now: Instant) {
        self.net_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.touch(now);
    }

    fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.connected).as_millis() as u64;
        self.active_ms.store(ms, Ordering::Relaxed);
    }

    /// Records a command: its metrics row (see [`crate::metrics::Metrics::command_row`]).
    pub fn command(&self, row: usize) {
        self.command.store(row + 1, Ordering::Relaxed);
        self.commands.fetch_add(1, Ordering::Relaxed);
    }

    /// The last command's metrics row, if any.
    pub fn last_command(&self) -> Option<usize> {
        self.command.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Bytes read from and written to the client, and commands it sent.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.net_in.load(Ordering::Relaxed),
            self.net_out.load(Ordering::Relaxed),
            self.commands.load(Ordering::Relaxed),
        )
    }

    /// The published profile.
    pub fn profile(&self) -> MutexGuard<'_, Profile> {
        self.profile.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a changed profile.
    pub fn set_profile(&self, profile: Profile) {
        *self.profile() = profile;
    }

    /// Publishes where the client is blocked (`None`: it no longer is).
    pub fn set_blocked(&self, blocked: Option<Blocked>) {
        *self.blocked.lock().unwrap_or_else(|e| e.into_inner()) = blocked;
    }

    /// Where the client is blocked, if it is.
    pub fn blocked_on(&self) -> Option<Blocked> {
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Leaves `order` for the session and wakes it. A kill is final: it hides the entry from
    /// listings at once, and no later order replaces it.
    pub fn order(&self, order: Order) {
        {
            let mut slot = self.order.lock().unwrap_or_else(|e| e.into_inner());
            if *slot == Some(Order::Kill) {
                return;
            }
            *slot = Some(order);
        }
        if order == Order::Kill {
            self.killed.store(true, Ordering::Release);
        }
        self.budget.ring(Bells::ORDER);
    }

    /// Rings the session's alarm.
    pub fn ring(&self, bell: Bells) {
        self.budget.ring(bell);
    }

    /// Sets `CLIENT NO-EVICT`: whether the client is spared when clients are evicted for
    /// memory.
    pub fn set_no_evict(&self, on: bool) {
        self.no_evict.store(on, Ordering::Relaxed);
    }

    /// Whether the client asked never to be evicted (`CLIENT NO-EVICT on`).
    pub fn no_evict(&self) -> bool {
        self.no_evict.load(Ordering::Relaxed)
    }

    /// The client's reply budget, with the memory it holds.
    pub fn memory(&self) -> &ReplyBudget {
        &self.budget
    }

    /// Whether the client was ordered to close.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// The order left for the session, taken.
    pub fn take_order(&self) -> Option<Order> {
        self.order.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Hands the session an invalidation another client redirects to it, and wakes it.
    pub fn redirect(&self, invalidation: Redirected) {
        self.redirected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(invalidation);
        self.budget.ring(Bells::ORDER);
    }

    /// The invalidations redirected to the session since the last call, oldest first.
    pub fn take_redirected(&self) -> Vec<Redirected> {
        std::mem::take(&mut *self.redirected.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A reply budget without limits, in a pool of its own.
    pub(in crate::clients) fn budget() -> Arc<ReplyBudget> {
        Arc::new(ReplyBudget::new(
            usize::MAX,
            Default::default(),
            Default::default(),
        ))
    }

    #[test]
    fn flags_print_in_redis_order_and_n_when_none() {
        assert_eq!(Flags::default().letters(), "N");
        let flags = Flags::default()
            .with(Flags::READONLY, true)
            .with(Flags::BLOCKED, true)
            .with(Flags::PUBSUB, true)
            .with(Flags::MULTI, false);
        assert_eq!(flags.letters(), "Pbr");
    }

    #[test]
    fn a_kill_is_not_replaced_by_a_later_unblock() {
        let entry = ClientEntry::new(1, None, None, -1, budget());
        entry.order(Order::Kill);
        entry.order(Order::Unblock(UnblockMode::Error));
        assert!(entry.killed());
        assert_eq!(entry.take_order(), Some(Order::Kill));
    }
}
