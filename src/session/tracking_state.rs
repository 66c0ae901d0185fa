//! A tracking client's options and its invalidations (`CLIENT TRACKING ON`, in `tracking.rs`).

use tokio::sync::mpsc;

use crate::tracking::{Invalidation, Mode};

/// A tracking client's options.
#[derive(Debug)]
pub(super) struct Tracking {
    pub(super) mode: Mode,
    pub(super) optin: bool,
    pub(super) optout: bool,
    /// `CLIENT CACHING yes|no`, for the next command.
    pub(super) caching: Option<bool>,
    /// `REDIRECT`: the client id invalidations go to instead (0: this client).
    pub(super) redirect: u64,
    /// The `REDIRECT` target was gone when an invalidation was due (until the next `ON`).
    pub(super) broken: bool,
    /// Invalidations for this client, from the tracker.
    pub(super) pushes: mpsc::UnboundedReceiver<Invalidation>,
    pub(super) sender: mpsc::UnboundedSender<Invalidation>,
}
