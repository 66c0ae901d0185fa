//! What slotproxy does with each command: one [`Policy`] per table row, decided once when the
//! [`CommandTable`](super::CommandTable) is built (rows learned from a node at startup
//! included), never again by name per request.
//!
//! `table.rs` holds what Redis says about a command (arity, flags, key specs); this file holds
//! what slotproxy does with it, and is the only place that decides it. The default follows from
//! the table: a command with keys is routed by its keys' slot; a keyless one with a
//! `request_policy:all_*` tip is fanned out to every primary when slotproxy knows how to merge
//! its replies; anything else is refused until a rule below says how to serve it. The few
//! decisions that depend on a request's arguments (`DEBUG OBJECT key`, `CONFIG SET` parameters)
//! are functions here too. It must not know about sessions, nodes or sockets.

mod arguments;
mod local;
mod merge;

use super::category::AclCategories;
use super::table::{CommandId, CommandSpec, Flags};

pub use arguments::{config_set_refused, is_debug_object};
pub use local::Local;
pub use merge::{Algebra, FanOutMerge, MergeRule, SplitKind};

/// Everything slotproxy decided about one table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How the session serves it.
    pub handling: Handling,
    /// Whether it writes or only reads its keys (from the row's flags).
    pub access: Access,
    /// Its ACL categories (from the row).
    pub acl_categories: AclCategories,
    /// The row whose name labels its metrics: the command's own, or its container's for a
    /// subcommand (`client|setname` is counted as `client`).
    pub metric: CommandId,
    /// That row's name, the metric label.
    pub metric_label: &'static str,
    /// What it does to the scripts slotproxy keeps a copy of, if anything.
    pub scripts: Option<ScriptUse>,
}

impl Policy {
    /// The policy of `spec`; `container` is the row `spec` is a subcommand of, if any.
    pub fn of(spec: &CommandSpec, container: Option<&CommandSpec>) -> Policy {
        let top = container.unwrap_or(spec);
        Policy {
            handling: handling(spec),
            access: Access::of(spec.flags),
            acl_categories: spec.acl_categories,
            metric: top.id,
            metric_label: top.name,
            scripts: script_use(spec.name),
        }
    }

    /// Whether the command may modify the dataset (its row has the `write` flag).
    pub fn is_write(&self) -> bool {
        self.access == Access::Write
    }
}

/// What a command does to the scripts slotproxy keeps a copy of, to load them again on a node
/// that lost them (see `session/scripts.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptUse {
    /// `EVAL`, `EVAL_RO`, `SCRIPT LOAD`: sends a script body, the argument at this index.
    Body(usize),
    /// `EVALSHA`, `EVALSHA_RO`: names a script by its SHA-1 (argument 1).
    Sha,
    /// `SCRIPT FLUSH`: every script is gone.
    Flush,
}

/// How a command uses the dataset, from its row's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `write`: may modify the dataset.
    Write,
    /// `readonly`: only reads keys; a replica may answer it.
    ReadOnly,
    /// Neither flag (`PING`, `PUBLISH`, `CLIENT ...`).
    Other,
}

impl Access {
    fn of(flags: Flags) -> Access {
        if flags.contains(Flags::WRITE) {
            Access::Write
        } else if flags.contains(Flags::READONLY) {
            Access::ReadOnly
        } else {
            Access::Other
        }
    }
}

/// How the session serves a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Answered, or sent in a way of its own, by the session (see [`Local`]).
    Local(Local),
    /// `ACL ...` (but `HELP` and `GENPASS`): answered from slotproxy's own users.
    Acl,
    /// Routed by its keys' slot (all keys must share one; no key: one primary).
    Single {
        /// A read: the session's read policy may send it to a replica, and it may be resent.
        read_only: bool,
        /// May block: sent on the session's own connection so it never stalls other clients.
        blocking: bool,
    },
    /// Routed by key when its keys share a slot, else split by slot and merged.
    Split(SplitKind),
    /// Routed by key when its keys share a slot, else computed by the proxy from one read per
    /// key.
    Computed(Algebra),
    /// Keyless, and any node gives the same answer: sent to one primary.
    AnyNode,
    /// `CLUSTER COUNTKEYSINSLOT|GETKEYSINSLOT slot ...`: to the primary owning that slot.
    BySlotArgument,
    /// About the whole keyspace: sent to every primary and merged.
    FanOut(FanOutMerge),
    /// Sent to every node, replicas included, and merged; only an allowed admin command
    /// (see [`Allowed::handling`]).
    AllNodes(FanOutMerge),
    /// An admin command: refused unless `session.allowed_admin_commands` lists it, then served
    /// as [`Allowed`] says.
    Admin(Allowed),
    /// Not served.
    Refused(Refusal),
}

/// How an admin command is served once the configuration allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Sent to every node and merged (`SAVE`, `CONFIG RESETSTAT`...).
    AllNodes(FanOutMerge),
    /// `CONFIG SET`: sent to every node, except for the parameters of [`config_set_refused`],
    /// which are refused even when it is allowed, and even when it is not.
    ConfigSet,
    /// `DEBUG`: `DEBUG OBJECT key` routed by its key (see [`is_debug_object`]), anything else
    /// sent to every node.
    Debug,
    /// `REPLICAOF`: sent to one primary.
    AnyNode,
    /// `MIGRATE`: routed by its keys.
    ByKeys,
    /// `SHUTDOWN`, `MONITOR`: served by the session.
    Local(Local),
}

impl Allowed {
    /// The handling of the allowed command (for `DEBUG`, of anything but `DEBUG OBJECT key`).
    pub fn handling(self) -> Handling {
        match self {
            Allowed::AllNodes(merge) => Handling::AllNodes(merge),
            Allowed::ConfigSet => Handling::AllNodes(FanOutMerge::AllOk),
            Allowed::Debug => Handling::AllNodes(FanOutMerge::Same),
            Allowed::AnyNode => Handling::AnyNode,
            Allowed::ByKeys => Handling::Single {
                read_only: false,
                blocking: false,
            },
            Allowed::Local(local) => Handling::Local(local),
        }
    }
}

/// Why a command is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Keyless, not known to be answered alike by every node, and no rule says how to serve it.
    NotYet,
    /// Needs every primary (a `request_policy:all_*` tip), and slotproxy has no merge rule.
    NoMerge,
    /// Changes the cluster's membership or slot ownership, or makes a node connect elsewhere.
    Never,
    /// An admin command the configuration does not list.
    Admin,
    /// Needs a node connection of its own where clients share them.
    SharedConnections,
}

impl Refusal {
    /// The reason, completing "ERR `'<CMD>'` ...".
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotYet | Refusal::NoMerge => "is not supported by slotproxy yet",
            Refusal::Never => "is not allowed through slotproxy",
            Refusal::Admin => {
                "is not allowed through slotproxy unless its configuration lists it in \
                 session.allowed_admin_commands"
            }
            Refusal::SharedConnections => {
                "is not supported by slotproxy (commands reach the nodes on connections clients \
                 share)"
            }
        }
    }
}

/// Decides a row's handling (for container commands, the subcommand's row).
fn handling(spec: &CommandSpec) -> Handling {
    if let Some(local) = local(spec.name) {
        return Handling::Local(local);
    }
    if spec.name.starts_with("acl|") && !matches!(spec.name, "acl|help" | "acl|genpass") {
        return Handling::Acl;
    }
    if let Some(allowed) = admin(spec.name) {
        return Handling::Admin(allowed);
    }
    match spec.name {
        "command"
        | "command|count"
        | "command|docs"
        | "command|info"
        | "command|list"
        | "command|getkeys"
        | "command|getkeysandflags"
        | "command|help"
        | "time"
        | "lastsave"
        | "pubsub|help"
        | "lolwut"
        | "config|get"
        | "config|help"
        | "script|help"
        | "function|help"
        | "function|dump"
        // Every node answers these alike (or with the same cluster-mode error).
        | "client|help"
        | "cluster|help"
        | "object|help"
        | "memory|help"
        | "latency|help"
        | "slowlog|help"
        | "module|help"
        | "module|list"
        | "xgroup|help"
        | "xinfo|help"
        | "acl|genpass"
        | "acl|help"
        | "swapdb"
        | "pfselftest" => return Handling::AnyNode,
        // About one slot: sent to the primary that owns it.
        "cluster|countkeysinslot" | "cluster|getkeysinslot" => return Handling::BySlotArgument,
        // These change the cluster's membership or slot ownership, or make a node connect to
        // another host: never a client's business through slotproxy.
        "failover"
        | "sync"
        | "psync"
        | "cluster|meet"
        | "cluster|replicate"
        | "cluster|forget"
        | "cluster|reset"
        | "cluster|failover"
        | "cluster|setslot"
        | "cluster|addslots"
        | "cluster|addslotsrange"
        | "cluster|delslots"
        | "cluster|delslotsrange"
        | "cluster|flushslots"
        | "cluster|set-config-epoch"
        | "cluster|bumpepoch" => return Handling::Refused(Refusal::Never),
        "client|no-touch" | "script|debug" => {
            return Handling::Refused(Refusal::SharedConnections);
        }
        _ => {}
    }
    if spec.has_keys() {
        let read_only = spec.flags.contains(Flags::READONLY);
        if spec.flags.contains(Flags::BLOCKING) {
            return Handling::Single {
                read_only,
                blocking: true,
            };
        }
        if let Some(kind) = split_kind(spec.name) {
            return Handling::Split(kind);
        }
        if let Some(op) = algebra(spec.name) {
            return Handling::Computed(op);
        }
        return Handling::Single {
            read_only,
            blocking: false,
        };
    }
    // No request policy in COMMAND for FUNCTION LIST; the proxy asks every primary which
    // libraries it has.
    if spec.name == "function|list"
        || spec
            .tips
            .iter()
            .any(|t| t.starts_with("request_policy:all"))
    {
        return match fan_out_merge(spec.name) {
            Some(merge) => Handling::FanOut(merge),
            None => Handling::Refused(Refusal::NoMerge),
        };
    }
    Handling::Refused(Refusal::NotYet)
}

/// The commands the session answers itself, or sends in a way of its own.
fn local(name: &str) -> Option<Local> {
    Some(match name {
        "ping" => Local::Ping,
        "echo" => Local::Echo,
        "quit" => Local::Quit,
        "select" => Local::Select,
        "hello" => Local::Hello,
        "auth" => Local::Auth,
        "reset" => Local::Reset,
        "client|setname" => Local::ClientSetName,
        "client|getname" => Local::ClientGetName,
        "client|id" => Local::ClientId,
        "client|setinfo" => Local::ClientSetInfo,
        "readonly" | "readwrite" => Local::ReadMode,
        "cluster|keyslot" => Local::ClusterKeySlot,
        "cluster|info" => Local::ClusterInfo,
        "cluster|myid" => Local::ClusterMyId,
        "cluster|myshardid" => Local::ClusterMyShardId,
        "cluster|slots" => Local::ClusterSlots,
        "cluster|shards" => Local::ClusterShards,
        "cluster|nodes" => Local::ClusterNodes,
        "client|info" => Local::ClientInfo,
        "client|list" => Local::ClientList,
        "client|kill" => Local::ClientKill,
        "client|unblock" => Local::ClientUnblock,
        "client|no-evict" => Local::ClientNoEvict,
        "client|tracking" => Local::ClientTracking,
        "client|trackinginfo" => Local::ClientTrackingInfo,
        "client|getredir" => Local::ClientGetRedir,
        "client|caching" => Local::ClientCaching,
        "client|reply" => Local::ClientReply,
        "client|pause" => Local::ClientPause,
        "client|unpause" => Local::ClientUnpause,
        "role" => Local::Role,
        "asking" => Local::Asking,
        "scan" => Local::Scan,
        "wait" | "waitaof" => Local::Wait,
        "multi" => Local::Multi,
        "exec" => Local::Exec,
        "discard" => Local::Discard,
        "watch" => Local::Watch,
        "unwatch" => Local::Unwatch,
        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" => Local::Subscribe,
        "publish" | "spublish" => Local::Publish,
        "pubsub|channels"
        | "pubsub|numsub"
        | "pubsub|numpat"
        | "pubsub|shardchannels"
        | "pubsub|shardnumsub" => Local::PubSubCount,
        _ => return None,
    })
}

/// The admin commands `session.allowed_admin_commands` may allow (see
/// [`crate::config::ALLOWABLE_ADMIN_COMMANDS`]), and how they are served then. MIGRATE makes a
/// node connect to any host and copy keys there; DEBUG (OBJECT too) shows node internals such
/// as heap addresses.
fn admin(name: &str) -> Option<Allowed> {
    Some(match name {
        "config|set" => Allowed::ConfigSet,
        "config|resetstat" | "config|rewrite" | "save" => Allowed::AllNodes(FanOutMerge::AllOk),
        "bgsave" | "bgrewriteaof" => Allowed::AllNodes(FanOutMerge::Same),
        "debug" => Allowed::Debug,
        "replicaof" | "slaveof" => Allowed::AnyNode,
        "migrate" => Allowed::ByKeys,
        "shutdown" => Allowed::Local(Local::Shutdown),
        "monitor" => Allowed::Local(Local::Monitor),
        _ => return None,
    })
}

/// The commands that send, name or flush scripts.
fn script_use(name: &str) -> Option<ScriptUse> {
    Some(match name {
        "eval" | "eval_ro" => ScriptUse::Body(1),
        "script|load" => ScriptUse::Body(2),
        "evalsha" | "evalsha_ro" => ScriptUse::Sha,
        "script|flush" => ScriptUse::Flush,
        _ => return None,
    })
}

/// The commands split by slot when their keys span several slots, and how.
fn split_kind(name: &str) -> Option<SplitKind> {
    Some(match name {
        "mget" => SplitKind::Keys(MergeRule::Values),
        "mset" => SplitKind::KeyValues,
        "del" | "unlink" | "exists" | "touch" => SplitKind::Keys(MergeRule::Sum),
        _ => return None,
    })
}

/// The commands the proxy computes itself when their keys span slots.
fn algebra(name: &str) -> Option<Algebra> {
    Some(match name {
        "sunion" => Algebra::SUnion,
        "sinter" => Algebra::SInter,
        "sdiff" => Algebra::SDiff,
        "sintercard" => Algebra::SInterCard,
        "zunion" => Algebra::ZUnion,
        "zinter" => Algebra::ZInter,
        "zdiff" => Algebra::ZDiff,
        "zintercard" => Algebra::ZInterCard,
        "pfcount" => Algebra::PfCount,
        _ => return None,
    })
}

/// The commands fanned out to every primary, and how their replies merge.
fn fan_out_merge(name: &str) -> Option<FanOutMerge> {
    Some(match name {
        "dbsize" => FanOutMerge::Sum,
        "keys" => FanOutMerge::Concat,
        "flushall" | "flushdb" | "script|flush" => FanOutMerge::AllOk,
        "function|delete" | "function|flush" | "function|restore" => FanOutMerge::AllOk,
        "script|load" | "function|load" => FanOutMerge::Same,
        "script|exists" => FanOutMerge::AllExist,
        "function|list" => FanOutMerge::CommonLibraries,
        "script|kill" | "function|kill" => FanOutMerge::AnyOk,
        "function|stats" => FanOutMerge::RunningScript,
        "slowlog|len" => FanOutMerge::SlowlogLen,
        "slowlog|reset" => FanOutMerge::AllOk,
        "slowlog|get" => FanOutMerge::Slowlog,
        "info" => FanOutMerge::Info,
        "randomkey" => FanOutMerge::AnyNonNull,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
