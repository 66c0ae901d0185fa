//! `CLIENT PAUSE` held in slotproxy: one pause state for every client of this process.
//!
//! The nodes are never paused (their connections are shared, and other proxies may use them):
//! each session holds its next request while [`Pause::holds`] says so, and reads it again when
//! the pause ends or changes. As in redis 7.0, pauses combine: the later end and the stricter
//! mode win (`ALL` over `WRITE`), and `CLIENT UNPAUSE` ends any pause at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::command::table::Flags;
use crate::command::{CommandSpec, CommandTable, Resolved};
use crate::error::ReplyError;
use crate::protocol::{Request, string2ll};

/// A pause in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    /// When it ends.
    pub until: Instant,
    /// `WRITE`: only commands that write or may replicate wait; otherwise (`ALL`) every one.
    pub writes_only: bool,
}

/// The process's pause state, shared by every session.
#[derive(Debug)]
pub struct Pause {
    state: watch::Sender<Option<Paused>>,
    /// Set while a pause may be in force: the per-request check is one atomic load.
    maybe: AtomicBool,
}

impl Default for Pause {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(None),
            maybe: AtomicBool::new(false),
        }
    }
}

impl Pause {
    /// `CLIENT PAUSE timeout [WRITE|ALL]`: combined with a pause in force.
    pub fn start(&self, timeout: Duration, writes_only: bool) {
        let now = Instant::now();
        // A timeout past what `Instant` holds (redis takes any 64-bit count) is a very long one.
        let until = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        self.state.send_modify(|state| {
            let current = state.filter(|p| p.until > Instant::now());
            *state = Some(match current {
                Some(p) => Paused {
                    until: p.until.max(until),
                    writes_only: p.writes_only && writes_only,
                },
                None => Paused { until, writes_only },
            });
        });
        self.maybe.store(true, Ordering::Release);
    }

    /// `CLIENT UNPAUSE`.
    pub fn end(&self) {
        self.state.send_replace(None);
        self.maybe.store(false, Ordering::Release);
    }

    /// The pause a request waits for: `write` says whether it writes (or may replicate);
    /// `None` when it may run now.
    pub fn holds(&self, write: bool) -> Option<Paused> {
        if !self.maybe.load(Ordering::Acquire) {
            return None;
        }
        let paused = (*self.state.borrow())?;
        (paused.until > Instant::now() && (write || !paused.writes_only)).then_some(paused)
    }

    /// `CLIENT PAUSE timeout [WRITE|ALL]` (`args` from `CLIENT`), with redis 7.0's checks and
    /// errors.
    ///
    /// # Errors
    /// A bad mode or timeout, as redis words it; the pause is unchanged.
    pub fn command(&self, args: &[Bytes]) -> Result<(), ReplyError> {
        let writes_only = match args.get(3) {
            None => false,
            Some(mode) if mode.eq_ignore_ascii_case(b"write") => true,
            Some(mode) if mode.eq_ignore_ascii_case(b"all") => false,
            Some(_) => return Err(ReplyError::PauseMode),
        };
        let timeout = match string2ll(&args[2]) {
            Some(ms) if ms < 0 => return Err(ReplyError::TimeoutNegative),
            Some(ms) => Duration::from_millis(ms.unsigned_abs()),
            None => return Err(ReplyError::TimeoutNotInteger),
        };
        self.start(timeout, writes_only);
        Ok(())
    }

    /// Whether `request` must wait for a pause now: every command under `ALL`; under `WRITE`,
    /// those that write or may replicate (`EVAL`, `PUBLISH`, `PFCOUNT`...) and an `EXEC` with
    /// such a command in `queued`. One atomic load while no pause is in force.
    pub fn holds_request(
        &self,
        commands: &ArcSwap<CommandTable>,
        request: &Request,
        queued: &[Request],
    ) -> bool {
        if self.holds(true).is_none() {
            return false;
        }
        let commands = commands.load();
        let writes = |spec: &CommandSpec| {
            spec.flags.contains(Flags::WRITE) || spec.flags.contains(Flags::MAY_REPLICATE)
        };
        let write = match commands.resolve(request.args()) {
            Resolved::Command(spec) if spec.name == "exec" => queued.iter().any(|queued| {
                matches!(commands.resolve(queued.args()), Resolved::Command(s) if writes(s))
            }),
            Resolved::Command(spec) => writes(spec),
            Resolved::UnknownCommand | Resolved::UnknownSubcommand(_) => false,
        };
        self.holds(write).is_some()
    }

    /// A receiver that sees every change (to wait for an `UNPAUSE`).
    pub fn subscribe(&self) -> watch::Receiver<Option<Paused>> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_combine_to_the_stricter_mode_and_the_later_end() {
        let pause = Pause::default();
        assert_eq!(pause.holds(true), None);
        pause.start(Duration::from_secs(60), true);
        assert!(pause.holds(true).is_some(), "a write waits");
        assert_eq!(pause.holds(false), None, "a read runs");
        let first = pause.holds(true).map(|p| p.until);
        pause.start(Duration::from_millis(1), false);
        let all = pause.holds(false).expect("ALL holds reads too");
        assert_eq!(Some(all.until), first, "the later end stays");
        pause.start(Duration::from_secs(1), true);
        assert!(pause.holds(false).is_some(), "WRITE does not undo ALL");
        pause.end();
        assert_eq!(pause.holds(true), None);
        pause.start(Duration::ZERO, false);
        assert_eq!(pause.holds(true), None, "a pause that already ended");
    }

    #[tokio::test]
    async fn under_write_only_writes_and_an_exec_of_writes_wait() {
        let pause = Pause::default();
        let commands = ArcSwap::from_pointee(CommandTable::builtin());
        let args = |words: &[&str]| -> Vec<Bytes> {
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        let request = |words: &[&str]| Request::from_args(args(words));
        assert!(!pause.holds_request(&commands, &request(&["SET", "k", "v"]), &[]));
        assert_eq!(
            pause.command(&args(&["CLIENT", "PAUSE", "1000", "MAYBE"])),
            Err(ReplyError::PauseMode)
        );
        assert_eq!(
            pause.command(&args(&["CLIENT", "PAUSE", "-1"])),
            Err(ReplyError::TimeoutNegative)
        );
        assert_eq!(
            pause.command(&args(&["CLIENT", "PAUSE", "x"])),
            Err(ReplyError::TimeoutNotInteger)
        );
        assert_eq!(pause.holds(false), None, "refused pauses change nothing");
        pause
            .command(&args(&["CLIENT", "PAUSE", "60000", "WRITE"]))
            .unwrap();
        assert!(pause.holds_request(&commands, &request(&["SET", "k", "v"]), &[]));
        assert!(pause.holds_request(&commands, &request(&["PUBLISH", "c", "m"]), &[]));
        assert!(pause.holds_request(&commands, &request(&["EVAL", "return 1", "0"]), &[]));
        assert!(!pause.holds_request(&commands, &request(&["EVAL_RO", "return 1", "0"]), &[]));
        assert!(!pause.holds_request(&commands, &request(&["GET", "k"]), &[]));
        assert!(!pause.holds_request(&commands, &request(&["EXEC"]), &[request(&["GET", "k"])]));
        assert!(pause.holds_request(
            &commands,
            &request(&["EXEC"]),
            &[request(&["GET", "k"]), request(&["INCR", "k"])]
        ));
        pause.end();
        assert!(!pause.holds_request(&commands, &request(&["SET", "k", "v"]), &[]));
    }
}
