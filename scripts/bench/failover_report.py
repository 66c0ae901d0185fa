#!/usr/bin/env python3
"""Markdown report of scripts/bench/failover_timeline.sh (Python standard library only).

    failover_report.py --load FILE --events FILE --meta FILE

FILE of --load is examples/failover_load.rs's output: `# key=value` comment lines, then a CSV
table with one row per second of the run. --events has one `unix_ms text` line per event the
script saw (the kill, the fail flag, the promotion); --meta has key=value lines.
"""

import argparse
import csv
import io

# Run as `python3 scripts/bench/failover_report.py`: its folder is on the path.
from e2e_report import read_meta

# A second counts as recovered when its successful requests reach this share of the rate
# before the kill.
RECOVERED = 0.9


def read_load(path):
    """(comments {key: value}, samples [(kind, message)], rows [dict])."""
    comments, samples, table = {}, [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# sample "):
                kind, _, message = line[len("# sample ") :].rstrip("\n").partition(": ")
                samples.append((kind, message))
            elif line.startswith("#"):
                for word in line[1:].split():
                    key, sep, value = word.partition("=")
                    if sep:
                        comments[key] = value
            else:
                table.append(line)
    rows = []
    for row in csv.DictReader(io.StringIO("".join(table))):
        rows.append(
            {
                "second": int(row["second"]),
                "set": int(row["ok_set"]),
                "get": int(row["ok_get"]),
                "lost": int(row["lost"]),
                "errors": int(row["errors"]),
                "kinds": row["error_kinds"],
                "p50": int(row["p50_us"]) / 1000,
                "p99": int(row["p99_us"]) / 1000,
                "max": int(row["max_us"]) / 1000,
            }
        )
    return comments, samples, rows


def read_events(path, start_ms):
    """[(seconds since the load started, text)]."""
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            ms, _, text = line.rstrip("\n").partition(" ")
            if ms:
                events.append(((int(ms) - start_ms) / 1000, text))
    return events


def error_totals(rows):
    totals = {}
    for row in rows:
        for item in filter(None, row["kinds"].split(";")):
            kind, _, n = item.partition("=")
            totals[kind] = totals.get(kind, 0) + int(n)
    return totals


def report(args):
    meta = read_meta(args.meta)
    comments, samples, rows = read_load(args.load)
    start_ms = int(comments.get("start_unix_ms", "0"))
    events = read_events(args.events, start_ms)
    kill_at = next((t for t, text in events if text.startswith("kill")), None)
    out = [
        f"### Failover timeline, `--ack {meta.get('ack', '?')}`, commit {meta.get('commit', '?')}, "
        f"{meta.get('date', '?')}",
        "",
        f"- setup: 3 primaries + 3 replicas (redis {meta.get('redis', '?')}, "
        f"cluster-node-timeout {meta.get('node_timeout_ms', '?')} ms, no persistence); slotproxy "
        f"with `--ack {meta.get('ack', '?')}`, other settings default; "
        f"{comments.get('clients', '?')} clients (examples/failover_load.rs), one connection "
        f"each, alternating SET and GET of their own {comments.get('keys_per_client', '?')} keys "
        f"(64-byte values) for {comments.get('seconds', '?')} s; all on one {meta.get('nproc', '?')}"
        "-CPU machine shared with other work",
        f"- load average (1, 5, 15 min) before / after: {meta.get('load_start', '?')} / "
        f"{meta.get('load_end', '?')}",
    ]
    if events:
        shown = []
        for t, text in events:
            since = f" (kill +{t - kill_at:.2f} s)" if kill_at is not None and t != kill_at else ""
            shown.append(f"{text} at {t:.2f} s{since}")
        out.append("- events, in seconds since the load started: " + "; ".join(shown))
    ok = {r["second"]: r["set"] + r["get"] for r in rows}
    if kill_at is not None and rows:
        kill_second = int(kill_at)
        # Second 0 includes connecting and warming up: leave it out when there are others.
        first = 1 if kill_second > 1 else 0
        before = [ok[s] for s in range(first, kill_second) if s in ok]
        if before:
            base = sum(before) / len(before)
            low = {s for s in ok if ok[s] < RECOVERED * base}
            # The dip: from the first second below RECOVERED since the kill (the kill's own
            # second may still be mostly before it) to the first one back above it.
            dip = min((s for s in low if s >= kill_second), default=None)
            back = dip
            while back is not None and back in low:
                back += 1
            summary = (
                f"- successful requests before the kill: {base:,.0f}/s (mean of seconds "
                f"{first}-{kill_second - 1}); "
            )
            if dip is None:
                summary += f"no second from the kill on below {RECOVERED:.0%} of that"
            elif back > max(ok):
                summary += (
                    f"below {RECOVERED:.0%} of that from second {dip} to the end of the "
                    "run: **not back by the end of the run**"
                )
            else:
                summary += (
                    f"below {RECOVERED:.0%} of that in "
                    + (f"second {dip}" if dip == back - 1 else f"seconds {dip}-{back - 1}")
                    + ", back "
                    f"from second {back} on ({back - kill_at:.1f} s after the kill)"
                )
                later = sorted(s for s in low if s > back)
                if later:
                    summary += (
                        f"; later seconds below {RECOVERED:.0%}: "
                        f"{', '.join(str(s) for s in later)} (this machine is shared: compare "
                        "with the seconds before the kill)"
                    )
            out.append(summary)
    totals = error_totals(rows)
    errors = sum(totals.values())
    out.append(
        f"- requests that got an error: {errors:,}"
        + (
            " (" + ", ".join(f"{kind} {n:,}" for kind, n in sorted(totals.items())) + ")"
            if totals
            else ""
        )
    )
    for kind, message in samples:
        out.append(f"  - `{kind}`: `{message}`")
    out.append(
        f"- lost writes (a GET missing a write the proxy had acknowledged): "
        f"{sum(r['lost'] for r in rows):,} during the run; final read of all "
        f"{comments.get('keys', '?')} keys after the run: "
        f"{comments.get('lost', '?')} acknowledged writes missing, "
        f"{comments.get('unreadable', '?')} keys unreadable"
    )
    out.append(f"- `WARN` lines in the proxy's log: {meta.get('proxy_warnings', '?')}")
    out.append("")
    out.append(
        "| s | ok/s | SET ok | GET ok | errors | errors by kind | lost | p50 ms | p99 ms "
        "| max ms | event |"
    )
    out.append("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for r in rows:
        marks = [
            f"{text} (+{t - r['second']:.2f})" for t, text in events if int(t) == r["second"]
        ]
        kinds = r["kinds"].replace(";", ", ").replace("=", " ")
        out.append(
            f"| {r['second']} | {ok[r['second']]:,} | {r['set']:,} | {r['get']:,} "
            f"| {r['errors']:,} | {kinds} | {r['lost']} | {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {r['max']:.1f} | {'; '.join(marks)} |"
        )
    late = [(t, text) for t, text in events if rows and int(t) > rows[-1]["second"]]
    for t, text in late:
        out.append(f"| - | | | | | | | | | | {text} at {t:.2f} s, after the run |")
    print("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--meta", required=True)
    report(parser.parse_args())


if __name__ == "__main__":
    main()
