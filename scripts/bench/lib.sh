# shellcheck shell=bash
# The arrays set here are read by the sourcing script; proxy_bin is set by it.
# shellcheck disable=SC2034,SC2154
# A throwaway cluster and proxies for the benchmark scripts: sourced by scripts/bench/e2e.sh and
# scripts/bench/failover_timeline.sh after scripts/lib/cluster.sh (which forms the cluster), not
# run.
#
# The sourcing script defines `say` and `die`, sets `work` to a fresh temp dir before calling
# start_cluster, and may set `keep_work=1` to keep that dir on exit. Everything started here is
# recorded in `pids` and stopped by the EXIT/INT/TERM traps installed below.

pids=()
work=
keep_work=
cleaned=
# shellcheck disable=SC2317 # only called from the traps below
cleanup() {
    [[ -z $cleaned ]] || return 0
    cleaned=1
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            process_gone "$pid" && break
            sleep 0.1
        done
        process_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $work && -d $work ]]; then
        if [[ -n $keep_work ]]; then
            say "kept logs and raw results in $work"
        else
            rm -rf "$work"
        fi
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# ports_free PORT...: dies naming the first port (or its cluster bus port, +10000) in use.
ports_free() {
    local port
    for port in "$@"; do
        port_in_use "$port" && die "port $port is in use; choose another base port"
    done
    return 0
}

# start_cluster BASE_PORT NODE_TIMEOUT_MS: six nodes on 127.0.0.1:BASE_PORT..+5 (bus ports
# +10000, data under $work, no persistence), formed into 3 primaries + 3 replicas by
# scripts/lib/cluster.sh and settled. Sets node_ports, node_pids, node_pid (port -> pid),
# primaries (ports) and replica_of (primary port -> its replica's port).
start_cluster() {
    local base=$1 node_timeout_ms=$2 port
    cluster_layout "$base"
    cluster_dir=$work
    node_ports=("${all_ports[@]}")
    node_pids=()
    declare -gA node_pid=()
    for port in "${node_ports[@]}"; do ports_free "$port" $((port + 10000)); done
    say "starting 6 redis-server nodes on 127.0.0.1:${node_ports[0]}-${node_ports[5]} (data in $work)"
    for port in "${node_ports[@]}"; do
        mkdir -p "$(node_dir "$port")"
        node_args "$port" "$node_timeout_ms"
        # A sourcing script may add flags per node (the TLS benchmark's tls-port).
        if declare -F extra_node_args >/dev/null; then
            extra_node_args "$port"
        fi
        redis-server "${node_args[@]}" --appendonly no --daemonize no &
        pids+=($!)
        node_pids+=($!)
        node_pid[$port]=$!
    done
    wait_nodes_answer
    form_cluster
    say "waiting for cluster_state:ok and synced replicas"
    wait_for 60 cluster_settled ||
        die "the cluster did not settle within 60 s; logs in $work (keep them with E2E_KEEP=1)"
    current_roles
    primaries=("${serving[@]}")
}

# True when every node's CLUSTER SHARDS reports all six nodes with health `online`. Redis 7.0
# reports a replica as `loading` while its replication offset is 0, as on a fresh cluster before
# the first write or replication ping reaches it, and slotproxy sends no reads to such a replica.
shards_all_online() {
    local port
    for port in "${node_ports[@]}"; do
        [[ $(cli "$port" cluster shards 2>/dev/null | tr -d '\r' |
            awk 'prev == "health" && $0 == "online" { n++ } { prev = $0 } END { print n + 0 }') == 6 ]] || return 1
    done
}

# Seed list of the primaries, for --cluster.
cluster_seeds() {
    local seeds
    seeds=$(printf '127.0.0.1:%s,' "${primaries[@]}")
    echo "${seeds%,}"
}

# start_proxy NAME PORT [FLAG...]: starts BIN (set `proxy_bin`) on 127.0.0.1:PORT in front of the
# cluster with the given extra flags, logging to $work/proxy-NAME.log, and waits until PING, SET
# and GET answer through it. Sets proxy_pid[NAME] and proxy_port_of[NAME].
start_proxy() {
    local name=$1 port=$2 pid
    shift 2
    declare -gA proxy_pid proxy_port_of
    ports_free "$port"
    say "starting slotproxy '$name' on 127.0.0.1:$port${*:+ with $*}"
    "$proxy_bin" --listen "127.0.0.1:$port" --cluster "$(cluster_seeds)" --log warn "$@" \
        >"$work/proxy-$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    proxy_pid[$name]=$pid
    proxy_port_of[$name]=$port
    wait_for 30 proxy_ready "$port" ||
        die "slotproxy '$name' does not answer PING/SET/GET on :$port after 30 s (alive: $(process_gone "$pid" && echo no || echo yes)); log:"$'\n'"$(tail -n 20 "$work/proxy-$name.log")"
}

proxy_ready() {
    local port=$1
    [[ $(cli "$port" ping 2>/dev/null) == PONG ]] &&
        [[ $(cli "$port" set bench:probe ok 2>/dev/null) == OK ]] &&
        [[ $(cli "$port" get bench:probe 2>/dev/null) == ok ]]
}
