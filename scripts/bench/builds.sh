#!/usr/bin/env bash
# Two slotproxy builds side by side: redis-benchmark W1 (50 clients) and W2 (50 clients,
# `-P 16`) SET and GET through each, interleaved round by round (the order alternates), with
# ops/s and the proxy's CPU per request (user + system, from /proc/<pid>/stat). Wall-clock
# figures on a shared machine swing by 10-20% between runs; interleaving puts both builds in
# the same conditions, and `instructions.sh` gives the figure that repeats to 0.5%.
#
# Usage: scripts/bench/builds.sh SEED BINARY_A BINARY_B
#   SEED      a node of a running cluster, host:port (e.g. one started with
#             SLOTPROXY_CLUSTER_PORT=26379 scripts/local-cluster.sh start)
#   BINARY_*  slotproxy release builds, each run with its default settings
# Environment: BUILDS_ROUNDS (default 4), BUILDS_REQUESTS (W1 requests per command, default
# 100000; W2 runs 4x as many); any SLOTPROXY_* variable reaches both proxies.
# Prints one line per run: build, workload, SET and GET ops/s, proxy CPU us per request.
set -euo pipefail
[[ $# -eq 3 ]] || { sed -n '2,14p' "$0"; exit 2; }
seed=$1
rounds=${BUILDS_ROUNDS:-4}
requests=${BUILDS_REQUESTS:-100000}
command -v redis-benchmark >/dev/null || { echo "builds: redis-benchmark is not installed" >&2; exit 1; }
ticks=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

declare -A port pid
for name in A B; do
    bin=$2
    [[ $name == B ]] && bin=$3
    # A port the kernel picks: a random one can be a node's cluster bus port (+10000).
    port[$name]=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    SLOTPROXY_ADMIN_LISTEN="" SLOTPROXY_LOG=warn \
        "$bin" --cluster "$seed" --listen "127.0.0.1:${port[$name]}" >"$work/$name.log" 2>&1 &
    pid[$name]=$!
    pids+=("$!")
done
for name in A B; do
    for _ in $(seq 100); do
        redis-cli -p "${port[$name]}" PING >/dev/null 2>&1 && break
        sleep 0.2
    done
    redis-cli -p "${port[$name]}" PING >/dev/null || { echo "builds: proxy $name did not start:" >&2; cat "$work/$name.log" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME N PIPELINE: one redis-benchmark run through build NAME.
run() {
    local name=$1 n=$2 pipeline=$3 before after rates
    before=$(cpu_ticks "${pid[$name]}")
    rates=$(redis-benchmark -p "${port[$name]}" -c 50 -n "$n" -P "$pipeline" -t set,get -d 64 -r 100000 -q --csv |
        tr -d '"' | awk -F, '/^(SET|GET),/ {printf "%s %.0f  ", $1, $2}')
    after=$(cpu_ticks "${pid[$name]}")
    echo "build $name  W$((pipeline == 1 ? 1 : 2))  $rates proxy CPU $(awk -v t=$((after - before)) -v hz="$ticks" -v n="$n" \
        'BEGIN {printf "%.1f", t * 1e6 / hz / (2 * n)}') us/request"
}

for round in $(seq "$rounds"); do
    order=(A B)
    ((round % 2)) || order=(B A)
    for name in "${order[@]}"; do run "$name" "$requests" 1; done
    for name in "${order[@]}"; do run "$name" $((4 * requests)) 16; done
done
