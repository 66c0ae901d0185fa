//! Worker threads: each runs its own single-threaded runtime with its clients' sessions and its
//! own connections to every node.
//!
//! A session and the node connections it uses live on one thread, so handing a request to a
//! node connection and its reply back never wakes another thread: no futex, no cross-core cache
//! traffic, no work stealing. The proxy scales with cores by adding workers, each a copy of the
//! one-thread design (clients are spread over them round-robin as they connect), rather than by
//! sharing one scheduler. What all sessions share (the slot map, the pub/sub hub, the refresher,
//! the admin listener) runs on the main runtime and is reached through channels and `ArcSwap`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tracing::debug;

/// Where sessions and their node connections run.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Round-robin position for the next client.
    next: AtomicUsize,
}

/// The threads behind `Workers::start`; `stop` ends them.
#[derive(Debug)]
pub struct WorkerThreads {
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// One worker: the runtime this is called on (tests, and `threads = 1`).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn current() -> Self {
        Self::of(vec![Handle::current()])
    }

    fn of(handles: Vec<Handle>) -> Self {
        Self {
            handles,
            next: AtomicUsize::new(0),
        }
    }

    /// Starts `count` worker threads, each with its own single-threaded runtime.
    ///
    /// # Errors
    /// A runtime or thread could not be created.
    pub fn start(count: usize) -> std::io::Result<(Self, WorkerThreads)> {
        let mut handles = Vec::with_capacity(count);
        let mut threads = WorkerThreads {
            stops: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("slotproxy-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    debug!(worker = index, "worker thread ends");
                })?;
            threads.stops.push(stop);
            threads.threads.push(thread);
        }
        Ok((Self::of(handles), threads))
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The worker for the next client, round-robin: its index and runtime.
    pub fn next(&self) -> (usize, &Handle) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        (index, &self.handles[index])
    }

    /// Worker `index`'s runtime.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index % self.handles.len()]
    }

    /// Every worker's runtime, in index order.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl WorkerThreads {
    /// Stops every worker thread (their tasks are dropped) and waits for them.
    pub fn stop(self) {
        drop(self.stops);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_spread_round_robin_and_tasks_run_on_their_worker() {
        let (workers, threads) = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let picks: Vec<usize> = (0..4).map(|_| workers.next().0).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        for index in 0..2 {
            let (tx, rx) = std::sync::mpsc::channel();
            workers.handle(index).spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name);
            });
            let name = rx.recv().unwrap();
            assert_eq!(name.as_deref(), Some(&*format!("slotproxy-worker-{index}")));
        }
        threads.stop();
    }
}
