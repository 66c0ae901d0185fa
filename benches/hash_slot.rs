//! The per-key cost of routing: CRC16 of the key (or its hash tag), modulo 16384.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slotproxy::cluster::hash_slot;
use std::time::Duration;

fn hash_slot_bench(c: &mut Criterion) {
    let key_64: Vec<u8> = (0..64u8).map(|i| b'a' + i % 26).collect();
    let key_1k: Vec<u8> = (0..1024u32)
        .map(|i| b'a' + u8::try_from(i % 26).expect("i % 26 fits in a u8"))
        .collect();
    let cases: [(&str, &[u8]); 4] = [
        ("short", b"user:1000"),
        ("tagged", b"{user1000}.following"),
        ("64_bytes", &key_64),
        ("1_kib", &key_1k),
    ];
    let mut group = c.benchmark_group("hash_slot");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for (name, key) in cases {
        group.throughput(Throughput::Bytes(key.len() as u64));
        group.bench_function(name, |b| b.iter(|| hash_slot(black_box(key))));
    }
    group.finish();
}

criterion_group!(benches, hash_slot_bench);
criterion_main!(benches);
