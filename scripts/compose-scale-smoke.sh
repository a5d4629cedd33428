#!/usr/bin/env bash
# Compose smoke test of the profile `scale` (docs/docker.md, "Scaling out"): PostgreSQL, three
# index replicas and HAProxy in front of them, on a real Docker engine.
#
#   bash scripts/compose-smoke.sh                      runs this after its own steps
#   SMOKE_SCALE=only bash scripts/compose-smoke.sh     builds the image and runs only this
#   PEERLINK_IMAGE=peerlink:latest bash scripts/compose-scale-smoke.sh     an image you built
#
# Without a usable Docker engine or without Compose it prints "SKIP: ..." and exits 0. The image
# $PEERLINK_IMAGE must exist (it is not built here). On a private compose project (its own name,
# network and volumes, free published ports, a random TURN_SECRET and POSTGRES_PASSWORD; no .env
# is read) it:
#   1. `up -d lb`, which starts postgres, coturn, index-1..3 and lb, and waits for each health
#      check; HAProxy must report all three replicas UP;
#   2. registers a peer through the load balancer and looks it up there, and sees the
#      answers come from all three replicas (round robin; the X-Peerlink-Replica header);
#   3. looks the record up on each replica directly (from inside its container): all three
#      have it; deletes it through the load balancer: all three answer 404 within 5 s;
#   4. streams register + lookup requests through the load balancer from SCALE_LOOPS (4)
#      concurrent loops for SCALE_STREAM_SECS (20) seconds, `docker kill`s index-2 in the
#      middle, and fails if more requests failed (another status, a lookup without the
#      registered address, or no answer) than there were loops, i.e. requests in flight at the
#      kill; prints the figures;
#   5. `up -d index-2` again while the same loops stream (no request may fail this time), and
#      waits until the load balancer sends it requests again;
#   6. `down -v`, and checks the volumes are gone.
# Containers, network and volumes are always removed on exit (trap).
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$SECONDS
log() { printf '\n=== [compose-scale-smoke %3ds] %s\n' "$((SECONDS - t0))" "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# --- is there an engine? ---------------------------------------------------------------------
source scripts/compose-lib.sh
find_compose "compose scale smoke test"
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "the scale smoke test needs $tool"
done

export PEERLINK_IMAGE=${PEERLINK_IMAGE:-peerlink:latest}
docker image inspect "$PEERLINK_IMAGE" >/dev/null 2>&1 \
  || fail "no image $PEERLINK_IMAGE: build it first (SMOKE_SCALE=only bash scripts/compose-smoke.sh does both)"
export RUNTIME_IMAGE=${RUNTIME_IMAGE:-debian:bookworm-slim}
export COTURN_IMAGE=${COTURN_IMAGE:-coturn/coturn:4.6}
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:15-bookworm}
export HAPROXY_IMAGE=${HAPROXY_IMAGE:-haproxy:2.6}
export COMPOSE_PROJECT_NAME=peerlink-scale-$$
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export SCALE_PORT SCALE_STATS_PORT TURN_SECRET POSTGRES_PASSWORD
SCALE_PORT=$(free_port)
SCALE_STATS_PORT=$(free_port)
TURN_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
unset TURN_URLS
loops=${SCALE_LOOPS:-4}
stream_secs=${SCALE_STREAM_SECS:-20}
volumes=("${COMPOSE_PROJECT_NAME}_postgres-data")
base=http://127.0.0.1:$SCALE_PORT
stats="http://127.0.0.1:$SCALE_STATS_PORT/stats;csv"
replicas=(index-1 index-2 index-3)
victim=index-2
work=$(mktemp -d)
: >"$work/empty.env"

dc() { "${compose[@]}" -f docker-compose.yml --env-file "$work/empty.env" --profile scale "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${stream_pid:-}" ]; then kill "$stream_pid" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then
    log "FAILED (exit $rc): state and logs of the compose project"
    dc ps || true
    dc logs --no-color --tail=40 || true
  fi
  if [ -z "${torn_down:-}" ]; then
    log "teardown: down -v --remove-orphans"
    dc down -v --remove-orphans 2>&1 | sed 's/^/    /' || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "engine $(docker version -f '{{.Server.Version}}' 2>/dev/null), compose: ${compose[*]}, project $COMPOSE_PROJECT_NAME, load balancer on port $SCALE_PORT (statistics $SCALE_STATS_PORT), image $PEERLINK_IMAGE"
bash scripts/docker-standins.sh debian coturn postgres haproxy
for image in "$POSTGRES_IMAGE" "$HAPROXY_IMAGE"; do
  echo "    $image: $(docker image inspect -f '{{with .Config.Labels}}{{with index . "org.peerlink.standin"}}stand-in {{.}}{{else}}official{{end}}{{else}}official{{end}}' "$image")"
done

# --- helpers ---------------------------------------------------------------------------------
json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# http METHOD PATH [BODY [HEADER]]: a request through the load balancer; sets $status, $body
# and $replica (who answered).
http() {
  local out
  out=$(curl -sS -m 10 -X "$1" -H 'content-type: application/json' ${3:+--data "$3"} ${4:+-H "$4"} \
    -D "$work/headers" -w '\n%{http_code}' "$base$2") || fail "curl $1 $2 failed"
  status=${out##*$'\n'}
  body=${out%$'\n'*}
  replica=$(tr -d '\r' <"$work/headers" | awk -F': ' 'tolower($1) == "x-peerlink-replica" {print $2}')
  printf '    %s %s -> %s via %s %s\n' "$1" "$2" "$status" "${replica:-?}" "$body"
}

# on_replica SERVICE PATH: GET from inside the replica's own container (the image has bash but
# no curl); sets $status and $body.
on_replica() {
  local out
  out=$(dc exec -T "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$1" >&3 && cat <&3' _ "$2" \
    | tr -d '\r') || fail "GET $2 on $1 failed"
  status=$(head -n 1 <<<"$out" | awk '{print $2}')
  body=$(tail -n 1 <<<"$out")
}

# wait_healthy SERVICE: waits for the service's health check.
wait_healthy() {
  local service=$1 cid state=none i
  cid=$(dc ps -q "$service")
  [ -n "$cid" ] || fail "no $service container"
  for ((i = 0; i < 90; i++)); do
    state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "$cid")
    [ "$state" = healthy ] && break
    sleep 1
  done
  [ "$state" = healthy ] || fail "$service not healthy after 90s (health: $state)"
  echo "    $service container ${cid:0:12}: healthy"
}

# lb_servers: the load balancer's view of the replicas, e.g. "index-1=UP index-2=DOWN ...".
lb_servers() {
  curl -sS -m 5 "$stats" | awk -F, '$1 == "index" && $2 ~ /^index-/ {printf "%s%s=%s", sep, $2, $18; sep=" "} END {print ""}'
}

# --- 1. up -------------------------------------------------------------------------------------
log "--profile scale up -d lb (postgres, coturn, index-1..3, lb)"
dc up -d --no-build lb 2>&1 | sed 's/^/    /'
for service in postgres "${replicas[@]}" lb; do wait_healthy "$service"; done
for ((i = 0; i < 20; i++)); do
  servers=$(lb_servers)
  [ "$servers" = "index-1=UP index-2=UP index-3=UP" ] && break
  sleep 0.5
done
echo "    HAProxy: $servers"
[ "$servers" = "index-1=UP index-2=UP index-3=UP" ] || fail "the load balancer does not see all three replicas UP"
index_log=$(dc logs --no-color index-1 | sed 's/\x1b\[[0-9;]*m//g')
grep -m 4 -i -e listening -e postgres <<<"$index_log" | sed 's/^/    /' || true


# --- 2. through the load balancer ----------------------------------------------------------------
log "register and look up through the load balancer"
http POST /register '{"udp_port":4242}'
[ "$status" = 201 ] || fail "POST /register through the load balancer: $status"
uuid=$(json_field "$body" uuid)
addr=$(json_field "$body" addr)
token=$(json_field "$body" token)
# The record holds the client's address as HAProxy saw it (X-Forwarded-For from a trusted
# proxy), not the balancer's own.
lb_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(dc ps -q lb)")
echo "    registered at $addr; the load balancer is $lb_ip"
[ -n "$lb_ip" ] && [ "${addr%:*}" != "$lb_ip" ] \
  || fail "registered at the load balancer's address ($addr): INDEX_TRUSTED_PROXIES is not in force"
declare -A seen=()
for ((i = 0; i < 6; i++)); do
  http GET "/peers/$uuid"
  [ "$status" = 200 ] && [ "$(json_field "$body" addr)" = "$addr" ] || fail "lookup of $uuid through the load balancer"
  seen[$replica]=1
done
[ "${#seen[@]}" = 3 ] || fail "6 lookups were answered by ${!seen[*]} only, not by all three replicas"

# --- 3. on each replica ------------------------------------------------------------------------
log "the record on each replica (GET from inside its container)"
for service in "${replicas[@]}"; do
  on_replica "$service" "/peers/$uuid"
  echo "    $service: $status $body"
  [ "$status" = 200 ] && [ "$(json_field "$body" addr)" = "$addr" ] || fail "$service does not have $uuid"
done
log "delete through the load balancer: gone on every replica"
http DELETE "/peers/$uuid" '' "authorization: Bearer $token"
[ "$status" = 204 ] || fail "DELETE through the load balancer: $status"
for service in "${replicas[@]}"; do
  for ((i = 0; i < 20; i++)); do
    on_replica "$service" "/peers/$uuid"
    [ "$status" = 404 ] && break
    sleep 0.25
  done
  echo "    $service: $status after $((i * 250)) ms"
  [ "$status" = 404 ] || fail "$service still answers $status for the deleted $uuid"
done

# --- 4. a stream of requests; one replica killed in the middle ----------------------------------
cat >"$work/stream.py" <<'EOF'
# Loops of POST /register + GET /peers/<uuid> through the load balancer, each on a keep-alive
# connection of its own, for SECS seconds; with a VICTIM container, `docker kill` it after half
# the time. Prints the figures as JSON. A failure is an answer other than 201, or 200 with the
# registered address, or no answer at all.
#   python3 stream.py PORT LOOPS SECS VICTIM|-
import http.client, json, subprocess, sys, threading, time

port, loops, secs, victim = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
lock = threading.Lock()
stats = {"loops": loops, "requests": 0, "failures": [], "max_latency_ms": 0.0,
         "answered_by": {}, "answered_by_after_kill": {}}
in_flight = 0
start = time.monotonic()
kill_at = killed_at = None

def request(conn, method, path, body):
    global in_flight
    with lock:
        in_flight += 1
    try:
        conn.request(method, path, body=body, headers={"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, r.getheader("X-Peerlink-Replica", "?"), r.read()
    finally:
        with lock:
            in_flight -= 1

def record(method, path, sent, status, replica, ok, detail):
    with lock:
        stats["requests"] += 1
        stats["max_latency_ms"] = max(stats["max_latency_ms"], (time.monotonic() - sent) * 1000)
        if status is not None:
            # Sent once `docker kill` had returned: the victim cannot have answered it.
            key = "answered_by_after_kill" if killed_at is not None and sent >= killed_at else "answered_by"
            stats[key][replica] = stats[key].get(replica, 0) + 1
        if not ok:
            stats["failures"].append({"t": round(sent - start, 3),
                                      "since_kill": None if kill_at is None else round(sent - kill_at, 3),
                                      "request": f"{method} {path}", "status": status,
                                      "replica": replica, "detail": detail[:200]})

def loop(n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    i = 0
    while time.monotonic() - start < secs:
        i += 1
        body = json.dumps({"udp_port": 10000 + n * 1000 + i % 1000})
        uuid = addr = None
        for method in ("POST", "GET"):
            if method == "GET" and uuid is None:
                break
            path = "/register" if method == "POST" else f"/peers/{uuid}"
            sent = time.monotonic()
            try:
                status, replica, data = request(conn, method, path, body if method == "POST" else None)
            except Exception as e:  # no answer: a closed or reset connection, a timeout
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
                record(method, path, sent, None, "-", False, repr(e))
                continue
            ok = status == (201 if method == "POST" else 200)
            if ok:
                doc = json.loads(data)
                if method == "POST":
                    uuid, addr = doc["uuid"], doc["addr"]
                else:
                    ok = doc.get("addr") == addr
            record(method, path, sent, status, replica, ok, data.decode(errors="replace"))

threads = [threading.Thread(target=loop, args=(n,)) for n in range(loops)]
for th in threads:
    th.start()
if victim != "-":
    time.sleep(secs / 2)
    with lock:
        kill_at = time.monotonic()
        stats["in_flight_at_kill"] = in_flight
    subprocess.run(["docker", "kill", victim], check=True, stdout=subprocess.DEVNULL)
    with lock:
        killed_at = time.monotonic()
    stats["kill_at_s"] = round(kill_at - start, 3)
    stats["kill_took_ms"] = round((killed_at - kill_at) * 1000)
for th in threads:
    th.join()
stats["elapsed_s"] = round(time.monotonic() - start, 3)
print(json.dumps(stats))
EOF
# report STREAM.json MAX-FAILURES: prints the figures; fails if more requests failed.
report() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
s, allowed = json.load(open(sys.argv[1])), int(sys.argv[2])
fails = s["failures"]
line = f"    {s['requests']} requests in {s['elapsed_s']} s from {s['loops']} loops ({s['requests'] / s['elapsed_s']:.0f}/s)"
if "kill_at_s" in s:
    line += f"; docker kill at {s['kill_at_s']} s (it took {s['kill_took_ms']} ms), {s['in_flight_at_kill']} requests in flight then"
print(line)
print(f"    failed: {len(fails)} (allowed: {allowed}); slowest answer {s['max_latency_ms']:.0f} ms")
for f in fails:
    when = f" ({f['since_kill']} s after the kill)" if f["since_kill"] is not None else ""
    print(f"      {f['request']} at {f['t']} s{when}: status {f['status']} from {f['replica']}: {f['detail']}")
by = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items()))
print(f"    answered by: {by(s['answered_by'])}" + (f"; after the kill: {by(s['answered_by_after_kill'])}" if "kill_at_s" in s else ""))
sys.exit(0 if len(fails) <= allowed else 1)
EOF
}

victim_cid=$(dc ps -q "$victim")
log "stream: $loops loops of register + lookup through the load balancer for ${stream_secs}s; docker kill $victim after $((stream_secs / 2))s"
python3 "$work/stream.py" "$SCALE_PORT" "$loops" "$stream_secs" "$victim_cid" >"$work/stream.json" \
  || fail "the request stream did not run"
# One request in flight per loop: at most that many can have been on the victim when it died.
report "$work/stream.json" "$loops" || fail "more failed requests than the $loops in flight at the kill"
python3 -c 'import json, sys; sys.exit(sys.argv[2] in json.load(open(sys.argv[1]))["answered_by_after_kill"])' \
  "$work/stream.json" "$victim" || fail "$victim answered requests sent after it was killed"
echo "    HAProxy: $(lb_servers)"
# HAProxy's own account (`option httplog`): the replicas' state changes, and every request it
# retried (the retry count, "+" when it went to another replica) or that ended abnormally (the
# four-letter termination state is not "----"). A request that was in flight on a reused server
# connection when its replica died is not logged: HAProxy closes the client's connection
# without an answer, as the server did.
echo "    HAProxy's log: state changes, and requests retried or cut short:"
lb_log=$(docker logs "$(dc ps -q lb)" 2>&1)
notable=$(awk '
  / is (DOWN|UP)|MAINT|going DOWN/ { print; next }
  /<STATS>|<MONITOR>/ { next }
  { for (i = 2; i <= NF; i++) if ($(i - 1) ~ /^[-A-Za-z][-A-Za-z][-A-Za-z][-A-Za-z]$/ && $i ~ /^[0-9]+\/[0-9]+\/[0-9]+\/[0-9]+\/\+?[0-9]+$/) {
      split($i, c, "/"); if (c[5] != "0" || $(i - 1) != "----") print; break } }' <<<"$lb_log")
head -n 30 <<<"$notable" | sed 's/^/      /'

# --- 5. the replica comes back, under the same load ------------------------------------------------
log "up -d $victim while $loops loops stream for ${stream_secs}s: no request may fail, and the load balancer uses $victim again"
python3 "$work/stream.py" "$SCALE_PORT" "$loops" "$stream_secs" - >"$work/stream2.json" &
stream_pid=$!
dc up -d --no-build "$victim" 2>&1 | sed 's/^/    /'
wait_healthy "$victim"
back=$SECONDS
for ((i = 0; i < 60; i++)); do
  replica=$(curl -sS -m 5 -o /dev/null -D - "$base/healthz" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-peerlink-replica" {print $2}')
  [ "$replica" = "$victim" ] && break
  sleep 0.5
done
[ "$replica" = "$victim" ] || fail "the load balancer did not send a request to $victim within 30s of its return"
echo "    $victim answered through the load balancer $((SECONDS - back)) s after it was healthy; HAProxy: $(lb_servers)"
wait "$stream_pid" || fail "the request stream did not run"
report "$work/stream2.json" 0 || fail "requests failed while $victim came back"

# --- 6. down -v ------------------------------------------------------------------------------------
log "down -v"
dc down -v --remove-orphans 2>&1 | sed 's/^/    /'
torn_down=1
for v in "${volumes[@]}"; do
  if docker volume inspect "$v" >/dev/null 2>&1; then fail "volume $v still there after down -v"; fi
done

log "OK: compose scale smoke test passed in $((SECONDS - t0))s"
