//! A tracking client's options and its invalidations (`CLIENT TRACKING ON`, in `tracking.rs`):
//! parsing `CLIENT TRACKING` with redis' checks in redis' order, `CLIENT CACHING`, what
//! `CLIENT TRACKINGINFO` shows, and which keys of a command are remembered. No I/O: the session
//! acts on what these return.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::command::{CommandSpec, Flags};
use crate::error::ReplyError;
use crate::protocol::reply::{write_array_len, write_bulk, write_integer, write_map_len};
use crate::protocol::{Protocol, string2ll};
use crate::tracking::{Invalidation, Mode};

/// A `CLIENT TRACKING` that passed redis' checks.
#[derive(Debug)]
pub(super) enum TrackingCommand {
    Off,
    /// The options, and the new prefixes to merge into the client's set.
    On(TrackingOn, Vec<Bytes>),
}

/// Parses `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN] [OPTOUT]
/// [NOLOOP]` with redis' checks and errors, in redis' order, for a client whose tracking is
/// `current`; `is_client` says whether a client id exists now, `max_prefixes` caps the
/// client's prefixes.
pub(super) fn parse(
    args: &[Bytes],
    current: Option<&Tracking>,
    is_client: impl Fn(u64) -> bool,
    max_prefixes: usize,
) -> Result<TrackingCommand, ReplyError> {
    let mut mode = Mode::default();
    let mut new_prefixes: Vec<Bytes> = Vec::new();
    let (mut optin, mut optout, mut redirect) = (false, false, 0);
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        // No lowercase copy: a request may carry 10,000 options.
        let is = |name: &[u8]| args[i].eq_ignore_ascii_case(name);
        if is(b"redirect") && more {
            // Checked as redis parses, before the other options' checks (and on OFF).
            if redirect != 0 {
                return Err(ReplyError::RedirectTwice);
            }
            let id = string2ll(&args[i + 1]).ok_or(ReplyError::NotInteger)?;
            // As redis: the target must exist now, though it may leave later.
            match u64::try_from(id) {
                Ok(id) if is_client(id) => redirect = id,
                _ => return Err(ReplyError::RedirectTargetMissing),
            }
            i += 1;
        } else if is(b"bcast") {
            mode.bcast = true;
        } else if is(b"optin") {
            optin = true;
        } else if is(b"optout") {
            optout = true;
        } else if is(b"noloop") {
            mode.noloop = true;
        } else if is(b"prefix") && more {
            new_prefixes.push(args[i + 1].clone());
            i += 1;
        } else {
            return Err(ReplyError::Syntax);
        }
        i += 1;
    }
    if args[2].eq_ignore_ascii_case(b"off") {
        return Ok(TrackingCommand::Off);
    }
    if !args[2].eq_ignore_ascii_case(b"on") {
        return Err(ReplyError::Syntax);
    }
    if !mode.bcast && !new_prefixes.is_empty() {
        return Err(ReplyError::PrefixWithoutBcast);
    }
    if current.is_some_and(|c| c.mode.bcast != mode.bcast) {
        return Err(ReplyError::BcastSwitch);
    }
    if mode.bcast && (optin || optout) {
        return Err(ReplyError::OptWithBcast);
    }
    if optin && optout {
        return Err(ReplyError::OptinAndOptout);
    }
    if current.is_some_and(|c| (optin && c.optout) || (optout && c.optin)) {
        return Err(ReplyError::OptSwitch);
    }
    let existing = current.map_or(0, |t| t.mode.prefixes.len());
    if existing + new_prefixes.len() > max_prefixes {
        return Err(ReplyError::TooManyPrefixes(max_prefixes));
    }
    let on = TrackingOn {
        mode,
        optin,
        optout,
        redirect,
    };
    Ok(TrackingCommand::On(on, new_prefixes))
}

/// `CLIENT CACHING yes|no` for a client whose tracking is `tracking`.
pub(super) fn caching(tracking: Option<&mut Tracking>, arg: &[u8]) -> Result<(), ReplyError> {
    let Some(tracking) = tracking.filter(|t| t.optin || t.optout) else {
        return Err(ReplyError::CachingWithoutOpt);
    };
    let yes = arg.eq_ignore_ascii_case(b"yes");
    if yes && !tracking.optin {
        return Err(ReplyError::CachingYesWithoutOptin);
    }
    if arg.eq_ignore_ascii_case(b"no") && !tracking.optout {
        return Err(ReplyError::CachingNoWithoutOptout);
    }
    if !yes && !arg.eq_ignore_ascii_case(b"no") {
        return Err(ReplyError::Syntax);
    }
    tracking.caching = Some(yes);
    Ok(())
}

/// The redirect target as `CLIENT GETREDIR`, `TRACKINGINFO` and `CLIENT LIST` show it: -1
/// without tracking, else the `REDIRECT` target (0: none).
pub(super) fn redirect_shown(tracking: Option<&Tracking>) -> i64 {
    match tracking {
        None => -1,
        Some(t) => i64::try_from(t.redirect).unwrap_or(i64::MAX),
    }
}

/// Writes the reply to `CLIENT TRACKINGINFO` for a client whose tracking is `tracking`.
pub(super) fn write_info(tracking: Option<&Tracking>, protocol: Protocol, out: &mut BytesMut) {
    let mut flags: Vec<&[u8]> = Vec::new();
    match tracking {
        None => flags.push(b"off"),
        Some(t) => {
            flags.push(b"on");
            let named: [(bool, &[u8]); 7] = [
                (t.mode.bcast, b"bcast"),
                (t.optin, b"optin"),
                (t.optout, b"optout"),
                (t.caching == Some(true), b"caching-yes"),
                (t.caching == Some(false), b"caching-no"),
                (t.mode.noloop, b"noloop"),
                (t.broken, b"broken_redirect"),
            ];
            flags.extend(named.iter().filter(|(on, _)| *on).map(|(_, name)| *name));
        }
    }
    write_map_len(out, protocol, 3);
    write_bulk(out, b"flags");
    match protocol {
        Protocol::Resp2 => write_array_len(out, flags.len()),
        Protocol::Resp3 => out.put_slice(format!("~{}\r\n", flags.len()).as_bytes()),
    }
    for flag in flags {
        write_bulk(out, flag);
    }
    write_bulk(out, b"redirect");
    write_integer(out, redirect_shown(tracking));
    write_bulk(out, b"prefixes");
    let prefixes = tracking.map(|t| &*t.mode.prefixes);
    write_array_len(out, prefixes.map_or(0, |p| p.len()));
    for prefix in prefixes.into_iter().flatten() {
        write_bulk(out, prefix);
    }
}

/// What the tracker must learn of a command's keys.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum KeysUse {
    /// The client reads them: it is told when they change.
    Remember,
    /// The client writes them with `NOLOOP`: it is not told of its own writes.
    Wrote,
    Nothing,
}

/// The options of a `CLIENT TRACKING ON` that passed redis' checks, waiting for its prefix set.
#[derive(Debug)]
pub(super) struct TrackingOn {
    /// `BCAST` and `NOLOOP`; the prefixes come with [`Prefixes`].
    pub(super) mode: Mode,
    pub(super) optin: bool,
    pub(super) optout: bool,
    pub(super) redirect: u64,
}

/// The client's prefix set with the new prefixes merged in, or redis' overlap error and the set
/// as it was.
pub(super) type Prefixes = Result<Arc<BTreeSet<Bytes>>, (ReplyError, Arc<BTreeSet<Bytes>>)>;

/// A tracking client's options.
#[derive(Debug)]
pub(super) struct Tracking {
    pub(super) mode: Mode,
    pub(super) optin: bool,
    pub(super) optout: bool,
    /// `CLIENT CACHING yes|no`, for the next command.
    pub(super) caching: Option<bool>,
    /// `REDIRECT`: the client id invalidations go to instead (0: this client).
    pub(super) redirect: u64,
    /// The `REDIRECT` target was gone when an invalidation was due (until the next `ON`).
    pub(super) broken: bool,
    /// Invalidations for this client, from the tracker.
    pub(super) pushes: mpsc::UnboundedReceiver<Invalidation>,
    pub(super) sender: mpsc::UnboundedSender<Invalidation>,
}

impl Tracking {
    /// Before a command (row `spec`) runs: what the tracker must learn of its keys (default
    /// mode, unless OPTIN/OPTOUT say otherwise). `CLIENT CACHING`'s choice lasts one command,
    /// or the whole of a `MULTI` (`queuing`).
    pub(super) fn keys_use(&mut self, spec: &CommandSpec, queuing: bool) -> KeysUse {
        let caching = if spec.name.starts_with("client|") || queuing {
            self.caching
        } else {
            self.caching.take()
        };
        if spec.flags.contains(Flags::READONLY) {
            let skip =
                (self.optin && caching != Some(true)) || (self.optout && caching == Some(false));
            match !self.mode.bcast && !skip {
                true => KeysUse::Remember,
                false => KeysUse::Nothing,
            }
        } else if self.mode.noloop {
            KeysUse::Wrote
        } else {
            KeysUse::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandTable;
    use crate::protocol::View;

    fn args(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// `CLIENT TRACKING <words>` for a client tracking as `current`; only client 7 exists.
    fn parsed(words: &str, current: Option<&Tracking>) -> Result<TrackingCommand, ReplyError> {
        parse(
            &args(&format!("CLIENT TRACKING {words}")),
            current,
            |id| id == 7,
            3,
        )
    }

    fn error(words: &str, current: Option<&Tracking>) -> ReplyError {
        match parsed(words, current) {
            Err(error) => error,
            Ok(command) => panic!("{words}: accepted as {command:?}"),
        }
    }

    fn tracking(on: &str) -> Tracking {
        let Ok(TrackingCommand::On(on, prefixes)) = parsed(on, None) else {
            panic!("{on}: not ON");
        };
        let (sender, pushes) = mpsc::unbounded_channel();
        let mut mode = on.mode;
        mode.prefixes = Arc::new(prefixes.into_iter().collect());
        Tracking {
            mode,
            optin: on.optin,
            optout: on.optout,
            caching: None,
            redirect: on.redirect,
            broken: false,
            pushes,
            sender,
        }
    }

    #[test]
    fn options_are_checked_in_redis_order() {
        assert_eq!(
            error("ON REDIRECT 7 REDIRECT 7", None),
            ReplyError::RedirectTwice
        );
        assert_eq!(error("ON REDIRECT x", None), ReplyError::NotInteger);
        assert_eq!(
            error("ON REDIRECT 8", None),
            ReplyError::RedirectTargetMissing
        );
        // Parsing errors come first, OFF ignores the rest.
        assert_eq!(error("OFF FOO", None), ReplyError::Syntax);
        assert!(matches!(
            parsed("OFF PREFIX a", None),
            Ok(TrackingCommand::Off)
        ));
        assert_eq!(error("MAYBE", None), ReplyError::Syntax);
        assert_eq!(error("ON PREFIX a", None), ReplyError::PrefixWithoutBcast);
        assert_eq!(error("ON BCAST OPTIN", None), ReplyError::OptWithBcast);
        assert_eq!(error("ON OPTIN OPTOUT", None), ReplyError::OptinAndOptout);
        let four = "ON BCAST PREFIX a PREFIX b PREFIX c PREFIX d";
        assert_eq!(error(four, None), ReplyError::TooManyPrefixes(3));
        let Ok(TrackingCommand::On(on, prefixes)) =
            parsed("on bcast noloop prefix a prefix b redirect 7", None)
        else {
            panic!("not ON");
        };
        assert!(on.mode.bcast && on.mode.noloop && !on.optin && !on.optout);
        assert_eq!(on.redirect, 7);
        assert_eq!(prefixes, args("a b"));
    }

    #[test]
    fn a_tracking_client_may_not_switch_mode_or_opt_in_and_out() {
        let optin = tracking("ON OPTIN");
        assert_eq!(error("ON BCAST", Some(&optin)), ReplyError::BcastSwitch);
        assert_eq!(error("ON OPTOUT", Some(&optin)), ReplyError::OptSwitch);
        assert!(parsed("ON OPTIN NOLOOP", Some(&optin)).is_ok());
        let bcast = tracking("ON BCAST PREFIX a PREFIX b");
        // Prefixes add up: two held, two new, three allowed.
        let more = "ON BCAST PREFIX c PREFIX d";
        assert_eq!(error(more, Some(&bcast)), ReplyError::TooManyPrefixes(3));
    }

    #[test]
    fn caching_follows_optin_and_optout_and_lasts_one_command() {
        let table = CommandTable::builtin();
        let get = table.lookup("get").expect("get");
        let set = table.lookup("set").expect("set");
        let setname = table.lookup("client|setname").expect("client|setname");
        let mut default = tracking("ON");
        assert!(caching(Some(&mut default), b"yes").is_err());
        assert!(caching(None, b"yes").is_err());
        assert_eq!(default.keys_use(get, false), KeysUse::Remember);
        assert_eq!(default.keys_use(set, false), KeysUse::Nothing);

        let mut optin = tracking("ON OPTIN");
        assert!(caching(Some(&mut optin), b"no").is_err());
        assert!(caching(Some(&mut optin), b"maybe").is_err());
        assert_eq!(optin.keys_use(get, false), KeysUse::Nothing);
        assert_eq!(caching(Some(&mut optin), b"YES"), Ok(()));
        // A CLIENT command in between leaves the choice for the next command.
        assert_eq!(optin.keys_use(setname, false), KeysUse::Nothing);
        assert_eq!(optin.keys_use(get, false), KeysUse::Remember);
        assert_eq!(optin.keys_use(get, false), KeysUse::Nothing);
        assert_eq!(optin.keys_use(set, false), KeysUse::Nothing);
        let mut noloop = tracking("ON NOLOOP");
        assert_eq!(noloop.keys_use(set, false), KeysUse::Wrote);
        assert_eq!(noloop.keys_use(get, false), KeysUse::Remember);
        // Inside MULTI the choice lasts the whole transaction.
        assert_eq!(caching(Some(&mut optin), b"yes"), Ok(()));
        assert_eq!(optin.keys_use(get, true), KeysUse::Remember);
        assert_eq!(optin.keys_use(get, true), KeysUse::Remember);

        let mut optout = tracking("ON OPTOUT");
        assert_eq!(caching(Some(&mut optout), b"no"), Ok(()));
        assert_eq!(optout.keys_use(get, false), KeysUse::Nothing);
        assert_eq!(optout.keys_use(get, false), KeysUse::Remember);
        let mut bcast = tracking("ON BCAST");
        assert_eq!(bcast.keys_use(get, false), KeysUse::Nothing);
    }

    #[test]
    fn trackinginfo_shows_flags_redirect_and_prefixes() {
        let mut out = BytesMut::new();
        write_info(None, Protocol::Resp2, &mut out);
        let mut fields = View::of(&out).and_then(View::elements).expect("map");
        assert_eq!(
            fields.next_view().and_then(|v| v.bulk()),
            Some(&b"flags"[..])
        );
        let mut flags = fields.next_view().and_then(View::elements).expect("flags");
        assert_eq!(flags.next_view().and_then(|v| v.bulk()), Some(&b"off"[..]));
        assert_eq!(
            fields.next_view().and_then(|v| v.bulk()),
            Some(&b"redirect"[..])
        );
        assert_eq!(fields.next_view().and_then(|v| v.integer()), Some(-1));

        let mut bcast = tracking("ON BCAST NOLOOP PREFIX a REDIRECT 7");
        bcast.broken = true;
        let mut out = BytesMut::new();
        write_info(Some(&bcast), Protocol::Resp3, &mut out);
        let mut fields = View::of(&out).and_then(View::elements).expect("map");
        fields.next_view();
        let flags: Vec<&[u8]> = fields
            .next_view()
            .and_then(View::elements)
            .expect("a set of flags")
            .filter_map(|f| View::of(f)?.bulk())
            .collect();
        assert_eq!(flags, [&b"on"[..], b"bcast", b"noloop", b"broken_redirect"]);
        fields.next_view();
        assert_eq!(fields.next_view().and_then(|v| v.integer()), Some(7));
        fields.next_view();
        let prefixes = fields
            .next_view()
            .and_then(View::elements)
            .expect("prefixes");
        assert_eq!(prefixes.len(), 1);
    }
}
