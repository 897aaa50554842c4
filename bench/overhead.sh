#!/usr/bin/env bash
# Gateway overhead: a fast fake OpenAI upstream on loopback, called directly and through
# ragway's POST /generate (vector_search_type "none"), at fixed request rates with oha. Two
# ragway processes: one open, one with the guard rails on (an API key checked on every request,
# per-key requests- and tokens-per-minute limiting, the in-flight limit; /metrics records in
# both). Prints p50/p99 of each side by side, the added latency, errors and resident memory.
#
#   bench/overhead.sh [SECONDS_PER_RUN] [RATES...]      (defaults: 15 s, 1000 5000)
#   BIN_DIR=path bench/overhead.sh …                    (use prebuilt ragway and ragway-fakes)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}; shift || true
rates=("${@:-1000}")
[ $# -eq 0 ] && rates=(1000 5000)

command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
pids=(); source bench/lib.sh
release_bins
out=bench/out; mkdir -p "$out"

start_fakes "$out"

fast_config "$out/overhead.toml"
# The guarded one: a key, limits far above the rate so that none is refused, but each
# request is still counted against them.
{ cat <<TOML
[[server.auth.keys]]
name = "bench"
key = "env::RAGWAY_BENCH_KEY"
requests_per_minute = 100000000
tokens_per_minute = 100000000000

TOML
  cat "$out/overhead.toml"; } > "$out/overhead-guarded.toml"
export RAGWAY_BENCH_KEY=rk-bench-7f3a
start_ragway "$out/overhead.toml" "$out/ragway.out"; gateway=$url; ragway_pid=$pid
start_ragway "$out/overhead-guarded.toml" "$out/ragway-guarded.out"; guarded=$url; guarded_pid=$pid

direct_body='{"model":"gpt-4o","messages":[{"role":"user","content":"Explain quantum computing"}]}'
gateway_body='{"prompt":"Explain quantum computing","llm_name":"fast","vector_search_type":"none"}'

run() { # url body rate file [header]
  oha --no-tui --output-format json -z "${seconds}s" -w -q "$3" -c 64 --latency-correction \
      -m POST -H 'content-type: application/json' ${5:+-H "$5"} -d "$2" "$1" > "$4"
}
auth="authorization: Bearer $RAGWAY_BENCH_KEY"
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/${1:-$ragway_pid}/status"; }
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/${1:-$ragway_pid}/status"; }

# Warm every path (connection pools, allocator) before measuring.
for target in "$gateway" "$guarded"; do
  oha --no-tui -z 2s -q 500 -c 16 -m POST -H 'content-type: application/json' -H "$auth" \
      -d "$gateway_body" "$target/generate" >/dev/null
done

echo "ragway gateway overhead — $(nproc) cores, ${seconds}s per run, oha -c 64 --latency-correction"
echo "idle RSS after warm-up: $(rss_mb) MB open, $(rss_mb "$guarded_pid") MB guarded"
printf '%-8s | %-8s | %-20s | %-17s | %-7s | %s\n' "rate/s" "path" "p50 / p99 (ms)" "added p50 / p99" "errors" "RSS peak"
for rate in "${rates[@]}"; do
  run "$upstream/v1/chat/completions" "$direct_body" "$rate" "$out/direct-$rate.json"
  run "$gateway/generate" "$gateway_body" "$rate" "$out/gateway-$rate.json"
  run "$guarded/generate" "$gateway_body" "$rate" "$out/guarded-$rate.json" "$auth"
  python3 - "$out" "$rate" "$(hwm_mb)" "$(hwm_mb "$guarded_pid")" <<'PY'
import json, sys
out, rate, rss_open, rss_guarded = sys.argv[1:5]
def figures(name):
    r = json.load(open(f"{out}/{name}-{rate}.json"))
    lat = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    errors = sum(codes.values()) - ok + sum(r.get("errorDistribution", {}).values())
    return lat["p50"] * 1000, lat["p99"] * 1000, errors, r["summary"]["requestsPerSec"]
d50, d99, derr, _ = figures("direct")
print(f"{rate:<8} | {'direct':<8} | {d50:7.3f} / {d99:7.3f}    | {'':<17} | {derr:<7} |")
for name, label, rss in [("gateway", "ragway", rss_open), ("guarded", "+guards", rss_guarded)]:
    g50, g99, gerr, grps = figures(name)
    print(f"{rate:<8} | {label:<8} | {g50:7.3f} / {g99:7.3f}    | {g50-d50:+6.3f} / {g99-d99:+6.3f} | "
          f"{gerr:<7} | {rss} MB ({grps:.0f} req/s served)")
PY
done
echo "RSS after all runs: $(rss_mb) MB open, $(rss_mb "$guarded_pid") MB guarded"
# What the guarded server's /metrics counted (every request it answered, by status).
curl -s "$guarded/metrics" | grep -E '^ragway_requests_total.*route="/generate"' || true
