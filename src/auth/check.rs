//! May this user run this request? Redis 7.0's `ACLSelectorCheckCmd` without selectors.
//!
//! The command (or subcommand) bit first, then every key for the access its key spec declares
//! (`access` needs a pattern granting read; `insert`, `update`, `delete` one granting write),
//! then the channels of the pub/sub commands that publish or subscribe. A user with `allkeys`
//! and `allchannels` pays one bit test; others one key extraction into the caller's scratch
//! vector (no allocation once it has grown) and a glob per pattern. No I/O.

use bytes::Bytes;

use super::pattern::glob_match;
use super::user::User;
use crate::command::{CommandSpec, Flags, KeyRef, KeySpecFlags, key_positions};
use crate::error::ReplyError;

/// Why a request is refused, with the argument index at fault for keys and channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The command itself.
    Command,
    /// The key at this argument index.
    Key(usize),
    /// The channel at this argument index.
    Channel(usize),
}

impl Denied {
    /// The `-NOPERM` reply redis 7.0 gives for this refusal.
    pub fn noperm(&self, spec: &CommandSpec) -> ReplyError {
        match self {
            Denied::Command => ReplyError::NoPermCommand(spec.name),
            Denied::Key(_) => ReplyError::NoPermKey,
            Denied::Channel(_) => ReplyError::NoPermChannel,
        }
    }
}

/// Checks `args` (`args[0]` the command name) of the command row `spec` against `user`.
///
/// `scratch` is reused for the keys; it is cleared first.
///
/// # Errors
/// What is refused first: the command, then a key, then a channel.
pub fn check(
    user: &User,
    spec: &CommandSpec,
    args: &[Bytes],
    scratch: &mut Vec<KeyRef>,
) -> Result<(), Denied> {
    if !spec.flags.contains(Flags::NO_AUTH)
        && !user.commands.allows(spec.id)
        && !first_arg_allowed(user, spec, args)
    {
        return Err(Denied::Command);
    }
    if !user.all_keys && spec.has_keys() {
        scratch.clear();
        // Keys that cannot be found (bad numkeys) are not checked: the node answers the
        // command's own error, as redis-server does.
        let _ = key_positions(spec, args, scratch);
        for key in scratch.iter() {
            if key.flags.contains(KeySpecFlags::NOT_KEY) {
                continue;
            }
            let flags = if key.flags.contains(KeySpecFlags::VARIABLE_FLAGS) {
                variable_flags(spec, args)
            } else {
                key.flags
            };
            if !key_allowed(user, &args[key.position], flags) {
                return Err(Denied::Key(key.position));
            }
        }
    }
    if !user.all_channels
        && spec.flags.contains(Flags::PUBSUB)
        && let Some((positions, pattern)) = channel_args(spec, args)
    {
        for position in positions {
            if !channel_allowed(user, &args[position], pattern) {
                return Err(Denied::Channel(position));
            }
        }
    }
    Ok(())
}

fn first_arg_allowed(user: &User, spec: &CommandSpec, args: &[Bytes]) -> bool {
    let Some(first) = args.get(1) else {
        return false;
    };
    user.first_args
        .iter()
        .find(|(id, _)| *id == spec.id)
        .is_some_and(|(_, allowed)| allowed.iter().any(|a| first.eq_ignore_ascii_case(a)))
}

/// The key flags of the commands whose access depends on their arguments, as redis'
/// `setGetKeys` and `bitfieldGetKeys` give them.
fn variable_flags(spec: &CommandSpec, args: &[Bytes]) -> KeySpecFlags {
    let read_write = KeySpecFlags::RW
        .union(KeySpecFlags::ACCESS)
        .union(KeySpecFlags::UPDATE);
    match spec.name {
        // SET overwrites, unless GET also returns the old value.
        "set" => {
            if args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get")) {
                read_write
            } else {
                KeySpecFlags::OW.union(KeySpecFlags::UPDATE)
            }
        }
        // BITFIELD only reads when it has nothing but well-formed GET and OVERFLOW.
        "bitfield" => {
            let mut i = 2;
            while i < args.len() {
                let rest = args.len() - i - 1;
                let arg = &args[i];
                if arg.eq_ignore_ascii_case(b"get") && rest >= 2 {
                    i += 3;
                } else if arg.eq_ignore_ascii_case(b"overflow") && rest >= 1 {
                    i += 2;
                } else {
                    return read_write;
                }
            }
            KeySpecFlags::RO.union(KeySpecFlags::ACCESS)
        }
        _ => read_write,
    }
}

/// Whether `key`, used as `flags` says, matches a pattern granting that access.
pub fn key_allowed(user: &User, key: &[u8], flags: KeySpecFlags) -> bool {
    if user.all_keys {
        return true;
    }
    let read = flags.contains(KeySpecFlags::ACCESS);
    let write = flags.contains(KeySpecFlags::INSERT)
        || flags.contains(KeySpecFlags::DELETE)
        || flags.contains(KeySpecFlags::UPDATE);
    user.keys
        .iter()
        .any(|p| (p.read || !read) && (p.write || !write) && glob_match(&p.pattern, key))
}

/// Whether `channel` may be used; a pattern (`PSUBSCRIBE`) must be listed literally.
pub fn channel_allowed(user: &User, channel: &[u8], pattern: bool) -> bool {
    user.all_channels
        || user.channels.iter().any(|allowed| {
            if pattern {
                **allowed == *channel
            } else {
                glob_match(allowed, channel)
            }
        })
}

/// The channel arguments and whether they are patterns, for the commands that publish or
/// subscribe (unsubscribing is always allowed).
fn channel_args(spec: &CommandSpec, args: &[Bytes]) -> Option<(std::ops::Range<usize>, bool)> {
    match spec.name {
        // PUBLISH channel message: the channel only.
        "publish" | "spublish" => Some((1..args.len().min(2), false)),
        "subscribe" | "ssubscribe" => Some((1..args.len(), false)),
        "psubscribe" => Some((1..args.len(), true)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rules::{apply_all, split_rules};
    use crate::command::{CommandTable, Resolved};

    fn user(table: &CommandTable, rules: &str) -> User {
        let mut user = User::new("u", table);
        apply_all(&mut user, split_rules(rules), table).expect("valid rules");
        user
    }

    fn run(table: &CommandTable, user: &User, line: &str) -> Result<(), Denied> {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let Resolved::Command(spec) = table.resolve(&args) else {
            panic!("unknown command in {line}");
        };
        check(user, spec, &args, &mut Vec::new())
    }

    #[test]
    fn revenue_user() {
        let table = CommandTable::builtin();
        let u = user(&table, "on >secret ~revenue:* &alerts +@all -@dangerous");
        let cases: &[(&str, Result<(), Denied>)] = &[
            ("GET revenue:1", Ok(())),
            ("SET revenue:1 x", Ok(())),
            ("GET other", Err(Denied::Key(1))),
            ("MSET revenue:1 a other b", Err(Denied::Key(3))),
            ("FLUSHALL", Err(Denied::Command)),
            ("KEYS *", Err(Denied::Command)),
            ("CLIENT KILL ID 1", Err(Denied::Command)),
            ("CLIENT ID", Ok(())),
            ("PUBLISH alerts hello", Ok(())),
            ("PUBLISH other alerts", Err(Denied::Channel(1))),
            ("SUBSCRIBE alerts other", Err(Denied::Channel(2))),
            ("PSUBSCRIBE alert*", Err(Denied::Channel(1))),
            ("UNSUBSCRIBE other", Ok(())),
            ("EVAL x 1 revenue:a", Ok(())),
            ("EVAL x 1 other", Err(Denied::Key(3))),
            ("EVAL x 0", Ok(())),
            ("AUTH a b", Ok(())),
        ];
        for (line, want) in cases {
            assert_eq!(run(&table, &u, line), *want, "{line}");
        }
    }

    #[test]
    fn read_and_write_patterns() {
        let table = CommandTable::builtin();
        let u = user(&table, "on nopass %R~r:* %W~w:* +@all");
        let cases: &[(&str, Result<(), Denied>)] = &[
            ("GET r:1", Ok(())),
            ("SET r:1 x", Err(Denied::Key(1))),
            ("SET w:1 x", Ok(())),
            ("GET w:1", Err(Denied::Key(1))),
            ("LPUSH w:1 x", Ok(())),
            ("COPY r:1 w:1", Ok(())),
            ("COPY w:1 r:1", Err(Denied::Key(1))),
            ("EXISTS w:1", Ok(())),
            ("DEL r:1", Err(Denied::Key(1))),
            ("DEL w:1", Ok(())),
            ("SET w:1 x GET", Err(Denied::Key(1))),
            ("BITFIELD w:1 SET u8 0 1", Err(Denied::Key(1))),
            ("BITFIELD w:1 GET u8 0", Err(Denied::Key(1))),
            ("BITFIELD r:1 GET u8 0", Ok(())),
            ("EVAL x 1 w:1", Err(Denied::Key(3))),
            ("SETRANGE w:1 0 x", Ok(())),
            ("SORT r:1 STORE w:2", Ok(())),
            ("GEORADIUS r:1 0 0 1 km STORE w:3", Ok(())),
            ("MIGRATE h 1 w:1 0 10", Err(Denied::Key(3))),
            ("GETDEL w:1", Err(Denied::Key(1))),
            ("XREAD STREAMS r:1 0", Ok(())),
        ];
        for (line, want) in cases {
            assert_eq!(run(&table, &u, line), *want, "{line}");
        }
    }

    #[test]
    fn first_args_and_categories() {
        let table = CommandTable::builtin();
        let u = user(&table, "on nopass allkeys -@all +@read +select|0");
        assert_eq!(run(&table, &u, "GET a"), Ok(()));
        assert_eq!(run(&table, &u, "SET a b"), Err(Denied::Command));
        assert_eq!(run(&table, &u, "SELECT 0"), Ok(()));
        assert_eq!(run(&table, &u, "SELECT 1"), Err(Denied::Command));
    }

    #[test]
    fn noperm_texts_match_redis() {
        let table = CommandTable::builtin();
        let spec = table.lookup("client|kill").expect("known");
        assert_eq!(
            Denied::Command.noperm(spec).to_string(),
            "NOPERM this user has no permissions to run the 'client|kill' command"
        );
        assert_eq!(
            Denied::Key(1).noperm(spec).to_string(),
            "NOPERM this user has no permissions to access one of the keys used as arguments"
        );
        assert_eq!(
            Denied::Channel(1).noperm(spec).to_string(),
            "NOPERM this user has no permissions to access one of the channels used as arguments"
        );
    }
}
