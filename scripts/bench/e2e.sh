#!/usr/bin/env bash
# End-to-end benchmark: redis-benchmark through slotproxy versus directly against the cluster,
# and through slotproxy with one flag changed (read policy, ack mode).
#
# Usage (from anywhere; it cds to the repository root):
#   bash scripts/bench/e2e.sh [--out FILE]
#     --out FILE   also append the markdown report to FILE
#
# What it does:
#   1. cargo build --release --locked
#   2. starts a throwaway six-node cluster (3 primaries + 3 replicas, appendonly no, save "")
#      on 127.0.0.1:$E2E_BASE_PORT..+5 (bus ports +10000), data in a mktemp dir
#   3. starts target/release/slotproxy on 127.0.0.1:$E2E_PROXY_PORT in front of it (default
#      flags), for (f) a second one on +1 with `--read-policy prefer-replica`, and for (g)/(h) a
#      third one on +2 with `--ack replicated`
#   4. for each scenario, runs `redis-benchmark -d 64 -r 100000` alternating its two targets
#      (A, B, A, B...) for $E2E_ROUNDS rounds
#        a  50 clients, no pipelining        c  1 client, no pipelining (latency)
#        b  50 clients, pipeline 16          d  1000 clients, no pipelining
#           (a)-(d): `-t set,get`, proxy vs direct (`--cluster`)
#        e  50 clients, no pipelining, cross-slot: through the proxy `-t mset` (MSET of 10 random
#           keys) and `MGET key:__rand_int__` x10 instead of SET and GET; direct as in (a);
#           compared in keys per second
#        f  50 clients, `-t get`: proxy with read policy primary vs prefer-replica, after setting
#           all 100000 keys; counts each node's GET calls (INFO commandstats) during every run
#        g  50 clients, `-t set`: proxy with ack primary vs ack replicated; counts SET and WAIT
#           calls per node
#        h  as (g) with pipeline 16
#        i  50 clients, `-t get` of 100 KB values (1000 keys, each side's keys set first by
#           5000 random SETs through that side), proxy vs direct
#        j  50 clients, `-t set` of 10 KB values, proxy vs direct
#        k  50 clients, `-t get` with a new connection for each request (`-k 0`), proxy vs
#           direct: what a client's connection costs (apps that connect per request)
#      Request counts are sized by a probe run per scenario and side (which also warms up) so
#      each test lasts about $E2E_SECONDS s on either side; a round that ran >25% faster than
#      the probe raises the count for the next round.
#   5. with (d): samples the proxy's RSS (VmRSS) idle, with 1000 idle connections, and during (d)
#      and after all runs (12 s after the last: idle clients' buffers are trimmed after 2 s, and
#      the freed memory goes back to the system at most every 10 s)
#   6. prints a markdown table (best round of each, by ops/s) and the issue's targets
# Everything it started is stopped on exit, Ctrl-C included. Exit status 1 if any run failed.
#
# Environment:
#   E2E_SCENARIOS    comma-separated scenarios to run, e.g. f,g (default a,b,c,d,e,f,g,h,i,j,k)
#   E2E_BASE_PORT    first node port (default 17100); bus ports are +10000
#   E2E_PROXY_PORT   proxy port (default E2E_BASE_PORT + 10); the other proxies use +1 and +2
#   E2E_SECONDS      target length of one test (SET, GET, MSET or MGET) on each side (default 4)
#   E2E_REQUESTS     fixed requests per test instead of probing: (a), (d), (e), (f) and (g) run
#                    this many, (b) and (h) 8x, (c) a quarter; both sides alike (e.g. 5000 for a
#                    smoke test)
#   E2E_ROUNDS       A/B rounds per scenario (default 2)
#   E2E_RUN_TIMEOUT  seconds before one redis-benchmark run counts as hung (default 120)
#   E2E_KEEP=1       keep the temp dir (node and proxy logs, raw results) after exit
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/cluster.sh
source "$repo_root/scripts/lib/cluster.sh"
# shellcheck source=scripts/bench/lib.sh
source "$repo_root/scripts/bench/lib.sh"
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
        sed -n '2,46p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "e2e: unknown argument: $1 (usage: bash scripts/bench/e2e.sh [--out FILE])" >&2
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
all_scenarios=a,b,c,d,e,f,g,h,i,j,k
selected=${E2E_SCENARIOS:-$all_scenarios}
keyspace=100000
value_size=64
# 0 in (k): a new connection for each request.
keepalive=1

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
[[ ,$selected, =~ ^(,[a-k])+,$ ]] || die "E2E_SCENARIOS must be a comma-separated list of $all_scenarios, got '$selected'"
((proxy_port + 2 <= 65535)) || die "E2E_PROXY_PORT must be at most 65533"

# True when scenario $1 is selected.
wants() { [[ ,$selected, == *,$1,* ]]; }

for tool in cargo redis-server redis-cli redis-benchmark python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found in PATH"
done

# --- preflight ------------------------------------------------------------------------------------

for i in 0 1 2 3 4 5; do ports_free $((base_port + i)) $((base_port + i + 10000)); done
ports_free "$proxy_port"
# (f) reads through a second proxy with --read-policy prefer-replica; (g) and (h) write through a
# third one with --ack replicated.
wants f && ports_free $((proxy_port + 1))
wants g || wants h && ports_free $((proxy_port + 2))

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
keep_work=${E2E_KEEP:-}

# --- the cluster and the proxies ------------------------------------------------------------------

start_cluster "$base_port" 5000

# True when every replica holds as many keys as its primary.
replicas_caught_up() {
    local primary
    for primary in "${primaries[@]}"; do
        [[ $(cli "$primary" dbsize) == $(cli "${replica_of[$primary]}" dbsize) ]] || return 1
    done
}

# fill: SETs every key redis-benchmark's `-r $keyspace` can pick (`key:` + 12 digits) to a
# $value_size-byte value through the main proxy, so that GETs find values; then waits until each
# replica holds as many keys as its primary.
fill() {
    say "setting all $keyspace keys (key:000000000000...) through the proxy for the GET scenarios"
    python3 scripts/bench/e2e_report.py fill --port "$proxy_port" --keys "$keyspace" --size "$value_size" ||
        die "could not fill the keyspace through the proxy; log:"$'\n'"$(proxy_log_tail main)"
    wait_for 30 replicas_caught_up || die "replicas did not catch up with the primaries within 30 s"
}

# Every target but `direct` is a proxy: `proxy` in (a)-(e) and the baselines of (f)-(h) are the
# same process with the default flags.
declare -A target_proxy=([proxy]=main [primary]=main [ack-primary]=main
    [prefer-replica]=replica [ack-replicated]=ack)
proxy_log_tail() { tail -n 20 "$work/proxy-$1.log"; }
start_proxy main "$proxy_port"
proxy_pid_main=${proxy_pid[main]}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$proxy_pid_main/status" 2>/dev/null || echo 0; }
sleep 1
rss_idle_start=$(rss_kb)

# Before any load, so the number is the cost of the connections and not of buffers kept from it.
if wants d; then
    say "opening 1000 idle connections to the proxy to measure its RSS"
    rss_conns_kb=$(python3 scripts/bench/e2e_report.py hold-connections --port "$proxy_port" --pid "$proxy_pid_main" --count 1000) ||
        die "could not hold 1000 connections to the proxy; log:"$'\n'"$(proxy_log_tail main)"
fi

if wants f; then
    fill
    # A proxy sends reads only to replicas CLUSTER SHARDS calls online, and refreshes its map
    # every 10 s: start this one once they all are, so its first map has them.
    wait_for 30 shards_all_online || die "CLUSTER SHARDS does not report all replicas online after 30 s"
    start_proxy replica $((proxy_port + 1)) --read-policy prefer-replica
fi
wants g || wants h && start_proxy ack $((proxy_port + 2)) --ack replicated

# --- benchmark runs -------------------------------------------------------------------------------

results=$work/results.csv
failures=$work/failures.txt
meta=$work/meta.txt
calls=$work/calls.csv
: >"$results"
: >"$calls"
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

# bench TARGET CLIENTS PIPELINE REQUESTS ERRFILE WORKLOAD: redis-benchmark runs against TARGET
# (`direct`: the cluster with --cluster; any other: the proxy target_proxy names). WORKLOAD
# `single`: SET then GET; `multi`: through a proxy MSET of 10 keys then MGET of 10 keys, direct
# SET then GET; `get` or `set`: that one test.
# Sets bench_lines to one csv line per test (test names cut to the command: SET, GET, MSET, MGET);
# bench_tests to their number; bench_proxy_cpu, bench_cluster_cpu and bench_client_cpu to the CPU
# ticks the target's proxy (the main one for direct), the six nodes and redis-benchmark used in
# the run; and bench_why to the reason when it returns 1.
# redis-benchmark exits at the first error reply, so an error, a hang (E2E_RUN_TIMEOUT) and odd
# output all return 1. A dead proxy ends the script.
bench() {
    local target=$1 clients=$2 pipeline=$3 n=$4 err=$5 workload=$6
    local output='' part rc=0 before proxy_cpu cluster_cpu client_cpu test args
    local proxy=${target_proxy[$target]:-main} tests=("set,get")
    local pid=${proxy_pid[$proxy]}
    bench_tests=2
    if [[ $workload == multi && $target != direct ]]; then
        tests=(mset mget)
    elif [[ $workload == get || $workload == set ]]; then
        tests=("$workload")
        bench_tests=1
    fi
    bench_lines=
    bench_why=
    : >"$err"
    before=$(listen_overflows)
    proxy_cpu=$(cpu_ticks "$pid")
    cluster_cpu=$(cpu_ticks "${node_pids[@]}")
    client_cpu=$(children_ticks)
    for test in "${tests[@]}"; do
        args=(-h 127.0.0.1 -d "$value_size" -r "$keyspace" -n "$n" -c "$clients" -P "$pipeline" -k "$keepalive" --csv)
        if [[ $target == direct ]]; then
            # One benchmark thread per primary, each with keys hash-tagged into its primary's slots.
            args+=(--cluster -p "${primaries[0]}")
        else
            args+=(-p "${proxy_port_of[$proxy]}")
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
    bench_proxy_cpu=$(($(cpu_ticks "$pid") - proxy_cpu))
    bench_client_cpu=$(($(children_ticks) - client_cpu))
    bench_cluster_cpu=$(($(cpu_ticks "${node_pids[@]}") - cluster_cpu))
    if ((rc == 130 || rc == 143)); then
        # Ctrl-C or TERM reached redis-benchmark (and the proxy, which handles SIGINT itself).
        say "interrupted"
        exit "$rc"
    fi
    if [[ $target != direct ]]; then
        overflows_proxy=$((overflows_proxy + $(listen_overflows) - before))
    fi
    process_gone "$pid" && die "slotproxy '$proxy' died (last run: $target, $clients clients); log:"$'\n'"$(proxy_log_tail "$proxy")"
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
    if [[ $(grep -c . <<<"$bench_lines") -ne $bench_tests ]]; then
        bench_why="unexpected redis-benchmark output: $(tr '\n' ' ' <<<"$output" | cut -c1-200)"
        return 1
    fi
}

# Mean ops/s of bench_lines' tests.
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

# per_request TICKS N TESTS: CPU microseconds per request of a run of N requests of each of TESTS
# tests.
per_request() { awk -v t="$1" -v hz="$clock_ticks" -v n="$2" -v k="$3" 'BEGIN { printf "%.1f", t / hz * 1e6 / (k * n) }'; }

# Calls of GET, SET and WAIT each node has served so far, one line per node:
# `port role get set wait` (role master or slave). A replica counts the SETs it replicates too.
command_calls() {
    local port
    for port in "${node_ports[@]}"; do
        cli "$port" info replication commandstats 2>/dev/null | tr -d '\r' | awk -v port="$port" '
            /^role:/ { role = substr($0, 6) }
            /^cmdstat_(get|set|wait):/ {
                split($0, kv, /[:=,]/); calls[substr(kv[1], 9)] = kv[3]
            }
            END { printf "%s %s %d %d %d\n", port, role, calls["get"], calls["set"], calls["wait"] }'
    done
}

# run SCENARIO TARGET ROUND CLIENTS PIPELINE REQUESTS WORKLOAD: a measured run; sets run_rps to its
# mean ops/s and appends its csv lines to $results, prefixed with scenario, target, round,
# request count, and the CPU microseconds per request the proxy, the cluster and redis-benchmark
# used over the whole run (all tests together). For the `get` and `set` workloads, also appends
# to $calls each node's GET, SET and WAIT calls during the run: `scenario,target,round,port,role,
# get,set,wait`.
run() {
    local scenario=$1 target=$2 round=$3 clients=$4 pipeline=$5 n=$6 workload=$7 t0=$SECONDS line
    local proxy_us cluster_us client_us counted='' calls_before=''
    run_rps=0
    [[ $workload != get && $workload != set ]] || counted=1
    [[ -z $counted ]] || calls_before=$(command_calls)
    if ! bench "$target" "$clients" "$pipeline" "$n" "$work/bench-$scenario-$target-$round.err" "$workload"; then
        fail "$scenario" "$target" "round $round" "$bench_why"
        return 0
    fi
    if [[ -n $counted ]]; then
        # Roles are taken after the run; no failover happens during these scenarios.
        join <(sort <<<"$calls_before") <(command_calls | sort) | awk -v OFS=, -v s="$scenario" -v t="$target" -v r="$round" \
            '{ print s, t, r, $1, $6, $7 - $3, $8 - $4, $9 - $5 }' >>"$calls"
    fi
    run_rps=$(bench_rps)
    proxy_us=$(per_request "$bench_proxy_cpu" "$n" "$bench_tests")
    cluster_us=$(per_request "$bench_cluster_cpu" "$n" "$bench_tests")
    client_us=$(per_request "$bench_client_cpu" "$n" "$bench_tests")
    while IFS= read -r line; do
        printf '%s,%s,%s,%s,%s,%s,%s,%s\n' "$scenario" "$target" "$round" "$n" "$proxy_us" "$cluster_us" "$client_us" "$line" >>"$results"
    done <<<"$bench_lines"
    say "  $scenario $target round $round: $(tr -d '"' <<<"$bench_lines" | awk -F, '{ printf "%s%s %.0f ops/s", (NR > 1 ? ", " : ""), $1, $2 }') ($n requests each, $((SECONDS - t0)) s)"
}

# Samples the main proxy's RSS (kB) and its established client connections every 0.2 s into FILE.
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

# scenario  clients  pipeline  fixed-requests-per-test (with E2E_REQUESTS)  workload  targets
# (workload `multi`: MSET and MGET of 10 keys through the proxy, SET and GET direct)
scenarios=(
    "a 50 1 ${requests:-0} single proxy direct"
    "b 50 16 $((${requests:-0} * 8)) single proxy direct"
    "c 1 1 $((${requests:-0} / 4)) single proxy direct"
    "d 1000 1 ${requests:-0} single proxy direct"
    "e 50 1 ${requests:-0} multi proxy direct"
    "f 50 1 ${requests:-0} get primary prefer-replica"
    "g 50 1 ${requests:-0} set ack-primary ack-replicated"
    "h 50 16 $((${requests:-0} * 8)) set ack-primary ack-replicated"
    "i 50 1 ${requests:-0} get proxy direct"
    "j 50 1 ${requests:-0} set proxy direct"
    "k 50 1 ${requests:-0} get proxy direct"
)

: >"$work/rss-d.txt"
for spec in "${scenarios[@]}"; do
    read -r scenario clients pipeline fixed workload target_a target_b <<<"$spec"
    wants "$scenario" || continue
    # Large values in (i) and (j); 64 bytes over 100000 keys elsewhere.
    case $scenario in
    i) value_size=102400 keyspace=1000 keepalive=1 ;;
    j) value_size=10240 keyspace=100000 keepalive=1 ;;
    k) value_size=64 keyspace=100000 keepalive=0 ;;
    *) value_size=64 keyspace=100000 keepalive=1 ;;
    esac
    if [[ $scenario == i ]]; then
        # Each side sets its own keys: `redis-benchmark --cluster` hash-tags them.
        for target in "$target_a" "$target_b"; do
            say "  setting the 100 KB values through $target"
            bench "$target" 50 1 5000 "$work/fill-i-$target.err" set || die "could not set the 100 KB values through $target: $bench_why"
        done
    fi
    say "scenario $scenario: $clients client(s), pipeline $pipeline, $rounds round(s), $target_a vs $target_b$([[ $workload != multi ]] || echo ", MSET/MGET of $multi_keys keys via the proxy")"
    if [[ $scenario == d ]]; then
        start_sampler "$work/rss-d.txt"
    fi
    if [[ -n $requests ]]; then
        n_a=$fixed
        n_b=$fixed
    else
        n_a=
        n_b=
        size "$scenario" "$target_a" "$clients" "$pipeline" "$workload" && n_a=$sized
        size "$scenario" "$target_b" "$clients" "$pipeline" "$workload" && n_b=$sized
    fi
    for round in $(seq "$rounds"); do
        if [[ -n $n_a ]]; then
            run "$scenario" "$target_a" "$round" "$clients" "$pipeline" "$n_a" "$workload"
            # A probe slowed down by other load sizes tests too short; let later rounds grow.
            [[ -n $requests ]] || ((run_rps * seconds <= n_a * 5 / 4)) || n_a=$((run_rps * seconds))
        fi
        if [[ -n $n_b ]]; then
            run "$scenario" "$target_b" "$round" "$clients" "$pipeline" "$n_b" "$workload"
            [[ -n $requests ]] || ((run_rps * seconds <= n_b * 5 / 4)) || n_b=$((run_rps * seconds))
        fi
    done
    if [[ $scenario == d ]]; then
        stop_sampler
    fi
done

# RSS during (d): only samples taken while at least 900 clients were connected to the proxy.
read -r rss_load_kb conns_max < <(awk '$2 >= 900 && $1 > m {m = $1} $2 > c {c = $2} END {print m + 0, c + 0}' "$work/rss-d.txt")
# Clients idle 2 s give back their buffers, and the freed memory goes back to the system at most
# every 10 s (src/clients/trim.rs): sampled sooner, RSS still holds what the last runs freed.
sleep 12
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
meta scenarios "$selected"
if wants d; then
    meta rss_idle_start_kb "$rss_idle_start"
    meta rss_load_kb "$rss_load_kb"
    meta conns_max "$conns_max"
    meta rss_conns_kb "$rss_conns_kb"
    meta rss_idle_end_kb "$rss_idle_end"
fi
meta load_start "$load_start"
meta load_end "$(uptime | sed 's/.*load average: //')"
meta listen_overflows_proxy "$overflows_proxy"
meta wall_s "$((SECONDS - started_at))"

report=$(python3 scripts/bench/e2e_report.py report --results "$results" --calls "$calls" --failures "$failures" --meta "$meta")
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
