//! `MONITOR` on the session's side: which commands are shown to the monitoring clients
//! (redis-server 7.0's rules), and what a monitoring client may still send. [`step`] decides
//! from the request and the client's transaction state; the session writes the lines it returns
//! to the monitors (`handle.rs`).
//!
//! A command is shown when slotproxy takes it to run, after the checks redis makes before
//! running one (unknown command, arity, authentication, ACL, a subscribed client's refusals):
//! those it fails are not shown, as on redis. Commands flagged `admin` are never shown (redis
//! deems them too dangerous), nor are those slotproxy refuses. Commands queued in `MULTI` are
//! shown when `EXEC` runs them, just before `EXEC` itself; a doomed transaction shows `EXEC`
//! alone. Scripts show as their `EVAL`/`FCALL`: the commands a script runs on its node are not
//! seen by slotproxy (redis adds them as `[0 lua]` lines).

use super::transaction_state::{Transaction, runs_in_multi};
use crate::command::policy::{Handling, Local};
use crate::command::{CommandSpec, Flags};
use crate::protocol::Request;

/// What becomes of a request about to run while some client monitors.
#[derive(Debug, PartialEq)]
pub(super) enum Monitored {
    /// This client monitors and the command reads or writes keys: refused (redis treats a
    /// monitoring client as a replica).
    Refused,
    /// Runs, shown to nobody now (an admin or refused command, or one queued in `MULTI`,
    /// kept to show when `EXEC` runs it).
    Unseen,
    /// Runs, and the monitors see these commands queued in `MULTI` (with their rows' names),
    /// then the request itself.
    Shown(Vec<(&'static str, Request)>),
}

/// What becomes of `request` (row `spec`, to run as `handling` says) while some client
/// monitors; `monitoring` is whether this client is one of them. A command queued in `MULTI` is
/// kept in `transaction` until `EXEC` shows it.
pub(super) fn step(
    monitoring: bool,
    spec: &CommandSpec,
    handling: Handling,
    request: &Request,
    transaction: &mut Transaction,
) -> Monitored {
    let keyspace = [Flags::WRITE, Flags::READONLY, Flags::MAY_REPLICATE];
    if monitoring && keyspace.iter().any(|&f| spec.flags.contains(f)) {
        return Monitored::Refused;
    }
    if spec.flags.contains(Flags::ADMIN)
        || matches!(handling, Handling::Admin(_) | Handling::Refused(_))
    {
        return Monitored::Unseen;
    }
    if transaction.queuing() && !runs_in_multi(handling) {
        transaction.show(spec.name, request.clone());
        return Monitored::Unseen;
    }
    if handling == Handling::Local(Local::Exec) && transaction.queuing() {
        let shown = transaction.take_shown();
        if !transaction.dirty {
            return Monitored::Shown(shown);
        }
    }
    Monitored::Shown(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandTable;

    fn request(words: &[&str]) -> Request {
        Request::from_args(
            words
                .iter()
                .map(|w| bytes::Bytes::copy_from_slice(w.as_bytes())),
        )
    }

    /// The step for `words` as its table row handles it.
    fn run(
        table: &CommandTable,
        monitoring: bool,
        words: &[&str],
        tx: &mut Transaction,
    ) -> Monitored {
        let request = request(words);
        let crate::command::Resolved::Command(spec) = table.resolve(request.args()) else {
            panic!("{words:?} is not a command");
        };
        let handling = table.policy(spec).handling;
        step(monitoring, spec, handling, &request, tx)
    }

    fn names(shown: &Monitored) -> Vec<&'static str> {
        match shown {
            Monitored::Shown(queued) => queued.iter().map(|(name, _)| *name).collect(),
            other => panic!("expected Shown, got {other:?}"),
        }
    }

    #[test]
    fn a_monitoring_client_may_not_touch_keys_but_may_ping() {
        let table = CommandTable::builtin();
        let mut tx = Transaction::default();
        assert_eq!(
            run(&table, true, &["GET", "k"], &mut tx),
            Monitored::Refused
        );
        assert_eq!(
            run(&table, true, &["SET", "k", "v"], &mut tx),
            Monitored::Refused
        );
        assert_eq!(
            run(&table, true, &["PING"], &mut tx),
            Monitored::Shown(Vec::new())
        );
        assert_eq!(
            run(&table, false, &["GET", "k"], &mut tx),
            Monitored::Shown(Vec::new())
        );
    }

    #[test]
    fn admin_commands_are_never_shown() {
        let table = CommandTable::builtin();
        let mut tx = Transaction::default();
        assert_eq!(
            run(&table, false, &["CONFIG", "GET", "x"], &mut tx),
            Monitored::Unseen
        );
    }

    #[test]
    fn queued_commands_show_when_exec_runs_them_and_not_at_all_when_it_is_doomed() {
        let table = CommandTable::builtin();
        let mut tx = Transaction {
            queuing: true,
            ..Transaction::default()
        };
        assert_eq!(
            run(&table, false, &["SET", "k", "v"], &mut tx),
            Monitored::Unseen
        );
        assert_eq!(
            run(&table, false, &["INCR", "k"], &mut tx),
            Monitored::Unseen
        );
        assert_eq!(
            names(&run(&table, false, &["EXEC"], &mut tx)),
            ["set", "incr"]
        );
        assert!(tx.take_shown().is_empty());

        assert_eq!(
            run(&table, false, &["SET", "k", "v"], &mut tx),
            Monitored::Unseen
        );
        tx.dirty = true;
        assert_eq!(
            run(&table, false, &["EXEC"], &mut tx),
            Monitored::Shown(Vec::new())
        );
        assert!(tx.take_shown().is_empty());
    }
}
