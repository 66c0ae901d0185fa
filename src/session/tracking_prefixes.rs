//! A tracking client's prefixes (`CLIENT TRACKING ON BCAST PREFIX ...`): merging new ones into
//! its set after redis' overlap check, fast enough for tens of thousands.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::tracking_state::Prefixes;
use crate::error::ReplyError;

/// Prefix sets of this many (existing and new together) are checked and merged on a blocking
/// thread.
pub(super) const OFFLOAD_PREFIXES: usize = 1_000;

/// The client's prefix set `existing` with `new` merged in after redis' overlap check, or the
/// error and `existing` unchanged. Broadcast without any prefix is the empty prefix, every key,
/// as in redis.
///
/// The set is shared with the tracker, so merging into it copies it first (on the offload
/// thread for large sets, like the check).
pub(super) fn merge_prefixes(
    existing: Arc<BTreeSet<Bytes>>,
    new: &[Bytes],
    bcast: bool,
) -> Prefixes {
    if let Some(error) = prefix_collision(&existing, new) {
        return Err((error, existing));
    }
    let mut merged = Arc::unwrap_or_clone(existing);
    merged.extend(new.iter().cloned());
    if bcast && merged.is_empty() {
        merged.insert(Bytes::new());
    }
    Ok(Arc::new(merged))
}

/// redis' check that no two prefixes of one client overlap (one a prefix of the other), with
/// its error texts, in O(n log n): redis compares every pair, which 80,000 prefixes turn into
/// seconds of CPU on the runtime.
///
/// Against `existing` (sorted, overlap-free) the first new prefix that overlaps is reported with
/// the first existing one it overlaps, as redis does. Among the new ones the pair reported is
/// one that overlaps, not necessarily the first pair redis' nested loop would meet.
fn prefix_collision(existing: &BTreeSet<Bytes>, new: &[Bytes]) -> Option<ReplyError> {
    let overlaps = |a: &[u8], b: &[u8]| a.starts_with(b) || b.starts_with(a);
    let with_existing = |prefix: &Bytes| -> Option<&Bytes> {
        // The only existing prefix of `prefix` is the greatest one not after it; existing ones
        // that extend `prefix` start at the first one not before it. Sorted order, as redis'.
        let before = existing
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(&prefix[..])))
            .next_back()
            .filter(|e| prefix.starts_with(e));
        before.or_else(|| {
            existing
                .range::<[u8], _>((Bound::Included(&prefix[..]), Bound::Unbounded))
                .next()
                .filter(|e| e.starts_with(prefix))
        })
    };
    // Among the new prefixes, if two overlap then two neighbours in sorted order do.
    let mut sorted: Vec<usize> = (0..new.len()).collect();
    sorted.sort_by(|&a, &b| new[a].cmp(&new[b]).then(a.cmp(&b)));
    let among_new = sorted
        .windows(2)
        .filter(|pair| overlaps(&new[pair[0]], &new[pair[1]]))
        .map(|pair| (pair[0].min(pair[1]), pair[0].max(pair[1])))
        .min();
    for (i, prefix) in new.iter().enumerate() {
        if let Some(other) = with_existing(prefix) {
            return Some(ReplyError::PrefixOverlapsExisting {
                prefix: prefix.clone(),
                existing: other.clone(),
            });
        }
        if let Some((first, second)) = among_new.filter(|&(first, _)| first == i) {
            return Some(ReplyError::PrefixOverlapsProvided {
                first: new[first].clone(),
                second: new[second].clone(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> BTreeSet<Bytes> {
        list.iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    fn list(items: &[&str]) -> Vec<Bytes> {
        items
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn overlapping_prefixes_are_found_as_redis_reports_them() {
        let existing = set(&["ab", "b:", "user:"]);
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["c", "d"], None),
            (
                &["abc"],
                Some("Prefix 'abc' overlaps with an existing prefix 'ab'"),
            ),
            (
                &["a"],
                Some("Prefix 'a' overlaps with an existing prefix 'ab'"),
            ),
            (
                &["x", "user:1"],
                Some("Prefix 'user:1' overlaps with an existing prefix 'user:'"),
            ),
            (
                &["x", "x1"],
                Some("Prefix 'x' overlaps with another provided prefix 'x1'"),
            ),
            (
                &["x1", "y", "x"],
                Some("Prefix 'x1' overlaps with another provided prefix 'x'"),
            ),
            (
                &["q", "q"],
                Some("Prefix 'q' overlaps with another provided prefix 'q'"),
            ),
            (
                &[""],
                Some("Prefix '' overlaps with an existing prefix 'ab'"),
            ),
        ];
        for (new, want) in cases {
            let got = prefix_collision(&existing, &list(new));
            match want {
                None => assert_eq!(got, None, "{new:?}"),
                Some(want) => {
                    let got = got.unwrap_or_else(|| panic!("{new:?}: no collision found"));
                    let got = got.to_string();
                    assert!(got.starts_with(&format!("ERR {want}")), "{new:?}: {got}");
                }
            }
        }
    }

    #[test]
    fn many_prefixes_are_checked_quickly() {
        let new: Vec<Bytes> = (0..80_000).map(|n| Bytes::from(format!("p{n}:"))).collect();
        let started = std::time::Instant::now();
        assert_eq!(prefix_collision(&BTreeSet::new(), &new), None);
        let mut tail = new.clone();
        tail.push(Bytes::from_static(b"p79999:x"));
        assert!(prefix_collision(&BTreeSet::new(), &tail).is_some());
        // Pairwise this was 6.4e9 comparisons (tens of seconds); sorted it is milliseconds.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
