#!/usr/bin/env bash
# Instructions per request: slotproxy under valgrind's callgrind (one thread) while
# redis-benchmark sends SET and GET through it. Instruction counts repeat to within about 0.5%
# for the same binary and load, however busy the machine is, so two builds can be compared on
# a shared host where ops/s and CPU seconds can't.
#
# Usage: scripts/bench/instructions.sh SEED BINARY [BINARY...]
#   SEED     a node of a running cluster, host:port (e.g. one started with
#            SLOTPROXY_CLUSTER_PORT=26379 scripts/local-cluster.sh start)
#   BINARY   slotproxy release builds to measure, in turn
# Environment: INSTR_REQUESTS (per command, default 20000), INSTR_CLIENTS (default 50); any
# SLOTPROXY_* variable reaches the proxy (e.g. SLOTPROXY_CONFIG for a config file).
# Prints, per binary: the instructions of a run with one request (startup and shutdown), of the
# measured run, and their difference per request.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,14p' "$0"; exit 2; }
seed=$1
shift
requests=${INSTR_REQUESTS:-20000}
clients=${INSTR_CLIENTS:-50}
command -v valgrind >/dev/null || { echo "instructions: valgrind is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# total BINARY N: callgrind's instruction total for N SETs and N GETs from $clients clients.
total() {
    local bin=$1 n=$2 port out pid
    # A port the kernel picks: a random one can be a node's cluster bus port (+10000).
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    out=$work/callgrind.out
    SLOTPROXY_THREADS=1 SLOTPROXY_ADMIN_LISTEN="" SLOTPROXY_LOG=warn \
        valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin" --cluster "$seed" --listen "127.0.0.1:$port" >"$work/proxy.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$port" PING >/dev/null 2>&1 && break
        sleep 0.3
    done
    redis-benchmark -p "$port" -n "$n" -c "$clients" -t set,get -d 64 -r 100000 -q >/dev/null 2>&1
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

for bin in "$@"; do
    idle=$(total "$bin" 1)
    loaded=$(total "$bin" "$requests")
    echo "$bin: startup $idle, run $loaded, $(((loaded - idle) / (2 * requests))) instructions per request"
done
