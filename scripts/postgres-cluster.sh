#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and benchmarks, from Debian's `postgresql` package
# (installed with apt-get if missing): trust authentication, listening on 127.0.0.1 only, its
# socket, data and server.log in DIR, durable (fsync and synchronous_commit stay on). Run as
# root, the server runs as the `postgres` user. PG_OPTIONS adds server settings
# (e.g. PG_OPTIONS="-c shared_buffers=1GB").
#
#   url=$(bash scripts/postgres-cluster.sh start DIR PORT)   # prints postgres://postgres@127.0.0.1:PORT
#   bash scripts/postgres-cluster.sh stop DIR
#
# The index's test suite runs on it with
#   INDEX_TEST_POSTGRES=$url INDEX_TEST_BACKEND=postgres cargo test -p index-service --tests
set -euo pipefail

command=${1:?usage: postgres-cluster.sh start DIR PORT | stop DIR}
dir=${2:?usage: postgres-cluster.sh start DIR PORT | stop DIR}

as_postgres() {
  if (( $(id -u) == 0 )); then runuser -u postgres -- "$@"; else "$@"; fi
}

bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

case $command in
  start)
    port=${3:?usage: postgres-cluster.sh start DIR PORT}
    if [ -z "$(bin_dir)" ]; then
      echo "[postgres-cluster] installing postgresql (Debian package)" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
    fi
    bin=$(bin_dir)
    [ -n "$bin" ] || { echo "[postgres-cluster] no PostgreSQL binaries in /usr/lib/postgresql" >&2; exit 1; }
    mkdir -p "$dir"
    if (( $(id -u) == 0 )); then chown postgres "$dir"; fi
    if [ ! -s "$dir/data/PG_VERSION" ]; then
      as_postgres "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=500 ${PG_OPTIONS:-}" start >&2 \
      || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port"
    ;;
  stop)
    bin=$(bin_dir)
    [ -n "$bin" ] && [ -d "$dir/data" ] || exit 0
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    ;;
  *)
    echo "usage: postgres-cluster.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
