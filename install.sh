#!/usr/bin/env bash
# Installs and starts Wharf from harbor.yml.
#
#   ./install.sh [--config FILE] [--native]    check harbor.yml, render configs and secrets, start
#   ./install.sh [--config FILE] --stop        stop what a previous run started
#
# With a Docker engine (and compose) it runs `docker compose up -d` on
# docker-compose.yml; without one, or with --native, it builds the release
# binaries with cargo (or takes them from $WHARF_BIN_DIR) and runs them as
# background processes, with logs in <data_volume>/logs and pid files in
# <data_volume>/run. Where harbor.yml names no external_database or
# external_redis, Wharf runs its own Postgres and Redis (Debian's packages,
# installed when missing), bound to loopback, with data under data_volume.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICES=(registry core jobservice proxy)

say() { printf '==> %s\n' "$*"; }
warn() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
  printf 'install.sh: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
Usage: ./install.sh [--config FILE] [--native] [--stop]

  --config FILE  the harbor.yml to use (default: ./harbor.yml)
  --native       run the services as local processes even when Docker is available
  --stop         stop the services (and the Postgres and Redis Wharf provides)
  --help         show this help

Environment:
  WHARF_BIN_DIR  directory holding wharf-core, wharf-registry, wharf-jobservice and
                 wharf-proxy; skips `cargo build --release` in native mode
EOF
}

config="$PWD/harbor.yml"
mode=auto
action=start
while (($#)); do
  case "$1" in
  --config)
    (($# >= 2)) || die "--config needs a file"
    config="$2"
    shift 2
    ;;
  --config=*)
    config="${1#--config=}"
    shift
    ;;
  --native)
    mode=native
    shift
    ;;
  --stop)
    action=stop
    shift
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage >&2
    die "unknown argument: $1"
    ;;
  esac
done

[[ -f "$config" ]] || die "no harbor.yml at $config (copy the example at $ROOT/harbor.yml and edit it, or pass --config FILE)"
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"

is_root() { [[ "$(id -u)" == 0 ]]; }

# Installs Debian packages; only root can.
apt_install() {
  is_root || die "$* missing: install them (apt-get install $*) or run ./install.sh as root"
  say "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z "${_apt_updated:-}" ]]; then
    apt-get update -qq
    _apt_updated=1
  fi
  apt-get install -y -qq "$@" >/dev/null
}

# The data_volume line of harbor.yml, for --stop and the Docker bundle, which
# need it before (or without) running prepare. prepare checks the value.
data_volume_of() {
  sed -n -E "s/^data_volume:[[:space:]]*[\"']?([^\"'#[:space:]]+).*/\1/p" "$config" | head -n1
}

# Docker is usable: a CLI that reaches an engine, and compose (plugin or docker-compose).
have_docker() {
  command -v docker >/dev/null 2>&1 || return 1
  docker info >/dev/null 2>&1 || return 1
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -p wharf "$@"
  else
    docker-compose -p wharf "$@"
  fi
}

# --- native mode: processes -------------------------------------------------

# The pid in a pid file, if that process is alive and is what the file is for.
live_pid() {
  local file="$1" name="$2" pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
  echo "$pid"
}

stop_pid_file() {
  local file="$1" name="$2" pid i
  if pid="$(live_pid "$file" "$name")"; then
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$name did not stop within 20 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

pg_bin_dir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  [[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

# Runs a Postgres binary as the cluster's owner: postgres binaries refuse root.
as_pg() {
  if is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  local bin pgdata sock log
  bin="$(pg_bin_dir || true)"
  if [[ -z "$bin" ]]; then
    apt_install postgresql
    bin="$(pg_bin_dir)" || die "postgresql is installed but no initdb was found under /usr/lib/postgresql"
  fi
  pgdata="$DV/database"
  sock="$DV/run/postgresql"
  log="$DV/logs/postgresql.log"
  mkdir -p "$pgdata" "$sock"
  touch "$log"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "the postgres system user is missing (reinstall postgresql-common)"
    chown postgres: "$pgdata" "$sock" "$log"
    as_pg test -x "$DV" ||
      die "the postgres user cannot reach $DV: make its parent directories traversable (chmod o+x) or choose another data_volume"
  fi
  chmod 700 "$pgdata"
  if [[ ! -f "$pgdata/PG_VERSION" ]]; then
    say "creating Wharf's Postgres cluster in $pgdata"
    # A copy of the password the cluster's owner can read, removed right after.
    local pwfile
    pwfile="$(mktemp "$DV/run/pwfile.XXXXXX")"
    cat "$DV/secret/database_password" >"$pwfile"
    if is_root; then chown postgres: "$pwfile"; fi
    if ! as_pg "$bin/initdb" -D "$pgdata" -U postgres --pwfile="$pwfile" -E UTF8 --no-locale \
      --auth-local=peer --auth-host=scram-sha-256 >>"$log" 2>&1; then
      rm -f "$pwfile"
      die "initdb failed; see $log"
    fi
    rm -f "$pwfile"
  fi
  if as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    say "Wharf's Postgres is already running"
  else
    say "starting Wharf's Postgres on 127.0.0.1:$WHARF_PORT_DATABASE"
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$log" -w -t 60 \
      -o "-h 127.0.0.1 -p $WHARF_PORT_DATABASE -k $sock -c max_connections=$WHARF_DATABASE_MAX_CONNECTIONS" \
      start >/dev/null || die "Postgres did not start; see $log"
  fi
}

stop_postgres() {
  local bin pgdata="$DV/database"
  [[ -f "$pgdata/postmaster.pid" ]] || return 0
  bin="$(pg_bin_dir || true)"
  [[ -n "$bin" ]] || return 0
  if as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    say "stopping Wharf's Postgres"
    as_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w -t 60 stop >/dev/null
  fi
}

start_redis() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || apt_install redis-server
  mkdir -p "$DV/redis"
  if live_pid "$DV/run/redis.pid" redis-server >/dev/null; then
    say "Wharf's Redis is already running"
    return
  fi
  say "starting Wharf's Redis on 127.0.0.1:$WHARF_PORT_REDIS"
  redis-server --bind 127.0.0.1 --port "$WHARF_PORT_REDIS" --dir "$DV/redis" \
    --daemonize yes --pidfile "$DV/run/redis.pid" --logfile "$DV/logs/redis.log" \
    --appendonly yes --protected-mode yes >/dev/null
  local i
  for ((i = 0; i < 100; i++)); do
    redis-cli -h 127.0.0.1 -p "$WHARF_PORT_REDIS" ping >/dev/null 2>&1 && return
    sleep 0.1
  done
  die "Redis did not start; see $DV/logs/redis.log"
}

stop_redis() {
  if live_pid "$DV/run/redis.pid" redis-server >/dev/null; then
    # SHUTDOWN writes the append-only file; fall back to the signal.
    say "stopping Wharf's Redis"
    redis-cli -h 127.0.0.1 -p "${WHARF_PORT_REDIS:-6380}" shutdown >/dev/null 2>&1 || true
    stop_pid_file "$DV/run/redis.pid" redis-server
  fi
  rm -f "$DV/run/redis.pid"
}

# Waits until something answers HTTP at $2; fails early if process $3 died.
wait_http() {
  local name="$1" url="$2" pid="$3" i
  for ((i = 0; i < 600; i++)); do
    curl -s -o /dev/null --max-time 2 "$url" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$DV/logs/$name.log" >&2 || true
      die "$name exited while starting; its log is $DV/logs/$name.log"
    fi
    sleep 0.1
  done
  die "$name did not answer at $url within 60 s; its log is $DV/logs/$name.log"
}

start_service() {
  local name="$1" port="$2" pid
  say "starting wharf-$name"
  setsid "$BIN/wharf-$name" --config "$DV/config/$name.toml" </dev/null >>"$DV/logs/$name.log" 2>&1 &
  pid=$!
  echo "$pid" >"$DV/run/$name.pid"
  wait_http "$name" "http://127.0.0.1:$port/" "$pid"
}

build_binaries() {
  if [[ -n "${WHARF_BIN_DIR:-}" ]]; then
    BIN="$(cd "$WHARF_BIN_DIR" && pwd)"
  else
    command -v cargo >/dev/null 2>&1 ||
      die "cargo is not installed: install Rust (https://rustup.rs) or run with Docker, or set WHARF_BIN_DIR"
    say "building the release binaries (cargo build --release)"
    (cd "$ROOT" && cargo build --release --locked -p wharf-core -p wharf-registry -p wharf-jobservice -p wharf-proxy)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
  fi
  local s
  for s in "${SERVICES[@]}"; do
    [[ -x "$BIN/wharf-$s" ]] || die "$BIN/wharf-$s is missing"
  done
}

# Runs prepare and loads the variables it wrote.
prepare() {
  local env_file
  env_file="$("$@")" || die "harbor.yml ($config) is not usable; see the messages above"
  [[ -f "$env_file" ]] || die "prepare did not write $env_file"
  # shellcheck disable=SC1090
  source "$env_file"
  DV="$WHARF_DATA_VOLUME"
}

native_start() {
  command -v curl >/dev/null 2>&1 || apt_install curl
  build_binaries
  say "checking $config"
  prepare "$BIN/wharf-core" prepare --config "$config"
  mkdir -p "$DV/logs" "$DV/run"
  # A re-run restarts the services on the new configs.
  local s
  for s in proxy jobservice core registry; do
    stop_pid_file "$DV/run/$s.pid" "wharf-$s"
  done
  if [[ "$WHARF_PROVIDED_DATABASE" == 1 ]]; then start_postgres; fi
  if [[ "$WHARF_PROVIDED_REDIS" == 1 ]]; then start_redis; fi
  for s in "${SERVICES[@]}"; do
    if "$BIN/wharf-$s" --help 2>/dev/null | grep -q -- --check-config; then
      "$BIN/wharf-$s" --config "$DV/config/$s.toml" --check-config >/dev/null ||
        die "the rendered $DV/config/$s.toml is not valid for wharf-$s"
    fi
  done
  say "applying database migrations"
  local i
  for ((i = 0; ; i++)); do
    "$BIN/wharf-registry" --config "$DV/config/registry.toml" migrate >>"$DV/logs/migrate.log" 2>&1 && break
    ((i < 15)) || die "migrations failed; see $DV/logs/migrate.log"
    sleep 2
  done
  start_service registry "$WHARF_PORT_REGISTRY"
  start_service core "$WHARF_PORT_CORE"
  start_service jobservice "$WHARF_PORT_JOBSERVICE"
  start_service proxy "$WHARF_PORT_HTTP"
}

native_stop() {
  local s
  for s in proxy jobservice core registry; do
    stop_pid_file "$DV/run/$s.pid" "wharf-$s"
  done
  stop_redis
  stop_postgres
}

# --- Docker mode ---------------------------------------------------------------

docker_start() {
  DV="$(data_volume_of)"
  [[ "$DV" == /* ]] || die "data_volume: must be an absolute path in $config"
  mkdir -p "$DV"
  say "building the Wharf image"
  compose -f "$ROOT/docker-compose.yml" build
  # prepare runs in the image with harbor.yml, data_volume and the HTTPS files
  # mounted at their own paths, so the paths it writes hold on both sides.
  local mounts=(-v "$config:$config:ro" -v "$DV:$DV")
  local f
  while read -r f; do
    [[ -f "$f" ]] && mounts+=(-v "$f:$f:ro")
  done < <(sed -n -E "s/^[[:space:]]+(certificate|private_key):[[:space:]]*[\"']?([^\"'#[:space:]]+).*/\2/p" "$config")
  say "checking $config"
  prepare docker run --rm "${mounts[@]}" wharf:latest wharf-core prepare --config "$config"
  local profiles=()
  [[ "$WHARF_PROVIDED_DATABASE" == 1 ]] && profiles+=(--profile provided-database)
  [[ "$WHARF_PROVIDED_REDIS" == 1 ]] && profiles+=(--profile provided-redis)
  say "starting the containers"
  compose --env-file "$DV/config/install.env" -f "$ROOT/docker-compose.yml" "${profiles[@]}" up -d
}

docker_stop() {
  DV="$(data_volume_of)"
  [[ -f "$DV/config/install.env" ]] || return 0
  compose --env-file "$DV/config/install.env" -f "$ROOT/docker-compose.yml" \
    --profile provided-database --profile provided-redis down
}

# --- after start: health and how to log in ------------------------------------

wait_healthy() {
  local url body i
  if [[ -n "${WHARF_PORT_HTTPS:-}" ]]; then
    url="https://127.0.0.1:$WHARF_PORT_HTTPS/api/v2.0/health"
  else
    url="http://127.0.0.1:$WHARF_PORT_HTTP/api/v2.0/health"
  fi
  say "waiting for $url"
  for ((i = 0; i < 180; i++)); do
    body="$(curl -sk --max-time 5 "$url" 2>/dev/null || true)"
    if [[ "$body" == *'"status":"healthy"'* && "$body" != *unhealthy* ]]; then
      return 0
    fi
    sleep 1
  done
  die "Wharf did not report healthy within 3 minutes; last answer: ${body:-none}; logs are in $DV/logs"
}

announce() {
  local host="${WHARF_EXTERNAL_URL#*://}"
  cat <<EOF

Wharf is running at $WHARF_EXTERNAL_URL
  Log in as admin with harbor_admin_password from $config
  (it applies only until the password is changed):
    docker login $host -u admin
    skopeo login $host -u admin$([[ "$WHARF_EXTERNAL_URL" == http://* ]] && echo " --tls-verify=false")
  API:     $WHARF_EXTERNAL_URL/api/v2.0/health
  Configs: $DV/config   Secrets: $DV/secret   Logs: $DV/logs
  Stop:    ./install.sh --stop$([[ "$config" != "$PWD/harbor.yml" ]] && echo " --config $config")
EOF
}

# --- main -------------------------------------------------------------------------

if [[ "$action" == stop ]]; then
  DV="$(data_volume_of)"
  [[ "$DV" == /* ]] || die "data_volume: must be an absolute path in $config"
  if [[ -f "$DV/config/install.env" ]]; then
    # shellcheck disable=SC1091
    source "$DV/config/install.env"
  fi
  native_stop
  if [[ "$mode" != native ]] && have_docker; then docker_stop; fi
  say "stopped"
  exit 0
fi

if [[ "$mode" == auto ]]; then
  if have_docker; then
    mode=docker
  else
    say "no Docker engine with compose found: running the services natively"
    mode=native
  fi
fi

if [[ "$mode" == docker ]]; then
  command -v curl >/dev/null 2>&1 || apt_install curl
  docker_start
else
  native_start
fi
wait_healthy
announce
