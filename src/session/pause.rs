//! `CLIENT PAUSE` / `CLIENT UNPAUSE` in the session: the commands, and holding the next request
//! while the process's pause ([`crate::pause`]) says it waits. A held request keeps its place:
//! nothing after it is read until it runs, as redis blocks a paused client.

use std::time::Duration;

use bytes::Bytes;

use super::Session;
use crate::command::Resolved;
use crate::command::table::Flags;
use crate::error::ReplyError;
use crate::protocol::Request;
use crate::protocol::reply::write_simple;

impl Session {
    /// `CLIENT PAUSE timeout [WRITE|ALL]`, with redis 7.0's checks and errors.
    pub(super) fn client_pause(&mut self, args: &[Bytes]) {
        let writes_only = match args.get(3) {
            None => false,
            Some(mode) if mode.eq_ignore_ascii_case(b"write") => true,
            Some(mode) if mode.eq_ignore_ascii_case(b"all") => false,
            Some(_) => return self.reply_error(ReplyError::PauseMode),
        };
        let timeout = match std::str::from_utf8(&args[2])
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
        {
            Some(ms) if ms < 0 => return self.reply_error(ReplyError::TimeoutNegative),
            Some(ms) => Duration::from_millis(ms.unsigned_abs()),
            None => return self.reply_error(ReplyError::TimeoutNotInteger),
        };
        self.shared.pause.start(timeout, writes_only);
        self.reply_with(|out| write_simple(out, "OK"));
    }

    /// `CLIENT UNPAUSE`.
    pub(super) fn client_unpause(&mut self) {
        self.shared.pause.end();
        self.reply_with(|out| write_simple(out, "OK"));
    }

    /// Whether `request` must wait for a pause now: every command under `ALL`; under `WRITE`,
    /// those that write or may replicate (`EVAL`, `PUBLISH`, `PFCOUNT`...) and an `EXEC` with
    /// such a command queued.
    pub(super) fn paused(&self, request: &Request) -> bool {
        let Some(_) = self.shared.pause.holds(true) else {
            return false;
        };
        let commands = self.shared.commands.load();
        let writes = |spec: &crate::command::CommandSpec| {
            spec.flags.contains(Flags::WRITE) || spec.flags.contains(Flags::MAY_REPLICATE)
        };
        let write = match commands.resolve(request.args()) {
            Resolved::Command(spec) if spec.name == "exec" => {
                self.transaction.queued.iter().any(|queued| {
                    matches!(commands.resolve(queued.args()), Resolved::Command(s) if writes(s))
                })
            }
            Resolved::Command(spec) => writes(spec),
            Resolved::UnknownCommand | Resolved::UnknownSubcommand(_) => false,
        };
        self.shared.pause.holds(write).is_some()
    }
}
