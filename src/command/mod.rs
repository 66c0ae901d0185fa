//! What a command is: the command table as data, and where a request's keys are.
//!
//! Owns the static description of every redis command (arity, flags, tips, key
//! specs, subcommands; [`table`]), what slotproxy does with each row ([`policy`],
//! decided once per row when the table is built) and key extraction ([`keys`]).
//! No I/O and no knowledge of slots or nodes: the session asks "which row is this
//! request" ([`CommandTable::resolve`]), "what is its policy"
//! ([`CommandTable::policy`]) and "which arguments are keys" ([`key_positions`]).
//!
//! # Where the table comes from
//!
//! `generated.rs` is not written by hand. `scripts/gen_command_table.py` asks a
//! redis-server 7.0.15 for `COMMAND` and `COMMAND DOCS` and writes every command
//! and subcommand it knows, sorted by name; it then adds the hand-kept entries
//! of `extra_commands.json`, commands of redis 7.2, 7.4 and 8.0 that 7.0.15
//! lacks (`WAITAOF`, `CLIENT SETINFO`, `CLIENT NO-TOUCH`, `CLUSTER MYSHARDID`,
//! the hash-field TTL commands `HEXPIRE` ... `HPERSIST`, `HGETDEL`, `HGETEX`,
//! `HSETEX`), written in the shape of a `COMMAND` entry plus `group`/`since`.
//! To regenerate, from the repository root:
//!
//! ```text
//! python3 scripts/gen_command_table.py              # starts a throwaway redis-server
//! python3 scripts/gen_command_table.py --port 6379  # or asks a running node
//! python3 scripts/gen_command_table.py --check      # exit 1 if generated.rs is stale
//! ```
//!
//! The output is deterministic. To add a command a newer redis has, add it to
//! `extra_commands.json` (the node's own entry wins when it knows the command)
//! and rerun the script. At startup, [`CommandTable::merge_node_commands`] adds
//! whatever a node knows beyond that (module commands, a newer redis).

pub mod category;
mod generated;
pub mod keys;
pub mod policy;
pub mod table;

pub use category::AclCategories;
pub use keys::{KeyError, KeyRef, KeySink, key_positions};
pub use policy::{Handling, Policy};
pub use table::{
    BeginSearch, CommandId, CommandSpec, CommandTable, FindKeys, Flags, KeySpec, KeySpecFlags,
    Resolved,
};
