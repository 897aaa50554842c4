#!/usr/bin/env bash
# What a limit shared through Redis costs against the in-memory one: three `ragway serve`
# processes answer GET /v1/models (a cheap route every request of which passes the key check
# and the key's requests-per-minute) to oha at a fixed rate, one after the other:
#   - anchor:    the key, no limit;
#   - in-memory: the key with requests_per_minute (far above the rate: nothing is refused,
#                every request is counted), counts in the process;
#   - Redis:     the same limit with [server.state] redis_url: every request is one round trip
#                to Redis (a Lua script) on loopback.
# Prints p50/p99 of each, the added p50/p99 over the anchor and the Redis one over the
# in-memory one, errors (any non-200: a 429 would mean the limit refused) and what Redis holds.
# The three are measured in rounds, each round in another order; the figures are the rounds'
# medians (a p99 of a few milliseconds moves by one from run to run on 2 shared cores).
#
#   bench/shared_limits.sh [SECONDS_PER_RUN] [RATE] [ROUNDS]   (defaults: 15 s, 1000 req/s, 3)
#
# Starts Redis (and Postgres, unused) through bench/lib.sh start_state on free loopback ports
# and stops everything at the end. Needs oha (cargo install oha --locked); PROFILE=dev uses a
# debug build (dependencies optimised).
# BIN_DIR=DIR uses a prebuilt ragway and DIR/examples/ instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}; rate=${2:-1000}; rounds=${3:-3}
profile=${PROFILE:-release}
flag=(--release); bin=${CARGO_TARGET_DIR:-target}/release
[ "$profile" = dev ] && { flag=(); bin=${CARGO_TARGET_DIR:-target}/debug; }
command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
command -v redis-server >/dev/null || {
  echo "redis-server is needed: apt-get install redis-server" >&2; exit 1; }
if [ -n "${BIN_DIR:-}" ]; then bin=$BIN_DIR  # prebuilt: ragway and examples/
else cargo build "${flag[@]}" --quiet --workspace --bins --examples; fi
out=bench/out/shared-limits; mkdir -p "$out"
pids=(); source bench/lib.sh
start_state "$out/state"
export RAGWAY_BENCH_KEY=rk-bench-7f3a

# A model that is never called: /v1/models only lists it.
models='[[llm]]
name = "fast"
type = "openai"
model = "gpt-4o"
base_url = "http://127.0.0.1:9/v1"'
key='[[server.auth.keys]]
name = "bench"
key = "env::RAGWAY_BENCH_KEY"'
limit='requests_per_minute = 100000000'
redis='[server.state]
redis_url = "env::RAGWAY_REDIS_URL"'
printf '%s\n\n%s\n' "$key" "$models" > "$out/anchor.toml"
printf '%s\n%s\n\n%s\n' "$key" "$limit" "$models" > "$out/memory.toml"
printf '%s\n\n%s\n%s\n\n%s\n' "$redis" "$key" "$limit" "$models" > "$out/redis.toml"
declare -A urls
for name in anchor memory redis; do
  start_ragway "$out/$name.toml" "$out/$name.out"; urls[$name]=$url
done

auth="authorization: Bearer $RAGWAY_BENCH_KEY"
for name in anchor memory redis; do  # warm up: connections, allocator, Redis script cache
  oha --no-tui -z 2s -q 500 -c 16 -H "$auth" "${urls[$name]}/v1/models" >/dev/null
done
echo "shared limits: GET /v1/models at $rate req/s, $rounds rounds of ${seconds}s each, oha -c 64" \
  "--latency-correction, $(nproc) cores ($profile build)"
order=(anchor memory redis)
for round in $(seq "$rounds"); do
  for name in "${order[@]}"; do
    oha --no-tui --output-format json -z "${seconds}s" -q "$rate" -c 64 --latency-correction \
      -H "$auth" "${urls[$name]}/v1/models" > "$out/$name-$round.json"
  done
  order=("${order[@]:1}" "${order[0]}")
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for name in ("anchor", "memory", "redis"):
    p50s, p99s, errors, served = [], [], 0, []
    for round in range(1, rounds + 1):
        r = json.load(open(f"{out}/{name}-{round}.json"))
        codes = r.get("statusCodeDistribution", {})
        # A request still in flight when the run's time is up is cut off by oha, not an error.
        failed = {k: v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
        errors += sum(v for k, v in codes.items() if k != "200") + sum(failed.values())
        p50s.append(r["latencyPercentiles"]["p50"] * 1e3)
        p99s.append(r["latencyPercentiles"]["p99"] * 1e3)
        served.append(r["summary"]["requestsPerSec"])
    print(f"{name:<7} p99 per round: " + ", ".join(f"{x:.3f}" for x in p99s) + " ms")
    rows[name] = (statistics.median(p50s), statistics.median(p99s), errors, statistics.median(served))
a50, a99 = rows["anchor"][:2]
m50, m99 = rows["memory"][:2]
labels = {"anchor": "key, no limit (anchor)", "memory": "limit in memory", "redis": "limit in Redis"}
print(f"{'':<24} {'p50 / p99 (ms)':<19} {'added p50 / p99':<18} errors  served")
for name, (p50, p99, errors, rps) in rows.items():
    added = "" if name == "anchor" else f"{p50 - a50:+.3f} / {p99 - a99:+.3f}"
    print(f"{labels[name]:<24} {p50:6.3f} / {p99:6.3f}    {added:<18} {errors:<7} {rps:.0f} req/s")
r50, r99 = rows["redis"][:2]
print(f"Redis against in-memory: added p50 {r50 - m50:+.3f} ms, p99 {r99 - m99:+.3f} ms")
PY
echo "Redis holds: $(redis-cli -p "$REDIS_PORT" --scan --pattern 'ragway:limit:*' | tr '\n' ' ')"
curl -s "${urls[redis]}/metrics" | grep -E '^ragway_rate_limit_store_unavailable_total' || true
