//! Idle clients give back the buffers their sessions keep for reuse, as redis-server's cron
//! shrinks idle clients' query buffers: a session keeps its read buffer and its output buffer
//! between requests (reallocating them per request costs about 9% more instructions per
//! request), so without this every client that was ever busy would hold them while idle.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Registry;

/// How long a client sends and receives nothing before its session frees its buffers.
pub const IDLE_TRIM: Duration = Duration::from_secs(2);

/// How often the registry is looked over for newly idle clients.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Rings [`crate::alarm::Bells::TRIM`] for each client idle for [`IDLE_TRIM`], once per idle
/// spell, until `stop` completes.
pub async fn trim_idle(registry: Arc<Registry>, stop: impl Future<Output = ()>) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweeps = async {
        loop {
            sweep.tick().await;
            registry.trim_idle(Instant::now().into_std(), IDLE_TRIM);
        }
    };
    tokio::select! {
        () = sweeps => {}
        () = stop => {}
    }
}
