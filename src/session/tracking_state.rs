//! A tracking client's options and its invalidations (`CLIENT TRACKING ON`, in `tracking.rs`).

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::tracking::Mode;

/// A tracking client's options.
#[derive(Debug)]
pub(super) struct Tracking {
    pub(super) mode: Mode,
    pub(super) optin: bool,
    pub(super) optout: bool,
    /// `CLIENT CACHING yes|no`, for the next command.
    pub(super) caching: Option<bool>,
    /// Invalidations for this client, from the tracker.
    pub(super) pushes: mpsc::UnboundedReceiver<Bytes>,
    pub(super) sender: mpsc::UnboundedSender<Bytes>,
}
