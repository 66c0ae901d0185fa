# shellcheck shell=bash
# Shell helpers shared by scripts/local-cluster.sh and benches/e2e.sh (sourced, not run).

# The secured variant (SLOTPROXY_CLUSTER_PASSWORD set): redis-cli reads the nodes' password from
# REDISCLI_AUTH, so it never shows in a process list.
if [[ -n ${SLOTPROXY_CLUSTER_PASSWORD:-} ]]; then
    export REDISCLI_AUTH=$SLOTPROXY_CLUSTER_PASSWORD
fi

# redis-cli against 127.0.0.1:PORT.
cli() {
    local port=$1
    shift
    redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# `field:value` from INFO-style output of `redis-cli -p PORT <command...>`; empty if absent.
field() {
    local port=$1 name=$2
    shift 2
    { cli "$port" "$@" 2>/dev/null || true; } | tr -d '\r' | sed -n "s/^$name://p"
}

# True when something listens on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Polls "$@" every 0.1 s for up to SECONDS; 1 on timeout.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
