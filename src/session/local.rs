//! Commands the proxy answers itself, with the replies (and errors) redis-server gives.
//!
//! To cluster-aware clients (`redis-cli -c`, redis-py's `RedisCluster`, `redis-benchmark
//! --cluster`) the proxy is a one-node cluster that owns all 16384 slots at the address the client
//! connected to: `CLUSTER SLOTS`, `SHARDS`, `NODES`, `INFO`, `MYID` and `MYSHARDID` say so, and
//! such clients then send everything to the proxy, which routes it. The node id is a hash of
//! that address, so it is stable across restarts and differs between proxies.
//!
//! `CLIENT INFO` and `CLIENT LIST` describe the calling client only: sessions don't know about
//! each other, so `CLIENT LIST` lists the caller alone. Counters the proxy doesn't keep (query
//! buffer, memory) are 0. Tracking, `CLIENT REPLY OFF|SKIP` and `CLIENT NO-TOUCH` are refused
//! (see `route.rs`); what is trivially true of a client without them is answered: `TRACKING OFF`,
//! `REPLY ON` and `NO-EVICT` say OK (the proxy never evicts clients), `TRACKINGINFO` and
//! `GETREDIR` report tracking off, `CACHING` gets redis' error for a client without tracking.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::scan::Fnv;
use super::{Pending, Session};
use crate::cluster::{SLOT_COUNT, hash_slot};
use crate::command::route::Local;
use crate::config::ReadPolicy;
use crate::protocol::reply::{
    write_array_len, write_bulk, write_integer, write_map_len, write_null, write_simple,
};
use crate::protocol::{Protocol, Request};

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";
const SYNTAX: &str = "ERR syntax error";

/// What `CLIENT INFO`/`CLIENT LIST` report about a client beyond its id and name.
#[derive(Debug, Default)]
pub(super) struct ClientInfo {
    /// The client's address.
    peer: Option<SocketAddr>,
    /// The proxy address the client connected to; also the address cluster replies give.
    local: Option<SocketAddr>,
    /// The socket's file descriptor, -1 where there is none to show.
    fd: i64,
    connected: Option<Instant>,
    /// `CLIENT SETINFO LIB-NAME` / `LIB-VER`.
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
}

impl ClientInfo {
    /// Records the client's socket when its session starts.
    pub(super) fn connected(&mut self, stream: &TcpStream) {
        self.peer = stream.peer_addr().ok();
        self.local = stream.local_addr().ok();
        self.connected = Some(Instant::now());
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            self.fd = i64::from(stream.as_raw_fd());
        }
        #[cfg(not(unix))]
        {
            self.fd = -1;
        }
    }
}

impl Session {
    /// Answers a proxy-local command.
    pub(super) fn local(&mut self, local: Local, request: &Request) {
        let args = request.args();
        match local {
            Local::Ping => match args.len() {
                1 => self.reply_with(|out| write_simple(out, "PONG")),
                2 => self.reply_with(|out| write_bulk(out, &args[1])),
                _ => self.reply_error("ERR wrong number of arguments for 'ping' command"),
            },
            Local::Echo => self.reply_with(|out| write_bulk(out, &args[1])),
            Local::Quit => {
                let mut out = BytesMut::new();
                write_simple(&mut out, "OK");
                self.pending.push_back(Pending::Close(out.freeze()));
                self.stop_reading = true;
            }
            Local::Select => match std::str::from_utf8(&args[1]).ok().and_then(|s| s.parse::<i64>().ok()) {
                None => self.reply_error(NOT_INTEGER),
                Some(0) => self.reply_with(|out| write_simple(out, "OK")),
                Some(_) => self.reply_error("ERR SELECT is not allowed in cluster mode"),
            },
            Local::Hello => self.hello(args),
            Local::Auth => match args.len() {
                2 => self.reply_error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ),
                3 if args[1].eq_ignore_ascii_case(b"default") => {
                    self.reply_with(|out| write_simple(out, "OK"))
                }
                3 => self.reply_error(WRONGPASS),
                _ => self.reply_error("ERR syntax error"),
            },
            Local::Reset => {
                self.end_transaction();
                self.read_policy = self.shared.config.read_policy;
                self.protocol = Protocol::Resp2;
                self.name = None;
                self.reply_with(|out| write_simple(out, "RESET"));
            }
            Local::ClientSetName => {
                if !valid_name(&args[2]) {
                    return self.reply_error(BAD_NAME);
                }
                self.name = (!args[2].is_empty()).then(|| args[2].clone());
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::ClientGetName => {
                let protocol = self.protocol;
                let name = self.name.clone();
                self.reply_with(|out| match name {
                    Some(name) => write_bulk(out, &name),
                    None => write_null(out, protocol),
                });
            }
            Local::ClientId => {
                let id = self.id as i64;
                self.reply_with(|out| write_integer(out, id));
            }
            Local::ClientSetInfo => {
                let attr = &args[2];
                if !attr.eq_ignore_ascii_case(b"lib-name") && !attr.eq_ignore_ascii_case(b"lib-ver") {
                    return self.reply_error(&format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(attr)
                    ));
                }
                if !valid_name(&args[3]) {
                    return self.reply_error(&format!(
                        "ERR {} cannot contain spaces, newlines or special characters.",
                        String::from_utf8_lossy(attr).to_ascii_lowercase()
                    ));
                }
                let value = (!args[3].is_empty()).then(|| args[3].clone());
                if attr.eq_ignore_ascii_case(b"lib-name") {
                    self.info.lib_name = value;
                } else {
                    self.info.lib_ver = value;
                }
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::ReadMode => {
                // READONLY lets this connection read from replicas, READWRITE sends it back to
                // primaries (an explicit policy other than primary stays as configured).
                let readonly = args[0].eq_ignore_ascii_case(b"readonly");
                let configured = self.shared.config.read_policy;
                self.read_policy = match (readonly, configured) {
                    (true, ReadPolicy::Primary) => ReadPolicy::PreferReplica,
                    (true, other) => other,
                    (false, _) => ReadPolicy::Primary,
                };
                self.reply_with(|out| write_simple(out, "OK"));
            }
            Local::Multi => self.multi(),
            Local::Exec => self.exec(),
            Local::Discard => self.discard(),
            Local::Unwatch => self.unwatch(),
            Local::Watch => self.reply_error("ERR WATCH is routed by its keys"),
            Local::ClusterKeySlot => {
                let slot = i64::from(hash_slot(&args[2]).0);
                self.reply_with(|out| write_integer(out, slot));
            }
            Local::Scan => self.scan(request),
            Local::ClusterInfo => {
                let ok = self.shared.topology.slot_map().covered_slots();
                let text = cluster_info(ok);
                let protocol = self.protocol;
                self.reply_with(|out| write_text(out, protocol, text.as_bytes()));
            }
            Local::ClusterMyId => {
                let id = self.node_id();
                self.reply_with(|out| write_bulk(out, id.as_bytes()));
            }
            Local::ClusterMyShardId => {
                let id = hex_id(b"shard", self.cluster_addr());
                self.reply_with(|out| write_bulk(out, id.as_bytes()));
            }
            Local::ClusterSlots => {
                let (addr, id, protocol) = (self.cluster_addr(), self.node_id(), self.protocol);
                self.reply_with(|out| {
                    write_array_len(out, 1);
                    write_array_len(out, 3);
                    write_integer(out, 0);
                    write_integer(out, i64::from(SLOT_COUNT - 1));
                    write_array_len(out, 4);
                    write_bulk(out, ip_text(addr).as_bytes());
                    write_integer(out, i64::from(addr.port()));
                    write_bulk(out, id.as_bytes());
                    // Redis 7's per-node metadata (hostname...): none.
                    write_map_len(out, protocol, 0);
                });
            }
            Local::ClusterShards => {
                let (addr, id, protocol) = (self.cluster_addr(), self.node_id(), self.protocol);
                let ip = ip_text(addr);
                self.reply_with(|out| {
                    write_array_len(out, 1);
                    write_map_len(out, protocol, 2);
                    write_bulk(out, b"slots");
                    write_array_len(out, 2);
                    write_integer(out, 0);
                    write_integer(out, i64::from(SLOT_COUNT - 1));
                    write_bulk(out, b"nodes");
                    write_array_len(out, 1);
                    write_map_len(out, protocol, 7);
                    write_bulk(out, b"id");
                    write_bulk(out, id.as_bytes());
                    write_bulk(out, b"port");
                    write_integer(out, i64::from(addr.port()));
                    write_bulk(out, b"ip");
                    write_bulk(out, ip.as_bytes());
                    write_bulk(out, b"endpoint");
                    write_bulk(out, ip.as_bytes());
                    write_bulk(out, b"role");
                    write_bulk(out, b"master");
                    write_bulk(out, b"replication-offset");
                    write_integer(out, 0);
                    write_bulk(out, b"health");
                    write_bulk(out, b"online");
                });
            }
            Local::ClusterNodes => {
                let addr = self.cluster_addr();
                let line = format!(
                    "{} {}:{}@{} myself,master - 0 0 0 connected 0-{}\n",
                    self.node_id(),
                    ip_text(addr),
                    addr.port(),
                    addr.port(),
                    SLOT_COUNT - 1
                );
                let protocol = self.protocol;
                self.reply_with(|out| write_text(out, protocol, line.as_bytes()));
            }
            Local::ClientInfo => {
                let line = self.client_line("client|info");
                let protocol = self.protocol;
                self.reply_with(|out| write_text(out, protocol, line.as_bytes()));
            }
            Local::ClientList => self.client_list(args),
            Local::ClientNoEvict => {
                if args[2].eq_ignore_ascii_case(b"on") || args[2].eq_ignore_ascii_case(b"off") {
                    self.reply_with(|out| write_simple(out, "OK"));
                } else {
                    self.reply_error(SYNTAX);
                }
            }
            Local::ClientTracking => {
                if args[2].eq_ignore_ascii_case(b"off") {
                    self.reply_with(|out| write_simple(out, "OK"));
                } else if args[2].eq_ignore_ascii_case(b"on") {
                    self.reply_error(
                        "ERR 'CLIENT TRACKING ON' is not supported by slotproxy (invalidations \
                         come from nodes on connections clients share)",
                    );
                } else {
                    self.reply_error(SYNTAX);
                }
            }
            Local::ClientTrackingInfo => {
                let protocol = self.protocol;
                self.reply_with(|out| {
                    write_map_len(out, protocol, 3);
                    write_bulk(out, b"flags");
                    match protocol {
                        Protocol::Resp2 => write_array_len(out, 1),
                        Protocol::Resp3 => out.put_slice(b"~1\r\n"),
                    }
                    write_bulk(out, b"off");
                    write_bulk(out, b"redirect");
                    write_integer(out, -1);
                    write_bulk(out, b"prefixes");
                    write_array_len(out, 0);
                });
            }
            Local::ClientGetRedir => self.reply_with(|out| write_integer(out, -1)),
            Local::ClientCaching => self.reply_error(
                "ERR CLIENT CACHING can be called only when the client is in tracking mode with \
                 OPTIN or OPTOUT mode enabled",
            ),
            Local::ClientReply => {
                if args[2].eq_ignore_ascii_case(b"on") {
                    self.reply_with(|out| write_simple(out, "OK"));
                } else if args[2].eq_ignore_ascii_case(b"off")
                    || args[2].eq_ignore_ascii_case(b"skip")
                {
                    self.reply_error(&format!(
                        "ERR 'CLIENT REPLY {}' is not supported by slotproxy",
                        String::from_utf8_lossy(&args[2]).to_ascii_uppercase()
                    ));
                } else {
                    self.reply_error(SYNTAX);
                }
            }
        }
    }

    /// The address cluster replies name: the one the client connected to (else the configured
    /// listen address).
    fn cluster_addr(&self) -> SocketAddr {
        self.info
            .local
            .or_else(|| self.shared.config.listen.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6379)))
    }

    /// The proxy's node id at the address the client connected to.
    fn node_id(&self) -> String {
        hex_id(b"node", self.cluster_addr())
    }

    /// `CLIENT LIST [TYPE type] [ID id [id ...]]`: the caller's line when it matches.
    fn client_list(&mut self, args: &[Bytes]) {
        let listed = if args.len() == 4 && args[2].eq_ignore_ascii_case(b"type") {
            let kind = String::from_utf8_lossy(&args[3]).to_ascii_lowercase();
            match kind.as_str() {
                "normal" => true,
                "master" | "replica" | "slave" | "pubsub" => false,
                _ => {
                    return self.reply_error(&format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(&args[3])
                    ));
                }
            }
        } else if args.len() > 3 && args[2].eq_ignore_ascii_case(b"id") {
            let mut listed = false;
            for id in &args[3..] {
                match std::str::from_utf8(id)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                {
                    Some(id) => listed |= id == self.id as i64,
                    None => return self.reply_error("ERR Invalid client ID"),
                }
            }
            listed
        } else if args.len() == 2 {
            true
        } else {
            return self.reply_error(SYNTAX);
        };
        let text = if listed {
            self.client_line("client|list")
        } else {
            String::new()
        };
        let protocol = self.protocol;
        self.reply_with(|out| write_text(out, protocol, text.as_bytes()));
    }

    /// The caller's `CLIENT LIST` line (with its newline), in redis' field order.
    fn client_line(&self, command: &str) -> String {
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let age = self.info.connected.map_or(0, |at| at.elapsed().as_secs());
        format!(
            "id={} addr={} laddr={} fd={} name={} age={age} idle=0 flags=N db=0 sub=0 psub=0 \
             ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 \
             omem=0 tot-mem=0 events=r cmd={command} user=default redir=-1 resp={} lib-name={} \
             lib-ver={}\n",
            self.id,
            addr(self.info.peer),
            addr(self.info.local),
            self.info.fd,
            text(&self.name),
            match self.protocol {
                Protocol::Resp2 => 2,
                Protocol::Resp3 => 3,
            },
            text(&self.info.lib_name),
            text(&self.info.lib_ver),
        )
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    fn hello(&mut self, args: &[Bytes]) {
        let mut protocol = self.protocol;
        if let Some(version) = args.get(1) {
            match std::str::from_utf8(version)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(2) => protocol = Protocol::Resp2,
                Some(3) => protocol = Protocol::Resp3,
                Some(_) => return self.reply_error("NOPROTO unsupported protocol version"),
                None => {
                    return self
                        .reply_error("ERR Protocol version is not an integer or out of range");
                }
            }
        }
        let mut name = None;
        let mut i = 2;
        while i < args.len() {
            let option = &args[i];
            let more = args.len() - i - 1;
            if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                if !args[i + 1].eq_ignore_ascii_case(b"default") {
                    return self.reply_error(WRONGPASS);
                }
                i += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                if !valid_name(&args[i + 1]) {
                    return self.reply_error(BAD_NAME);
                }
                name = Some(args[i + 1].clone());
                i += 2;
            } else {
                return self.reply_error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                ));
            }
        }
        self.protocol = protocol;
        if let Some(name) = name {
            self.name = (!name.is_empty()).then_some(name);
        }
        let id = self.id as i64;
        let version = self.shared.redis_version.load_full();
        self.reply_with(|out| {
            write_map_len(out, protocol, 7);
            write_bulk(out, b"server");
            write_bulk(out, b"redis");
            write_bulk(out, b"version");
            write_bulk(out, version.as_bytes());
            write_bulk(out, b"proto");
            write_integer(out, if protocol == Protocol::Resp3 { 3 } else { 2 });
            write_bulk(out, b"id");
            write_integer(out, id);
            write_bulk(out, b"mode");
            write_bulk(out, b"standalone");
            write_bulk(out, b"role");
            write_bulk(out, b"master");
            write_bulk(out, b"modules");
            write_array_len(out, 0);
        });
    }
}

/// `CLUSTER INFO` of a one-node cluster owning every slot, `ok` of which have a primary in the
/// proxy's slot map.
fn cluster_info(ok: usize) -> String {
    let all = usize::from(SLOT_COUNT);
    let state = if ok == all { "ok" } else { "fail" };
    let mut text = String::new();
    for (key, value) in [
        ("cluster_state", state.to_string()),
        ("cluster_slots_assigned", all.to_string()),
        ("cluster_slots_ok", ok.to_string()),
        ("cluster_slots_pfail", "0".to_string()),
        ("cluster_slots_fail", (all - ok).to_string()),
        ("cluster_known_nodes", "1".to_string()),
        ("cluster_size", "1".to_string()),
        ("cluster_current_epoch", "0".to_string()),
        ("cluster_my_epoch", "0".to_string()),
        ("cluster_stats_messages_sent", "0".to_string()),
        ("cluster_stats_messages_received", "0".to_string()),
        ("total_cluster_links_buffer_limit_exceeded", "0".to_string()),
    ] {
        let _ = write!(text, "{key}:{value}\r\n");
    }
    text
}

/// A 40-hex-digit id (like a node's) for `kind` at `addr`: a hash of both, stable across runs.
fn hex_id(kind: &[u8], addr: SocketAddr) -> String {
    let addr = addr.to_string();
    let mut id = String::with_capacity(48);
    for part in [&b"a"[..], b"b", b"c"] {
        let hash = Fnv::new()
            .bytes(b"slotproxy ")
            .bytes(kind)
            .bytes(part)
            .bytes(addr.as_bytes());
        let _ = write!(id, "{:016x}", hash.0);
    }
    id.truncate(40);
    id
}

/// The IP as redis prints it (an IPv4-mapped IPv6 address as plain IPv4).
fn ip_text(addr: SocketAddr) -> String {
    addr.ip().to_canonical().to_string()
}

/// A text reply as redis 7 sends it: a bulk string in RESP2, a `txt` verbatim string in RESP3.
fn write_text(out: &mut BytesMut, protocol: Protocol, text: &[u8]) {
    match protocol {
        Protocol::Resp2 => write_bulk(out, text),
        Protocol::Resp3 => {
            out.put_u8(b'=');
            out.put_slice((text.len() + 4).to_string().as_bytes());
            out.put_slice(b"\r\ntxt:");
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
    }
}

/// Client and library names: printable ASCII without spaces, as redis-server requires.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}
