#!/usr/bin/env bash
# Runs slotproxy's whole test suite: unit tests, and integration tests that start real
# redis-server clusters (3 primaries + 3 replicas) on free loopback ports.
#
# Usage: scripts/test.sh [extra test-runner arguments, e.g. a test name filter]
# Installs redis-server first when it is missing (apt-get, with sudo when not root), and the
# Python frameworks tests/it/frameworks.rs drives (pip). Uses
# cargo-nextest when installed (each test in its own process), `cargo test` otherwise.
# Integration tests are modules of one binary, tests/it: filter an area with e.g. `routing::`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/local-cluster.sh install-redis
# tests/it/frameworks.rs runs real Python frameworks (redis-py, RQ, Celery, django-redis) through
# slotproxy: install the pinned versions when any is missing.
if ! python3 -c 'import redis, rq, celery, django_redis, packaging' >/dev/null 2>&1; then
    echo "test: installing the Python frameworks of tests/frameworks/requirements.txt"
    python3 -m pip install --quiet --disable-pip-version-check -r tests/frameworks/requirements.txt
fi
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --locked "$@"
fi
echo "test: cargo-nextest not found; using cargo test, one test at a time (install it with: cargo install cargo-nextest --locked)"
# All integration tests are one binary (tests/it), and some read process-wide state (RSS in
# isolation.rs and fuzz.rs, the panic hook in fuzz.rs): without nextest's process per test they
# must not share their process with other tests running at the same time.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
exec cargo test --locked "$@"
