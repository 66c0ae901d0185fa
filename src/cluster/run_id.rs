//! slotproxy's run id: 40 random hex digits per process, as redis-server's `run_id`.
//!
//! It is also the node id slotproxy gives itself in `CLUSTER MYID/NODES/SHARDS/SLOTS`, so a
//! topology answer that names it comes from this very process (a seed that reaches slotproxy
//! through another address, a NAT or a DNS name): see [`super::seeds::names_self`].

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;

/// A process's run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId(String);

impl RunId {
    /// A new random run id (from `/dev/urandom`, as redis does; else from the standard
    /// library's randomly seeded hasher, the clock and the process id).
    pub fn random() -> RunId {
        let mut bytes = [0u8; 20];
        let from_urandom = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .is_ok();
        if !from_urandom {
            let seed = std::collections::hash_map::RandomState::new();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            for (i, chunk) in bytes.chunks_mut(8).enumerate() {
                let mut hasher = seed.build_hasher();
                hasher.write_u128(now);
                hasher.write_u32(std::process::id());
                hasher.write_usize(i);
                let word = hasher.finish().to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
        }
        RunId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The 40 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_40_hex_digits_and_differ() {
        let (a, b) = (RunId::random(), RunId::random());
        assert_eq!(a.as_str().len(), 40);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
