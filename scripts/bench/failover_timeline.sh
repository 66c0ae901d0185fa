#!/usr/bin/env bash
# Failover timeline: ops/s through slotproxy, second by second, across kill -9 of a primary.
#
# Usage (from anywhere; it cds to the repository root):
#   bash scripts/bench/failover_timeline.sh [--ack primary|replicated] [--out FILE]
#     --ack MODE   the proxy's --ack (default primary)
#     --out FILE   also append the markdown report to FILE
#
# What it does:
#   1. cargo build --release --locked --bin slotproxy --example failover_load
#   2. starts a throwaway six-node cluster (3 primaries + 3 replicas, no persistence) with
#      cluster-node-timeout $FT_NODE_TIMEOUT_MS on 127.0.0.1:$FT_BASE_PORT..+5, and slotproxy
#      (--ack MODE) on $FT_BASE_PORT+10
#   3. runs examples/failover_load.rs: $FT_CLIENTS clients, each with its own connection and
#      keys spread over all slots, alternating SET and GET for $FT_SECONDS s
#   4. after $FT_KILL_AFTER s, kill -9 of one primary; then polls every 0.1 s until the other
#      nodes flag it `fail` and its replica is a primary (in another primary's CLUSTER NODES)
#   5. prints a markdown report: when each event happened, and per second of the run: successful
#      SETs and GETs, errors by kind, latency, and lost writes (a GET that misses a write the
#      proxy acknowledged); plus a final read of every key for acknowledged writes gone for good
# Everything it started is stopped on exit, Ctrl-C included.
#
# Environment:
#   FT_BASE_PORT        first node port (default 17200); bus ports +10000, proxy +10
#   FT_NODE_TIMEOUT_MS  cluster-node-timeout of every node (default 2000)
#   FT_CLIENTS          load clients (default 20)
#   FT_SECONDS          length of the load run (default 20)
#   FT_KILL_AFTER       seconds into the run when the primary is killed (default 5)
#   FT_KEEP=1           keep the temp dir (node, proxy and load logs) after exit
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/cluster.sh
source "$repo_root/scripts/lib/cluster.sh"
# shellcheck source=scripts/bench/lib.sh
source "$repo_root/scripts/bench/lib.sh"
cd "$repo_root"

say() { printf 'failover-timeline: %s\n' "$*" >&2; }
die() {
    printf 'failover-timeline: error: %s\n' "$*" >&2
    exit 1
}

ack=primary
out_file=
while (($# > 0)); do
    case $1 in
    --ack)
        (($# >= 2)) || die "--ack needs primary or replicated"
        ack=$2
        shift 2
        ;;
    --out)
        (($# >= 2)) || die "--out needs a file"
        out_file=$(realpath -m "$2")
        shift 2
        ;;
    -h | --help)
        sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (usage: bash scripts/bench/failover_timeline.sh [--ack MODE] [--out FILE])" ;;
    esac
done
[[ $ack == primary || $ack == replicated ]] || die "--ack must be primary or replicated, got '$ack'"

base_port=${FT_BASE_PORT:-17200}
node_timeout_ms=${FT_NODE_TIMEOUT_MS:-2000}
clients=${FT_CLIENTS:-20}
seconds=${FT_SECONDS:-20}
kill_after=${FT_KILL_AFTER:-5}
for n in "$base_port" "$node_timeout_ms" "$clients" "$seconds" "$kill_after"; do
    [[ $n =~ ^[0-9]+$ ]] || die "FT_* settings must be whole numbers, got '$n'"
done
((base_port >= 1024 && base_port + 10 + 10000 <= 65535)) || die "FT_BASE_PORT must be in 1024..55525"
((kill_after >= 1 && kill_after < seconds)) || die "FT_KILL_AFTER must be at least 1 and below FT_SECONDS"
for tool in cargo redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || die "$tool not found in PATH"
done
proxy_port=$((base_port + 10))
for i in 0 1 2 3 4 5; do ports_free $((base_port + i)) $((base_port + i + 10000)); done
ports_free "$proxy_port"

load_start=$(uptime | sed 's/.*load average: //')
say "uptime before start: $(uptime)"
say "building slotproxy and the load generator (cargo build --release --locked)"
cargo build --release --locked --bin slotproxy --example failover_load >&2
proxy_bin=$repo_root/target/release/slotproxy
load_bin=$repo_root/target/release/examples/failover_load
[[ -x $proxy_bin && -x $load_bin ]] || die "the build did not produce $proxy_bin and $load_bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/slotproxy-failover.XXXXXX")
keep_work=${FT_KEEP:-}
start_cluster "$base_port" "$node_timeout_ms"
start_proxy main "$proxy_port" --ack "$ack"

victim=${primaries[0]}
heir=${replica_of[$victim]}
observer=${primaries[1]}
victim_id=$(cli "$victim" cluster myid | tr -d '\r')
heir_id=$(cli "$heir" cluster myid | tr -d '\r')
events=$work/events.txt
: >"$events"
now_ms() { date +%s%3N; }
event() { printf '%s %s\n' "$(now_ms)" "$1" >>"$events"; }

# Flags of node ID in the observer's CLUSTER NODES ("master,fail", "slave", ...).
flags_of() {
    cli "$observer" cluster nodes 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'
}

say "load: $clients clients for $seconds s through the proxy (--ack $ack); kill -9 of primary :$victim (replica :$heir) after $kill_after s"
"$load_bin" --addr "127.0.0.1:$proxy_port" --clients "$clients" --seconds "$seconds" \
    >"$work/load.csv" 2>"$work/load.err" &
load_pid=$!
pids+=("$load_pid")
sleep "$kill_after"

# disown: no "Killed" job notice from bash in the middle of the output.
disown "${node_pid[$victim]}"
event "kill -9 of primary :$victim"
kill -KILL "${node_pid[$victim]}"
fail_seen=
promotion_seen=
deadline=$((SECONDS + seconds))
while ! process_gone "$load_pid" && ((SECONDS < deadline)); do
    if [[ -z $fail_seen && $(flags_of "$victim_id") == *fail* && $(flags_of "$victim_id") != *fail\?* ]]; then
        event "node :$observer flags :$victim fail"
        fail_seen=1
    fi
    if [[ -z $promotion_seen && $(flags_of "$heir_id") == *master* ]]; then
        event "node :$observer sees replica :$heir as primary (promoted)"
        promotion_seen=1
    fi
    [[ -z $fail_seen || -z $promotion_seen ]] || break
    sleep 0.1
done
[[ -n $promotion_seen ]] || say "the replica :$heir was not promoted while the load ran"
wait "$load_pid" || die "the load generator failed:"$'\n'"$(tail -n 20 "$work/load.err")"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then
    commit="$commit-dirty"
fi
meta=$work/meta.txt
{
    echo "commit=$commit"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "redis=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
    echo "ack=$ack"
    echo "node_timeout_ms=$node_timeout_ms"
    echo "load_start=$load_start"
    echo "load_end=$(uptime | sed 's/.*load average: //')"
    echo "proxy_warnings=$(grep -c WARN "$work/proxy-main.log" || true)"
} >"$meta"
report=$(python3 scripts/bench/failover_report.py --load "$work/load.csv" --events "$events" --meta "$meta")
printf '%s\n' "$report"
if [[ -n $out_file ]]; then
    printf '%s\n\n' "$report" >>"$out_file"
    say "report appended to $out_file"
fi
say "uptime at the end: $(uptime)"
