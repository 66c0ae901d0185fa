//! Where a request goes: named by slot, not by node, so that every retry resolves it again
//! against the slot map current then.

use crate::cluster::Slot;

/// Where a request goes, re-resolved against the current map on every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The primary owning this slot.
    Slot(Slot),
    /// Any primary (keyless commands every node answers alike).
    AnyPrimary,
    /// Replica number `.1` of the shard owning this slot (admin commands sent to every node).
    Replica(Slot, usize),
}
