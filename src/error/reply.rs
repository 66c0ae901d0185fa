//! Every error reply slotproxy makes itself, each spelled once, with what a retry would do.
//!
//! A node's error replies (`-MOVED`, `-BUSY`, `-WRONGTYPE`...) are forwarded as they are and
//! are not here. Where slotproxy answers in redis-server's place, the text is redis-server's own,
//! byte for byte (clients and tests compare it); where slotproxy itself failed, the text says
//! `slotproxy` and whether the command may have been applied.

use bytes::{Bytes, BytesMut};

use super::{BackendError, ProtocolError};
use crate::protocol::reply::{write_error, write_error_bytes};

/// What a client may do about an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request was refused as it is: sending it again gets the same answer.
    ClientError,
    /// Nothing was applied and the cause may pass (no node known, a migration, a node
    /// unreachable): sending it again later is safe.
    SafeToRetry,
    /// The command may have been applied (or was applied but not as asked): sending it again
    /// might apply it twice.
    OutcomeUnknown,
}

/// An error reply slotproxy makes; `Display` is its RESP text without the `-` and CRLF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    // Requests redis-server refuses, refused in its words.
    /// Bytes that are not RESP; the connection is closed after this reply, as redis-server
    /// does. A character below 256 in the message stands for the client byte it quotes
    /// (redis-server echoes that byte as is: `expected '$', got '\xff'`).
    #[error("ERR {0}")]
    Protocol(ProtocolError),
    /// A command the table doesn't know (the request's arguments, name first). The name and
    /// arguments are quoted as the client sent them, not necessarily UTF-8.
    #[error("{}", String::from_utf8_lossy(&unknown_command(.0)))]
    UnknownCommand(Vec<Bytes>),
    /// A subcommand its container doesn't know, quoted as the client sent it.
    #[error("{}", String::from_utf8_lossy(&unknown_subcommand(.container, .subcommand)))]
    UnknownSubcommand {
        /// The container command, upper-case (`CONFIG`).
        container: String,
        /// The subcommand as the client sent it.
        subcommand: Bytes,
    },
    /// The arguments don't parse.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that must be an integer isn't one.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// The command (lowercase table name) got the wrong number of arguments.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// The keys of a command slotproxy does not split hash to more than one slot.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// A transaction's command names a key outside the transaction's slot.
    #[error(
        "CROSSSLOT Keys in request don't hash to the same slot (slotproxy runs a transaction on \
         one slot: put its keys under one {{hash tag}}, or set session.cross_slot_transactions \
         = \"per-slot\")"
    )]
    CrossSlotTransaction,
    /// `SELECT` of a db other than 0.
    #[error("ERR SELECT is not allowed in cluster mode")]
    SelectInCluster,
    /// `CLIENT SETNAME` (or `HELLO SETNAME`) with a name redis refuses.
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    BadClientName,
    /// `CLIENT SETINFO` with an attribute redis doesn't know.
    #[error("ERR Unrecognized option '{}'", String::from_utf8_lossy(.0))]
    UnrecognizedOption(Bytes),
    /// `CLIENT SETINFO` with a value redis refuses (the attribute, lowercase).
    #[error("ERR {0} cannot contain spaces, newlines or special characters.")]
    BadClientInfo(String),
    /// `HELLO` with a protocol version other than 2 or 3.
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    /// `HELLO` with a protocol version that isn't a number.
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    /// `HELLO` with an option redis doesn't know.
    #[error("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(.0))]
    HelloOption(Bytes),
    /// `SHUTDOWN ABORT` with no shutdown under way.
    #[error("ERR No shutdown in progress.")]
    NoShutdown,
    /// A command before `AUTH`, with a password required.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// `HELLO` without `AUTH` from a client not yet authenticated.
    #[error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO \
         AUTH <user> <pass> option can be used to authenticate the client and select the RESP \
         protocol version at the same time"
    )]
    NoAuthHello,
    /// Wrong user name or password.
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// `AUTH <password>` when the default user has no password.
    #[error(
        "ERR AUTH <password> called without any password configured for the default user. Are \
         you sure your configuration is correct?"
    )]
    AuthWithoutPassword,
    /// `MULTI` inside `MULTI`.
    #[error("ERR MULTI calls can not be nested")]
    NestedMulti,
    /// `DISCARD` outside a transaction.
    #[error("ERR DISCARD without MULTI")]
    DiscardWithoutMulti,
    /// `WATCH` inside a transaction.
    #[error("ERR WATCH inside MULTI is not allowed")]
    WatchInMulti,
    /// `EXEC` outside a transaction.
    #[error("ERR EXEC without MULTI")]
    ExecWithoutMulti,
    /// `EXEC` after a queued command was refused.
    #[error("EXECABORT Transaction discarded because of previous errors.")]
    ExecAbort,
    /// `EXEC` whose node refused a queued command (the node's error, without its `-`): the
    /// client got `+QUEUED` from slotproxy, so the reason comes with the abort, in the format
    /// redis-server uses when it refuses `EXEC` itself.
    #[error("EXECABORT Transaction discarded because of: {0}")]
    ExecAbortBecause(String),
    /// `CLIENT PAUSE` with a mode other than `WRITE` or `ALL`.
    #[error("ERR CLIENT PAUSE mode must be WRITE or ALL")]
    PauseMode,
    /// A negative timeout (`CLIENT PAUSE`).
    #[error("ERR timeout is negative")]
    TimeoutNegative,
    /// A timeout that is not an integer (`CLIENT PAUSE`).
    #[error("ERR timeout is not an integer or out of range")]
    TimeoutNotInteger,
    /// A command with redis' `no-multi` flag (SAVE, SHUTDOWN, SYNC, PSYNC) inside `MULTI`.
    #[error("ERR Command not allowed inside a transaction")]
    NotAllowedInTransaction,
    /// A command other than (un)subscribing, `PING`, `QUIT`, `RESET` in RESP2 subscribed mode.
    #[error(
        "ERR Can't execute '{0}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    )]
    Subscribed(&'static str),
    /// `CLIENT LIST TYPE` with an unknown type.
    #[error("ERR Unknown client type '{}'", String::from_utf8_lossy(.0))]
    UnknownClientType(Bytes),
    /// `CLIENT LIST ID` with an id that isn't a number.
    #[error("ERR Invalid client ID")]
    InvalidClientId,
    /// `CLIENT KILL ip:port` (the old form) matched no client.
    #[error("ERR No such client")]
    NoSuchClient,
    /// `CLIENT KILL ID` with an id that is not a positive integer.
    #[error("ERR client-id should be greater than 0")]
    ClientIdNotPositive,
    /// `CLIENT KILL USER` naming no user.
    #[error("ERR No such user '{}'", String::from_utf8_lossy(.0))]
    NoSuchUser(Bytes),
    /// `CLIENT UNBLOCK` with a reason other than `TIMEOUT` or `ERROR`.
    #[error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")]
    UnblockReason,
    /// `CLIENT UNBLOCK` with more than two arguments (the subcommand as the client spelled it).
    #[error(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
        String::from_utf8_lossy(.0)
    )]
    ClientSubcommandArity(Bytes),
    /// What a command ended by `CLIENT UNBLOCK id ERROR` replies (redis' own text).
    #[error("UNBLOCKED client unblocked via CLIENT UNBLOCK")]
    Unblocked,
    /// `SCAN` with a cursor that isn't one.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// The user may not run the command (lowercase table name).
    #[error("NOPERM this user has no permissions to run the '{0}' command")]
    NoPermCommand(&'static str),
    /// The user may not access one of the keys.
    #[error("NOPERM this user has no permissions to access one of the keys used as arguments")]
    NoPermKey,
    /// The user may not access one of the channels.
    #[error("NOPERM this user has no permissions to access one of the channels used as arguments")]
    NoPermChannel,
    /// `SINTERCARD` with a numkeys below 1 or not a number.
    #[error("ERR numkeys should be greater than 0")]
    NumkeysNotPositive,
    /// A numkeys larger than the arguments after it.
    #[error("ERR Number of keys can't be greater than number of args")]
    NumkeysTooLarge,
    /// A `LIMIT` that is negative or not a number.
    #[error("ERR LIMIT can't be negative")]
    NegativeLimit,
    /// A sorted-set command with a numkeys below 1 (the command as the client named it,
    /// lowercase).
    #[error("ERR at least 1 input key is needed for '{0}' command")]
    NoInputKey(String),
    /// A `WEIGHTS` value that is not a float.
    #[error("ERR weight value is not a float")]
    WeightNotFloat,
    /// `PFCOUNT` of a string that is not a HyperLogLog.
    #[error("WRONGTYPE Key is not a valid HyperLogLog string value.")]
    NotHyperLogLog,
    /// `PFCOUNT` of a HyperLogLog whose bytes don't decode.
    #[error("INVALIDOBJ Corrupted HLL object detected")]
    CorruptedHyperLogLog,
    /// A client from another host while protected mode applies (the connection then closes).
    #[error(
        "DENIED Redis is running in protected mode because protected mode is enabled and no \
         password is set for the default user. In this mode connections are only accepted from \
         the loopback interface. If you want to connect from external computers to Redis you may \
         adopt one of the following solutions: 1) Just disable protected mode sending the command \
         'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from \
         the same host the server is running, however MAKE SURE Redis is not publicly accessible \
         from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) \
         Alternatively you can just disable the protected mode by editing the Redis configuration \
         file, and setting the protected mode option to 'no', and then restarting the server. 3) \
         If you started the server manually just for testing, restart it with the \
         '--protected-mode no' option. 4) Setup a an authentication password for the default \
         user. NOTE: You only need to do one of the above things in order for the server to start \
         accepting connections from the outside."
    )]
    ProtectedMode,
    /// A new connection past `max_clients`.
    #[error("ERR max number of clients reached")]
    MaxClients,

    // CLIENT TRACKING and CLIENT CACHING, in redis' words.
    /// `PREFIX` without `BCAST`.
    #[error("ERR PREFIX option requires BCAST mode to be enabled")]
    PrefixWithoutBcast,
    /// Tracking switched between BCAST and not while on.
    #[error(
        "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and \
         then re-enabling it with a different mode."
    )]
    BcastSwitch,
    /// `OPTIN`/`OPTOUT` with `BCAST`.
    #[error("ERR OPTIN and OPTOUT are not compatible with BCAST")]
    OptWithBcast,
    /// Both `OPTIN` and `OPTOUT`.
    #[error("ERR You can't specify both OPTIN mode and OPTOUT mode")]
    OptinAndOptout,
    /// Tracking switched between `OPTIN` and `OPTOUT` while on.
    #[error(
        "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and \
         then re-enabling it with a different mode."
    )]
    OptSwitch,
    /// A new prefix overlaps one the client tracks already.
    #[error(
        "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client \
         must not overlap.",
        String::from_utf8_lossy(.prefix),
        String::from_utf8_lossy(.existing)
    )]
    PrefixOverlapsExisting {
        /// The new prefix.
        prefix: Bytes,
        /// The prefix already tracked.
        existing: Bytes,
    },
    /// Two new prefixes overlap.
    #[error(
        "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single \
         client must not overlap.",
        String::from_utf8_lossy(.first),
        String::from_utf8_lossy(.second)
    )]
    PrefixOverlapsProvided {
        /// The first of the two.
        first: Bytes,
        /// The second of the two.
        second: Bytes,
    },
    /// `CLIENT CACHING` with tracking off or in neither `OPTIN` nor `OPTOUT` mode.
    #[error(
        "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or \
         OPTOUT mode enabled"
    )]
    CachingWithoutOpt,
    /// `CLIENT CACHING YES` outside `OPTIN` mode.
    #[error("ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")]
    CachingYesWithoutOptin,
    /// `CLIENT CACHING NO` outside `OPTOUT` mode.
    #[error("ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")]
    CachingNoWithoutOptout,

    // ACL, in redis' words.
    /// `ACL LOG` with arguments redis refuses.
    #[error("ERR unknown subcommand or wrong number of arguments for 'LOG'. Try ACL HELP.")]
    AclLogArguments,
    /// `ACL CAT` of an unknown category.
    #[error("ERR Unknown category '{}'", String::from_utf8_lossy(.0))]
    UnknownCategory(Bytes),
    /// `ACL DRYRUN` for an unknown user.
    #[error("ERR User '{}' not found", String::from_utf8_lossy(.0))]
    UserNotFound(Bytes),
    /// `ACL DRYRUN` of an unknown command.
    #[error("ERR Command '{}' not found", String::from_utf8_lossy(.0))]
    CommandNotFound(Bytes),
    /// `ACL SETUSER` with a name redis refuses.
    #[error("ERR Usernames can't contain spaces or null characters")]
    BadUsername,
    /// `ACL SETUSER` with a rule redis refuses.
    #[error(
        "ERR Error in ACL SETUSER modifier '{}': {error}",
        String::from_utf8_lossy(.rule)
    )]
    AclRule {
        /// The rule as the client sent it.
        rule: Bytes,
        /// Why it was refused.
        error: String,
    },
    /// `ACL DELUSER default`.
    #[error("ERR The 'default' user cannot be removed")]
    DefaultUserUndeletable,
    /// `ACL LOAD`/`ACL SAVE` without `acl.file` configured.
    #[error(
        "ERR This Redis instance is not configured to use an ACL file. You may want to specify \
         users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a \
         Redis configuration file set) in order to store users in the Redis configuration."
    )]
    NoAclFile,
    /// `ACL LOAD` found a bad file (redis' message for it).
    #[error("ERR {0}")]
    AclLoad(String),
    /// `ACL SAVE` could not write the file.
    #[error(
        "ERR There was an error trying to save the ACLs. Please check the server logs for more \
         information ({0})"
    )]
    AclSave(String),

    // Refused by slotproxy: redis-server would run these, slotproxy doesn't.
    /// A command slotproxy has no way to serve yet (its upper-case full name).
    #[error("ERR '{0}' is not supported by slotproxy yet")]
    NotSupportedYet(String),
    /// A command slotproxy refuses, for the reason its route gives.
    #[error("ERR '{command}' {reason}")]
    Unsupported {
        /// The upper-case full name.
        command: String,
        /// Completes "ERR `'<CMD>'` ...".
        reason: &'static str,
    },
    /// A command slotproxy can't queue in a transaction (its upper-case full name).
    #[error("ERR '{0}' inside MULTI is not supported by slotproxy")]
    NotInMulti(String),
    /// An `ACL` command inside a transaction.
    #[error("ERR ACL commands inside MULTI are not supported by slotproxy")]
    AclInMulti,
    /// A `CONFIG SET` of a setting that must never reach a node.
    #[error(
        "ERR CONFIG SET '{}' is never allowed through slotproxy (it could lock slotproxy out of \
         the nodes, make them write files or change the addresses they announce)",
        String::from_utf8_lossy(.0)
    )]
    ConfigSetRefused(Bytes),
    /// `CLIENT TRACKING ... REDIRECT id` naming a client that is not connected.
    #[error("ERR The client ID you want redirect to does not exist")]
    RedirectTargetMissing,
    /// A client in `MONITOR` mode sent a command that reads or writes keys.
    #[error("ERR Replica can't interact with the keyspace")]
    ReplicaKeyspace,
    /// `CLIENT TRACKING ... REDIRECT a REDIRECT b`.
    #[error("ERR A client can only redirect to a single other client")]
    RedirectTwice,
    /// More tracking prefixes than `session.tracking_max_prefixes`.
    #[error(
        "ERR too many tracking prefixes for this client (at most {0}, \
         session.tracking_max_prefixes)"
    )]
    TooManyPrefixes(usize),

    // The cluster can't serve the request now: nothing was applied.
    /// No node has been heard of yet.
    #[error("CLUSTERDOWN no cluster node is known yet")]
    NoNodeKnown,
    /// No node has answered for longer than the retry deadline (seconds since the last answer).
    #[error("CLUSTERDOWN no cluster node has answered for {0} s")]
    ClusterSilent(u64),
    /// No node has answered since slotproxy started, for longer than the retry deadline.
    #[error("CLUSTERDOWN no cluster node has answered since slotproxy started")]
    ClusterSilentSinceStart,
    /// The slot map names no node for the slot.
    #[error("CLUSTERDOWN Hash slot {0} not served")]
    SlotNotServed(u16),
    /// The replica a request was meant for left the shard of the slot.
    #[error("CLUSTERDOWN a replica of the shard of slot {0} is gone")]
    ReplicaGone(u16),
    /// The slot's primary fails the health checks (its address).
    #[error(
        "CLUSTERDOWN primary {0} fails slotproxy's health checks and no replica has taken over yet"
    )]
    PrimaryDown(String),
    /// `read_policy = "replica"` found no replica to read from.
    #[error(
        "CLUSTERDOWN no replica of {primary} is up to serve this read (read_policy replica): {why}"
    )]
    NoReplicaToRead {
        /// The shard's primary.
        primary: String,
        /// Each replica and what is wrong with it.
        why: String,
    },
    /// A node could not be reached, or a read's connection was lost (a read is safe to repeat).
    #[error("CLUSTERDOWN {0}")]
    NodeUnreachable(BackendError),
    /// A node's connection queue stayed full until the retry deadline (`BackendError::Busy`).
    #[error("TRYAGAIN {0} (backend.max_queued_requests): it reads slower than clients send")]
    NodeBusy(BackendError),
    /// The connection to a node stopped (its address).
    #[error("CLUSTERDOWN connection to node {0} stopped")]
    NodeStopped(String),
    /// A watched slot started moving during the transaction.
    #[error("TRYAGAIN the watched slot is moving to another node; retry the transaction")]
    WatchedSlotMoving,
    /// MOVED/ASK more than `max_redirects` times.
    #[error("TRYAGAIN slotproxy gave up after {max} redirections (last: {last})")]
    TooManyRedirects {
        /// The configured `cluster.max_redirects`.
        max: u32,
        /// The last redirect's text.
        last: String,
    },
    /// A node refused slotproxy's credentials.
    #[error("ERR slotproxy: {0}")]
    NodeAuth(BackendError),
    /// A held part of a split request was never sent.
    #[error("ERR slotproxy: a held request was not sent")]
    HeldNotSent,

    // The command may have been applied.
    /// The connection died after the request was written.
    #[error("ERR slotproxy: {0}; the command may or may not have been applied")]
    Lost(BackendError),
    /// `PUBLISH`'s connection died after the request was written.
    #[error("ERR slotproxy: {0}; the message may or may not have been published")]
    PublishLost(BackendError),
    /// The pub/sub link stopped with a `PUBLISH` in flight.
    #[error(
        "ERR slotproxy: the pub/sub link stopped; the message may or may not have been published"
    )]
    PublishLinkStopped,
    /// `ack = replicated`: the write has no replica to go to.
    #[error(
        "NOREPLICAS slotproxy: the primary applied the write but has no replica to confirm it \
         (ack = replicated); it may be lost if the primary fails"
    )]
    NoReplicaToAck,
    /// `ack = replicated`: no replica confirmed the write in time (`backend.ack_timeout_ms`).
    #[error(
        "NOREPLICAS slotproxy: the primary applied the write but no replica confirmed it within \
         {0} ms (ack = replicated); it may be lost if the primary fails"
    )]
    NotReplicated(u64),
    /// One slot's part of a per-slot transaction did not run.
    #[error("EXECABORT slotproxy: this slot's part of the transaction did not run")]
    SlotPartNotRun,
    /// A per-slot transaction's command has no reply.
    #[error("ERR slotproxy: no reply for this command of the transaction")]
    TransactionReplyMissing,

    // Nodes' replies slotproxy could not combine.
    /// A fan-out got no reply from any primary.
    #[error("ERR slotproxy: no primary answered")]
    NoPrimaryAnswered,
    /// A fan-out's replies that must agree differ.
    #[error("ERR slotproxy: the primaries' replies differ")]
    PrimariesDiffer,
    /// A fan-out's array replies that must agree differ in length.
    #[error("ERR slotproxy: the primaries' replies differ in length")]
    PrimariesDifferInLength,
    /// A `SCAN` planned as more than one part.
    #[error("ERR slotproxy: SCAN expects one part")]
    ScanParts,
    /// A node's `SCAN` reply is not `[cursor, keys]`.
    #[error("ERR slotproxy: a node's SCAN reply is not [cursor, keys]")]
    ScanReply,
    /// A node's `SCAN` cursor does not fit in the bits slotproxy's cursor has for it.
    #[error(
        "ERR slotproxy: a node's SCAN cursor ({cursor}) is wider than the {bits} bits \
         slotproxy's cursor has for it"
    )]
    ScanCursorTooWide {
        /// The node's cursor.
        cursor: u64,
        /// The bits slotproxy keeps for it.
        bits: u32,
    },
    /// A node's `INFO` reply is not a string.
    #[error("ERR slotproxy: a node's INFO reply is not a string")]
    InfoReply,
    /// A read of a computed command has no reply.
    #[error("ERR slotproxy: a key read is missing")]
    KeyReadMissing,
    /// A node's reply to `GET` (for `PFCOUNT`) is not a string or null.
    #[error("ERR slotproxy: a node's reply to GET was not understood")]
    GetReply,
    /// A node's reply to a key read (for set algebra) is not what the read asks for.
    #[error("ERR slotproxy: a node's reply to a key read was not understood")]
    KeyReadReply,
    /// A node's reply to `PUBSUB` does not decode.
    #[error("ERR slotproxy: unreadable PUBSUB reply from a node")]
    PubSubReply,
    /// The pub/sub hub task stopped.
    #[error("ERR slotproxy: the pub/sub hub stopped")]
    PubSubHubStopped,
    /// The thread checking a `CLIENT TRACKING`'s prefixes did not run the check (it could
    /// not start).
    #[error("ERR slotproxy: the tracking prefix check stopped")]
    PrefixCheckStopped,
    /// Tracking is on, but the cluster's invalidation streams are not all up yet.
    #[error(
        "ERR slotproxy: the cluster's invalidation streams did not start in time; tracking is \
         on, and cached values will be flushed when they do"
    )]
    InvalidationsLate,
    /// A command the session routes to nodes reached the local handler.
    #[error("ERR this command is dispatched, not answered locally")]
    NotLocal,
    /// A command that is not an introspection command reached that handler.
    #[error("ERR not an introspection command")]
    NotIntrospection,
}

impl ReplyError {
    /// The `-EXECABORT` of an `EXEC` refused with `error` before it ran, worded as redis'
    /// `rejectCommand` words it: the refusal's text without its `ERR` code (redis formats those
    /// refusals without one), other codes kept (`NOAUTH`, `NOPERM`).
    pub fn exec_refused(error: &ReplyError) -> ReplyError {
        let bytes = error.to_bytes();
        let text = String::from_utf8_lossy(bytes.strip_suffix(b"\r\n").unwrap_or(&bytes));
        let text = text.strip_prefix('-').unwrap_or(&text);
        let reason = text.strip_prefix("ERR ").unwrap_or(text);
        ReplyError::ExecAbortBecause(reason.to_string())
    }

    /// The RESP bytes of the reply: `-`, the text, CRLF.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write(&mut out);
        out.freeze()
    }

    /// Appends the reply to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        match self {
            // Client bytes are echoed as they are, as redis-server does.
            ReplyError::UnknownCommand(args) => write_error_bytes(out, &unknown_command(args)),
            ReplyError::UnknownSubcommand {
                container,
                subcommand,
            } => write_error_bytes(out, &unknown_subcommand(container, subcommand)),
            ReplyError::ClientSubcommandArity(subcommand) => {
                let mut message =
                    b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
                message.extend_from_slice(c_str(subcommand, 128));
                message.extend_from_slice(b"'. Try CLIENT HELP.");
                write_error_bytes(out, &message);
            }
            ReplyError::Protocol(_) => {
                let text: Vec<u8> = self
                    .to_string()
                    .chars()
                    .map(|c| u8::try_from(c).unwrap_or(b'?'))
                    .collect();
                write_error_bytes(out, &text);
            }
            _ => write_error(out, &self.to_string()),
        }
    }

    /// What a client may do about it.
    pub fn retry(&self) -> Retry {
        use ReplyError::*;
        match self {
            NoNodeKnown
            | ClusterSilent(_)
            | ClusterSilentSinceStart
            | SlotNotServed(_)
            | ReplicaGone(_)
            | PrimaryDown(_)
            | NoReplicaToRead { .. }
            | NodeUnreachable(_)
            | NodeBusy(_)
            | NodeStopped(_)
            | WatchedSlotMoving
            | TooManyRedirects { .. }
            | NodeAuth(_)
            | HeldNotSent
            | MaxClients
            | PubSubHubStopped
            | ScanParts
            | NotLocal
            | NotIntrospection => Retry::SafeToRetry,
            Lost(_)
            | PublishLost(_)
            | PublishLinkStopped
            | NoReplicaToAck
            | NotReplicated(_)
            | SlotPartNotRun
            | TransactionReplyMissing
            | NoPrimaryAnswered
            | PrimariesDiffer
            | PrimariesDifferInLength
            | ScanReply
            | ScanCursorTooWide { .. }
            | InfoReply
            | KeyReadMissing
            | GetReply
            | KeyReadReply
            | PubSubReply
            | InvalidationsLate => Retry::OutcomeUnknown,
            _ => Retry::ClientError,
        }
    }
}

/// redis-server's reply to an unknown command: its `%.*s` formatting copies each argument's
/// bytes up to the first NUL, within a 128-byte budget.
fn unknown_command(args: &[Bytes]) -> Vec<u8> {
    let (name, args) = args
        .split_first()
        .map_or((&[][..], &[][..]), |(n, a)| (&n[..], a));
    let mut quoted = Vec::new();
    for arg in args {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push(b'\'');
        quoted.extend_from_slice(c_str(arg, room));
        quoted.extend_from_slice(b"' ");
    }
    let mut message = b"ERR unknown command '".to_vec();
    message.extend_from_slice(c_str(name, 128));
    message.extend_from_slice(b"', with args beginning with: ");
    message.extend_from_slice(&quoted);
    message
}

/// redis-server's reply to an unknown subcommand of `container` (upper-case).
fn unknown_subcommand(container: &str, subcommand: &[u8]) -> Vec<u8> {
    let mut message = b"ERR unknown subcommand '".to_vec();
    message.extend_from_slice(c_str(subcommand, 128));
    message.extend_from_slice(b"'. Try ");
    message.extend_from_slice(container.as_bytes());
    message.extend_from_slice(b" HELP.");
    message
}

/// What C's `%.{max}s` prints of `bytes`: up to the first NUL, at most `max` bytes.
fn c_str(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end.min(max)]
}

#[cfg(test)]
mod tests;
