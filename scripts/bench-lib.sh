# Helpers shared by the index benchmarks (bench-index.sh, bench-replicas.sh); sourced, not run.
# They expect the sourcing script to set `duration` and `connections` (wrk's -d and -c) and to
# keep the processes it starts in the array `pids`, which `kill_pids` ends.

pids=()

# need COMMAND [PACKAGE]: installs the Debian package when COMMAND is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing ${2:-$1} (Debian package)" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${2:-$1}" >/dev/null
}

kill_pids() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ready() { # url
  for _ in $(seq 6000); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return
    sleep 0.01
  done
  echo "not ready: $1" >&2
  exit 1
}

stop() { # pid
  kill "$1"
  wait "$1" 2>/dev/null || true
}

# write_report_lua FILE: wrk's done() callback printing one "RESULT rps p50_ms p99_ms non2xx
# errors" line, for appending to a request script.
write_report_lua() {
  cat >"$1" <<'LUA'
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, errors))
end
LUA
}

# run_wrk_with CONNECTIONS SCRIPT URL [ARGS] -> "rps p50_ms p99_ms non2xx errors [whatever else
# SCRIPT reports]"
# write_register_lua FILE REPORT: a keyless POST /register per request, with REPORT's done().
write_register_lua() {
  cat >"$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"udp_port": 4000}'
wrk.headers["Content-Type"] = "application/json"
LUA
  cat "$2" >>"$1"
}

run_wrk_with() {
  local open=$1 script=$2 url=$3
  shift 3
  wrk -t1 -c"$open" -d"$duration" --timeout 5s -s "$script" "$url" -- "$@" \
    | awk '/^RESULT/ { $1 = ""; print substr($0, 2) }'
}

# run_wrk SCRIPT URL [ARGS]: run_wrk_with $connections.
run_wrk() { run_wrk_with "$connections" "$@"; }

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
check_clean() { # label FILE of "rps p50 p99 non2xx errors" lines
  awk -v label="$1" '$4 != 0 || $5 != 0 { bad += $4; errors += $5 }
    END { if (bad + errors > 0) printf "warning: %s had %d non-2xx answers and %d socket errors\n", label, bad, errors }' \
    "$2" >&2
}
medians() { # FILE of "rps p50 p99 ..." lines -> the median of each of the first three columns
  for column in 1 2 3; do
    awk -v c="$column" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { printf "%s ", v[int((NR + 1) / 2)] }'
  done
  echo
}
