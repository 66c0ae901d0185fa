//! What wakes a session's loop (`Session::run` in `mod.rs`): the events its `select!` waits
//! for, and the futures for the sources that may be absent (a retry's backoff, a pause holding
//! a request, a tracking client's invalidations, a `MONITOR` feed).
//!
//! The `select!` makes every branch's future on every pass and keeps them in the client's task,
//! so a wait that is rare and large (a timer is 112 bytes, the pause's wait 264) lives on the
//! heap and is made only when first needed: [`RetryTimer`], [`PauseWait`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use super::queue;
use super::tracking_state;
use crate::alarm::Bells;

/// One wake-up of the session's loop.
pub(super) enum Event {
    /// The session's alarm rang: an order from another session (kill, unblock), the reply
    /// budget or the clients' memory budget crossed, or the drain began.
    Alarm(Bells),
    Drain,
    Monitor(Option<Bytes>),
    Invalidation(crate::tracking::Invalidation),
    Reply(queue::FrontEvent),
    Timer,
    Writable(std::io::Result<()>),
    Inbox,
    Read(std::io::Result<usize>),
}

/// The next invalidation for a tracking client.
pub(super) async fn next_invalidation(
    tracking: &mut Option<Box<tracking_state::Tracking>>,
) -> Option<crate::tracking::Invalidation> {
    match tracking {
        Some(tracking) => tracking.pushes.recv().await,
        None => std::future::pending().await,
    }
}

/// The timer of the front entry's retry: made on the first backoff, reset for later ones.
#[derive(Debug, Default)]
pub(super) struct RetryTimer(Option<Pin<Box<Sleep>>>);

impl RetryTimer {
    /// Ready once `at` has passed.
    pub(super) fn poll_until(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep.as_mut().poll(cx)
    }
}

/// The wait of a request held by `CLIENT PAUSE`: made when first polled, gone once it ends.
#[derive(Default)]
pub(super) struct PauseWait(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl PauseWait {
    /// Ready when the pause ends or changes (`UNPAUSE`, another `PAUSE`).
    pub(super) fn poll_end(
        &mut self,
        pause: &tokio::sync::watch::Receiver<Option<crate::pause::Paused>>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let wait = self.0.get_or_insert_with(|| {
            let mut pause = pause.clone();
            Box::pin(async move { pause_ends(&mut pause).await })
        });
        let ended = wait.as_mut().poll(cx);
        if ended.is_ready() {
            self.0 = None;
        }
        ended
    }
}

impl std::fmt::Debug for PauseWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PauseWait").field(&self.0.is_some()).finish()
    }
}

/// When the pause holding a request ends, or changes (`UNPAUSE`, another `PAUSE`).
async fn pause_ends(pause: &mut tokio::sync::watch::Receiver<Option<crate::pause::Paused>>) {
    let until = pause.borrow_and_update().map(|p| p.until);
    if let Some(until) = until {
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            _ = pause.changed() => {}
        }
    }
}

/// The next `MONITOR` line (`None` once the feed has ended).
pub(super) async fn next_monitor_line(
    monitor: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>,
) -> Option<Bytes> {
    match monitor {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}
