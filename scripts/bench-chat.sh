#!/usr/bin/env bash
# Builds the release binaries and runs the loopback benchmark (peer-daemon/examples/bench.rs):
# daemons against raw UDP, round trip and throughput, directly and through a lossy relay.
# Arguments go to the benchmark, e.g. `scripts/bench-chat.sh --messages 5000 --loss 0.1`;
# `scripts/bench-chat.sh --help` lists them. Figures and how to read them: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# `--bins` too: `--examples` alone would build only the example, not the binaries it starts.
cargo build --quiet --release -p index-service -p peer-daemon --bins --examples
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/examples/bench" "$@"
