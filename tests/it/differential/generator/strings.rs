//! Generated commands: strings, bitmaps and HyperLogLog.

use super::*;

impl Gen {
    pub(super) fn string(&mut self) -> Cmd {
        use Group::Str as G;
        match self.rng.below(22) {
            0..=2 => {
                let mut c = Cmd::new("SET").key(self.key(G)).arg(self.value());
                if self.rng.chance(30) {
                    c = c.arg(self.rng.pick(&["NX", "XX"]));
                }
                if self.rng.chance(25) {
                    c = c.arg("GET");
                }
                if self.rng.chance(35) {
                    c = self.set_expiry(c);
                }
                c
            }
            3 | 4 => Cmd::new("GET").key(self.key(G)),
            5 => Cmd::new("APPEND").key(self.key(G)).arg(self.value()),
            6 => Cmd::new(self.rng.pick(&["INCR", "DECR"])).key(self.key(G)),
            7 => Cmd::new(self.rng.pick(&["INCRBY", "DECRBY"]))
                .key(self.key(G))
                .arg(
                    self.rng
                        .pick(&["1", "5", "-3", "0", "9223372036854775807", "x"]),
                ),
            8 => Cmd::new("INCRBYFLOAT")
                .key(self.key(G))
                .arg(self.rng.pick(&["0.5", "-1.25", "3", "1e2", "abc", "+inf"])),
            9 => Cmd::new(self.rng.pick(&["GETRANGE", "SUBSTR"]))
                .key(self.key(G))
                .arg(self.index())
                .arg(self.index()),
            10 => Cmd::new("SETRANGE")
                .key(self.key(G))
                .arg(self.rng.pick(&["0", "1", "3", "12", "-1"]))
                .arg(self.value()),
            11 => Cmd::new("STRLEN").key(self.key(G)),
            12 => Cmd::new("GETDEL").key(self.key(G)),
            13 => {
                let c = Cmd::new("GETEX").key(self.key(G));
                self.getex_expiry(c)
            }
            14 | 15 => {
                let n = 1 + self.rng.below(4);
                let keys = self.split_keys(G, n);
                let mut c = Cmd::new("MSET").split();
                if self.tx {
                    // Inside MULTI nothing is split: a repeated last value would be a key in
                    // another slot, and a cluster node answers CROSSSLOT too.
                    c = c.keys_before_last();
                }
                for key in keys {
                    c = c.key(key).arg(self.value());
                }
                if self.rng.chance(5) {
                    // A pair short of its value: wrong number of arguments, across slots too.
                    c.args.pop();
                }
                c
            }
            16 => {
                let n = 1 + self.rng.below(5);
                let keys = self.split_keys(G, n);
                Cmd::new("MGET").keys(&keys).split()
            }
            17 => {
                let n = 1 + self.rng.below(3);
                let keys = self.keys(G, n);
                // A repeated last value would be a key: CROSSSLOT from a cluster node too.
                let mut c = Cmd::new("MSETNX").keys_before_last();
                for key in keys {
                    c = c.key(key).arg(self.value());
                }
                c
            }
            18 => Cmd::new("SETNX").key(self.key(G)).arg(self.value()),
            19 => Cmd::new("GETSET").key(self.key(G)).arg(self.value()),
            20 => {
                if self.rng.chance(50) {
                    Cmd::new("SETEX")
                        .key(self.key(G))
                        .arg(self.rng.pick(&["1000", "0", "x"]))
                        .arg(self.value())
                } else {
                    Cmd::new("PSETEX")
                        .key(self.key(G))
                        .arg(self.rng.pick(&["1000000", "-1"]))
                        .arg(self.value())
                }
            }
            _ => {
                let keys = self.keys(G, 2);
                let c = Cmd::new("LCS").keys(&keys);
                match self.rng.below(4) {
                    0 => c,
                    1 => c.arg("LEN"),
                    2 => c.arg("IDX").arg("MINMATCHLEN").arg(self.count(2)),
                    _ => c.arg("IDX").arg("WITHMATCHLEN"),
                }
            }
        }
    }

    pub(super) fn bitmap(&mut self) -> Cmd {
        use Group::Bits as G;
        match self.rng.below(8) {
            0 | 1 => Cmd::new("SETBIT")
                .key(self.key(G))
                .arg(self.rng.int(0, 40))
                .arg(self.rng.pick(&["0", "1", "1", "2"])),
            2 => Cmd::new("GETBIT").key(self.key(G)).arg(self.rng.int(0, 48)),
            3 => {
                let c = Cmd::new("BITCOUNT").key(self.key(G));
                match self.rng.below(3) {
                    0 => c,
                    1 => c.arg(self.index()).arg(self.index()),
                    _ => c
                        .arg(self.index())
                        .arg(self.index())
                        .arg(self.rng.pick(&["BYTE", "BIT"])),
                }
            }
            4 => {
                let c = Cmd::new("BITPOS")
                    .key(self.key(G))
                    .arg(self.rng.pick(&["0", "1"]));
                match self.rng.below(4) {
                    0 => c,
                    1 => c.arg(self.index()),
                    2 => c.arg(self.index()).arg(self.index()),
                    _ => c
                        .arg(self.index())
                        .arg(self.index())
                        .arg(self.rng.pick(&["BYTE", "BIT"])),
                }
            }
            5 => {
                let op = self.rng.pick(&["AND", "OR", "XOR", "NOT"]);
                let sources = if op == "NOT" {
                    1
                } else {
                    1 + self.rng.below(3)
                };
                let keys = self.keys(G, 1 + sources);
                Cmd::new("BITOP").arg(op).keys(&keys)
            }
            6 => {
                let mut c = Cmd::new("BITFIELD").key(self.key(G));
                for _ in 0..1 + self.rng.below(3) {
                    c = match self.rng.below(4) {
                        0 => c
                            .arg("GET")
                            .arg(self.rng.pick(&["u8", "i5", "u1"]))
                            .arg(self.count(20)),
                        1 => c
                            .arg("SET")
                            .arg(self.rng.pick(&["u8", "i5"]))
                            .arg(self.count(20))
                            .arg(self.rng.int(-20, 300)),
                        2 => c
                            .arg("INCRBY")
                            .arg(self.rng.pick(&["u4", "i8"]))
                            .arg(self.count(20))
                            .arg(self.rng.int(-9, 9)),
                        _ => c
                            .arg("OVERFLOW")
                            .arg(self.rng.pick(&["WRAP", "SAT", "FAIL"])),
                    };
                }
                c
            }
            _ => Cmd::new("BITFIELD_RO")
                .key(self.key(G))
                .arg("GET")
                .arg(self.rng.pick(&["u8", "i4"]))
                .arg(self.count(16)),
        }
    }

    pub(super) fn hll(&mut self) -> Cmd {
        use Group::Hll as G;
        match self.rng.below(5) {
            0 | 1 => {
                let members = self.members(4);
                let mut c = Cmd::new("PFADD").key(self.key(G));
                if self.rng.chance(90) {
                    for m in members {
                        c = c.arg(m);
                    }
                }
                c
            }
            2 => Cmd::new("PFCOUNT").key(self.key(G)),
            3 => {
                let n = 1 + self.rng.below(3);
                let keys = self.split_keys(G, n);
                Cmd::new("PFCOUNT").keys(&keys).computed()
            }
            _ => {
                let n = 1 + self.rng.below(3);
                let keys = self.keys(G, n);
                Cmd::new("PFMERGE").keys(&keys)
            }
        }
    }
}
