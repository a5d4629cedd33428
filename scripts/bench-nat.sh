#!/usr/bin/env bash
# NAT traversal benchmark (issue 11): for each NAT lab case (same router, cone × cone,
# cone × symmetric, symmetric × symmetric) the time from the first /msg to `delivered`, the
# time until the path is direct, and the ack RTT on the direct and on the relayed path, against
# raw UDP echoes over the same direct path and through the same coturn, all in one run
# (peer-daemon/tests/natlab/bench.rs; figures and how to read them: docs/benchmarks.md).
#
# Needs what the NAT lab needs: root (network namespaces, iptables), iproute2, iptables and
# coturn's `turnserver`. Without them the benchmark says SKIP and prints nothing else.
#
#   scripts/bench-nat.sh            # release build of the daemon, the index and the lab
#   scripts/bench-nat.sh --debug    # debug build (no second build when the tests are built)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=(--release)
if [[ ${1:-} == --debug ]]; then
  profile=()
  shift
fi
# The lab runs the index-service binary next to the peer-daemon one; it builds it itself only
# in the debug profile.
cargo build --quiet "${profile[@]}" -p index-service --bin index-service
exec cargo test --quiet "${profile[@]}" -p peer-daemon --test natlab bench_nat -- \
  --ignored --nocapture --test-threads 1 "$@"
