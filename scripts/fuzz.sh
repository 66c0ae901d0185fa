#!/usr/bin/env bash
# Long fuzz run: tests/it/fuzz.rs in a release build for SLOTPROXY_FUZZ_SECS seconds (default
# 3600) with seed SLOTPROXY_FUZZ_SEED (default: from the clock), at low CPU priority.
# After every batch of 500 mutated requests it checks that slotproxy lives (no panic), that a
# fresh client gets correct replies and that RSS stays flat; at the end, that the well-behaved
# clients running alongside saw no error. The last line is the summary for docs/reliability.md.
#
#   scripts/fuzz.sh                                   # one hour
#   SLOTPROXY_FUZZ_SECS=600 SLOTPROXY_FUZZ_SEED=42 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export SLOTPROXY_FUZZ_SECS="${SLOTPROXY_FUZZ_SECS:-3600}"
export SLOTPROXY_FUZZ_SEED="${SLOTPROXY_FUZZ_SEED:-$(date +%s)}"

# Build first and run the binary directly, so other cargo commands are not locked out.
binary=$(cargo test --release --test it --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
if [[ -z "$binary" ]]; then
  echo "fuzz.sh: could not build tests/it/fuzz.rs (run: cargo test --release --test it --no-run)" >&2
  exit 1
fi
echo "fuzz.sh: $binary for ${SLOTPROXY_FUZZ_SECS}s, seed $SLOTPROXY_FUZZ_SEED"
exec nice -n 10 "$binary" --exact fuzz::mutated_requests_never_hurt_the_proxy_or_other_clients --nocapture
