#!/usr/bin/env bash
# Makes sure the base images that the Dockerfile names exist in the local Docker engine. An image
# that is already there is used as it is; otherwise it is pulled; only when it cannot be pulled
# (no registry reachable, as on our build machines) is a local stand-in built under the SAME name:
#
#   debian  -> $RUNTIME_IMAGE (debian:bookworm-slim): a minimal Debian bookworm root file system
#              made by `debootstrap --variant=minbase` from Debian's mirror, `docker import`ed.
#              The rootfs tarball is cached in $STANDIN_CACHE, so later runs take seconds.
#   rust    -> $RUST_IMAGE (rust:1-slim-bookworm): the debian stand-in plus gcc and libc6-dev
#              from Debian (what the official slim Rust image adds) and THIS host's Rust
#              toolchain (`rustc --print sysroot`, without its docs), and the host's CA bundle
#              (/etc/ssl/certs/ca-certificates.crt) so that cargo reaches crates.io through the
#              same HTTPS path as the host does. Heavy (~1 GB); only needed to run the
#              Dockerfile's own cargo build stage without a registry.
#   coturn  -> $COTURN_IMAGE (coturn/coturn:4.6): the debian stand-in plus Debian's `coturn`
#              package (4.6.x in bookworm), laid out like the official image where compose
#              relies on it: `turnserver` and `turnutils_stunclient` in /usr/bin, user
#              nobody:nogroup, a volume at /var/lib/coturn, and the entrypoint
#              `docker-entrypoint.sh`, which (as the official one does) puts `turnserver` in
#              front of arguments that start with `-` and expands each argument once with the
#              shell (`$(...)`, `$VAR`) before it execs them.
#   postgres -> $POSTGRES_IMAGE (postgres:15-bookworm): the debian stand-in plus Debian's
#              `postgresql` package (15.x in bookworm), laid out like the official image where
#              compose relies on it: user postgres (uid/gid 999), PGDATA=/var/lib/postgresql/data
#              (a volume), the server programs and `pg_isready` on PATH, a UTF-8 default locale,
#              STOPSIGNAL SIGINT, and an entrypoint `docker-entrypoint.sh` that honours
#              POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB (and POSTGRES_HOST_AUTH_METHOD,
#              POSTGRES_INITDB_ARGS): on the first start it runs initdb into an empty PGDATA,
#              sets the superuser's password, allows password logins (scram-sha-256) from any
#              address, listens on all of them and creates the database; then it execs postgres
#              as the postgres user. (No /docker-entrypoint-initdb.d scripts.)
#   haproxy -> $HAPROXY_IMAGE (haproxy:2.6): the debian stand-in plus Debian's `haproxy` package
#              (2.6.x in bookworm), laid out like the official image: the configuration at
#              /usr/local/etc/haproxy/haproxy.cfg (mount yours there), user haproxy, STOPSIGNAL
#              SIGUSR1 (soft stop), and the entrypoint `docker-entrypoint.sh`, which (as the
#              official one does) puts `haproxy` in front of arguments that start with `-` and
#              runs haproxy in the foreground as a master-worker (`-W -db`).
#
# Usage: scripts/docker-standins.sh [debian] [rust] [coturn] [postgres] [haproxy]
#        (no argument: debian)
#        FORCE=1 scripts/docker-standins.sh ...            rebuild stand-ins that already exist
# Stand-ins carry the label org.peerlink.standin=<how>, so they can be told from the real thing:
#   docker image inspect -f '{{index .Config.Labels "org.peerlink.standin"}}' debian:bookworm-slim
# Needs root (debootstrap), and installs the debootstrap package with apt-get if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_IMAGE=${RUNTIME_IMAGE:-debian:bookworm-slim}
RUST_IMAGE=${RUST_IMAGE:-rust:1-slim-bookworm}
COTURN_IMAGE=${COTURN_IMAGE:-coturn/coturn:4.6}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:15-bookworm}
HAPROXY_IMAGE=${HAPROXY_IMAGE:-haproxy:2.6}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STANDIN_CACHE=${STANDIN_CACHE:-target/docker-standins}
SUITE=bookworm

say() { printf '[standins] %s\n' "$*" >&2; }

# standin_label IMAGE: prints the stand-in label ("" for a real image); fails if IMAGE is absent.
standin_label() {
  docker image inspect -f '{{with .Config.Labels}}{{index . "org.peerlink.standin"}}{{end}}' "$1" 2>/dev/null
}

# have_or_pull IMAGE: true if IMAGE is (now) in the engine and no stand-in must be built.
have_or_pull() {
  local image=$1 label
  if label=$(standin_label "$image"); then
    if [ -z "$label" ]; then
      say "$image: present locally"
      return 0
    elif [ -z "${FORCE:-}" ]; then
      say "$image: present locally (stand-in: $label)"
      return 0
    fi
    say "$image: FORCE set, replacing the stand-in ($label)"
  fi
  if timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
    say "$image: pulled"
    return 0
  fi
  return 1
}

debian_standin() {
  have_or_pull "$RUNTIME_IMAGE" && return 0
  say "$RUNTIME_IMAGE: cannot be pulled; building a stand-in with debootstrap"
  mkdir -p "$STANDIN_CACHE"
  local tarball="$STANDIN_CACHE/debian-$SUITE-minbase.tar"
  if [ ! -s "$tarball" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
      say "installing debootstrap (Debian package)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    local rootfs="$STANDIN_CACHE/rootfs.tmp"
    rm -rf "$rootfs"
    say "debootstrap --variant=minbase $SUITE from $DEBIAN_MIRROR (a minute or two, once)"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$STANDIN_CACHE/debootstrap.log" 2>&1 \
      || { tail -n 30 "$STANDIN_CACHE/debootstrap.log" >&2; exit 1; }
    # What the official slim image does too: apt sources for updates and security, no docs,
    # man pages or translations, no package caches.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    # The official image's apt settings: no package caches kept, no translations.
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
      "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
      "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  else
    say "using cached rootfs $tarball"
  fi
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL org.peerlink.standin=debootstrap-minbase-$SUITE" \
    "$tarball" "$RUNTIME_IMAGE" >/dev/null
  say "$RUNTIME_IMAGE: stand-in imported ($(docker image inspect -f '{{.Size}}' "$RUNTIME_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

rust_standin() {
  have_or_pull "$RUST_IMAGE" && return 0
  debian_standin
  local sysroot version ctx
  sysroot=$(rustc --print sysroot)
  version=$(rustc --version | awk '{print $2}')
  say "$RUST_IMAGE: cannot be pulled; building a stand-in from $RUNTIME_IMAGE + gcc + host rustc $version ($sysroot)"
  ctx=$(mktemp -d)
  # Laid out like the official image: RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo,
  # cargo and rustc on PATH. No rustup itself: the toolchain is the host's, as it is.
  cat >"$ctx/Dockerfile" <<EOF
FROM $RUNTIME_IMAGE
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY toolchain/ /usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu/
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    RUST_VERSION=$version \\
    PATH=/usr/local/cargo/bin:/usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.peerlink.standin=host-toolchain-$version
EOF
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  # The build context goes to the engine as one tar stream: the Dockerfile, the CA bundle and the
  # toolchain (bin, lib, libexec; not share/, which is documentation).
  tar -c -C "$ctx" Dockerfile ca-certificates.crt -C "$sysroot" --transform='s,^\./,toolchain/,S' ./bin ./lib ./libexec \
    | docker build -q -t "$RUST_IMAGE" - >/dev/null
  rm -rf "$ctx"
  say "$RUST_IMAGE: stand-in built ($(docker image inspect -f '{{.Size}}' "$RUST_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

coturn_standin() {
  have_or_pull "$COTURN_IMAGE" && return 0
  debian_standin
  local ctx
  say "$COTURN_IMAGE: cannot be pulled; building a stand-in from $RUNTIME_IMAGE + Debian's coturn package"
  ctx=$(mktemp -d)
  # The official image's entrypoint contract: `docker run IMAGE --flag ...` runs turnserver with
  # those flags, `docker run IMAGE turnserver ...` (what docker-compose.yml does) runs that argv,
  # and each argument is expanded once by the shell, so the same compose `command:` behaves the
  # same on both images.
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# Stand-in for the entrypoint of the official coturn image (peerlink: scripts/docker-standins.sh).
if [ "${1:0:1}" = '-' ]; then
  set -- turnserver "$@"
fi
argv=()
for arg in "$@"; do
  argv+=("$(eval "echo $arg")")
done
exec "${argv[@]}"
EOF
  # policy-rc.d: the package must not try to start a service while it installs. Its own
  # configuration file is not used: compose starts turnserver with -n (no configuration file).
  # Debian's turnserver keeps its (optional) database in /var/lib/turn, the official image's in
  # /var/lib/coturn: one directory, writable by nobody, under both names.
  cat >"$ctx/Dockerfile" <<EOF
FROM $RUNTIME_IMAGE
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \\
 && chmod +x /usr/sbin/policy-rc.d \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends coturn \\
 && rm -f /usr/sbin/policy-rc.d \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /var/lib/coturn \\
 && chown nobody:nogroup /var/lib/coturn \\
 && rm -rf /var/lib/turn \\
 && ln -s coturn /var/lib/turn
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh
USER nobody:nogroup
EXPOSE 3478 3478/udp 5349 5349/udp
VOLUME ["/var/lib/coturn"]
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["--log-file=stdout"]
LABEL org.peerlink.standin=debian-package-coturn
EOF
  # (The legacy builder's deprecation notice is dropped; errors still show.)
  docker build -q -t "$COTURN_IMAGE" "$ctx" 2>&1 >/dev/null \
    | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' >&2 || true
  rm -rf "$ctx"
  [ "$(standin_label "$COTURN_IMAGE")" = debian-package-coturn ] || { say "$COTURN_IMAGE: the stand-in did not build"; exit 1; }
  say "$COTURN_IMAGE: stand-in built ($(docker run --rm --entrypoint dpkg-query "$COTURN_IMAGE" -W -f '${Package} ${Version}' coturn), $(docker image inspect -f '{{.Size}}' "$COTURN_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

# build_standin IMAGE LABEL CONTEXT-DIR: docker build, then checks that the label is there.
build_standin() {
  local image=$1 label=$2 ctx=$3
  # (The legacy builder's deprecation notice is dropped; errors still show.)
  docker build -q -t "$image" "$ctx" 2>&1 >/dev/null \
    | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' >&2 || true
  rm -rf "$ctx"
  [ "$(standin_label "$image")" = "$label" ] || { say "$image: the stand-in did not build"; exit 1; }
}

postgres_standin() {
  have_or_pull "$POSTGRES_IMAGE" && return 0
  debian_standin
  local ctx
  say "$POSTGRES_IMAGE: cannot be pulled; building a stand-in from $RUNTIME_IMAGE + Debian's postgresql package"
  ctx=$(mktemp -d)
  # The official image's entrypoint contract, reduced to what a compose file uses: the
  # POSTGRES_* variables take effect on the first start only (an initialised PGDATA is used as
  # it is), and `postgres` runs as the postgres user with PGDATA from the environment.
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# Stand-in for the entrypoint of the official postgres image (peerlink: scripts/docker-standins.sh).
set -Eeuo pipefail
if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
  # A fresh volume (or a bind mount) may belong to root: hand it to postgres, then drop root.
  mkdir -p "$PGDATA"
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=${POSTGRES_USER}}"
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "Error: the database is not initialised and POSTGRES_PASSWORD is empty: set it (or POSTGRES_HOST_AUTH_METHOD=trust, which lets anyone in)" >&2
    exit 1
  fi
  # (The password through a pipe, never on a command line. POSTGRES_INITDB_ARGS is a list of
  # flags, split by the shell as in the official image.)
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") ${POSTGRES_INITDB_ARGS:-}
  else
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" ${POSTGRES_INITDB_ARGS:-}
  fi
  # Local (socket) logins stay trusted, as initdb made them; every network client needs the
  # password.
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # A server on the socket only, so that nobody (no health check either) sees it as up.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
EOF
  # As the official image: postgres is uid/gid 999 (so a volume can move between the two), no
  # `main` cluster made by the package (PGDATA is initialised by the entrypoint instead), the
  # socket directory writable for any user, PGDATA a volume. policy-rc.d: the packages must not
  # try to start a service while they install. LANG: initdb takes the database's encoding from
  # the locale, and C.UTF-8 is built into Debian's libc (the official image uses en_US.utf8).
  cat >"$ctx/Dockerfile" <<EOF
FROM $RUNTIME_IMAGE
ENV PG_MAJOR=15
RUN groupadd --system --gid 999 postgres \\
 && useradd --system --gid postgres --uid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres \\
 && mkdir -p /var/lib/postgresql \\
 && chown postgres:postgres /var/lib/postgresql \\
 && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \\
 && chmod +x /usr/sbin/policy-rc.d \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \\
 && sed -ri 's/#(create_main_cluster) .*\$/\1 = false/' /etc/postgresql-common/createcluster.conf \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-\$PG_MAJOR \\
 && rm -f /usr/sbin/policy-rc.d \\
 && rm -rf /var/lib/apt/lists/* \\
 && test -x /usr/lib/postgresql/\$PG_MAJOR/bin/postgres \\
 && mkdir -p /var/run/postgresql /var/lib/postgresql/data \\
 && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data \\
 && chmod 3777 /var/run/postgresql \\
 && chmod 1777 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/\$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data \\
    LANG=C.UTF-8
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh
VOLUME ["/var/lib/postgresql/data"]
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
LABEL org.peerlink.standin=debian-package-postgresql
EOF
  build_standin "$POSTGRES_IMAGE" debian-package-postgresql "$ctx"
  say "$POSTGRES_IMAGE: stand-in built ($(docker run --rm --entrypoint postgres "$POSTGRES_IMAGE" --version), $(docker image inspect -f '{{.Size}}' "$POSTGRES_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

haproxy_standin() {
  have_or_pull "$HAPROXY_IMAGE" && return 0
  debian_standin
  local ctx
  say "$HAPROXY_IMAGE: cannot be pulled; building a stand-in from $RUNTIME_IMAGE + Debian's haproxy package"
  ctx=$(mktemp -d)
  # The official image's entrypoint, as it is: flags alone run haproxy, and haproxy runs in the
  # foreground (-db) as a master-worker (-W), which reloads on SIGUSR2 and stops softly on SIGUSR1.
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in for the entrypoint of the official haproxy image (peerlink: scripts/docker-standins.sh).
set -e
if [ "${1#-}" != "$1" ]; then
  set -- haproxy "$@"
fi
if [ "$1" = 'haproxy' ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
EOF
  # Debian's own configuration (/etc/haproxy) is not used: the official image has none, and
  # reads /usr/local/etc/haproxy/haproxy.cfg. /var/lib/haproxy is its working directory there.
  cat >"$ctx/Dockerfile" <<EOF
FROM $RUNTIME_IMAGE
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \\
 && chmod +x /usr/sbin/policy-rc.d \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \\
 && rm -f /usr/sbin/policy-rc.d \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /usr/local/etc/haproxy /var/lib/haproxy \\
 && chown haproxy:haproxy /var/lib/haproxy
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh
USER haproxy
WORKDIR /var/lib/haproxy
STOPSIGNAL SIGUSR1
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
LABEL org.peerlink.standin=debian-package-haproxy
EOF
  build_standin "$HAPROXY_IMAGE" debian-package-haproxy "$ctx"
  say "$HAPROXY_IMAGE: stand-in built ($(docker run --rm "$HAPROXY_IMAGE" -v | head -n 1), $(docker image inspect -f '{{.Size}}' "$HAPROXY_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

[ $# -gt 0 ] || set -- debian
for what in "$@"; do
  case $what in
    debian) debian_standin ;;
    rust) rust_standin ;;
    coturn) coturn_standin ;;
    postgres) postgres_standin ;;
    haproxy) haproxy_standin ;;
    *) echo "usage: $0 [debian] [rust] [coturn] [postgres] [haproxy]" >&2; exit 2 ;;
  esac
done
