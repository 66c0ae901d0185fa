#!/usr/bin/env bash
# Runs slotproxy's whole test suite: unit tests, and integration tests that start real
# redis-server clusters (3 primaries + 3 replicas) on free loopback ports.
#
# Usage: scripts/test.sh [extra test-runner arguments, e.g. a test name filter]
# Installs redis-server first when it is missing (apt-get, with sudo when not root). Uses
# cargo-nextest when installed (each test in its own process), `cargo test` otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/local-cluster.sh install-redis
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --locked "$@"
fi
echo "test: cargo-nextest not found; using cargo test (install it with: cargo install cargo-nextest --locked)"
exec cargo test --locked "$@"
