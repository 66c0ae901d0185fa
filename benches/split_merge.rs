//! The cost of a multi-key command whose keys span slots: splitting an `MGET` of 100 keys into
//! one request per slot, and merging the parts' replies back into one array in key order.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slotproxy::command::policy::{MergeRule, SplitKind};
use slotproxy::protocol::{Protocol, Reply, Request};
use slotproxy::session::{merge, plan_split};

/// Keys in each `MGET`.
const KEYS: usize = 100;

/// `MGET` of `KEYS` keys named by `key`.
fn mget(key: impl Fn(usize) -> String) -> Request {
    let mut args = vec![Bytes::from_static(b"MGET")];
    args.extend((0..KEYS).map(|i| Bytes::from(key(i))));
    Request::from_args(args)
}

/// A node's reply to one part: the value of each of its keys (the key itself, so the merged
/// reply shows whether every value landed at its key's position).
fn part_reply(part: &Request) -> Reply {
    let keys = &part.args()[1..];
    let mut raw = format!("*{}\r\n", keys.len()).into_bytes();
    for key in keys {
        raw.extend_from_slice(format!("${}\r\n", key.len()).as_bytes());
        raw.extend_from_slice(key);
        raw.extend_from_slice(b"\r\n");
    }
    Reply::local(Bytes::from(raw))
}

fn split_merge_bench(c: &mut Criterion) {
    // MGET's policy row: split by slot, values merged in the client's key order.
    let kind = SplitKind::Keys(MergeRule::Values);
    // `{a}`, `{b}` and `{c}` hash to slots of the three shards of a default 3-primary cluster
    // (15495, 3300, 7365): three parts. Plain keys land in about as many slots as keys.
    let cases = [
        (
            "mget_100_keys_3_slots",
            mget(|i| format!("{{{}}}:{i}", ["a", "b", "c"][i % 3])),
        ),
        ("mget_100_keys_100_slots", mget(|i| format!("key:{i}"))),
    ];
    let mut group = c.benchmark_group("split_merge");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .throughput(Throughput::Elements(KEYS as u64));
    for (name, request) in cases {
        let (rule, parts) = plan_split(kind, &request);
        let replies: Vec<Reply> = parts.iter().map(|(_, part)| part_reply(part)).collect();
        let merged = merge(&rule, &replies, Protocol::Resp2);
        let direct = part_reply(&request);
        assert_eq!(
            &merged,
            direct.raw(),
            "{name}: the merged reply is in key order"
        );

        group.bench_function(format!("{name}/split"), |b| {
            b.iter(|| plan_split(kind, black_box(&request)));
        });
        group.bench_function(format!("{name}/merge"), |b| {
            b.iter(|| merge(black_box(&rule), black_box(&replies), Protocol::Resp2));
        });
    }
    group.finish();
}

criterion_group!(benches, split_merge_bench);
criterion_main!(benches);
