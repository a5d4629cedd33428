# Sourced by the compose smoke tests: finds a usable Docker engine and Compose, or prints
# "SKIP: <what>: <why>" and exits 0 (a machine without Docker skips, saying so). Sets the array
# `compose` to the Compose command (`docker compose` or the standalone `docker-compose`).
#
#   source scripts/compose-lib.sh; find_compose "compose smoke test"
find_compose() { # WHAT
  local docker_info
  if ! command -v docker >/dev/null 2>&1; then
    echo "SKIP: $1: no \`docker\` command on this machine"
    exit 0
  fi
  if ! docker_info=$(docker info 2>&1); then
    echo "SKIP: $1: no usable Docker engine (\`docker info\` failed: $(printf '%s' "$docker_info" | tail -n 1))"
    exit 0
  fi
  if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
  else
    echo "SKIP: $1: the Docker engine works but neither \`docker compose\` nor \`docker-compose\` is installed"
    exit 0
  fi
}
