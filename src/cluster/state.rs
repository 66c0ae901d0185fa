//! Whether the cluster, as the proxy sees it, can serve every slot: the one answer behind
//! `/readyz`, `CLUSTER INFO`'s `cluster_state` and `INFO`'s `cluster_state` line.

use super::SLOT_COUNT;
use super::slot_map::SlotMap;

/// Why the cluster can't serve every slot now, or `Ok` when it can.
///
/// # Errors
/// A sentence for the operator: no map yet, uncovered slots, or primaries down with no replica
/// promoted in their place yet.
pub fn check(map: &SlotMap) -> Result<(), String> {
    if map.generation() == 0 {
        return Err("no cluster node has answered yet: no slot map".into());
    }
    let covered = map.covered_slots();
    if covered < usize::from(SLOT_COUNT) {
        return Err(format!(
            "{} of {SLOT_COUNT} slots have no node",
            usize::from(SLOT_COUNT) - covered
        ));
    }
    let down: Vec<&str> = map.down_primaries().map(|p| p.addr()).collect();
    if !down.is_empty() {
        return Err(format!(
            "primary {} fails its health check and no replica has replaced it yet",
            down.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_map_is_not_ok() {
        let reason = check(&SlotMap::empty()).unwrap_err();
        assert!(reason.contains("no slot map"), "{reason}");
    }
}
