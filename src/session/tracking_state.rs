//! A tracking client's options and its invalidations (`CLIENT TRACKING ON`, in `tracking.rs`).

use std::collections::BTreeSet;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::ReplyError;
use crate::tracking::{Invalidation, Mode};

/// The options of a `CLIENT TRACKING ON` that passed redis' checks, waiting for its prefix set.
#[derive(Debug)]
pub(super) struct TrackingOn {
    /// `BCAST` and `NOLOOP`; the prefixes come with [`Prefixes`].
    pub(super) mode: Mode,
    pub(super) optin: bool,
    pub(super) optout: bool,
    pub(super) redirect: u64,
}

/// The client's prefix set with the new prefixes merged in, or redis' overlap error and the set
/// as it was.
pub(super) type Prefixes = Result<BTreeSet<Bytes>, (ReplyError, BTreeSet<Bytes>)>;

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
