#!/usr/bin/env bash
# Compose smoke test: the Dockerfile and docker-compose.yml, on a real Docker engine.
#
#   bash scripts/compose-smoke.sh
#
# Without a usable Docker engine (`docker info` fails) or without Compose it prints "SKIP: ..."
# and exits 0. Otherwise it builds the image, then, on a private compose project (its own name,
# network, volume, a free published port and a random TURN_SECRET; no .env is read, so it never
# touches a stack you run yourself):
#   1. `up -d` the index and coturn and waits for their health checks (GET /healthz; a STUN
#      Binding) to say healthy;
#   2. registers a peer with curl through the published port and looks it up;
#   3. starts the demo profile (bob, who leaves #lobby, then alice: tty, stdin_open, --json
#      through DEMO_FLAGS), checks that bob is registered at his container IP on the compose
#      network with UDP port 7000, and that both records list a relay candidate on coturn (their
#      TURN allocations, made with the credentials the index handed out);
#   4. types `/msg <bob> ...` into alice's terminal through `docker attach` (ctrl-p ctrl-q to
#      detach), expects the message in bob's output and `delivered` in alice's, and back;
#      relay first, then direct: alice's first `path` event for bob is via coturn, a later one
#      is direct to bob's container address; coturn logged both allocations, alice's `/stats`
#      counts an allocation and datagrams sent through the relay; bob's answer is delivered
#      on the direct path;
#   5. `down` (volumes kept), `up -d` again: every registration is still answered by the API and
#      is in /data/index.db on the volume (sqlite3 via `exec`); the demo peers come back and
#      alice reaches bob again;
#   6. `down -v`, and checks the volume is gone;
#   7. the profile `scale` (PostgreSQL, three index replicas, HAProxy; one replica killed under
#      load): scripts/compose-scale-smoke.sh, on a project of its own, with the same image.
#      SMOKE_SCALE=0 leaves it out; SMOKE_SCALE=only builds the image and runs only that.
# Containers, network and volumes are always removed on exit (trap), and so is the tested image
# (SMOKE_KEEP_IMAGE=1 keeps it); base images, stand-ins and build layers stay as a cache.
#
# How the image is built (SMOKE_BUILD):
#   auto (default)  conventional if the official Rust image is present or can be pulled,
#                   otherwise prebuilt.
#   conventional    `docker build .`, the Dockerfile as users run it (cargo inside $RUST_IMAGE).
#   toolchain       the same unchanged `docker build .`, after scripts/docker-standins.sh has made
#                   a stand-in $RUST_IMAGE from Debian + this host's toolchain (slow: a cold
#                   release build inside the container, 5+ minutes on 2 cores).
#   prebuilt        the Dockerfile's `runtime-base` stage, unchanged, plus the two binaries built
#                   on this host by cargo (reusing target/), copied where the `runtime` stage
#                   copies them. This replaces only the `build` stage.
# SMOKE_PROFILE (prebuilt only): dev (default: reuses what `cargo test` built) or release.
# Base images that cannot be pulled are replaced by stand-ins (scripts/docker-standins.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$SECONDS
log() { printf '\n=== [compose-smoke %3ds] %s\n' "$((SECONDS - t0))" "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# --- is there an engine? ---------------------------------------------------------------------
source scripts/compose-lib.sh
find_compose "compose smoke test"
for tool in curl python3 script; do
  command -v "$tool" >/dev/null 2>&1 || fail "the smoke test needs $tool"
done

export RUST_IMAGE=${RUST_IMAGE:-rust:1-slim-bookworm}
export RUNTIME_IMAGE=${RUNTIME_IMAGE:-debian:bookworm-slim}
export PEERLINK_IMAGE=${SMOKE_IMAGE:-peerlink:smoke}
export COMPOSE_PROJECT_NAME=peerlink-smoke-$$
export INDEX_PORT
INDEX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export DEMO_FLAGS=--json
export COTURN_IMAGE=${COTURN_IMAGE:-coturn/coturn:4.6}
# A fresh secret for this project only (hex, as docs/docker.md recommends).
export TURN_SECRET
TURN_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export TURN_MIN_PORT=49160 TURN_MAX_PORT=49200
unset TURN_URLS
volume=${COMPOSE_PROJECT_NAME}_index-data
volumes=("$volume" "${COMPOSE_PROJECT_NAME}_alice-state" "${COMPOSE_PROJECT_NAME}_bob-state" "${COMPOSE_PROJECT_NAME}_postgres-data")
base=http://127.0.0.1:$INDEX_PORT
work=$(mktemp -d)
# Only the variables above and the compose file's defaults: a .env next to the compose file
# (a user's own settings) is not read.
: >"$work/empty.env"

dc() { "${compose[@]}" -f docker-compose.yml --env-file "$work/empty.env" --profile demo "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    log "FAILED (exit $rc): state and logs of the compose project"
    dc ps || true
    dc logs --no-color --tail=60 || true
  fi
  if [ -z "${torn_down:-}" ]; then
    log "teardown: down -v --remove-orphans"
    dc down -v --remove-orphans 2>&1 | sed 's/^/    /' || true
  fi
  # The tested image is removed (its untagged parents are kept: they are the layer cache), so
  # reruns leave no dangling images behind. SMOKE_KEEP_IMAGE=1 keeps it for a look.
  if [ -n "${built:-}" ] && [ -z "${SMOKE_KEEP_IMAGE:-}" ]; then
    docker rmi --no-prune "$PEERLINK_IMAGE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "engine $(docker version -f '{{.Server.Version}}' 2>/dev/null), compose: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || true)), project $COMPOSE_PROJECT_NAME, index published on port $INDEX_PORT"

# --- helpers ---------------------------------------------------------------------------------
cat >"$work/event.py" <<'EOF'
# Prints the first JSON event on stdin for which the Python expression argv[1] is true (`e` is
# the event, `env` the environment); exits 1 if there is none. Lines may carry a terminal's \r
# and the echo of typed commands, so the JSON object is looked for from the first "{".
import json, os, sys
for raw in sys.stdin:
    line = raw.replace("\r", "").strip()
    i = line.find("{")
    if i < 0:
        continue
    try:
        e = json.loads(line[i:])
    except ValueError:
        continue
    if isinstance(e, dict) and "event" in e and eval(sys.argv[1], {"e": e, "env": os.environ}):
        print(json.dumps(e))
        sys.exit(0)
sys.exit(1)
EOF

# wait_event CONTAINER SECONDS PYTHON-EXPR: prints the matching event from the container's output.
wait_event() {
  local cid=$1 seconds=$2 expr=$3 i logs
  for ((i = 0; i < seconds * 4; i++)); do
    # Read whole first: a reader that stops at the match would make `docker logs` die of
    # SIGPIPE, which pipefail turns into a failed match.
    logs=$(docker logs "$cid" 2>&1)
    if python3 "$work/event.py" "$expr" <<<"$logs"; then return 0; fi
    sleep 0.25
  done
  echo "--- output of $cid:" >&2
  docker logs "$cid" 2>&1 | tail -n 30 >&2
  fail "no event matching [$expr] from $cid within ${seconds}s"
}

json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# http METHOD PATH [BODY]: sets $status and $body.
http() {
  local out
  out=$(curl -sS -m 10 -X "$1" -H 'content-type: application/json' ${3:+--data "$3"} \
    -w '\n%{http_code}' "$base$2") || fail "curl $1 $2 failed"
  status=${out##*$'\n'}
  body=${out%$'\n'*}
  printf '    %s %s -> %s %s\n' "$1" "$2" "$status" "$body"
}

# wait_healthy [SERVICE]: waits for the service's (default: the index's) health check.
wait_healthy() {
  local service=${1:-index} cid state=none i
  cid=$(dc ps -q "$service")
  [ -n "$cid" ] || fail "no $service container"
  for ((i = 0; i < 90; i++)); do
    state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "$cid")
    [ "$state" = healthy ] && break
    sleep 1
  done
  [ "$state" = healthy ] || fail "$service not healthy after 90s (health: $state)"
  echo "    $service container ${cid:0:12}: healthy after $i s"
}

# relay_candidate UUID SECONDS: prints the relay candidate of the peer's record in the index once
# it has one (the daemon registers again with its candidates after its TURN allocation).
relay_candidate() {
  local uuid=$1 seconds=$2 i addr
  for ((i = 0; i < seconds * 4; i++)); do
    if addr=$(curl -sS -m 5 "$base/peers/$uuid" | python3 -c '
import json, sys
relays = [c["addr"] for c in json.load(sys.stdin).get("candidates", []) if c.get("kind") == "relay"]
print(relays[0]) if relays else sys.exit(1)' 2>/dev/null); then
      echo "$addr"
      return 0
    fi
    sleep 0.25
  done
  curl -sS -m 5 "$base/peers/$uuid" >&2 || true
  fail "the index has no relay candidate for $uuid after ${seconds}s"
}

# attach_type CONTAINER LINE: types LINE and Enter (a carriage return, as a keyboard sends it)
# into the container's terminal through `docker attach`, as a person would (script(1) gives
# docker attach the terminal it insists on), then detaches with the default keys ctrl-p ctrl-q,
# which leaves the daemon running.
attach_type() {
  local cid=$1 line=$2
  { sleep 1; printf '%s\r' "$line"; sleep 1; printf '\020\021'; sleep 3; } \
    | timeout 30 script -qec "docker attach $cid" /dev/null >>"$work/attach.log" 2>&1 || true
  [ "$(docker inspect -f '{{.State.Running}}' "$cid")" = true ] \
    || fail "container $cid stopped after attach/detach"
}

# --- 1. image --------------------------------------------------------------------------------
mode=${SMOKE_BUILD:-auto}
if [ "$mode" = auto ]; then
  mode=prebuilt
  if label=$(docker image inspect -f '{{with .Config.Labels}}{{index . "org.peerlink.standin"}}{{end}}' "$RUST_IMAGE" 2>/dev/null); then
    [ -z "$label" ] && mode=conventional
  elif timeout 120 docker pull -q "$RUST_IMAGE" >/dev/null 2>&1; then
    mode=conventional
  fi
fi
log "image $PEERLINK_IMAGE, build mode: $mode"
case $mode in
  conventional)
    bash scripts/docker-standins.sh debian coturn
    docker build -t "$PEERLINK_IMAGE" . 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e 'buildx' | tail -n 5
    ;;
  toolchain)
    bash scripts/docker-standins.sh debian rust coturn
    docker build -t "$PEERLINK_IMAGE" . 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e 'buildx' | tail -n 5
    ;;
  prebuilt)
    bash scripts/docker-standins.sh debian coturn
    profile=${SMOKE_PROFILE:-dev}
    case $profile in
      dev) profile_dir=debug ;;
      release) profile_dir=release ;;
      *) fail "SMOKE_PROFILE must be dev or release" ;;
    esac
    log "host build: cargo build --locked --profile $profile -p index-service -p peer-daemon"
    cargo build --quiet --locked --profile "$profile" -p index-service -p peer-daemon
    target_dir=${CARGO_TARGET_DIR:-target}
    stage=$target_dir/docker-prebuilt
    rm -rf "$stage" && mkdir -p "$stage"
    for bin in index-service peer-daemon; do
      cp "$target_dir/$profile_dir/$bin" "$stage/"
      strip "$stage/$bin" 2>/dev/null || true
    done
    log "docker build --target runtime-base, then + $stage/{index-service,peer-daemon}"
    docker build -q --target runtime-base -t peerlink-runtime-base:smoke . 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e 'buildx' -e '^ *$' || true
    docker image inspect peerlink-runtime-base:smoke >/dev/null 2>&1 || fail "runtime-base stage did not build"
    # The `runtime` stage of the Dockerfile, with the binaries from the host instead of `build`.
    printf 'FROM peerlink-runtime-base:smoke\nCOPY index-service peer-daemon /usr/local/bin/\n' \
      | docker build -q -t "$PEERLINK_IMAGE" -f - "$stage" 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e 'buildx' -e '^ *$' || true
    ;;
  *) fail "SMOKE_BUILD must be auto, conventional, toolchain or prebuilt" ;;
esac
docker image inspect "$PEERLINK_IMAGE" >/dev/null 2>&1 || fail "image $PEERLINK_IMAGE was not built"
built=1
echo "    $PEERLINK_IMAGE: $(docker image inspect -f '{{.Size}}' "$PEERLINK_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'), user $(docker image inspect -f '{{.Config.User}}' "$PEERLINK_IMAGE")"
docker run --rm --no-healthcheck "$PEERLINK_IMAGE" index-service --version | sed 's/^/    /'
docker run --rm --no-healthcheck "$PEERLINK_IMAGE" peer-daemon --version | sed 's/^/    /'
case ${SMOKE_SCALE:-1} in
  0 | 1) ;;
  only)
    log "SMOKE_SCALE=only: the profile scale, scripts/compose-scale-smoke.sh"
    bash scripts/compose-scale-smoke.sh
    torn_down=1 # (this script's own project never started)
    log "OK: compose smoke test (profile scale only) passed in $((SECONDS - t0))s (build mode $mode)"
    exit 0
    ;;
  *) fail "SMOKE_SCALE must be 1 (default), 0 or only" ;;
esac

# --- 2. index and coturn up, healthy; register and look up through the published port ---------
echo "    $COTURN_IMAGE: $(docker image inspect -f '{{with .Config.Labels}}{{with index . "org.peerlink.standin"}}stand-in {{.}}{{else}}official{{end}}{{else}}official{{end}}' "$COTURN_IMAGE")"
log "up -d index coturn"
dc up -d --no-build index coturn 2>&1 | sed 's/^/    /'
wait_healthy index
wait_healthy coturn
coturn=$(dc ps -q coturn)
coturn_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$coturn")
coturn_log=$(docker logs "$coturn" 2>&1)
grep -F -e 'Relay address to use' -e 'Listener address to use' <<<"$coturn_log" | sort -u | sed 's/^/    coturn: /'
# (From a variable: `docker logs | grep -q` fails under pipefail when grep stops reading early.)
grep -qF "Relay address to use: $coturn_ip" <<<"$coturn_log" \
  || fail "coturn does not relay from its address on the compose network ($coturn_ip)"
# A volume on coturn (the image declares one) would be left behind by every plain `down`.
[ -z "$(docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Destination}} {{end}}{{end}}' "$coturn")" ] \
  || fail "coturn has a volume mounted: $(docker inspect -f '{{json .Mounts}}' "$coturn")"
http GET /healthz
[ "$status" = 200 ] || fail "GET /healthz: $status"
http POST /register '{"udp_port":4242}'
[ "$status" = 201 ] || fail "POST /register: $status"
smoke_uuid=$(json_field "$body" uuid)
smoke_addr=$(json_field "$body" addr)
http GET "/peers/$smoke_uuid"
[ "$status" = 200 ] && [ "$(json_field "$body" addr)" = "$smoke_addr" ] || fail "lookup of $smoke_uuid"
http GET /peers/00000000-0000-0000-0000-000000000000
[ "$status" = 404 ] || fail "lookup of an unknown peer: $status"

# --- 3. the demo peers -----------------------------------------------------------------------
# Bob first, then alice. Every daemon joins #lobby at start and contacts its members at once,
# before its own TURN allocation exists: with bob in the lobby, alice's first contact with him
# would go straight to his address (she has no relay yet to go through). So that her first
# contact is the private message of step 4, made when both have a relay, bob leaves the lobby
# before she starts.
log "--profile demo up -d bob, then alice (DEMO_FLAGS=$DEMO_FLAGS)"
dc up -d --no-build bob 2>&1 | sed 's/^/    /'
bob=$(dc ps -q bob)
[ -n "$bob" ] || fail "bob did not start"
bob_ev=$(wait_event "$bob" 30 'e["event"] == "registered"')
echo "    bob:   $bob_ev"
export ALICE BOB
BOB=$(json_field "$bob_ev" uuid)
attach_type "$bob" "/leave lobby"
wait_event "$bob" 10 'e["event"] == "left" and e["room"] == "lobby" and "peer" not in e' | sed 's/^/    bob:   /'
dc up -d --no-build alice 2>&1 | sed 's/^/    /'
alice=$(dc ps -q alice)
[ -n "$alice" ] || fail "alice did not start"
alice_ev=$(wait_event "$alice" 30 'e["event"] == "registered"')
echo "    alice: $alice_ev"
ALICE=$(json_field "$alice_ev" uuid)
alice_addr=$(json_field "$alice_ev" addr)
bob_addr=$(json_field "$bob_ev" addr)
alice_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$alice")
bob_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$bob")
echo "    container IPs on ${COMPOSE_PROJECT_NAME}_default: alice $alice_ip, bob $bob_ip"
case $bob_addr in 127.*|localhost*|0.0.0.0*) fail "bob registered a loopback/unspecified address: $bob_addr" ;; esac
[ "$bob_addr" = "$bob_ip:7000" ] || fail "bob registered $bob_addr, expected his container address $bob_ip:7000"
[ "$alice_addr" = "$alice_ip:7000" ] || fail "alice registered $alice_addr, expected $alice_ip:7000"
http GET "/peers/$BOB"
[ "$status" = 200 ] && [ "$(json_field "$body" addr)" = "$bob_addr" ] || fail "index lookup of bob"
log "TURN allocations: relay candidates on coturn ($coturn_ip) in the index"
alice_relay=$(relay_candidate "$ALICE" 20)
bob_relay=$(relay_candidate "$BOB" 20)
echo "    alice: relay $alice_relay, bob: relay $bob_relay"
for relay in "$alice_relay" "$bob_relay"; do
  port=${relay##*:}
  [ "${relay%:*}" = "$coturn_ip" ] && [ "$port" -ge "$TURN_MIN_PORT" ] && [ "$port" -le "$TURN_MAX_PORT" ] \
    || fail "relay candidate $relay is not on coturn ($coturn_ip, ports $TURN_MIN_PORT-$TURN_MAX_PORT)"
done

# --- 4. chat across the compose network ------------------------------------------------------
export TEXT1="hello bob, alice here (compose smoke $$)"
export TEXT2="hi alice, bob got it"
log "alice -> bob: typing '/msg $BOB $TEXT1' into alice's terminal (docker attach)"
attach_type "$alice" "/msg $BOB $TEXT1"
ev=$(wait_event "$bob" 30 'e["event"] == "message" and e["from"] == env["ALICE"] and e["text"] == env["TEXT1"]')
echo "    bob:   $ev"
ev=$(wait_event "$alice" 30 'e["event"] == "delivered" and e["to"] == env["BOB"]')
echo "    alice: $ev"
log "alice's path to bob: relay first, then direct"
export COTURN_IP=$coturn_ip BOB_IP=$bob_ip
ev=$(wait_event "$alice" 5 'e["event"] == "path" and e["peer"] == env["BOB"]')
echo "    alice, first path event: $ev"
[ "$(json_field "$ev" via)" = relay ] && [ "$(json_field "$ev" addr)" = "$bob_relay" ] \
  || fail "alice's first path to bob is not bob's relay address $bob_relay"
ev=$(wait_event "$alice" 20 'e["event"] == "path" and e["peer"] == env["BOB"] and e["via"] == "direct"')
echo "    alice, then:             $ev"
[ "$(json_field "$ev" addr)" = "$bob_ip:7000" ] || fail "alice's direct path to bob is not his container address $bob_ip:7000"
# coturn's own account: an allocation for each peer, with credentials that the index signed.
coturn_log=$(docker logs "$coturn" 2>&1)
allocs=$(grep -c 'ALLOCATE processed, success' <<<"$coturn_log" || true)
echo "    coturn: $allocs successful ALLOCATE requests"
grep -m 2 'ALLOCATE processed, success' <<<"$coturn_log" | sed 's/^/    coturn: /'
[ "$allocs" -ge 2 ] || fail "coturn logged $allocs successful allocations, expected one for alice and one for bob"
# alice's own account: an allocation, and datagrams that went out through the relay.
attach_type "$alice" "/stats"
ev=$(wait_event "$alice" 10 'e["event"] == "stats"')
python3 - "$ev" <<'EOF' || fail "alice's /stats: no allocation or nothing relayed"
import json, sys
c = json.loads(sys.argv[1])["counters"]
shown = {k: c.get(k) for k in ("nat.allocations", "nat.relayed_out", "nat.relayed_in")}
print("    alice /stats:", json.dumps(shown))
sys.exit(0 if c.get("nat.allocations", 0) >= 1 and c.get("nat.relayed_out", 0) >= 1 else 1)
EOF
log "bob -> alice (on the direct path now)"
attach_type "$bob" "/msg $ALICE $TEXT2"
ev=$(wait_event "$alice" 30 'e["event"] == "message" and e["from"] == env["BOB"] and e["text"] == env["TEXT2"]')
echo "    alice: $ev"
ev=$(wait_event "$bob" 30 'e["event"] == "delivered" and e["to"] == env["ALICE"]')
echo "    bob:   $ev"
[ "$(json_field "$ev" via)" = direct ] || fail "bob's answer was not delivered on the direct path"

# --- 5. restart: registrations survive on the volume; stopped peers left none behind --------
log "down (keeping the volume), then up -d index coturn again"
dc down 2>&1 | sed 's/^/    /'
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")" ] \
  || fail "containers left after down"
docker volume inspect "$volume" >/dev/null 2>&1 || fail "volume $volume gone after a plain down"
# coturn too, so that its health check runs while the index's does (the demo peers wait for both).
dc up -d --no-build index coturn 2>&1 | sed 's/^/    /'
wait_healthy index
http GET "/peers/$smoke_uuid"
[ "$status" = 200 ] && [ "$(json_field "$body" addr)" = "$smoke_addr" ] \
  || fail "registration $smoke_uuid did not survive the restart"
# The demo peers were stopped (SIGTERM) before the index: no ghosts, they took their records
# offline on the way out.
for uuid in "$ALICE" "$BOB"; do
  http GET "/peers/$uuid"
  [ "$status" = 404 ] || fail "peer $uuid is still listed after it stopped (status $status): a ghost"
done
log "sqlite3 /data/index.db on the volume (docker compose exec)"
dc exec -T index sqlite3 /data/index.db 'select uuid, addr, name from peers order by name' \
  | tee "$work/rows" | sed 's/^/    /'
grep -qF "$smoke_uuid|$smoke_addr" "$work/rows" || fail "row $smoke_uuid|$smoke_addr not in the database"

log "demo peers again after the restart"
dc up -d --no-build alice bob 2>&1 | sed 's/^/    /'
alice=$(dc ps -q alice)
bob=$(dc ps -q bob)
alice_ev=$(wait_event "$alice" 30 'e["event"] == "registered"')
bob_ev=$(wait_event "$bob" 30 'e["event"] == "registered"')
for who in alice bob; do
  if [ "$who" = alice ]; then ev=$alice_ev old=$ALICE; else ev=$bob_ev old=$BOB; fi
  new=$(json_field "$ev" uuid)
  echo "    $who: $ev ($( [ "$new" = "$old" ] && echo "same UUID as before the restart" || echo "NEW UUID, was $old"))"
done
ALICE=$(json_field "$alice_ev" uuid)
BOB=$(json_field "$bob_ev" uuid)
export TEXT3="still here after the restart ($$)"
attach_type "$alice" "/msg $BOB $TEXT3"
ev=$(wait_event "$bob" 30 'e["event"] == "message" and e["from"] == env["ALICE"] and e["text"] == env["TEXT3"]')
echo "    bob:   $ev"
ev=$(wait_event "$alice" 30 'e["event"] == "delivered" and e["to"] == env["BOB"]')
echo "    alice: $ev"

# --- 6. down -v ------------------------------------------------------------------------------
log "down -v"
dc down -v --remove-orphans 2>&1 | sed 's/^/    /'
torn_down=1
for v in "${volumes[@]}"; do
  if docker volume inspect "$v" >/dev/null 2>&1; then fail "volume $v still there after down -v"; fi
done

# --- 7. the profile scale: PostgreSQL, three replicas, HAProxy -------------------------------
if [ "${SMOKE_SCALE:-1}" = 1 ]; then
  log "the profile scale: scripts/compose-scale-smoke.sh"
  bash scripts/compose-scale-smoke.sh
fi

log "OK: compose smoke test passed in $((SECONDS - t0))s (build mode $mode)"
