#!/usr/bin/env bash
# End-to-end benchmark: redis-benchmark through slotproxy versus directly against the cluster.
#
# Usage (from anywhere; it cds to the repository root):
#   bash benches/e2e.sh [--out FILE]
#     --out FILE   also append the markdown report to FILE
#
# What it does:
#   1. cargo build --release --locked
#   2. starts a throwaway six-node cluster (3 primaries + 3 replicas, appendonly no, save "")
#      on 127.0.0.1:$E2E_BASE_PORT..+5 (bus ports +10000), data in a mktemp dir
#   3. starts target/release/slotproxy on 127.0.0.1:$E2E_PROXY_PORT in front of it
#   4. for each scenario, runs `redis-benchmark -t set,get -d 64 -r 100000` alternating
#      proxy, direct (`--cluster`), proxy, direct... for $E2E_ROUNDS rounds
#        a  50 clients, no pipelining        c  1 client, no pipelining (latency)
#        b  50 clients, pipeline 16          d  1000 clients, no pipelining
#        e  50 clients, no pipelining, cross-slot: through the proxy `-t mset` (MSET of 10 random
#           keys) and `MGET key:__rand_int__` x10 instead of SET and GET; direct as in (a);
#           compared in keys per second
#      Request counts are sized by a probe run per scenario and side (which also warms up) so
#      each test lasts about $E2E_SECONDS s on either side; a round that ran >25% faster than
#      the probe raises the count for the next round.
#   5. samples the proxy's RSS (VmRSS) idle, with 1000 idle connections, and during (d)
#   6. prints a markdown table (best round of each, by ops/s) and the issue's targets
# Everything it started is stopped on exit, Ctrl-C included. Exit status 1 if any run failed.
#
# Environment:
#   E2E_BASE_PORT    first node port (default 17100); bus ports are +10000
#   E2E_PROXY_PORT   proxy port (default E2E_BASE_PORT + 10)
#   E2E_SECONDS      target length of one test (SET, GET, MSET or MGET) on each side (default 4)
#   E2E_REQUESTS     fixed requests per test instead of probing: (a), (d) and (e) run this many,
#                    (b) 8x, (c) a quarter; both sides alike (e.g. 5000 for a smoke test)
#   E2E_ROUNDS       proxy/direct rounds per scenario (default 2)
#   E2E_RUN_TIMEOUT  seconds before one redis-benchmark run counts as hung (default 120)
#   E2E_KEEP=1       keep the temp dir (node and proxy logs, raw results) after exit
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$repo_root/scripts/lib.sh"
cd "$repo_root"

out_file=
while (($# > 0)); do
    case $1 in
    --out)
        (($# >= 2)) || {
            echo "e2e: --out needs a file" >&2
            exit 2
        }
        out_file=$(realpath -m "$2")
        shift 2
        ;;
    -h | --help)
        sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "e2e: unknown argument: $1 (usage: bash benches/e2e.sh [--out FILE])" >&2
        exit 2
        ;;
    esac
done

base_port=${E2E_BASE_PORT:-17100}
proxy_port=${E2E_PROXY_PORT:-$((base_port + 10))}
seconds=${E2E_SECONDS:-4}
requests=${E2E_REQUESTS:-}
rounds=${E2E_ROUNDS:-2}
run_timeout=${E2E_RUN_TIMEOUT:-120}
keyspace=100000
value_size=64

say() { printf 'e2e: %s\n' "$*" >&2; }
die() {
    printf 'e2e: error: %s\n' "$*" >&2
    exit 1
}

for n in "$base_port" "$proxy_port" "$seconds" "${requests:-1000}" "$rounds" "$run_timeout"; do
    [[ $n =~ ^[0-9]+$ ]] || die "E2E_* settings must be whole numbers, got '$n'"
done
((base_port >= 1024 && base_port + 5 + 10000 <= 65535)) || die "E2E_BASE_PORT must be in 1024..55530"
((rounds >= 1)) || die "E2E_ROUNDS must be at least 1"
((seconds >= 1)) || die "E2E_SECONDS must be at least 1"
[[ -z $requests ]] || ((requests >= 1000)) || die "E2E_REQUESTS must be at least 1000"

for tool in cargo redis-server redis-cli redis-benchmark python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found in PATH"
done

node_ports=()
for i in 0 1 2 3 4 5; do node_ports+=($((base_port + i))); done

# --- cleanup: everything started below is recorded here and stopped on any exit -----------------

pids=()
work=
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
        if [[ -n ${E2E_KEEP:-} ]]; then
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

# --- preflight ------------------------------------------------------------------------------------

for port in "${node_ports[@]}"; do
    port_in_use "$port" && die "port $port is in use; set E2E_BASE_PORT to a free range"
    port_in_use $((port + 10000)) && die "port $((port + 10000)) (cluster bus) is in use; set E2E_BASE_PORT"
done
port_in_use "$proxy_port" && die "port $proxy_port is in use; set E2E_PROXY_PORT"

# 1000 clients need ~1000 descriptors in redis-benchmark and ~1000 more in the proxy.
want_fds=16384
hard_fds=$(ulimit -Hn)
if [[ $hard_fds == unlimited ]] || ((hard_fds >= want_fds)); then
    ulimit -n "$want_fds"
else
    ulimit -n "$hard_fds"
fi
(($(ulimit -n) >= 4096)) || die "open-file limit is $(ulimit -n) (hard $hard_fds); 1000 clients need at least 4096"

started_at=$SECONDS
load_start=$(uptime | sed 's/.*load average: //')
say "uptime before start: $(uptime)"

say "building slotproxy (cargo build --release --locked)"
cargo build --release --locked >&2
proxy_bin=$repo_root/target/release/slotproxy
[[ -x $proxy_bin ]] || die "$proxy_bin was not built"

work=$(mktemp -d "${TMPDIR:-/tmp}/slotproxy-e2e.XXXXXX")

# --- the cluster ----------------------------------------------------------------------------------

node_pids=()
say "starting 6 redis-server nodes on 127.0.0.1:${node_ports[0]}-${node_ports[5]} (data in $work)"
for port in "${node_ports[@]}"; do
    mkdir -p "$work/node-$port"
    redis-server \
        --port "$port" --bind 127.0.0.1 --protected-mode no \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
        --appendonly no --save "" \
        --dir "$work/node-$port" --logfile "$work/node-$port/redis.log" --daemonize no &
    pids+=($!)
    node_pids+=($!)
done
answers_ping() { [[ $(cli "$1" ping 2>/dev/null) == PONG ]]; }
for port in "${node_ports[@]}"; do
    wait_for 10 answers_ping "$port" ||
        die "node $port does not answer; log tail:"$'\n'"$(tail -n 20 "$work/node-$port/redis.log")"
done

say "forming the cluster (redis-cli --cluster create --cluster-replicas 1)"
cluster_args=()
for port in "${node_ports[@]}"; do cluster_args+=("127.0.0.1:$port"); done
redis-cli --cluster create "${cluster_args[@]}" --cluster-replicas 1 --cluster-yes \
    >"$work/cluster-create.log" 2>&1 ||
    die "redis-cli --cluster create failed:"$'\n'"$(tail -n 20 "$work/cluster-create.log")"

# cluster_state:ok everywhere, all slots served, all nodes known, and every replica synced.
settled() {
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
say "waiting for cluster_state:ok and synced replicas"
wait_for 60 settled || die "the cluster did not settle within 60 s; logs in $work (set E2E_KEEP=1 to keep them)"

primaries=()
for port in "${node_ports[@]}"; do
    [[ $(field "$port" role info replication) == master ]] && primaries+=("$port")
done
((${#primaries[@]} == 3)) || die "expected 3 primaries, found ${#primaries[@]}: ${primaries[*]}"
seeds=$(printf '127.0.0.1:%s,' "${primaries[@]}")
seeds=${seeds%,}

# --- the proxy ------------------------------------------------------------------------------------

say "starting slotproxy on 127.0.0.1:$proxy_port (seeds $seeds)"
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --cluster "$seeds" --log warn >"$work/proxy.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")

proxy_alive() { ! process_gone "$proxy_pid"; }
proxy_log_tail() { tail -n 20 "$work/proxy.log"; }
proxy_ready() {
    [[ $(cli "$proxy_port" ping 2>/dev/null) == PONG ]] &&
        [[ $(cli "$proxy_port" set e2e:probe ok 2>/dev/null) == OK ]] &&
        [[ $(cli "$proxy_port" get e2e:probe 2>/dev/null) == ok ]]
}
wait_for 30 proxy_ready ||
    die "slotproxy does not answer PING/SET/GET on :$proxy_port after 30 s (alive: $(proxy_alive && echo yes || echo no)); log:"$'\n'"$(proxy_log_tail)"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$proxy_pid/status" 2>/dev/null || echo 0; }
sleep 1
rss_idle_start=$(rss_kb)

# Before any load, so the number is the cost of the connections and not of buffers kept from it.
say "opening 1000 idle connections to the proxy to measure its RSS"
rss_conns_kb=$(python3 benches/e2e_report.py hold-connections --port "$proxy_port" --pid "$proxy_pid" --count 1000) ||
    die "could not hold 1000 connections to the proxy; log:"$'\n'"$(proxy_log_tail)"

# --- benchmark runs -------------------------------------------------------------------------------

results=$work/results.csv
failures=$work/failures.txt
meta=$work/meta.txt
: >"$results"
: >"$failures"
: >"$meta"
meta() { printf '%s=%s\n' "$1" "$2" >>"$meta"; }

# Connection requests dropped because a listen queue was full, machine-wide (TcpExt counter).
listen_overflows() {
    awk '/^TcpExt:/ { if (!n) { for (i = 1; i <= NF; i++) col[$i] = i; n = 1 } else print $col["ListenOverflows"] }' /proc/net/netstat 2>/dev/null || echo 0
}
overflows_proxy=0
clock_ticks=$(getconf CLK_TCK 2>/dev/null || echo 100)
# CPU time (user + system, in clock ticks) the given processes have used so far.
cpu_ticks() {
    local pid sum=0 t
    for pid in "$@"; do
        t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null) || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}
# CPU time (clock ticks) of this script's children that have exited so far (redis-benchmark, ...).
children_ticks() { awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$$/stat"; }

# fail SCENARIO TARGET ROUND TEXT: records a failed run; the other runs go on.
fail() {
    printf '%s %s %s: %s\n' "$1" "$2" "$3" "$4" >>"$failures"
    say "  FAILED: $1 $2 $3: $4"
}

# Scenario (e)'s MGET through the proxy: 10 keys, and with -r every `__rand_int__` gets its own
# random number, so the keys almost always span all three primaries. Its MSET is redis-benchmark's
# built-in `-t mset`: `MSET key:__rand_int__ <-d bytes>` x10, also one random number per key.
multi_keys=10
mget_command=(MGET)
for _ in $(seq "$multi_keys"); do mget_command+=("key:__rand_int__"); done

# bench TARGET CLIENTS PIPELINE REQUESTS ERRFILE [WORKLOAD]: one redis-benchmark run, SET then GET;
# with WORKLOAD `multi` and TARGET proxy, two runs: MSET of 10 keys, then MGET of 10 keys.
# Sets bench_lines to its two csv lines (test names cut to the command: SET, GET, MSET, MGET);
# bench_proxy_cpu, bench_cluster_cpu and bench_client_cpu to the CPU ticks the proxy, the six
# nodes and redis-benchmark used in the run; and bench_why to the reason when it returns 1.
# redis-benchmark exits at the first error reply, so an error, a hang (E2E_RUN_TIMEOUT) and odd
# output all return 1. A dead proxy ends the script.
bench() {
    local target=$1 clients=$2 pipeline=$3 n=$4 err=$5 workload=${6:-single}
    local output='' part rc=0 before proxy_cpu cluster_cpu client_cpu test args
    local tests=("set,get")
    [[ $workload != multi || $target != proxy ]] || tests=(mset mget)
    bench_lines=
    bench_why=
    : >"$err"
    before=$(listen_overflows)
    proxy_cpu=$(cpu_ticks "$proxy_pid")
    cluster_cpu=$(cpu_ticks "${node_pids[@]}")
    client_cpu=$(children_ticks)
    for test in "${tests[@]}"; do
        args=(-h 127.0.0.1 -d "$value_size" -r "$keyspace" -n "$n" -c "$clients" -P "$pipeline" --csv)
        if [[ $target == proxy ]]; then
            args+=(-p "$proxy_port")
        else
            # One benchmark thread per primary, each with keys hash-tagged into its primary's slots.
            args+=(--cluster -p "${primaries[0]}")
        fi
        if [[ $test == mget ]]; then
            args+=("${mget_command[@]}")
        else
            args+=(-t "$test")
        fi
        # --foreground: Ctrl-C reaches redis-benchmark itself.
        part=$(timeout --foreground -k 5 "$run_timeout" redis-benchmark "${args[@]}" 2>>"$err") || rc=$?
        output+=$part$'\n'
        ((rc == 0)) || break
    done
    bench_proxy_cpu=$(($(cpu_ticks "$proxy_pid") - proxy_cpu))
    bench_client_cpu=$(($(children_ticks) - client_cpu))
    bench_cluster_cpu=$(($(cpu_ticks "${node_pids[@]}") - cluster_cpu))
    if ((rc == 130 || rc == 143)); then
        # Ctrl-C or TERM reached redis-benchmark (and the proxy, which handles SIGINT itself).
        say "interrupted"
        exit "$rc"
    fi
    if [[ $target == proxy ]]; then
        overflows_proxy=$((overflows_proxy + $(listen_overflows) - before))
    fi
    proxy_alive || die "slotproxy died (last run: $target, $clients clients); log:"$'\n'"$(proxy_log_tail)"
    if ((rc == 124 || rc == 137)); then
        bench_why="redis-benchmark still running after ${run_timeout} s (hung?), killed"
        return 1
    fi
    if ((rc != 0)); then
        bench_why="redis-benchmark exit $rc: $(grep -v '^$' "$err" | tail -n 1)"
        return 1
    fi
    # Test names: "SET", "GET", "MSET (10 keys)", "MGET key:__rand_int__ key:__rand_int__ ...".
    bench_lines=$(grep -E '^"(SET|GET|MSET|MGET)[ "]' <<<"$output" | sed -E 's/^"([A-Z]+)[^"]*"/"\1"/' || true)
    if [[ $(grep -c . <<<"$bench_lines") -ne 2 ]]; then
        bench_why="unexpected redis-benchmark output: $(tr '\n' ' ' <<<"$output" | cut -c1-200)"
        return 1
    fi
}

# Mean ops/s of bench_lines' two tests.
bench_rps() { tr -d '"' <<<"$bench_lines" | awk -F, '{ s += $2 } END { printf "%.0f", s / NR }'; }

# size SCENARIO TARGET CLIENTS PIPELINE WORKLOAD: sets sized to the requests per test that last
# about $seconds s on TARGET. Probes from a small count up until one probe lasts at least 1 s, since
# `redis-benchmark --cluster` only stops on its 250 ms timer (shorter runs under-count ops/s).
size() {
    local scenario=$1 target=$2 clients=$3 pipeline=$4 workload=$5 n rps lasted
    n=$((clients * pipeline * 20 > 5000 * pipeline ? clients * pipeline * 20 : 5000 * pipeline))
    sized=
    while :; do
        if ! bench "$target" "$clients" "$pipeline" "$n" "$work/probe-$scenario-$target.err" "$workload"; then
            fail "$scenario" "$target" probe "$bench_why"
            return 1
        fi
        rps=$(bench_rps)
        ((rps > 0)) || rps=1
        lasted=$(awk -v n="$n" -v r="$rps" 'BEGIN { printf "%.2f", n / r }')
        if awk -v t="$lasted" 'BEGIN { exit !(t >= 1.0) }' || ((n >= 50000000)); then
            break
        fi
        # Aim a probe at ~1.5 s; at least double, at most 10x.
        n=$(awk -v n="$n" -v t="$lasted" 'BEGIN { f = 1.5 / (t > 0 ? t : 0.01); if (f < 2) f = 2; if (f > 10) f = 10; printf "%d", n * f }')
    done
    sized=$((rps * seconds))
    ((sized >= 1000)) || sized=1000
    ((sized >= clients * 10)) || sized=$((clients * 10))
    say "  $scenario $target probe: $n requests, ~$rps ops/s over ${lasted} s -> $sized requests per test"
}

# per_request TICKS N: CPU microseconds per request of a run of N requests of each of two tests
# (SET and GET, or MSET and MGET).
per_request() { awk -v t="$1" -v hz="$clock_ticks" -v n="$2" 'BEGIN { printf "%.1f", t / hz * 1e6 / (2 * n) }'; }

# run SCENARIO TARGET ROUND CLIENTS PIPELINE REQUESTS WORKLOAD: a measured run; sets run_rps to its
# mean ops/s and appends its two csv lines to $results, prefixed with scenario, target, round,
# request count, and the CPU microseconds per request the proxy, the cluster and redis-benchmark
# used over the whole run (both tests together).
run() {
    local scenario=$1 target=$2 round=$3 clients=$4 pipeline=$5 n=$6 workload=$7 t0=$SECONDS line proxy_us cluster_us client_us
    run_rps=0
    if ! bench "$target" "$clients" "$pipeline" "$n" "$work/bench-$scenario-$target-$round.err" "$workload"; then
        fail "$scenario" "$target" "round $round" "$bench_why"
        return 0
    fi
    run_rps=$(bench_rps)
    proxy_us=$(per_request "$bench_proxy_cpu" "$n")
    cluster_us=$(per_request "$bench_cluster_cpu" "$n")
    client_us=$(per_request "$bench_client_cpu" "$n")
    while IFS= read -r line; do
        printf '%s,%s,%s,%s,%s,%s,%s,%s\n' "$scenario" "$target" "$round" "$n" "$proxy_us" "$cluster_us" "$client_us" "$line" >>"$results"
    done <<<"$bench_lines"
    say "  $scenario $target round $round: $(tr '\n' ',' <<<"$bench_lines" | tr -d '"' | awk -F, '{printf "%s %.0f ops/s, %s %.0f ops/s", $1, $2, $9, $10}') ($n requests each, $((SECONDS - t0)) s)"
}

# Samples the proxy's RSS (kB) and its established client connections every 0.2 s into FILE.
start_sampler() {
    local file=$1
    (
        while :; do
            conns=$(ss -Htn state established "( sport = :$proxy_port )" 2>/dev/null | wc -l)
            printf '%s %s\n' "$(rss_kb)" "$conns"
            sleep 0.2
        done
    ) >"$file" 2>/dev/null &
    sampler_pid=$!
    pids+=("$sampler_pid")
}
stop_sampler() {
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
}

# scenario  clients  pipeline  fixed-requests-per-test (with E2E_REQUESTS)  workload
# (workload `multi`: MSET and MGET of 10 keys through the proxy, SET and GET direct)
scenarios=(
    "a 50 1 ${requests:-0} single"
    "b 50 16 $((${requests:-0} * 8)) single"
    "c 1 1 $((${requests:-0} / 4)) single"
    "d 1000 1 ${requests:-0} single"
    "e 50 1 ${requests:-0} multi"
)

: >"$work/rss-d.txt"
for spec in "${scenarios[@]}"; do
    read -r scenario clients pipeline fixed workload <<<"$spec"
    say "scenario $scenario: $clients client(s), pipeline $pipeline, $rounds round(s)$([[ $workload != multi ]] || echo ", MSET/MGET of $multi_keys keys via the proxy")"
    if [[ $scenario == d ]]; then
        start_sampler "$work/rss-d.txt"
    fi
    if [[ -n $requests ]]; then
        n_proxy=$fixed
        n_direct=$fixed
    else
        n_proxy=
        n_direct=
        size "$scenario" proxy "$clients" "$pipeline" "$workload" && n_proxy=$sized
        size "$scenario" direct "$clients" "$pipeline" "$workload" && n_direct=$sized
    fi
    for round in $(seq "$rounds"); do
        if [[ -n $n_proxy ]]; then
            run "$scenario" proxy "$round" "$clients" "$pipeline" "$n_proxy" "$workload"
            # A probe slowed down by other load sizes tests too short; let later rounds grow.
            [[ -n $requests ]] || ((run_rps * seconds <= n_proxy * 5 / 4)) || n_proxy=$((run_rps * seconds))
        fi
        if [[ -n $n_direct ]]; then
            run "$scenario" direct "$round" "$clients" "$pipeline" "$n_direct" "$workload"
            [[ -n $requests ]] || ((run_rps * seconds <= n_direct * 5 / 4)) || n_direct=$((run_rps * seconds))
        fi
    done
    if [[ $scenario == d ]]; then
        stop_sampler
    fi
done

# RSS during (d): only samples taken while at least 900 clients were connected to the proxy.
read -r rss_load_kb conns_max < <(awk '$2 >= 900 && $1 > m {m = $1} $2 > c {c = $2} END {print m + 0, c + 0}' "$work/rss-d.txt")
sleep 1
rss_idle_end=$(rss_kb)

# --- report ---------------------------------------------------------------------------------------

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then
    commit="$commit-dirty"
fi
meta commit "$commit"
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta nproc "$(nproc)"
meta cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
meta kernel "$(uname -sr)"
meta redis "$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
meta rounds "$rounds"
meta requests "${requests:-probed}"
meta seconds "$seconds"
meta multi_keys "$multi_keys"
meta rss_idle_start_kb "$rss_idle_start"
meta rss_load_kb "$rss_load_kb"
meta conns_max "$conns_max"
meta rss_conns_kb "$rss_conns_kb"
meta rss_idle_end_kb "$rss_idle_end"
meta load_start "$load_start"
meta load_end "$(uptime | sed 's/.*load average: //')"
meta listen_overflows_proxy "$overflows_proxy"
meta wall_s "$((SECONDS - started_at))"

report=$(python3 benches/e2e_report.py report --results "$results" --failures "$failures" --meta "$meta")
printf '%s\n' "$report"
if [[ -n $out_file ]]; then
    printf '%s\n\n' "$report" >>"$out_file"
    say "report appended to $out_file"
fi
say "uptime at the end: $(uptime)"
say "done in $((SECONDS - started_at)) s"
if [[ -s $failures ]]; then
    say "$(grep -c . "$failures") run(s) failed:"
    cat "$failures" >&2
    exit 1
fi
