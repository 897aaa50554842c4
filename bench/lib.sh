# What the bench scripts share, sourced by them: building, starting the fakes, ragway, and
# Postgres + Redis on free loopback ports and stopping them when the script ends. Each sets
# `pids=()` first, and `bin` (or calls `release_bins`) before starting anything.

# release_bins [EXAMPLE...]: sets $bin to the folder of ragway, ragway-fakes and the named
# ragway-testkit examples: $BIN_DIR if set (prebuilt), else a release build made now.
release_bins() {
  if [ -n "${BIN_DIR:-}" ]; then
    bin=$BIN_DIR
    return
  fi
  cargo build --release --quiet -p ragway -p ragway-testkit
  if [ $# -gt 0 ]; then
    cargo build --release --quiet -p ragway-testkit $(printf -- '--example %s ' "$@")
  fi
  bin=${CARGO_TARGET_DIR:-target}/release
}

state_dir=
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  [ -z "$state_dir" ] || { scripts/state-servers.sh stop "$state_dir" 2>/dev/null; rm -rf "$state_dir"; } || true
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_state DIR: PostgreSQL + pgvector and Redis (scripts/state-servers.sh) on free loopback
# ports, over a fresh cluster in DIR, stopped and deleted when the script ends. Exports PGPORT,
# REDIS_PORT, RAGWAY_PG_DSN and RAGWAY_REDIS_URL. Postgres gets shared_buffers = 1 GB, so that a
# 100k x 384 table and its HNSW index (about 400 MB) sit in its own cache, as on a database
# sized for them (RDS gives shared_buffers a quarter of the memory); the rest is its defaults.
start_state() {
  state_dir=$(realpath -m "$1")
  export PGPORT REDIS_PORT
  PGPORT=$(free_port); REDIS_PORT=$(free_port)
  rm -rf "$state_dir"
  eval "$(scripts/state-servers.sh start "$state_dir" 2>/dev/null)"
  python3 - "$PGPORT" <<'PY'
import sys, pg8000.native
pg8000.native.Connection("ragway", host="127.0.0.1", port=int(sys.argv[1]),
                         database="postgres").run("ALTER SYSTEM SET shared_buffers = '1GB'")
PY
  scripts/state-servers.sh stop "$state_dir" 2>/dev/null
  eval "$(scripts/state-servers.sh start "$state_dir" 2>/dev/null)"
}

# start_fakes OUT_DIR [ragway-fakes options...]: the fakes on free ports; sets $upstream to the
# OpenAI fake's base URL.
start_fakes() {
  local dir=$1; shift
  "$bin/ragway-fakes" "$@" > "$dir/fakes.json" 2>/dev/null & pids+=($!)
  for _ in $(seq 50); do [ -s "$dir/fakes.json" ] && break; sleep 0.1; done
  upstream=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["openai"])' "$dir/fakes.json")
}

# fast_config FILE: a config with one model, `fast`, the OpenAI fake's gpt-4o at $upstream.
fast_config() {
  cat > "$1" <<TOML
[[llm]]
name = "fast"
type = "openai"
model = "gpt-4o"
base_url = "$upstream/v1"
TOML
}

# start_ragway CONFIG LOG: `ragway serve` on a free port, quiet; sets $url and $pid, and fails
# the script if it does not start within 30 s.
start_ragway() {
  RUST_LOG=${RUST_LOG:-warn} "$bin/ragway" serve --config "$1" --bind 127.0.0.1:0 > "$2" & pid=$!; pids+=($!)
  for _ in $(seq 300); do grep -q listening "$2" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^ragway listening on //p' "$2")
  [ -n "$url" ] || { echo "ragway serve did not start; its log ($2):" >&2; cat "$2" >&2; exit 1; }
}
