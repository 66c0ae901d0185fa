# shellcheck shell=bash
# The one place that starts and forms a local Redis Cluster (sourced, not run): used by
# scripts/local-cluster.sh (and so scripts/run-local.sh), scripts/bench/lib.sh (the e2e
# benchmark and the failover timeline) and docker/test-image.sh.
#
# The sourcing script defines `say` and `die`. Cluster functions work on the layout that
# `cluster_layout BASE` sets: six nodes on 127.0.0.1:BASE..BASE+5 (bus ports +10000), primaries
# BASE..+2 with slots 0-5460, 5461-10922 and 10923-16383, and BASE+3..+5 their replicas in that
# order. Each node keeps its files in $cluster_dir/node-<port>/ (set `cluster_dir` first).

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

# True once PID has exited; a zombie counts as exited (a container's init may reap it late).
process_gone() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    [[ ${stat##*) } == Z* ]]
}

answers_ping() { [[ $(cli "$1" ping 2>/dev/null) == PONG ]]; }

# Installs redis-server (and redis-cli, which comes with it) with apt-get when missing.
ensure_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    local install="apt-get update && apt-get install -y redis-server redis-tools"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            die "redis-server is not installed and this user can't install it; run as root: $install"
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        die "redis-server is not installed and apt-get is missing; install Redis 7 (redis-server, redis-cli) with your package manager"
    fi
    say "redis-server not found: installing it ($install)"
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools; }; then
        die "installing redis-server failed; run: ${sudo[*]}${sudo:+ }$install"
    fi
    # The package starts a system redis-server on port 6379, where slotproxy listens by default.
    # We installed it only for its binaries, so stop that service again.
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
        say "stopping and disabling the system redis-server service the package started on :6379"
        "${sudo[@]}" systemctl disable --now redis-server || true
    fi
}

# cluster_layout BASE: sets primaries, replicas (replicas[i] follows primaries[i]), all_ports
# and slot_ranges for six nodes on BASE..BASE+5.
# shellcheck disable=SC2034 # read by the sourcing script
cluster_layout() {
    local base=$1
    if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base + 5 + 10000 > 65535)); then
        die "the cluster's first port must be a number in 1024..55530, not '$base'"
    fi
    primaries=("$base" $((base + 1)) $((base + 2)))
    replicas=($((base + 3)) $((base + 4)) $((base + 5)))
    all_ports=("${primaries[@]}" "${replicas[@]}")
    slot_ranges=("0 5460" "5461 10922" "10923 16383")
}

# shellcheck disable=SC2154 # cluster_dir is set by the sourcing script
node_dir() { printf '%s/node-%s' "$cluster_dir" "$1"; }

# node_args PORT NODE_TIMEOUT_MS: sets `node_args` to the redis-server flags every cluster node
# gets (no RDB snapshots; the caller adds persistence, pid file and daemonizing).
# shellcheck disable=SC2034 # node_args is read by the caller
node_args() {
    local port=$1 node_timeout_ms=$2 dir
    dir=$(node_dir "$port")
    node_args=(
        --port "$port" --bind 127.0.0.1 --protected-mode no
        --cluster-enabled yes --cluster-config-file nodes.conf
        --cluster-node-timeout "$node_timeout_ms"
        --save "" --dir "$dir" --logfile "$dir/redis.log"
    )
}

# Waits up to 10 s for every node to answer PING; dies with the log tail of the first that doesn't.
wait_nodes_answer() {
    local port
    for port in "${all_ports[@]}"; do
        wait_for 10 answers_ping "$port" ||
            die "node $port does not answer; log tail:"$'\n'"$(tail -n 20 "$(node_dir "$port")/redis.log")"
    done
}

all_know_each_other() {
    local port nodes
    for port in "${all_ports[@]}"; do
        nodes=$(cli "$port" cluster nodes 2>/dev/null) || return 1
        [[ $(grep -c . <<<"$nodes") -eq 6 ]] || return 1
        ! grep -q handshake <<<"$nodes" || return 1
    done
}

# Slots, MEET and replicas exactly as in cluster_layout (what `redis-cli --cluster create` does,
# but with a fixed replica placement, which redis-cli doesn't promise). The nodes must be fresh.
form_cluster() {
    say "forming a new cluster in $cluster_dir"
    local i port other epoch=1
    for port in "${all_ports[@]}"; do
        cli "$port" cluster set-config-epoch "$epoch" >/dev/null
        epoch=$((epoch + 1))
    done
    for i in "${!primaries[@]}"; do
        # shellcheck disable=SC2086 # the range is two words on purpose
        cli "${primaries[i]}" cluster addslotsrange ${slot_ranges[i]} >/dev/null
    done
    # Every pair meets directly: faster than waiting for gossip to spread one node's MEETs.
    for port in "${all_ports[@]}"; do
        for other in "${all_ports[@]}"; do
            if ((port < other)); then
                cli "$port" cluster meet 127.0.0.1 "$other" >/dev/null
            fi
        done
    done
    wait_for 30 all_know_each_other || die "the nodes did not all meet within 30 s; logs: $cluster_dir/node-*/redis.log"
    for i in "${!replicas[@]}"; do
        cli "${replicas[i]}" cluster replicate "$(cli "${primaries[i]}" cluster myid)" >/dev/null
    done
}

# cluster_state:ok everywhere, all slots served, all six nodes known, and every current replica
# synced (roles may have moved since forming: a reused cluster may have failed over).
cluster_settled() {
    local port
    for port in "${all_ports[@]}"; do
        [[ $(field "$port" cluster_state cluster info) == ok ]] || return 1
        [[ $(field "$port" cluster_slots_ok cluster info) == 16384 ]] || return 1
        [[ $(field "$port" cluster_known_nodes cluster info) == 6 ]] || return 1
        if [[ $(field "$port" role info replication) == slave ]]; then
            [[ $(field "$port" master_link_status info replication) == up ]] || return 1
        fi
    done
}

# current_roles: sets `serving` (ports of the current primaries) and `replica_of` (primary port
# -> its replica's port) from the nodes themselves; dies unless each primary has one replica.
current_roles() {
    local port
    serving=()
    declare -gA replica_of=()
    for port in "${all_ports[@]}"; do
        if [[ $(field "$port" role info replication) == master ]]; then
            serving+=("$port")
        else
            replica_of[$(field "$port" master_port info replication)]=$port
        fi
    done
    ((${#serving[@]} == 3)) || die "expected 3 primaries, found ${#serving[@]}: ${serving[*]}"
    ((${#replica_of[@]} == 3)) || die "expected one replica per primary, got: ${!replica_of[*]}"
}

# One line per node, as the node on PORT sees it: address, role, and slots or primary.
print_nodes() {
    cli "$1" cluster nodes | tr -d '\r' | sort -t: -k2 -n |
        awk '{
            split($2, addr, "@"); node[NR] = addr[1]; id_addr[$1] = addr[1]
            role[NR] = ($3 ~ /master/) ? "primary" : "replica"; primary[NR] = $4
            what[NR] = ($3 ~ /fail/) ? " (failing)" : ""
            slots[NR] = ""; for (i = 9; i <= NF; i++) slots[NR] = slots[NR] " " $i
        }
        END {
            for (n = 1; n <= NR; n++) {
                detail = (role[n] == "replica") ? "of " id_addr[primary[n]] : "slots" slots[n]
                printf "  %-16s %-8s %s%s\n", node[n], role[n], detail, what[n]
            }
        }'
}
