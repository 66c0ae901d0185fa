//! The per-request cost of framing: splitting a read buffer of 100 pipelined requests into
//! `Request`s, and a node's read buffer of 100 replies into `Reply`s.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use slotproxy::protocol::{Protocol, ReplyDecoder, RequestDecoder};

/// Requests in each pipeline, and replies in each reply buffer.
const PIPELINE: usize = 100;
/// redis-server's default `proto-max-bulk-len`, the proxy's default too.
const MAX_BULK_LEN: usize = 512 * 1024 * 1024;

fn push_multibulk(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn get_pipeline() -> BytesMut {
    let mut out = Vec::new();
    for i in 0..PIPELINE {
        push_multibulk(&mut out, &[b"GET", format!("key:{i}").as_bytes()]);
    }
    BytesMut::from(&out[..])
}

fn set_pipeline(value: &[u8]) -> BytesMut {
    let mut out = Vec::new();
    for i in 0..PIPELINE {
        push_multibulk(&mut out, &[b"SET", format!("key:{i}").as_bytes(), value]);
    }
    BytesMut::from(&out[..])
}

fn bulk_replies(value: &[u8]) -> BytesMut {
    let mut out = Vec::new();
    for _ in 0..PIPELINE {
        out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    BytesMut::from(&out[..])
}

/// Decodes every request in `buf`; panics unless there are exactly `PIPELINE`.
fn decode_requests(mut buf: BytesMut) -> usize {
    let mut decoder = RequestDecoder::new(MAX_BULK_LEN);
    let mut n = 0;
    while let Some(request) = decoder
        .decode(&mut buf)
        .expect("the bench builds valid RESP")
    {
        black_box(&request);
        n += 1;
    }
    assert_eq!(n, PIPELINE, "every request decodes");
    n
}

/// Decodes every reply in `buf`; panics unless there are exactly `PIPELINE`.
fn decode_replies(mut buf: BytesMut) -> usize {
    let decoder = ReplyDecoder::new(Protocol::Resp2);
    let mut n = 0;
    while let Some(reply) = decoder
        .decode(&mut buf)
        .expect("the bench builds valid RESP")
    {
        black_box(&reply);
        n += 1;
    }
    assert_eq!(n, PIPELINE, "every reply decodes");
    n
}

fn codec(c: &mut Criterion) {
    let value = [b'v'; 64];
    let gets = get_pipeline();
    let sets = set_pipeline(&value);
    let replies = bulk_replies(&value);

    let mut group = c.benchmark_group("codec");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .throughput(Throughput::Elements(PIPELINE as u64));
    // The buffer is consumed by decoding, so each iteration gets a fresh copy, made outside the
    // timed section.
    group.bench_function("request_get_x100", |b| {
        b.iter_batched(|| gets.clone(), decode_requests, BatchSize::SmallInput)
    });
    group.bench_function("request_set_64b_x100", |b| {
        b.iter_batched(|| sets.clone(), decode_requests, BatchSize::SmallInput)
    });
    group.bench_function("reply_bulk_64b_x100", |b| {
        b.iter_batched(|| replies.clone(), decode_replies, BatchSize::SmallInput)
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
