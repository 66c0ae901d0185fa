//! `CLIENT REPLY ON|OFF|SKIP`, done by slotproxy: which replies the client does not want.
//!
//! Requests still run and their replies are still settled in order (a node's reply, a retry,
//! a merge); only writing them to the client is left out. As in redis 7.0: `OFF` mutes every
//! reply from `CLIENT REPLY OFF` itself on, `SKIP` mutes its own reply and the next request's,
//! and `ON` ends both and answers `+OK`. Messages (pub/sub, tracking invalidations, the replies
//! of (un)subscribing in RESP2) are written as before. Data only; the session asks it once per
//! request read and once per reply written.

use std::collections::VecDeque;

use crate::error::ReplyError;

/// A session's reply mode, and the queue entries whose replies are not written.
#[derive(Debug, Default)]
pub(super) struct ReplyMode {
    /// `CLIENT REPLY OFF` is in force.
    off: bool,
    /// `CLIENT REPLY SKIP` was the last request: the next one is muted.
    skip_next: bool,
    /// The request being handled now is muted by a `SKIP` before it.
    skip_this: bool,
    /// Queue indices of muted replies still in the queue, ascending.
    muted: VecDeque<u64>,
}

impl ReplyMode {
    /// Whether every reply is written (the common case: one test per request).
    pub(super) fn writes_all(&self) -> bool {
        !self.off && !self.skip_next && self.muted.is_empty()
    }

    /// A request is about to be handled.
    pub(super) fn begin(&mut self) {
        self.skip_this = std::mem::take(&mut self.skip_next);
    }

    /// Whether the request just handled is muted (call after it was handled, so `CLIENT REPLY
    /// ON` unmutes its own `+OK`).
    pub(super) fn mutes_this(&self) -> bool {
        self.off || self.skip_this
    }

    /// Records that the reply of queue entry `index` is muted.
    pub(super) fn mute(&mut self, index: u64) {
        self.muted.push_back(index);
    }

    /// Whether the reply of queue entry `index`, about to be written, is muted (entries before
    /// it that were answered another way are forgotten).
    pub(super) fn take_muted(&mut self, index: u64) -> bool {
        while self.muted.front().is_some_and(|&m| m < index) {
            self.muted.pop_front();
        }
        if self.muted.front() == Some(&index) {
            self.muted.pop_front();
            return true;
        }
        false
    }

    /// `CLIENT REPLY <mode>`: whether it answers `+OK` (only `ON`; `OFF` and `SKIP` answer
    /// nothing at all), or redis' error for another mode.
    pub(super) fn command(&mut self, mode: &[u8]) -> Result<bool, ReplyError> {
        if mode.eq_ignore_ascii_case(b"on") {
            self.on();
            Ok(true)
        } else if mode.eq_ignore_ascii_case(b"off") {
            self.off();
            Ok(false)
        } else if mode.eq_ignore_ascii_case(b"skip") {
            self.skip();
            Ok(false)
        } else {
            Err(ReplyError::Syntax)
        }
    }

    /// `CLIENT REPLY ON`.
    pub(super) fn on(&mut self) {
        self.off = false;
        self.skip_next = false;
        self.skip_this = false;
    }

    /// `CLIENT REPLY OFF`.
    pub(super) fn off(&mut self) {
        self.off = true;
    }

    /// `CLIENT REPLY SKIP` (nothing while `OFF`, as in redis).
    pub(super) fn skip(&mut self) {
        if !self.off {
            self.skip_next = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs requests (`Some(mode)` for a `CLIENT REPLY mode`) and says which were muted.
    fn muted(requests: &[Option<&str>]) -> Vec<bool> {
        let mut mode = ReplyMode::default();
        requests
            .iter()
            .map(|request| {
                mode.begin();
                match *request {
                    Some("on") => mode.on(),
                    Some("off") => mode.off(),
                    Some("skip") => mode.skip(),
                    _ => {}
                }
                mode.mutes_this()
            })
            .collect()
    }

    #[test]
    fn modes_mute_as_redis_does() {
        // SKIP mutes itself and the next request only.
        assert_eq!(
            muted(&[Some("skip"), None, None]),
            [false, true, false],
            "SKIP's own reply is nothing at all, not a muted one"
        );
        assert_eq!(
            muted(&[Some("skip"), Some("skip"), None, None])[2..],
            [true, false]
        );
        assert_eq!(
            muted(&[Some("skip"), Some("on")]),
            [false, false],
            "ON answers"
        );
        assert_eq!(
            muted(&[Some("off"), None, None, Some("on"), None])[1..],
            [true, true, false, false]
        );
        assert!(!muted(&[Some("off"), Some("skip"), Some("on"), None])[3]);
    }

    #[test]
    fn muted_entries_are_taken_in_queue_order() {
        let mut mode = ReplyMode::default();
        assert!(mode.writes_all());
        mode.mute(3);
        mode.mute(5);
        assert!(!mode.writes_all());
        assert!(!mode.take_muted(2));
        assert!(mode.take_muted(3));
        assert!(mode.take_muted(5), "4 was answered another way");
        assert!(mode.writes_all());
    }
}
