//! The per-request cost of the ACL check: the default user (`+@all ~* &*`: one bit test) and
//! a restricted user (`~revenue:* &alerts +@all -@dangerous`: a bit test, key extraction and
//! one glob per key pattern).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use slotproxy::auth::{User, apply_all, check, split_rules};
use slotproxy::command::{CommandTable, KeyRef, Resolved};

fn request(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn acl_check(c: &mut Criterion) {
    let table = CommandTable::builtin();
    let default = User::default_user(&table);
    let mut revenue = User::new("revenue", &table);
    apply_all(
        &mut revenue,
        split_rules("on >secret ~revenue:* &alerts +@all -@dangerous"),
        &table,
    )
    .expect("valid rules");
    let mget: Vec<String> = std::iter::once("MGET".to_owned())
        .chain((0..10).map(|i| format!("revenue:{i}")))
        .collect();
    let mget: Vec<&str> = mget.iter().map(String::as_str).collect();
    let cases = [
        ("get", request(&["GET", "revenue:1"])),
        ("set", request(&["SET", "revenue:1", "value"])),
        ("mget_10", request(&mget)),
        ("publish", request(&["PUBLISH", "alerts", "hello"])),
        ("denied_flushall", request(&["FLUSHALL"])),
    ];
    let mut group = c.benchmark_group("acl_check");
    for (user_name, user) in [("default", &default), ("revenue", &revenue)] {
        for (name, args) in &cases {
            let Resolved::Command(spec) = table.resolve(args) else {
                panic!("{name}: unknown command");
            };
            let mut scratch: Vec<KeyRef> = Vec::with_capacity(16);
            group.bench_function(format!("{user_name}/{name}"), |b| {
                b.iter(|| black_box(check(user, spec, black_box(args), &mut scratch).is_ok()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, acl_check);
criterion_main!(benches);
