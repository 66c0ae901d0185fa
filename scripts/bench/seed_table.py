#!/usr/bin/env python3
"""The seed document's benchmark table, through slotproxy and directly against the cluster.

The seed (shared/seeds/guerrilla-redis-cluster.md, "Benchmark Results") reports, for a Python
application on redis-py, the throughput and average / p95 / p99 latency of SET/GET, hash
operations, pub/sub and concurrent reads. This script measures the same four rows with the same
kind of client: redis-py's plain `Redis` pointed at slotproxy (what an unchanged app does), and
redis-py's `RedisCluster` pointed at the cluster (what an app does without a proxy). The two
sides alternate (proxy, direct, proxy, direct, ...) for `--rounds` rounds so that a noisy machine
hurts both alike; the table keeps the median round of each.

Rows (each operation is one command and one round trip, timed on its own):
  SET/GET           one client: SET seed:<i> <64 bytes>, then GET seed:<i>
  Hash Ops          one client: HSET wallet:<i> (3 fields), then HGETALL wallet:<i>
  Pub/Sub           one client publishes to a channel another client subscribes to; the
                    publish round trip is timed and every message must arrive
  Concurrent Reads  --threads clients at once, each GET of keys written beforehand

Usage:
  python3 scripts/bench/seed_table.py --proxy 127.0.0.1:6379 --cluster 127.0.0.1:7000 \
      [--ops 2000] [--rounds 3] [--threads 10]
Prints a markdown table on stdout; exits 1 if any reply was wrong or a message was lost.
"""

import argparse
import statistics
import sys
import threading
import time

import redis
from redis.cluster import RedisCluster

VALUE = b"v" * 64


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def timed(samples, call):
    start = time.perf_counter()
    result = call()
    samples.append(time.perf_counter() - start)
    return result


def set_get(client, ops, tag):
    samples = []
    for i in range(ops // 2):
        key = f"seed:{tag}:{i}"
        timed(samples, lambda: client.set(key, VALUE))
        if timed(samples, lambda: client.get(key)) != VALUE:
            raise AssertionError(f"GET {key} returned the wrong value")
    return samples


def hash_ops(client, ops, tag):
    samples = []
    fields = {"risk": "95", "owner": "ABC123", "status": "active"}
    for i in range(ops // 2):
        key = f"wallet:{tag}:{i}"
        timed(samples, lambda: client.hset(key, mapping=fields))
        got = timed(samples, lambda: client.hgetall(key))
        if got != {k.encode(): v.encode() for k, v in fields.items()}:
            raise AssertionError(f"HGETALL {key} returned {got!r}")
    return samples


def pubsub(publisher, subscriber, ops, tag):
    channel = f"alerts:{tag}"
    pubsub = subscriber.pubsub()
    pubsub.subscribe(channel)
    # Wait for the subscription to be in place before publishing.
    deadline = time.time() + 5
    while time.time() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "subscribe":
            break
    received = []

    def listen():
        while len(received) < ops:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                if time.time() > listen_deadline[0]:
                    return
                continue
            if message["type"] == "message":
                received.append(message["data"])

    listen_deadline = [time.time() + 60]
    listener = threading.Thread(target=listen)
    listener.start()
    samples = []
    for i in range(ops):
        payload = f'{{"alert_id": "ALERT{i:06d}", "risk": 95}}'
        timed(samples, lambda: publisher.publish(channel, payload))
    listen_deadline[0] = time.time() + 5
    listener.join()
    pubsub.close()
    if len(received) != ops:
        raise AssertionError(f"pub/sub: {len(received)} of {ops} messages arrived")
    return samples


def concurrent_reads(make_client, ops, threads, tag):
    writer = make_client()
    keys = [f"read:{tag}:{i}" for i in range(200)]
    for key in keys:
        writer.set(key, VALUE)
    per_thread = max(1, ops // threads)
    results = [None] * threads
    clients = [make_client() for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def reader(n):
        samples = []
        client = clients[n]
        barrier.wait()
        for i in range(per_thread):
            if timed(samples, lambda: client.get(keys[(n * 7 + i) % len(keys)])) != VALUE:
                raise AssertionError("concurrent GET returned the wrong value")
        results[n] = samples

    workers = [threading.Thread(target=reader, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if any(r is None for r in results):
        raise AssertionError("a reader thread failed")
    samples = [s for r in results for s in r]
    return samples, elapsed


def summary(samples, elapsed=None):
    ordered = sorted(samples)
    total = elapsed if elapsed is not None else sum(samples)

    def pct(p):
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]

    return {
        "ops": len(samples) / total,
        "avg": statistics.fmean(samples) * 1000,
        "p95": pct(0.95) * 1000,
        "p99": pct(0.99) * 1000,
    }


def run_side(side, make_client, args, round_no):
    tag = f"{side}{round_no}"
    rows = {}
    client = make_client()
    rows["SET/GET"] = summary(set_get(client, args.ops, tag))
    rows["Hash Ops"] = summary(hash_ops(client, args.ops, tag))
    rows["Pub/Sub"] = summary(pubsub(make_client(), make_client(), args.ops, tag))
    samples, elapsed = concurrent_reads(make_client, args.ops * 2, args.threads, tag)
    rows["Concurrent Reads"] = summary(samples, elapsed)
    return rows


def median_round(rounds, row):
    """The round whose throughput is the median for this row."""
    ordered = sorted(rounds, key=lambda r: r[row]["ops"])
    return ordered[len(ordered) // 2][row]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxy", required=True, help="slotproxy host:port")
    parser.add_argument("--cluster", required=True, help="one cluster node host:port")
    parser.add_argument("--ops", type=int, default=2000, help="operations per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=10, help="clients for Concurrent Reads")
    args = parser.parse_args()

    proxy_host, proxy_port = parse_addr(args.proxy)
    node_host, node_port = parse_addr(args.cluster)

    def proxy_client():
        return redis.Redis(host=proxy_host, port=proxy_port)

    cluster = RedisCluster(host=node_host, port=node_port)

    def cluster_client():
        # One cluster client per thread, as an app would use per worker.
        return RedisCluster(host=node_host, port=node_port)

    proxy_rounds, direct_rounds = [], []
    for round_no in range(args.rounds):
        print(f"seed_table: round {round_no + 1} of {args.rounds}", file=sys.stderr)
        proxy_rounds.append(run_side("p", proxy_client, args, round_no))
        direct_rounds.append(run_side("d", cluster_client, args, round_no))
    cluster.close()

    rows = ["SET/GET", "Hash Ops", "Pub/Sub", "Concurrent Reads"]
    print(f"redis-py {redis.__version__}; {args.ops} operations per row "
          f"({args.ops * 2} for Concurrent Reads, {args.threads} threads); "
          f"median of {args.rounds} interleaved rounds")
    print()
    print("| Operation | through slotproxy: ops/s | avg | p95 | p99 "
          "| direct (RedisCluster): ops/s | avg | p95 | p99 | throughput ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        p = median_round(proxy_rounds, row)
        d = median_round(direct_rounds, row)
        print(f"| {row} | {p['ops']:,.0f} | {p['avg']:.2f} ms | {p['p95']:.2f} ms "
              f"| {p['p99']:.2f} ms | {d['ops']:,.0f} | {d['avg']:.2f} ms "
              f"| {d['p95']:.2f} ms | {d['p99']:.2f} ms | {p['ops'] / d['ops']:.2f}x |")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"seed_table: {error}", file=sys.stderr)
        sys.exit(1)
