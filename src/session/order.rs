//! When a client's new request may go out, so that its replies and writes keep their order.
//!
//! Replies always leave in request order (the reply queue only writes its front). What this
//! decides is whether a request is *sent* now or held back (`Pending::Deferred`) until the
//! requests before it have settled:
//! - the slot map changed since the last request went out: requests still in flight under the
//!   old map may be redirected, and a new one sent to a slot's new owner must not overtake them
//!   (a GET would read around the client's own SET being redirected);
//! - the last request went out on a dedicated connection (a blocking command, a watched
//!   transaction): its order against the shared connections is only known once it answers;
//! - the request itself must see everything before it (`RPUSH l x` then `BLPOP l 0`; `DBSIZE`
//!   after a redirected `SET`).
//!
//! Once one request is held, every later one is held behind it. No I/O: the session asks, and
//! does the sending.

/// The ordering state of one session.
#[derive(Debug, Default)]
pub(super) struct Order {
    /// Slot-map generation the last request went out under.
    generation: u64,
    /// Hold new requests until everything before them has settled.
    barrier: bool,
}

/// What a new request does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Send it.
    Send,
    /// Queue it as `Deferred` until everything before it has settled.
    Defer,
}

/// What a request is, as far as ordering goes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Needs {
    /// It must not overtake anything sent before it.
    pub(super) waits_for_earlier: bool,
    /// It goes out on a dedicated connection.
    pub(super) dedicated: bool,
}

impl Order {
    /// A new request, with the current map's `generation`; `unsettled` says whether any request
    /// before it is still unanswered (asked only when it matters: it scans the queue).
    pub(super) fn admit(
        &mut self,
        generation: u64,
        needs: Needs,
        unsettled: impl FnOnce() -> bool,
    ) -> Admission {
        if generation != self.generation || self.barrier || needs.waits_for_earlier {
            if unsettled() {
                // Whatever comes next queues behind this one.
                self.barrier = true;
                return Admission::Defer;
            }
            self.generation = generation;
        }
        self.barrier = needs.dedicated;
        Admission::Send
    }

    /// The deferred requests at the front of the queue start going out under the map of
    /// `generation` (everything before them has settled).
    pub(super) fn release(&mut self, generation: u64) {
        self.generation = generation;
        self.barrier = false;
    }

    /// Whether the deferred request now at the front goes out in this release, `sent` of them
    /// having gone already; false holds it, and the rest behind it, until those settle.
    pub(super) fn release_next(&mut self, sent: usize, needs: Needs) -> bool {
        if self.barrier {
            return false;
        }
        if sent > 0 && needs.waits_for_earlier {
            // It must wait for the ones just sent too.
            self.barrier = true;
            return false;
        }
        self.barrier = needs.dedicated;
        true
    }

    /// The request just queued settles on its own time (a reply a task of the session's
    /// produces): hold later ones until it has.
    pub(super) fn hold_next(&mut self) {
        self.barrier = true;
    }

    /// True while new requests are held until the ones before them settle.
    #[cfg(test)]
    pub(super) fn holding(&self) -> bool {
        self.barrier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Needs = Needs {
        waits_for_earlier: false,
        dedicated: false,
    };
    const WAITS: Needs = Needs {
        waits_for_earlier: true,
        dedicated: false,
    };
    const DEDICATED: Needs = Needs {
        waits_for_earlier: false,
        dedicated: true,
    };

    fn started(generation: u64) -> Order {
        let mut order = Order::default();
        assert_eq!(order.admit(generation, PLAIN, || false), Admission::Send);
        order
    }

    #[test]
    fn requests_under_one_map_go_out_at_once_without_looking_at_the_queue() {
        let mut order = started(1);
        for _ in 0..3 {
            let admitted = order.admit(1, PLAIN, || panic!("the queue is not scanned"));
            assert_eq!(admitted, Admission::Send);
        }
    }

    #[test]
    fn a_new_map_holds_requests_while_older_ones_are_in_flight() {
        let mut order = started(1);
        assert_eq!(order.admit(2, PLAIN, || true), Admission::Defer);
        // Behind a held request, even one under the same map waits.
        assert_eq!(order.admit(2, PLAIN, || true), Admission::Defer);
        assert!(order.holding());
    }

    #[test]
    fn a_new_map_with_nothing_in_flight_is_adopted_at_once() {
        let mut order = started(1);
        assert_eq!(order.admit(2, PLAIN, || false), Admission::Send);
        assert_eq!(
            order.admit(2, PLAIN, || panic!("not scanned")),
            Admission::Send
        );
    }

    #[test]
    fn a_request_after_a_dedicated_one_waits_for_it() {
        let mut order = started(1);
        assert_eq!(order.admit(1, DEDICATED, || false), Admission::Send);
        assert_eq!(order.admit(1, PLAIN, || true), Admission::Defer);
        // Once the blocking command has answered, the next one goes.
        let mut order = started(1);
        order.admit(1, DEDICATED, || false);
        assert_eq!(order.admit(1, PLAIN, || false), Admission::Send);
    }

    #[test]
    fn a_request_that_must_see_earlier_ones_waits_only_while_they_are_unsettled() {
        let mut order = started(1);
        assert_eq!(order.admit(1, WAITS, || true), Admission::Defer);
        let mut order = started(1);
        assert_eq!(order.admit(1, WAITS, || false), Admission::Send);
        assert!(!order.holding());
    }

    #[test]
    fn a_release_sends_deferred_requests_up_to_one_that_must_wait_again() {
        let mut order = started(1);
        order.admit(2, PLAIN, || true);
        order.release(2);
        assert!(order.release_next(0, PLAIN));
        assert!(order.release_next(1, PLAIN));
        // `BLPOP` behind two just-sent writes waits for them; so does the rest.
        assert!(!order.release_next(2, WAITS));
        assert!(order.holding());
        assert!(!order.release_next(2, PLAIN));
        // The next release sends it first.
        order.release(2);
        assert!(order.release_next(0, WAITS));
        assert!(order.release_next(1, PLAIN));
    }

    #[test]
    fn a_release_stops_after_a_dedicated_request() {
        let mut order = started(1);
        order.admit(1, DEDICATED, || false);
        order.admit(1, PLAIN, || true);
        order.release(1);
        assert!(order.release_next(0, DEDICATED));
        assert!(!order.release_next(1, PLAIN));
    }

    #[test]
    fn a_released_map_is_the_one_later_requests_compare_with() {
        let mut order = started(1);
        order.admit(3, PLAIN, || true);
        order.release(3);
        assert!(order.release_next(0, PLAIN));
        assert_eq!(
            order.admit(3, PLAIN, || panic!("not scanned")),
            Admission::Send
        );
    }
}
