//! The session's side of `CLIENT TRACKING`: the options redis-server accepts (with its errors),
//! `CLIENT CACHING`, `CLIENT TRACKINGINFO`/`GETREDIR`, remembering the keys of read-only commands,
//! and writing invalidations (RESP3 pushes) in the right place among the replies.
//!
//! The table of who read what, and the node listeners, are in [`crate::tracking`]. With
//! `REDIRECT id`, a client's invalidations go to client `id` instead, on whatever worker thread
//! it runs: through its registry entry ([`crate::clients::ClientEntry::redirect`]), whose alarm
//! wakes it. The target writes them as redis does: a RESP3 push, or for a RESP2 client with any
//! subscription a message on `__redis__:invalidate` (the subscription itself is an ordinary
//! one, held by the pub/sub hub: a `PUBLISH` to that channel reaches it as on redis), else
//! nothing. RESP2 clients without `REDIRECT` get no invalidations, as on redis-server.

use std::collections::BTreeSet;
use std::ops::Bound;

use bytes::{BufMut, Bytes};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Session;
use super::queue::{Pending, Task, TaskOutcome};
use super::tracking_state::{Prefixes, Tracking, TrackingOn};
use crate::command::{CommandSpec, Flags};
use crate::error::ReplyError;
use crate::protocol::reply::{write_array_len, write_bulk, write_integer, write_map_len};
use crate::protocol::{Protocol, Request, string2ll};
use crate::tracking::{Invalidation, Mode, Redirected, frames};

impl Session {
    /// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`.
    pub(super) fn client_tracking(&mut self, request: &Request) {
        let args = request.args();
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
                    return self.reply_error(ReplyError::RedirectTwice);
                }
                let Some(id) = string2ll(&args[i + 1]) else {
                    return self.reply_error(ReplyError::NotInteger);
                };
                // As redis: the target must exist now, though it may leave later.
                match u64::try_from(id) {
                    Ok(id) if self.shared.registry.get(id).is_some() => redirect = id,
                    _ => return self.reply_error(ReplyError::RedirectTargetMissing),
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
                return self.reply_error(ReplyError::Syntax);
            }
            i += 1;
        }
        if args[2].eq_ignore_ascii_case(b"off") {
            if let Some(tracking) = self.tracking.take() {
                drop(tracking);
                self.shared.tracker.disable(self.id);
            }
            return self.reply_ok();
        }
        if !args[2].eq_ignore_ascii_case(b"on") {
            return self.reply_error(ReplyError::Syntax);
        }
        if !mode.bcast && !new_prefixes.is_empty() {
            return self.reply_error(ReplyError::PrefixWithoutBcast);
        }
        if let Some(current) = &self.tracking
            && current.mode.bcast != mode.bcast
        {
            return self.reply_error(ReplyError::BcastSwitch);
        }
        if mode.bcast && (optin || optout) {
            return self.reply_error(ReplyError::OptWithBcast);
        }
        if optin && optout {
            return self.reply_error(ReplyError::OptinAndOptout);
        }
        if let Some(current) = &self.tracking
            && ((optin && current.optout) || (optout && current.optin))
        {
            return self.reply_error(ReplyError::OptSwitch);
        }
        let existing = self.tracking.as_ref().map_or(0, |t| t.mode.prefixes.len());
        let max_prefixes = self.shared.config.session.tracking_max_prefixes;
        if existing + new_prefixes.len() > max_prefixes {
            return self.reply_error(ReplyError::TooManyPrefixes(max_prefixes));
        }
        let on = TrackingOn {
            mode,
            optin,
            optout,
            redirect,
        };
        // The set moves out while it is built; `turn_tracking_on` puts it back either way.
        let existing = match self.tracking.as_mut() {
            Some(current) => std::mem::take(&mut current.mode.prefixes),
            None => BTreeSet::new(),
        };
        let bcast = on.mode.bcast;
        if existing.len() + new_prefixes.len() < OFFLOAD_PREFIXES {
            let prefixes = merge_prefixes(existing, &new_prefixes, bcast);
            return match self.turn_tracking_on(prefixes, on) {
                Pending::Done(reply) => self.reply_with(|out| out.put_slice(&reply)),
                wait => {
                    self.order.hold_next();
                    self.pending.push_back(wait);
                }
            };
        }
        // Thousands of prefixes take milliseconds to check and merge (seconds in a debug
        // build): a blocking thread does it, so the other clients of this worker don't wait.
        // Later requests wait behind it, as behind the listeners.
        let task = Task::new(async move {
            let merged =
                tokio::task::spawn_blocking(move || merge_prefixes(existing, &new_prefixes, bcast))
                    .await;
            match merged {
                Ok(prefixes) => TaskOutcome::Tracking(prefixes, on),
                // Only if the runtime is shutting down.
                Err(_) => TaskOutcome::Reply(ReplyError::PrefixCheckStopped.to_bytes()),
            }
        });
        self.order.hold_next();
        self.pending.push_back(Pending::Task(task));
    }

    /// Turns tracking on with `prefixes` (the client's set with the new ones merged, or the
    /// overlap error) and `on`'s options. Returns the reply's queue entry: `+OK` or the error
    /// at once, or a wait for the listeners.
    pub(super) fn turn_tracking_on(&mut self, prefixes: Prefixes, on: TrackingOn) -> Pending {
        let TrackingOn {
            mut mode,
            optin,
            optout,
            redirect,
        } = on;
        mode.prefixes = match prefixes {
            Ok(prefixes) => prefixes,
            Err((error, existing)) => {
                if let Some(current) = self.tracking.as_mut() {
                    current.mode.prefixes = existing;
                }
                return Pending::Done(error.to_bytes());
            }
        };
        let (sender, pushes) = match self.tracking.take() {
            Some(current) => (current.sender, current.pushes),
            None => mpsc::unbounded_channel(),
        };
        let wait = self
            .shared
            .tracker
            .enable(self.id, mode.clone(), sender.clone());
        self.tracking = Some(Tracking {
            mode,
            // Like redis, each `ON` replaces the options (prefixes add up).
            optin,
            optout,
            caching: None,
            // As redis: each `ON` sets the target anew (none without `REDIRECT`).
            redirect,
            broken: false,
            pushes,
            sender,
        });
        match wait {
            None => Pending::Done(Bytes::from_static(b"+OK\r\n")),
            Some(ready) => self.wait_for_listeners(ready),
        }
    }

    /// Answers `ON` once every primary's listener is ready; later requests wait behind it, so
    /// nothing the client reads can change unseen. After the retry deadline it gets an error
    /// (tracking stays on, and lost listeners will flush its cache).
    fn wait_for_listeners(&mut self, ready: oneshot::Receiver<()>) -> Pending {
        if self.shared.topology.slot_map().shards().is_empty() {
            self.shared.tracker.confirm(self.id);
            return Pending::Done(ReplyError::NoNodeKnown.to_bytes());
        }
        let deadline = Instant::now() + self.shared.live.load().session.retry_deadline();
        let tracker = self.shared.tracker.clone();
        let id = self.id;
        Pending::Task(Task::blocking(async move {
            TaskOutcome::Reply(match tokio::time::timeout_at(deadline, ready).await {
                Ok(Ok(())) => Bytes::from_static(b"+OK\r\n"),
                _ => {
                    tracker.confirm(id);
                    ReplyError::InvalidationsLate.to_bytes()
                }
            })
        }))
    }

    /// `CLIENT CACHING yes|no`.
    pub(super) fn client_caching(&mut self, args: &[Bytes]) {
        let Some(tracking) = self.tracking.as_mut().filter(|t| t.optin || t.optout) else {
            return self.reply_error(ReplyError::CachingWithoutOpt);
        };
        let yes = args[2].eq_ignore_ascii_case(b"yes");
        if yes && !tracking.optin {
            return self.reply_error(ReplyError::CachingYesWithoutOptin);
        }
        if args[2].eq_ignore_ascii_case(b"no") && !tracking.optout {
            return self.reply_error(ReplyError::CachingNoWithoutOptout);
        }
        if !yes && !args[2].eq_ignore_ascii_case(b"no") {
            return self.reply_error(ReplyError::Syntax);
        }
        tracking.caching = Some(yes);
        self.reply_ok();
    }

    /// `CLIENT GETREDIR`: -1 without tracking, else the `REDIRECT` target (0: none).
    pub(super) fn client_getredir(&mut self) {
        let redirect = self.tracking_redirect();
        self.reply_with(|out| write_integer(out, redirect));
    }

    /// The redirect target as `CLIENT GETREDIR`, `TRACKINGINFO` and `CLIENT LIST` show it.
    pub(super) fn tracking_redirect(&self) -> i64 {
        match &self.tracking {
            None => -1,
            Some(t) => i64::try_from(t.redirect).unwrap_or(i64::MAX),
        }
    }

    /// `CLIENT TRACKINGINFO`.
    pub(super) fn client_trackinginfo(&mut self) {
        let protocol = self.protocol;
        let (flags, redirect, prefixes): (Vec<&[u8]>, i64, Vec<Bytes>) = match &self.tracking {
            None => (vec![b"off"], -1, Vec::new()),
            Some(t) => {
                let mut flags: Vec<&[u8]> = vec![b"on"];
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
                let redirect = i64::try_from(t.redirect).unwrap_or(i64::MAX);
                (flags, redirect, t.mode.prefixes.iter().cloned().collect())
            }
        };
        self.reply_with(|out| {
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
            write_integer(out, redirect);
            write_bulk(out, b"prefixes");
            write_array_len(out, prefixes.len());
            for prefix in prefixes {
                write_bulk(out, &prefix);
            }
        });
    }

    /// Before a command runs: remember the keys it reads (default mode, unless OPTIN/OPTOUT say
    /// otherwise), or note its writes (NOLOOP). `CLIENT CACHING`'s choice lasts one command.
    pub(super) fn track_command(&mut self, spec: &CommandSpec, keys: &[Bytes]) {
        let Some(tracking) = self.tracking.as_mut() else {
            return;
        };
        let caching = if spec.name.starts_with("client|") || self.transaction.queuing() {
            tracking.caching
        } else {
            tracking.caching.take()
        };
        if keys.is_empty() {
            return;
        }
        let tracker = &self.shared.tracker;
        let keys = keys.iter().map(|k| &k[..]);
        if spec.flags.contains(Flags::READONLY) {
            let skip = (tracking.optin && caching != Some(true))
                || (tracking.optout && caching == Some(false));
            if !tracking.mode.bcast && !skip {
                tracker.remember(self.id, keys);
            }
        } else if tracking.mode.noloop {
            tracker.wrote(self.id, keys);
        }
    }

    /// Whether the client has tracking on.
    pub(super) fn tracking_on(&self) -> bool {
        self.tracking.is_some()
    }

    /// Whether reads must go to primaries: a tracking client is told of changes as primaries
    /// apply them, which a replica may not have applied yet.
    pub(super) fn tracking_reads_primary(&self) -> bool {
        self.tracking.is_some()
    }

    /// An invalidation from the tracker: written here (RESP3 only: redis sends RESP2 clients
    /// none on their own connection), or handed to the `REDIRECT` target, in both cases after
    /// the replies still owed to this client. When the target is gone, the client is told so
    /// (RESP3) instead, at each invalidation, as redis does.
    pub(super) fn invalidation(&mut self, invalidation: Invalidation) {
        let Some(tracking) = self.tracking.as_mut() else {
            return;
        };
        if tracking.redirect == 0 {
            if self.protocol == Protocol::Resp3 {
                self.after_replies(frames::push(&invalidation, Protocol::Resp3));
            }
            return;
        }
        let redirect = tracking.redirect;
        match self.shared.registry.get(redirect) {
            Some(target) => {
                let redirected = Redirected {
                    invalidation,
                    null: self.protocol,
                };
                if self.pending.is_empty() {
                    return target.redirect(redirected);
                }
                // Handed over once the replies still owed here are written (a task runs only
                // at the front of the queue): the application must not hear of a change on
                // the target's connection before it has read, here, a value from before it.
                let task = Task::new(async move {
                    target.redirect(redirected);
                    TaskOutcome::Reply(Bytes::new())
                });
                self.pending.push_back(Pending::Task(task));
            }
            None => {
                if !tracking.broken {
                    tracking.broken = true;
                    self.profile_stale = true;
                }
                if self.protocol == Protocol::Resp3 {
                    self.after_replies(frames::redirect_broken(redirect));
                }
            }
        }
    }

    /// Invalidations other clients redirect here: a push for a RESP3 client, a message on
    /// `__redis__:invalidate` for a RESP2 client with any subscription (redis' test is its
    /// pub/sub mode, not that channel), else dropped.
    pub(super) fn redirected(&mut self, redirected: Vec<Redirected>) {
        for Redirected { invalidation, null } in redirected {
            let frame = match self.protocol {
                Protocol::Resp3 => frames::push(&invalidation, null),
                Protocol::Resp2 if self.subs.any() => frames::message(&invalidation, null),
                Protocol::Resp2 => continue,
            };
            self.after_replies(frame);
        }
    }

    /// Writes `frame` after every reply still owed, so a client never caches a value it read
    /// before a change after hearing of the change.
    fn after_replies(&mut self, push: Bytes) {
        if self.pending.is_empty() {
            self.out.extend_from_slice(&push);
        } else {
            self.pending.push_back(Pending::Done(push));
        }
    }

    /// Tracking off (RESET, end of the session).
    pub(super) fn stop_tracking(&mut self) {
        if self.tracking.take().is_some() {
            self.shared.tracker.disable(self.id);
        }
    }

    fn reply_ok(&mut self) {
        self.reply_with(|out| out.put_slice(b"+OK\r\n"));
    }
}

/// Prefix sets of this many (existing and new together) are checked and merged on a blocking
/// thread.
const OFFLOAD_PREFIXES: usize = 1_000;

/// The client's prefix set `existing` with `new` merged in after redis' overlap check, or the
/// error and `existing` unchanged. Broadcast without any prefix is the empty prefix, every key,
/// as in redis.
fn merge_prefixes(mut existing: BTreeSet<Bytes>, new: &[Bytes], bcast: bool) -> Prefixes {
    if let Some(error) = prefix_collision(&existing, new) {
        return Err((error, existing));
    }
    existing.extend(new.iter().cloned());
    if bcast && existing.is_empty() {
        existing.insert(Bytes::new());
    }
    Ok(existing)
}

/// redis' check that no two prefixes of one client overlap (one a prefix of the other), with
/// its error texts, in O(n log n): redis compares every pair, which 80,000 prefixes turn into
/// seconds of CPU on the runtime.
///
/// Against `existing` (sorted, overlap-free) the first new prefix that overlaps is reported with
/// the first existing one it overlaps, as redis does. Among the new ones the pair reported is
/// one that overlaps, not necessarily the first pair redis' nested loop would meet.
fn prefix_collision(existing: &BTreeSet<Bytes>, new: &[Bytes]) -> Option<ReplyError> {
    let overlaps = |a: &[u8], b: &[u8]| a.starts_with(b) || b.starts_with(a);
    let with_existing = |prefix: &Bytes| -> Option<&Bytes> {
        // The only existing prefix of `prefix` is the greatest one not after it; existing ones
        // that extend `prefix` start at the first one not before it. Sorted order, as redis'.
        let before = existing
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(&prefix[..])))
            .next_back()
            .filter(|e| prefix.starts_with(e));
        before.or_else(|| {
            existing
                .range::<[u8], _>((Bound::Included(&prefix[..]), Bound::Unbounded))
                .next()
                .filter(|e| e.starts_with(prefix))
        })
    };
    // Among the new prefixes, if two overlap then two neighbours in sorted order do.
    let mut sorted: Vec<usize> = (0..new.len()).collect();
    sorted.sort_by(|&a, &b| new[a].cmp(&new[b]).then(a.cmp(&b)));
    let among_new = sorted
        .windows(2)
        .filter(|pair| overlaps(&new[pair[0]], &new[pair[1]]))
        .map(|pair| (pair[0].min(pair[1]), pair[0].max(pair[1])))
        .min();
    for (i, prefix) in new.iter().enumerate() {
        if let Some(other) = with_existing(prefix) {
            return Some(ReplyError::PrefixOverlapsExisting {
                prefix: prefix.clone(),
                existing: other.clone(),
            });
        }
        if let Some((first, second)) = among_new.filter(|&(first, _)| first == i) {
            return Some(ReplyError::PrefixOverlapsProvided {
                first: new[first].clone(),
                second: new[second].clone(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> BTreeSet<Bytes> {
        list.iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    fn list(items: &[&str]) -> Vec<Bytes> {
        items
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn overlapping_prefixes_are_found_as_redis_reports_them() {
        let existing = set(&["ab", "b:", "user:"]);
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["c", "d"], None),
            (
                &["abc"],
                Some("Prefix 'abc' overlaps with an existing prefix 'ab'"),
            ),
            (
                &["a"],
                Some("Prefix 'a' overlaps with an existing prefix 'ab'"),
            ),
            (
                &["x", "user:1"],
                Some("Prefix 'user:1' overlaps with an existing prefix 'user:'"),
            ),
            (
                &["x", "x1"],
                Some("Prefix 'x' overlaps with another provided prefix 'x1'"),
            ),
            (
                &["x1", "y", "x"],
                Some("Prefix 'x1' overlaps with another provided prefix 'x'"),
            ),
            (
                &["q", "q"],
                Some("Prefix 'q' overlaps with another provided prefix 'q'"),
            ),
            (
                &[""],
                Some("Prefix '' overlaps with an existing prefix 'ab'"),
            ),
        ];
        for (new, want) in cases {
            let got = prefix_collision(&existing, &list(new));
            match want {
                None => assert_eq!(got, None, "{new:?}"),
                Some(want) => {
                    let got = got.unwrap_or_else(|| panic!("{new:?}: no collision found"));
                    let got = got.to_string();
                    assert!(got.starts_with(&format!("ERR {want}")), "{new:?}: {got}");
                }
            }
        }
    }

    #[test]
    fn many_prefixes_are_checked_quickly() {
        let new: Vec<Bytes> = (0..80_000).map(|n| Bytes::from(format!("p{n}:"))).collect();
        let started = std::time::Instant::now();
        assert_eq!(prefix_collision(&BTreeSet::new(), &new), None);
        let mut tail = new.clone();
        tail.push(Bytes::from_static(b"p79999:x"));
        assert!(prefix_collision(&BTreeSet::new(), &tail).is_some());
        // Pairwise this was 6.4e9 comparisons (tens of seconds); sorted it is milliseconds.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
