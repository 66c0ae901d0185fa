//! How the proxy handles each command: the policy half of the command table.
//!
//! `table.rs` holds what Redis says about a command (arity, flags, key specs); this file holds
//! what slotproxy does with it. The default follows from the table: a command with keys is routed
//! by its keys' slot; a keyless one is refused until a rule below says how to serve it.

use super::table::CommandSpec;

/// What the session does with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Answered by the proxy itself.
    Local(Local),
    /// Forwarded to the primary owning the slot of its keys (all keys must share one slot).
    ByKeys,
    /// Keyless, and any node gives the same answer: sent to one primary.
    AnyNode,
    /// About the whole keyspace: sent to every primary and merged (when the session knows how).
    AllPrimaries,
    /// An admin command the configuration allows: sent to every node, replicas included.
    AllNodes,
    /// `CLUSTER COUNTKEYSINSLOT|GETKEYSINSLOT slot ...`: to the primary owning that slot.
    BySlotArgument,
    /// Not served; the reason completes "ERR `'<CMD>'` ...".
    Unsupported(&'static str),
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `PING [message]`.
    Ping,
    /// `ECHO message`.
    Echo,
    /// `QUIT`: `+OK`, then close.
    Quit,
    /// `SELECT db`: only db 0 exists in a cluster.
    Select,
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    Hello,
    /// `AUTH [user] password`.
    Auth,
    /// `RESET`: back to a fresh connection's state.
    Reset,
    /// `CLIENT SETNAME name`.
    ClientSetName,
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT ID`.
    ClientId,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    ClientSetInfo,
    /// `READONLY` / `READWRITE`: accepted.
    ReadMode,
    /// `CLUSTER KEYSLOT key`.
    ClusterKeySlot,
    /// `MULTI`: start queuing.
    Multi,
    /// `EXEC`: run the queued transaction on its node.
    Exec,
    /// `DISCARD`: drop the queued transaction.
    Discard,
    /// `WATCH key...`: sent on the session's own connection to the keys' node.
    Watch,
    /// `UNWATCH`.
    Unwatch,
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and their `UNSUBSCRIBE`s: the session's own
    /// subscription set, held on nodes by the pub/sub hub for all sessions.
    Subscribe,
    /// `PUBLISH`, `SPUBLISH`: through the pub/sub hub, which counts the proxy's receivers.
    Publish,
    /// `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB`: asked of every node concerned
    /// and merged, counting the proxy's subscribers.
    PubSubCount,
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: one primary per call, sent by
    /// the session with the cursor naming the primary.
    Scan,
    /// `CLUSTER INFO`, as a one-node cluster owning every slot.
    ClusterInfo,
    /// `CLUSTER MYID`: the proxy's own node id.
    ClusterMyId,
    /// `CLUSTER MYSHARDID`: the proxy's own shard id.
    ClusterMyShardId,
    /// `CLUSTER SLOTS`: one range, 0-16383, served by the proxy's address.
    ClusterSlots,
    /// `CLUSTER SHARDS`: one shard, 0-16383, whose one node is the proxy.
    ClusterShards,
    /// `CLUSTER NODES`: one line, the proxy as `myself,master`.
    ClusterNodes,
    /// `CLIENT INFO`: the calling client's line.
    ClientInfo,
    /// `CLIENT LIST [TYPE type] [ID id ...]`: the calling client's line only.
    ClientList,
    /// `CLIENT NO-EVICT on|off`: accepted; the proxy never evicts clients.
    ClientNoEvict,
    /// `CLIENT TRACKING on|off ...`: `OFF` accepted, `ON` refused.
    ClientTracking,
    /// `CLIENT TRACKINGINFO`: tracking is off.
    ClientTrackingInfo,
    /// `CLIENT GETREDIR`: -1, tracking is off.
    ClientGetRedir,
    /// `CLIENT CACHING yes|no`: redis' error for a client without tracking.
    ClientCaching,
    /// `CLIENT REPLY on|off|skip`: `ON` accepted, the others refused.
    ClientReply,
    /// `WAIT` / `WAITAOF`: sent by the session on the connections its writes went out on.
    Wait,
    /// `SHUTDOWN`, when the configuration allows it: stops slotproxy (never a node).
    Shutdown,
    /// `ROLE`: a primary without replicas, like the one-node cluster slotproxy presents.
    Role,
    /// `ASKING`: accepted (slotproxy follows ASK redirects itself).
    Asking,
    /// `MONITOR`, when the configuration allows it: every node's MONITOR lines.
    Monitor,
}

const NOT_YET: &str = "is not supported by slotproxy yet";
const NEVER: &str = "is not allowed through slotproxy";
const ADMIN: &str = "is not allowed through slotproxy unless its configuration lists it in \
                     session.allowed_admin_commands";
const OTHER_CLIENTS: &str =
    "is not supported by slotproxy (a client can see and act on its own connection only)";
const PAUSES_NODES: &str =
    "is not allowed through slotproxy (nodes would pause the connections all clients share)";
const SHARED_CONNECTIONS: &str =
    "is not supported by slotproxy (commands reach the nodes on connections clients share)";

/// The route for a resolved command (for container commands, the subcommand's spec).
pub fn route_of(spec: &CommandSpec) -> Route {
    let local = match spec.name {
        "ping" => Some(Local::Ping),
        "echo" => Some(Local::Echo),
        "quit" => Some(Local::Quit),
        "select" => Some(Local::Select),
        "hello" => Some(Local::Hello),
        "auth" => Some(Local::Auth),
        "reset" => Some(Local::Reset),
        "client|setname" => Some(Local::ClientSetName),
        "client|getname" => Some(Local::ClientGetName),
        "client|id" => Some(Local::ClientId),
        "client|setinfo" => Some(Local::ClientSetInfo),
        "readonly" | "readwrite" => Some(Local::ReadMode),
        "cluster|keyslot" => Some(Local::ClusterKeySlot),
        "cluster|info" => Some(Local::ClusterInfo),
        "cluster|myid" => Some(Local::ClusterMyId),
        "cluster|myshardid" => Some(Local::ClusterMyShardId),
        "cluster|slots" => Some(Local::ClusterSlots),
        "cluster|shards" => Some(Local::ClusterShards),
        "cluster|nodes" => Some(Local::ClusterNodes),
        "client|info" => Some(Local::ClientInfo),
        "client|list" => Some(Local::ClientList),
        "client|no-evict" => Some(Local::ClientNoEvict),
        "client|tracking" => Some(Local::ClientTracking),
        "client|trackinginfo" => Some(Local::ClientTrackingInfo),
        "client|getredir" => Some(Local::ClientGetRedir),
        "client|caching" => Some(Local::ClientCaching),
        "client|reply" => Some(Local::ClientReply),
        "role" => Some(Local::Role),
        "asking" => Some(Local::Asking),
        "scan" => Some(Local::Scan),
        "wait" | "waitaof" => Some(Local::Wait),
        "multi" => Some(Local::Multi),
        "exec" => Some(Local::Exec),
        "discard" => Some(Local::Discard),
        "watch" => Some(Local::Watch),
        "unwatch" => Some(Local::Unwatch),
        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" => Some(Local::Subscribe),
        "publish" | "spublish" => Some(Local::Publish),
        "pubsub|channels"
        | "pubsub|numsub"
        | "pubsub|numpat"
        | "pubsub|shardchannels"
        | "pubsub|shardnumsub" => Some(Local::PubSubCount),
        _ => None,
    };
    if let Some(local) = local {
        return Route::Local(local);
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
        | "acl|cat"
        | "acl|genpass"
        | "acl|help"
        | "acl|whoami"
        | "swapdb"
        | "pfselftest" => return Route::AnyNode,
        // About one slot: sent to the primary that owns it.
        "cluster|countkeysinslot" | "cluster|getkeysinslot" => return Route::BySlotArgument,
        // No request policy in COMMAND; the proxy asks every primary which libraries it has.
        "function|list" => return Route::AllPrimaries,
        // MIGRATE makes a node connect to any host and copy keys there; DEBUG (OBJECT too)
        // shows node internals such as heap addresses.
        "shutdown" | "replicaof" | "slaveof" | "debug" | "save" | "bgsave" | "bgrewriteaof"
        | "config|set" | "config|resetstat" | "config|rewrite" | "monitor" | "migrate" => {
            return Route::Unsupported(ADMIN);
        }
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
        | "cluster|bumpepoch" => return Route::Unsupported(NEVER),
        "client|kill" | "client|unblock" => return Route::Unsupported(OTHER_CLIENTS),
        "client|pause" | "client|unpause" => return Route::Unsupported(PAUSES_NODES),
        "client|no-touch" | "script|debug" => return Route::Unsupported(SHARED_CONNECTIONS),
        _ => {}
    }
    if spec.has_keys() {
        return Route::ByKeys;
    }
    if spec
        .tips
        .iter()
        .any(|t| t.starts_with("request_policy:all"))
    {
        return Route::AllPrimaries;
    }
    Route::Unsupported(NOT_YET)
}

/// The route an admin command takes when `session.allowed_admin_commands` allows it (see
/// [`crate::config::ALLOWABLE_ADMIN_COMMANDS`]); `None` for commands that can't be allowed.
pub fn admin_route(spec: &CommandSpec) -> Option<Route> {
    match spec.name {
        "config|set" | "config|resetstat" | "config|rewrite" | "save" | "bgsave"
        | "bgrewriteaof" | "debug" => Some(Route::AllNodes),
        "replicaof" | "slaveof" => Some(Route::AnyNode),
        "migrate" => Some(Route::ByKeys),
        "shutdown" => Some(Route::Local(Local::Shutdown)),
        "monitor" => Some(Route::Local(Local::Monitor)),
        _ => None,
    }
}

/// `CONFIG SET` parameters never forwarded, even when `config set` is allowed: they would lock
/// slotproxy out of the nodes (passwords, client limits), make nodes write files where a client
/// says (paths), or make the cluster announce addresses slotproxy would then connect to.
const CONFIG_SET_NEVER: &[&str] = &[
    "requirepass",
    "masterauth",
    "masteruser",
    "primaryauth",
    "primaryuser",
    "dir",
    "dbfilename",
    "logfile",
    "appendfilename",
    "appenddirname",
    "aclfile",
    "pidfile",
    "unixsocket",
    "unixsocketperm",
    "cluster-config-file",
    "bind",
    "bind-source-addr",
    "port",
    "maxclients",
    "client-output-buffer-limit",
    "protected-mode",
];

/// Prefixes of `CONFIG SET` parameters never forwarded: TLS files and ports, and the addresses
/// nodes announce.
const CONFIG_SET_NEVER_PREFIXES: &[&str] = &[
    "tls-",
    "cluster-announce-",
    "replica-announce-",
    "slave-announce-",
];

/// The first parameter of a `CONFIG SET param value [param value ...]` that slotproxy never
/// forwards, if any.
pub fn config_set_refused(args: &[bytes::Bytes]) -> Option<&bytes::Bytes> {
    args.iter().skip(2).step_by(2).find(|param| {
        let param = String::from_utf8_lossy(param).to_ascii_lowercase();
        CONFIG_SET_NEVER.contains(&param.as_str())
            || CONFIG_SET_NEVER_PREFIXES
                .iter()
                .any(|prefix| param.starts_with(prefix))
    })
}

/// `DEBUG OBJECT key`: about one key, so routed by it like `OBJECT` (when `debug` is allowed).
pub fn is_debug_object(spec: &CommandSpec, args: &[bytes::Bytes]) -> bool {
    spec.name == "debug" && args.len() == 3 && args[1].eq_ignore_ascii_case(b"object")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandTable;

    #[test]
    fn config_set_of_paths_passwords_and_addresses_is_refused() {
        let args = |list: &[&str]| -> Vec<bytes::Bytes> {
            list.iter()
                .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
                .collect()
        };
        for refused in [
            &["config", "set", "requirepass", "x"][..],
            &["CONFIG", "SET", "DIR", "/tmp"],
            &["config", "set", "maxmemory", "1mb", "dbfilename", "x.rdb"],
            &["config", "set", "tls-cert-file", "/x"],
            &["config", "set", "cluster-announce-ip", "10.0.0.1"],
        ] {
            assert!(config_set_refused(&args(refused)).is_some(), "{refused:?}");
        }
        for allowed in [
            &["config", "set", "maxmemory", "1mb"][..],
            &[
                "config",
                "set",
                "maxmemory-policy",
                "allkeys-lru",
                "hz",
                "20",
            ],
            // A value that names a refused parameter is still just a value.
            &["config", "set", "notify-keyspace-events", "dir"],
        ] {
            assert!(config_set_refused(&args(allowed)).is_none(), "{allowed:?}");
        }
    }

    #[test]
    fn routes_follow_policy_and_table() {
        let table = CommandTable::builtin();
        let cases = [
            ("get", Route::ByKeys),
            ("set", Route::ByKeys),
            ("mget", Route::ByKeys),
            ("eval", Route::ByKeys),
            ("ping", Route::Local(Local::Ping)),
            ("hello", Route::Local(Local::Hello)),
            ("client|setname", Route::Local(Local::ClientSetName)),
            ("command|count", Route::AnyNode),
            ("time", Route::AnyNode),
            ("blpop", Route::ByKeys),
            ("dbsize", Route::AllPrimaries),
            ("keys", Route::AllPrimaries),
            ("flushall", Route::AllPrimaries),
            ("shutdown", Route::Unsupported(ADMIN)),
            ("config|set", Route::Unsupported(ADMIN)),
            ("failover", Route::Unsupported(NEVER)),
            ("migrate", Route::Unsupported(ADMIN)),
            ("debug", Route::Unsupported(ADMIN)),
            ("cluster|meet", Route::Unsupported(NEVER)),
            ("cluster|replicate", Route::Unsupported(NEVER)),
            ("cluster|setslot", Route::Unsupported(NEVER)),
            ("replicaof", Route::Unsupported(ADMIN)),
            ("wait", Route::Local(Local::Wait)),
            ("scan", Route::Local(Local::Scan)),
            ("randomkey", Route::AllPrimaries),
            ("config|get", Route::AnyNode),
            ("cluster|slots", Route::Local(Local::ClusterSlots)),
            ("client|kill", Route::Unsupported(OTHER_CLIENTS)),
            ("evalsha", Route::ByKeys),
            ("fcall_ro", Route::ByKeys),
            ("script|load", Route::AllPrimaries),
            ("script|exists", Route::AllPrimaries),
            ("script|flush", Route::AllPrimaries),
            ("script|kill", Route::AllPrimaries),
            ("script|debug", Route::Unsupported(SHARED_CONNECTIONS)),
            ("function|load", Route::AllPrimaries),
            ("function|delete", Route::AllPrimaries),
            ("function|flush", Route::AllPrimaries),
            ("function|restore", Route::AllPrimaries),
            ("function|list", Route::AllPrimaries),
            ("function|dump", Route::AnyNode),
            ("subscribe", Route::Local(Local::Subscribe)),
            ("sunsubscribe", Route::Local(Local::Subscribe)),
            ("publish", Route::Local(Local::Publish)),
            ("spublish", Route::Local(Local::Publish)),
            ("pubsub|numsub", Route::Local(Local::PubSubCount)),
            ("pubsub|shardchannels", Route::Local(Local::PubSubCount)),
            ("pubsub|help", Route::AnyNode),
        ];
        for (name, want) in cases {
            let spec = table
                .lookup(name)
                .unwrap_or_else(|| panic!("{name} in table"));
            assert_eq!(route_of(spec), want, "{name}");
        }
    }

    #[test]
    fn every_allowable_admin_command_is_refused_by_default_and_has_a_route() {
        let table = CommandTable::builtin();
        for name in crate::config::ALLOWABLE_ADMIN_COMMANDS {
            let spec = table
                .lookup(name)
                .unwrap_or_else(|| panic!("{name} in table"));
            assert_eq!(route_of(spec), Route::Unsupported(ADMIN), "{name}");
            assert!(admin_route(spec).is_some(), "{name}");
        }
    }
}
