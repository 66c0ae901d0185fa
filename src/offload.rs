//! CPU-heavy work that a client's input can make large (checking and merging thousands of
//! `CLIENT TRACKING` prefixes) runs here: on one thread of low priority, started on first use.
//!
//! On the I/O threads such work would hold up every other client of the worker; on tokio's
//! blocking pool it would still compete for the cores as an equal of the I/O threads, and a
//! client sending it back to back would slow every other client's replies (on 2 cores, the
//! well-behaved p99 went from 1 to 4.6 ms in `tests/it/hostile.rs`). On Linux the thread is
//! in the `SCHED_IDLE` class: it runs on CPU time no other thread wants, and a thread that
//! wakes takes its core at once, so a flood of such requests slows its sender, not the others.
//! (At nice 10, as before, a waking I/O thread could still wait for the core up to the
//! scheduler's wakeup granularity, and the same tests measured the others' p99 at 2.5-3x.)
//! One thread also caps it at one core. The price is the sender's: while the cores stay busy,
//! its request waits for the time they leave.
//!
//! The queue is unbounded, but each session waits for its job before it sends another, so it
//! holds at most one job per client.

use std::sync::Mutex;
use std::sync::mpsc;

use tokio::sync::oneshot;
use tracing::{debug, warn};

type Job = Box<dyn FnOnce() + Send>;

/// The low-priority thread's queue; the thread ends when this is dropped.
#[derive(Debug, Default)]
pub struct Offload {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Offload {
    /// Runs `work` on the low-priority thread. The receiver gets its result, or an error if
    /// the thread could not start.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The session may have left meanwhile; nothing waits for the result then.
            let _ = done.send(work());
        });
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.is_none() {
            *jobs = start();
        }
        if let Some(sender) = jobs.as_ref()
            && let Err(mpsc::SendError(job)) = sender.send(job)
        {
            // The thread is gone (it panicked): drop the job, which drops `done`, and start
            // a new thread for the next one.
            drop(job);
            *jobs = None;
        }
        result
    }
}

/// Starts the thread; `None` (logged) if the system refused.
fn start() -> Option<mpsc::Sender<Job>> {
    let (sender, queue) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("slotproxy-offload".into())
        .spawn(move || {
            lower_priority();
            for job in queue {
                job();
            }
            debug!("offload thread: slotproxy is stopping; ending");
        });
    match spawned {
        Ok(_) => Some(sender),
        Err(e) => {
            warn!(error = %e, "could not start the offload thread");
            None
        }
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class (the policy is per thread there).
#[allow(unsafe_code)]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` for the whole call; pid 0 is this thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            let e = std::io::Error::last_os_error();
            warn!(error = %e, "could not lower the offload thread's priority (SCHED_IDLE)");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(unsafe_code)]
    async fn work_runs_on_an_idle_priority_thread() {
        let offload = Offload::default();
        let (name, policy) = offload
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                // SAFETY: no arguments but this thread's pid, 0.
                (name, unsafe { libc::sched_getscheduler(0) })
            })
            .await
            .expect("the job ran");
        assert_eq!(name.as_deref(), Some("slotproxy-offload"));
        assert_eq!(policy, libc::SCHED_IDLE);
        // The thread stays for the next job.
        assert_eq!(offload.run(|| 2 + 2).await.ok(), Some(4));
    }
}
