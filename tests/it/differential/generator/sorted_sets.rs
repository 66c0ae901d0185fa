//! Generated commands: sorted sets.

use super::*;

impl Gen {
    /// `ZRANGE`-style bounds and options.
    pub(super) fn zrange(&mut self, mut c: Cmd) -> Cmd {
        let by = self.rng.below(3);
        match by {
            0 => c = c.arg(self.index()).arg(self.index()),
            1 => {
                c = c
                    .arg(self.rng.pick(RANGE_SCORES))
                    .arg(self.rng.pick(RANGE_SCORES))
                    .arg("BYSCORE");
            }
            _ => {
                c = c
                    .arg(self.rng.pick(RANGE_LEX))
                    .arg(self.rng.pick(RANGE_LEX))
                    .arg("BYLEX");
            }
        }
        if self.rng.chance(30) {
            c = c.arg("REV");
        }
        if self.rng.chance(30) {
            c = c.arg("LIMIT").arg(self.count(2)).arg(self.rng.int(-1, 3));
        }
        if self.rng.chance(40) {
            c = c.arg("WITHSCORES");
        }
        c
    }

    /// ZUNION/ZINTER/ZDIFF options after the keys.
    pub(super) fn zcombine(&mut self, mut c: Cmd, keys: usize, diff: bool) -> Cmd {
        if !diff && self.rng.chance(30) {
            c = c.arg("WEIGHTS");
            for _ in 0..keys {
                c = c.arg(self.rng.pick(&["1", "2", "0.5", "-1"]));
            }
        }
        if !diff && self.rng.chance(30) {
            c = c
                .arg("AGGREGATE")
                .arg(self.rng.pick(&["SUM", "MIN", "MAX"]));
        }
        c
    }

    pub(super) fn zset(&mut self) -> Cmd {
        use Group::ZSet as G;
        match self.rng.below(26) {
            0..=3 => {
                let mut c = Cmd::new("ZADD").key(self.key(G));
                if self.rng.chance(20) {
                    c = c.arg(self.rng.pick(&["NX", "XX"]));
                }
                if self.rng.chance(20) {
                    c = c.arg(self.rng.pick(&["GT", "LT"]));
                }
                if self.rng.chance(20) {
                    c = c.arg("CH");
                }
                let incr = self.rng.chance(10);
                if incr {
                    c = c.arg("INCR");
                }
                let pairs = if incr { 1 } else { 1 + self.rng.below(3) };
                for _ in 0..pairs {
                    c = c.arg(self.score()).arg(self.member());
                }
                c
            }
            4 => Cmd::new("ZINCRBY")
                .key(self.key(G))
                .arg(self.rng.pick(&["1", "-2.5", "+inf", "x"]))
                .arg(self.member()),
            5 => Cmd::new("ZSCORE").key(self.key(G)).arg(self.member()),
            6 => {
                let mut c = Cmd::new("ZMSCORE").key(self.key(G));
                for m in self.members(3) {
                    c = c.arg(m);
                }
                c
            }
            7 | 8 => {
                let c = Cmd::new("ZRANGE").key(self.key(G));
                self.zrange(c)
            }
            9 => {
                let name = self.rng.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]);
                let mut c = Cmd::new(name)
                    .key(self.key(G))
                    .arg(self.rng.pick(RANGE_SCORES))
                    .arg(self.rng.pick(RANGE_SCORES));
                if self.rng.chance(40) {
                    c = c.arg("WITHSCORES");
                }
                if self.rng.chance(30) {
                    c = c.arg("LIMIT").arg(self.count(2)).arg(self.rng.int(-1, 3));
                }
                c
            }
            10 => {
                let c = Cmd::new(self.rng.pick(&["ZREVRANGE", "ZRANGE"]))
                    .key(self.key(G))
                    .arg(self.index())
                    .arg(self.index());
                if self.rng.chance(50) {
                    c.arg("WITHSCORES")
                } else {
                    c
                }
            }
            11 => Cmd::new(self.rng.pick(&["ZRANGEBYLEX", "ZLEXCOUNT"]))
                .key(self.key(G))
                .arg(self.rng.pick(RANGE_LEX))
                .arg(self.rng.pick(RANGE_LEX)),
            12 => Cmd::new(self.rng.pick(&["ZRANK", "ZREVRANK"]))
                .key(self.key(G))
                .arg(self.member()),
            13 => {
                let mut c = Cmd::new("ZREM").key(self.key(G));
                for m in self.members(2) {
                    c = c.arg(m);
                }
                c
            }
            14 => Cmd::new("ZCARD").key(self.key(G)),
            15 => Cmd::new("ZCOUNT")
                .key(self.key(G))
                .arg(self.rng.pick(RANGE_SCORES))
                .arg(self.rng.pick(RANGE_SCORES)),
            16 => {
                let c = Cmd::new(self.rng.pick(&["ZPOPMIN", "ZPOPMAX"])).key(self.key(G));
                if self.rng.chance(50) {
                    c.arg(self.rng.pick(&["1", "2", "0", "-1"]))
                } else {
                    c
                }
            }
            17 => {
                let n = 1 + self.rng.below(2);
                let keys = self.keys(G, n);
                let c = Cmd::new("ZMPOP")
                    .numkeys(&keys)
                    .arg(self.rng.pick(&["MIN", "MAX"]));
                if self.rng.chance(50) {
                    c.arg("COUNT").arg(self.rng.pick(&["1", "2"]))
                } else {
                    c
                }
            }
            18 | 19 => {
                let name = self.rng.pick(&["ZUNION", "ZINTER", "ZDIFF"]);
                let n = 1 + self.rng.below(3);
                let keys = self.split_keys(G, n);
                let c = Cmd::new(name).numkeys(&keys).computed();
                let c = self.zcombine(c, n, name == "ZDIFF");
                if self.rng.chance(50) {
                    c.arg("WITHSCORES")
                } else {
                    c
                }
            }
            20 => {
                let name = self.rng.pick(&["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]);
                let n = 1 + self.rng.below(3);
                let keys = self.keys(G, n + 1);
                let c = Cmd::new(name).key(keys[0]).numkeys(&keys[1..]);
                self.zcombine(c, n, name == "ZDIFFSTORE")
            }
            21 => {
                let n = 1 + self.rng.below(3);
                let keys = self.split_keys(G, n);
                let c = Cmd::new("ZINTERCARD").numkeys(&keys).computed();
                if self.rng.chance(40) {
                    c.arg("LIMIT").arg(self.count(3))
                } else {
                    c
                }
            }
            22 => {
                let keys = self.keys(G, 2);
                let c = Cmd::new("ZRANGESTORE").keys(&keys);
                let mut c = self.zrange(c);
                if c.args.last().is_some_and(|a| a == b"WITHSCORES") {
                    c.args.pop();
                }
                c
            }
            23 => Cmd::new("ZREMRANGEBYRANK")
                .key(self.key(G))
                .arg(self.index())
                .arg(self.index()),
            24 => {
                if self.rng.chance(50) {
                    Cmd::new("ZREMRANGEBYSCORE")
                        .key(self.key(G))
                        .arg(self.rng.pick(RANGE_SCORES))
                        .arg(self.rng.pick(RANGE_SCORES))
                } else {
                    Cmd::new("ZREMRANGEBYLEX")
                        .key(self.key(G))
                        .arg(self.rng.pick(RANGE_LEX))
                        .arg(self.rng.pick(RANGE_LEX))
                }
            }
            _ => Cmd::new("ZSCAN")
                .key(self.key(G))
                .arg("0")
                .arg("COUNT")
                .arg("100")
                .unordered_scan(),
        }
    }
}
