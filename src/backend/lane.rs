//! `Lane`: the queue of jobs from sessions to one node connection task, and its bound.
//!
//! A session puts its job in the queue and wakes the task if the queue was empty; the task
//! takes every queued job at once (up to a batch) when it builds its next write. The queue
//! holds at most `backend.max_queued_requests` jobs that the task has not taken yet. The task
//! takes jobs only when the node has taken its last batch, so the queue fills when a node reads
//! slower than clients send. A job past the bound is refused at once as `BackendError::Busy`:
//! never sent, so the session retries it with backoff until its retry deadline, and stops
//! reading its client meanwhile once its own in-flight window is full. That is the
//! backpressure: memory stays bounded, and a slow node slows its own clients, not the proxy.
//!
//! The task ends once every `Lane` clone is dropped and the queue is empty; a job queued after
//! the task is gone is answered `NotSent` at once.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;

use super::connection::{Job, NodeResult, Outgoing};
use super::mailbox::ReplyTo;
use crate::error::BackendError;

/// The sending end: sessions queue jobs for one connection task.
#[derive(Debug, Clone)]
pub struct Lane {
    senders: Arc<Senders>,
    limit: usize,
}

/// Shared by every clone of one `Lane`: dropping the last tells the task.
#[derive(Debug)]
struct Senders(Arc<Line>);

/// The receiving end: the connection task takes the jobs.
#[derive(Debug)]
pub(crate) struct Queue {
    line: Arc<Line>,
}

#[derive(Debug)]
struct Line {
    /// The node's `host:port`, for the errors of jobs that are refused.
    addr: Arc<str>,
    state: Mutex<LineState>,
}

#[derive(Debug, Default)]
struct LineState {
    /// Queued, not yet taken by the task.
    jobs: VecDeque<Job>,
    /// The task's waker while it waits for jobs.
    waker: Option<Waker>,
    /// Every `Lane` is dropped.
    senders_gone: bool,
    /// The task is gone.
    receiver_gone: bool,
}

impl LineState {
    /// Keeps the task's waker for the next job.
    fn wait(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
        }
    }

    /// Moves queued jobs into `batch` until it holds `limit` (at least one job, if any).
    fn move_into(&mut self, batch: &mut VecDeque<Job>, limit: usize) -> usize {
        let room = limit.saturating_sub(batch.len()).max(1);
        let n = self.jobs.len().min(room);
        if n == self.jobs.len() && batch.is_empty() {
            // The usual case: the whole queue becomes the batch, and the batch's old (empty)
            // buffer becomes the queue's.
            std::mem::swap(&mut self.jobs, batch);
        } else {
            batch.extend(self.jobs.drain(..n));
        }
        n
    }
}

impl Line {
    fn lock(&self) -> MutexGuard<'_, LineState> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why a job for a task that is gone (the runtime shutting down) was not sent.
    fn stopped(&self) -> BackendError {
        BackendError::NotSent {
            node: self.addr.to_string(),
            reason: "connection task stopped".into(),
        }
    }
}

/// A new lane to `addr` holding at most `limit` jobs, and the connection task's end of it.
pub(crate) fn lane(addr: Arc<str>, limit: usize) -> (Lane, Queue) {
    let line = Arc::new(Line {
        addr,
        state: Mutex::default(),
    });
    let lane = Lane {
        senders: Arc::new(Senders(line.clone())),
        limit,
    };
    (lane, Queue { line })
}

impl Lane {
    /// Queues `request`; its reply goes to `to`, at once if the queue is full or the connection
    /// task is gone.
    pub fn post(&self, request: Outgoing, to: ReplyTo) {
        let line = &self.senders.0;
        let mut state = line.lock();
        let refused = if state.receiver_gone {
            // The connection task is gone (runtime shutting down): answer rather than hang.
            line.stopped()
        } else if state.jobs.len() >= self.limit {
            BackendError::Busy {
                node: line.addr.to_string(),
                queued: self.limit,
            }
        } else {
            state.jobs.push_back(Job { request, reply: to });
            let waker = state.waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
            return;
        };
        drop(state);
        to.send(Err(refused));
    }

    /// Queues `request` and returns where its reply will come (one-off requests; sessions use
    /// their mailbox through [`Lane::post`]).
    pub fn send(&self, request: Outgoing) -> oneshot::Receiver<NodeResult> {
        let (tx, rx) = oneshot::channel();
        self.post(request, ReplyTo::Once(tx));
        rx
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders_gone = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Queue {
    /// The next job; `None` once every `Lane` is dropped and nothing is queued.
    pub(crate) async fn recv(&mut self) -> Option<Job> {
        poll_fn(|cx| self.poll_queued(cx, |state| state.jobs.pop_front()))
            .await
            .flatten()
    }

    /// Waits for jobs and moves up to `limit` of them into `batch`; 0 once every `Lane` is
    /// dropped and nothing is queued. Cancel-safe: jobs move only when it completes.
    pub(crate) async fn recv_many(&mut self, batch: &mut VecDeque<Job>, limit: usize) -> usize {
        poll_fn(|cx| self.poll_queued(cx, |state| state.move_into(batch, limit)))
            .await
            .unwrap_or(0)
    }

    /// `take` of the queue once it holds a job; `None` once every `Lane` is dropped and
    /// nothing is queued.
    fn poll_queued<T>(
        &self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut LineState) -> T,
    ) -> Poll<Option<T>> {
        let mut state = self.line.lock();
        if !state.jobs.is_empty() {
            Poll::Ready(Some(take(&mut state)))
        } else if state.senders_gone {
            Poll::Ready(None)
        } else {
            state.wait(cx.waker());
            Poll::Pending
        }
    }

    /// Moves up to `limit` jobs already queued into `batch`, without waiting; how many.
    pub(crate) fn take(&mut self, batch: &mut VecDeque<Job>, limit: usize) -> usize {
        self.line.lock().move_into(batch, limit)
    }

    /// A job already queued, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Job> {
        self.line.lock().jobs.pop_front()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let jobs = {
            let mut state = self.line.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.jobs)
        };
        for job in jobs {
            job.reply.send(Err(self.line.stopped()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Reply;
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

        let mut batch = VecDeque::new();
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

    #[tokio::test]
    async fn the_task_wakes_for_each_job_and_ends_once_every_lane_is_gone() {
        let (lane, mut queue) = lane(Arc::from("127.0.0.1:7000"), 8);
        let clone = lane.clone();
        // Answers each job with its own bytes, as a connection task would with the node's reply.
        let task = tokio::spawn(async move {
            let mut batch = VecDeque::new();
            let mut taken = 0;
            while queue.recv_many(&mut batch, 8).await > 0 {
                for job in batch.drain(..) {
                    taken += 1;
                    job.reply.send(Ok(Reply::local(job.request.payload)));
                }
            }
            taken
        });
        tokio::task::yield_now().await;
        let first = lane.send(Outgoing::new(Bytes::from_static(b"+one\r\n")));
        drop(lane);
        assert_eq!(first.await.unwrap().unwrap().raw().as_ref(), b"+one\r\n");
        let second = clone.send(Outgoing::new(Bytes::from_static(b"+two\r\n")));
        assert_eq!(second.await.unwrap().unwrap().raw().as_ref(), b"+two\r\n");
        assert!(!task.is_finished(), "a clone of the lane is still there");
        drop(clone);
        assert_eq!(task.await.unwrap(), 2, "both jobs, then the end");
    }

    #[tokio::test]
    async fn a_job_for_a_task_that_is_gone_is_answered_not_sent() {
        let (lane, queue) = lane(Arc::from("127.0.0.1:7000"), 8);
        let queued = lane.send(Outgoing::new(Bytes::from_static(b"PING")));
        drop(queue);
        for reply in [
            queued,
            lane.send(Outgoing::new(Bytes::from_static(b"PING"))),
        ] {
            match reply.await.expect("answered") {
                Err(e @ BackendError::NotSent { .. }) => assert!(e.is_retry_safe()),
                other => panic!("{other:?}"),
            }
        }
    }
}
