//! What wakes a session's loop (`Session::run` in `mod.rs`): the events its `select!` waits
//! for, and the futures for the sources that may be absent (a pause holding a request, a
//! tracking client's invalidations, a `MONITOR` feed).

use bytes::Bytes;

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
    tracking: &mut Option<tracking_state::Tracking>,
) -> Option<crate::tracking::Invalidation> {
    match tracking {
        Some(tracking) => tracking.pushes.recv().await,
        None => std::future::pending().await,
    }
}

/// When the pause holding a request ends, or changes (`UNPAUSE`, another `PAUSE`).
pub(super) async fn pause_ends(
    pause: &mut tokio::sync::watch::Receiver<Option<crate::pause::Paused>>,
) {
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
