#!/usr/bin/env bash
# Builds the release binaries and runs the room state benchmark
# (peer-daemon/examples/bench_state.rs): convergence time and bytes exchanged when 10 members
# share 1000 keys (one writer, ten writers, a late joiner), against the same pairs sent as chat
# messages in the same run. Arguments go to the benchmark, e.g.
# `scripts/bench-state.sh --members 5 --keys 500`; `scripts/bench-state.sh --help` lists them.
# Figures and how to read them: docs/benchmarks.md, "Room state (issue 15)".
set -euo pipefail
cd "$(dirname "$0")/.."

# `--bins` too: `--examples` alone would build only the example, not the binaries it starts.
cargo build --quiet --release -p index-service -p peer-daemon --bins --examples
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/examples/bench_state" "$@"
