#!/usr/bin/env bash
# Builds slotproxy's container image the way this machine can (no Docker engine, no registry of
# base images) and tests it for real:
#
#  1. a statically linked release binary (glibc, +crt-static), checked with `file` and `ldd`;
#  2. the Dockerfile's `runtime` target (FROM scratch around that binary) with
#     `podman build --storage-driver vfs --format docker`;
#  3. the image config: entrypoint, non-root user, exposed ports, HEALTHCHECK, size < 15 MB,
#     and no shell in the file system;
#  4. slotproxy run from the image (`buildah run --isolation chroot`, as the image's user and
#     environment) against a six-node cluster of its own (scripts/local-cluster.sh on ports
#     TEST_IMAGE_PORT..+5, default 18479): SET/GET through it with redis-cli, a seed given by
#     host name (resolved by the static binary), the HEALTHCHECK command's exit codes (1 while no
#     node answers, 0 when ready), start-up time to ready and RSS;
#  5. SIGTERM: a request in flight (a script keeping its node busy for 2 s) still gets its
#     reply, the healthcheck turns 1, then slotproxy exits 0.
#
# Usage: docker/test-image.sh   (as root, or with sudo for apt-get; installs podman, buildah,
# redis-server and file when missing). Leaves nothing running; the image stays in podman's vfs
# storage as localhost/slotproxy:test.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh

image=localhost/slotproxy:test
target=x86_64-unknown-linux-gnu
base_port=${TEST_IMAGE_PORT:-18479}
proxy_port=$((base_port + 6))
admin_port=$((base_port + 7))
max_image_bytes=$((15 * 1000 * 1000))
store=(--storage-driver vfs)

answers_ping() { [[ $(cli "$1" ping 2>/dev/null) == PONG ]]; }
step() { printf '\n==> %s\n' "$*"; }
pass() { printf '    ok: %s\n' "$*"; }
fail() {
    printf 'test-image: FAIL: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages whose commands are missing (command:package pairs).
ensure_tools() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    ((${#missing[@]} == 0)) && return
    step "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

work=$(mktemp -d /tmp/slotproxy-image.XXXXXX)
container=""
proxy_pid=""
cleanup() {
    local status=$?
    if [[ -n $proxy_pid ]] && kill -0 "$proxy_pid" 2>/dev/null; then
        kill -KILL "$(slotproxy_process "$proxy_pid")" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
    fi
    [[ -n $container ]] && buildah "${store[@]}" rm "$container" >/dev/null 2>&1
    SLOTPROXY_DATA_DIR=$work/cluster SLOTPROXY_CLUSTER_PORT=$base_port \
        scripts/local-cluster.sh stop >/dev/null 2>&1 || true
    if ((status != 0)) && [[ -f $work/proxy.log ]]; then
        echo "--- slotproxy log (last 30 lines) ---" >&2
        tail -n 30 "$work/proxy.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

ensure_tools podman:podman buildah:buildah file:file objcopy:binutils pgrep:procps
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || ensure_tools update-ca-certificates:ca-certificates
scripts/local-cluster.sh install-redis
for port in $(seq "$base_port" $((base_port + 7))); do
    port_in_use "$port" && fail "port $port is in use; set TEST_IMAGE_PORT to a free range of 8 ports"
done

step "static release binary"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target"
bin=target/$target/release/slotproxy
file_says=$(file -L "$bin")
[[ $file_says == *"statically linked"* || $file_says == *"static-pie linked"* ]] ||
    fail "not a static binary: $file_says"
ldd_says=$(ldd "$bin" 2>&1 || true)
[[ $ldd_says == *"statically linked"* || $ldd_says == *"not a dynamic executable"* ]] ||
    fail "ldd lists shared libraries for $bin: $ldd_says"
pass "static: ${file_says#*: }"

step "podman build --target runtime"
mkdir "$work/context"
# Debug info stays in target/; the symbol table (for backtraces) stays in the image.
objcopy --strip-debug "$bin" "$work/context/slotproxy"
cp /etc/ssl/certs/ca-certificates.crt "$work/context/"
podman "${store[@]}" build --quiet --format docker -f docker/Dockerfile --target runtime \
    -t "$image" "$work/context" >/dev/null
pass "built $image"

step "image config"
inspect() { podman "${store[@]}" image inspect --format "$1" "$image"; }
expect() {
    local what=$1 got=$2 want=$3
    [[ $got == "$want" ]] || fail "$what: got '$got', want '$want'"
    pass "$what: $got"
}
expect entrypoint "$(inspect '{{json .Config.Entrypoint}}')" '["/slotproxy"]'
expect user "$(inspect '{{.Config.User}}')" "65532:65532"
expect "exposed ports" "$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')" "6379/tcp 9379/tcp "
expect healthcheck "$(inspect '{{json .HealthCheck.Test}}')" '["CMD","/slotproxy","health"]'
size=$(inspect '{{.Size}}')
((size < max_image_bytes)) || fail "image is $size bytes, over $max_image_bytes"
pass "size: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }') MB, target < 15 MB)"

container=$(buildah "${store[@]}" from --quiet "$image")
root=$(buildah "${store[@]}" mount "$container")
files=$(cd "$root" && find . -type f -o -type l | sort | tr '\n' ' ')
buildah "${store[@]}" umount "$container" >/dev/null
expect "files" "$files" "./etc/ssl/certs/ca-certificates.crt ./slotproxy "
container_env=()
while IFS= read -r kv; do
    [[ -n $kv ]] && container_env+=(-e "$kv")
done < <(inspect '{{range .Config.Env}}{{println .}}{{end}}')

# Runs a command in the image's container as its user, with the image's environment plus
# the test's listen addresses (the host's network: chroot isolation shares it). The admin
# address is unspecified (0.0.0.0) like the image's default, so `slotproxy health` is tested
# the way the HEALTHCHECK runs it.
in_image() {
    buildah "${store[@]}" run --isolation chroot --user 65532:65532 "${container_env[@]}" \
        -e "SLOTPROXY_LISTEN=127.0.0.1:$proxy_port" \
        -e "SLOTPROXY_ADMIN_LISTEN=0.0.0.0:$admin_port" \
        "$container" -- "$@"
}
# The slotproxy process at or under PID: `buildah run` (buildah, its chroot runtime, exec)
# does not forward signals, so SIGTERM goes to slotproxy itself, as a container runtime's would.
slotproxy_process() {
    local pid=$1
    while [[ -n $pid ]]; do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == slotproxy ]]; then
            printf '%s' "$pid"
            return 0
        fi
        pid=$(pgrep -P "$pid" | head -n1 || true)
    done
    return 1
}
# SIGTERM to the running slotproxy; waits for it and returns its exit status.
stop_proxy() {
    local target status=0
    wait_for 10 slotproxy_process "$proxy_pid" >/dev/null || fail "no slotproxy process under pid $proxy_pid"
    target=$(slotproxy_process "$proxy_pid")
    kill -TERM "$target"
    wait "$proxy_pid" || status=$?
    proxy_pid=""
    return "$status"
}
# The image's HEALTHCHECK command, exactly as configured.
healthcheck() { in_image /slotproxy health >/dev/null 2>&1; }
not_ready() { ! healthcheck; }

step "slotproxy from the image, before the cluster exists"
in_image /slotproxy --cluster "localhost:$base_port" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
wait_for 10 port_in_use "$admin_port" || fail "the admin listener did not come up on :$admin_port"
if healthcheck; then fail "healthcheck exited 0 while no cluster node answers"; fi
pass "healthcheck exits 1 while the cluster is down"
# slotproxy installs its SIGTERM handler when it starts accepting clients: after the slot map is
# known or session.retry_deadline_ms (5 s) passed. A SIGTERM before that ends it by the default
# action (exit by signal), so wait until it answers PING (answered by slotproxy itself).
wait_for 15 answers_ping "$proxy_port" || fail "slotproxy never accepted clients"
stop_proxy || fail "slotproxy exited $? on SIGTERM with no clients"
pass "SIGTERM with no clients: exit 0"

step "six-node cluster on ports $base_port-$((base_port + 5))"
SLOTPROXY_DATA_DIR=$work/cluster SLOTPROXY_CLUSTER_PORT=$base_port scripts/local-cluster.sh start |
    sed 's/^/    /'

step "start-up time to ready"
# From exec to the first SET answered through slotproxy, polled without pauses (each redis-cli
# costs ~2 ms), with the cluster already up: first the image's binary run directly (slotproxy's
# own start-up), then from the image under `buildah run` (adds buildah's container set-up).
answers_set() { [[ $(cli "$1" set startup:probe 1 2>/dev/null) == OK ]]; }
time_to_ready() {
    local port=$1 started deadline
    shift
    started=$(date +%s%N)
    "$@" >>"$work/proxy.log" 2>&1 &
    proxy_pid=$!
    deadline=$((SECONDS + 10))
    until answers_set "$port"; do
        ((SECONDS < deadline)) || fail "slotproxy was not ready within 10 s"
    done
    ready_ms=$((($(date +%s%N) - started) / 1000000))
}
time_to_ready "$proxy_port" env SLOTPROXY_LISTEN="127.0.0.1:$proxy_port" \
    SLOTPROXY_ADMIN_LISTEN="127.0.0.1:$admin_port" \
    "$work/context/slotproxy" --cluster "127.0.0.1:$base_port"
binary_ready_ms=$ready_ms
pass "the image's binary, run directly: ready ${binary_ready_ms} ms after exec"
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$proxy_pid/status")
pass "its RSS once ready: ${rss_kb} kB"
stop_proxy || fail "slotproxy exited $? on SIGTERM"
# A host name as seed: the static binary resolves it through /etc/hosts (and DNS).
time_to_ready "$proxy_port" in_image /slotproxy --cluster "localhost:$base_port"
pass "from the image (buildah run, seed localhost:$base_port): ready ${ready_ms} ms after start"

step "SET/GET through the image's slotproxy"
expect "SET" "$(cli "$proxy_port" set image:key hello)" "OK"
expect "GET" "$(cli "$proxy_port" get image:key)" "hello"
expect "MSET across slots" "$(cli "$proxy_port" mset a 1 b 2 c 3)" "OK"
expect "MGET across slots" "$(cli "$proxy_port" mget a b c | tr '\n' ' ')" "1 2 3 "
healthcheck || fail "healthcheck exited non-zero while ready"
pass "healthcheck exits 0 when ready"

step "SIGTERM drains"
# A script that keeps its node busy for 2 s is in flight when SIGTERM comes. slotproxy must
# turn unready, still deliver that reply, then exit 0.
busy_script='local t = redis.call("TIME")
local stop = t[1] * 1000000 + t[2] + 2000000
repeat t = redis.call("TIME") until t[1] * 1000000 + t[2] >= stop
return "drained"'
cli "$proxy_port" eval "$busy_script" 0 >"$work/eval.out" 2>&1 &
eval_pid=$!
running() {
    local port
    for port in "$base_port" $((base_port + 1)) $((base_port + 2)); do
        cli "$port" client list 2>/dev/null | grep -q 'cmd=eval' && return 0
    done
    return 1
}
wait_for 5 running || fail "the script never reached a node"
term_at=$(date +%s%N)
kill -TERM "$(slotproxy_process "$proxy_pid")"
wait "$eval_pid" || true
expect "reply to the request in flight at SIGTERM" "$(cat "$work/eval.out")" "drained"
wait_for 5 not_ready || fail "healthcheck still exits 0 after SIGTERM"
pass "healthcheck exits 1 while draining"
status=0
wait "$proxy_pid" || status=$?
proxy_pid=""
((status == 0)) || fail "slotproxy exited $status after SIGTERM"
pass "slotproxy exited 0, $((($(date +%s%N) - term_at) / 1000000)) ms after SIGTERM (drain_delay_ms 5000 included)"
if port_in_use "$proxy_port"; then fail "port $proxy_port still accepts connections"; fi
pass "client port closed"

step "all image checks passed"
printf '    image %s: %s bytes; ready %s ms after exec (binary), %s ms under buildah run; RSS %s kB\n' \
    "$image" "$size" "$binary_ready_ms" "$ready_ms" "$rss_kb"
