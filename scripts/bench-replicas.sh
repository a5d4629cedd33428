#!/usr/bin/env bash
# Benchmark of the index on its two databases (not a test): drives the real release binary with
# wrk on loopback and prints, in one run, against a bare axum handler of the same shape
# (index-service/examples/bare.rs) served in the same run:
#   - lookups/s and p50/p99 of GET /peers/{uuid} and durable registrations/s of POST /register
#     for the index on SQLite, on PostgreSQL, and on PostgreSQL with two index processes
#     ("replicas") sharing one database, each driven by a wrk process of its own (half the
#     connections each; req/s summed, p50 and p99 the higher of the two; the bare handler is
#     driven that way too, for their ratios);
#   - lookup p50/p99 with BENCH_SMALL_PEERS (10 000) vs BENCH_PEERS (10 000 000) registered peers,
#     on both databases: for a hot set of BENCH_HOT (20 000) peers, and spread over all of them
#     (then most lookups miss the bounded cache and read the database);
#   - start-up time (process start until /readyz answers 200) at both sizes, resident memory after
#     the lookups, memory and database bytes per registered peer.
# It starts a throwaway PostgreSQL cluster of its own (fsync and synchronous_commit on, as
# installed; BENCH_PG_OPTIONS adds server options, e.g. "-c shared_buffers=1GB") on a free port,
# and removes it and every database at the end.
# Each figure is the median of BENCH_ROUNDS (default 3) wrk runs of BENCH_DURATION (default 5s)
# with BENCH_CONNECTIONS (default 64) connections, after one warm-up run of BENCH_WARMUP
# (default 2s) per index for the lookups; runs against the baseline and the indexes alternate. BENCH_PG_PEERS (default BENCH_PEERS; 0 leaves it out) sizes the large PostgreSQL
# database. BENCH_LOGS=DIR keeps the indexes' and the server's logs there, and every run's
# "req/s p50 p99 non-2xx errors cpu-ticks pg-cpu-ticks" line (l_* lookups, u_* lookups of any
# peer, r_* registrations). The fill's UUIDs are computed from the row number (scrambled in
# their first 32 bits, so they land all over the B-trees as random UUIDs do), so wrk can pick
# any registered peer. The whole run takes about 10 minutes on 2 cores after the release build,
# half of it filling the 10 M-peer databases.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${BENCH_DURATION:-5s}
rounds=${BENCH_ROUNDS:-3}
connections=${BENCH_CONNECTIONS:-64}
big=${BENCH_PEERS:-10000000}
small=${BENCH_SMALL_PEERS:-10000}
pg_big=${BENCH_PG_PEERS:-$big}
hot=${BENCH_HOT:-20000}
warmup=${BENCH_WARMUP:-2s}
pg_options=${BENCH_PG_OPTIONS:-}
half=$(( connections / 2 ))
if (( half < 1 || big <= small )); then
  echo "BENCH_CONNECTIONS must be at least 2 and BENCH_PEERS larger than BENCH_SMALL_PEERS" >&2
  exit 2
fi

# need, free_port, wait_ready, stop, run_wrk, medians and the like.
source scripts/bench-lib.sh
need wrk
need sqlite3
need psql postgresql-client

load() { cut -d ' ' -f 1-3 /proc/loadavg; }
echo "replicas benchmark: wrk -t1 -c$connections -d$duration x $rounds rounds on $(nproc) cores, $(date -u +%FT%TZ), load average $(load)" >&2
load_before=$(load)

cargo build --quiet --release --locked -p index-service --bin index-service --example bare
index_bin=target/release/index-service
bare_bin=target/release/examples/bare

work=$(mktemp -d)
pgdir=$(mktemp -d)
pg_started=
cleanup() {
  kill_pids
  if [[ -n ${BENCH_LOGS:-} ]]; then
    mkdir -p "$BENCH_LOGS" \
      && cp "$work"/*.log "$work"/[lur]_* "$pgdir/server.log" "$BENCH_LOGS"/ 2>/dev/null || true
  fi
  [[ -n $pg_started ]] && bash scripts/postgres-cluster.sh stop "$pgdir" >/dev/null 2>&1
  rm -rf "$work" "$pgdir"
}
trap cleanup EXIT

# The cluster: trust on loopback and its own socket directory, fsync and synchronous_commit as
# installed (on); BENCH_PG_OPTIONS adds settings.
pg_port=$(free_port)
pg_started=1
PG_OPTIONS=$pg_options bash scripts/postgres-cluster.sh start "$pgdir" "$pg_port" >/dev/null 2>"$work/initdb.log"
psql_on() { # DATABASE [psql args]
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d "$@"
}
pg_url() { echo "postgres://postgres@127.0.0.1:$pg_port/$1"; }
for db in one two big; do psql_on postgres -c "CREATE DATABASE $db"; done

# start_index LABEL URL [FLAGS] -> sets $port, $pid and $ready_ms (from exec to /readyz 200).
# Rate limits and the per-address connection cap are raised, not off, so their cost is in the
# figures (as in bench-index.sh); wrk's flood all comes from 127.0.0.1, so the per-address
# record quotas are off, and so is the global cap (the large databases exceed it). The
# coherence module's info lines say when a replica's cache stopped and resumed answering.
start_index() {
  local started
  port=$(free_port)
  started=$(date +%s%N)
  RUST_LOG=warn,index_service::db::coherence=info \
    "$index_bin" --listen "127.0.0.1:$port" --database-url "$2" \
    --write-rate-per-sec 1000000000 --write-burst 1000000000 \
    --read-rate-per-sec 1000000000 --read-burst 1000000000 \
    --max-records-per-ip 0 --max-records-per-subnet 0 --max-records 0 \
    --max-connections-per-ip 100000 "${@:3}" 2>>"$work/index-$1.log" &
  pid=$!
  pids+=("$pid")
  wait_ready "http://127.0.0.1:$port/readyz"
  ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
}

# The schema comes from a first start of the index; the rows are written while it is stopped.
create_schema() { # LABEL URL
  start_index "$1" "$2"
  stop "$pid"
}

# Row x's UUID, address and origin; the same UUID formula is in lookup.lua.
fill_sqlite() { # DB N
  local drop create
  drop=$(sqlite3 "$1" "SELECT 'DROP INDEX ' || name || ';' FROM sqlite_master
    WHERE type = 'index' AND tbl_name = 'peers' AND sql IS NOT NULL")
  create=$(sqlite3 "$1" "SELECT sql || ';' FROM sqlite_master
    WHERE type = 'index' AND tbl_name = 'peers' AND sql IS NOT NULL")
  # Rows in UUID order, and the other indexes built afterwards (sorted, not one insert at a
  # time): the same database, minutes sooner.
  sqlite3 "$1" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -1000000;
BEGIN;
$drop
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $2)
INSERT INTO peers (uuid, addr, ip, subnet, name, registered_at, last_seen, token_hash)
SELECT printf('%08x-0000-4000-8000-%012x', (x * 387420489) % 4294967296, x),
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.' || (x % 256) || ':4000',
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.' || (x % 256),
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.0/24',
       NULL,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
       lower(hex(randomblob(32)))
FROM n ORDER BY 1;
$create
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

fill_postgres() { # DATABASE N
  local drop create
  drop=$(psql_on "$1" -At -c "SELECT 'DROP INDEX ' || indexname || ';' FROM pg_indexes
    WHERE tablename = 'peers' AND indexname <> 'peers_pkey'")
  create=$(psql_on "$1" -At -c "SELECT indexdef || ';' FROM pg_indexes
    WHERE tablename = 'peers' AND indexname <> 'peers_pkey'")
  # The row counter's and the name check's triggers are off during the fill (the counter is set
  # once at the end); the vacuum and checkpoint are done now rather than during the runs.
  psql_on "$1" >/dev/null <<SQL
BEGIN;
ALTER TABLE peers DISABLE TRIGGER USER;
$drop
INSERT INTO peers (uuid, addr, ip, subnet, name, registered_at, last_seen, token_hash)
SELECT lpad(to_hex((x * 387420489) % 4294967296), 8, '0') || '-0000-4000-8000-'
         || lpad(to_hex(x), 12, '0'),
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.' || (x % 256) || ':4000',
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.' || (x % 256),
       '10.' || (x / 65536 % 256) || '.' || (x / 256 % 256) || '.0/24',
       NULL,
       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       encode(sha256(x::text::bytea), 'hex')
FROM generate_series(1::bigint, $2) AS x ORDER BY 1;
$create
ALTER TABLE peers ENABLE TRIGGER USER;
UPDATE peer_count SET n = (SELECT count(*) FROM peers) WHERE id = 0;
COMMIT;
VACUUM (ANALYZE) peers;
CHECKPOINT;
SQL
}

# timed LABEL COMMAND...: runs COMMAND and keeps its seconds in $work/secs-LABEL.
timed() {
  local started=$SECONDS
  "${@:2}"
  echo $(( SECONDS - started )) >"$work/secs-$1"
}

small_db="$work/small.db"
big_db="$work/big.db"
create_schema schema-sqlite-small "sqlite://$small_db"
create_schema schema-sqlite-big "sqlite://$big_db"
create_schema schema-pg-one "$(pg_url one)"
create_schema schema-pg-two "$(pg_url two)"
echo "filling: SQLite $small and $big peers, PostgreSQL $small, $small and $pg_big peers" >&2
timed sqlite-small fill_sqlite "$small_db" "$small"
timed sqlite-big fill_sqlite "$big_db" "$big"
timed pg-one fill_postgres one "$small"
timed pg-two fill_postgres two "$small"
if (( pg_big > 0 )); then
  create_schema schema-pg-big "$(pg_url big)"
  timed pg-big fill_postgres big "$pg_big"
fi

write_report_lua "$work/report.lua"
# lookup.lua N HOT: GET /peers/{uuid} of row x's UUID; x is any of 1..N, or with HOT > 0 one of
# HOT rows picked once, the same in every run (a hot set the cache can hold).
cat >"$work/lookup.lua" <<'LUA'
local n, hot, ids = 0, 0, {}
local function uuid(x)
  local h = (x * 387420489) % 4294967296
  return string.format("%04x%04x-0000-4000-8000-%012x", math.floor(h / 65536), h % 65536, x)
end
function init(args)
  n, hot = tonumber(args[1]), tonumber(args[2])
  math.randomseed(16)
  for i = 1, hot do ids[i] = uuid(math.random(n)) end
  math.randomseed(os.time() + n)
end
function request()
  local id = hot > 0 and ids[math.random(hot)] or uuid(math.random(n))
  return wrk.format("GET", "/peers/" .. id)
end
LUA
cat "$work/report.lua" >>"$work/lookup.lua"
write_register_lua "$work/register.lua" "$work/report.lua"

# pair SCRIPT URL_A URL_B [ARGS] -> one result line for two wrk processes run at once, half the
# connections each: req/s summed, p50 and p99 the higher of the two, failures summed.
pair() {
  local script=$1 a=$2 b=$3
  shift 3
  run_wrk_with "$half" "$script" "$a" "$@" >"$work/pair.a" &
  local wrk_a=$!
  run_wrk_with "$half" "$script" "$b" "$@" >"$work/pair.b"
  wait "$wrk_a"
  cat "$work/pair.a" "$work/pair.b" | awk '
    { rps += $1; if ($2 > p50) p50 = $2; if ($3 > p99) p99 = $3; bad += $4; errors += $5 }
    END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, bad, errors }'
}

# ticks PID... -> CPU time (user + system, in clock ticks) the processes have used so far.
ticks() {
  local total=0 pid
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    total=$(( total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }') ))
  done
  echo "$total"
}
pg_server_pids() {
  local postmaster
  postmaster=$(head -n 1 "$pgdir/data/postmaster.pid")
  echo "$postmaster" $(pgrep -P "$postmaster")
}
# measured FILE "PIDS" COMMAND...: appends COMMAND's result line and the CPU ticks the PIDS (the
# server under test) and the PostgreSQL server used meanwhile.
measured() {
  local file=$1 under_test=$2 before before_pg result
  shift 2
  before=$(ticks $under_test)
  before_pg=$(ticks $(pg_server_pids))
  result=$("$@")
  echo "$result $(( $(ticks $under_test) - before )) $(( $(ticks $(pg_server_pids)) - before_pg ))" >>"$file"
}

# Everything runs side by side; the runs against them alternate, so whatever else the machine
# does weighs on all of them alike.
bare_port=$(free_port)
"$bare_bin" "127.0.0.1:$bare_port" 2>>"$work/bare.log" &
bare_pid=$!
pids+=("$bare_pid")
bare="http://127.0.0.1:$bare_port"
wait_ready "$bare/peers/00000000-0000-4000-8000-000000000000"
# The indexes by label: their base URLs, and the labels whose lookup caches are followed.
declare -A url
indexes=(sq_small sq_big pg_one pg_a pg_b)
start_index sqlite-small "sqlite://$small_db"; sq_small_pid=$pid; url[sq_small]="http://127.0.0.1:$port"
ready_sq_small=$ready_ms
start_index sqlite-big "sqlite://$big_db"; sq_big_pid=$pid; url[sq_big]="http://127.0.0.1:$port"
ready_sq_big=$ready_ms
start_index pg-one "$(pg_url one)"; pg_one_pid=$pid; url[pg_one]="http://127.0.0.1:$port"
ready_pg_small=$ready_ms
start_index pg-two-a "$(pg_url two)"; pg_a_pid=$pid; url[pg_a]="http://127.0.0.1:$port"
start_index pg-two-b "$(pg_url two)"; pg_b_pid=$pid; url[pg_b]="http://127.0.0.1:$port"
if (( pg_big > 0 )); then
  start_index pg-big "$(pg_url big)"; pg_big_pid=$pid; url[pg_big]="http://127.0.0.1:$port"
  ready_pg_big=$ready_ms
  indexes+=(pg_big)
fi

# cache_counts URL -> "entries hits misses" of the index's lookup cache.
cache_counts() {
  curl -fsS "$1/metrics" | awk '
    /^index_lookup_cache_entries / { e = $2 } /^index_lookup_cache_hits_total / { h = $2 }
    /^index_lookup_cache_misses_total / { m = $2 }
    END { printf "%d %d %d\n", e, h, m }'
}
# hit_share BEFORE AFTER ("entries hits misses" each) -> the hits' share of the lookups between.
hit_share() {
  awk -v b="$1" -v a="$2" 'BEGIN { split(b, x, " "); split(a, y, " ");
    h = y[2] - x[2]; m = y[3] - x[3]; printf "%.1f %%", (h + m > 0 ? 100 * h / (h + m) : 0) }'
}

echo "lookups, warm-up ($warmup each, not counted)" >&2
saved=$duration; duration=$warmup
run_wrk "$work/lookup.lua" "${url[sq_small]}" "$small" 0 >/dev/null
run_wrk "$work/lookup.lua" "${url[pg_one]}" "$small" 0 >/dev/null
pair "$work/lookup.lua" "${url[pg_a]}" "${url[pg_b]}" "$small" 0 >/dev/null
run_wrk "$work/lookup.lua" "${url[sq_big]}" "$big" "$hot" >/dev/null
if (( pg_big > 0 )); then
  run_wrk "$work/lookup.lua" "${url[pg_big]}" "$pg_big" "$hot" >/dev/null
fi
duration=$saved

# Each /metrics answer counts the live records: the scrape's time is quoted for the large ones.
scrape_ms=()
for label in "${indexes[@]}"; do
  started=$(date +%s%N)
  cache_counts "${url[$label]}" >"$work/cache0-$label"
  if [[ $label == sq_big || $label == pg_big ]]; then
    scrape_ms+=("$label $(( ($(date +%s%N) - started) / 1000000 )) ms")
  fi
done
for round in $(seq "$rounds"); do
  echo "lookups, round $round: bare, SQLite, PostgreSQL, 2 replicas ($small peers), bare by 2 wrk, SQLite and PostgreSQL ($big, $pg_big peers, $hot hot)" >&2
  measured "$work/l_bare" "$bare_pid" run_wrk "$work/lookup.lua" "$bare" "$small" 0
  measured "$work/l_sq_small" "$sq_small_pid" run_wrk "$work/lookup.lua" "${url[sq_small]}" "$small" 0
  measured "$work/l_pg_one" "$pg_one_pid" run_wrk "$work/lookup.lua" "${url[pg_one]}" "$small" 0
  measured "$work/l_pg_two" "$pg_a_pid $pg_b_pid" pair "$work/lookup.lua" "${url[pg_a]}" "${url[pg_b]}" "$small" 0
  measured "$work/l_bare2" "$bare_pid" pair "$work/lookup.lua" "$bare" "$bare" "$small" 0
  measured "$work/l_sq_big" "$sq_big_pid" run_wrk "$work/lookup.lua" "${url[sq_big]}" "$big" "$hot"
  if (( pg_big > 0 )); then
    measured "$work/l_pg_big" "$pg_big_pid" run_wrk "$work/lookup.lua" "${url[pg_big]}" "$pg_big" "$hot"
  fi
done
for label in "${indexes[@]}"; do
  cache_counts "${url[$label]}" >"$work/cache1-$label"
done
rss_sq_small=$(rss_kb "$sq_small_pid")
rss_sq_big_hot=$(rss_kb "$sq_big_pid")
rss_pg_one=$(rss_kb "$pg_one_pid")
rss_pg_a=$(rss_kb "$pg_a_pid")
rss_pg_b=$(rss_kb "$pg_b_pid")
if (( pg_big > 0 )); then rss_pg_big_hot=$(rss_kb "$pg_big_pid"); fi

for round in $(seq "$rounds"); do
  echo "lookups, round $round: bare, SQLite and PostgreSQL ($big, $pg_big peers, any of them)" >&2
  measured "$work/u_bare" "$bare_pid" run_wrk "$work/lookup.lua" "$bare" "$big" 0
  measured "$work/u_sq_big" "$sq_big_pid" run_wrk "$work/lookup.lua" "${url[sq_big]}" "$big" 0
  if (( pg_big > 0 )); then
    measured "$work/u_pg_big" "$pg_big_pid" run_wrk "$work/lookup.lua" "${url[pg_big]}" "$pg_big" 0
  fi
done
cache_counts "${url[sq_big]}" >"$work/cache2-sq_big"
rss_sq_big=$(rss_kb "$sq_big_pid")
stop "$sq_big_pid"
if (( pg_big > 0 )); then
  cache_counts "${url[pg_big]}" >"$work/cache2-pg_big"
  rss_pg_big=$(rss_kb "$pg_big_pid")
  stop "$pg_big_pid"
fi

for round in $(seq "$rounds"); do
  echo "registrations, round $round: bare, SQLite, PostgreSQL, 2 replicas (durable), bare by 2 wrk" >&2
  measured "$work/r_bare" "$bare_pid" run_wrk "$work/register.lua" "$bare/register"
  measured "$work/r_sq" "$sq_small_pid" run_wrk "$work/register.lua" "${url[sq_small]}/register"
  measured "$work/r_pg_one" "$pg_one_pid" run_wrk "$work/register.lua" "${url[pg_one]}/register"
  measured "$work/r_pg_two" "$pg_a_pid $pg_b_pid" pair "$work/register.lua" "${url[pg_a]}/register" "${url[pg_b]}/register"
  measured "$work/r_bare2" "$bare_pid" pair "$work/register.lua" "$bare/register" "$bare/register"
done
group_size() { # URL -> changes per commit, on average
  curl -fsS "$1/metrics" \
    | awk '/^index_db_commit_group_size_sum/ { s = $2 } /^index_db_commit_group_size_count/ { c = $2 }
           END { if (c > 0) printf "%.1f", s / c }'
}
groups_sq=$(group_size "${url[sq_small]}")
groups_pg_one=$(group_size "${url[pg_one]}")
groups_pg_a=$(group_size "${url[pg_a]}")
groups_pg_b=$(group_size "${url[pg_b]}")
load_after=$(load)
kill_pids
stored_sq=$(( $(sqlite3 "$small_db" "SELECT count(*) FROM peers") - small ))
stored_pg_one=$(( $(psql_on one -At -c "SELECT count(*) FROM peers") - small ))
stored_pg_two=$(( $(psql_on two -At -c "SELECT count(*) FROM peers") - small ))

sqlite3 "$big_db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
sq_bytes=$(( $(stat -c %s "$big_db") + $(stat -c %s "$big_db-wal" 2>/dev/null || echo 0) ))
if (( pg_big > 0 )); then
  read -r pg_db_bytes pg_table_bytes <<<"$(psql_on big -At -F ' ' -c \
    "SELECT pg_database_size('big'), pg_total_relation_size('peers')")"
fi

for series in l_sq_small l_pg_one l_pg_two l_sq_big l_pg_big u_sq_big u_pg_big r_sq r_pg_one r_pg_two; do
  if [[ -f $work/$series ]]; then check_clean "$series" "$work/$series"; fi
done

hz=$(getconf CLK_TCK)
secs=$(awk -v d="$duration" 'BEGIN { n = d + 0; if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60;
  else if (d ~ /h$/) n *= 3600; print n }')
# cpu FILE COLUMN -> the median over the runs of the CPU microseconds per request in COLUMN (6:
# the server under test, 7: the PostgreSQL server).
cpu() {
  awk -v c="$2" -v hz="$hz" -v secs="$secs" '$1 > 0 { printf "%.0f\n", $c * 1e6 / hz / ($1 * secs) }' "$1" \
    | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
declare -A rps p50 p99 cpu_self cpu_pg
for series in l_bare l_sq_small l_pg_one l_bare2 l_pg_two l_sq_big l_pg_big u_bare u_sq_big u_pg_big \
  r_bare r_sq r_pg_one r_bare2 r_pg_two; do
  [[ -f $work/$series ]] || continue
  read -r "rps[$series]" "p50[$series]" "p99[$series]" <<<"$(medians "$work/$series")"
  cpu_self[$series]=$(cpu "$work/$series" 6)
  case $series in
    *pg*) cpu_pg[$series]=$(cpu "$work/$series" 7) ;;
    *) cpu_pg[$series]="" ;;
  esac
done
row() { printf '%-56s %7s %7s %8s %6s %6s  %s\n' "$@"; }
line() { # LABEL SERIES REMARK
  row "$1" "${rps[$2]}" "${p50[$2]}" "${p99[$2]}" "${cpu_self[$2]}" "${cpu_pg[$2]}" "$3"
}
vs() { echo "$(ratio "${rps[$1]}" "${rps[$2]}")x bare${3:-}"; }
p99_vs() { echo "p99 $(ratio "${p99[$1]}" "${p99[$2]}")x the $small-peer p99"; }
kb_per_peer() { awk -v kb="$1" -v n="$2" 'BEGIN { printf "%.0f", kb * 1024 / n }'; }
per_peer() { awk -v b="$1" -v n="$2" 'BEGIN { printf "%.0f", b / n }'; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }
share() { hit_share "$(cat "$work/$1")" "$(cat "$work/$2")"; }
entries() { cut -d ' ' -f 1 "$work/$1"; }
per_entry() { # RSS_KB_BEFORE RSS_KB_AFTER ENTRIES_BEFORE ENTRIES_AFTER
  awk -v a="$1" -v b="$2" -v m="$3" -v n="$4" 'BEGIN { printf "%.0f", (n > m ? (b - a) * 1024 / (n - m) : 0) }'
}
# A replica logs "… the lookup cache answers" when its own coherence pings come back after a gap
# (and once at start-up): its cache had stopped answering, and it is emptied.
gaps() {
  local lines
  lines=$(grep -c 'the lookup cache answers' "$work/index-$1.log" || true)
  if (( lines > 0 )); then echo $(( lines - 1 )); else echo "?"; fi
}

echo
echo "== peerlink index on SQLite and PostgreSQL: wrk -t1 -c$connections -d$duration, median of $rounds rounds, loopback, $(nproc) cores =="
echo "load average $load_before before, $load_after after; cpu us: CPU time per request of the server under test (self) and of the PostgreSQL server (pg)"
row "" "req/s" "p50 ms" "p99 ms" "self" "pg" ""
line "GET /peers/{uuid}  bare axum" l_bare ""
line "GET /peers/{uuid}  SQLite, $small peers" l_sq_small "$(vs l_sq_small l_bare)"
line "GET /peers/{uuid}  PostgreSQL, 1 replica, $small peers" l_pg_one "$(vs l_pg_one l_bare)"
line "GET /peers/{uuid}  bare axum, 2 wrk" l_bare2 ""
line "GET /peers/{uuid}  PostgreSQL, 2 replicas, $small peers" l_pg_two "$(vs l_pg_two l_bare2 " (2 wrk)")"
line "GET /peers/{uuid}  SQLite, $big peers, $hot hot" l_sq_big "$(vs l_sq_big l_bare), $(p99_vs l_sq_big l_sq_small)"
if (( pg_big > 0 )); then
  line "GET /peers/{uuid}  PostgreSQL, $pg_big peers, $hot hot" l_pg_big \
    "$(vs l_pg_big l_bare), $(p99_vs l_pg_big l_pg_one)"
fi
line "GET /peers/{uuid}  bare axum (any UUID)" u_bare ""
line "GET /peers/{uuid}  SQLite, $big peers, any" u_sq_big "$(vs u_sq_big u_bare), $(p99_vs u_sq_big l_sq_small)"
if (( pg_big > 0 )); then
  line "GET /peers/{uuid}  PostgreSQL, $pg_big peers, any" u_pg_big \
    "$(vs u_pg_big u_bare), $(p99_vs u_pg_big l_pg_one)"
fi
line "POST /register     bare axum" r_bare ""
line "POST /register     SQLite, durable" r_sq "$(vs r_sq r_bare)"
line "POST /register     PostgreSQL, 1 replica, durable" r_pg_one "$(vs r_pg_one r_bare)"
line "POST /register     bare axum, 2 wrk" r_bare2 ""
line "POST /register     PostgreSQL, 2 replicas, durable" r_pg_two "$(vs r_pg_two r_bare2 " (2 wrk)")"
echo "2 wrk: two wrk -t1 -c$half at once (2 replicas: one on each index process, both on one database); req/s summed, p50/p99 the higher of the two"
echo "lookup cache hits: SQLite $(share cache0-sq_small cache1-sq_small) ($small peers), $(share cache0-sq_big cache1-sq_big) ($big, hot), $(share cache1-sq_big cache2-sq_big) ($big, any);"
echo "  PostgreSQL $(share cache0-pg_one cache1-pg_one) (1 replica), $(share cache0-pg_a cache1-pg_a) and $(share cache0-pg_b cache1-pg_b) (2 replicas)$(
  if (( pg_big > 0 )); then echo ", $(share cache0-pg_big cache1-pg_big) ($pg_big, hot), $(share cache1-pg_big cache2-pg_big) ($pg_big, any)"; fi);" \
  "caches emptied after their pings came back late: $(gaps pg-one), $(gaps pg-two-a) and $(gaps pg-two-b)$(
  if (( pg_big > 0 )); then echo ", $(gaps pg-big)"; fi) times"
echo "registrations stored: SQLite $stored_sq ($groups_sq per commit); PostgreSQL 1 replica $stored_pg_one ($groups_pg_one per commit), 2 replicas $stored_pg_two ($groups_pg_a and $groups_pg_b per commit)"
echo "start-up (exec until /readyz 200): SQLite ${ready_sq_small} ms with $small peers, ${ready_sq_big} ms with $big; PostgreSQL ${ready_pg_small} ms with $small$(
  if (( pg_big > 0 )); then echo ", ${ready_pg_big} ms with $pg_big"; fi)"
echo "resident memory after the hot-set lookups: SQLite $(mb "$rss_sq_small") with $small peers ($(kb_per_peer "$rss_sq_small" "$small") bytes/peer), $(mb "$rss_sq_big_hot") with $big ($(kb_per_peer "$rss_sq_big_hot" "$big") bytes/peer);" \
  "PostgreSQL $(mb "$rss_pg_one") with $small ($(kb_per_peer "$rss_pg_one" "$small") bytes/peer; replicas $(mb "$rss_pg_a"), $(mb "$rss_pg_b"))$(
  if (( pg_big > 0 )); then echo ", $(mb "$rss_pg_big_hot") with $pg_big ($(kb_per_peer "$rss_pg_big_hot" "$pg_big") bytes/peer)"; fi)"
echo "  after the lookups of any peer: SQLite $(mb "$rss_sq_big") ($(kb_per_peer "$rss_sq_big" "$big") bytes/peer, $(entries cache2-sq_big) records cached, $(per_entry "$rss_sq_big_hot" "$rss_sq_big" "$(entries cache1-sq_big)" "$(entries cache2-sq_big)") bytes per record added)$(
  if (( pg_big > 0 )); then echo "; PostgreSQL $(mb "$rss_pg_big") ($(kb_per_peer "$rss_pg_big" "$pg_big") bytes/peer, $(entries cache2-pg_big) cached, $(per_entry "$rss_pg_big_hot" "$rss_pg_big" "$(entries cache1-pg_big)" "$(entries cache2-pg_big)") bytes per record added)"; fi)"
echo "database: SQLite $sq_bytes bytes for $big peers = $(per_peer "$sq_bytes" "$big") bytes/peer (filled in $(cat "$work/secs-sqlite-big") s)$(
  if (( pg_big > 0 )); then echo "; PostgreSQL $pg_db_bytes bytes = $(per_peer "$pg_db_bytes" "$pg_big") bytes/peer, the peers table and its indexes $(per_peer "$pg_table_bytes" "$pg_big") (filled in $(cat "$work/secs-pg-big") s)"; fi)"
echo "one /metrics answer (it counts the live records): ${scrape_ms[*]}" | sed 's/ms \(sq\|pg\)/ms, \1/g'
for log in "$work"/index-*.log; do
  if grep -qE 'WARN|ERROR' "$log"; then
    echo "$(basename "$log" .log): $(grep -cE 'WARN|ERROR' "$log") warnings or errors, first: $(grep -m 1 -E 'WARN|ERROR' "$log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c 1-240)"
  fi
done
