//! Generated commands: hashes, lists (with SORT) and sets.

use super::*;

impl Gen {
    pub(super) fn hash(&mut self) -> Cmd {
        use Group::Hash as G;
        match self.rng.below(16) {
            0..=2 => {
                let name = self.rng.pick(&["HSET", "HSET", "HMSET"]);
                let mut c = Cmd::new(name).key(self.key(G));
                for _ in 0..1 + self.rng.below(3) {
                    c = c.arg(self.field()).arg(self.value());
                }
                c
            }
            3 => Cmd::new("HSETNX")
                .key(self.key(G))
                .arg(self.field())
                .arg(self.value()),
            4 | 5 => Cmd::new("HGET").key(self.key(G)).arg(self.field()),
            6 => {
                let mut c = Cmd::new("HMGET").key(self.key(G));
                for _ in 0..1 + self.rng.below(3) {
                    c = c.arg(self.field());
                }
                c
            }
            7 => {
                let mut c = Cmd::new("HDEL").key(self.key(G));
                for _ in 0..1 + self.rng.below(2) {
                    c = c.arg(self.field());
                }
                c
            }
            8 => Cmd::new("HGETALL").key(self.key(G)),
            9 => Cmd::new(self.rng.pick(&["HKEYS", "HVALS", "HLEN"])).key(self.key(G)),
            10 => Cmd::new(self.rng.pick(&["HEXISTS", "HSTRLEN"]))
                .key(self.key(G))
                .arg(self.field()),
            11 | 12 => {
                Cmd::new("HINCRBY")
                    .key(self.key(G))
                    .arg(self.field())
                    .arg(
                        self.rng
                            .pick(&["1", "-7", "100", "x", "9223372036854775807"]),
                    )
            }
            13 => Cmd::new("HINCRBYFLOAT")
                .key(self.key(G))
                .arg(self.field())
                .arg(self.rng.pick(&["0.5", "-2", "1e1", "y"])),
            _ => {
                let mut c = Cmd::new("HSCAN").key(self.key(G)).arg("0");
                if self.rng.chance(30) {
                    c = c.arg("MATCH").arg(self.rng.pick(&["f*", "*", "a"]));
                }
                c.arg("COUNT").arg("100")
            }
        }
    }

    pub(super) fn list(&mut self) -> Cmd {
        use Group::List as G;
        match self.rng.below(22) {
            0..=3 => {
                let name = self
                    .rng
                    .pick(&["LPUSH", "RPUSH", "LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]);
                let mut c = Cmd::new(name).key(self.key(G));
                for m in self.members(3) {
                    c = c.arg(m);
                }
                c
            }
            4 | 5 => {
                let c = Cmd::new(self.rng.pick(&["LPOP", "RPOP"])).key(self.key(G));
                if self.rng.chance(40) {
                    c.arg(self.rng.pick(&["0", "1", "2", "5", "-1"]))
                } else {
                    c
                }
            }
            6 | 7 => Cmd::new("LRANGE")
                .key(self.key(G))
                .arg(self.index())
                .arg(self.index()),
            8 => Cmd::new("LINDEX").key(self.key(G)).arg(self.index()),
            9 => Cmd::new("LSET")
                .key(self.key(G))
                .arg(self.index())
                .arg(self.member()),
            10 => Cmd::new("LLEN").key(self.key(G)),
            11 => Cmd::new("LREM")
                .key(self.key(G))
                .arg(self.rng.int(-2, 2))
                .arg(self.member()),
            12 => Cmd::new("LTRIM")
                .key(self.key(G))
                .arg(self.rng.int(0, 2))
                .arg(self.rng.int(-3, 8)),
            13 => Cmd::new("LINSERT")
                .key(self.key(G))
                .arg(self.rng.pick(&["BEFORE", "AFTER", "MIDDLE"]))
                .arg(self.member())
                .arg(self.member()),
            14 => {
                let mut c = Cmd::new("LPOS").key(self.key(G)).arg(self.member());
                if self.rng.chance(40) {
                    c = c.arg("RANK").arg(self.rng.pick(&["1", "-1", "2", "0"]));
                }
                if self.rng.chance(40) {
                    c = c.arg("COUNT").arg(self.count(3));
                }
                if self.rng.chance(20) {
                    c = c.arg("MAXLEN").arg(self.count(5));
                }
                c
            }
            15 | 16 => {
                let keys = self.keys(G, 2);
                Cmd::new("LMOVE")
                    .keys(&keys)
                    .arg(self.rng.pick(&["LEFT", "RIGHT"]))
                    .arg(self.rng.pick(&["LEFT", "RIGHT"]))
            }
            17 => {
                let keys = self.keys(G, 2);
                Cmd::new("RPOPLPUSH").keys(&keys)
            }
            18 => {
                let n = 1 + self.rng.below(3);
                let keys = self.keys(G, n);
                let c = Cmd::new("LMPOP")
                    .numkeys(&keys)
                    .arg(self.rng.pick(&["LEFT", "RIGHT"]));
                if self.rng.chance(50) {
                    c.arg("COUNT").arg(self.rng.pick(&["1", "3", "0"]))
                } else {
                    c
                }
            }
            19 => {
                let keys = self.keys(G, 2);
                self.sort(Cmd::new("SORT").key(keys[0]), Some(keys[1]))
            }
            20 => {
                let key = self.key(G);
                self.sort(Cmd::new("SORT_RO").key(key), None)
            }
            _ => Cmd::new("LTRIM").key(self.key(G)).arg("0").arg("4"),
        }
    }

    /// SORT/SORT_RO options (never BY/GET: refused by cluster nodes).
    pub(super) fn sort(&mut self, mut c: Cmd, store: Option<usize>) -> Cmd {
        if self.rng.chance(40) {
            c = c.arg("LIMIT").arg(self.count(2)).arg(self.rng.int(-1, 3));
        }
        if self.rng.chance(40) {
            c = c.arg(self.rng.pick(&["ASC", "DESC"]));
        }
        if self.rng.chance(50) {
            c = c.arg("ALPHA");
        }
        match store {
            Some(dest) if self.rng.chance(50) => c.arg("STORE").key(dest),
            _ => c,
        }
    }

    pub(super) fn set(&mut self) -> Cmd {
        use Group::Set as G;
        match self.rng.below(15) {
            0..=2 => {
                let mut c = Cmd::new("SADD").key(self.key(G));
                for m in self.members(4) {
                    c = c.arg(m);
                }
                c
            }
            3 => {
                let mut c = Cmd::new("SREM").key(self.key(G));
                for m in self.members(2) {
                    c = c.arg(m);
                }
                c
            }
            4 => Cmd::new("SMEMBERS").key(self.key(G)).unordered(),
            5 => Cmd::new("SISMEMBER").key(self.key(G)).arg(self.member()),
            6 => {
                let mut c = Cmd::new("SMISMEMBER").key(self.key(G));
                for m in self.members(3) {
                    c = c.arg(m);
                }
                c
            }
            7 => Cmd::new("SCARD").key(self.key(G)),
            8 | 9 => {
                let n = 1 + self.rng.below(3);
                let keys = self.split_keys(G, n);
                Cmd::new(self.rng.pick(&["SINTER", "SUNION", "SDIFF"]))
                    .keys(&keys)
                    .unordered()
                    .computed()
            }
            10 | 11 => {
                let n = 2 + self.rng.below(3);
                let keys = self.keys(G, n);
                Cmd::new(self.rng.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"])).keys(&keys)
            }
            12 => {
                let n = 1 + self.rng.below(3);
                let keys = self.split_keys(G, n);
                let c = Cmd::new("SINTERCARD").numkeys(&keys).computed();
                if self.rng.chance(40) {
                    c.arg("LIMIT").arg(self.count(3))
                } else {
                    c
                }
            }
            _ => {
                let keys = self.keys(G, 2);
                Cmd::new("SMOVE").keys(&keys).arg(self.member())
            }
        }
    }
}
