//! Generated commands: geo and streams.

use super::*;

impl Gen {
    pub(super) fn geo(&mut self) -> Cmd {
        use Group::ZSet as G;
        match self.rng.below(7) {
            0 | 1 => {
                let mut c = Cmd::new("GEOADD").key(self.key(G));
                if self.rng.chance(20) {
                    c = c.arg(self.rng.pick(&["NX", "XX"]));
                }
                if self.rng.chance(20) {
                    c = c.arg("CH");
                }
                for _ in 0..1 + self.rng.below(3) {
                    let (lon, lat) = self.rng.pick(COORDS);
                    c = c.arg(lon).arg(lat).arg(self.member());
                }
                c
            }
            2 => {
                let c = Cmd::new("GEODIST")
                    .key(self.key(G))
                    .arg(self.member())
                    .arg(self.member());
                if self.rng.chance(60) {
                    c.arg(self.rng.pick(UNITS))
                } else {
                    c
                }
            }
            3 => {
                let mut c = Cmd::new(self.rng.pick(&["GEOPOS", "GEOHASH"])).key(self.key(G));
                for m in self.members(3) {
                    c = c.arg(m);
                }
                c
            }
            4 | 5 => {
                let c = Cmd::new("GEOSEARCH").key(self.key(G));
                let mut c = self.geo_search(c);
                if self.rng.chance(40) {
                    c = c.arg("WITHCOORD");
                }
                if self.rng.chance(40) {
                    c = c.arg("WITHDIST");
                }
                if self.rng.chance(20) {
                    c = c.arg("WITHHASH");
                }
                c
            }
            _ => {
                let keys = self.keys(G, 2);
                let c = Cmd::new("GEOSEARCHSTORE").keys(&keys);
                let c = self.geo_search(c);
                if self.rng.chance(40) {
                    c.arg("STOREDIST")
                } else {
                    c
                }
            }
        }
    }

    /// GEOSEARCH's FROM, BY, order (always ASC or DESC) and COUNT.
    pub(super) fn geo_search(&mut self, c: Cmd) -> Cmd {
        let c = if self.rng.chance(50) {
            c.arg("FROMMEMBER").arg(self.member())
        } else {
            let (lon, lat) = self.rng.pick(&COORDS[..7]);
            c.arg("FROMLONLAT").arg(lon).arg(lat)
        };
        let c = if self.rng.chance(60) {
            c.arg("BYRADIUS")
                .arg(self.rng.pick(&["10", "200", "1500", "5000"]))
                .arg(self.rng.pick(UNITS))
        } else {
            c.arg("BYBOX")
                .arg(self.rng.pick(&["100", "400", "3000"]))
                .arg(self.rng.pick(&["100", "800"]))
                .arg("km")
        };
        let c = c.arg(self.rng.pick(&["ASC", "DESC"]));
        if self.rng.chance(40) {
            c.arg("COUNT").arg(self.rng.pick(&["1", "2", "0"]))
        } else {
            c
        }
    }

    /// An explicit stream id, mostly above the last one used.
    pub(super) fn stream_id(&mut self) -> String {
        if self.rng.chance(5) {
            return self.rng.pick(&["0-0", "1-0", "0-1", "bad"]).to_string();
        }
        self.stream_ms += self.rng.below(3) as u64;
        let ms = self.stream_ms;
        match self.rng.below(4) {
            0 => format!("{ms}-*"),
            1 => ms.to_string(),
            _ => format!("{ms}-{}", self.rng.below(3)),
        }
    }

    /// An id to read or trim at: one of the ids used so far, or an end.
    pub(super) fn stream_bound(&mut self) -> String {
        let ms = 1 + self.rng.below(usize::try_from(self.stream_ms).unwrap());
        match self.rng.below(5) {
            0 => format!("{ms}"),
            1 => format!("{ms}-1"),
            2 => format!("({ms}-0"),
            _ => format!("{ms}-0"),
        }
    }

    pub(super) fn stream(&mut self) -> Cmd {
        use Group::Stream as G;
        match self.rng.below(18) {
            0..=3 => {
                let mut c = Cmd::new("XADD").key(self.key(G));
                if self.rng.chance(10) {
                    c = c.arg("NOMKSTREAM");
                }
                if self.rng.chance(20) {
                    c = c
                        .arg("MAXLEN")
                        .arg(self.rng.pick(&["=", "~"]))
                        .arg(self.rng.int(0, 5));
                }
                c = c.arg(self.stream_id());
                for _ in 0..1 + self.rng.below(2) {
                    c = c.arg(self.field()).arg(self.value());
                }
                c
            }
            4 => Cmd::new("XLEN").key(self.key(G)),
            5 | 6 => {
                let (name, a, b) = if self.rng.chance(50) {
                    ("XRANGE", "-", "+")
                } else {
                    ("XREVRANGE", "+", "-")
                };
                let mut c = Cmd::new(name).key(self.key(G));
                c = if self.rng.chance(60) {
                    c.arg(a).arg(b)
                } else {
                    c.arg(self.stream_bound()).arg(self.stream_bound())
                };
                if self.rng.chance(40) {
                    c = c.arg("COUNT").arg(self.count(3));
                }
                c
            }
            7 => {
                let mut c = Cmd::new("XDEL").key(self.key(G));
                for _ in 0..1 + self.rng.below(2) {
                    c = c.arg(self.stream_bound());
                }
                c
            }
            8 => {
                let c = Cmd::new("XTRIM").key(self.key(G));
                if self.rng.chance(50) {
                    c.arg("MAXLEN")
                        .arg(self.rng.pick(&["=", "~"]))
                        .arg(self.rng.int(0, 6))
                } else {
                    c.arg("MINID").arg(self.stream_bound())
                }
            }
            9 | 10 => {
                let n = 1 + self.rng.below(2);
                let keys = self.keys(G, n);
                let mut c = Cmd::new("XREAD");
                if self.rng.chance(40) {
                    c = c.arg("COUNT").arg(self.count(3));
                }
                c = c.arg("STREAMS").keys(&keys);
                for _ in 0..n {
                    c = c.arg(self.rng.pick(&["0", "0-0", "2-0", "$"]));
                }
                c
            }
            11 | 12 => {
                let c = Cmd::new("XGROUP")
                    .arg("CREATE")
                    .key(self.key(G))
                    .arg(self.rng.pick(&["g1", "g2"]))
                    .arg(self.rng.pick(&["0", "$", "3-0"]));
                if self.rng.chance(50) {
                    c.arg("MKSTREAM")
                } else {
                    c
                }
            }
            17 => Cmd::new("XGROUP")
                .arg("DESTROY")
                .key(self.key(G))
                .arg(self.rng.pick(&["g1", "g2"])),
            13 | 14 => {
                let mut c = Cmd::new("XREADGROUP")
                    .arg("GROUP")
                    .arg(self.rng.pick(&["g1", "g2"]))
                    .arg(self.rng.pick(&["c1", "c2"]));
                if self.rng.chance(50) {
                    c = c.arg("COUNT").arg(self.count(3));
                }
                c.arg("STREAMS")
                    .key(self.key(G))
                    .arg(self.rng.pick(&[">", ">", "0"]))
            }
            15 => {
                let mut c = Cmd::new("XACK")
                    .key(self.key(G))
                    .arg(self.rng.pick(&["g1", "g2"]));
                for _ in 0..1 + self.rng.below(2) {
                    c = c.arg(self.stream_bound());
                }
                c
            }
            _ => {
                if self.rng.chance(50) {
                    Cmd::new("XPENDING")
                        .key(self.key(G))
                        .arg(self.rng.pick(&["g1", "g2"]))
                } else {
                    let c = Cmd::new("XAUTOCLAIM")
                        .key(self.key(G))
                        .arg(self.rng.pick(&["g1", "g2"]))
                        .arg(self.rng.pick(&["c1", "c2"]))
                        .arg("0")
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(self.rng.pick(&["1", "10"]));
                    if self.rng.chance(30) {
                        c.arg("JUSTID")
                    } else {
                        c
                    }
                }
            }
        }
    }
}
