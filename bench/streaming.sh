#!/usr/bin/env bash
# Streaming: time to first byte and the gaps between events, through ragway's streaming
# routes vs the upstream fake directly, with STREAMS concurrent streams held open. The fake
# paces its chunks (--chunk-delay-ms) like a model writing, so an event that ragway held back
# would show as a burst: gaps near zero followed by long ones.
#
# Each answer is WORDS words, one chunk each (50 at 20 ms: a one-second answer, still shorter
# than most real ones; 5 makes every stream ~0.1 s, which measures request set-up more than
# streaming: 500 streams are then ~4,500 new requests a second).
#
#   bench/streaming.sh [STREAMS] [SECONDS] [CHUNK_DELAY_MS] [WORDS]    (defaults: 500 10 20 50)
#   BIN_DIR=path bench/streaming.sh …                           (prebuilt ragway, ragway-fakes, stream_load)
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-500}; seconds=${2:-10}; delay=${3:-20}; words=${4:-50}
if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR; load=$BIN_DIR/examples/stream_load
else
  cargo build --release --quiet -p ragway -p ragway-testkit
  cargo build --release --quiet -p ragway-testkit --example stream_load
  bin=${CARGO_TARGET_DIR:-target}/release; load=$bin/examples/stream_load
fi
out=bench/out/streaming; mkdir -p "$out"
ulimit -n 65536 2>/dev/null || true

pids=(); source bench/lib.sh
# The fake and the load generator run on one thread each: on a small machine they share the
# cores with ragway, and their own threads waking each other only take CPU from what is measured
# (both paths are measured with the same tools).
export TOKIO_WORKER_THREADS=1
start_fakes "$out" --chunk-delay-ms "$delay" --answer-words "$words"
unset TOKIO_WORKER_THREADS
cat > "$out/streaming.toml" <<TOML
[[llm]]
name = "fast"
type = "openai"
model = "gpt-4o"
base_url = "$upstream/v1"
TOML
start_ragway "$out/streaming.toml" "$out/ragway.out"; gateway=$url

direct='{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Explain quantum computing"}]}'
v1='{"model":"fast","stream":true,"messages":[{"role":"user","content":"Explain quantum computing"}]}'
generate='{"prompt":"Explain quantum computing","llm_name":"fast","stream":true}'

# Warm every path at full width first: each opens its connections (client to ragway, ragway's
# pool to the upstream) outside the measured runs.
TOKIO_WORKER_THREADS=1 "$load" --url "$upstream/v1/chat/completions" --body "$direct" --streams "$streams" --seconds 2 > /dev/null
TOKIO_WORKER_THREADS=1 "$load" --url "$gateway/v1/chat/completions" --body "$v1" --streams "$streams" --seconds 2 > /dev/null
TOKIO_WORKER_THREADS=1 "$load" --url "$gateway/generate" --body "$generate" --streams "$streams" --seconds 2 > /dev/null
echo "streaming — $(nproc) cores, $streams concurrent streams for ${seconds}s, answers of $words words, upstream chunk every ${delay} ms"
TOKIO_WORKER_THREADS=1 "$load" --url "$upstream/v1/chat/completions" --body "$direct" --streams "$streams" --seconds "$seconds" > "$out/direct.json"
TOKIO_WORKER_THREADS=1 "$load" --url "$gateway/v1/chat/completions" --body "$v1" --streams "$streams" --seconds "$seconds" > "$out/v1.json"
TOKIO_WORKER_THREADS=1 "$load" --url "$gateway/generate" --body "$generate" --streams "$streams" --seconds "$seconds" > "$out/generate.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
runs = [(name, json.load(open(f"{out}/{file}.json"))) for name, file in
        [("upstream direct", "direct"), ("ragway /v1/chat/completions", "v1"), ("ragway /generate", "generate")]]
print(f"{'path':<30} {'streams':>8} {'errors':>7}  {'TTFB p50 / p99 (ms)':>21}  {'TTFT p50 / p99 (ms)':>21}  {'gap p50 / p99 / max (ms)':>26}")
for name, r in runs:
    t, f, g = r["ttfb_ms"], r["ttft_ms"], r["gap_ms"]
    print(f"{name:<30} {r['requests']:>8} {r['errors']:>7}  {t['p50']:>9.2f} / {t['p99']:>8.2f}  "
          f"{f['p50']:>9.2f} / {f['p99']:>8.2f}  {g['p50']:>7.2f} / {g['p99']:>7.2f} / {g['max']:>7.2f}")
base, base_text = runs[0][1]["ttfb_ms"], runs[0][1]["ttft_ms"]
for name, r in runs[1:]:
    print(f"through {name}: added TTFB p50 {r['ttfb_ms']['p50'] - base['p50']:+.2f} ms, "
          f"p99 {r['ttfb_ms']['p99'] - base['p99']:+.2f} ms; added TTFT p50 "
          f"{r['ttft_ms']['p50'] - base_text['p50']:+.2f} ms, p99 {r['ttft_ms']['p99'] - base_text['p99']:+.2f} ms")
PY
