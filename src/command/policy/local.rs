//! The commands the session answers itself, or sends in a way of its own: the `Local` rows of
//! the policy. What each one does is the session's (`session/local.rs`, `session/introspect.rs`
//! and the files named below); this file only names them.

/// Commands the session answers itself, or sends in a way of its own.
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
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`: one primary after another,
    /// sent by the session with the cursor naming the primary (the next one within the same
    /// call while the batch is below `COUNT`).
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
    /// `CLIENT LIST [TYPE type] [ID id ...]`: slotproxy's clients (see [`crate::clients`]).
    ClientList,
    /// `CLIENT KILL ip:port` or `CLIENT KILL <filter> <value> ...`: closes slotproxy's clients.
    ClientKill,
    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: ends a client's blocking command on its node.
    ClientUnblock,
    /// `CLIENT NO-EVICT on|off`: whether the client is spared when clients are evicted for
    /// `max_client_memory_bytes`.
    ClientNoEvict,
    /// `CLIENT TRACKING on|off ...`: `OFF` accepted, `ON` refused.
    ClientTracking,
    /// `CLIENT TRACKINGINFO`: tracking is off.
    ClientTrackingInfo,
    /// `CLIENT GETREDIR`: -1, tracking is off.
    ClientGetRedir,
    /// `CLIENT CACHING yes|no`: redis' error for a client without tracking.
    ClientCaching,
    /// `CLIENT REPLY on|off|skip`: the session writes the replies the mode lets through.
    ClientReply,
    /// `CLIENT PAUSE timeout [WRITE|ALL]`: held by slotproxy, never sent to a node.
    ClientPause,
    /// `CLIENT UNPAUSE`: ends slotproxy's pause.
    ClientUnpause,
    /// `WAIT` / `WAITAOF`: sent by the session on the connections its writes went out on.
    Wait,
    /// `SHUTDOWN`, when the configuration allows it: stops slotproxy (never a node).
    Shutdown,
    /// `ROLE`: a primary without replicas, like the one-node cluster slotproxy presents.
    Role,
    /// `ASKING`: accepted (slotproxy follows ASK redirects itself).
    Asking,
    /// `MONITOR`, when the configuration allows it: slotproxy's stream of its clients' commands.
    Monitor,
}
