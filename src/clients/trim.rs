//! Idle clients give back the buffers their sessions keep for reuse, as redis-server's cron
//! shrinks idle clients' query buffers: a session keeps its read buffer and its output buffer
//! between requests (reallocating them per request costs about 9% more instructions per
//! request), so without this every client that was ever busy would hold them while idle.
//!
//! What they free, and what clients that left freed, stays in glibc's heap as free chunks
//! (only the heap's top is returned on its own), so the process' RSS would stay at its peak.
//! The sweep after one that trimmed clients or saw clients leave hands the free pages back to
//! the OS ([`crate::allocator::release_free_memory`]), at most every [`RELEASE_EVERY`]: a
//! page reused later costs a page fault, so this is not done per request.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Registry;

/// How long a client sends and receives nothing before its session frees its buffers.
pub const IDLE_TRIM: Duration = Duration::from_secs(2);

/// How often the registry is looked over for newly idle clients.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Free heap pages go back to the OS at most this often.
const RELEASE_EVERY: Duration = Duration::from_secs(10);

/// Rings [`crate::alarm::Bells::TRIM`] for each client idle for [`IDLE_TRIM`], once per idle
/// spell, and returns freed heap pages to the OS after clients were trimmed or left, until
/// `stop` completes.
pub async fn trim_idle(registry: Arc<Registry>, stop: impl Future<Output = ()>) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweeps = async {
        let mut release = Release::default();
        let mut clients_before = registry.len();
        loop {
            sweep.tick().await;
            let now = Instant::now();
            // Sessions free their buffers when their bell rings, after the sweep that rang it:
            // the pages are released at a later sweep.
            release.maybe_now(now);
            let clients = registry.len();
            let rang = registry.trim_idle(now.into_std(), IDLE_TRIM) > 0;
            release.owed |= rang || clients < clients_before;
            clients_before = clients;
        }
    };
    tokio::select! {
        () = sweeps => {}
        () = stop => {}
    }
}

/// When freed heap pages were last given back, and whether more were freed since.
#[derive(Debug, Default)]
struct Release {
    owed: bool,
    last: Option<Instant>,
}

impl Release {
    /// Gives the free pages back if some are owed and the last release was long enough ago;
    /// true if it did.
    fn maybe_now(&mut self, now: Instant) -> bool {
        let due = self.owed && self.last.is_none_or(|t| now - t >= RELEASE_EVERY);
        if due {
            crate::allocator::release_free_memory();
            self.owed = false;
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_released_only_when_owed_and_at_most_every_release_interval() {
        let start = Instant::now();
        let mut release = Release::default();
        assert!(!release.maybe_now(start), "nothing freed yet");
        release.owed = true;
        assert!(release.maybe_now(start), "the first release is at once");
        release.owed = true;
        assert!(!release.maybe_now(start + RELEASE_EVERY / 2));
        assert!(release.owed, "still owed after a refused release");
        assert!(release.maybe_now(start + RELEASE_EVERY));
        assert!(
            !release.maybe_now(start + RELEASE_EVERY * 3),
            "nothing owed"
        );
    }
}
