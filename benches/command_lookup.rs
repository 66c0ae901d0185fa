//! The per-request cost of the command table: resolve the name, then find the keys; and
//! resolve the name, then learn what to do with the command (its policy row).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use slotproxy::command::{CommandTable, Resolved, key_positions};

fn request(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn command_lookup(c: &mut Criterion) {
    let table = CommandTable::builtin();
    let mget: Vec<String> = std::iter::once("MGET".to_owned())
        .chain((0..10).map(|i| format!("key:{i}")))
        .collect();
    let mget: Vec<&str> = mget.iter().map(String::as_str).collect();
    let cases = [
        ("get", request(&["GET", "key:1"])),
        ("set", request(&["SET", "key:1", "value"])),
        ("mget_10", request(&mget)),
        (
            "eval_2_keys",
            request(&["EVAL", "return 1", "2", "a", "b", "arg"]),
        ),
        ("unknown", request(&["NOSUCHCOMMAND", "x"])),
    ];
    let mut group = c.benchmark_group("command_lookup");
    for (name, args) in &cases {
        let mut keys: Vec<usize> = Vec::with_capacity(16);
        group.bench_function(*name, |b| {
            b.iter(|| {
                keys.clear();
                if let Resolved::Command(spec) = table.resolve(black_box(args)) {
                    // Errors are part of the measured work, not of the result.
                    let _ = key_positions(spec, args, &mut keys);
                }
                black_box(keys.len())
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("command_decide");
    for (name, args) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| match table.resolve(black_box(args)) {
                Resolved::Command(spec) => Some(table.policy(spec).handling),
                _ => None,
            })
        });
    }
    group.finish();
}

criterion_group!(benches, command_lookup);
criterion_main!(benches);
