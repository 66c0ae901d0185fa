//! The command metrics' side of a session: when each request was read, until its reply is
//! written (`[admin] command_metrics`). Data only; the session tells it when a request was
//! handled and when a reply leaves, and it says what to record.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::metrics::Outcome;

/// Requests awaiting their reply: queue index, metrics row, when the request was read.
#[derive(Debug)]
pub(super) struct Timings {
    /// `[admin] command_metrics`: whether anything is kept and recorded.
    on: bool,
    waiting: VecDeque<(u64, usize, Instant)>,
}

impl Timings {
    pub(super) fn new(on: bool) -> Self {
        Self {
            on,
            waiting: VecDeque::new(),
        }
    }

    /// A request (metrics row `command`, read at `read_at`) was just handled: it got queue
    /// entry `index` when `queued`, else it was answered at once with `answered` (if anything).
    /// `record` gets the row, outcome and seconds of a request answered at once.
    pub(super) fn handled(
        &mut self,
        command: usize,
        read_at: Instant,
        queued: Option<u64>,
        answered: &[u8],
        record: impl FnOnce(usize, Outcome, f64),
    ) {
        if !self.on {
            return;
        }
        match queued {
            Some(index) => self.waiting.push_back((index, command, read_at)),
            None if !answered.is_empty() => {
                let seconds = read_at.elapsed().as_secs_f64();
                record(command, Outcome::of_reply(answered), seconds);
            }
            None => {}
        }
    }

    /// The reply of queue entry `index` is being written: `record` gets that request, and any
    /// before it that were answered another way (through the inbox, or not at all) as `Ok`.
    pub(super) fn replied(
        &mut self,
        index: u64,
        reply: &[u8],
        mut record: impl FnMut(usize, Outcome, f64),
    ) {
        if self.waiting.front().is_none_or(|&(at, ..)| at > index) {
            // Nothing to record (metrics off, or answered already): no clock read per reply.
            return;
        }
        let now = Instant::now();
        while let Some(&(at, command, read_at)) = self.waiting.front() {
            if at > index {
                return;
            }
            self.waiting.pop_front();
            let outcome = if at == index {
                Outcome::of_reply(reply)
            } else {
                Outcome::Ok
            };
            let seconds = now.saturating_duration_since(read_at).as_secs_f64();
            record(command, outcome, seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_records_its_request_and_the_earlier_ones_answered_another_way() {
        let mut timings = Timings::new(true);
        let read_at = Instant::now();
        for (index, row) in [(3, 30), (4, 40), (6, 60)] {
            timings.handled(row, read_at, Some(index), b"", |_, _, _| panic!("queued"));
        }
        let mut recorded = Vec::new();
        timings.replied(4, b"-ERR no\r\n", |row, outcome, _| {
            recorded.push((row, outcome))
        });
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].0, 30);
        assert!(matches!(recorded[0].1, Outcome::Ok));
        assert_eq!(recorded[1].0, 40);
        assert!(!matches!(recorded[1].1, Outcome::Ok));
        recorded.clear();
        // Entry 5 (answered through the inbox) was never queued here; 6 waits for its reply.
        timings.replied(5, b"+OK\r\n", |row, outcome, _| {
            recorded.push((row, outcome))
        });
        assert!(recorded.is_empty());
        timings.replied(6, b"+OK\r\n", |row, outcome, _| {
            recorded.push((row, outcome))
        });
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].0, 60);
    }

    #[test]
    fn an_answer_written_at_once_is_recorded_at_once_and_nothing_when_off() {
        let mut timings = Timings::new(true);
        let mut recorded = None;
        timings.handled(7, Instant::now(), None, b"+PONG\r\n", |row, _, _| {
            recorded = Some(row)
        });
        assert_eq!(recorded, Some(7));
        // Muted or answered nothing: nothing to record.
        timings.handled(7, Instant::now(), None, b"", |_, _, _| {
            panic!("nothing answered")
        });
        let mut off = Timings::new(false);
        off.handled(7, Instant::now(), Some(1), b"", |_, _, _| panic!("off"));
        off.replied(1, b"+OK\r\n", |_, _, _| panic!("off"));
    }
}
