//! How the replies of a command served by several nodes become one, per policy row: split
//! commands (`SplitKind`), commands computed by the proxy (`Algebra`) and commands fanned out to
//! every primary or node (`FanOutMerge`). The merging itself is the session's (`session/split.rs`,
//! `session/algebra/`); this file names the rules and describes them for `docs/commands.md`.

/// The shape of a splittable command's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// `CMD key [key ...]`.
    Keys(MergeRule),
    /// `CMD key value [key value ...]`.
    KeyValues,
}

impl SplitKind {
    /// How the parts' replies become one, in a few words (for `docs/commands.md`).
    pub fn describe(&self) -> &'static str {
        match self {
            SplitKind::Keys(MergeRule::Values) => "values in the client's key order",
            SplitKind::Keys(MergeRule::Sum) => "the replies summed",
            SplitKind::KeyValues => "`OK` once every part says `OK`",
        }
    }
}

/// How the parts of a `SplitKind::Keys` command merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    /// `MGET`: the values, in the client's key order.
    Values,
    /// `DEL`, `EXISTS`...: the sum of the parts' integers.
    Sum,
}

/// How the replies of a command sent to every primary (or node) merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOutMerge {
    /// `FLUSHALL`...: `+OK` once every part said `+OK`.
    AllOk,
    /// `DBSIZE`...: the sum of the parts' integers.
    Sum,
    /// `KEYS`: the parts' arrays, one after the other.
    Concat,
    /// `INFO`: section by section, plus a `# Proxy` section.
    Info,
    /// `RANDOMKEY`: one of the parts' keys, nil only when every part is nil.
    AnyNonNull,
    /// `SCRIPT LOAD`, `FUNCTION LOAD`: the reply every primary gives alike.
    Same,
    /// `SCRIPT EXISTS`: `1` for a script only where every primary has it.
    AllExist,
    /// `FUNCTION LIST`: the libraries every primary has.
    CommonLibraries,
    /// `SCRIPT KILL`, `FUNCTION KILL`: `OK` from the primary that was running a script.
    AnyOk,
    /// `FUNCTION STATS`: the primary running a script, else the first primary.
    RunningScript,
    /// `SLOWLOG GET`: every primary's log, newest first, without slotproxy's own commands.
    Slowlog,
    /// `SLOWLOG LEN`: the entries `SLOWLOG GET -1` returns.
    SlowlogLen,
}

impl FanOutMerge {
    /// How the parts' replies become one, in a few words (for `docs/commands.md`).
    pub fn describe(self) -> &'static str {
        match self {
            FanOutMerge::AllOk => "`OK` once every part says `OK`",
            FanOutMerge::Sum => "the replies summed",
            FanOutMerge::Concat => "the replies concatenated",
            FanOutMerge::Info => "sections merged, counters summed, a `# Proxy` section added",
            FanOutMerge::AnyNonNull => {
                "a key from a primary picked at random among those that have keys (uniformly, \
                 not by size)"
            }
            FanOutMerge::Same => "the reply every primary gives alike",
            FanOutMerge::AllExist => {
                "`1` for a script every primary has, or that slotproxy knows and loads on a \
                 primary that lacks it"
            }
            FanOutMerge::CommonLibraries => "the libraries every primary has",
            FanOutMerge::AnyOk => "`OK` from the primary running a script, else `NOTBUSY`",
            FanOutMerge::RunningScript => "the primary running a script, else the first primary",
            FanOutMerge::Slowlog => {
                "every primary's log merged newest first, `count` entries in all, without \
                 slotproxy's health checks (`PING`, `INFO replication`) and replicas' `REPLCONF`"
            }
            FanOutMerge::SlowlogLen => "the entries `SLOWLOG GET -1` returns",
        }
    }
}

/// A read-only multi-key command the proxy computes itself when its keys span slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algebra {
    /// `SUNION key...`.
    SUnion,
    /// `SINTER key...`.
    SInter,
    /// `SDIFF key...`.
    SDiff,
    /// `SINTERCARD numkeys key... [LIMIT n]`.
    SInterCard,
    /// `ZUNION numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]`.
    ZUnion,
    /// `ZINTER numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]`.
    ZInter,
    /// `ZDIFF numkeys key... [WITHSCORES]`.
    ZDiff,
    /// `ZINTERCARD numkeys key... [LIMIT n]`.
    ZInterCard,
    /// `PFCOUNT key...` with more than one key.
    PfCount,
}

impl Algebra {
    /// How the reply is computed, in a few words (for `docs/commands.md`).
    pub fn describe(self) -> &'static str {
        match self {
            Algebra::SUnion | Algebra::SInter | Algebra::SDiff => {
                "each key's members read from its node (`SMEMBERS`), combined by slotproxy"
            }
            Algebra::SInterCard => {
                "each key's members read from its node (`SMEMBERS`), the intersection counted by \
                 slotproxy"
            }
            Algebra::ZUnion | Algebra::ZInter | Algebra::ZDiff => {
                "each key read from its node (`ZUNION 1 key WITHSCORES`, which takes sets too), \
                 combined and scored by slotproxy"
            }
            Algebra::ZInterCard => {
                "each key read from its node (`ZUNION 1 key WITHSCORES`, which takes sets too), \
                 the intersection counted by slotproxy"
            }
            Algebra::PfCount => {
                "each HyperLogLog read from its node (`GET`), merged and counted by slotproxy"
            }
        }
    }
}
