# shellcheck shell=bash
# The arrays set here are read by the sourcing script; proxy_bin is set by it.
# shellcheck disable=SC2034,SC2154
# A throwaway cluster and proxies for the benchmark scripts: sourced by benches/e2e.sh and
# benches/failover_timeline.sh after scripts/lib.sh, not run.
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

# True once PID has exited; a zombie counts as exited.
process_gone() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    [[ ${stat##*) } == Z* ]]
}

# ports_free PORT...: dies naming the first port (or its cluster bus port, +10000) in use.
ports_free() {
    local port
    for port in "$@"; do
        port_in_use "$port" && die "port $port is in use; choose another base port"
    done
    return 0
}

answers_ping() { [[ $(cli "$1" ping 2>/dev/null) == PONG ]]; }

# start_cluster BASE_PORT NODE_TIMEOUT_MS: six nodes on 127.0.0.1:BASE_PORT..+5 (bus ports
# +10000, data under $work), formed into 3 primaries + 3 replicas with `redis-cli --cluster
# create`, and settled. Sets node_ports, node_pids, node_pid (port -> pid), primaries (ports) and
# replica_of (primary port -> its replica's port).
start_cluster() {
    local base=$1 node_timeout_ms=$2 i port
    node_ports=()
    node_pids=()
    declare -gA node_pid=() replica_of=()
    for i in 0 1 2 3 4 5; do node_ports+=($((base + i))); done
    for port in "${node_ports[@]}"; do ports_free "$port" $((port + 10000)); done
    say "starting 6 redis-server nodes on 127.0.0.1:${node_ports[0]}-${node_ports[5]} (data in $work)"
    for port in "${node_ports[@]}"; do
        mkdir -p "$work/node-$port"
        redis-server \
            --port "$port" --bind 127.0.0.1 --protected-mode no \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout "$node_timeout_ms" \
            --appendonly no --save "" \
            --dir "$work/node-$port" --logfile "$work/node-$port/redis.log" --daemonize no &
        pids+=($!)
        node_pids+=($!)
        node_pid[$port]=$!
    done
    for port in "${node_ports[@]}"; do
        wait_for 10 answers_ping "$port" ||
            die "node $port does not answer; log tail:"$'\n'"$(tail -n 20 "$work/node-$port/redis.log")"
    done

    say "forming the cluster (redis-cli --cluster create --cluster-replicas 1)"
    local cluster_args=()
    for port in "${node_ports[@]}"; do cluster_args+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${cluster_args[@]}" --cluster-replicas 1 --cluster-yes \
        >"$work/cluster-create.log" 2>&1 ||
        die "redis-cli --cluster create failed:"$'\n'"$(tail -n 20 "$work/cluster-create.log")"
    say "waiting for cluster_state:ok and synced replicas"
    wait_for 60 cluster_settled ||
        die "the cluster did not settle within 60 s; logs in $work (keep them with E2E_KEEP=1)"

    primaries=()
    for port in "${node_ports[@]}"; do
        if [[ $(field "$port" role info replication) == master ]]; then
            primaries+=("$port")
        else
            replica_of[$(field "$port" master_port info replication)]=$port
        fi
    done
    ((${#primaries[@]} == 3)) || die "expected 3 primaries, found ${#primaries[@]}: ${primaries[*]}"
    ((${#replica_of[@]} == 3)) || die "expected one replica per primary, got: ${!replica_of[*]}"
}

# cluster_state:ok everywhere, all slots served, all nodes known, and every replica synced.
cluster_settled() {
    local port
    for port in "${node_ports[@]}"; do
        [[ $(field "$port" cluster_state cluster info) == ok ]] || return 1
        [[ $(field "$port" cluster_slots_ok cluster info) == 16384 ]] || return 1
        [[ $(field "$port" cluster_known_nodes cluster info) == 6 ]] || return 1
        if [[ $(field "$port" role info replication) == slave ]]; then
            [[ $(field "$port" master_link_status info replication) == up ]] || return 1
        else
            [[ $(field "$port" connected_slaves info replication) == 1 ]] || return 1
        fi
    done
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
