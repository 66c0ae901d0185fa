#!/usr/bin/env bash
# The seed document's local Redis Cluster: six redis-server nodes on 127.0.0.1.
#
#   port   role      slots           replica of
#   16379  primary   0-5460          -
#   16380  primary   5461-10922      -
#   16381  primary   10923-16383     -
#   16382  replica   -               16379
#   16383  replica   -               16380
#   16384  replica   -               16381
#
# Usage: scripts/local-cluster.sh start|stop|status|install-redis
#   start   start the nodes (daemonized); form the cluster if the data dir is new, otherwise
#           restart and reuse it; wait for cluster_state:ok and synced replicas
#   stop    stop the nodes this data dir's pid files name (SHUTDOWN NOSAVE; AOF is kept)
#   status  print CLUSTER INFO and CLUSTER NODES, or say it is not running
#   install-redis  only make sure redis-server and redis-cli are installed (used by test.sh)
#
# Each node keeps its config, AOF, log and pid file in $SLOTPROXY_DATA_DIR/node-<port>/
# (default: data/cluster/ in the repository). Installs redis-server when it is missing.
#
# With SLOTPROXY_CLUSTER_PASSWORD set, the nodes start as in the seed document's secured
# variant: `requirepass` and `masterauth` set to it (written to a mode-600 auth.conf in each
# node's dir, never on a command line). The same variable must be set for stop and status.
#
# SLOTPROXY_CLUSTER_PORT moves the six ports to PORT..PORT+5 (default 16379; used by
# docker/test-image.sh so its cluster does not clash with this one).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/cluster.sh
source "$repo_root/scripts/lib/cluster.sh"
data_dir=$(realpath -m "${SLOTPROXY_DATA_DIR:-$repo_root/data/cluster}")
cluster_dir=$data_dir
# Time allowed for the cluster to reach cluster_state:ok with synced replicas.
settle_seconds=60

# Output may go to a pipe that is already gone (Ctrl-C kills `| tee` too): never fail on it.
say() { printf 'local-cluster: %s\n' "$*" 2>/dev/null || true; }
die() {
    printf 'local-cluster: error: %s\n' "$*" >&2
    exit 1
}

base_port=${SLOTPROXY_CLUSTER_PORT:-16379}
[[ $base_port =~ ^[0-9]+$ ]] || { echo "local-cluster: error: SLOTPROXY_CLUSTER_PORT must be a port number, not '$base_port'" >&2; exit 2; }
cluster_layout "$base_port"

# Pid of this data dir's node on PORT if that process is alive and a redis-server.
node_pid() {
    local pidfile pid
    pidfile="$(node_dir "$1")/redis.pid"
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && ! process_gone "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
    printf '%s' "$pid"
}

# The config file a node starts from: the password directives of the secured variant, or none.
write_auth_conf() {
    local conf=$1
    (
        umask 077
        : >"$conf"
        if [[ -n ${SLOTPROXY_CLUSTER_PASSWORD:-} ]]; then
            # Quoted as redis.conf wants it, where `"` and `\` would be escapes.
            [[ $SLOTPROXY_CLUSTER_PASSWORD != *['"\\']* ]] ||
                die "SLOTPROXY_CLUSTER_PASSWORD must not contain a double quote or a backslash"
            printf 'requirepass "%s"\nmasterauth "%s"\n' \
                "$SLOTPROXY_CLUSTER_PASSWORD" "$SLOTPROXY_CLUSTER_PASSWORD" >"$conf"
        fi
    )
}

# Daemonized, with an AOF, so that `stop` and a later `start` keep the data.
start_node() {
    local port=$1 dir
    dir=$(node_dir "$port")
    mkdir -p "$dir"
    write_auth_conf "$dir/auth.conf"
    node_args "$port" 5000
    redis-server "$dir/auth.conf" "${node_args[@]}" \
        --appendonly yes --pidfile "$dir/redis.pid" --daemonize yes
}

cmd_start() {
    ensure_redis
    local port pid conf_count=0
    for port in "${all_ports[@]}"; do
        if pid=$(node_pid "$port"); then
            die "port $port: this data dir's node is already running (pid $pid); stop it with: $0 stop"
        fi
        port_in_use "$port" && die "port $port is already in use by another program; free it first"
        port_in_use $((port + 10000)) && die "port $((port + 10000)) (cluster bus of $port) is already in use; free it first"
        [[ -f "$(node_dir "$port")/nodes.conf" ]] && conf_count=$((conf_count + 1))
    done
    if ((conf_count != 0 && conf_count != 6)); then
        die "$data_dir holds nodes.conf for only $conf_count of 6 nodes; remove $data_dir to start afresh"
    fi

    say "starting 6 nodes (data and logs in $data_dir/node-<port>/)"
    for port in "${all_ports[@]}"; do
        start_node "$port" || die "redis-server on port $port did not start; see $(node_dir "$port")/redis.log"
    done
    wait_nodes_answer

    local known assigned
    known=$(field "$base_port" cluster_known_nodes cluster info)
    assigned=$(field "$base_port" cluster_slots_assigned cluster info)
    if [[ $known == 1 && $assigned == 0 ]]; then
        form_cluster
    elif [[ $known == 6 && $assigned == 16384 ]]; then
        say "reusing the cluster already formed in $data_dir"
    else
        die "$data_dir holds a half-formed cluster ($known nodes known, $assigned slots assigned); stop it ($0 stop) and remove $data_dir to start afresh"
    fi

    say "waiting for cluster_state:ok and synced replicas (up to ${settle_seconds} s)"
    wait_for "$settle_seconds" cluster_settled ||
        die "the cluster did not settle within ${settle_seconds} s; see $0 status and $data_dir/node-*/redis.log"
    say "cluster ready:"
    print_nodes "$base_port"
}

cmd_stop() {
    local port pid stopped=0
    for port in "${all_ports[@]}"; do
        pid=$(node_pid "$port") || continue
        # SHUTDOWN NOSAVE skips the RDB (disabled anyway) but still flushes the AOF.
        cli "$port" shutdown nosave >/dev/null 2>&1 || true
        if ! wait_for 10 process_gone "$pid"; then
            say "node $port (pid $pid) ignored SHUTDOWN; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        stopped=$((stopped + 1))
    done
    say "stopped $stopped node(s); data kept in $data_dir"
}

cmd_status() {
    if ! command -v redis-cli >/dev/null || ! answers_ping "$base_port"; then
        say "not running (no answer on 127.0.0.1:$base_port)"
        return 1
    fi
    cli "$base_port" cluster info | tr -d '\r' | grep -E '^cluster_(state|slots_ok|known_nodes|size):'
    print_nodes "$base_port"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
install-redis) ensure_redis ;;
*)
    echo "usage: $0 start|stop|status|install-redis" >&2
    exit 2
    ;;
esac
