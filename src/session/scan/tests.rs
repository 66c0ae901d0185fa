//! Unit tests of the SCAN cursor and its walk over the primaries.

use super::*;

fn shard(primary: &str, ranges: &[(u16, u16)]) -> ShardLayout {
    ShardLayout {
        ranges: ranges.to_vec(),
        primary: primary.to_string(),
        replicas: Vec::new(),
        live_replicas: 0,
    }
}

pub(in crate::session) fn three() -> Vec<ShardLayout> {
    vec![
        shard("a:1", &[(0, 5460)]),
        shard("b:1", &[(5461, 10922)]),
        shard("c:1", &[(10923, 16383)]),
    ]
}

/// Runs a whole iteration under `layouts[i]` for the i-th call (the last one repeats), with
/// each node taking `calls_per_node` calls; returns the primaries scanned to the end, in
/// order.
fn iterate(layouts: &[Vec<ShardLayout>], calls_per_node: u64) -> Vec<String> {
    let mut finished = Vec::new();
    let mut at = None;
    for call in 0..100 {
        let layout = &layouts[call.min(layouts.len() - 1)];
        match plan(layout, at) {
            Next::Scan(phase, node) => {
                let owner = owner(layout, phase.anchor).expect("anchor has an owner");
                let returned = if node + 1 >= calls_per_node {
                    finished.push(owner.to_string());
                    0
                } else {
                    node + 1
                };
                let cursor = phase.cursor(returned).expect("fits");
                assert_ne!(cursor, 0);
                at = Phase::decode(cursor);
                assert_eq!(at, Some((phase, returned)), "cursor round-trips");
            }
            Next::Finished => return finished,
            Next::NoTopology => panic!("no topology"),
        }
    }
    panic!("iteration did not finish");
}

#[test]
fn stable_topology_scans_each_primary_once_in_slot_order() {
    assert_eq!(iterate(&[three()], 3), ["a:1", "b:1", "c:1"]);
    let interleaved = vec![
        shard("a:1", &[(100, 200), (1000, 2000)]),
        shard("b:1", &[(0, 99), (201, 999)]),
        shard("c:1", &[(2001, 16383)]),
    ];
    assert_eq!(iterate(&[interleaved], 2), ["b:1", "a:1", "c:1"]);
    assert_eq!(plan(&[], None), Next::NoTopology);
}

#[test]
fn failover_of_the_shard_being_scanned_restarts_it_on_the_new_primary() {
    let mut failed_over = three();
    failed_over[1].primary = "b:2".into();
    // Calls 0-2 finish a; b is mid-scan on b:1 at call 4 when b:2 takes over.
    let layouts = [three(), three(), three(), three(), three(), failed_over];
    assert_eq!(iterate(&layouts, 3), ["a:1", "b:2", "c:1"]);
}

#[test]
fn a_shard_taking_a_slot_below_the_anchor_is_still_scanned() {
    // While b is scanned, c takes slot 100 from a: c's lowest slot drops below b's, so the
    // order alone would skip c. The check notices and the walk still reaches c's range.
    let mut moved = three();
    moved[0].ranges = vec![(0, 99), (101, 5460)];
    moved[2].ranges = vec![(100, 100), (10923, 16383)];
    let layouts = [three(), three(), three(), three(), moved];
    let scanned = iterate(&layouts, 2);
    assert!(scanned.contains(&"c:1".to_string()), "{scanned:?}");
    assert!(scanned.contains(&"b:1".to_string()), "{scanned:?}");
}

#[test]
fn a_new_shard_below_the_anchor_is_scanned() {
    let mut grown = three();
    grown[0].ranges = vec![(1, 5460)];
    grown.insert(0, shard("d:1", &[(0, 0)]));
    let layouts = [three(), three(), three(), grown];
    let scanned = iterate(&layouts, 2);
    assert!(scanned.contains(&"b:1".to_string()), "{scanned:?}");
    assert!(scanned.contains(&"c:1".to_string()), "{scanned:?}");
}

#[test]
fn cursors_are_checked_and_parsed_like_redis() {
    assert_eq!(parse_cursor(b""), Some(0));
    assert_eq!(parse_cursor(b"+7"), Some(7));
    assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
    assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
    for bad in [
        &b"abc"[..],
        b" 1",
        b"1 ",
        b"1.5",
        b"-",
        b"18446744073709551616",
    ] {
        assert_eq!(parse_cursor(bad), None, "{bad:?}");
    }
    assert_eq!(Phase::decode(u64::MAX), None, "above 2^63");
    assert_eq!(Phase::decode(5), None, "check 0 is never made");
    let phase = order_phase(&three(), 0);
    assert!(phase.cursor(1 << NODE_CURSOR_BITS).is_err());
    let widest = phase.cursor((1 << NODE_CURSOR_BITS) - 1).expect("fits");
    assert!(widest < 1 << 63);
}

#[test]
fn node_reply_is_rewritten_in_both_protocols() {
    let phase = Phase {
        anchor: 5461,
        walk: false,
        check: 7,
    };
    let cursor = phase.cursor(12).expect("fits").to_string();
    let reply = merge_reply(phase, b"*2\r\n$2\r\n12\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    let want = format!(
        "*2\r\n${}\r\n{cursor}\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n",
        cursor.len()
    );
    assert_eq!(&reply[..], want.as_bytes());
    let done = phase.cursor(0).expect("fits").to_string();
    let reply = merge_reply(phase, b"*2\r\n$1\r\n0\r\n*0\r\n");
    assert_eq!(
        &reply[..],
        format!("*2\r\n${}\r\n{done}\r\n*0\r\n", done.len()).as_bytes()
    );
    assert!(merge_reply(phase, b"+OK\r\n").starts_with(b"-ERR"));
    let wide = format!("{}", 1u64 << 40);
    let raw = format!("*2\r\n${}\r\n{wide}\r\n*0\r\n", wide.len());
    assert!(merge_reply(phase, raw.as_bytes()).starts_with(b"-ERR slotproxy"));
}

#[test]
fn options_are_checked_like_redis_when_the_proxy_answers() {
    let args = |a: &[&'static str]| {
        a.iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect::<Vec<_>>()
    };
    let check_options = |options: &[Bytes]| check_options(options).map_err(|e| e.to_string());
    assert_eq!(
        check_options(&args(&["MATCH", "*", "count", "10", "TYPE", "x"])),
        Ok(())
    );
    assert_eq!(
        check_options(&args(&["COUNT", "0"])),
        Err("ERR syntax error".into())
    );
    assert_eq!(
        check_options(&args(&["TYPE"])),
        Err("ERR syntax error".into())
    );
    assert_eq!(
        check_options(&args(&["COUNT", "x"])),
        Err("ERR value is not an integer or out of range".into())
    );
}
