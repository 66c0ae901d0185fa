//! Differential test: a few thousand random commands over every data type go to slotproxy (in
//! front of a 3-primary + 3-replica cluster) and to one standalone redis-server, and every reply
//! is compared byte for byte: first in RESP2, then (on new connections, after `HELLO 3`) in RESP3.
//!
//! The generator is a seeded xorshift PRNG. `DIFF_SEED` overrides the seed (decimal or `0x`
//! hex), `DIFF_COMMANDS` the number of commands per pass (default 3000), and `DIFF_TRACE=1` prints
//! every command with both replies. A failure names the seed, the pass and the command's index,
//! shows the command, both replies and the 10 commands before it, and lists the keys whose
//! existence or type differs by then. The key space is small so that commands meet each other's
//! data: 32 plain keys `k0..k31` spread over all three primaries and 16 keys `{t}0..{t}15` in one
//! slot, so multi-key commands can be valid. Each key has a preferred family, so most commands
//! find the type they expect, and the rest get `WRONGTYPE` on purpose. About one step in twenty
//! is a pipeline: 2 to 8 commands in one write before any reply is read (as are a third of the
//! transactions).
//!
//! Covered: strings (SET with NX/XX/GET/EX/PX/EXAT/PXAT/KEEPTTL, GET, GETSET, APPEND, INCR, DECR,
//! INCRBY, DECRBY, INCRBYFLOAT, GETRANGE, SUBSTR, SETRANGE, STRLEN, GETDEL, GETEX, MSET, MGET,
//! MSETNX, SETNX, SETEX, PSETEX, LCS), bitmaps (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP,
//! BITFIELD, BITFIELD_RO), HyperLogLog (PFADD, PFCOUNT, PFMERGE), hashes (HSET, HMSET, HSETNX,
//! HGET, HMGET, HDEL, HGETALL, HKEYS, HVALS, HLEN, HEXISTS, HSTRLEN, HINCRBY, HINCRBYFLOAT,
//! HSCAN), lists (LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LRANGE, LINDEX, LSET, LLEN, LREM,
//! LTRIM, LINSERT, LPOS, LMOVE, RPOPLPUSH, LMPOP, SORT, SORT_RO), sets (SADD, SREM, SMEMBERS,
//! SISMEMBER, SMISMEMBER, SCARD, SINTER, SUNION, SDIFF and their STORE forms, SINTERCARD, SMOVE),
//! sorted sets (ZADD with NX/XX/GT/LT/CH/INCR, ZINCRBY, ZSCORE, ZMSCORE, ZRANGE with
//! BYSCORE/BYLEX/REV/LIMIT/WITHSCORES, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZREVRANGE, ZRANGEBYLEX,
//! ZRANK, ZREVRANK, ZREM, ZCARD, ZCOUNT, ZLEXCOUNT, ZPOPMIN, ZPOPMAX, ZMPOP, ZUNION, ZINTER,
//! ZDIFF and their STORE forms, ZINTERCARD, ZRANGESTORE, ZREMRANGEBY*, ZSCAN), geo (GEOADD,
//! GEODIST, GEOPOS, GEOHASH, GEOSEARCH with ASC/DESC, GEOSEARCHSTORE), streams with explicit ids
//! (XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XREAD, XGROUP CREATE/DESTROY, XREADGROUP, XACK,
//! XPENDING summary, XAUTOCLAIM), keys (DEL, UNLINK, EXISTS, TOUCH, TYPE, EXPIRE, PEXPIRE,
//! EXPIREAT, PEXPIREAT, PERSIST, TTL, PTTL, EXPIRETIME, PEXPIRETIME, RENAME, RENAMENX, COPY,
//! OBJECT ENCODING, DBSIZE, KEYS, FLUSHALL, FLUSHDB), scripts (EVAL, EVAL_RO, EVALSHA,
//! EVALSHA_RO with declared keys, SCRIPT LOAD, SCRIPT EXISTS; each pass starts by loading the
//! scripts on both sides), blocking commands with a 10 ms timeout (BLPOP, BRPOP, BLMOVE, BLMPOP,
//! BZPOPMIN, BZPOPMAX, XREAD BLOCK), MULTI/EXEC/DISCARD with and without WATCH, PING, ECHO, and
//! on purpose: unknown commands and subcommands, wrong arity, binary arguments, mixed-case
//! names, and now and then a command whose last argument is dropped or repeated (only when its
//! keys share a slot or the proxy splits or computes it, and never repeated where that makes it
//! a key of another slot: BLPOP-style timeouts, MSETNX, MSET inside MULTI; a cluster node
//! answers CROSSSLOT there too).
//!
//! Comparison rules:
//! - Every reply must be byte-equal, with three normalisations (for commands kept out of MULTI,
//!   where their reply would be part of EXEC's):
//!   - replies whose element order is a hash table's iteration order (SMEMBERS, SINTER, SUNION,
//!     SDIFF, KEYS; the two sides' hash seeds differ) are compared with their top-level elements
//!     sorted;
//!   - ZSCAN is compared with its member-score pairs sorted: SORT turns a small sorted set into a
//!     skiplist, whose hash table yields them in its own order;
//!   - TTL, PTTL, EXPIRETIME and PEXPIRETIME compare `-1`/`-2` exactly and any other value only
//!     as "has a deadline": relative deadlines are set microseconds apart on the two sides.
//! - A command whose keys span slots is split by the proxy when it is MGET, MSET, DEL, EXISTS,
//!   TOUCH or UNLINK, and computed by the proxy from each key's value when it is SUNION, SINTER,
//!   SDIFF, SINTERCARD, ZUNION, ZINTER, ZDIFF, ZINTERCARD or PFCOUNT; either way it must then
//!   match (a malformed one included: these also get their last argument dropped or repeated
//!   across slots). These commands get keys across slots more often than others. Any other
//!   such command is sent to the proxy only, which must answer exactly
//!   `-CROSSSLOT Keys in request don't hash to the same slot` (as a cluster node would); it
//!   changed nothing there, so both sides stay in sync.
//!
//! Excluded, with reasons:
//! - Random replies: SPOP, SRANDMEMBER, HRANDFIELD, ZRANDMEMBER, RANDOMKEY.
//! - Time-dependent replies: XADD with `*` (the id is the clock), XPENDING's extended form,
//!   XINFO and OBJECT IDLETIME (idle times), TIME, LASTSAVE; positive expiries short enough to
//!   fire during the test; EXPIRE/PEXPIRE with GT/LT (comparing two relative deadlines depends on
//!   whether both were set in the same millisecond), so GT/LT go only with the absolute
//!   EXPIREAT/PEXPIREAT; SET EXAT/PXAT in the past (redis-server 7.0 stores the expired key, and
//!   DBSIZE counts it until the active expire cycle, at random times, drops it).
//! - Hash-table iteration order that sorting can't normalise: SSCAN (cursors over a hash table),
//!   DUMP (serialises hash tables in iteration order), SORT BY/GET (also refused by cluster
//!   nodes).
//! - Server or connection state rather than data: INFO, CLIENT, CONFIG, MEMORY, OBJECT FREQ,
//!   DEBUG, and the HELLO reply (the proxy answers it itself; both must be RESP3 maps).
//! - Documented cluster limitations: one database (SELECT, MOVE, SWAPDB, COPY ... DB); SCAN
//!   cursors name a primary (see tests/it/scan.rs); SCRIPT FLUSH (afterwards an EVAL caches its
//!   script on one primary only, and SCRIPT EXISTS through the proxy says 1 only when every
//!   primary has it); FUNCTION/FCALL (libraries are per node); keyspace-wide commands inside
//!   MULTI and cross-slot transactions are refused by the proxy, so transactions use the `{t}`
//!   keys and no DBSIZE, KEYS, FLUSH* or SCRIPT.
//! - Commands newer than redis-server 7.0.15 (HEXPIRE, HGETDEL, ...): the proxy's built-in table
//!   knows them and the node does not, so their arity errors legitimately differ.
//! - Pub/sub and MONITOR: not request/reply.
//!
//! The tests after the random one are minimal reproductions of differences it found.
//!
//! Files: `generator/` makes the commands (`mod.rs`: keys, values, steps, transactions and
//! mutations; one file per group of data types), `command.rs` is the generated `Cmd`,
//! `normalise.rs` the comparison rules above, and `driver.rs` sends each step to both sides and
//! reports the first difference. The tests are here.

mod command;
mod driver;
mod generator;
mod normalise;

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::common::{RawClient, StandaloneRedis, TestCluster, TestProxy, encode_command};
use command::{show, show_args};
use driver::{Runner, env_number, load_scripts, replay, replay_pipelined, within};

/// Seed used when `DIFF_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5107_DA7A_2024_0001;
/// Commands per pass when `DIFF_COMMANDS` is not set.
const DEFAULT_COMMANDS: usize = 3000;
/// Mixed into the seed for the RESP3 pass, so it runs a different sequence.
const RESP3_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// Plain keys `k0..`: spread over slots.
const PLAIN_KEYS: usize = 32;
/// Keys `{t}0..`: all in the slot of `t`.
const TAGGED_KEYS: usize = 16;
const KEY_COUNT: usize = PLAIN_KEYS + TAGGED_KEYS;

fn key_name(index: usize) -> String {
    if index < PLAIN_KEYS {
        format!("k{index}")
    } else {
        format!("{{t}}{}", index - PLAIN_KEYS)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_commands_reply_like_a_standalone_redis_server() {
    let seed = env_number("DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let count =
        env_number("DIFF_COMMANDS").map_or(DEFAULT_COMMANDS, |n| usize::try_from(n).unwrap());
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;

    let slots: Vec<u16> = (0..KEY_COUNT)
        .map(|k| cluster.keyslot(key_name(k).as_bytes()))
        .collect();
    let owners: BTreeSet<u16> = slots[..PLAIN_KEYS]
        .iter()
        .map(|&slot| cluster.owner_of(slot).port)
        .collect();
    assert_eq!(owners.len(), 3, "the plain keys live on every primary");
    assert!(
        slots[PLAIN_KEYS..].iter().all(|&s| s == slots[PLAIN_KEYS]),
        "the {{t}} keys share one slot"
    );

    let started = Instant::now();
    for (pass, gen_seed) in [("RESP2", seed), ("RESP3", seed ^ RESP3_SALT)] {
        let mut via_proxy = proxy.raw_client().await;
        let mut direct = RawClient::connect(standalone.addr.as_str()).await;
        for client in [&mut via_proxy, &mut direct] {
            assert_eq!(client.request(&[b"FLUSHALL"]).await, b"+OK\r\n");
            if pass == "RESP3" {
                let hello = client.request(&[b"HELLO", b"3"]).await;
                assert!(hello.starts_with(b"%"), "HELLO 3: {}", show(&hello));
            }
        }
        let shas = load_scripts(&mut via_proxy, &mut direct).await;
        let mut runner = Runner {
            proxy: &mut via_proxy,
            redis: &mut direct,
            slots: &slots,
            seed,
            count,
            pass,
            history: VecDeque::new(),
            crossslot: 0,
            split_across_slots: 0,
            trace: std::env::var_os("DIFF_TRACE").is_some(),
            proxy_addr: proxy.addr.to_string(),
            redis_addr: standalone.addr.clone(),
        };
        runner.run(gen_seed, shas).await;
        eprintln!(
            "{pass}: {count} commands matched (seed {seed}; {} refused with CROSSSLOT, {} split \
             or computed across slots); {:?} so far",
            runner.crossslot,
            runner.split_across_slots,
            started.elapsed()
        );
    }
}

/// Minimal reproduction of a difference the random test found: an MSET with a missing value
/// must change nothing (redis-server checks the argument count first), also when its keys span
/// slots. (`{t}a` and `x` are in different slots.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mset_with_a_missing_value_across_slots_changes_nothing() {
    let differences = replay(&[
        &[b"MSET", b"{t}a", b"1", b"x"],
        &[b"GET", b"{t}a"],
        &[b"EXISTS", b"{t}a", b"x"],
    ])
    .await;
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Minimal reproduction of a difference the random test found: redis-server quotes the
/// arguments of an unknown command (or subcommand) with `%.128s`, so a NUL ends an argument and
/// other bytes are copied as they are (only CR and LF become spaces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_errors_quote_binary_arguments_like_redis() {
    let long = format!("a{}", "\u{e9}".repeat(70));
    let differences = replay(&[
        &[b"NOSUCHCMD", b"\x00\xff\r\n"],
        &[b"NOSUCHCMD", b"a\x00b", b"c"],
        &[b"NOSUCHCMD", b"a\xffb"],
        &[b"NO\xffSUCH", b"x"],
        &[b"OBJECT", b"a\x00b", b"k"],
        &[b"OBJECT", b"\xff", b"k"],
        // redis cuts at 128 bytes, here inside a two-byte character.
        &[b"NOSUCHCMD", long.as_bytes()],
    ])
    .await;
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Minimal reproduction of a difference the random test found: `WATCH` followed, in the same
/// write, by `UNWATCH`, `DISCARD` or `RESET` must get `+OK` (the proxy used to drop the session's
/// dedicated node connection while the WATCH reply was still on its way, and answer an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_watch_then_unwatch_replies_ok() {
    let differences = replay_pipelined(&[
        &[&[b"WATCH", b"{t}1"], &[b"UNWATCH"]],
        &[&[b"WATCH", b"{t}1"], &[b"MULTI"], &[b"DISCARD"]],
        &[&[b"WATCH", b"{t}1"], &[b"RESET"]],
        &[&[b"GET", b"{t}1"]],
    ])
    .await;
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Minimal reproduction of a difference the random test found: a blocking command (which the
/// proxy sends on a connection of the session's own) pipelined right after a write to the same
/// key must see that write, as on redis-server (it used to overtake it most of the time, so a
/// few rounds make a regression certain to show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_blocking_command_sees_the_writes_before_it() {
    let round: &[&[&[&[u8]]]] = &[
        &[
            &[b"SET", b"{t}s", b"x"],
            &[b"BLPOP", b"{t}s", b"0.01"],
            &[b"DEL", b"{t}s"],
        ],
        &[
            &[b"XADD", b"{t}x", b"1-1", b"f", b"v"],
            &[b"XREAD", b"STREAMS", b"{t}x", b"0"],
            &[b"DEL", b"{t}x"],
        ],
    ];
    let batches: Vec<&[&[&[u8]]]> = round.iter().copied().cycle().take(20).collect();
    let differences = replay_pipelined(&batches).await;
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Minimal reproduction of a difference the random test found: `PFMERGE dest` without source
/// keys is routed by `dest` on a cluster node, but the proxy used to find no key in it (its
/// second key spec, the sources, is empty). Inside MULTI the transaction then had no slot, EXEC
/// went to whichever primary the session picked, and when that primary did not own `dest` the
/// client never got EXEC's reply. Three connections, so one of them picks a primary that is not
/// the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_with_a_sourceless_pfmerge_gets_its_exec_reply() {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut differences = Vec::new();
    for _ in 0..3 {
        let mut via_proxy = proxy.raw_client().await;
        let mut direct = RawClient::connect(standalone.addr.as_str()).await;
        for args in [
            &[&b"PFMERGE"[..], b"{t}5"][..],
            &[b"MULTI"],
            &[b"PFMERGE", b"{t}5"],
            &[b"EXEC"],
            &[b"PING"],
        ] {
            let (got, want) = tokio::join!(
                within(via_proxy.request(args)),
                within(direct.request(args))
            );
            if got != want {
                let command: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
                differences.push(format!(
                    "{}: slotproxy {}, redis-server {}",
                    show_args(&command),
                    show(&got),
                    show(&want)
                ));
                break;
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Minimal reproduction of a difference the random test found (there through a `PFMERGE` the
/// proxy sent to the wrong primary; here through a stale slot map, as during resharding):
/// commands pipelined after a write that gets `MOVED` must not run before the redirected write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_after_a_redirected_write_see_it() {
    let cluster = TestCluster::start(3, 0);
    // A long timer, so the proxy's slot map stays stale until the MOVED.
    let proxy = TestProxy::start_with(&cluster, |c| c.cluster.refresh_interval_ms = 600_000).await;
    let primaries = cluster.primaries();
    let key = cluster.key_for_node(primaries[0], "moved");
    cluster.migrate_slot(cluster.keyslot(key.as_bytes()), primaries[0], primaries[1]);
    let mut client = proxy.raw_client().await;
    let commands: [&[&[u8]]; 4] = [
        &[b"SET", key.as_bytes(), b"1"],
        &[b"DBSIZE"],
        &[b"EXISTS", b"{t}other", key.as_bytes()],
        &[b"KEYS", b"*"],
    ];
    let bytes: Vec<u8> = commands
        .iter()
        .flat_map(|args| encode_command(args))
        .collect();
    client.send(&bytes).await;
    let mut replies = Vec::new();
    for _ in commands {
        replies.push(show(&within(client.read_reply()).await));
    }
    let key_reply = format!("*1\\r\\n${}\\r\\n{key}\\r\\n", key.len());
    assert_eq!(
        replies,
        ["+OK\\r\\n", ":1\\r\\n", ":1\\r\\n", key_reply.as_str()],
        "SET {key} (redirected), DBSIZE, EXISTS, KEYS *"
    );
}
