//! ACL categories (`@read`, `@dangerous`, ...): a bit set per command row.
//!
//! Owns the category names and their order, which is redis 7.0's own (`ACL CAT` lists them in
//! it, and `ACL LIST` picks categories in it). Which command is in which category is data from
//! `COMMAND` (see the `command` module doc); this file knows no command.

/// The ACL categories of one command (a bit set, one bit per category).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AclCategories(pub u32);

impl AclCategories {
    /// No category.
    pub const NONE: AclCategories = AclCategories(0);
    /// `@keyspace`: works on keys, databases or their metadata in a type-agnostic way.
    pub const KEYSPACE: AclCategories = AclCategories(1 << 0);
    /// `@read`: reads from keys.
    pub const READ: AclCategories = AclCategories(1 << 1);
    /// `@write`: writes to keys.
    pub const WRITE: AclCategories = AclCategories(1 << 2);
    /// `@set`: works on sets.
    pub const SET: AclCategories = AclCategories(1 << 3);
    /// `@sortedset`: works on sorted sets.
    pub const SORTEDSET: AclCategories = AclCategories(1 << 4);
    /// `@list`: works on lists.
    pub const LIST: AclCategories = AclCategories(1 << 5);
    /// `@hash`: works on hashes.
    pub const HASH: AclCategories = AclCategories(1 << 6);
    /// `@string`: works on strings.
    pub const STRING: AclCategories = AclCategories(1 << 7);
    /// `@bitmap`: works on bitmaps.
    pub const BITMAP: AclCategories = AclCategories(1 << 8);
    /// `@hyperloglog`: works on HyperLogLogs.
    pub const HYPERLOGLOG: AclCategories = AclCategories(1 << 9);
    /// `@geo`: works on geospatial indexes.
    pub const GEO: AclCategories = AclCategories(1 << 10);
    /// `@stream`: works on streams.
    pub const STREAM: AclCategories = AclCategories(1 << 11);
    /// `@pubsub`: works on pub/sub.
    pub const PUBSUB: AclCategories = AclCategories(1 << 12);
    /// `@admin`: administrative commands.
    pub const ADMIN: AclCategories = AclCategories(1 << 13);
    /// `@fast`: O(1) commands.
    pub const FAST: AclCategories = AclCategories(1 << 14);
    /// `@slow`: every command that is not `@fast`.
    pub const SLOW: AclCategories = AclCategories(1 << 15);
    /// `@blocking`: may block the client.
    pub const BLOCKING: AclCategories = AclCategories(1 << 16);
    /// `@dangerous`: potentially dangerous commands.
    pub const DANGEROUS: AclCategories = AclCategories(1 << 17);
    /// `@connection`: about the connection.
    pub const CONNECTION: AclCategories = AclCategories(1 << 18);
    /// `@transaction`: MULTI/EXEC/WATCH.
    pub const TRANSACTION: AclCategories = AclCategories(1 << 19);
    /// `@scripting`: scripts and functions.
    pub const SCRIPTING: AclCategories = AclCategories(1 << 20);

    /// Every category by name, in redis' order (the order of `ACL CAT`).
    pub const ALL: [(&'static str, AclCategories); 21] = [
        ("keyspace", Self::KEYSPACE),
        ("read", Self::READ),
        ("write", Self::WRITE),
        ("set", Self::SET),
        ("sortedset", Self::SORTEDSET),
        ("list", Self::LIST),
        ("hash", Self::HASH),
        ("string", Self::STRING),
        ("bitmap", Self::BITMAP),
        ("hyperloglog", Self::HYPERLOGLOG),
        ("geo", Self::GEO),
        ("stream", Self::STREAM),
        ("pubsub", Self::PUBSUB),
        ("admin", Self::ADMIN),
        ("fast", Self::FAST),
        ("slow", Self::SLOW),
        ("blocking", Self::BLOCKING),
        ("dangerous", Self::DANGEROUS),
        ("connection", Self::CONNECTION),
        ("transaction", Self::TRANSACTION),
        ("scripting", Self::SCRIPTING),
    ];

    /// Whether every category of `other` is set in `self`.
    pub const fn contains(self, other: AclCategories) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a category.
    pub const fn intersects(self, other: AclCategories) -> bool {
        self.0 & other.0 != 0
    }

    /// The categories set in either `self` or `other`.
    pub const fn union(self, other: AclCategories) -> AclCategories {
        AclCategories(self.0 | other.0)
    }

    /// The category named `name` (without `@`, case-insensitive), if redis has it.
    pub fn from_name(name: &str) -> Option<AclCategories> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, c)| c)
    }

    /// The categories in `names` as a node's `COMMAND` lists them (`@read`); unknown ones dropped.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> AclCategories {
        names.iter().fold(AclCategories::NONE, |all, name| {
            let name = name.as_ref();
            let bare = name.strip_prefix('@').unwrap_or(name);
            all.union(Self::from_name(bare).unwrap_or(AclCategories::NONE))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_redis_order() {
        for (i, (name, cat)) in AclCategories::ALL.iter().enumerate() {
            assert_eq!(cat.0, 1 << i, "{name}");
            assert_eq!(AclCategories::from_name(name), Some(*cat));
            assert_eq!(AclCategories::from_name(&name.to_uppercase()), Some(*cat));
        }
        assert_eq!(AclCategories::from_name("all"), None);
        assert_eq!(AclCategories::from_name("nope"), None);
    }

    #[test]
    fn from_names_reads_command_reply_form() {
        let cats = AclCategories::from_names(&["@write", "@string", "@slow", "@future"]);
        assert_eq!(
            cats,
            AclCategories::WRITE
                .union(AclCategories::STRING)
                .union(AclCategories::SLOW)
        );
        assert!(cats.intersects(AclCategories::SLOW.union(AclCategories::FAST)));
        assert!(!cats.contains(AclCategories::FAST));
    }
}
