//! How many of a client's requests may be in flight at once: `session.max_in_flight`, or fewer
//! while its requests or replies are large.
//!
//! A client shares its node connections with every other client of its worker, and a node
//! answers a connection's requests in order: each byte one client has on its way holds up the
//! others' replies behind it. Counting requests alone lets one client put `max_in_flight` large
//! values ahead of everyone (1,024 GETs of 1 MB: a gigabyte), so the window also keeps about
//! `session.max_in_flight_bytes` of this client's traffic on its way.
//!
//! A reply's size is known only once it arrives, so the window works from a recent-largest size:
//! each request and reply raises it to its own size if larger, and otherwise lowers it by an
//! eighth, so one large value stops counting after about twenty small ones. Before the first
//! reply nothing is known of the replies to come, and a new client may have `FIRST_WINDOW`
//! requests out: a pipeline sent in the first write is not forwarded whole before then.

/// Requests a client may have in flight before any of its replies came back.
const FIRST_WINDOW: usize = 16;

/// A client's in-flight window (see the module doc).
#[derive(Debug)]
pub(super) struct Window {
    /// `session.max_in_flight`.
    max_requests: usize,
    /// `session.max_in_flight_bytes`.
    max_bytes: usize,
    /// The recent-largest request or reply, in bytes.
    recent: usize,
    /// A reply came back.
    replied: bool,
}

impl Window {
    pub(super) fn new(max_requests: usize, max_bytes: usize) -> Self {
        Self {
            max_requests,
            max_bytes,
            recent: 0,
            replied: false,
        }
    }

    /// A request of `bytes` was read.
    pub(super) fn request(&mut self, bytes: usize) {
        self.see(bytes);
    }

    /// A reply of `bytes` goes to the client.
    pub(super) fn reply(&mut self, bytes: usize) {
        self.replied = true;
        self.see(bytes);
    }

    fn see(&mut self, bytes: usize) {
        self.recent = bytes.max(self.recent - self.recent / 8);
    }

    /// Whether a client with `in_flight` requests unanswered may start another: fewer than
    /// [`Window::limit`], without its division (this runs for every request).
    #[inline]
    pub(super) fn allows(&self, in_flight: usize) -> bool {
        in_flight == 0
            || (in_flight < self.most()
                && (in_flight + 1).saturating_mul(self.recent.max(1)) <= self.max_bytes)
    }

    /// Requests that may be in flight now: at least 1.
    #[cfg(test)]
    fn limit(&self) -> usize {
        (self.max_bytes / self.recent.max(1)).clamp(1, self.most().max(1))
    }

    /// The request limit: `max_in_flight`, or `FIRST_WINDOW` before the first reply.
    fn most(&self) -> usize {
        match self.replied {
            true => self.max_requests,
            false => FIRST_WINDOW.min(self.max_requests),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    #[test]
    fn small_requests_and_replies_may_use_the_whole_request_limit() {
        let mut window = Window::new(1024, MB);
        window.request(30);
        window.reply(5);
        assert_eq!(window.limit(), 1024);
    }

    #[test]
    fn a_new_client_starts_with_a_small_window() {
        let window = Window::new(1024, MB);
        assert_eq!(window.limit(), FIRST_WINDOW);
        assert!(window.allows(FIRST_WINDOW - 1));
        assert!(!window.allows(FIRST_WINDOW));
        assert_eq!(Window::new(4, MB).limit(), 4);
    }

    #[test]
    fn large_replies_keep_about_max_bytes_in_flight() {
        let mut window = Window::new(1024, MB);
        for _ in 0..10 {
            window.request(30);
            window.reply(64 << 10);
        }
        assert_eq!(window.limit(), 16);
    }

    #[test]
    fn large_requests_count_before_any_reply() {
        let mut window = Window::new(1024, MB);
        window.request(MB);
        assert_eq!(window.limit(), 1);
    }

    #[test]
    fn at_least_one_request_may_be_in_flight() {
        let mut window = Window::new(1024, MB);
        window.reply(100 * MB);
        assert_eq!(window.limit(), 1);
        assert!(window.allows(0));
    }

    #[test]
    fn allows_agrees_with_the_limit() {
        for (max_requests, sizes) in [(1024, &[5, 30, 4096, 65536, MB, 3 * MB][..]), (3, &[7][..])]
        {
            for &size in sizes {
                for replied in [false, true] {
                    let mut window = Window::new(max_requests, MB);
                    match replied {
                        true => window.reply(size),
                        false => window.request(size),
                    }
                    let limit = window.limit();
                    for in_flight in 0..limit + 3 {
                        assert_eq!(
                            window.allows(in_flight),
                            in_flight < limit,
                            "size {size}, replied {replied}, {in_flight} in flight, limit {limit}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_one_off_large_reply_stops_counting_after_small_ones() {
        let mut window = Window::new(1024, MB);
        window.reply(10 * MB);
        let mut small = 0;
        while window.limit() < 1024 {
            window.request(30);
            window.reply(5);
            small += 1;
        }
        // Two small values (a request and its reply) per round.
        assert!((10..=40).contains(&small), "{small} rounds");
    }
}
