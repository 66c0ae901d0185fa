//! The seeded command generator: keys, values and steps (single commands, pipelines,
//! transactions); each data type's commands are in a submodule.

mod collections;
mod geo_streams;
mod keyspace;
mod sorted_sets;
mod strings;

use super::command::Cmd;
use super::{PLAIN_KEYS, RESP3_SALT, TAGGED_KEYS};

/// xorshift64* with a fixed seed: the same seed gives the same commands.
struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        // xorshift never leaves 0.
        Rng(if seed == 0 { RESP3_SALT } else { seed })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() >> 33) as usize % n
    }

    /// True with `percent`% probability.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Uniform in `lo..=hi`, as text.
    fn int(&mut self, lo: i64, hi: i64) -> String {
        let span = usize::try_from(hi - lo + 1).unwrap();
        (lo + i64::try_from(self.below(span)).unwrap()).to_string()
    }
}

/// Commands sent one by one, or all in one write (a pipeline) before reading the replies.
pub(super) struct Step {
    pub(super) cmds: Vec<Cmd>,
    pub(super) pipelined: bool,
}

/// Families a key prefers: most commands of a family pick one of its keys.
#[derive(Debug, Clone, Copy)]
enum Group {
    Str,
    Bits,
    Hll,
    Hash,
    List,
    Set,
    ZSet,
    Stream,
}
const GROUPS: usize = 8;

const VALUES: &[&[u8]] = &[
    b"",
    b"a",
    b"bc",
    b"hello",
    b"x y",
    b"0",
    b"1",
    b"-2",
    b"10",
    b"3.5",
    b"9223372036854775807",
    b"\x00\xff\r\n",
    "\u{e9}t\u{e9}".as_bytes(),
];
const MEMBERS: &[&str] = &["a", "b", "c", "d", "e", "1", "2", "10", "-3", "x y"];
const FIELDS: &[&str] = &["f1", "f2", "f3", "a", "1", "x y"];
const SCORES: &[&str] = &["0", "1", "2", "2.5", "-1", "10", "1e3", "+inf", "-inf"];
const RANGE_SCORES: &[&str] = &["-inf", "+inf", "0", "1", "(1", "2.5", "(2.5", "10", "-1"];
const RANGE_LEX: &[&str] = &["-", "+", "[a", "(a", "[c", "(d", "[1", "[x y", "bad"];
/// Relative expiries, seconds: none fires during the test; `0`/`-1` delete at once.
const REL_SECS: &[&str] = &["1000", "5000", "86400", "0", "-1", "9223372036854775807"];
const REL_MILLIS: &[&str] = &["1000000", "86400000", "0", "-5"];
/// Absolute expiries: far in the future (2100 and later), or long past (delete at once).
const ABS_SECS: &[&str] = &["4102444800", "4102444900", "4200000000", "1"];
const ABS_MILLIS: &[&str] = &["4102444800000", "4102444850000", "4200000000001", "1"];
const COORDS: &[(&str, &str)] = &[
    ("13.361389", "38.115556"),
    ("15.087269", "37.502669"),
    ("2.3522", "48.8566"),
    ("-0.1276", "51.5072"),
    ("12.4964", "41.9028"),
    ("0", "0"),
    ("13.4", "38.1"),
    ("200", "100"),
];
const UNITS: &[&str] = &["m", "km", "mi", "ft"];
/// Scripts for EVAL and EVALSHA, with their number of keys.
pub(super) const SCRIPTS: &[(&str, usize)] = &[
    ("return redis.call('GET', KEYS[1])", 1),
    ("return redis.call('INCR', KEYS[1])", 1),
    ("return redis.call('LRANGE', KEYS[1], 0, -1)", 1),
    ("return redis.call('TYPE', KEYS[1])", 1),
    ("return {KEYS[1], ARGV[1], 3, false, {1, 'x'}}", 1),
    (
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('STRLEN', KEYS[1])",
        1,
    ),
    ("return redis.call('HGETALL', KEYS[1])", 1),
    (
        "return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')",
        1,
    ),
    ("return redis.call('MGET', KEYS[1], KEYS[2])", 2),
    (
        "return redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')",
        2,
    ),
    ("return redis.status_reply('FINE')", 0),
    ("return redis.error_reply('MYERR boom')", 0),
    ("return 1.5", 0),
    ("return this is not lua", 0),
    ("return redis.call('NOSUCH')", 0),
];
/// A SHA1 no script has.
const UNKNOWN_SHA: &str = "0123456789abcdef0123456789abcdef01234567";
/// 10 ms: a blocking command either finds data or times out with nil.
const BLOCK_SECS: &str = "0.01";
const BLOCK_MILLIS: &str = "10";

pub(super) struct Gen {
    rng: Rng,
    /// Generating inside a transaction: `{t}` keys only.
    tx: bool,
    /// Stream ids' milliseconds part: grows slowly, so most XADDs succeed.
    stream_ms: u64,
    /// SHA1 of each of [`SCRIPTS`] (`None`: it does not compile), from `SCRIPT LOAD`.
    shas: Vec<Option<String>>,
}

impl Gen {
    pub(super) fn new(seed: u64, shas: Vec<Option<String>>) -> Gen {
        Gen {
            rng: Rng::new(seed),
            tx: false,
            stream_ms: 1,
            shas,
        }
    }

    // --- keys and values -----------------------------------------------------------------

    /// A key, usually one `group` prefers; a `{t}` key 30% of the time (always inside MULTI).
    fn key(&mut self, group: Group) -> usize {
        let tagged = self.tx || self.rng.chance(30);
        self.pick_key(group, tagged)
    }

    fn pick_key(&mut self, group: Group, tagged: bool) -> usize {
        let preferred = self.rng.chance(80);
        let g = group as usize;
        match (tagged, preferred) {
            (true, true) => {
                PLAIN_KEYS + g * (TAGGED_KEYS / GROUPS) + self.rng.below(TAGGED_KEYS / GROUPS)
            }
            (true, false) => PLAIN_KEYS + self.rng.below(TAGGED_KEYS),
            (false, true) => g + GROUPS * self.rng.below(PLAIN_KEYS / GROUPS),
            (false, false) => self.rng.below(PLAIN_KEYS),
        }
    }

    /// `n` keys for a multi-key command: 70% all `{t}` (one slot), else anywhere.
    fn keys(&mut self, group: Group, n: usize) -> Vec<usize> {
        self.keys_in_one_slot(group, n, 70)
    }

    /// Keys for a command the proxy splits by slot: across slots more often than not.
    fn split_keys(&mut self, group: Group, n: usize) -> Vec<usize> {
        self.keys_in_one_slot(group, n, 30)
    }

    /// `n` keys, all `{t}` keys `percent`% of the time (always inside MULTI), else anywhere.
    fn keys_in_one_slot(&mut self, group: Group, n: usize, percent: usize) -> Vec<usize> {
        let same_slot = self.tx || self.rng.chance(percent);
        (0..n)
            .map(|_| {
                if same_slot {
                    self.pick_key(group, true)
                } else {
                    self.key(group)
                }
            })
            .collect()
    }

    fn value(&mut self) -> &'static [u8] {
        self.rng.pick(VALUES)
    }

    fn member(&mut self) -> &'static str {
        self.rng.pick(MEMBERS)
    }

    fn members(&mut self, max: usize) -> Vec<&'static str> {
        let n = 1 + self.rng.below(max);
        (0..n).map(|_| self.member()).collect()
    }

    fn field(&mut self) -> &'static str {
        self.rng.pick(FIELDS)
    }

    /// A ZADD score: now and then not a valid one.
    fn score(&mut self) -> &'static str {
        if self.rng.chance(8) {
            self.rng.pick(&["(1", "nan", "abc", ""])
        } else {
            self.rng.pick(SCORES)
        }
    }

    fn count(&mut self, max: i64) -> String {
        self.rng.int(0, max)
    }

    fn index(&mut self) -> String {
        self.rng.int(-4, 6)
    }

    // --- steps ---------------------------------------------------------------------------

    /// One step: a command, a pipeline of commands, a transaction, or (rarely) a flush.
    pub(super) fn step(&mut self) -> Step {
        let (cmds, pipelined) = match self.rng.below(1000) {
            0..=1 => (vec![self.flush()], false),
            2..=31 => (self.transaction(), self.rng.chance(30)),
            32..=81 => {
                let n = 2 + self.rng.below(7);
                ((0..n).map(|_| self.command()).collect(), true)
            }
            _ => (vec![self.command()], false),
        };
        Step { cmds, pipelined }
    }

    fn command(&mut self) -> Cmd {
        match self.rng.below(100) {
            0..=13 => self.string(),
            14..=18 => self.bitmap(),
            19..=22 => self.hll(),
            23..=31 => self.hash(),
            32..=42 => self.list(),
            43..=51 => self.set(),
            52..=62 => self.zset(),
            63..=67 => self.geo(),
            68..=75 => self.stream(),
            76..=88 => self.generic(),
            89..=91 => self.script(),
            92..=93 => self.blocking(),
            _ => self.misc(),
        }
    }

    fn flush(&mut self) -> Cmd {
        let mut c = Cmd::new(self.rng.pick(&["FLUSHALL", "FLUSHDB"])).keyspace_wide();
        if self.rng.chance(50) {
            c = c.arg(self.rng.pick(&["SYNC", "ASYNC"]));
        }
        c
    }

    /// `[WATCH {t}.. [cmd]] MULTI cmd.. EXEC|DISCARD`, all on `{t}` keys.
    fn transaction(&mut self) -> Vec<Cmd> {
        self.tx = true;
        let mut out = Vec::new();
        if self.rng.chance(30) {
            let n = 1 + self.rng.below(2);
            let keys: Vec<usize> = (0..n).map(|_| self.key(Group::Str)).collect();
            out.push(Cmd::new("WATCH").keys(&keys).fixed());
            if self.rng.chance(50) {
                out.push(self.tx_command());
            }
        }
        out.push(Cmd::new("MULTI").fixed());
        for _ in 0..1 + self.rng.below(4) {
            out.push(self.tx_command());
        }
        let end = if self.rng.chance(10) {
            "DISCARD"
        } else {
            "EXEC"
        };
        out.push(Cmd::new(end).fixed());
        self.tx = false;
        out
    }

    fn tx_command(&mut self) -> Cmd {
        loop {
            let c = self.command();
            if c.in_tx {
                return c;
            }
        }
    }

    /// Changes a command now and then: mixed-case name, last argument dropped or repeated.
    pub(super) fn mutate(&mut self, cmd: &mut Cmd) {
        if !cmd.mutable {
            return;
        }
        if self.rng.chance(5) {
            let name = &mut cmd.args[0];
            for byte in name.iter_mut() {
                if self.rng.chance(50) {
                    *byte = byte.to_ascii_lowercase();
                }
            }
        }
        if cmd.args.len() > 1 && self.rng.chance(3) {
            if self.rng.chance(50) || cmd.keys_before_last {
                cmd.args.pop();
            } else {
                let last = cmd.args.last().unwrap().clone();
                cmd.args.push(last);
            }
        }
    }

    // --- expiry options ----------------------------------------------------------------------

    /// SET's expiry option.
    fn set_expiry(&mut self, c: Cmd) -> Cmd {
        match self.rng.below(12) {
            0 | 1 => c
                .arg("EX")
                .arg(self.rng.pick(&["1000", "86400", "86400", "0", "-5", "abc"])),
            2 | 3 => c
                .arg("PX")
                .arg(self.rng.pick(&["1000000", "86400000", "0"])),
            // Future only: redis-server 7.0 stores a SET with a past deadline, and DBSIZE counts
            // it until the active expire cycle (random timing) drops it.
            4 | 5 => c.arg("EXAT").arg(self.rng.pick(&ABS_SECS[..3])),
            6 | 7 => c.arg("PXAT").arg(self.rng.pick(&ABS_MILLIS[..3])),
            8..=10 => c.arg("KEEPTTL"),
            _ => c.arg("KEEPTTL").arg("EX").arg("1000"),
        }
    }

    fn getex_expiry(&mut self, c: Cmd) -> Cmd {
        match self.rng.below(6) {
            0 => c.arg("EX").arg(self.rng.pick(&["1000", "86400", "0"])),
            1 => c.arg("PX").arg(self.rng.pick(&["1000000", "-1"])),
            2 => c.arg("EXAT").arg(self.rng.pick(ABS_SECS)),
            3 => c.arg("PXAT").arg(self.rng.pick(ABS_MILLIS)),
            4 => c.arg("PERSIST"),
            _ => c,
        }
    }
}
