//! `Slot` and `hash_slot`: CRC16 (XMODEM) of the key or its `{hash tag}`, modulo 16384.

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// A hash slot, `0..SLOT_COUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u16);

impl Slot {
    /// The slot number as an index into per-slot tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The slot of `key`, following the cluster spec's hash tag rule.
///
/// If the key contains `{`, and a `}` follows it with at least one byte between them, only the
/// bytes between the first `{` and the first `}` after it are hashed; otherwise the whole key is.
pub fn hash_slot(key: &[u8]) -> Slot {
    Slot(crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) & (SLOT_COUNT - 1))
}

/// The part of `key` that is hashed.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_spec() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.
        let cases: &[(&[u8], u16)] = &[
            (b"", 0),
            (b"foo", 12182),
            (b"bar", 5061),
            (b"123456789", 12739), // the spec's CRC16 check value 0x31C3
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"foo{}{bar}", 8363), // empty first tag: the whole key is hashed
            (b"foo{{bar}}zap", 4015), // tag is "{bar"
            (b"foo{bar}{zap}", 5061), // tag is "bar"
            (b"{", 4092),
            (b"}{", 12793),
        ];
        for (key, want) in cases {
            assert_eq!(
                hash_slot(key),
                Slot(*want),
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
