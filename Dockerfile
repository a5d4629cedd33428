# peerlink: index-service and peer-daemon in one small Debian image.
#
#   docker build -t peerlink .          (or let `docker compose up` build it)
#   docker run -d -p 8080:8080 -v peerlink-data:/data peerlink            # the index
#   docker run -it --rm -e PEER_INDEX_URL=http://<index-host>:8080 peerlink peer-daemon
#
# Both base images are build arguments; the defaults are the official images:
#   docker build --build-arg RUST_IMAGE=rust:1.95-slim-bookworm .
#
# Stages: `runtime-base` (the runtime image without our binaries), `build` (cargo in the
# official Rust image), `runtime` (the default target: runtime-base + the two binaries).
# `runtime-base` comes first so that it can be built on its own (`--target runtime-base`) even
# by the legacy builder, which builds every stage up to the target.

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime-base

# sqlite3 (~2 MB) so that `docker compose exec index sqlite3 /data/index.db` shows what the
# index stored. Nothing else is installed: the health check below needs only bash.
RUN apt-get update \
 && apt-get install -y --no-install-recommends sqlite3 \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user owning /data; a named volume mounted there inherits the ownership.
RUN groupadd --system --gid 10001 peerlink \
 && useradd --system --uid 10001 --gid peerlink --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin peerlink \
 && mkdir -p /data \
 && chown peerlink:peerlink /data

ENV INDEX_LISTEN=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/index.db
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
USER peerlink

# GET /healthz over bash's /dev/tcp, healthy only on an HTTP 200 status line: no curl or wget
# needed in the image. The port is taken from INDEX_LISTEN (set it rather than --listen if you
# change the port). Containers running peer-daemon from this image should disable it
# (docker-compose.yml does; `docker run --no-healthcheck` otherwise).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD bash -c 'listen=${INDEX_LISTEN:-0.0.0.0:8080}; exec 3<>"/dev/tcp/127.0.0.1/${listen##*:}" && printf "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && read -r -t 2 _ status _ <&3 && [ "$status" = 200 ]'

CMD ["index-service"]

# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p index-service -p peer-daemon \
 && mkdir -p /out \
 && cp target/release/index-service target/release/peer-daemon /out/ \
 && strip /out/index-service /out/peer-daemon

# ---------------------------------------------------------------------------------------------
FROM runtime-base AS runtime
COPY --from=build /out/ /usr/local/bin/
