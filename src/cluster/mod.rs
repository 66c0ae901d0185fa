//! Where a key lives: slot hashing, the slot map snapshot, and keeping it fresh.
//!
//! May call `backend` to ask nodes for the topology; never the reverse.

pub mod epoch;
pub mod health_check;
pub mod refresh;
pub mod run_id;
pub mod seeds;
pub mod slot;
pub mod slot_map;
pub mod state;
pub mod stats;

pub use refresh::Topology;
pub use run_id::RunId;
pub use slot::{SLOT_COUNT, Slot, hash_slot};
pub use slot_map::{Shard, ShardLayout, SlotMap};
pub use stats::RefreshStats;
