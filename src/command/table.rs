//! The command table: one [`CommandSpec`] per command, and name lookup.
//!
//! Owns the types a command row is made of (flags, key specs) and the
//! [`CommandTable`] that resolves a request's name, and subcommand for container
//! commands such as `CLIENT`, to its row. Rows come from the generated table
//! (see the `command` module doc) and, at startup, from a node's own `COMMAND`
//! reply for commands the generated table lacks. It must not know about slots,
//! nodes or sockets: it is static data plus a hash map.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use redis_protocol::resp2::types::OwnedFrame;

use super::category::AclCategories;
use super::generated::{COMMANDS, ROW_COUNT};
use super::policy::Policy;

/// Longest command name, or `container|subcommand` pair, that can be resolved.
///
/// The longest name redis 7 knows is 29 bytes (`cluster|count-failure-reports`);
/// anything longer is answered as unknown without hashing it.
const MAX_NAME_LEN: usize = 64;

/// One command (or subcommand) as redis describes it in `COMMAND`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase name; subcommands use the redis 7 form `client|setname`.
    pub name: &'static str,
    /// This row's index among all rows, subcommands included (ACL permission bit sets use it).
    pub id: CommandId,
    /// Redis arity: `n > 0` means exactly `n` arguments, `-n` at least `n` (both count the name).
    pub arity: i16,
    /// Command flags from `COMMAND`.
    pub flags: Flags,
    /// ACL categories from `COMMAND` (`@read`, `@dangerous`, ...).
    pub acl_categories: AclCategories,
    /// Documentation group from `COMMAND DOCS` (`string`, `hash`, `server`, ...), `module` if unknown.
    pub group: &'static str,
    /// Command tips, e.g. `request_policy:all_shards`, `response_policy:agg_sum`, `nondeterministic_output`.
    pub tips: &'static [&'static str],
    /// Where the keys are in the arguments (see [`crate::command::key_positions`]).
    pub key_specs: &'static [KeySpec],
    /// Subcommands, sorted by name; empty unless this is a container such as `CLIENT`.
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// Whether `argc` arguments (counting the command name) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let arity = usize::from(self.arity.unsigned_abs());
        if self.arity >= 0 {
            argc == arity
        } else {
            argc >= arity
        }
    }

    /// Whether this command is a container of subcommands (`CLIENT`, `CONFIG`, ...).
    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }

    /// Whether the command has any key spec, so its arguments may name keys.
    pub fn has_keys(&self) -> bool {
        !self.key_specs.is_empty()
    }

    /// The name as users write it, `CLIENT SETNAME` style, for error messages and docs.
    pub fn full_name_upper(&self) -> String {
        self.name.to_ascii_uppercase().replace('|', " ")
    }
}

/// A row's index in the command table: generated rows are numbered in table order, rows
/// learned from a node at startup get the next free numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u16);

/// Command flags, as listed by `COMMAND` (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// `write`: the command may modify the dataset.
    pub const WRITE: Flags = Flags(1 << 0);
    /// `readonly`: the command only reads keys.
    pub const READONLY: Flags = Flags(1 << 1);
    /// `denyoom`: refused when the node is over `maxmemory`.
    pub const DENYOOM: Flags = Flags(1 << 2);
    /// `module`: implemented by a module.
    pub const MODULE: Flags = Flags(1 << 3);
    /// `admin`: an administrative command.
    pub const ADMIN: Flags = Flags(1 << 4);
    /// `pubsub`: a publish/subscribe command.
    pub const PUBSUB: Flags = Flags(1 << 5);
    /// `noscript`: not allowed inside scripts.
    pub const NOSCRIPT: Flags = Flags(1 << 6);
    /// `blocking`: may block the client.
    pub const BLOCKING: Flags = Flags(1 << 7);
    /// `loading`: allowed while the node loads its dataset.
    pub const LOADING: Flags = Flags(1 << 8);
    /// `stale`: allowed on a replica with stale data.
    pub const STALE: Flags = Flags(1 << 9);
    /// `skip_monitor`: not shown in `MONITOR`.
    pub const SKIP_MONITOR: Flags = Flags(1 << 10);
    /// `skip_slowlog`: not shown in `SLOWLOG`.
    pub const SKIP_SLOWLOG: Flags = Flags(1 << 11);
    /// `asking`: accepted on an importing slot after `ASKING`.
    pub const ASKING: Flags = Flags(1 << 12);
    /// `fast`: O(1) or O(log N).
    pub const FAST: Flags = Flags(1 << 13);
    /// `no_auth`: allowed before authentication.
    pub const NO_AUTH: Flags = Flags(1 << 14);
    /// `may_replicate`: may produce replication traffic.
    pub const MAY_REPLICATE: Flags = Flags(1 << 15);
    /// `no_mandatory_keys`: all key arguments are optional (EVAL with numkeys 0).
    pub const NO_MANDATORY_KEYS: Flags = Flags(1 << 16);
    /// `no_async_loading`: refused during async loading.
    pub const NO_ASYNC_LOADING: Flags = Flags(1 << 17);
    /// `no_multi`: not allowed inside `MULTI`.
    pub const NO_MULTI: Flags = Flags(1 << 18);
    /// `movablekeys`: key positions depend on the arguments, not just on first/last/step.
    pub const MOVABLE_KEYS: Flags = Flags(1 << 19);
    /// `allow_busy`: allowed while a script or function is busy.
    pub const ALLOW_BUSY: Flags = Flags(1 << 20);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags set in either `self` or `other`.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// The flag named `name` in a `COMMAND` reply (case-insensitive), if it has a constant.
    pub fn from_name(name: &str) -> Option<Flags> {
        const NAMES: &[(&str, Flags)] = &[
            ("write", Flags::WRITE),
            ("readonly", Flags::READONLY),
            ("denyoom", Flags::DENYOOM),
            ("module", Flags::MODULE),
            ("admin", Flags::ADMIN),
            ("pubsub", Flags::PUBSUB),
            ("noscript", Flags::NOSCRIPT),
            ("blocking", Flags::BLOCKING),
            ("loading", Flags::LOADING),
            ("stale", Flags::STALE),
            ("skip_monitor", Flags::SKIP_MONITOR),
            ("skip_slowlog", Flags::SKIP_SLOWLOG),
            ("asking", Flags::ASKING),
            ("fast", Flags::FAST),
            ("no_auth", Flags::NO_AUTH),
            ("may_replicate", Flags::MAY_REPLICATE),
            ("no_mandatory_keys", Flags::NO_MANDATORY_KEYS),
            ("no_async_loading", Flags::NO_ASYNC_LOADING),
            ("no_multi", Flags::NO_MULTI),
            ("movablekeys", Flags::MOVABLE_KEYS),
            ("allow_busy", Flags::ALLOW_BUSY),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, f)| f)
    }
}

/// Key spec flags: how a command uses the keys one key spec finds (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct KeySpecFlags(pub u32);

impl KeySpecFlags {
    /// No flag set.
    pub const NONE: KeySpecFlags = KeySpecFlags(0);
    /// `RO`: read only.
    pub const RO: KeySpecFlags = KeySpecFlags(1 << 0);
    /// `RW`: read and write.
    pub const RW: KeySpecFlags = KeySpecFlags(1 << 1);
    /// `OW`: overwrite without reading.
    pub const OW: KeySpecFlags = KeySpecFlags(1 << 2);
    /// `RM`: delete the key.
    pub const RM: KeySpecFlags = KeySpecFlags(1 << 3);
    /// `access`: returns, copies or uses user data from the key.
    pub const ACCESS: KeySpecFlags = KeySpecFlags(1 << 4);
    /// `update`: updates data in the key.
    pub const UPDATE: KeySpecFlags = KeySpecFlags(1 << 5);
    /// `insert`: only adds data to the key.
    pub const INSERT: KeySpecFlags = KeySpecFlags(1 << 6);
    /// `delete`: only deletes data from the key.
    pub const DELETE: KeySpecFlags = KeySpecFlags(1 << 7);
    /// `not_key`: not a key but routed like one in a cluster (sharded pub/sub channels).
    pub const NOT_KEY: KeySpecFlags = KeySpecFlags(1 << 8);
    /// `incomplete`: the spec may miss keys; a per-command rule must find them.
    pub const INCOMPLETE: KeySpecFlags = KeySpecFlags(1 << 9);
    /// `variable_flags`: the other flags depend on the arguments.
    pub const VARIABLE_FLAGS: KeySpecFlags = KeySpecFlags(1 << 10);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: KeySpecFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags set in either `self` or `other`.
    pub const fn union(self, other: KeySpecFlags) -> KeySpecFlags {
        KeySpecFlags(self.0 | other.0)
    }

    /// The key spec flag named `name` in a `COMMAND` reply (case-insensitive).
    pub fn from_name(name: &str) -> Option<KeySpecFlags> {
        const NAMES: &[(&str, KeySpecFlags)] = &[
            ("ro", KeySpecFlags::RO),
            ("rw", KeySpecFlags::RW),
            ("ow", KeySpecFlags::OW),
            ("rm", KeySpecFlags::RM),
            ("access", KeySpecFlags::ACCESS),
            ("update", KeySpecFlags::UPDATE),
            ("insert", KeySpecFlags::INSERT),
            ("delete", KeySpecFlags::DELETE),
            ("not_key", KeySpecFlags::NOT_KEY),
            ("incomplete", KeySpecFlags::INCOMPLETE),
            ("variable_flags", KeySpecFlags::VARIABLE_FLAGS),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, f)| f)
    }
}

/// One redis 7 key spec: where to start looking, then which arguments are keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Where the search for keys starts.
    pub begin: BeginSearch,
    /// Which arguments, from that start, are keys.
    pub find: FindKeys,
    /// How the command uses these keys.
    pub flags: KeySpecFlags,
}

/// The `begin_search` half of a key spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeginSearch {
    /// Keys start at this argument index (the command name is 0).
    Index(i32),
    /// Keys start after `keyword`, searched from `start_from` (negative: backwards from the end).
    Keyword {
        /// The keyword, compared case-insensitively (`STREAMS`, `STORE`).
        keyword: &'static str,
        /// First index to look at; negative counts from the end and searches backwards.
        start_from: i32,
    },
    /// The node could not describe it; a per-command rule finds the keys.
    Unknown,
}

/// The `find_keys` half of a key spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys from the begin index to `last_key` (relative to it, or to the end when negative).
    Range {
        /// Last key relative to the begin index; negative counts from the end.
        last_key: i32,
        /// Distance between keys (2 for `MSET k v k v`).
        key_step: i32,
        /// With `last_key == -1`, only `1/limit` of the remaining arguments are keys (`XREAD`).
        limit: i32,
    },
    /// The argument at `keynum_idx` holds the number of keys (`EVAL script numkeys ...`).
    KeyNum {
        /// Index of numkeys, relative to the begin index.
        keynum_idx: i32,
        /// Index of the first key, relative to the begin index.
        first_key: i32,
        /// Distance between keys.
        key_step: i32,
    },
    /// The node could not describe it; a per-command rule finds the keys.
    Unknown,
}

/// What a request's name resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A known command or subcommand (or a container called without a subcommand).
    Command(&'static CommandSpec),
    /// No such command.
    UnknownCommand,
    /// A known container (the value) with an unknown subcommand.
    UnknownSubcommand(&'static CommandSpec),
}

/// A small non-cryptographic hasher for command names.
///
/// The keys are the table's fixed set of names, so attacker-chosen lookups can
/// only probe, not grow, the map: flooding resistance buys nothing here.
#[derive(Default)]
struct NameHasher(u64);

impl NameHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // hashbrown picks buckets from the low bits: fold the well-mixed high half in.
        self.0 ^ (self.0 >> 32)
    }
}

type NameMap = HashMap<&'static [u8], &'static CommandSpec, BuildHasherDefault<NameHasher>>;

/// Every command the proxy knows, by name, each row with its [`Policy`]; built once at
/// startup, then read-only.
#[derive(Clone, Debug)]
pub struct CommandTable {
    /// Top-level names and `container|subcommand` names.
    by_name: NameMap,
    /// Top-level commands, sorted by name.
    commands: Vec<&'static CommandSpec>,
    /// Rows in the table, subcommands included: the next free [`CommandId`].
    rows: u16,
    /// Each row's policy, indexed by [`CommandId`].
    policies: Vec<Policy>,
}

impl CommandTable {
    /// The table generated from redis-server 7.0.15, plus the hand-kept newer commands.
    pub fn builtin() -> CommandTable {
        let mut table = CommandTable {
            by_name: NameMap::default(),
            commands: Vec::with_capacity(COMMANDS.len()),
            rows: ROW_COUNT,
            policies: Vec::with_capacity(usize::from(ROW_COUNT)),
        };
        for spec in COMMANDS {
            table.insert(spec);
        }
        table
    }

    /// Resolves a request (`args[0]` is the name) to its row, case-insensitively.
    ///
    /// For a container, `args[1]` picks the subcommand; a container called with
    /// no subcommand resolves to the container itself so the caller's arity
    /// check produces redis' error. Allocation-free: this runs for every request.
    pub fn resolve(&self, args: &[Bytes]) -> Resolved {
        let Some(name) = args.first() else {
            return Resolved::UnknownCommand;
        };
        let mut buf = [0u8; MAX_NAME_LEN];
        let Some(len) = lowercase_into(&mut buf, 0, name) else {
            return Resolved::UnknownCommand;
        };
        let Some(&spec) = self.by_name.get(&buf[..len]) else {
            return Resolved::UnknownCommand;
        };
        if !spec.is_container() {
            return Resolved::Command(spec);
        }
        let Some(sub) = args.get(1) else {
            return Resolved::Command(spec);
        };
        let found = match buf.get_mut(len) {
            Some(separator) => {
                *separator = b'|';
                lowercase_into(&mut buf, len + 1, sub).and_then(|end| self.by_name.get(&buf[..end]))
            }
            None => None,
        };
        match found {
            Some(&sub_spec) => Resolved::Command(sub_spec),
            None => Resolved::UnknownSubcommand(spec),
        }
    }

    /// What slotproxy does with `spec`, a row of this table (as [`resolve`](Self::resolve)
    /// and [`lookup`](Self::lookup) give them): an index, no name lookup.
    ///
    /// # Panics
    /// If `spec` is not a row of this table (every row gets its policy when it is added).
    pub fn policy(&self, spec: &CommandSpec) -> &Policy {
        self.policies
            .get(usize::from(spec.id.0))
            .expect("every row of the table has a policy")
    }

    /// Finds a row by name (`get`, `client|setname`), case-insensitively.
    pub fn lookup(&self, name: &str) -> Option<&'static CommandSpec> {
        let bytes = name.as_bytes();
        if bytes.len() > MAX_NAME_LEN {
            return None;
        }
        let mut buf = [0u8; MAX_NAME_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        buf[..bytes.len()].make_ascii_lowercase();
        self.by_name.get(&buf[..bytes.len()]).copied()
    }

    /// Top-level commands, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static CommandSpec> {
        self.commands.iter().copied()
    }

    /// Number of rows, subcommands included; every row's id is below it.
    pub fn rows(&self) -> usize {
        usize::from(self.rows)
    }

    /// Number of top-level commands.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether the table has no command at all.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Adds the commands a node's `COMMAND` reply knows and this table lacks.
    ///
    /// Module commands and commands of a newer redis get the node's own arity,
    /// flags and key specs; replies of redis 6 and older (no key specs) get a key
    /// spec built from first/last/step. Known commands keep their row, but a
    /// container gains the subcommands only the node knows. Entries that do not
    /// parse are skipped. The new rows are leaked: call this once at startup
    /// (later calls leak only what is new again). Returns the added full names.
    pub fn merge_node_commands(&mut self, reply: &OwnedFrame) -> Vec<String> {
        let mut added = Vec::new();
        let OwnedFrame::Array(entries) = reply else {
            return added;
        };
        for entry in entries {
            let Some(parsed) = parse_command(entry, None) else {
                continue;
            };
            match self.by_name.get(parsed.name.as_bytes()).copied() {
                None => {
                    added.push(parsed.name.clone());
                    added.extend(parsed.subcommands.iter().map(|s| s.name.clone()));
                    let spec: &'static CommandSpec =
                        Box::leak(Box::new(parsed.leak("module", &mut self.rows)));
                    self.insert(spec);
                }
                Some(existing) => self.merge_subcommands(existing, parsed, &mut added),
            }
        }
        added
    }

    /// Replaces `existing` by a copy that also holds the node's new subcommands.
    fn merge_subcommands(
        &mut self,
        existing: &'static CommandSpec,
        parsed: ParsedCommand,
        added: &mut Vec<String>,
    ) {
        let new: Vec<ParsedCommand> = parsed
            .subcommands
            .into_iter()
            .filter(|s| !self.by_name.contains_key(s.name.as_bytes()))
            .collect();
        if new.is_empty() {
            return;
        }
        let mut subcommands: Vec<CommandSpec> = existing.subcommands.to_vec();
        for sub in new {
            added.push(sub.name.clone());
            subcommands.push(sub.leak(existing.group, &mut self.rows));
        }
        subcommands.sort_by(|a, b| a.name.cmp(b.name));
        let container: &'static CommandSpec = Box::leak(Box::new(CommandSpec {
            subcommands: Box::leak(subcommands.into_boxed_slice()),
            ..existing.clone()
        }));
        self.insert(container);
    }

    /// Adds or replaces `spec` and its subcommands in both indexes, with their policies.
    fn insert(&mut self, spec: &'static CommandSpec) {
        self.by_name.insert(spec.name.as_bytes(), spec);
        self.set_policy(spec, None);
        for sub in spec.subcommands {
            self.by_name.insert(sub.name.as_bytes(), sub);
            self.set_policy(sub, Some(spec));
        }
        match self.commands.binary_search_by(|c| c.name.cmp(spec.name)) {
            Ok(i) => self.commands[i] = spec,
            Err(i) => self.commands.insert(i, spec),
        }
    }

    /// Decides the policy of row `spec` (a subcommand of `container`, if any), once.
    fn set_policy(&mut self, spec: &CommandSpec, container: Option<&CommandSpec>) {
        let policy = Policy::of(spec, container);
        let index = usize::from(spec.id.0);
        if self.policies.len() <= index {
            // Placeholders until their own rows are inserted: ids are handed out densely.
            self.policies.resize(index + 1, policy);
        }
        self.policies[index] = policy;
    }
}

/// Copies `part` lowercased into `buf[at..]`; `None` if it does not fit or holds a `|`.
fn lowercase_into(buf: &mut [u8; MAX_NAME_LEN], at: usize, part: &[u8]) -> Option<usize> {
    let end = at.checked_add(part.len())?;
    let dst = buf.get_mut(at..end)?;
    for (d, &s) in dst.iter_mut().zip(part) {
        if s == b'|' {
            // "client|setname" as a request name is unknown to redis too.
            return None;
        }
        *d = s.to_ascii_lowercase();
    }
    Some(end)
}

/// A `COMMAND` entry parsed from a node's reply, before it is leaked into a row.
#[derive(Debug)]
struct ParsedCommand {
    name: String,
    arity: i16,
    flags: Flags,
    acl_categories: Vec<String>,
    tips: Vec<String>,
    key_specs: Vec<ParsedKeySpec>,
    subcommands: Vec<ParsedCommand>,
}

#[derive(Debug)]
struct ParsedKeySpec {
    begin: ParsedBegin,
    find: FindKeys,
    flags: KeySpecFlags,
}

#[derive(Debug)]
enum ParsedBegin {
    Index(i32),
    Keyword { keyword: String, start_from: i32 },
    Unknown,
}

impl ParsedCommand {
    /// Turns the parsed entry into a `'static` row; `parent_group` is used for subcommands,
    /// `rows` numbers the new rows.
    fn leak(self, parent_group: &'static str, rows: &mut u16) -> CommandSpec {
        let id = CommandId(*rows);
        *rows = rows.saturating_add(1);
        let group = if self.flags.contains(Flags::MODULE) {
            "module"
        } else if self.name.contains('|') {
            parent_group
        } else {
            group_from_acl(&self.acl_categories)
        };
        let tips: Vec<&'static str> = self.tips.into_iter().map(leak_str).collect();
        let key_specs: Vec<KeySpec> = self
            .key_specs
            .into_iter()
            .map(|ks| KeySpec {
                begin: match ks.begin {
                    ParsedBegin::Index(i) => BeginSearch::Index(i),
                    ParsedBegin::Keyword {
                        keyword,
                        start_from,
                    } => BeginSearch::Keyword {
                        keyword: leak_str(keyword),
                        start_from,
                    },
                    ParsedBegin::Unknown => BeginSearch::Unknown,
                },
                find: ks.find,
                flags: ks.flags,
            })
            .collect();
        let name = leak_str(self.name);
        let mut subcommands: Vec<CommandSpec> = self
            .subcommands
            .into_iter()
            .map(|s| s.leak(group, rows))
            .collect();
        subcommands.sort_by(|a, b| a.name.cmp(b.name));
        CommandSpec {
            name,
            id,
            arity: self.arity,
            flags: self.flags,
            acl_categories: AclCategories::from_names(&self.acl_categories),
            group,
            tips: Box::leak(tips.into_boxed_slice()),
            key_specs: Box::leak(key_specs.into_boxed_slice()),
            subcommands: Box::leak(subcommands.into_boxed_slice()),
        }
    }
}

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Guesses the `COMMAND DOCS` group of a non-module command from its ACL categories.
fn group_from_acl(categories: &[String]) -> &'static str {
    const GROUPS: &[(&str, &str)] = &[
        ("@string", "string"),
        ("@list", "list"),
        ("@set", "set"),
        ("@sortedset", "sorted-set"),
        ("@hash", "hash"),
        ("@stream", "stream"),
        ("@geo", "geo"),
        ("@hyperloglog", "hyperloglog"),
        ("@bitmap", "bitmap"),
        ("@pubsub", "pubsub"),
        ("@scripting", "scripting"),
        ("@transaction", "transactions"),
        ("@connection", "connection"),
    ];
    GROUPS
        .iter()
        .find(|(cat, _)| categories.iter().any(|c| c.eq_ignore_ascii_case(cat)))
        .map_or("module", |&(_, group)| group)
}

/// The text of a simple or bulk string frame.
fn frame_str(frame: &OwnedFrame) -> Option<&str> {
    match frame {
        OwnedFrame::SimpleString(b) | OwnedFrame::BulkString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

fn frame_int(frame: &OwnedFrame) -> Option<i64> {
    match frame {
        OwnedFrame::Integer(i) => Some(*i),
        _ => None,
    }
}

fn frame_i32(frame: &OwnedFrame) -> Option<i32> {
    frame_int(frame).and_then(|i| i32::try_from(i).ok())
}

fn frame_array(frame: &OwnedFrame) -> Option<&[OwnedFrame]> {
    match frame {
        OwnedFrame::Array(items) => Some(items),
        _ => None,
    }
}

fn frame_strings(frame: &OwnedFrame) -> Option<Vec<String>> {
    frame_array(frame)?
        .iter()
        .map(|f| frame_str(f).map(str::to_owned))
        .collect()
}

/// Looks `key` up in a RESP2 flat map (`[k1, v1, k2, v2, ...]`).
fn map_get<'a>(map: &'a [OwnedFrame], key: &str) -> Option<&'a OwnedFrame> {
    map.chunks_exact(2)
        .find(|pair| frame_str(&pair[0]).is_some_and(|k| k.eq_ignore_ascii_case(key)))
        .map(|pair| &pair[1])
}

/// Parses one `COMMAND` entry; `parent` is the container's name for subcommands.
fn parse_command(entry: &OwnedFrame, parent: Option<&str>) -> Option<ParsedCommand> {
    let fields = frame_array(entry)?;
    // Redis 5 has 6 fields, 6.0 adds ACL categories, 7.0 tips, key specs and subcommands.
    if fields.len() < 6 {
        return None;
    }
    let name = frame_str(&fields[0])?.to_ascii_lowercase();
    let well_formed = match parent {
        None => !name.contains('|'),
        Some(p) => name.strip_prefix(p).is_some_and(|s| s.starts_with('|')),
    };
    if !well_formed || name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let arity = i16::try_from(frame_int(&fields[1])?).ok()?;
    if arity == 0 {
        return None;
    }
    let mut flags = Flags::NONE;
    for flag in frame_strings(&fields[2])? {
        // Flags without a constant (redis 6's "random", a newer redis' own) are dropped.
        flags = flags.union(Flags::from_name(&flag).unwrap_or(Flags::NONE));
    }
    let acl_categories = match fields.get(6) {
        Some(f) => frame_strings(f)?,
        None => Vec::new(),
    };
    let tips = match fields.get(7) {
        Some(f) => frame_strings(f)?,
        None => Vec::new(),
    };
    let key_specs = match fields.get(8) {
        Some(f) => frame_array(f)?
            .iter()
            .map(parse_key_spec)
            .collect::<Option<Vec<_>>>()?,
        None => legacy_key_spec(
            frame_i32(&fields[3])?,
            frame_i32(&fields[4])?,
            frame_i32(&fields[5])?,
            flags,
        )
        .into_iter()
        .collect(),
    };
    let subcommands = match (fields.get(9), parent) {
        (Some(f), None) => frame_array(f)?
            .iter()
            .filter_map(|sub| parse_command(sub, Some(&name)))
            .collect(),
        _ => Vec::new(),
    };
    Some(ParsedCommand {
        name,
        arity,
        flags,
        acl_categories,
        tips,
        key_specs,
        subcommands,
    })
}

/// Builds a key spec from redis 6's first/last/step triple; `None` when there are no keys.
fn legacy_key_spec(first: i32, last: i32, step: i32, flags: Flags) -> Option<ParsedKeySpec> {
    if first <= 0 {
        return None;
    }
    let mut spec_flags = if flags.contains(Flags::WRITE) {
        KeySpecFlags::RW
    } else {
        KeySpecFlags::RO
    };
    if flags.contains(Flags::MOVABLE_KEYS) {
        // The triple is only a hint for these; key_positions must not trust it.
        spec_flags = spec_flags.union(KeySpecFlags::INCOMPLETE);
    }
    Some(ParsedKeySpec {
        begin: ParsedBegin::Index(first),
        find: FindKeys::Range {
            last_key: if last < 0 { last } else { last - first },
            key_step: step.max(1),
            limit: 0,
        },
        flags: spec_flags,
    })
}

/// Parses one redis 7 key spec (a flat map of flags, begin_search, find_keys).
fn parse_key_spec(frame: &OwnedFrame) -> Option<ParsedKeySpec> {
    let map = frame_array(frame)?;
    let mut flags = KeySpecFlags::NONE;
    if let Some(f) = map_get(map, "flags") {
        for flag in frame_strings(f)? {
            flags = flags.union(KeySpecFlags::from_name(&flag).unwrap_or(KeySpecFlags::NONE));
        }
    }
    let begin_map = frame_array(map_get(map, "begin_search")?)?;
    let begin_spec = frame_array(map_get(begin_map, "spec")?)?;
    let begin = match frame_str(map_get(begin_map, "type")?)? {
        "index" => ParsedBegin::Index(frame_i32(map_get(begin_spec, "index")?)?),
        "keyword" => ParsedBegin::Keyword {
            keyword: frame_str(map_get(begin_spec, "keyword")?)?.to_owned(),
            start_from: frame_i32(map_get(begin_spec, "startfrom")?)?,
        },
        _ => ParsedBegin::Unknown,
    };
    let find_map = frame_array(map_get(map, "find_keys")?)?;
    let find_spec = frame_array(map_get(find_map, "spec")?)?;
    let find = match frame_str(map_get(find_map, "type")?)? {
        "range" => FindKeys::Range {
            last_key: frame_i32(map_get(find_spec, "lastkey")?)?,
            key_step: frame_i32(map_get(find_spec, "keystep")?)?,
            limit: frame_i32(map_get(find_spec, "limit")?)?,
        },
        "keynum" => FindKeys::KeyNum {
            keynum_idx: frame_i32(map_get(find_spec, "keynumidx")?)?,
            first_key: frame_i32(map_get(find_spec, "firstkey")?)?,
            key_step: frame_i32(map_get(find_spec, "keystep")?)?,
        },
        _ => FindKeys::Unknown,
    };
    Some(ParsedKeySpec { begin, find, flags })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn bulk(s: &str) -> OwnedFrame {
        OwnedFrame::BulkString(s.as_bytes().to_vec())
    }

    fn status(s: &str) -> OwnedFrame {
        OwnedFrame::SimpleString(s.as_bytes().to_vec())
    }

    fn strings(items: &[&str]) -> OwnedFrame {
        OwnedFrame::Array(items.iter().map(|s| status(s)).collect())
    }

    fn flat(items: Vec<(&str, OwnedFrame)>) -> OwnedFrame {
        OwnedFrame::Array(items.into_iter().flat_map(|(k, v)| [bulk(k), v]).collect())
    }

    fn index_range_spec(flags: &[&str], index: i64, lastkey: i64, keystep: i64) -> OwnedFrame {
        flat(vec![
            ("flags", strings(flags)),
            (
                "begin_search",
                flat(vec![
                    ("type", bulk("index")),
                    ("spec", flat(vec![("index", OwnedFrame::Integer(index))])),
                ]),
            ),
            (
                "find_keys",
                flat(vec![
                    ("type", bulk("range")),
                    (
                        "spec",
                        flat(vec![
                            ("lastkey", OwnedFrame::Integer(lastkey)),
                            ("keystep", OwnedFrame::Integer(keystep)),
                            ("limit", OwnedFrame::Integer(0)),
                        ]),
                    ),
                ]),
            ),
        ])
    }

    /// A redis 7 `COMMAND` entry.
    fn entry7(
        name: &str,
        arity: i64,
        flags: &[&str],
        key_specs: Vec<OwnedFrame>,
        subcommands: Vec<OwnedFrame>,
    ) -> OwnedFrame {
        OwnedFrame::Array(vec![
            bulk(name),
            OwnedFrame::Integer(arity),
            strings(flags),
            OwnedFrame::Integer(0),
            OwnedFrame::Integer(0),
            OwnedFrame::Integer(0),
            strings(&["@hash"]),
            OwnedFrame::Array(vec![bulk("nondeterministic_output")]),
            OwnedFrame::Array(key_specs),
            OwnedFrame::Array(subcommands),
        ])
    }

    #[test]
    fn resolve_table() {
        let table = CommandTable::builtin();
        let cases: &[(&str, Option<&str>)] = &[
            ("GET k", Some("get")),
            ("get k", Some("get")),
            ("gEt", Some("get")),
            ("CLIENT SETNAME x", Some("client|setname")),
            ("client setinfo lib-name x", Some("client|setinfo")),
            ("CLIENT", Some("client")),
            ("object encoding k", Some("object|encoding")),
            ("HEXPIRE k 10 FIELDS 1 f", Some("hexpire")),
            ("WAITAOF 1 0 0", Some("waitaof")),
            ("NOSUCHCOMMAND", None),
            ("client|setname x", None),
            ("", None),
        ];
        for &(line, want) in cases {
            let got = match table.resolve(&args(line)) {
                Resolved::Command(spec) => Some(spec.name),
                Resolved::UnknownCommand => None,
                Resolved::UnknownSubcommand(c) => panic!("{line}: unknown subcommand of {c:?}"),
            };
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn resolve_unknown_subcommand_names_the_container() {
        let table = CommandTable::builtin();
        for line in ["CLIENT NOSUCH", "config |get", "CLIENT"] {
            let long = format!("{line} {}", "x".repeat(100));
            match table.resolve(&args(&long)) {
                Resolved::UnknownSubcommand(c) => assert_eq!(
                    c.name,
                    line.split(' ').next().map(str::to_ascii_lowercase).unwrap()
                ),
                other => panic!("{long}: {other:?}"),
            }
        }
        assert_eq!(table.resolve(&[]), Resolved::UnknownCommand);
        let long_name = vec![Bytes::from(vec![b'a'; MAX_NAME_LEN + 1])];
        assert_eq!(table.resolve(&long_name), Resolved::UnknownCommand);
    }

    #[test]
    fn lookup_and_names() {
        let table = CommandTable::builtin();
        let cases: &[(&str, Option<&str>)] = &[
            ("get", Some("GET")),
            ("CLIENT|SETNAME", Some("CLIENT SETNAME")),
            (
                "cluster|count-failure-reports",
                Some("CLUSTER COUNT-FAILURE-REPORTS"),
            ),
            ("nosuch", None),
        ];
        for &(name, want) in cases {
            assert_eq!(
                table.lookup(name).map(|s| s.full_name_upper()),
                want.map(str::to_owned),
                "{name}"
            );
        }
    }

    #[test]
    fn arity_ok_table() {
        let table = CommandTable::builtin();
        let cases: &[(&str, usize, bool)] = &[
            ("get", 2, true),
            ("get", 1, false),
            ("get", 3, false),
            ("mset", 3, true),
            ("mset", 5, true),
            ("mset", 2, false),
            ("client", 1, false),
            ("hexpire", 6, true),
            ("hexpire", 5, false),
        ];
        for &(name, argc, ok) in cases {
            let spec = table.lookup(name).expect("command in table");
            assert_eq!(spec.arity_ok(argc), ok, "{name} with {argc} args");
        }
    }

    #[test]
    fn builtin_table_is_sorted_and_sane() {
        let table = CommandTable::builtin();
        assert!(table.len() > 200);
        let names: Vec<&str> = table.iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for spec in table.iter() {
            assert_ne!(spec.arity, 0, "{}", spec.name);
            let resolved = table.resolve(&[Bytes::from_static(spec.name.as_bytes())]);
            assert_eq!(resolved, Resolved::Command(spec));
            for sub in spec.subcommands {
                assert_ne!(sub.arity, 0, "{}", sub.name);
                // A subcommand's arity counts the container name too.
                assert!(sub.arity.unsigned_abs() >= 2, "{}", sub.name);
                assert_eq!(table.lookup(sub.name), Some(sub));
            }
        }
        let hexpire = table.lookup("hexpire").expect("hand-kept hexpire");
        assert_eq!(hexpire.arity, -6);
        assert!(hexpire.flags.contains(Flags::WRITE.union(Flags::FAST)));
        assert_eq!(hexpire.group, "hash");
    }

    #[test]
    fn flags_contains_and_union() {
        let rw = Flags::WRITE.union(Flags::DENYOOM);
        assert!(rw.contains(Flags::WRITE));
        assert!(rw.contains(rw));
        assert!(!rw.contains(Flags::WRITE.union(Flags::FAST)));
        assert!(rw.contains(Flags::NONE));
        assert_eq!(Flags::from_name("MovableKeys"), Some(Flags::MOVABLE_KEYS));
        assert_eq!(KeySpecFlags::from_name("RW"), Some(KeySpecFlags::RW));
        assert_eq!(Flags::from_name("random"), None);
    }

    #[test]
    fn merge_adds_module_command_with_node_key_specs() {
        let mut table = CommandTable::builtin();
        let before = table.len();
        let reply = OwnedFrame::Array(vec![
            entry7("get", 2, &["readonly"], vec![], vec![]),
            entry7(
                "json.set",
                -4,
                &["write", "denyoom", "module"],
                vec![index_range_spec(&["RW", "update"], 1, 0, 1)],
                vec![],
            ),
        ]);
        let added = table.merge_node_commands(&reply);
        assert_eq!(added, vec!["json.set".to_owned()]);
        assert_eq!(table.len(), before + 1);
        let spec = table.lookup("JSON.SET").expect("merged");
        assert_eq!(spec.group, "module");
        assert_eq!(spec.arity, -4);
        assert!(spec.flags.contains(Flags::MODULE.union(Flags::WRITE)));
        assert_eq!(spec.tips, &["nondeterministic_output"]);
        assert_eq!(
            spec.key_specs,
            &[KeySpec {
                begin: BeginSearch::Index(1),
                find: FindKeys::Range {
                    last_key: 0,
                    key_step: 1,
                    limit: 0
                },
                flags: KeySpecFlags::RW.union(KeySpecFlags::UPDATE),
            }]
        );
        // A second merge of the same reply adds nothing.
        assert!(table.merge_node_commands(&reply).is_empty());
    }

    #[test]
    fn merge_adds_unknown_subcommand_to_known_container() {
        let mut table = CommandTable::builtin();
        let reply = OwnedFrame::Array(vec![entry7(
            "client",
            -2,
            &[],
            vec![],
            vec![
                entry7("client|setname", 3, &["noscript"], vec![], vec![]),
                entry7("client|brand-new", 3, &["noscript"], vec![], vec![]),
                entry7("notclient|x", 3, &[], vec![], vec![]),
            ],
        )]);
        assert_eq!(table.merge_node_commands(&reply), vec!["client|brand-new"]);
        match table.resolve(&args("CLIENT BRAND-NEW x")) {
            Resolved::Command(spec) => assert_eq!(spec.group, "connection"),
            other => panic!("{other:?}"),
        }
        let client = table.lookup("client").expect("client");
        assert!(
            client
                .subcommands
                .iter()
                .any(|s| s.name == "client|setname")
        );
        assert!(client.subcommands.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(table.iter().find(|s| s.name == "client"), Some(client));
    }

    #[test]
    fn merge_builds_key_spec_from_redis6_triple() {
        let mut table = CommandTable::builtin();
        let legacy = |name: &str, flags: &[&str], first: i64, last: i64, step: i64| {
            OwnedFrame::Array(vec![
                bulk(name),
                OwnedFrame::Integer(-2),
                strings(flags),
                OwnedFrame::Integer(first),
                OwnedFrame::Integer(last),
                OwnedFrame::Integer(step),
                strings(&["@keyspace"]),
            ])
        };
        let reply = OwnedFrame::Array(vec![
            legacy("old.mset", &["write"], 1, -1, 2),
            legacy("old.get", &["readonly"], 2, 2, 1),
            legacy("old.nokeys", &[], 0, 0, 0),
            legacy("old.movable", &["movablekeys"], 1, 1, 1),
        ]);
        let added = table.merge_node_commands(&reply);
        assert_eq!(added.len(), 4);
        let cases: &[(&str, &[KeySpec])] = &[
            (
                "old.mset",
                &[KeySpec {
                    begin: BeginSearch::Index(1),
                    find: FindKeys::Range {
                        last_key: -1,
                        key_step: 2,
                        limit: 0,
                    },
                    flags: KeySpecFlags::RW,
                }],
            ),
            (
                "old.get",
                &[KeySpec {
                    begin: BeginSearch::Index(2),
                    find: FindKeys::Range {
                        last_key: 0,
                        key_step: 1,
                        limit: 0,
                    },
                    flags: KeySpecFlags::RO,
                }],
            ),
            ("old.nokeys", &[]),
            (
                "old.movable",
                &[KeySpec {
                    begin: BeginSearch::Index(1),
                    find: FindKeys::Range {
                        last_key: 0,
                        key_step: 1,
                        limit: 0,
                    },
                    flags: KeySpecFlags::RO.union(KeySpecFlags::INCOMPLETE),
                }],
            ),
        ];
        for &(name, specs) in cases {
            let spec = table.lookup(name).expect("merged");
            assert_eq!(spec.key_specs, specs, "{name}");
            assert_eq!(spec.group, "module", "{name}");
        }
    }

    #[test]
    fn merge_skips_malformed_entries() {
        let mut table = CommandTable::builtin();
        let before = table.len();
        let bad_spec = flat(vec![("flags", strings(&["RO"]))]);
        let reply = OwnedFrame::Array(vec![
            OwnedFrame::Null,
            bulk("x"),
            OwnedFrame::Array(vec![bulk("short"), OwnedFrame::Integer(2)]),
            entry7("zero.arity", 0, &[], vec![], vec![]),
            entry7("bad.spec", 2, &[], vec![bad_spec], vec![]),
            entry7("a|b", 2, &[], vec![], vec![]),
            OwnedFrame::Array(vec![
                OwnedFrame::Integer(1),
                OwnedFrame::Integer(2),
                strings(&[]),
                OwnedFrame::Integer(0),
                OwnedFrame::Integer(0),
                OwnedFrame::Integer(0),
            ]),
            entry7(&"n".repeat(MAX_NAME_LEN + 1), 2, &[], vec![], vec![]),
            entry7("big.arity", 1 << 20, &[], vec![], vec![]),
        ]);
        assert!(table.merge_node_commands(&reply).is_empty());
        assert!(
            table
                .merge_node_commands(&OwnedFrame::Error("ERR".into()))
                .is_empty()
        );
        assert_eq!(table.len(), before);
    }
}
