#!/usr/bin/env bash
# Benchmark of the index (not a test): drives the real release binary with wrk on loopback and
# prints, in one run,
#   - lookups/s and p99 of GET /peers/{uuid}, against a bare axum handler of the same shape
#     (index-service/examples/bare.rs) served in the same run;
#   - durable registrations/s and p99 of POST /register, against the bare handler;
#   - lookup p99 with 1 000 vs 1 000 000 registered peers;
#   - database size and resident memory per registered peer;
#   - durable mailbox deposits/s and p99 of POST /peers/{uuid}/mailbox (pre-signed by keyed
#     senders, index-service/examples/letters.rs), against the bare handler, and the database's
#     bytes per stored letter.
# Each figure is the median of BENCH_ROUNDS (default 3) wrk runs of BENCH_DURATION (default 5s)
# with BENCH_CONNECTIONS (default 64) connections; runs against the baseline and the index
# alternate. BENCH_PEERS (default 1000000) sets the large database. BENCH_ONLY=mailbox measures
# the deposits alone; BENCH_LETTERS (default 200000, split evenly between the rounds) pre-signed
# deposits from BENCH_SENDERS (default 64) senders feed them.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${BENCH_DURATION:-5s}
rounds=${BENCH_ROUNDS:-3}
connections=${BENCH_CONNECTIONS:-64}
big=${BENCH_PEERS:-1000000}
small=1000
only=${BENCH_ONLY:-}
letters=${BENCH_LETTERS:-200000}
senders=${BENCH_SENDERS:-64}
case "$only" in
  "" | mailbox) ;;
  *) echo "BENCH_ONLY is empty (everything) or mailbox, not '$only'" >&2; exit 2 ;;
esac
if (( letters < rounds )); then
  echo "BENCH_LETTERS ($letters) must give every round at least one deposit" >&2
  exit 2
fi

# need, free_port, wait_ready, stop, run_wrk, medians and the like.
source scripts/bench-lib.sh
need wrk
need sqlite3

cargo build --quiet --release --locked -p index-service --bin index-service --example bare \
  --example letters
index_bin=target/release/index-service
bare_bin=target/release/examples/bare
letters_bin=target/release/examples/letters

work=$(mktemp -d)
cleanup() {
  kill_pids
  rm -rf "$work"
}
trap cleanup EXIT

# start_index DB [FLAGS] -> sets $port and $pid. Rate limits and the per-address connection cap
# are raised, not off, so their cost is in the figures; the wrk flood all comes from 127.0.0.1,
# so the per-address record quotas are off, and the million-record database needs the global
# cap off. FLAGS go to the index as well.
start_index() {
  port=$(free_port)
  RUST_LOG=warn "$index_bin" --listen "127.0.0.1:$port" --database-url "sqlite://$1" \
    --write-rate-per-sec 1000000000 --write-burst 1000000000 \
    --read-rate-per-sec 1000000000 --read-burst 1000000000 \
    --max-records-per-ip 0 --max-records-per-subnet 0 --max-records 0 \
    --max-connections-per-ip 100000 "${@:2}" 2>>"$work/index.log" &
  pid=$!
  pids+=("$pid")
  wait_ready "http://127.0.0.1:$port/readyz"
}

# fill DB N: N live keyless peers in one transaction (the schema comes from a first start),
# with the origin columns the index writes, so start-up has nothing to backfill.
fill() {
  sqlite3 "$1" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $2),
ids(x, h) AS (SELECT x, lower(hex(randomblob(16))) FROM n)
INSERT INTO peers (uuid, addr, ip, subnet, name, registered_at, last_seen, token_hash)
SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
         || substr(h, 18, 3) || '-' || substr(h, 21, 12),
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.' || (x % 256) || ':4000',
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.' || (x % 256),
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.0/24',
       NULL,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
       lower(hex(randomblob(32)))
FROM ids;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

# prepare DB N: a database with the index's schema and N live peers, written while the index
# is stopped (the index loads its live records at start-up).
prepare() {
  start_index "$1"; stop "$pid"
  fill "$1" "$2"
}

sample_ids() { # DB FILE: 20 000 random UUIDs of the database, for wrk to pick from
  sqlite3 "$1" "SELECT uuid FROM peers ORDER BY random() LIMIT 20000" >"$2"
}

write_report_lua "$work/report.lua"
cat >"$work/lookup.lua" <<'LUA'
local ids = {}
function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  math.randomseed(os.time())
end
function request()
  return wrk.format("GET", "/peers/" .. ids[math.random(#ids)])
end
LUA
cat "$work/report.lua" >>"$work/lookup.lua"
write_register_lua "$work/register.lua" "$work/report.lua"
# deposit.lua FILE [wrap]: sends FILE's pre-signed deposits (path, Authorization, body per line)
# in order, each once. The index accepts a signature once, so at the end of FILE the run stops
# (and reports it in a sixth column) rather than send one again; with `wrap` (the baseline,
# which checks no signature) it starts over.
cat >"$work/deposit.lua" <<'LUA'
local requests = {}
local wrap = false
next_line = 1
exhausted = 0
function init(args)
  for line in io.lines(args[1]) do
    local path, authorization, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", path,
      { ["Authorization"] = authorization, ["Content-Type"] = "application/json" }, body)
  end
  wrap = args[2] == "wrap"
end
function request()
  if next_line > #requests then
    if not wrap then
      exhausted = 1
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
    end
    next_line = 1
  end
  next_line = next_line + 1
  return requests[next_line - 1]
end
local threads = {}
function setup(thread) threads[#threads + 1] = thread end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local ran_out = 0
  for _, thread in ipairs(threads) do ran_out = ran_out + thread:get("exhausted") end
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, errors, ran_out))
end
LUA

# The mailbox's deposits, against an index of their own with the mailbox's caps and sender rate
# off (every deposit goes to one recipient from a few senders) and the bare handler at
# $bare_port. The deposits are signed just before the rounds, so all of them run within the
# index's 300 s clock skew.
mail_row() { printf '%-43s %9s %9s %9s  %s\n' "$@"; }
mailbox_figures() {
  local db="$work/mailbox.db" per_round=$(( letters / rounds ))
  start_index "$db" --mailbox-sender-rate-per-sec 0 --mailbox-max-per-sender 0 \
    --mailbox-max-letters 0 --mailbox-max-bytes 0 --mailbox-max-total-bytes 0
  local mail_pid=$pid mail_port=$port
  "$letters_bin" "http://127.0.0.1:$mail_port" "$letters" "$senders" "$work/letters.tsv"
  split -d -a 3 -l "$per_round" "$work/letters.tsv" "$work/letters."
  rm "$work/letters.tsv"
  for round in $(seq "$rounds"); do
    echo "deposits, round $round: bare, index (durable)" >&2
    local file
    file=$(printf '%s/letters.%03d' "$work" $(( round - 1 )))
    run_wrk "$work/deposit.lua" "http://127.0.0.1:$bare_port" "$file" wrap >>"$work/bare_deposit"
    run_wrk "$work/deposit.lua" "http://127.0.0.1:$mail_port" "$file" >>"$work/index_deposit"
  done
  local groups
  groups=$(curl -fsS "http://127.0.0.1:$mail_port/metrics" \
    | awk '/^index_db_commit_group_size_sum/ { s = $2 } /^index_db_commit_group_size_count/ { c = $2 }
           END { if (c > 0) printf "%.1f", s / c }')
  stop "$mail_pid"
  sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
  local bytes kept sealed table
  bytes=$(( $(stat -c %s "$db") + $(stat -c %s "$db-wal" 2>/dev/null || echo 0) ))
  read -r kept sealed <<<"$(sqlite3 -separator ' ' "$db" "SELECT count(*), coalesce(sum(size), 0) FROM mailbox")"
  table=$(sqlite3 "$db" "SELECT sum(pgsize) FROM dbstat WHERE name IN ('mailbox', 'mailbox_recipient', 'mailbox_sender', 'mailbox_expires')")

  check_clean index_deposit "$work/index_deposit"
  awk -v per="$per_round" '$6 > 0 { n++ } END { if (n > 0) printf "warning: %d index runs used all %d pre-signed deposits of their round and stopped early; raise BENCH_LETTERS\n", n, per }' \
    "$work/index_deposit" >&2
  local bd_rps bd_p50 bd_p99 id_rps id_p50 id_p99
  read -r bd_rps bd_p50 bd_p99 <<<"$(medians "$work/bare_deposit")"
  read -r id_rps id_p50 id_p99 <<<"$(medians "$work/index_deposit")"
  echo
  echo "== mailbox deposits: wrk -t1 -c$connections -d$duration, median of $rounds rounds, 1 KiB letters from $senders senders to one recipient, loopback, $(nproc) cores =="
  mail_row "" "req/s" "p50 ms" "p99 ms" ""
  mail_row "POST /peers/{uuid}/mailbox  bare axum" "$bd_rps" "$bd_p50" "$bd_p99" ""
  mail_row "POST /peers/{uuid}/mailbox  index, durable" "$id_rps" "$id_p50" "$id_p99" \
    "$(ratio "$id_rps" "$bd_rps")x bare"
  echo "deposits: $kept letters stored ($(awk -v s="$sealed" -v n="$kept" 'BEGIN { printf "%.0f", (n > 0 ? s / n : 0) }') bytes sealed on average), $groups changes per commit (fsync) on average"
  echo "database: $bytes bytes after them = $(awk -v b="$bytes" -v n="$kept" 'BEGIN { printf "%.0f", (n > 0 ? b / n : 0) }') bytes/letter (the mailbox table and its indexes: $(awk -v b="$table" -v n="$kept" 'BEGIN { printf "%.0f", (n > 0 ? b / n : 0) }') bytes/letter)"
}

echo "index benchmark: wrk -t1 -c$connections -d$duration x $rounds rounds on $(nproc) cores, $(date -u +%FT%TZ)" >&2

if [[ $only == mailbox ]]; then
  bare_port=$(free_port)
  "$bare_bin" "127.0.0.1:$bare_port" 2>>"$work/bare.log" &
  pids+=("$!")
  wait_ready "http://127.0.0.1:$bare_port/peers/00000000-0000-4000-8000-000000000000"
  mailbox_figures
  exit 0
fi

# The databases, written while no index runs (the index loads its live records at start-up).
small_db="$work/small.db"
big_db="$work/big.db"
prepare "$small_db" "$small"
fill_started=$(date +%s)
prepare "$big_db" "$big"
fill_secs=$(( $(date +%s) - fill_started ))
sample_ids "$small_db" "$work/small.ids"
sample_ids "$big_db" "$work/big.ids"

# The bare baseline and both indexes run side by side; the runs against them alternate, so
# whatever else the machine does weighs on all of them alike.
bare_port=$(free_port)
"$bare_bin" "127.0.0.1:$bare_port" 2>>"$work/bare.log" &
pids+=("$!")
wait_ready "http://127.0.0.1:$bare_port/peers/00000000-0000-4000-8000-000000000000"
start_index "$small_db"; small_pid=$pid; small_port=$port
load_started=$(date +%s%N)
start_index "$big_db"; big_pid=$pid; big_port=$port
load_ms=$(( ($(date +%s%N) - load_started) / 1000000 ))

for round in $(seq "$rounds"); do
  echo "lookups, round $round: bare, index with $small peers, index with $big peers" >&2
  run_wrk "$work/lookup.lua" "http://127.0.0.1:$bare_port" "$work/small.ids" >>"$work/bare_lookup"
  run_wrk "$work/lookup.lua" "http://127.0.0.1:$small_port" "$work/small.ids" >>"$work/small_lookup"
  run_wrk "$work/lookup.lua" "http://127.0.0.1:$big_port" "$work/big.ids" >>"$work/big_lookup"
done
small_rss=$(rss_kb "$small_pid")
big_rss=$(rss_kb "$big_pid")
stop "$small_pid"
stop "$big_pid"
sqlite3 "$big_db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
big_bytes=$(( $(stat -c %s "$big_db") + $(stat -c %s "$big_db-wal" 2>/dev/null || echo 0) ))

reg_db="$work/register.db"
start_index "$reg_db"; reg_pid=$pid; reg_port=$port
for round in $(seq "$rounds"); do
  echo "registrations, round $round: bare, index (durable)" >&2
  run_wrk "$work/register.lua" "http://127.0.0.1:$bare_port/register" >>"$work/bare_register"
  run_wrk "$work/register.lua" "http://127.0.0.1:$reg_port/register" >>"$work/index_register"
done
group_sizes=$(curl -fsS "http://127.0.0.1:$reg_port/metrics" \
  | awk '/^index_db_commit_group_size_sum/ { s = $2 } /^index_db_commit_group_size_count/ { c = $2 }
         END { if (c > 0) printf "%.1f", s / c }')
stop "$reg_pid"
stored=$(sqlite3 "$reg_db" "SELECT count(*) FROM peers")

for series in small_lookup big_lookup index_register; do
  check_clean "$series" "$work/$series"
done
read -r bl_rps bl_p50 bl_p99 <<<"$(medians "$work/bare_lookup")"
read -r sl_rps sl_p50 sl_p99 <<<"$(medians "$work/small_lookup")"
read -r gl_rps gl_p50 gl_p99 <<<"$(medians "$work/big_lookup")"
read -r br_rps br_p50 br_p99 <<<"$(medians "$work/bare_register")"
read -r ir_rps ir_p50 ir_p99 <<<"$(medians "$work/index_register")"

row() { printf '%-38s %9s %9s %9s  %s\n' "$@"; }
echo
echo "== peerlink index benchmark: wrk -t1 -c$connections -d$duration, median of $rounds rounds, loopback, $(nproc) cores =="
row "" "req/s" "p50 ms" "p99 ms" ""
row "GET /peers/{uuid}  bare axum" "$bl_rps" "$bl_p50" "$bl_p99" ""
row "GET /peers/{uuid}  index, $small peers" "$sl_rps" "$sl_p50" "$sl_p99" \
  "$(ratio "$sl_rps" "$bl_rps")x bare (goal >= 0.8)"
row "GET /peers/{uuid}  index, $big peers" "$gl_rps" "$gl_p50" "$gl_p99" \
  "p99 $(ratio "$gl_p99" "$sl_p99")x the $small-peer p99 (goal <= 1.2)"
row "POST /register     bare axum" "$br_rps" "$br_p50" "$br_p99" ""
row "POST /register     index, durable" "$ir_rps" "$ir_p50" "$ir_p99" \
  "$(ratio "$ir_rps" "$br_rps")x bare (goal >= 0.3)"
echo "registrations: $stored rows stored, $group_sizes registrations per commit (fsync) on average"
echo "database: $big_bytes bytes for $big peers = $(awk -v b="$big_bytes" -v n="$big" 'BEGIN { printf "%.0f", b / n }') bytes/peer (filled in ${fill_secs} s; the index started and answered /readyz in ${load_ms} ms)"
echo "resident memory: $small_rss kB with $small peers, $big_rss kB with $big peers = $(awk -v a="$small_rss" -v b="$big_rss" -v n="$big" -v m="$small" 'BEGIN { printf "%.0f", (b - a) * 1024 / (n - m) }') bytes/peer"

mailbox_figures
