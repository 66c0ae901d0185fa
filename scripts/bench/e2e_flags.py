"""The (f)-(h) part of e2e.sh's report: one proxy flag against another, same cluster, same run.

(f) GET through a proxy with `--read-policy primary` (A) against one with `prefer-replica` (B),
and where the GETs went: each node's `cmdstat_get` calls during the measured runs, summed by
role. (g) SET through a proxy with `--ack primary` (A) against one with `--ack replicated` (B),
and (h) the same with `-P 16`, with the SET and WAIT calls the primaries served: ack replicated
follows each batch of writes to a node with one `WAIT 1`, so SETs per WAIT is the batch size.
"""

import csv

# scenario: label, command, target A, target B, the flag that differs
FLAGS = {
    "f": ("(f) 50 clients", "GET", "primary", "prefer-replica", "--read-policy"),
    "g": ("(g) 50 clients", "SET", "ack-primary", "ack-replicated", "--ack"),
    "h": ("(h) 50 clients, -P 16", "SET", "ack-primary", "ack-replicated", "--ack"),
}
# With prefer-replica, at least this share of the GETs must reach replicas (each shard has one).
MIN_REPLICA_SHARE = 0.99


def read_calls(path):
    """{(scenario, target): {"master"|"slave": {"get": n, "set": n, "wait": n}}}, over all rounds."""
    calls = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if not row:
                continue
            scenario, target, _round, _port, role, get, set_, wait = row
            by_role = calls.setdefault((scenario, target), {})
            sums = by_role.setdefault(role, {"get": 0, "set": 0, "wait": 0})
            sums["get"] += int(get)
            sums["set"] += int(set_)
            sums["wait"] += int(wait)
    return calls


def _best(runs):
    return max(runs, key=lambda r: r["rps"]) if runs else None


def _cell(run):
    return f"{run['rps']:,.0f}" if run else "failed"


def _latency(run):
    return f"{run['p50']:.3f} / {run['p99']:.3f}" if run else "failed"


def _round_ratios(a_runs, b_runs):
    """B/A of each round in which both targets ran, in round order."""
    a = {r["round"]: r["rps"] for r in a_runs}
    b = {r["round"]: r["rps"] for r in b_runs}
    return [b[n] / a[n] for n in sorted(a) if n in b and a[n]]


def _sent(runs):
    return sum(r["n"] for r in runs)


def _calls(calls, scenario, target, role, command):
    return calls.get((scenario, target), {}).get(role, {}).get(command, 0)


def replica_share(calls, scenario, target):
    """Share of the GET calls of SCENARIO/TARGET that replicas served, or None without any."""
    on_primaries = _calls(calls, scenario, target, "master", "get")
    on_replicas = _calls(calls, scenario, target, "slave", "get")
    total = on_primaries + on_replicas
    return on_replicas / total if total else None


def section(runs, calls, ran, meta):
    """Markdown lines for (f)-(h); empty when none of them ran."""
    present = [s for s in FLAGS if s in ran]
    if not present:
        return []
    sized = (
        f"requests per test sized by a probe run for ~{meta.get('seconds', '?')} s per test"
        if meta.get("requests") == "probed"
        else f"E2E_REQUESTS={meta.get('requests', '?')}"
    )
    out = [
        "(f)-(h): the same `redis-benchmark -d 64 -r 100000` test through two slotproxy "
        "processes in front of the same cluster, one flag apart; "
        f"{sized}; {meta.get('rounds', '?')} rounds alternating A and B. Each ops/s cell is the "
        "best round, with that round's latencies; B/A compares the best rounds, and per round "
        "the two runs next to each other. (f) runs after all 100000 keys were set, so every GET "
        "finds a 64-byte value.",
        "",
        "| scenario | cmd | A | A ops/s | B | B ops/s | B/A best | B/A per round "
        "| A p50 / p99 ms | B p50 / p99 ms | CPU us/req A: proxy / nodes | B: proxy / nodes |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in present:
        label, command, a_name, b_name, flag = FLAGS[scenario]
        a_runs = runs.get((scenario, command, a_name), [])
        b_runs = runs.get((scenario, command, b_name), [])
        a, b = _best(a_runs), _best(b_runs)
        ratio = f"{b['rps'] / a['rps']:.2f}" if a and b and a["rps"] else "-"
        per_round = ", ".join(f"{x:.2f}" for x in _round_ratios(a_runs, b_runs)) or "-"
        cpu_a = f"{a['proxy_us']:.1f} / {a['cluster_us']:.1f}" if a else "-"
        cpu_b = f"{b['proxy_us']:.1f} / {b['cluster_us']:.1f}" if b else "-"
        out.append(
            f"| {label} | {command} | `{flag} {a_name.removeprefix('ack-')}` | {_cell(a)} "
            f"| `{flag} {b_name.removeprefix('ack-')}` | {_cell(b)} | {ratio} | {per_round} "
            f"| {_latency(a)} | {_latency(b)} | {cpu_a} | {cpu_b} |"
        )
    out.append("")

    if "f" in present:
        out += [
            "(f) where the GETs went: `cmdstat_get` calls each node served during the measured "
            "rounds (probes excluded), summed over the rounds and by the node's role",
            "",
            "| read policy | GETs sent | GET calls on primaries | GET calls on replicas "
            "| share on replicas |",
            "|---|---:|---:|---:|---:|",
        ]
        for target in FLAGS["f"][2:4]:
            share = replica_share(calls, "f", target)
            out.append(
                f"| {target} | {_sent(runs.get(('f', 'GET', target), [])):,} "
                f"| {_calls(calls, 'f', target, 'master', 'get'):,} "
                f"| {_calls(calls, 'f', target, 'slave', 'get'):,} "
                f"| {'-' if share is None else f'{share * 100:.1f}%'} |"
            )
        out.append("")

    writes = [s for s in ("g", "h") if s in present]
    if writes:
        out += [
            "(g)/(h) what the primaries served during the measured rounds: SET calls, and the "
            "`WAIT 1` calls `--ack replicated` adds (one per batch of writes to a node)",
            "",
            "| scenario | ack | SETs sent | SET calls on primaries | WAIT calls on primaries "
            "| SETs per WAIT |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for scenario in writes:
            label = FLAGS[scenario][0]
            for target in FLAGS[scenario][2:4]:
                sets = _calls(calls, scenario, target, "master", "set")
                waits = _calls(calls, scenario, target, "master", "wait")
                out.append(
                    f"| {label} | {target.removeprefix('ack-')} "
                    f"| {_sent(runs.get((scenario, 'SET', target), [])):,} | {sets:,} "
                    f"| {waits:,} | {f'{sets / waits:.1f}' if waits else '-'} |"
                )
        out.append("")
    return out


def routing_check(calls, ran):
    """The check that prefer-replica moved the reads: a target line, or nothing without (f)."""
    if "f" not in ran:
        return []
    primary = replica_share(calls, "f", "primary")
    replica = replica_share(calls, "f", "prefer-replica")
    if primary is None or replica is None:
        return ["- (f) GETs with `--read-policy prefer-replica` reach replicas: no data"]
    ok = replica >= MIN_REPLICA_SHARE and primary <= 1 - MIN_REPLICA_SHARE
    return [
        f"- (f) GETs with `--read-policy prefer-replica` reach replicas (>= "
        f"{MIN_REPLICA_SHARE * 100:.0f}% of GET calls on replicas, and <= "
        f"{(1 - MIN_REPLICA_SHARE) * 100:.0f}% with `primary`): {replica * 100:.1f}% and "
        f"{primary * 100:.1f}%, {'met' if ok else '**not met**'}"
    ]
