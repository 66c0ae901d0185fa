//! Read-only set, sorted-set and HyperLogLog commands whose keys span slots (SUNION, SINTER,
//! SDIFF, SINTERCARD, ZUNION, ZINTER, ZDIFF, ZINTERCARD, PFCOUNT) are computed by the proxy from
//! each key's value. Every reply is compared with what one standalone redis-server holding the
//! same data answers, in RESP2 and RESP3; set replies in any order where redis' own order is its
//! hash table's. Their writing forms (`*STORE`, `PFMERGE`, `SMOVE`) still get `-CROSSSLOT`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{self, RawClient, StandaloneRedis, TestCluster, TestProxy, wait_until};
use slotproxy::config::ReadPolicy;

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn show_args(args: &[&[u8]]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Keys named `<name>:<n>` placed on the primaries in turn, so that a command naming a few of
/// them spans several slots and nodes.
struct Keys<'a> {
    cluster: &'a TestCluster,
}

impl Keys<'_> {
    /// A key for `name` on primary `node % 3`.
    fn on(&self, node: usize, name: &str) -> String {
        let primaries = self.cluster.primaries();
        self.cluster
            .key_for_node(primaries[node % primaries.len()], name)
    }
}

/// Sends `args` to both sides and asserts the same reply (for writes that set up data).
async fn both(proxy: &mut RawClient, redis: &mut RawClient, args: &[&[u8]]) {
    let (got, want) = tokio::join!(proxy.request(args), redis.request(args));
    assert_eq!(show(&got), show(&want), "{}", show_args(args));
}

/// The integer a bulk string element holds, if it is one.
fn integer(element: &[u8]) -> Option<i64> {
    let start = element.windows(2).position(|w| w == b"\r\n")? + 2;
    std::str::from_utf8(element.get(start..element.len() - 2)?)
        .ok()?
        .parse()
        .ok()
}

/// Asserts that two set replies (SUNION, SINTER, SDIFF) are equal as sets: the same header
/// (`*n` or `~n`), the same members in any order. When redis answered in ascending integer order
/// (its intset encoding's order), the proxy must answer in that order too.
fn assert_same_set(got: &[u8], want: &[u8], what: &str) {
    let (Some((got_header, mut got_elements)), Some((want_header, want_elements))) =
        (common::split_aggregate(got), common::split_aggregate(want))
    else {
        assert_eq!(show(got), show(want), "{what}");
        return;
    };
    assert_eq!(show(got_header), show(want_header), "{what}");
    let numbers: Option<Vec<i64>> = want_elements.iter().map(|e| integer(e)).collect();
    if numbers.is_some_and(|n| n.is_sorted()) {
        assert_eq!(show(got), show(want), "{what} (in intset order)");
        return;
    }
    let mut want_elements = want_elements;
    got_elements.sort_unstable();
    want_elements.sort_unstable();
    assert_eq!(got_elements, want_elements, "{what}: {}", show(got));
}

/// Runs `commands` against both sides in RESP2, then again on new connections in RESP3.
/// Set-valued replies are compared with [`assert_same_set`], the others byte for byte.
async fn compare_in_both_protocols(
    proxy: &TestProxy,
    standalone: &StandaloneRedis,
    commands: &[Vec<Vec<u8>>],
) {
    for resp3 in [false, true] {
        let mut via_proxy = proxy.raw_client().await;
        let mut direct = RawClient::connect(standalone.addr.as_str()).await;
        if resp3 {
            for client in [&mut via_proxy, &mut direct] {
                let hello = client.request(&[b"HELLO", b"3"]).await;
                assert!(hello.starts_with(b"%"), "HELLO 3: {}", show(&hello));
            }
        }
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            let (got, want) = tokio::join!(via_proxy.request(&args), direct.request(&args));
            let what = format!("{} (RESP{})", show_args(&args), if resp3 { 3 } else { 2 });
            let name = args[0].to_ascii_uppercase();
            if matches!(&name[..], b"SUNION" | b"SINTER" | b"SDIFF") {
                assert_same_set(&got, &want, &what);
            } else {
                assert_eq!(show(&got), show(&want), "{what}");
            }
        }
    }
}

/// Asserts that each command names keys of several slots.
fn assert_span_slots(cluster: &TestCluster, keys: &[(&str, String)], commands: &[Vec<Vec<u8>>]) {
    let slots: Vec<(&[u8], u16)> = keys
        .iter()
        .map(|(_, k)| (k.as_bytes(), cluster.keyslot(k.as_bytes())))
        .collect();
    for args in commands {
        let used: BTreeSet<u16> = args
            .iter()
            .filter_map(|a| slots.iter().find(|(k, _)| *k == &a[..]).map(|&(_, s)| s))
            .collect();
        assert!(
            used.len() > 1,
            "{} spans slots",
            show_args(&args.iter().map(Vec::as_slice).collect::<Vec<_>>())
        );
    }
}

/// A command from words; `$name` is replaced by that key's name.
fn command(line: &str, keys: &[(&str, String)]) -> Vec<Vec<u8>> {
    line.split(' ')
        .map(|word| match word.strip_prefix('$') {
            Some(name) => keys
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no key {name}"))
                .1
                .clone()
                .into_bytes(),
            None => word.as_bytes().to_vec(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_commands_across_slots_reply_like_one_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let at = Keys { cluster: &cluster };
    let keys: Vec<(&str, String)> = vec![
        ("sa", at.on(0, "sa")),
        ("sb", at.on(1, "sb")),
        ("sc", at.on(2, "sc")),
        ("ia", at.on(1, "ia")),
        ("ib", at.on(2, "ib")),
        ("big", at.on(0, "big")),
        ("l", at.on(0, "l")),
        ("st", at.on(1, "st")),
        ("zz", at.on(2, "zz")),
        ("m0", at.on(0, "m0")),
        ("m1", at.on(1, "m1")),
        ("m2", at.on(2, "m2")),
    ];
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    // More than 512 integers: a hash table, not an intset, on redis-server.
    let big: Vec<String> = (0..600).map(|i| (i * 2).to_string()).collect();
    let mut setup = vec![
        "SADD $sa a b c 1 2",
        "SADD $sb b c d 2",
        "SADD $sc c x 2 b",
        "SADD $ia 3 1 2 10",
        "SADD $ib 2 5 10 -7",
        "RPUSH $l a",
        "SET $st a",
        "ZADD $zz 1 a",
    ]
    .into_iter()
    .map(|line| command(line, &keys))
    .collect::<Vec<_>>();
    let mut sadd_big = command("SADD $big", &keys);
    sadd_big.extend(big.iter().map(|m| m.as_bytes().to_vec()));
    setup.push(sadd_big);
    for args in &setup {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        both(&mut via_proxy, &mut direct, &args).await;
    }

    let mut lines = vec![
        "SUNION $sa $sb",
        "SUNION $sa $sb $sc $m1",
        "SUNION $ia $ib",
        "SUNION $ia $m0 $ib $ia",
        "SUNION $big $ia",
        "SUNION $m0 $m1",
        // SINTER walks its smallest input: the integer-only results here come from intsets,
        // which both sides walk in ascending order.
        "SINTER $sa $sb $sc",
        "SINTER $sa $sb $m2",
        "SINTER $m0 $sa",
        "SINTER $ia $ib",
        "SINTER $ib $big",
        "SINTER $sa $sa $sb",
        "SDIFF $sa $sb $sc",
        "SDIFF $ia $ib",
        "SDIFF $big $ia $ib",
        "SDIFF $m0 $sa",
        "SDIFF $sa $m1",
        "SDIFF $sa $sa $sc",
        "SDIFF $sa $sb $sa",
        "SINTERCARD 2 $sa $sb",
        "SINTERCARD 3 $sa $sb $sc",
        "SINTERCARD 2 $sa $sb LIMIT 1",
        "SINTERCARD 2 $sa $sb limit 0",
        "SINTERCARD 2 $sa $sb LIMIT 100",
        "SINTERCARD 2 $sa $sb LIMIT 5 LIMIT 1",
        "SINTERCARD 2 $ib $big",
        "SINTERCARD 2 $sa $m1",
        "SINTERCARD 2 $sa $sb LIMIT -1",
        "SINTERCARD 2 $sa $sb LIMIT x",
        "SINTERCARD 2 $sa $sb LIMIT",
        "SINTERCARD 2 $sa $sb foo",
        "SINTERCARD 2 $sa $l LIMIT x",
        "SINTERCARD 0 $sa $sb",
        "SINTERCARD 3 $sa $sb",
        "SINTERCARD x $sa $sb",
    ];
    // A key of the wrong type in each position, with and without missing keys around it.
    let wrong = [
        "$l $sa $sb",
        "$sa $st $sb",
        "$sa $sb $zz",
        "$m0 $l",
        "$sa $m1 $zz",
        "$m0 $m1 $st",
    ];
    let mut wrongtype = Vec::new();
    for name in ["SUNION", "SINTER", "SDIFF"] {
        for keys in wrong {
            wrongtype.push(format!("{name} {keys}"));
        }
    }
    for keys in wrong {
        let n = keys.split(' ').count();
        wrongtype.push(format!("SINTERCARD {n} {keys}"));
        wrongtype.push(format!("SINTERCARD {n} {keys} LIMIT 1"));
    }
    lines.extend(wrongtype.iter().map(String::as_str));
    let commands: Vec<Vec<Vec<u8>>> = lines.iter().map(|l| command(l, &keys)).collect();
    assert_span_slots(&cluster, &keys, &commands);
    compare_in_both_protocols(&proxy, &standalone, &commands).await;

    // The writing forms stay single-slot: refused, and nothing is written.
    let dest = at.on(1, "dest");
    for line in [
        "SUNIONSTORE $sa $sb $sc",
        "SINTERSTORE $sa $sb $sc",
        "SDIFFSTORE $sa $sb $sc",
        "SMOVE $sa $sb a",
    ] {
        let mut args = command(line, &keys);
        if !line.starts_with("SMOVE") {
            args[1] = dest.clone().into_bytes();
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        assert_eq!(
            show(&via_proxy.request(&args).await),
            show(CROSSSLOT),
            "{line}"
        );
    }
    let members = [b"SMEMBERS".as_slice(), keys[0].1.as_bytes()];
    assert_eq!(
        show(&via_proxy.request(&[b"EXISTS", dest.as_bytes()]).await),
        ":0\\r\\n"
    );
    let (got, want) = tokio::join!(via_proxy.request(&members), direct.request(&members));
    assert_same_set(&got, &want, "SMOVE changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_set_commands_across_slots_reply_like_one_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let at = Keys { cluster: &cluster };
    let keys: Vec<(&str, String)> = vec![
        ("za", at.on(0, "za")),
        ("zb", at.on(1, "zb")),
        ("zc", at.on(2, "zc")),
        ("zd", at.on(0, "zd")),
        ("ze", at.on(1, "ze")),
        ("zf", at.on(2, "zf")),
        ("zg", at.on(2, "zg")),
        ("zh", at.on(0, "zh")),
        ("sa", at.on(2, "sa")),
        ("l", at.on(0, "l")),
        ("st", at.on(1, "st")),
        ("m0", at.on(0, "m0")),
        ("m1", at.on(1, "m1")),
    ];
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    for line in [
        "ZADD $za 1 a 2 b 3 c",
        "ZADD $zb 0.1 b 5 d +inf e",
        "ZADD $zc -inf a 2.5 c 0.3 f 0.3 m",
        "ZADD $zd 0.1 m",
        "ZADD $ze 0.2 m 1 x",
        "ZADD $zf 0.30000000000000004 m 1e-5 a 1e17 b 123456789.123 c -0 d",
        "ZADD $zg 0.2 m",
        "ZADD $zh 0.3 m",
        "SADD $sa a d e",
        "RPUSH $l a",
        "SET $st a",
    ] {
        let args = command(line, &keys);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        both(&mut via_proxy, &mut direct, &args).await;
    }
    let mut lines = vec![
        "ZUNION 2 $za $zb",
        "ZUNION 2 $za $zb WITHSCORES",
        "ZUNION 3 $za $zb $zc withscores",
        "ZUNION 3 $za $zb $sa WITHSCORES",
        // Floating-point sums depend on their order: redis adds the smallest input first,
        // and keeps the client's order among inputs of one size.
        "ZUNION 3 $zc $ze $zd WITHSCORES",
        "ZUNION 3 $zh $zg $zd WITHSCORES",
        "ZUNION 3 $zd $zg $zh WITHSCORES",
        "ZUNION 3 $ze $zd $zc WITHSCORES",
        "ZUNION 3 $zd $ze $zf WITHSCORES",
        "ZUNION 2 $zf $za WITHSCORES",
        "ZUNION 2 $za $zb WEIGHTS 2 0.5 WITHSCORES",
        "ZUNION 2 $za $zb WEIGHTS inf -inf WITHSCORES",
        "ZUNION 2 $zb $zc WEIGHTS 1 1 WITHSCORES",
        "ZUNION 2 $za $zb WEIGHTS 0 -1 AGGREGATE MIN WITHSCORES",
        "ZUNION 2 $za $zc AGGREGATE max WITHSCORES",
        "ZUNION 2 $za $zc AGGREGATE MIN WeightS 1e308 1e308 WITHSCORES",
        "ZUNION 2 $za $zb WEIGHTS 1 2 WEIGHTS 3 4 AGGREGATE MIN AGGREGATE SUM WITHSCORES",
        "ZUNION 2 $za $zb WITHSCORES WITHSCORES",
        "ZUNION 2 $za $zb WEIGHTS 0x10 1.5e0 WITHSCORES",
        "ZUNION 2 $m0 $m1 WITHSCORES",
        "ZUNION 2 $za $m1",
        "ZINTER 2 $za $zc WITHSCORES",
        "ZINTER 3 $zc $ze $zd WITHSCORES",
        "ZINTER 3 $zh $zg $zd WITHSCORES",
        "ZINTER 3 $zd $zg $zh WITHSCORES",
        "ZINTER 2 $za $sa WITHSCORES",
        "ZINTER 2 $sa $zb WEIGHTS 2 3 WITHSCORES",
        "ZINTER 2 $zb $zc WEIGHTS 1 0 AGGREGATE MIN WITHSCORES",
        "ZINTER 2 $zc $zb WEIGHTS 0 1 AGGREGATE MAX WITHSCORES",
        "ZINTER 2 $zb $zc WEIGHTS 0 1 AGGREGATE SUM WITHSCORES",
        "ZINTER 2 $za $m1 WITHSCORES",
        "ZINTER 2 $za $zb",
        "ZDIFF 2 $za $zb WITHSCORES",
        "ZDIFF 3 $za $sa $zc",
        "ZDIFF 2 $sa $za WITHSCORES",
        "ZDIFF 2 $m0 $za",
        "ZDIFF 2 $za $m1 WITHSCORES",
        "ZDIFF 3 $za $za $zb WITHSCORES",
        "ZINTERCARD 2 $za $zc",
        "ZINTERCARD 3 $zc $zd $ze",
        "ZINTERCARD 2 $za $zc LIMIT 1",
        "ZINTERCARD 2 $za $zc LIMIT 0",
        "ZINTERCARD 2 $za $sa",
        "ZINTERCARD 2 $za $m1",
        // Argument errors, before and after the keys' types are checked.
        "ZUNION 2 $za $zb WEIGHTS 1",
        "ZUNION 2 $za $zb WEIGHTS x 1",
        "ZUNION 2 $za $zb WEIGHTS nan 1",
        "ZUNION 2 $za $zb WEIGHTS 1e400 1",
        "ZUNION 2 $za $zb AGGREGATE avg",
        "ZUNION 2 $za $zb AGGREGATE",
        "ZUNION 2 $za $zb foo",
        "ZUNION 0 $za $zb",
        "ZUNION -1 $za $zb",
        "ZUNION x $za $zb",
        "ZUNION 3 $za $zb",
        "ZINTER 2 $za $zb LIMIT 1",
        "ZDIFF 2 $za $zb WEIGHTS 1 1",
        "ZDIFF 2 $za $zb AGGREGATE SUM",
        "ZINTERCARD 2 $za $zb WITHSCORES",
        "ZINTERCARD 2 $za $zb LIMIT -1",
        "ZINTERCARD 2 $za $zb LIMIT x",
        "ZINTERCARD 2 $za $zb WEIGHTS 1 1",
        "ZINTERCARD 0 $za $zb",
    ];
    // A key of the wrong type in each position: redis checks types before the options.
    let mut wrongtype = Vec::new();
    for name in ["ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD"] {
        for keys in ["$l $za", "$za $st", "$m0 $za $l", "$za $m1 $st", "$sa $l"] {
            let n = keys.split(' ').count();
            wrongtype.push(format!("{name} {n} {keys}"));
            wrongtype.push(format!("{name} {n} {keys} WEIGHTS x"));
            if name == "ZINTERCARD" {
                wrongtype.push(format!("{name} {n} {keys} LIMIT x"));
            }
        }
    }
    lines.extend(wrongtype.iter().map(String::as_str));
    let commands: Vec<Vec<Vec<u8>>> = lines.iter().map(|l| command(l, &keys)).collect();
    assert_span_slots(&cluster, &keys, &commands);
    compare_in_both_protocols(&proxy, &standalone, &commands).await;

    let dest = at.on(1, "dest");
    for line in [
        "ZUNIONSTORE $m1 2 $za $zb",
        "ZINTERSTORE $m1 2 $za $zb",
        "ZDIFFSTORE $m1 2 $za $zb",
        "ZRANGESTORE $m1 $za 0 -1",
    ] {
        let mut args = command(line, &keys);
        args[1] = dest.clone().into_bytes();
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        assert_eq!(
            show(&via_proxy.request(&args).await),
            show(CROSSSLOT),
            "{line}"
        );
    }
    assert_eq!(
        show(&via_proxy.request(&[b"EXISTS", dest.as_bytes()]).await),
        ":0\\r\\n"
    );
}

/// xorshift64*: the same seed gives the same HyperLogLogs.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

/// The encoding byte of a HyperLogLog's header (0 dense, 1 sparse), read from redis-server.
async fn hll_encoding(direct: &mut RawClient, key: &str) -> Option<u8> {
    let value = direct.request(&[b"GET", key.as_bytes()]).await;
    let start = value.windows(2).position(|w| w == b"\r\n")? + 2;
    value.get(start + 4).copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pfcount_across_slots_counts_the_union_like_one_redis_server() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let at = Keys { cluster: &cluster };
    let names: Vec<String> = (0..5).map(|i| at.on(i, &format!("h{i}"))).collect();
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let mut rng = Rng(0x05EE_D0F4_C0DE);
    let (mut sparse, mut dense, mut compared) = (0, 0, 0);
    for _ in 0..16 {
        for name in &names {
            both(&mut via_proxy, &mut direct, &[b"DEL", name.as_bytes()]).await;
            // Missing, a few elements, sparse with many registers, or dense (sparse turns
            // dense past hll-sparse-max-bytes, 3000).
            let count = match rng.below(4) {
                0 => 0,
                1 => 1 + rng.below(30),
                2 => 100 + rng.below(1200),
                _ => 3000 + rng.below(9000),
            };
            // Overlapping ranges, so the union is smaller than the sum.
            let first = rng.below(20_000);
            let elements: Vec<String> = (first..first + count).map(|n| format!("e{n}")).collect();
            for chunk in elements.chunks(1000) {
                let mut args: Vec<&[u8]> = vec![b"PFADD", name.as_bytes()];
                args.extend(chunk.iter().map(|e| e.as_bytes()));
                both(&mut via_proxy, &mut direct, &args).await;
            }
            match hll_encoding(&mut direct, name).await {
                Some(0) => dense += 1,
                Some(1) => sparse += 1,
                _ => {}
            }
        }
        for n in 2..=5 {
            let mut args: Vec<&[u8]> = vec![b"PFCOUNT"];
            for _ in 0..n {
                args.push(names[rng.below(5) as usize].as_bytes());
            }
            let (got, want) = tokio::join!(via_proxy.request(&args), direct.request(&args));
            assert_eq!(show(&got), show(&want), "{}", show_args(&args));
            compared += 1;
        }
        // Every key at once, spanning all three primaries.
        let mut args: Vec<&[u8]> = vec![b"PFCOUNT"];
        args.extend(names.iter().map(|n| n.as_bytes()));
        let (got, want) = tokio::join!(via_proxy.request(&args), direct.request(&args));
        assert_eq!(show(&got), show(&want), "{}", show_args(&args));
    }
    assert!(sparse > 5 && dense > 5, "{sparse} sparse, {dense} dense");
    assert!(compared >= 64);

    // Keys that are not HyperLogLogs, in each position.
    let keys: Vec<(&str, String)> = vec![
        ("h0", names[0].clone()),
        ("h1", names[1].clone()),
        ("l", at.on(2, "l")),
        ("st", at.on(0, "st")),
        ("num", at.on(1, "num")),
        ("corrupt", at.on(2, "corrupt")),
        ("raw", at.on(0, "raw")),
        ("short", at.on(1, "short")),
        ("truncated", at.on(2, "truncated")),
        ("uncovered", at.on(0, "uncovered")),
        ("m", at.on(2, "m")),
    ];
    let header = |encoding: u8| {
        let mut value = b"HYLL".to_vec();
        value.extend_from_slice(&[encoding, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        value
    };
    // Sparse encodings: a run past the last register; an XZERO cut after its first byte
    // (valid: redis reads the NUL after the string); runs that end before the last register.
    let sparse = |ops: &[u8]| [header(1), ops.to_vec()].concat();
    let overrun = sparse(&[0x7f, 0xfe, 0x81]);
    for (key, value) in [
        ("st", b"hello".to_vec()),
        ("num", b"123".to_vec()),
        ("corrupt", overrun),
        ("raw", header(2)),
        ("short", header(0)),
        ("truncated", sparse(&[0x7f, 0xfe, 0x40])),
        ("uncovered", sparse(&[0x7f, 0xf0, 0x84])),
    ] {
        let key = &keys.iter().find(|(n, _)| *n == key).unwrap().1;
        both(
            &mut via_proxy,
            &mut direct,
            &[b"SET", key.as_bytes(), &value],
        )
        .await;
    }
    both(
        &mut via_proxy,
        &mut direct,
        &command("RPUSH $l a", &keys)
            .iter()
            .map(Vec::as_slice)
            .collect::<Vec<_>>(),
    )
    .await;
    let mut lines = Vec::new();
    for bad in [
        "l",
        "st",
        "num",
        "corrupt",
        "raw",
        "short",
        "truncated",
        "uncovered",
    ] {
        for position in [
            format!("$h0 ${bad}"),
            format!("${bad} $h1"),
            format!("$m $h0 ${bad} $h1"),
            format!("${bad} $l"),
            format!("${bad} $corrupt"),
        ] {
            if position.split(' ').collect::<BTreeSet<_>>().len() < 2 {
                continue;
            }
            lines.push(format!("PFCOUNT {position}"));
        }
    }
    lines.push("PFCOUNT $m $h1".to_string());
    lines.push("PFCOUNT $h0 $h0 $h1 $m".to_string());
    let commands: Vec<Vec<Vec<u8>>> = lines.iter().map(|l| command(l, &keys)).collect();
    assert_span_slots(&cluster, &keys, &commands);
    compare_in_both_protocols(&proxy, &standalone, &commands).await;

    // PFMERGE writes: it stays single-slot.
    let args = command("PFMERGE $m $h0 $h1", &keys);
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    assert_eq!(show(&via_proxy.request(&args).await), show(CROSSSLOT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_is_forwarded_and_reads_across_slots_follow_the_read_policy() {
    let cluster = TestCluster::start(3, 1);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let replica_reads =
        TestProxy::start_with(&cluster, |c| c.read_policy = ReadPolicy::Replica).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;

    // All keys in one slot: the node computes it, nothing is read key by key.
    both(&mut via_proxy, &mut direct, &[b"SADD", b"{t}a", b"x", b"y"]).await;
    both(&mut via_proxy, &mut direct, &[b"SADD", b"{t}b", b"y", b"z"]).await;
    let owner = cluster.owner_of(cluster.keyslot(b"{t}a"));
    let calls = |command: &str| -> u64 {
        cluster
            .nodes()
            .iter()
            .map(|n| cluster.command_calls(n, command))
            .sum()
    };
    let (sunion_before, smembers_before) =
        (cluster.command_calls(owner, "sunion"), calls("smembers"));
    let args: [&[u8]; 3] = [b"SUNION", b"{t}a", b"{t}b"];
    let (got, want) = tokio::join!(via_proxy.request(&args), direct.request(&args));
    assert_same_set(&got, &want, "SUNION {t}a {t}b");
    assert_eq!(cluster.command_calls(owner, "sunion"), sunion_before + 1);
    assert_eq!(calls("smembers"), smembers_before);

    // Across slots with read_policy replica: each key is read from a replica.
    let primaries = cluster.primaries();
    let mut keys = Vec::new();
    for (i, primary) in primaries.iter().enumerate() {
        let key = cluster.key_for_node(primary, "rp");
        let member = format!("m{i}");
        both(
            &mut via_proxy,
            &mut direct,
            &[b"SADD", key.as_bytes(), b"shared", member.as_bytes()],
        )
        .await;
        let replica = cluster.replica_of(primary);
        wait_until(Duration::from_secs(5), "the replica has the set", || {
            let mut conn = cluster.conn(replica);
            let _: () = redis::cmd("READONLY").query(&mut conn).unwrap();
            redis::cmd("SCARD")
                .arg(&key)
                .query::<i64>(&mut conn)
                .unwrap()
                == 2
        });
        keys.push(key);
    }
    let before: Vec<(u64, u64)> = primaries
        .iter()
        .map(|p| {
            (
                cluster.command_calls(p, "smembers"),
                cluster.command_calls(cluster.replica_of(p), "smembers"),
            )
        })
        .collect();
    let mut via_replicas = replica_reads.raw_client().await;
    let mut args: Vec<&[u8]> = vec![b"SUNION"];
    args.extend(keys.iter().map(|k| k.as_bytes()));
    let (got, want) = tokio::join!(via_replicas.request(&args), direct.request(&args));
    assert_same_set(&got, &want, "SUNION across slots, from replicas");
    for (primary, (primary_before, replica_before)) in primaries.iter().zip(before) {
        assert_eq!(cluster.command_calls(primary, "smembers"), primary_before);
        assert_eq!(
            cluster.command_calls(cluster.replica_of(primary), "smembers"),
            replica_before + 1
        );
    }
}
