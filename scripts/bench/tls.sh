#!/usr/bin/env bash
# TLS benchmark (issue 8): `redis-benchmark --tls` through slotproxy's TLS listener versus
# directly against a TLS cluster (`--cluster`), interleaved in one run, as ratios.
#
# Usage (from anywhere; it cds to the repository root):
#   bash scripts/bench/tls.sh [--out FILE]
#     --out FILE   also append the markdown report to FILE
#
# What it does:
#   1. cargo build --release --locked
#   2. makes a CA and certificates (node, slotproxy, client) with the openssl CLI
#   3. starts a throwaway six-node cluster (3 primaries + 3 replicas) whose nodes also listen
#      on TLS ports (+1000) with tls-cluster and tls-replication on, and client certificates
#      required (redis' default tls-auth-clients yes)
#   4. starts target/release/slotproxy with [backend.tls] towards the nodes' TLS ports and a
#      TLS listener for clients (server certificate only, no client_ca_file)
#   5. runs, alternating proxy and direct (the order flips each round) for $TLS_BENCH_ROUNDS
#      rounds, `redis-benchmark --tls -c 50 -t set,get -d 64 -r 100000`:
#        W1  no pipelining, $TLS_BENCH_REQUESTS requests per test (default 50000)
#        W2  -P 16, 8x as many (a pipelined run of 50000 lasts too little to measure)
#   6. prints a markdown table: the best round of each side, ops/s, and proxy/direct ratios,
#      with the load average before and after
#   With TLS_BENCH_BASELINE_BIN (another slotproxy binary, e.g. built from the commit before
#   client TLS), also runs W1 and W2 in plain text through this build's and that binary's
#   plain listeners, interleaved the same way, to show the plain path did not slow down.
# Everything it started is stopped on exit, Ctrl-C included.
#
# Environment:
#   TLS_BENCH_BASE_PORT  first node port (default 17300); TLS ports +1000, bus ports +10000;
#                        slotproxy on +20 (plain) and +21 (TLS)
#   TLS_BENCH_REQUESTS   requests per test in W1 (default 50000)
#   TLS_BENCH_ROUNDS     rounds (default 3)
#   TLS_BENCH_THREADS    slotproxy --threads (default 0: the cores available)
#   TLS_BENCH_KEEP=1     keep the temp dir (certificates, logs, raw results)
#   TLS_BENCH_BASELINE_BIN  a slotproxy binary to compare the plain path with (optional);
#                        it listens on +22
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
say() { echo "tls-bench: $*" >&2; }
die() {
    say "$*"
    exit 1
}
# shellcheck source=scripts/lib/cluster.sh
source "$repo_root/scripts/lib/cluster.sh"
# shellcheck source=scripts/bench/lib.sh
source "$repo_root/scripts/bench/lib.sh"
cd "$repo_root"

out_file=
while (($# > 0)); do
    case $1 in
    --out)
        (($# >= 2)) || die "--out needs a file"
        out_file=$(realpath -m "$2")
        shift 2
        ;;
    -h | --help)
        sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (usage: bash scripts/bench/tls.sh [--out FILE])" ;;
    esac
done

base_port=${TLS_BENCH_BASE_PORT:-17300}
tls_offset=1000
proxy_port=$((base_port + 20))
proxy_tls_port=$((base_port + 21))
requests=${TLS_BENCH_REQUESTS:-50000}
rounds=${TLS_BENCH_ROUNDS:-3}
threads=${TLS_BENCH_THREADS:-0}
keep_work=${TLS_BENCH_KEEP:-}

for tool in cargo redis-server redis-cli redis-benchmark openssl timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
ports_free "$proxy_port" "$proxy_tls_port"

say "building slotproxy (release)"
cargo build --release --locked --quiet
proxy_bin=$repo_root/target/release/slotproxy
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo "+dirty")

work=$(mktemp -d)
tls=$work/tls
mkdir -p "$tls"

# issue NAME: a certificate for 127.0.0.1/localhost signed by the CA, in $tls/NAME.{crt,key}.
issue() {
    local name=$1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
        -keyout "$tls/$name.key" -out "$tls/$name.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/$name.ext"
    openssl x509 -req -days 2 -in "$tls/$name.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
        -CAcreateserial -extfile "$tls/$name.ext" -out "$tls/$name.crt" 2>/dev/null
}
say "making certificates in $tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=slotproxy bench CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
for name in node proxy client; do issue "$name"; done

# Called by start_cluster for each node: its TLS port, and the bus kept on port + 10000 (with
# tls-cluster on, redis would put it at tls-port + 10000).
extra_node_args() {
    local port=$1
    ports_free $((port + tls_offset))
    node_args+=(
        --tls-port $((port + tls_offset)) --cluster-port $((port + 10000))
        --tls-cert-file "$tls/node.crt" --tls-key-file "$tls/node.key"
        --tls-ca-cert-file "$tls/ca.crt" --tls-cluster yes --tls-replication yes
    )
}
start_cluster "$base_port" 5000

seeds=$(printf '"127.0.0.1:%s",' $((primaries[0] + tls_offset)) $((primaries[1] + tls_offset)) $((primaries[2] + tls_offset)))
cat >"$work/proxy.toml" <<EOF
listen = "127.0.0.1:$proxy_port"
tls_listen = "127.0.0.1:$proxy_tls_port"
log = "warn"
worker_threads = $threads
[cluster]
seeds = [${seeds%,}]
[backend.tls]
enabled = true
ca_file = "$tls/ca.crt"
cert_file = "$tls/proxy.crt"
key_file = "$tls/proxy.key"
[tls]
cert_file = "$tls/proxy.crt"
key_file = "$tls/proxy.key"
[admin]
listen = ""
EOF
say "starting slotproxy on 127.0.0.1:$proxy_port (plain) and :$proxy_tls_port (TLS)"
"$proxy_bin" --config "$work/proxy.toml" >"$work/proxy.log" 2>&1 &
proxy=$!
pids+=("$proxy")
wait_for 30 proxy_ready "$proxy_port" ||
    die "slotproxy does not answer on :$proxy_port; log:"$'\n'"$(tail -n 20 "$work/proxy.log")"

baseline_port=$((base_port + 22))
baseline=
if [[ -n ${TLS_BENCH_BASELINE_BIN:-} ]]; then
    ports_free "$baseline_port"
    say "starting the baseline $TLS_BENCH_BASELINE_BIN on 127.0.0.1:$baseline_port (plain)"
    "$TLS_BENCH_BASELINE_BIN" --listen "127.0.0.1:$baseline_port" --admin-listen "" \
        --cluster "$(cluster_seeds)" --log warn --threads "$threads" >"$work/baseline.log" 2>&1 &
    baseline=$!
    pids+=("$baseline")
    wait_for 30 proxy_ready "$baseline_port" ||
        die "the baseline does not answer on :$baseline_port; log:"$'\n'"$(tail -n 20 "$work/baseline.log")"
    # This build's plain listener serves the plain path: same cluster, plain node ports.
    say "starting this build on 127.0.0.1:$((base_port + 23)) (plain, plain nodes) for the comparison"
    "$proxy_bin" --listen "127.0.0.1:$((base_port + 23))" --admin-listen "" \
        --cluster "$(cluster_seeds)" --log warn --threads "$threads" >"$work/plain.log" 2>&1 &
    pids+=($!)
    wait_for 30 proxy_ready $((base_port + 23)) ||
        die "this build does not answer on :$((base_port + 23)); log:"$'\n'"$(tail -n 20 "$work/plain.log")"
fi

tls_args=(--tls --cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key")
# bench SIDE PIPELINE REQUESTS: one redis-benchmark run; prints "SET_RPS GET_RPS". SIDE is
# direct or proxy (TLS), or build or baseline (the plain-path comparison).
bench() {
    local side=$1 pipeline=$2 n=$3 args output
    args=(-h 127.0.0.1 -n "$n" -c 50 -P "$pipeline" -t set,get -d 64 -r 100000 --csv)
    case $side in
    direct) args+=("${tls_args[@]}" --cluster -p $((primaries[0] + tls_offset))) ;;
    proxy) args+=("${tls_args[@]}" -p "$proxy_tls_port") ;;
    # The plain-path comparison: no TLS.
    baseline) args+=(-p "$baseline_port") ;;
    build) args+=(-p $((base_port + 23))) ;;
    esac
    output=$(timeout --foreground -k 5 300 redis-benchmark "${args[@]}" 2>"$work/bench.err") ||
        die "redis-benchmark ($side, -P $pipeline) failed: $(tail -n 3 "$work/bench.err")"
    process_gone "$proxy" && die "slotproxy died; log:"$'\n'"$(tail -n 20 "$work/proxy.log")"
    tr -d '"' <<<"$output" | awk -F, '$1 == "SET" { s = $2 } $1 == "GET" { g = $2 } END { printf "%.0f %.0f\n", s, g }'
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A best=()
for round in $(seq "$rounds"); do
    order=(proxy direct)
    ((round % 2 == 0)) && order=(direct proxy)
    sides=("${order[@]}")
    if [[ -n $baseline ]]; then
        sides+=(build baseline)
        ((round % 2 == 0)) && sides=("${order[@]}" baseline build)
    fi
    for workload in W1 W2; do
        pipeline=1 n=$requests
        [[ $workload == W2 ]] && pipeline=16 n=$((requests * 8))
        for side in "${sides[@]}"; do
            read -r set_rps get_rps < <(bench "$side" "$pipeline" "$n")
            say "round $round $workload $side: SET $set_rps/s GET $get_rps/s"
            echo "$round,$workload,$side,$set_rps,$get_rps" >>"$work/results.csv"
            for test in SET GET; do
                key=$workload,$side,$test
                value=$set_rps
                [[ $test == GET ]] && value=$get_rps
                ((value > ${best[$key]:-0})) && best[$key]=$value
            done
        done
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

report=$(
    echo "### redis-benchmark --tls: slotproxy vs direct ($(date -u +%Y-%m-%d), commit $commit)"
    echo
    echo "$(nproc) cores; load average $load_before before, $load_after after;" \
        "best of $rounds interleaved rounds; 50 clients, -d 64, -r 100000; slotproxy" \
        "--threads $threads; W1 $requests requests per test, W2 -P 16 with $((requests * 8))."
    echo
    echo "| workload | test | direct ops/s | slotproxy ops/s | slotproxy / direct |"
    echo "|---|---|---|---|---|"
    for workload in W1 W2; do
        for test in SET GET; do
            d=${best[$workload,direct,$test]}
            p=${best[$workload,proxy,$test]}
            echo "| $workload | $test | $d | $p | $(awk -v p="$p" -v d="$d" 'BEGIN { printf "%.2f", p / d }') |"
        done
    done
    if [[ -n $baseline ]]; then
        echo
        echo "Plain text, same rounds: this build vs $TLS_BENCH_BASELINE_BIN (both in front of the" \
            "nodes' plain ports)."
        echo
        echo "| workload | test | baseline ops/s | this build ops/s | build / baseline |"
        echo "|---|---|---|---|---|"
        for workload in W1 W2; do
            for test in SET GET; do
                d=${best[$workload,baseline,$test]}
                p=${best[$workload,build,$test]}
                echo "| $workload | $test | $d | $p | $(awk -v p="$p" -v d="$d" 'BEGIN { printf "%.2f", p / d }') |"
            done
        done
    fi
)
echo "$report"
[[ -z $out_file ]] || printf '\n%s\n' "$report" >>"$out_file"
