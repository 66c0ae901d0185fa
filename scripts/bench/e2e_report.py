#!/usr/bin/env python3
"""Helpers for scripts/bench/e2e.sh (Python standard library only).

    e2e_report.py hold-connections --port P --pid PID [--count 1000]
        Opens COUNT client connections to 127.0.0.1:P, checks each answers PING, then prints the
        largest VmRSS (kB) of PID seen over one second while they are all open.

    e2e_report.py fill --port P --keys N --size BYTES
        SETs key:000000000000 ... (redis-benchmark's `-r N` keys) to BYTES-byte values through
        127.0.0.1:P, pipelined, and checks every reply is +OK.

    e2e_report.py report --results FILE --calls FILE --failures FILE --meta FILE
        Prints the markdown report from e2e.sh's raw results: one line per redis-benchmark test,
        `scenario,target,round,requests,proxy_us,cluster_us,client_us,<redis-benchmark --csv line>`
        (CPU microseconds per request over the run), where the csv line is
        "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
        "p99_latency_ms","max_latency_ms" and test is SET, GET, MSET or MGET; for (f)-(h), one
        line per node and run with the node's GET, SET and WAIT calls during the run,
        `scenario,target,round,port,role,get,set,wait`; one line per failed run; and key=value
        metadata. The (f)-(h) part of the report is in e2e_flags.py.
"""

import argparse
import csv
import socket
import sys
import time

import e2e_flags

SCENARIOS = {
    "a": "(a) 50 clients",
    "b": "(b) 50 clients, -P 16",
    "c": "(c) 1 client",
    "d": "(d) 1000 clients",
    "i": "(i) 50 clients, 100 KB values",
    "j": "(j) 50 clients, 10 KB values",
    "k": "(k) 50 clients, a connection per request",
}
COMMANDS = ("SET", "GET")
# Scenario (e): MSET / MGET of MULTI_KEYS keys through the proxy against SET / GET direct, 50
# clients, no pipelining; compared in keys per second.
MULTI = "e"
MULTI_LABEL = "(e) 50 clients, 10 keys"
MULTI_PAIRS = (("MSET", "SET"), ("MGET", "GET"))
# Row order in "All runs": each multi-key command next to the single-key one it is compared with,
# and each scenario's target A before its target B.
COMMAND_ORDER = {"SET": 0, "MSET": 0, "GET": 1, "MGET": 1}
TARGET_ORDER = {"proxy": 0, "primary": 0, "ack-primary": 0}

# The targets.
MIN_RATIO = 0.8
MIN_LARGE_RATIO = 0.7
MAX_ADDED_P50_US = 40.0
MAX_RSS_MB = 15.0
MIN_KEYS_RATIO = 1.0


def rss_kb(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hold_connections(args):
    conns = []
    try:
        for _ in range(args.count):
            conn = socket.create_connection(("127.0.0.1", args.port), timeout=10)
            conns.append(conn)
        for conn in conns:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
        for conn in conns:
            got = b""
            while not got.endswith(b"\r\n"):
                chunk = conn.recv(64)
                if not chunk:
                    break
                got += chunk
            if got != b"+PONG\r\n":
                sys.exit(f"e2e_report: a connection answered {got!r} to PING")
        peak = 0
        for _ in range(5):
            peak = max(peak, rss_kb(args.pid))
            time.sleep(0.2)
        print(peak)
    finally:
        for conn in conns:
            conn.close()


def fill(args):
    value = b"x" * args.size
    batch = 1000
    with socket.create_connection(("127.0.0.1", args.port), timeout=30) as conn:
        for start in range(0, args.keys, batch):
            count = min(batch, args.keys - start)
            out = bytearray()
            for i in range(start, start + count):
                key = b"key:%012d" % i
                out += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(key),
                    key,
                    len(value),
                    value,
                )
            conn.sendall(out)
            want = b"+OK\r\n" * count
            got = b""
            while len(got) < len(want):
                chunk = conn.recv(65536)
                if not chunk:
                    sys.exit("e2e_report: the proxy closed the connection during fill")
                got += chunk
            if got != want:
                sys.exit(f"e2e_report: fill got an unexpected reply: {got[:200]!r}")


def read_meta(path):
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                meta[key] = value
    return meta


def read_results(path):
    """{(scenario, command, target): [run, ...]}, each run a dict of floats plus its round."""
    runs = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if not row:
                continue
            scenario, target, rnd, n, proxy_us, cluster_us, client_us, test = row[:8]
            rps, avg, lo, p50, p95, p99, hi = (float(x) for x in row[8:15])
            command = test.split()[0]
            runs.setdefault((scenario, command, target), []).append(
                {
                    "round": int(rnd),
                    "n": int(n),
                    "proxy_us": float(proxy_us),
                    "cluster_us": float(cluster_us),
                    "client_us": float(client_us),
                    "rps": rps,
                    "avg": avg,
                    "min": lo,
                    "p50": p50,
                    "p95": p95,
                    "p99": p99,
                    "max": hi,
                }
            )
    return runs


def best(runs):
    """The run with the most ops/s; its latencies are reported with it."""
    return max(runs, key=lambda r: r["rps"])


def mb(kb):
    return int(kb) / 1024


def verdict(ok):
    return "met" if ok else "**not met**"


def ops_cell(run):
    return f"{run['rps']:,.0f}" if run else "failed"


def latency_cell(run):
    return f"{run['p50']:.3f} / {run['p99']:.3f}" if run else "failed"


def best_of(runs, key):
    return best(runs[key]) if runs.get(key) else None


def report(args):
    meta = read_meta(args.meta)
    runs = read_results(args.results)
    with open(args.failures, encoding="utf-8") as f:
        failures = [line.strip() for line in f if line.strip()]
    out = []
    out.append(
        f"### slotproxy e2e, commit {meta.get('commit', '?')}, {meta.get('date', '?')}"
    )
    out.append("")
    out.append(
        f"- machine: {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), "
        f"{meta.get('kernel', '?')}; redis {meta.get('redis', '?')}; proxy, cluster "
        "(3 primaries + 3 replicas) and redis-benchmark all on this host"
    )
    out.append(
        f"- load average (1, 5, 15 min) before / after: {meta.get('load_start', '?')} / "
        f"{meta.get('load_end', '?')}"
    )
    keys = int(meta.get("multi_keys", "10"))
    ran = {key[0] for key in runs} | {f.split()[0] for f in failures}
    proxy_direct = [s for s in (*SCENARIOS, MULTI) if s in ran]
    if proxy_direct:
        out.append(
            "- `redis-benchmark -t set,get -d 64 -r 100000`, except through the proxy in "
            f"{MULTI_LABEL}: `-t mset` (`MSET` of {keys} keys `key:__rand_int__`, values of `-d 64` "
            f"bytes) and `MGET key:__rand_int__` x{keys}, each key with its own random number; "
            + (
                f"requests per test sized by a probe run for ~{meta.get('seconds', '?')} s per test"
                if meta.get("requests") == "probed"
                else f"E2E_REQUESTS={meta.get('requests', '?')}"
            )
            + f"; {meta.get('rounds', '?')} rounds alternating proxy and direct (`--cluster`); "
            "each cell is the best round by ops/s, with that round's latencies"
        )
        out.append("")
    ratios = {}
    added_p50 = {}
    shortest_direct = None
    if any(s in ran for s in SCENARIOS):
        out.append(
            "| scenario | cmd | proxy ops/s | direct ops/s | proxy/direct "
            "| proxy p50 / p99 ms | direct p50 / p99 ms |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|")
    for scenario, label in SCENARIOS.items():
        if scenario not in ran:
            continue
        for command in COMMANDS:
            proxy_runs = runs.get((scenario, command, "proxy"))
            direct_runs = runs.get((scenario, command, "direct"))
            if not proxy_runs and not direct_runs:
                continue
            p = best(proxy_runs) if proxy_runs else None
            d = best(direct_runs) if direct_runs else None
            ratio = "-"
            if d and d["rps"]:
                lasted = d["n"] / d["rps"]
                if shortest_direct is None or lasted < shortest_direct:
                    shortest_direct = lasted
            if p and d and d["rps"]:
                ratios[(scenario, command)] = p["rps"] / d["rps"]
                ratio = f"{p['rps'] / d['rps']:.2f}"
                if scenario == "c":
                    # Latency, not ops/s, is the point here: the lowest p50 of each side's rounds.
                    added_p50[command] = (
                        min(r["p50"] for r in proxy_runs) - min(r["p50"] for r in direct_runs)
                    ) * 1000
            out.append(
                f"| {label} | {command} | {ops_cell(p)} | {ops_cell(d)} | {ratio} "
                f"| {latency_cell(p)} | {latency_cell(d)} |"
            )
    if any(s in ran for s in SCENARIOS):
        out.append("")

    # (e): one MSET / MGET of `keys` keys through the proxy against `keys` SETs / GETs direct.
    keys_ratios = {}
    if any(key[0] == MULTI for key in runs):
        out.append(
            f"{MULTI_LABEL}, cross-slot: keys per second of one `MSET` / `MGET` of {keys} keys "
            "through the proxy against single-key `SET` / `GET` straight at the cluster "
            "(`--cluster`); p50 / p99 are per command"
        )
        out.append("")
        out.append(
            "| scenario | proxy cmd | proxy ops/s | proxy keys/s | direct cmd | direct keys/s "
            "| keys/s proxy/direct | proxy p50 / p99 ms | direct p50 / p99 ms |"
        )
        out.append("|---|---|---:|---:|---|---:|---:|---:|---:|")
        for multi_cmd, single_cmd in MULTI_PAIRS:
            p = best_of(runs, (MULTI, multi_cmd, "proxy"))
            d = best_of(runs, (MULTI, single_cmd, "direct"))
            ratio = "-"
            if d and d["rps"]:
                lasted = d["n"] / d["rps"]
                if shortest_direct is None or lasted < shortest_direct:
                    shortest_direct = lasted
            if p and d and d["rps"]:
                keys_ratios[multi_cmd] = p["rps"] * keys / d["rps"]
                ratio = f"{keys_ratios[multi_cmd]:.2f}"
            proxy_keys = f"{p['rps'] * keys:,.0f}" if p else "failed"
            out.append(
                f"| {MULTI_LABEL} | {multi_cmd} ({keys} keys) | {ops_cell(p)} | {proxy_keys} "
                f"| {single_cmd} | {ops_cell(d)} | {ratio} | {latency_cell(p)} "
                f"| {latency_cell(d)} |"
            )
        out.append("")

    rss_load = int(meta.get("rss_load_kb", "0"))
    rss_conns = int(meta.get("rss_conns_kb", "0"))
    if "rss_conns_kb" in meta:
        out.append(
            f"- proxy RSS: idle after start {mb(meta.get('rss_idle_start_kb', 0)):.1f} MB; "
            f"1000 idle connections (before any load) {mb(rss_conns):.1f} MB; "
            f"during (d), max of 0.2 s samples with >= 900 clients connected "
            f"(at most {meta.get('conns_max', '?')} seen) {mb(rss_load):.1f} MB; "
            f"idle after all runs {mb(meta.get('rss_idle_end_kb', 0)):.1f} MB"
        )
    cpu = []
    for scenario, label in SCENARIOS.items():
        # SET and GET rows of one run carry the same numbers; take the SET rows ((i) and (k)
        # have GET only).
        command = "GET" if scenario in ("i", "k") else "SET"
        p = runs.get((scenario, command, "proxy"), [])
        d = runs.get((scenario, command, "direct"), [])
        if p and d:
            bp, bd = best(p), best(d)
            cpu.append(
                f"{label}: proxy {bp['proxy_us']:.1f} + nodes {bp['cluster_us']:.1f} + "
                f"redis-benchmark {bp['client_us']:.1f} via the proxy; nodes "
                f"{bd['cluster_us']:.1f} + redis-benchmark {bd['client_us']:.1f} direct"
            )
    bp = best_of(runs, (MULTI, MULTI_PAIRS[0][0], "proxy"))
    bd = best_of(runs, (MULTI, MULTI_PAIRS[0][1], "direct"))
    if bp and bd:
        cpu.append(
            f"{MULTI_LABEL}: per `MSET`/`MGET` proxy {bp['proxy_us']:.1f} + nodes "
            f"{bp['cluster_us']:.1f} + redis-benchmark {bp['client_us']:.1f} via the proxy, that "
            f"is per key proxy {bp['proxy_us'] / keys:.1f} + nodes {bp['cluster_us'] / keys:.1f} + "
            f"redis-benchmark {bp['client_us'] / keys:.1f}; per `SET`/`GET` (one key) nodes "
            f"{bd['cluster_us']:.1f} + redis-benchmark {bd['client_us']:.1f} direct"
        )
    if cpu:
        out.append(
            "- CPU time (user + system) per request in us, of the runs in the tables (both tests "
            "of a run together: SET and GET, or MSET and MGET):"
        )
        out.extend(f"  - {line}" for line in cpu)
    if shortest_direct:
        out.append(
            "- `redis-benchmark --cluster` stops on its 250 ms timer, so a direct test may have "
            "ended up to 0.25 s before the time it is counted for: the shortest reported direct "
            f"test lasted {shortest_direct:.2f} s, so direct ops/s may be "
            + (
                f"up to {(shortest_direct / (shortest_direct - 0.25) - 1) * 100:.0f}% higher "
                if shortest_direct > 0.3
                else "much higher (raise E2E_SECONDS or E2E_REQUESTS) "
            )
            + "than shown, and the ratios flatter the proxy by as much"
        )
    overflows = int(meta.get("listen_overflows_proxy", "0"))
    if overflows:
        out.append(
            f"- listen queue overflows (machine-wide TcpExt ListenOverflows) during proxy runs: "
            f"{overflows}; clients whose SYN was dropped retry after 1 s"
        )
    for failure in failures:
        out.append(f"- FAILED run: {failure}")
    out.append(f"- wall time of the script: {meta.get('wall_s', '?')} s")
    out.append("")

    calls = e2e_flags.read_calls(args.calls)
    out.extend(e2e_flags.section(runs, calls, ran, meta))

    out.append("Targets from the issue:")
    out.append("")
    out.extend(e2e_flags.routing_check(calls, ran))
    unsure = (
        " (unreliable: direct tests under 1 s, see above)"
        if shortest_direct is not None and shortest_direct < 1.0
        else ""
    )
    for scenario in ("a", "b"):
        if scenario not in ran:
            continue
        ratio = ratios.get((scenario, "SET"))
        shown = (
            f"{ratio:.2f}x, {verdict(ratio >= MIN_RATIO)}{unsure}"
            if ratio is not None
            else "no data"
        )
        out.append(f"- SET in {SCENARIOS[scenario]} >= {MIN_RATIO}x direct: {shown}")
    if "i" in ran:
        ratio = ratios.get(("i", "GET"))
        shown = (
            f"{ratio:.2f}x, {verdict(ratio >= MIN_LARGE_RATIO)}" if ratio is not None else "no data"
        )
        out.append(f"- GET in {SCENARIOS['i']} >= {MIN_LARGE_RATIO}x direct: {shown}")
    for multi_cmd, single_cmd in MULTI_PAIRS if MULTI in ran else ():
        ratio = keys_ratios.get(multi_cmd)
        shown = (
            f"{ratio:.2f}x, {verdict(ratio >= MIN_KEYS_RATIO)}{unsure}"
            if ratio is not None
            else "no data"
        )
        out.append(
            f"- keys/s of cross-slot {multi_cmd} of {keys} keys via the proxy >= "
            f"{MIN_KEYS_RATIO:.1f}x keys/s of single-key {single_cmd} direct, {MULTI_LABEL}: "
            f"{shown}"
        )
    for command in COMMANDS if "c" in ran else ():
        us = added_p50.get(command)
        shown = f"{us:.0f} us, {verdict(us <= MAX_ADDED_P50_US)}" if us is not None else "no data"
        out.append(
            f"- added p50 latency, 1 client, {command} (lowest proxy p50 - lowest direct p50 "
            "of the rounds; redis-benchmark's histogram has 8 us steps here) "
            f"<= {MAX_ADDED_P50_US:.0f} us: {shown}"
        )
    if "rss_conns_kb" in meta:
        worst_rss = mb(max(rss_load, rss_conns))
        out.append(
            f"- RSS with 1000 connected clients <= {MAX_RSS_MB:.0f} MB: {worst_rss:.1f} MB "
            f"(larger of idle and under load), {verdict(worst_rss <= MAX_RSS_MB)}"
        )
    out.append("")

    out.append("<details><summary>All runs</summary>")
    out.append("")
    out.append(
        "| scenario | cmd | target | round | requests | ops/s | p50 / p95 / p99 / max ms "
        "| CPU us/req: proxy / nodes / redis-benchmark |"
    )
    out.append("|---|---|---|---:|---:|---:|---:|---:|")
    for (scenario, command, target), target_runs in sorted(
        runs.items(),
        key=lambda kv: (kv[0][0], COMMAND_ORDER[kv[0][1]], TARGET_ORDER.get(kv[0][2], 9)),
    ):
        for r in sorted(target_runs, key=lambda r: r["round"]):
            cpu = f"{r['proxy_us']:.1f} / {r['cluster_us']:.1f} / {r['client_us']:.1f}"
            out.append(
                f"| {scenario} | {command} | {target} | {r['round']} | {r['n']:,} | {r['rps']:,.0f} "
                f"| {r['p50']:.3f} / {r['p95']:.3f} / {r['p99']:.3f} / {r['max']:.3f} | {cpu} |"
            )
    out.append("")
    out.append("</details>")
    print("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    hold = sub.add_parser("hold-connections")
    hold.add_argument("--port", type=int, required=True)
    hold.add_argument("--pid", type=int, required=True)
    hold.add_argument("--count", type=int, default=1000)
    fill_cmd = sub.add_parser("fill")
    fill_cmd.add_argument("--port", type=int, required=True)
    fill_cmd.add_argument("--keys", type=int, required=True)
    fill_cmd.add_argument("--size", type=int, required=True)
    rep = sub.add_parser("report")
    rep.add_argument("--results", required=True)
    rep.add_argument("--calls", required=True)
    rep.add_argument("--failures", required=True)
    rep.add_argument("--meta", required=True)
    args = parser.parse_args()
    if args.cmd == "hold-connections":
        hold_connections(args)
    elif args.cmd == "fill":
        fill(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
