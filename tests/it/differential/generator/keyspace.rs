//! Generated commands: key-space commands, scripts, blocking commands and the rest.

use super::*;

impl Gen {
    /// A key from any family.
    pub(super) fn any_key(&mut self) -> usize {
        let group = self.rng.below(GROUPS);
        let group = [
            Group::Str,
            Group::Bits,
            Group::Hll,
            Group::Hash,
            Group::List,
            Group::Set,
            Group::ZSet,
            Group::Stream,
        ][group];
        self.key(group)
    }

    pub(super) fn any_keys(&mut self, n: usize) -> Vec<usize> {
        let same_slot = self.tx || self.rng.chance(50);
        (0..n)
            .map(|_| {
                if same_slot {
                    PLAIN_KEYS + self.rng.below(TAGGED_KEYS)
                } else {
                    self.any_key()
                }
            })
            .collect()
    }

    pub(super) fn generic(&mut self) -> Cmd {
        match self.rng.below(20) {
            0 | 1 => {
                let n = 1 + self.rng.below(4);
                let keys = self.any_keys(n);
                Cmd::new(self.rng.pick(&["DEL", "UNLINK"]))
                    .keys(&keys)
                    .split()
            }
            2 | 3 => {
                let n = 1 + self.rng.below(5);
                let keys = self.any_keys(n);
                Cmd::new(self.rng.pick(&["EXISTS", "TOUCH"]))
                    .keys(&keys)
                    .split()
            }
            4 | 5 => Cmd::new("TYPE").key(self.any_key()),
            6 => {
                let c = Cmd::new("EXPIRE")
                    .key(self.any_key())
                    .arg(self.rng.pick(REL_SECS));
                if self.rng.chance(30) {
                    c.arg(self.rng.pick(&["NX", "XX"]))
                } else {
                    c
                }
            }
            7 => {
                let c = Cmd::new("PEXPIRE")
                    .key(self.any_key())
                    .arg(self.rng.pick(REL_MILLIS));
                if self.rng.chance(30) {
                    c.arg(self.rng.pick(&["NX", "XX"]))
                } else {
                    c
                }
            }
            8 => {
                let (name, values) = if self.rng.chance(50) {
                    ("EXPIREAT", ABS_SECS)
                } else {
                    ("PEXPIREAT", ABS_MILLIS)
                };
                let c = Cmd::new(name)
                    .key(self.any_key())
                    .arg(self.rng.pick(values));
                if self.rng.chance(40) {
                    c.arg(self.rng.pick(&["NX", "XX", "GT", "LT"]))
                } else {
                    c
                }
            }
            9 => Cmd::new("PERSIST").key(self.any_key()),
            10 | 11 => Cmd::new(self.rng.pick(&["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"]))
                .key(self.any_key())
                .deadline(),
            12 | 13 => {
                let keys = self.any_keys(2);
                Cmd::new(self.rng.pick(&["RENAME", "RENAMENX"])).keys(&keys)
            }
            14 => {
                let keys = self.any_keys(2);
                let c = Cmd::new("COPY").keys(&keys);
                if self.rng.chance(40) {
                    c.arg("REPLACE")
                } else {
                    c
                }
            }
            15 | 16 => Cmd::new("OBJECT").arg("ENCODING").key(self.any_key()),
            17 => Cmd::new("DBSIZE").keyspace_wide(),
            _ => Cmd::new("KEYS")
                .arg(self.rng.pick(&["*", "k1*", "{t}*", "nope*", "k?"]))
                .unordered()
                .keyspace_wide(),
        }
    }

    pub(super) fn script(&mut self) -> Cmd {
        let index = self.rng.below(SCRIPTS.len());
        let (text, numkeys) = SCRIPTS[index];
        let keys = match numkeys {
            0 => Vec::new(),
            1 => vec![self.any_key()],
            _ => self.any_keys(numkeys),
        };
        let read_only = self.rng.chance(20);
        match (self.rng.below(10), &self.shas[index]) {
            (0..=4, _) | (5..=7, None) => Cmd::new(if read_only { "EVAL_RO" } else { "EVAL" })
                .arg(text)
                .numkeys(&keys)
                .arg(self.value()),
            (5..=7, Some(sha)) => Cmd::new(if read_only { "EVALSHA_RO" } else { "EVALSHA" })
                .arg(sha.clone())
                .numkeys(&keys)
                .arg(self.value()),
            (8, _) => Cmd::new("SCRIPT").arg("LOAD").arg(text).keyspace_wide(),
            _ => {
                let c = Cmd::new("SCRIPT").arg("EXISTS");
                let c = match &self.shas[index] {
                    Some(sha) => c.arg(sha.clone()),
                    None => c,
                };
                c.arg(UNKNOWN_SHA).keyspace_wide()
            }
        }
    }

    pub(super) fn blocking(&mut self) -> Cmd {
        match self.rng.below(6) {
            0 => {
                let n = 1 + self.rng.below(2);
                let keys = self.keys(Group::List, n);
                Cmd::new(self.rng.pick(&["BLPOP", "BRPOP"]))
                    .keys(&keys)
                    .arg(BLOCK_SECS)
                    .keys_before_last()
            }
            1 => {
                let keys = self.keys(Group::List, 2);
                Cmd::new("BLMOVE")
                    .keys(&keys)
                    .arg(self.rng.pick(&["LEFT", "RIGHT"]))
                    .arg(self.rng.pick(&["LEFT", "RIGHT"]))
                    .arg(BLOCK_SECS)
            }
            2 => {
                let n = 1 + self.rng.below(2);
                let keys = self.keys(Group::List, n);
                Cmd::new("BLMPOP")
                    .arg(BLOCK_SECS)
                    .numkeys(&keys)
                    .arg(self.rng.pick(&["LEFT", "RIGHT"]))
                    .arg("COUNT")
                    .arg("2")
            }
            3 | 4 => {
                let n = 1 + self.rng.below(2);
                let keys = self.keys(Group::ZSet, n);
                Cmd::new(self.rng.pick(&["BZPOPMIN", "BZPOPMAX"]))
                    .keys(&keys)
                    .arg(BLOCK_SECS)
                    .keys_before_last()
            }
            _ => Cmd::new("XREAD")
                .arg("BLOCK")
                .arg(BLOCK_MILLIS)
                .arg("STREAMS")
                .key(self.key(Group::Stream))
                .arg(self.rng.pick(&["0", "$"])),
        }
    }

    pub(super) fn misc(&mut self) -> Cmd {
        match self.rng.below(10) {
            0 => {
                let c = Cmd::new("PING");
                if self.rng.chance(50) {
                    c.arg(self.value())
                } else {
                    c
                }
            }
            1 => Cmd::new("ECHO").arg(self.value()),
            2 | 3 => {
                let mut c = Cmd::new(self.rng.pick(&["NOSUCHCMD", "getx", "HSETT", "Foo"]));
                for _ in 0..self.rng.below(3) {
                    c = c.arg(self.value());
                }
                c
            }
            4 => Cmd::new("OBJECT")
                .arg(self.rng.pick(&["NOPE", "encodings"]))
                .key(self.any_key()),
            5 => Cmd::new("OBJECT"),
            6 => Cmd::new("XGROUP")
                .arg(self.rng.pick(&["NOPE", "create"]))
                .key(self.key(Group::Stream)),
            // Wrong arity on purpose.
            _ => {
                let key = self.any_key();
                match self.rng.below(6) {
                    0 => Cmd::new("GET"),
                    1 => Cmd::new("SET").key(key),
                    2 => Cmd::new("HSET").key(key).arg("f"),
                    3 => Cmd::new("ZADD").key(key).arg("1"),
                    4 => Cmd::new("XADD").key(key).arg("1-1"),
                    _ => Cmd::new("GET").key(key).arg("extra"),
                }
            }
        }
    }
}
