//! `Lane`: the queue of jobs from sessions to one node connection task, and its bound.
//!
//! The queue holds at most `backend.max_queued_requests` jobs that the task has not taken yet.
//! The task takes jobs only when the node has taken its last batch, so the queue fills when a
//! node reads slower than clients send. A job past the bound is refused at once as
//! `BackendError::Busy`: never sent, so the session retries it with backoff until its retry
//! deadline, and stops reading its client meanwhile once its own in-flight window is full.
//! That is the backpressure: memory stays bounded, and a slow node slows its own clients, not
//! the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::connection::{Job, NodeResult, Outgoing};
use crate::error::BackendError;

/// The sending end: sessions queue jobs for one connection task.
#[derive(Debug, Clone)]
pub struct Lane {
    addr: Arc<str>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs queued and not yet taken by the task (shared with its [`Queue`]).
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// The receiving end: the connection task takes the jobs.
#[derive(Debug)]
pub(crate) struct Queue {
    jobs: mpsc::UnboundedReceiver<Job>,
    queued: Arc<AtomicUsize>,
}

/// A new lane to `addr` holding at most `limit` jobs, and the connection task's end of it.
pub(crate) fn lane(addr: Arc<str>, limit: usize) -> (Lane, Queue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let lane = Lane {
        addr,
        jobs: tx,
        queued: queued.clone(),
        limit,
    };
    (lane, Queue { jobs: rx, queued })
}

impl Lane {
    /// Queues `request` and returns where its reply will come: at once, if the queue is full or
    /// the connection task is gone.
    pub fn send(&self, request: Outgoing) -> oneshot::Receiver<NodeResult> {
        let (tx, rx) = oneshot::channel();
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(Err(BackendError::Busy {
                node: self.addr.to_string(),
                queued: self.limit,
            }));
            return rx;
        }
        let job = Job { request, reply: tx };
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            // The connection task is gone (runtime shutting down): answer rather than hang.
            let _ = job.reply.send(Err(BackendError::NotSent {
                node: self.addr.to_string(),
                reason: "connection task stopped".into(),
            }));
        }
        rx
    }
}

impl Queue {
    /// The next job; `None` once every `Lane` is dropped.
    pub(crate) async fn recv(&mut self) -> Option<Job> {
        let job = self.jobs.recv().await;
        if job.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        job
    }

    /// Up to `limit` jobs into `batch`; 0 once every `Lane` is dropped. Cancel-safe.
    pub(crate) async fn recv_many(&mut self, batch: &mut Vec<Job>, limit: usize) -> usize {
        let n = self.jobs.recv_many(batch, limit).await;
        self.queued.fetch_sub(n, Ordering::Relaxed);
        n
    }

    /// A job already queued, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Job> {
        let job = self.jobs.try_recv().ok()?;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        Some(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn a_full_lane_refuses_at_once_as_busy_and_takes_jobs_again_once_they_are_taken() {
        let (lane, mut queue) = lane(Arc::from("127.0.0.1:7000"), 2);
        let queued: Vec<_> = (0..2)
            .map(|_| lane.send(Outgoing::new(Bytes::from_static(b"PING"))))
            .collect();
        let refused = lane.send(Outgoing::new(Bytes::from_static(b"PING")));
        match refused.await.expect("answered at once") {
            Err(e @ BackendError::Busy { .. }) => {
                assert!(e.is_retry_safe());
                assert_eq!(
                    e.to_string(),
                    "node 127.0.0.1:7000 has 2 requests queued in slotproxy, its limit"
                );
            }
            other => panic!("{other:?}"),
        }

        let mut batch = Vec::new();
        assert_eq!(queue.recv_many(&mut batch, 1).await, 1);
        let again = lane.send(Outgoing::new(Bytes::from_static(b"PING")));
        assert!(queue.try_recv().is_some());
        assert!(
            queue.recv().await.is_some(),
            "the job sent after one was taken"
        );
        assert!(queue.try_recv().is_none());
        drop((queued, again, batch));
    }
}
