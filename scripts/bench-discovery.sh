#!/usr/bin/env bash
# What LAN discovery (mDNS) and the DHT cost when idle (issue 13): packets and bytes per minute
# two daemons send to the mDNS port and to a private DHT, against the same libraries bare
# (mdns-sd with one service, a mainline client with one item), in one NAT-lab LAN
# (peer-daemon/tests/natlab/idle.rs; figures: docs/benchmarks.md). Needs what the NAT lab needs
# (root, iproute2, iptables, coturn). BENCH_IDLE_SECS sets the idle time counted (default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --quiet -p peer-daemon --test natlab bench_discovery_idle -- \
  --ignored --nocapture --test-threads 1 "$@"
