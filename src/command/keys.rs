//! Key extraction: which arguments of a request are keys.
//!
//! Owns [`key_positions`], a port of redis 7.0's `getKeysFromCommandWithSpecs`
//! (src/db.c): walk the command's key specs (`getKeysUsingKeySpecs`), and when a
//! spec cannot say (begin or find `Unknown`, flagged `INCOMPLETE`, or out of
//! range) fall back to a per-command rule ported from redis' getkeys procs.
//! It knows nothing of slots: the caller hashes the keys it is given.
//!
//! Per-command rules, for the commands whose 7.0.15 key specs are incomplete or
//! unknown (`SORT`, `SORT_RO`, `MIGRATE`) and for the `GEORADIUS` pair:
//! - `SORT`: the key, plus the last `STORE dest`; `BY`/`GET` patterns are not keys.
//! - `SORT_RO`: the key.
//! - `MIGRATE`: the key at 3, or, with `KEYS`, the keys after it (key 3 must be empty).
//! - `GEORADIUS`, `GEORADIUSBYMEMBER`: the key, plus the last `STORE`/`STOREDIST`
//!   dest. Their 7.0 specs are complete keyword specs, so this rule only runs
//!   for rows whose specs fail (a node-merged row, for instance).
//!
//! Like `COMMAND GETKEYS`, finding no key at all is an error
//! ([`KeyError::NoKeys`]) unless the command is flagged `NO_MANDATORY_KEYS`
//! (`EVAL script 0`, `FCALL f 0`), and so is a numkeys of 0 for the others
//! (`ZUNIONSTORE d 0 a`). One deliberate difference: `NOT_KEY` specs are
//! included, because sharded pub/sub channels (`SPUBLISH`, `SSUBSCRIBE`,
//! `SUNSUBSCRIBE`) are routed by slot like keys; `GETKEYS` leaves them out.

use bytes::Bytes;

use crate::protocol::string2ll;

use super::table::{BeginSearch, CommandSpec, FindKeys, Flags, KeySpec, KeySpecFlags};

/// Why the keys of a request could not be found.
///
/// All of these mean the request is malformed or its keys are unknowable here:
/// the caller forwards it to any node, whose reply is redis' own error (or, for
/// a command we cannot parse, the right answer or a redirect).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The numkeys argument is missing or not an integer.
    #[error("{command}: numkeys is not an integer")]
    NumkeysNotInteger {
        /// Command (row) name.
        command: &'static str,
    },
    /// The numkeys argument is negative or larger than the arguments that follow.
    #[error("{command}: numkeys out of range")]
    NumkeysOutOfRange {
        /// Command (row) name.
        command: &'static str,
    },
    /// A key position is past the last argument (wrong number of arguments).
    #[error("{command}: key position past the last argument")]
    MissingKey {
        /// Command (row) name.
        command: &'static str,
    },
    /// `MIGRATE ... KEYS` with a non-empty key argument.
    #[error("migrate: the key argument must be empty when KEYS is used")]
    MigrateKeyNotEmpty,
    /// No key was found, and the command needs at least one (`XREAD` without `STREAMS`).
    #[error("{command}: no key in the arguments")]
    NoKeys {
        /// Command (row) name.
        command: &'static str,
    },
    /// The key specs cannot locate the keys and there is no per-command rule.
    #[error("{command}: key positions cannot be determined")]
    Undetermined {
        /// Command (row) name.
        command: &'static str,
    },
}

/// One key of a request: its argument index and how the command uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// Argument index (the command name is 0).
    pub position: usize,
    /// The flags of the key spec (or per-command rule) that found it: read, write, ...
    pub flags: KeySpecFlags,
}

/// Where [`key_positions`] puts the keys it finds: positions only, or positions with flags.
pub trait KeySink {
    /// Number of keys collected so far.
    fn len(&self) -> usize;
    /// Whether no key was collected.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops keys past the first `len`.
    fn truncate(&mut self, len: usize);
    /// Adds the key at `position`, used as `flags` says.
    fn push_key(&mut self, position: usize, flags: KeySpecFlags);
}

impl KeySink for Vec<usize> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
    fn push_key(&mut self, position: usize, _flags: KeySpecFlags) {
        self.push(position);
    }
}

impl KeySink for Vec<KeyRef> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
    fn push_key(&mut self, position: usize, flags: KeySpecFlags) {
        self.push(KeyRef { position, flags });
    }
}

/// Appends the argument indices of every key of a request, in argument order.
///
/// `args[0]` is the command name; for a subcommand (`OBJECT ENCODING key`) pass
/// the subcommand's row and the full arguments. Duplicates are kept. The order
/// is redis' (key spec by key spec), which is argument order for every command
/// but `GEORADIUS ... STOREDIST a STORE b` (`b` first). On error `out` is left
/// as it was.
///
/// # Errors
/// A [`KeyError`] when numkeys is bad, a key position is past the end, or the
/// command's keys cannot be determined; see [`KeyError`] for what to do.
pub fn key_positions<S: KeySink>(
    spec: &CommandSpec,
    args: &[Bytes],
    out: &mut S,
) -> Result<(), KeyError> {
    let start = out.len();
    let Err(err) = keys_from_specs(spec, args, out) else {
        let needs_keys = !spec.flags.contains(Flags::NO_MANDATORY_KEYS)
            && spec
                .key_specs
                .iter()
                .any(|ks| !ks.flags.contains(KeySpecFlags::NOT_KEY));
        if needs_keys && out.len() == start {
            return Err(KeyError::NoKeys { command: spec.name });
        }
        return Ok(());
    };
    out.truncate(start);
    // The per-command rules give the first key the first spec's flags and the others (a
    // STORE destination, MIGRATE's KEYS) the last spec's, as the specs of these rows are laid out.
    let flags = |ks: Option<&KeySpec>| ks.map_or(KeySpecFlags::NONE, |ks| ks.flags);
    let (first, rest) = (flags(spec.key_specs.first()), flags(spec.key_specs.last()));
    let result = match spec.name {
        "sort" => sort_keys(args, out, first, rest),
        "sort_ro" => first_key(spec.name, args, out, first),
        "migrate" => migrate_keys(args, out, first, rest),
        "georadius" | "georadiusbymember" => georadius_keys(args, out, first, rest),
        _ => Err(err),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Walks the key specs as redis' `getKeysUsingKeySpecs` does.
fn keys_from_specs<S: KeySink>(
    spec: &CommandSpec,
    args: &[Bytes],
    out: &mut S,
) -> Result<(), KeyError> {
    let command = spec.name;
    let argc = i64::try_from(args.len()).map_err(|_| KeyError::Undetermined { command })?;
    for key_spec in spec.key_specs {
        let Some(first) = begin_index(key_spec, args, argc, command)? else {
            // An optional keyword (STORE, KEYS) that is absent: no keys from this spec.
            continue;
        };
        let (first, last, step) = match key_spec.find {
            FindKeys::Range {
                last_key,
                key_step,
                limit,
            } => {
                let last = if last_key >= 0 {
                    first + i64::from(last_key)
                } else if limit == 0 {
                    argc + i64::from(last_key)
                } else if limit > 0 {
                    // Only 1/limit of what follows are keys (XREAD STREAMS k1 k2 id1 id2).
                    first + (argc - first) / i64::from(limit) + i64::from(last_key)
                } else {
                    return Err(KeyError::Undetermined { command });
                };
                (first, last, key_step)
            }
            FindKeys::KeyNum {
                keynum_idx,
                first_key,
                key_step,
            } => {
                let numkeys_at = usize::try_from(first + i64::from(keynum_idx))
                    .map_err(|_| KeyError::Undetermined { command })?;
                let numkeys = args
                    .get(numkeys_at)
                    .and_then(|a| string2ll(a))
                    .ok_or(KeyError::NumkeysNotInteger { command })?;
                if numkeys < 0 {
                    return Err(KeyError::NumkeysOutOfRange { command });
                }
                if numkeys == 0 {
                    // Redis fails the spec, then its getkeys proc finds no key either.
                    if spec.flags.contains(Flags::NO_MANDATORY_KEYS) {
                        continue;
                    }
                    return Err(KeyError::NumkeysOutOfRange { command });
                }
                let first = first + i64::from(first_key);
                let last = (numkeys - 1)
                    .saturating_mul(i64::from(key_step.max(1)))
                    .saturating_add(first);
                if last >= argc {
                    return Err(KeyError::NumkeysOutOfRange { command });
                }
                (first, last, key_step)
            }
            FindKeys::Unknown => return Err(KeyError::Undetermined { command }),
        };
        if step <= 0 {
            return Err(KeyError::Undetermined { command });
        }
        // As redis' getKeysUsingKeySpecs: an empty range gives no keys (`PFMERGE dest` has no
        // sources), and a range past the arguments of a variable-arity command gives none
        // either (the command itself reports the syntax error).
        if last < first {
            continue;
        }
        if first >= argc || last >= argc || first < 1 {
            if spec.arity < 0 && first >= 1 {
                continue;
            }
            return Err(KeyError::MissingKey { command });
        }
        let (Ok(first), Ok(last), Ok(step)) = (
            usize::try_from(first),
            usize::try_from(last),
            usize::try_from(step),
        ) else {
            return Err(KeyError::Undetermined { command });
        };
        for position in (first..=last).step_by(step) {
            out.push_key(position, key_spec.flags);
        }
        if key_spec.flags.contains(KeySpecFlags::INCOMPLETE) {
            return Err(KeyError::Undetermined { command });
        }
    }
    Ok(())
}

/// Where a key spec's keys begin; `Ok(None)` when its keyword is absent.
fn begin_index(
    key_spec: &KeySpec,
    args: &[Bytes],
    argc: i64,
    command: &'static str,
) -> Result<Option<i64>, KeyError> {
    match key_spec.begin {
        BeginSearch::Index(i) => Ok(Some(i64::from(i))),
        BeginSearch::Keyword {
            keyword,
            start_from,
        } => {
            // As redis: search forward from start_from up to (excluding) the last
            // argument, or backward from argc+start_from down to 1.
            let start_from = i64::from(start_from);
            let (start, end) = if start_from > 0 {
                (start_from, argc - 1)
            } else {
                (argc + start_from, 0)
            };
            let forward = start <= end;
            let mut i = start;
            while i != end {
                let Some(arg) = usize::try_from(i)
                    .ok()
                    .filter(|&i| i >= 1)
                    .and_then(|i| args.get(i))
                else {
                    break;
                };
                if arg.eq_ignore_ascii_case(keyword.as_bytes()) {
                    return Ok(Some(i + 1));
                }
                i += if forward { 1 } else { -1 };
            }
            Ok(None)
        }
        BeginSearch::Unknown => Err(KeyError::Undetermined { command }),
    }
}

/// `SORT_RO key ...`: only the key.
fn first_key<S: KeySink>(
    command: &'static str,
    args: &[Bytes],
    out: &mut S,
    flags: KeySpecFlags,
) -> Result<(), KeyError> {
    if args.len() < 2 {
        return Err(KeyError::MissingKey { command });
    }
    out.push_key(1, flags);
    Ok(())
}

/// `SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dest]`, as redis' `sortGetKeys`.
fn sort_keys<S: KeySink>(
    args: &[Bytes],
    out: &mut S,
    first: KeySpecFlags,
    rest: KeySpecFlags,
) -> Result<(), KeyError> {
    first_key("sort", args, out, first)?;
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let arg = &args[i];
        if arg.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            // The last STORE wins, as in SORT itself. Redis does not skip the
            // destination, so a destination named "limit" is scanned as an option.
            store = Some(i + 1);
        }
        i += 1;
    }
    if let Some(position) = store {
        out.push_key(position, rest);
    }
    Ok(())
}

/// `MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 u pw] [KEYS k ...]`,
/// as redis' `migrateGetKeys`.
fn migrate_keys<S: KeySink>(
    args: &[Bytes],
    out: &mut S,
    first: KeySpecFlags,
    rest: KeySpecFlags,
) -> Result<(), KeyError> {
    if args.len() < 6 {
        return Err(KeyError::MissingKey { command: "migrate" });
    }
    let mut i = 6;
    while i < args.len() {
        let arg = &args[i];
        if arg.eq_ignore_ascii_case(b"keys") {
            if !args[3].is_empty() {
                return Err(KeyError::MigrateKeyNotEmpty);
            }
            for position in i + 1..args.len() {
                out.push_key(position, rest);
            }
            return Ok(());
        }
        if arg.eq_ignore_ascii_case(b"auth") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"auth2") {
            i += 2;
        }
        i += 1;
    }
    out.push_key(3, first);
    Ok(())
}

/// `GEORADIUS[BYMEMBER] key ... [STORE dest] [STOREDIST dest]`, as redis' `georadiusGetKeys`.
fn georadius_keys<S: KeySink>(
    args: &[Bytes],
    out: &mut S,
    first: KeySpecFlags,
    rest: KeySpecFlags,
) -> Result<(), KeyError> {
    first_key("georadius", args, out, first)?;
    let mut store = None;
    let mut i = 5;
    while i < args.len() {
        let arg = &args[i];
        if (arg.eq_ignore_ascii_case(b"store") || arg.eq_ignore_ascii_case(b"storedist"))
            && i + 1 < args.len()
        {
            // STORE and STOREDIST together: the later one is the destination.
            store = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    if let Some(position) = store {
        out.push_key(position, rest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::table::{CommandTable, Resolved};

    /// Splits on spaces; `""` stands for an empty argument.
    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| {
                if a == "\"\"" {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(a.as_bytes())
                }
            })
            .collect()
    }

    fn keys(table: &CommandTable, line: &str) -> Result<Vec<usize>, KeyError> {
        let args = args(line);
        let spec = match table.resolve(&args) {
            Resolved::Command(spec) => spec,
            other => panic!("{line}: {other:?}"),
        };
        let mut out = vec![99];
        key_positions(spec, &args, &mut out)?;
        assert_eq!(out.first(), Some(&99), "{line}: must append");
        Ok(out[1..].to_vec())
    }

    #[test]
    fn key_positions_table() {
        let table = CommandTable::builtin();
        let cases: &[(&str, &[usize])] = &[
            ("GET k", &[1]),
            ("SET k v EX 10", &[1]),
            ("MSET a 1 b 2 c 3", &[1, 3, 5]),
            ("MGET a b c", &[1, 2, 3]),
            ("DEL a b a", &[1, 2, 3]),
            ("EVAL s 0", &[]),
            ("EVAL s 0 arg", &[]),
            ("EVAL s 2 a b arg", &[3, 4]),
            ("EVALSHA sha 1 a", &[3]),
            ("EVAL_RO s 1 a", &[3]),
            ("FCALL f 2 a b x", &[3, 4]),
            ("FCALL_RO f 0", &[]),
            ("XREAD COUNT 2 STREAMS a b 0 0", &[4, 5]),
            ("XREAD streams a 0", &[2]),
            ("XREADGROUP GROUP g c STREAMS a 0", &[5]),
            ("XREADGROUP GROUP g c COUNT 1 STREAMS a b > >", &[7, 8]),
            ("ZUNIONSTORE dest 2 a b WEIGHTS 1 2", &[1, 3, 4]),
            ("ZINTERSTORE dest 1 a", &[1, 3]),
            ("ZUNION 2 a b", &[2, 3]),
            ("ZDIFFSTORE d 2 a b", &[1, 3, 4]),
            ("ZINTERCARD 2 a b LIMIT 1", &[2, 3]),
            ("SINTERCARD 3 a b c", &[2, 3, 4]),
            ("LMPOP 2 a b LEFT", &[2, 3]),
            ("BLMPOP 0 2 a b LEFT COUNT 2", &[3, 4]),
            ("ZMPOP 1 a MIN", &[2]),
            ("BZMPOP 1.5 1 a MAX", &[3]),
            ("SORT k", &[1]),
            ("SORT k BY p STORE d", &[1, 5]),
            ("SORT k LIMIT 0 10 GET # GET p_* ALPHA STORE d", &[1, 11]),
            ("SORT k STORE a STORE b", &[1, 5]),
            ("SORT k GET store", &[1]),
            ("SORT k STORE", &[1]),
            ("SORT_RO k BY p GET q", &[1]),
            ("MIGRATE h 6379 k 0 1000", &[3]),
            ("MIGRATE h 6379 k 0 1000 COPY REPLACE", &[3]),
            ("MIGRATE h 6379 \"\" 0 1000 KEYS a b", &[7, 8]),
            ("MIGRATE h 6379 \"\" 0 1000 AUTH keys KEYS a", &[9]),
            (
                "MIGRATE h 6379 \"\" 0 1000 AUTH2 u keys KEYS a b",
                &[10, 11],
            ),
            ("OBJECT ENCODING k", &[2]),
            ("MEMORY USAGE k SAMPLES 5", &[2]),
            ("BITOP AND d a b", &[2, 3, 4]),
            ("GEORADIUS k 0 0 10 km STORE d", &[1, 7]),
            ("GEORADIUS k 0 0 10 km COUNT 5 STOREDIST d", &[1, 9]),
            ("GEORADIUS k 0 0 10 km", &[1]),
            ("GEORADIUSBYMEMBER k m 10 km STORE d", &[1, 6]),
            (
                "GEORADIUSBYMEMBER k m 10 km STOREDIST a STORE b",
                &[1, 8, 6],
            ),
            ("GEORADIUS_RO k 0 0 10 km", &[1]),
            ("XINFO STREAM k FULL", &[2]),
            ("PFCOUNT a b", &[1, 2]),
            ("RENAME a b", &[1, 2]),
            ("SMOVE a b m", &[1, 2]),
            ("LMOVE a b LEFT RIGHT", &[1, 2]),
            ("BLMOVE a b LEFT RIGHT 0", &[1, 2]),
            ("COPY a b DB 1", &[1, 2]),
            ("WAITAOF 1 0 0", &[]),
            ("HEXPIRE k 10 FIELDS 1 f", &[1]),
            ("HGETEX k PERSIST FIELDS 2 a b", &[1]),
            ("HSETEX k FNX EX 10 FIELDS 1 f v", &[1]),
            ("PUBLISH ch msg", &[]),
            ("SPUBLISH ch msg", &[1]),
            ("SSUBSCRIBE a b", &[1, 2]),
            ("PING", &[]),
            ("CLIENT SETNAME x", &[]),
            ("LCS a b", &[1, 2]),
            ("BLPOP a b 0", &[1, 2]),
            ("XADD s * f v", &[1]),
        ];
        for &(line, want) in cases {
            assert_eq!(keys(&table, line), Ok(want.to_vec()), "{line}");
        }
    }

    #[test]
    fn key_errors_table() {
        let table = CommandTable::builtin();
        let cases: &[(&str, KeyError)] = &[
            (
                "EVAL s 3 a",
                KeyError::NumkeysOutOfRange { command: "eval" },
            ),
            ("EVAL s -1", KeyError::NumkeysOutOfRange { command: "eval" }),
            (
                "EVAL s 9223372036854775807 a",
                KeyError::NumkeysOutOfRange { command: "eval" },
            ),
            (
                "EVAL s abc",
                KeyError::NumkeysNotInteger { command: "eval" },
            ),
            (
                "EVAL s 01 a",
                KeyError::NumkeysNotInteger { command: "eval" },
            ),
            ("EVAL s", KeyError::NumkeysNotInteger { command: "eval" }),
            (
                "ZUNIONSTORE d 3 a b",
                KeyError::NumkeysOutOfRange {
                    command: "zunionstore",
                },
            ),
            (
                "LMPOP 99999999999999999999 a LEFT",
                KeyError::NumkeysNotInteger { command: "lmpop" },
            ),
            ("GET", KeyError::MissingKey { command: "get" }),
            (
                "MIGRATE h 6379 k 0 1000 KEYS a",
                KeyError::MigrateKeyNotEmpty,
            ),
            ("MIGRATE h", KeyError::NoKeys { command: "migrate" }),
            ("SORT", KeyError::MissingKey { command: "sort" }),
            ("MSET", KeyError::NoKeys { command: "mset" }),
            ("XREAD COUNT 2 x", KeyError::NoKeys { command: "xread" }),
            (
                "ZUNIONSTORE d 0 a",
                KeyError::NumkeysOutOfRange {
                    command: "zunionstore",
                },
            ),
            (
                "LMPOP 0 a LEFT",
                KeyError::NumkeysOutOfRange { command: "lmpop" },
            ),
        ];
        for (line, want) in cases {
            let args = args(line);
            let Resolved::Command(spec) = table.resolve(&args) else {
                panic!("{line}: not resolved");
            };
            let mut out = vec![7];
            assert_eq!(
                key_positions(spec, &args, &mut out).as_ref(),
                Err(want),
                "{line}"
            );
            assert_eq!(out, vec![7], "{line}: out must be left as it was");
        }
    }

    #[test]
    fn parse_integer_matches_string2ll() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("12", Some(12)),
            ("-3", Some(-3)),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("-0", None),
            ("007", None),
            ("+1", None),
            (" 1", None),
            ("", None),
            ("-", None),
            ("1a", None),
        ];
        for &(text, want) in cases {
            assert_eq!(string2ll(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn every_command_extracts_keys_without_panicking() {
        // Odd argument lists must give keys or an error, never a panic or an index past the end.
        let table = CommandTable::builtin();
        let shapes = [
            "",
            "a",
            "a b",
            "STORE",
            "a STREAMS",
            "1 a",
            "2 a b c d e",
            "-1",
            "KEYS a",
        ];
        let mut specs: Vec<&CommandSpec> = Vec::new();
        for spec in table.iter() {
            specs.push(spec);
            specs.extend(spec.subcommands);
        }
        for spec in specs {
            for shape in shapes {
                let line = format!("{} {shape}", spec.full_name_upper());
                let args: Vec<Bytes> = line
                    .split_whitespace()
                    .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                    .collect();
                let mut out: Vec<usize> = Vec::new();
                if key_positions(spec, &args, &mut out).is_ok() {
                    assert!(
                        out.iter().all(|&i| i >= 1 && i < args.len()),
                        "{line}: {out:?}"
                    );
                }
            }
        }
    }

    /// Compares `key_positions` with a live redis-server's `COMMAND GETKEYS`.
    ///
    /// Starts its own redis-server on a unix socket in a temp dir (it fails, never skips, when
    /// redis-server is missing).
    #[test]
    fn key_positions_match_command_getkeys() {
        let node = getkeys::Node::start();
        let table = CommandTable::builtin();
        let mut lines: Vec<String> = getkeys::CASES.iter().map(|&l| l.to_owned()).collect();
        lines.extend(getkeys::sweep(&table));
        let mut mismatches = Vec::new();
        let mut channels = 0;
        let mut partial = 0;
        for line in &lines {
            let args = args(line);
            let Resolved::Command(spec) = table.resolve(&args) else {
                panic!("{line}: not resolved");
            };
            let redis = node.getkeys(&args);
            let mut out: Vec<usize> = Vec::new();
            let ours = key_positions(spec, &args, &mut out).map(|()| out);
            let same = match (&redis, &ours) {
                (Ok(r), Ok(o)) => r == o,
                // Redis found no key where we report an error (bad numkeys): both route anywhere.
                (Ok(r), Err(_)) => r.is_empty(),
                (Err(_), Err(_)) => true,
                (Err(e), Ok(o)) if e.contains("no key arguments") => {
                    // Sharded pub/sub channels: routed like keys here, left out by GETKEYS.
                    let only_channels = spec
                        .key_specs
                        .iter()
                        .all(|ks| ks.flags.contains(KeySpecFlags::NOT_KEY));
                    channels += usize::from(only_channels && !o.is_empty());
                    only_channels || o.is_empty()
                }
                // Redis 7.0's GETKEYS refuses a whole command when one range spec is empty
                // (`PFMERGE dest` without sources); its cluster routing then finds no key at all.
                // We route by the keys that are there, so the command runs on their owner.
                (Err(e), Ok(o))
                    if spec.arity < 0
                        && (e.contains("Invalid arguments") || e.contains("wrong number")) =>
                {
                    partial += 1;
                    o.iter().all(|&i| i < args.len())
                }
                (Err(_), Ok(_)) => false,
            };
            if !same {
                mismatches.push(format!("{line}: redis {redis:?}, ours {ours:?}"));
            }
        }
        eprintln!(
            "checked {} invocations ({} hand-written, {} generated) against COMMAND GETKEYS: \
             {} mismatches, {} expected differences (sharded pub/sub channels), {} partial specs \
             GETKEYS refuses",
            lines.len(),
            getkeys::CASES.len(),
            lines.len() - getkeys::CASES.len(),
            mismatches.len(),
            channels,
            partial
        );
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    mod getkeys {
        //! A tiny blocking client for the GETKEYS cross-check.

        use super::super::CommandSpec;
        use crate::command::table::CommandTable;
        use bytes::Bytes;
        use redis_protocol::resp2::decode::decode;
        use redis_protocol::resp2::types::OwnedFrame;
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        use std::process::{Child, Command, Stdio};
        use std::time::{Duration, Instant};

        /// Valid invocations (and a few invalid ones) to compare; `""` is an empty argument.
        pub(super) const CASES: &[&str] = &[
            "GET k",
            "SET k v EX 10 GET",
            "MSET a 1 b 2 c 3",
            "MSETNX a 1 b 2",
            "MGET a b c",
            "DEL a b a",
            "UNLINK a b",
            "EXISTS a b",
            "TOUCH a",
            "EVAL s 0",
            "EVAL s 2 a b arg",
            "EVAL s 3 a",
            "EVAL s abc",
            "EVALSHA sha 1 a",
            "EVAL_RO s 1 a x",
            "EVALSHA_RO sha 2 a b",
            "FCALL f 2 a b x",
            "FCALL_RO f 0 x",
            "XREAD COUNT 2 STREAMS a b 0 0",
            "XREAD BLOCK 0 STREAMS a $",
            "XREADGROUP GROUP g c STREAMS a 0",
            "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS a b > >",
            "ZUNIONSTORE dest 2 a b WEIGHTS 1 2",
            "ZINTERSTORE dest 1 a AGGREGATE MAX",
            "ZDIFFSTORE d 2 a b",
            "ZUNION 2 a b WITHSCORES",
            "ZINTER 3 a b c",
            "ZDIFF 1 a",
            "ZINTERCARD 2 a b LIMIT 1",
            "SINTERCARD 3 a b c",
            "LMPOP 2 a b LEFT",
            "LMPOP 0 a LEFT",
            "ZUNIONSTORE d 0 a",
            "XREAD COUNT 2 x",
            "XREAD STREAMS a b c",
            "EVAL s -1",
            "SORT k STORE",
            "GEORADIUS k 0 0 10 km STORE",
            "GEORADIUS k 0 0 10 km STORE a STOREDIST b",
            "GEORADIUSBYMEMBER k m 10 km STOREDIST a STORE b",
            "MIGRATE h 6379 \"\" 0 1000",
            "SPUBLISH ch msg",
            "BLMPOP 0 2 a b LEFT COUNT 2",
            "ZMPOP 1 a MIN",
            "BZMPOP 1.5 2 a b MAX COUNT 3",
            "SORT k",
            "SORT k BY p STORE d",
            "SORT k LIMIT 0 10 GET # GET p_* ALPHA STORE d",
            "SORT k STORE a STORE b",
            "SORT k GET store",
            "SORT_RO k BY p GET q",
            "MIGRATE h 6379 k 0 1000",
            "MIGRATE h 6379 k 0 1000 COPY REPLACE",
            "MIGRATE h 6379 \"\" 0 1000 KEYS a b",
            "MIGRATE h 6379 \"\" 0 1000 COPY AUTH pw KEYS a",
            "MIGRATE h 6379 \"\" 0 1000 AUTH2 u keys KEYS a b",
            "MIGRATE h 6379 k 0 1000 KEYS a",
            "OBJECT ENCODING k",
            "OBJECT FREQ k",
            "MEMORY USAGE k SAMPLES 5",
            "BITOP AND d a b",
            "BITOP NOT d a",
            "BITCOUNT k 0 1",
            "BITFIELD k GET u8 0",
            "BITFIELD_RO k GET u8 0",
            "GEORADIUS k 0 0 10 km STORE d",
            "GEORADIUS k 0 0 10 km COUNT 5 STOREDIST d",
            "GEORADIUS k 0 0 10 km WITHDIST",
            "GEORADIUSBYMEMBER k m 10 km STORE d",
            "GEORADIUS_RO k 0 0 10 km",
            "GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km",
            "GEOSEARCH s FROMLONLAT 0 0 BYBOX 1 1 km",
            "XINFO STREAM k FULL",
            "XINFO GROUPS k",
            "XGROUP CREATE k g $ MKSTREAM",
            "XADD s * f v",
            "XAUTOCLAIM s g c 0 0",
            "PFCOUNT a b",
            "PFMERGE d a b",
            "RENAME a b",
            "RENAMENX a b",
            "SMOVE a b m",
            "LMOVE a b LEFT RIGHT",
            "BLMOVE a b LEFT RIGHT 0",
            "RPOPLPUSH a b",
            "BRPOPLPUSH a b 0",
            "BLPOP a b 0",
            "BZPOPMIN a b 0",
            "COPY a b DB 1",
            "LCS a b",
            "SINTERSTORE d a b",
            "SUNION a b c",
            "ZRANGESTORE d s 0 -1",
            "WATCH a b",
            "DUMP k",
            "RESTORE k 0 payload",
            "OBJECT HELP",
            "GETEX k PERSIST",
            "GETDEL k",
            "HSET h f v f2 v2",
            "HMGET h f",
            "EXPIRE k 10 NX",
            "LPOS k e RANK 1",
            "SETRANGE k 0 v",
        ];

        /// For every redis 7.0 row with key specs (not the hand-kept ones, which 7.0
        /// cannot check), an invocation of the minimum arity and one three longer.
        pub(super) fn sweep(table: &CommandTable) -> Vec<String> {
            let extras = serde_free_extra_names();
            let mut specs: Vec<&CommandSpec> = Vec::new();
            for spec in table.iter() {
                specs.push(spec);
                specs.extend(spec.subcommands);
            }
            let mut lines = Vec::new();
            for spec in specs {
                if !spec.has_keys() || extras.iter().any(|e| e == spec.name) {
                    continue;
                }
                let name = spec.full_name_upper();
                let words = name.split(' ').count();
                let min = usize::from(spec.arity.unsigned_abs());
                let mut lengths = vec![min];
                if spec.arity < 0 {
                    lengths.push(min + 3);
                }
                for len in lengths {
                    let tokens: Vec<String> = (words..len).map(|i| format!("t{i}")).collect();
                    lines.push(format!("{name} {}", tokens.join(" ")).trim_end().to_owned());
                }
            }
            lines
        }

        /// Names in extra_commands.json, found without a JSON parser: every `"name": "..."`.
        fn serde_free_extra_names() -> Vec<String> {
            include_str!("extra_commands.json")
                .lines()
                .filter_map(|l| l.trim().strip_prefix("\"name\": \""))
                .filter_map(|l| l.split('"').next())
                .map(str::to_owned)
                .collect()
        }

        pub(super) struct Node {
            child: Child,
            dir: tempfile::TempDir,
        }

        impl Node {
            pub(super) fn start() -> Node {
                let dir = tempfile::tempdir().expect("temp dir");
                let socket = dir.path().join("redis.sock");
                let child = Command::new("redis-server")
                    .args(["--port", "0", "--save", "", "--appendonly", "no"])
                    .arg("--unixsocket")
                    .arg(&socket)
                    .arg("--dir")
                    .arg(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server not found: install it (apt-get install redis-server)");
                let node = Node { child, dir };
                let deadline = Instant::now() + Duration::from_secs(10);
                while UnixStream::connect(node.socket()).is_err() {
                    assert!(Instant::now() < deadline, "redis-server did not start");
                    std::thread::sleep(Duration::from_millis(20));
                }
                node
            }

            fn socket(&self) -> std::path::PathBuf {
                self.dir.path().join("redis.sock")
            }

            /// `COMMAND GETKEYS args...` as argument indices of `args`, or the error text.
            pub(super) fn getkeys(&self, args: &[Bytes]) -> Result<Vec<usize>, String> {
                let mut stream = UnixStream::connect(self.socket()).expect("connect");
                let mut request = format!("*{}\r\n", args.len() + 2).into_bytes();
                let mut push = |a: &[u8]| {
                    request.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                    request.extend_from_slice(a);
                    request.extend_from_slice(b"\r\n");
                };
                push(b"COMMAND");
                push(b"GETKEYS");
                for a in args {
                    push(a);
                }
                stream.write_all(&request).expect("write");
                let mut buf = Vec::new();
                let frame = loop {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).expect("read");
                    assert!(n > 0, "connection closed");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some((frame, _)) = decode(&buf).expect("decode") {
                        break frame;
                    }
                };
                match frame {
                    OwnedFrame::Error(e) => Err(e),
                    OwnedFrame::Array(keys) => {
                        // GETKEYS answers key names: map each to the first unused equal argument.
                        let mut positions: Vec<usize> = Vec::new();
                        for key in keys {
                            let OwnedFrame::BulkString(key) = key else {
                                panic!("{key:?}")
                            };
                            let at = (1..args.len())
                                .find(|&i| args[i] == key && !positions.contains(&i))
                                .expect("GETKEYS key among the arguments");
                            positions.push(at);
                        }
                        Ok(positions)
                    }
                    other => panic!("unexpected reply {other:?}"),
                }
            }
        }

        impl Drop for Node {
            fn drop(&mut self) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
