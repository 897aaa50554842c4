#!/usr/bin/env bash
# Gateway overhead: a fast fake OpenAI upstream on loopback, called directly and through
# ragway's POST /generate (vector_search_type "none"), at fixed request rates with oha.
# Prints p50/p99 of both side by side, the added latency, errors and ragway's resident memory.
#
#   bench/overhead.sh [SECONDS_PER_RUN] [RATES...]      (defaults: 15 s, 1000 5000)
#   BIN_DIR=path bench/overhead.sh …                    (use prebuilt ragway and ragway-fakes)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}; shift || true
rates=("${@:-1000}")
[ $# -eq 0 ] && rates=(1000 5000)

command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release --quiet -p ragway -p ragway-testkit
  bin=${CARGO_TARGET_DIR:-target}/release
fi
out=bench/out; mkdir -p "$out"

cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
pids=(); trap cleanup EXIT

# taskset keeps the load generator off ragway's core where the machine allows it.
"$bin/ragway-fakes" > "$out/fakes.json" 2>/dev/null & pids+=($!)
for _ in $(seq 50); do [ -s "$out/fakes.json" ] && break; sleep 0.1; done
upstream=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["openai"])' "$out/fakes.json")

cat > "$out/overhead.toml" <<TOML
[[llm]]
name = "fast"
type = "openai"
model = "gpt-4o"
base_url = "$upstream/v1"
TOML
RUST_LOG=warn "$bin/ragway" serve --config "$out/overhead.toml" --bind 127.0.0.1:0 > "$out/ragway.out" & pids+=($!)
ragway_pid=$!
for _ in $(seq 100); do grep -q listening "$out/ragway.out" 2>/dev/null && break; sleep 0.1; done
gateway=$(sed -n 's/^ragway listening on //p' "$out/ragway.out")

direct_body='{"model":"gpt-4o","messages":[{"role":"user","content":"Explain quantum computing"}]}'
gateway_body='{"prompt":"Explain quantum computing","llm_name":"fast","vector_search_type":"none"}'

run() { # url body rate file
  oha --no-tui --output-format json -z "${seconds}s" -w -q "$3" -c 64 --latency-correction \
      -m POST -H 'content-type: application/json' -d "$2" "$1" > "$4"
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$ragway_pid/status"; }
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$ragway_pid/status"; }

# Warm both paths (connection pools, allocator) before measuring.
oha --no-tui -z 2s -q 500 -c 16 -m POST -H 'content-type: application/json' -d "$gateway_body" "$gateway/generate" >/dev/null

echo "ragway gateway overhead — $(nproc) cores, ${seconds}s per run, oha -c 64 --latency-correction"
echo "idle RSS after warm-up: $(rss_mb) MB"
printf '%-8s | %-24s | %-24s | %-17s | %-8s | %s\n' "rate/s" "direct p50 / p99 (ms)" "ragway p50 / p99 (ms)" "added p50 / p99" "errors" "ragway RSS peak"
for rate in "${rates[@]}"; do
  run "$upstream/v1/chat/completions" "$direct_body" "$rate" "$out/direct-$rate.json"
  run "$gateway/generate" "$gateway_body" "$rate" "$out/gateway-$rate.json"
  python3 - "$out/direct-$rate.json" "$out/gateway-$rate.json" "$rate" "$(hwm_mb)" <<'PY'
import json, sys
direct, gateway = (json.load(open(p)) for p in sys.argv[1:3])
def figures(r):
    lat = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    errors = sum(codes.values()) - ok + sum(r.get("errorDistribution", {}).values())
    return lat["p50"] * 1000, lat["p99"] * 1000, errors, r["summary"]["requestsPerSec"]
d50, d99, derr, _ = figures(direct)
g50, g99, gerr, grps = figures(gateway)
print(f"{sys.argv[3]:<8} | {d50:7.3f} / {d99:7.3f}        | {g50:7.3f} / {g99:7.3f}        | "
      f"{g50-d50:+6.3f} / {g99-d99:+6.3f} | {derr}/{gerr:<5} | {sys.argv[4]} MB  ({grps:.0f} req/s served)")
PY
done
echo "RSS after all runs: $(rss_mb) MB"
