#!/usr/bin/env bash
# Runs slotproxy in front of the seed document's six-node local Redis Cluster.
#
# Usage: scripts/run-local.sh [--cluster-only]
#   (no flag)       start the cluster (scripts/local-cluster.sh), build slotproxy, run it in the
#                   foreground on 127.0.0.1:$SLOTPROXY_PORT (default 6379)
#   --cluster-only  start the cluster and wait
# Ctrl-C (or any exit) stops the proxy and the six nodes; the data dir is kept, so the next run
# reuses the same cluster and its data.
#
# Environment: SLOTPROXY_PORT (proxy port, default 6379), SLOTPROXY_DATA_DIR (cluster data,
# default data/cluster/), SLOTPROXY_LOG (proxy log filter, default info),
# SLOTPROXY_CLUSTER_PASSWORD (the seed document's secured variant: nodes with requirepass and
# masterauth, slotproxy given the same password through SLOTPROXY_BACKEND_PASSWORD).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/cluster.sh
source "$repo_root/scripts/lib/cluster.sh"
# Resolve before leaving the caller's directory, so a relative path means what the caller meant.
SLOTPROXY_DATA_DIR=$(realpath -m "${SLOTPROXY_DATA_DIR:-$repo_root/data/cluster}")
export SLOTPROXY_DATA_DIR
cd "$repo_root"

cluster=scripts/local-cluster.sh
proxy_port=${SLOTPROXY_PORT:-6379}
seeds=127.0.0.1:16379,127.0.0.1:16380,127.0.0.1:16381

mode=proxy
case "${1:-}" in
"") ;;
--cluster-only) mode="cluster-only" ;;
-h | --help)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--cluster-only]" >&2
    exit 2
    ;;
esac

# Output may go to a pipe that is already gone (Ctrl-C kills `| tee` too): never fail on it.
say() { printf 'run-local: %s\n' "$*" 2>/dev/null || true; }

proxy_pid=
sleep_pid=
cluster_started=
cleaned=

# Stops what this script started; runs once, on any exit.
# shellcheck disable=SC2317 # only called from the traps below
cleanup() {
    [[ -z $cleaned ]] || return 0
    cleaned=1
    # A closed stdout (the reader of a pipe died with Ctrl-C) must not stop the cleanup halfway.
    trap '' PIPE
    if [[ -n $sleep_pid ]]; then
        kill "$sleep_pid" 2>/dev/null || true
    fi
    if [[ -n $proxy_pid ]] && kill -0 "$proxy_pid" 2>/dev/null; then
        say "stopping slotproxy (pid $proxy_pid)"
        kill -TERM "$proxy_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$proxy_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$proxy_pid" 2>/dev/null || true
    fi
    if [[ -n $cluster_started ]]; then
        "$cluster" stop || true
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

if [[ $mode == proxy ]]; then
    if port_in_use "$proxy_port"; then
        echo "run-local: error: port $proxy_port is already in use (a system redis-server? stop it, or set SLOTPROXY_PORT)" >&2
        exit 1
    fi
    if ! command -v cargo >/dev/null; then
        echo "run-local: error: cargo not found; install Rust (https://rustup.rs) first" >&2
        exit 1
    fi
fi

# Set before starting, so a start that fails halfway still stops the nodes it started.
cluster_started=1
"$cluster" start

if [[ $mode == cluster-only ]]; then
    say "cluster up on 127.0.0.1:16379-16384 — try: redis-cli -c -p 16379; Ctrl-C stops it"
    # `wait` on a background sleep returns at once on a signal; a foreground sleep would not.
    sleep infinity &
    sleep_pid=$!
    wait "$sleep_pid" || true
    exit 0
fi

say "building slotproxy (release)"
cargo build --release --locked
if [[ -n ${SLOTPROXY_CLUSTER_PASSWORD:-} ]]; then
    # Through the environment, never argv (visible to every user in ps).
    export SLOTPROXY_BACKEND_PASSWORD=$SLOTPROXY_CLUSTER_PASSWORD
    say "secured variant: nodes require a password; slotproxy authenticates with it"
fi
cargo run --release --locked --quiet -- \
    --listen "127.0.0.1:$proxy_port" --cluster "$seeds" --log "${SLOTPROXY_LOG:-info}" &
proxy_pid=$!

ready=
for _ in $(seq 300); do
    if [[ $(redis-cli -p "$proxy_port" ping 2>/dev/null) == PONG ]]; then
        ready=1
        break
    fi
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -n $ready ]]; then
    say "slotproxy on 127.0.0.1:$proxy_port — try: redis-cli -p $proxy_port (Ctrl-C stops everything)"
elif kill -0 "$proxy_pid" 2>/dev/null; then
    say "slotproxy (pid $proxy_pid) does not answer PING on 127.0.0.1:$proxy_port after 30 s; see its log above"
fi

status=0
wait "$proxy_pid" || status=$?
proxy_pid=
say "slotproxy exited with status $status"
exit "$status"
